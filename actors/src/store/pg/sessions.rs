//! Sessions and OAuth states: both expire, and both are swept exactly at
//! `expires_at < now`.

use super::error::{into_store, Fail};
use super::sql::{execute, hash, json, query, query_opt, record, records, Hidden};
use super::users::check_user_active;
use super::{EndSessions, PgStore};
use crate::error::{GatehouseError, StoreError};
use crate::ids::TokenHash;
use crate::model::{OAuthState, SessionRecord};
use deadpool_postgres::GenericClient;
use time::OffsetDateTime;
use tokio_postgres::Row;

pub(super) async fn load_sessions(store: &PgStore) -> Result<Vec<SessionRecord>, StoreError> {
    store
        .one("load_sessions", &(), |c, _| {
            Box::pin(async move {
                let rows = query(c, "SELECT record FROM sessions ORDER BY token_hash", &[]).await?;
                records(&rows)
            })
        })
        .await
        .map_err(into_store)
}

pub(super) async fn insert_session(
    store: &PgStore,
    session: SessionRecord,
) -> Result<(), GatehouseError> {
    let args = (json(&session)?, session);
    store
        .tx("insert_session", &args, |t, (rec, s)| {
            Box::pin(async move {
                check_user_active(t, &s.user_id).await?;
                execute(
                    t,
                    "INSERT INTO sessions (token_hash, user_id, expires_at, record) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (token_hash) DO UPDATE SET \
                 user_id = EXCLUDED.user_id, expires_at = EXCLUDED.expires_at, \
                 record = EXCLUDED.record",
                    &[&hash(&s.token_hash), &s.user_id, &s.expires_at, rec],
                )
                .await?;
                Ok(())
            })
        })
        .await
}

pub(super) async fn delete_session(store: &PgStore, h: TokenHash) -> Result<bool, StoreError> {
    store
        .one("delete_session", &h, |c, h| {
            Box::pin(async move {
                let n =
                    execute(c, "DELETE FROM sessions WHERE token_hash = $1", &[&hash(h)]).await?;
                Ok(n > 0)
            })
        })
        .await
        .map_err(into_store)
}

pub(super) async fn delete_user_sessions(
    store: &PgStore,
    user_id: &str,
    end: EndSessions,
) -> Result<u64, StoreError> {
    let args = (user_id, end);
    store
        .one("delete_user_sessions", &args, |c, (id, end)| {
            Box::pin(async move { delete_sessions_of(c, id, *end).await })
        })
        .await
        .map_err(into_store)
}

pub(super) async fn touch_sessions(
    store: &PgStore,
    seen: Vec<(TokenHash, OffsetDateTime)>,
) -> Result<(), StoreError> {
    if seen.is_empty() {
        return Ok(());
    }
    // The latest time per session; the lock order is the key order.
    let mut latest = std::collections::BTreeMap::new();
    for (h, at) in seen {
        let e = latest.entry(h).or_insert(at);
        if at > *e {
            *e = at;
        }
    }
    store
        .tx("touch_sessions", &latest, |t, latest| {
            Box::pin(async move {
                let keys: Vec<_> = latest.keys().map(hash).collect();
                let rows = query(
                    t,
                    "SELECT token_hash, record FROM sessions WHERE token_hash = ANY($1) \
                 ORDER BY token_hash FOR UPDATE",
                    &[&keys],
                )
                .await?;
                let mut hashes = Vec::new();
                let mut recs = Vec::new();
                for row in &rows {
                    let mut s: SessionRecord = record(row, 1)?;
                    let Some(at) = latest.get(&s.token_hash) else {
                        continue;
                    };
                    if s.last_seen_at >= *at {
                        continue;
                    }
                    s.last_seen_at = *at;
                    let key: Vec<u8> = row.try_get(0)?;
                    hashes.push(Hidden(key));
                    recs.push(json(&s)?);
                }
                if !hashes.is_empty() {
                    execute(
                        t,
                        "UPDATE sessions SET record = u.record \
                     FROM UNNEST($1::bytea[], $2::jsonb[]) AS u(token_hash, record) \
                     WHERE sessions.token_hash = u.token_hash",
                        &[&hashes, &recs],
                    )
                    .await?;
                }
                Ok(())
            })
        })
        .await
        .map_err(into_store)
}

pub(super) async fn sweep_sessions(
    store: &PgStore,
    now: OffsetDateTime,
) -> Result<u64, StoreError> {
    store
        .tx("sweep_sessions", &now, |t, now| {
            Box::pin(async move {
                let edge = query(
                    t,
                    "SELECT token_hash, record FROM sessions WHERE expires_at = $1 FOR UPDATE",
                    &[now],
                )
                .await?;
                let edge = expired_at_boundary(
                    &edge,
                    *now,
                    |r| Ok(Hidden(r.try_get::<_, Vec<u8>>(0)?)),
                    |s: &SessionRecord| s.expires_at,
                )?;
                execute(
                    t,
                    "DELETE FROM sessions WHERE expires_at < $1 OR token_hash = ANY($2)",
                    &[now, &edge],
                )
                .await
            })
        })
        .await
        .map_err(into_store)
}

/// Deletes a user's sessions as `end` says; returns how many.
pub(super) async fn delete_sessions_of<C: GenericClient>(
    c: &C,
    user_id: &str,
    end: EndSessions,
) -> Result<u64, Fail> {
    match end {
        EndSessions::All => {
            execute(c, "DELETE FROM sessions WHERE user_id = $1", &[&user_id]).await
        }
        EndSessions::AllBut(keep) => {
            execute(
                c,
                "DELETE FROM sessions WHERE user_id = $1 AND token_hash <> $2",
                &[&user_id, &hash(&keep)],
            )
            .await
        }
    }
}

// --- OAuth states ----------------------------------------------------------

pub(super) async fn insert_oauth_state(
    store: &PgStore,
    state: OAuthState,
) -> Result<(), StoreError> {
    let args = (json(&state)?, state);
    store
        .one("insert_oauth_state", &args, |c, (rec, s)| {
            Box::pin(async move {
                execute(
                    c,
                    "INSERT INTO oauth_states (state, expires_at, record) VALUES ($1, $2, $3) \
                 ON CONFLICT (state) DO UPDATE SET expires_at = EXCLUDED.expires_at, \
                 record = EXCLUDED.record",
                    &[&Hidden(s.state.as_str()), &s.expires_at, rec],
                )
                .await?;
                Ok(())
            })
        })
        .await
        .map_err(into_store)
}

pub(super) async fn take_oauth_state(
    store: &PgStore,
    state: &str,
) -> Result<Option<OAuthState>, StoreError> {
    store
        .one("take_oauth_state", state, |c, state| {
            Box::pin(async move {
                match query_opt(
                    c,
                    "DELETE FROM oauth_states WHERE state = $1 RETURNING record",
                    &[&Hidden(state)],
                )
                .await?
                {
                    Some(row) => Ok(Some(record(&row, 0)?)),
                    None => Ok(None),
                }
            })
        })
        .await
        .map_err(into_store)
}

pub(super) async fn sweep_oauth_states(
    store: &PgStore,
    now: OffsetDateTime,
) -> Result<u64, StoreError> {
    store
        .tx("sweep_oauth_states", &now, |t, now| {
            Box::pin(async move {
                let edge = query(
                    t,
                    "SELECT state, record FROM oauth_states WHERE expires_at = $1 FOR UPDATE",
                    &[now],
                )
                .await?;
                let edge = expired_at_boundary(
                    &edge,
                    *now,
                    |r| Ok(Hidden(r.try_get::<_, String>(0)?)),
                    |s: &OAuthState| s.expires_at,
                )?;
                execute(
                    t,
                    "DELETE FROM oauth_states WHERE expires_at < $1 OR state = ANY($2)",
                    &[now, &edge],
                )
                .await
            })
        })
        .await
        .map_err(into_store)
}

/// The rows whose `expires_at` column equals `now` to the microsecond may
/// still have expired by the record's nanoseconds: those are checked here,
/// so a sweep deletes exactly `expires_at < now`, as the sled backend does.
fn expired_at_boundary<K, R: serde::de::DeserializeOwned>(
    rows: &[Row],
    now: OffsetDateTime,
    key: impl Fn(&Row) -> Result<K, Fail>,
    expires: impl Fn(&R) -> OffsetDateTime,
) -> Result<Vec<K>, Fail> {
    let mut out = Vec::new();
    for row in rows {
        let r: R = record(row, 1)?;
        if expires(&r) < now {
            out.push(key(row)?);
        }
    }
    Ok(out)
}
