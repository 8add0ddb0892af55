//! API tokens and token-signing keys.

use super::error::{into_store, Fail};
use super::sql::{execute, json, query, query_opt, record, records, JsonOut};
use super::users::check_user_active;
use super::PgStore;
use crate::error::{GatehouseError, StoreError};
use crate::model::{SigningKeyRecord, TokenChange, TokenRecord};
use deadpool_postgres::Transaction;
use time::OffsetDateTime;

pub(super) async fn load_tokens(store: &PgStore) -> Result<Vec<TokenRecord>, StoreError> {
    store
        .one("load_tokens", &(), |c, _| {
            Box::pin(async move {
                let rows = query(
                    c,
                    "SELECT record FROM api_tokens ORDER BY id COLLATE \"C\"",
                    &[],
                )
                .await?;
                records(&rows)
            })
        })
        .await
        .map_err(into_store)
}

pub(super) async fn insert_token(
    store: &PgStore,
    token: TokenRecord,
) -> Result<(), GatehouseError> {
    let args = (json(&token)?, token);
    store
        .tx("insert_token", &args, |t, (rec, token)| {
            Box::pin(async move {
                check_user_active(t, &token.user_id).await?;
                upsert_token(t, token, rec).await
            })
        })
        .await
}

pub(super) async fn update_token(
    store: &PgStore,
    id: &str,
    change: TokenChange,
) -> Result<TokenRecord, GatehouseError> {
    let args = (id, change);
    store
        .tx("update_token", &args, |t, (id, change)| {
            Box::pin(async move {
                let mut tok = get_token_for_update(t, id).await?;
                match change {
                    TokenChange::Revoke { at } => {
                        if tok.revoked_at.is_none() {
                            tok.revoked_at = Some(*at);
                        }
                    }
                }
                execute(
                    t,
                    "UPDATE api_tokens SET record = $2 WHERE id = $1",
                    &[id, &json(&tok)?],
                )
                .await?;
                Ok(tok)
            })
        })
        .await
}

pub(super) async fn rotate_token(
    store: &PgStore,
    old_id: &str,
    grace_until: OffsetDateTime,
    new: TokenRecord,
) -> Result<TokenRecord, GatehouseError> {
    let args = (old_id, grace_until, json(&new)?, new);
    store
        .tx(
            "rotate_token",
            &args,
            |t, (old_id, grace_until, rec, new)| {
                Box::pin(async move {
                    // Lock order: the user (FOR SHARE) before its token, as a
                    // removal of the user does; the owner is read first unlocked.
                    let Some(row) =
                        query_opt(t, "SELECT user_id FROM api_tokens WHERE id = $1", &[old_id])
                            .await?
                    else {
                        return Err(GatehouseError::NotFound.into());
                    };
                    let owner: String = row.try_get(0)?;
                    check_user_active(t, &owner).await?;
                    let mut old = get_token_for_update(t, old_id).await?;
                    if old.user_id != owner {
                        check_user_active(t, &old.user_id).await?;
                    }
                    old.grace_until = Some(
                        old.grace_until
                            .map_or(*grace_until, |g| g.min(*grace_until)),
                    );
                    execute(
                        t,
                        "UPDATE api_tokens SET record = $2 WHERE id = $1",
                        &[old_id, &json(&old)?],
                    )
                    .await?;
                    upsert_token(t, new, rec).await?;
                    Ok(old)
                })
            },
        )
        .await
}

pub(super) async fn touch_tokens(
    store: &PgStore,
    used: Vec<(String, OffsetDateTime)>,
) -> Result<(), StoreError> {
    if used.is_empty() {
        return Ok(());
    }
    let mut latest = std::collections::BTreeMap::new();
    for (id, at) in used {
        let e = latest.entry(id).or_insert(at);
        if at > *e {
            *e = at;
        }
    }
    store
        .tx("touch_tokens", &latest, |t, latest| {
            Box::pin(async move {
                let ids: Vec<&str> = latest.keys().map(String::as_str).collect();
                let rows = query(
                    t,
                    "SELECT id, record FROM api_tokens WHERE id = ANY($1) \
                 ORDER BY id COLLATE \"C\" FOR UPDATE",
                    &[&ids],
                )
                .await?;
                let mut keys = Vec::new();
                let mut recs = Vec::new();
                for row in &rows {
                    let id: String = row.try_get(0)?;
                    let mut tok: TokenRecord = record(row, 1)?;
                    let Some(at) = latest.get(&id) else {
                        continue;
                    };
                    if tok.last_used_at.is_some_and(|l| l >= *at) {
                        continue;
                    }
                    tok.last_used_at = Some(*at);
                    keys.push(id);
                    recs.push(json(&tok)?);
                }
                if !keys.is_empty() {
                    execute(
                        t,
                        "UPDATE api_tokens SET record = u.record \
                     FROM UNNEST($1::text[], $2::jsonb[]) AS u(id, record) \
                     WHERE api_tokens.id = u.id",
                        &[&keys, &recs],
                    )
                    .await?;
                }
                Ok(())
            })
        })
        .await
        .map_err(into_store)
}

async fn upsert_token(t: &Transaction<'_>, token: &TokenRecord, rec: &JsonOut) -> Result<(), Fail> {
    execute(
        t,
        "INSERT INTO api_tokens (id, user_id, record) VALUES ($1, $2, $3) \
         ON CONFLICT (id) DO UPDATE SET user_id = EXCLUDED.user_id, record = EXCLUDED.record",
        &[&token.id, &token.user_id, rec],
    )
    .await?;
    Ok(())
}

async fn get_token_for_update(t: &Transaction<'_>, id: &str) -> Result<TokenRecord, Fail> {
    match query_opt(
        t,
        "SELECT record FROM api_tokens WHERE id = $1 FOR UPDATE",
        &[&id],
    )
    .await?
    {
        Some(row) => record(&row, 0),
        None => Err(GatehouseError::NotFound.into()),
    }
}

// --- token-signing keys -----------------------------------------------------

pub(super) async fn load_signing_keys(
    store: &PgStore,
) -> Result<Vec<SigningKeyRecord>, StoreError> {
    let mut keys: Vec<SigningKeyRecord> = store
        .one("load_signing_keys", &(), |c, _| {
            Box::pin(async move {
                let rows = query(
                    c,
                    "SELECT record FROM signing_keys ORDER BY created_at, kid COLLATE \"C\"",
                    &[],
                )
                .await?;
                records(&rows)
            })
        })
        .await
        .map_err(into_store)?;
    // Oldest first to the nanosecond (the column keeps microseconds).
    keys.sort_by(|a, b| (a.created_at, a.kid.as_bytes()).cmp(&(b.created_at, b.kid.as_bytes())));
    Ok(keys)
}

pub(super) async fn insert_signing_key(
    store: &PgStore,
    key: SigningKeyRecord,
) -> Result<(), StoreError> {
    let args = (json(&key)?, key);
    store
        .one("insert_signing_key", &args, |c, (rec, key)| {
            Box::pin(async move {
                execute(
                    c,
                    "INSERT INTO signing_keys (kid, created_at, record) VALUES ($1, $2, $3) \
                 ON CONFLICT (kid) DO UPDATE SET created_at = EXCLUDED.created_at, \
                 record = EXCLUDED.record",
                    &[&key.kid, &key.created_at, rec],
                )
                .await?;
                Ok(())
            })
        })
        .await
        .map_err(into_store)
}
