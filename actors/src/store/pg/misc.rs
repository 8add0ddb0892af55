//! The audit log and the health probe.

use super::error::into_store;
use super::sql::{execute, json, query, records};
use super::PgStore;
use crate::error::StoreError;
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
