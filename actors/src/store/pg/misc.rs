//! The audit log, avatars and the health probe.

use super::error::into_store;
use super::sql::{execute, json, query, query_opt, records};
use super::PgStore;
use crate::error::{GatehouseError, StoreError};
use crate::model::AuditEvent;

pub(super) async fn append_audit(store: &PgStore, event: AuditEvent) -> Result<(), StoreError> {
    let args = (json(&event)?, event.at);
    store
        .one("append_audit", &args, |c, (rec, at)| {
            Box::pin(async move {
                execute(
                    c,
                    "INSERT INTO audit (at, record) VALUES ($1, $2)",
                    &[at, rec],
                )
                .await?;
                Ok(())
            })
        })
        .await
        .map_err(into_store)
}

pub(super) async fn list_audit(
    store: &PgStore,
    limit: usize,
) -> Result<Vec<AuditEvent>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut events: Vec<AuditEvent> = store
        .one("list_audit", &limit, |c, limit| {
            Box::pin(async move {
                let rows = query(
                    c,
                    "SELECT record FROM audit ORDER BY at DESC, seq DESC LIMIT $1",
                    &[limit],
                )
                .await?;
                records(&rows)
            })
        })
        .await
        .map_err(into_store)?;
    // Newest first to the nanosecond (the column keeps microseconds);
    // stable, so equal times stay newest-inserted first.
    events.sort_by_key(|e| std::cmp::Reverse(e.at));
    Ok(events)
}

pub(super) async fn check_writable(store: &PgStore) -> Result<(), StoreError> {
    let probe = hex::encode(crate::ids::random_bytes::<8>());
    store
        .one("check_writable", &probe, |c, probe| {
            Box::pin(async move {
                execute(
                    c,
                    "INSERT INTO meta (k, v) VALUES ('ready_probe', $1) \
                 ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v",
                    &[probe],
                )
                .await?;
                Ok(())
            })
        })
        .await
        .map_err(into_store)
}

pub(super) async fn put_avatar(
    store: &PgStore,
    user_id: &str,
    content_type: &str,
    data: Vec<u8>,
) -> Result<(), GatehouseError> {
    let args = (user_id.to_owned(), content_type.to_owned(), data);
    store
        .tx("put_avatar", &args, |t, (id, ct, data)| {
            Box::pin(async move {
                if query_opt(t, "SELECT 1 FROM users WHERE id = $1 FOR SHARE", &[id]).await?.is_none() {
                    return Err(GatehouseError::NotFound.into());
                }
                execute(
                    t,
                    "INSERT INTO avatars (user_id, content_type, data, updated_at) VALUES ($1, $2, $3, now()) \
                     ON CONFLICT (user_id) DO UPDATE SET content_type = EXCLUDED.content_type, data = EXCLUDED.data, updated_at = now()",
                    &[id, ct, data],
                )
                .await?;
                Ok(())
            })
        })
        .await
}

pub(super) async fn get_avatar(
    store: &PgStore,
    user_id: &str,
) -> Result<Option<(String, Vec<u8>)>, StoreError> {
    store
        .one("get_avatar", user_id, |c, id| {
            Box::pin(async move {
                let row = query_opt(
                    c,
                    "SELECT content_type, data FROM avatars WHERE user_id = $1",
                    &[&id],
                )
                .await?;
                Ok(row.map(|r| (r.get::<_, String>(0), r.get::<_, Vec<u8>>(1))))
            })
        })
        .await
        .map_err(into_store)
}
