//! Durable tasks, their events and idempotency keys, as plain columns.
//!
//! A save is one transaction: the idempotency key first (an insert that
//! replaces only an expired record), then the task under its version check,
//! then the events; a refusal found on the way rolls back what was written.
//! A claim is one transaction that picks its tasks with `FOR UPDATE SKIP
//! LOCKED`, so instances claiming together never get the same task.

use super::error::{into_store, Fail};
use super::sql::{execute, query, query_opt, Hidden};
use super::usage::{to_i64, to_u64};
use super::{PgStore, TxEnd};
use crate::error::StoreError;
use crate::model::{IdempotencyRecord, SaveTask, TaskEvent, TaskRecord, TaskStatus};
use crate::store::check_task_events;
use time::OffsetDateTime;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

/// The columns [`task_from`] reads, in its order.
const TASK_COLUMNS: &str = "id, kind, status, owner, owner_name, token_id, input, \
     requires_approval, created_at, updated_at, result, error, attempts, external_id, \
     claimed_by, claim_until, events, version";

/// The columns [`idem_from`] reads, in its order.
const IDEM_COLUMNS: &str =
    "principal, key, fingerprint, status, body, task_id, created_at, expires_at";

/// What an instance may claim at `$1`, as [`TaskRecord::claimable`] says.
const CLAIMABLE: &str = "status IN ('queued', 'running') \
     AND (claimed_by IS NULL OR claim_until IS NULL OR claim_until <= $1)";

fn task_from(row: &Row) -> Result<TaskRecord, Fail> {
    let status: &str = row.try_get(2)?;
    let status = TaskStatus::parse(status)
        .ok_or_else(|| StoreError::Corrupt(format!("task status {status:?}")))?;
    Ok(TaskRecord {
        id: row.try_get(0)?,
        kind: row.try_get(1)?,
        status,
        owner: row.try_get(3)?,
        owner_name: row.try_get(4)?,
        token_id: row.try_get(5)?,
        input: row.try_get(6)?,
        requires_approval: row.try_get(7)?,
        created_at: row.try_get(8)?,
        updated_at: row.try_get(9)?,
        result: row.try_get(10)?,
        error: row.try_get(11)?,
        attempts: u32::try_from(row.try_get::<_, i32>(12)?).unwrap_or(0),
        external_id: row.try_get(13)?,
        claimed_by: row.try_get(14)?,
        claim_until: row.try_get(15)?,
        events: to_u64(row.try_get(16)?),
        version: to_u64(row.try_get(17)?),
    })
}

fn idem_from(row: &Row) -> Result<IdempotencyRecord, Fail> {
    Ok(IdempotencyRecord {
        principal: row.try_get(0)?,
        key: row.try_get(1)?,
        fingerprint: row.try_get(2)?,
        status: u16::try_from(row.try_get::<_, i32>(3)?)
            .map_err(|_| StoreError::Corrupt("idempotency record status".into()))?,
        body: row.try_get(4)?,
        task_id: row.try_get(5)?,
        created_at: row.try_get(6)?,
        expires_at: row.try_get(7)?,
    })
}

/// A task's columns as parameters `$1`…`$18`, in [`TASK_COLUMNS`] order.
struct TaskParams {
    attempts: i32,
    events: i64,
    version: i64,
    /// `version - 1`: what an update expects stored.
    previous: i64,
}

impl TaskParams {
    fn of(t: &TaskRecord) -> Self {
        TaskParams {
            attempts: i32::try_from(t.attempts).unwrap_or(i32::MAX),
            events: to_i64(t.events),
            version: to_i64(t.version),
            previous: to_i64(t.version.saturating_sub(1)),
        }
    }
}

async fn write_task(
    t: &deadpool_postgres::Transaction<'_>,
    task: &TaskRecord,
) -> Result<bool, Fail> {
    let p = TaskParams::of(task);
    let (owner, owner_name, token_id) = (
        Hidden(&task.owner),
        Hidden(&task.owner_name),
        Hidden(&task.token_id),
    );
    let (input, result, error) = (
        Hidden(&task.input),
        Hidden(&task.result),
        Hidden(&task.error),
    );
    let status = task.status.as_str();
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![
        &task.id,
        &task.kind,
        &status,
        &owner,
        &owner_name,
        &token_id,
        &input,
        &task.requires_approval,
        &task.created_at,
        &task.updated_at,
        &result,
        &error,
        &p.attempts,
        &task.external_id,
        &task.claimed_by,
        &task.claim_until,
        &p.events,
        &p.version,
    ];
    let n = if task.version == 1 {
        // New: only when no task has this id.
        execute(
            t,
            &format!(
                "INSERT INTO tasks ({TASK_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, \
                 $10, $11, $12, $13, $14, $15, $16, $17, $18) ON CONFLICT (id) DO NOTHING"
            ),
            &params,
        )
        .await?
    } else {
        // A replacement: only over the version it was based on.
        params.push(&p.previous);
        execute(
            t,
            "UPDATE tasks SET kind = $2, status = $3, owner = $4, owner_name = $5, \
             token_id = $6, input = $7, requires_approval = $8, created_at = $9, \
             updated_at = $10, result = $11, error = $12, attempts = $13, external_id = $14, \
             claimed_by = $15, claim_until = $16, events = $17, version = $18 \
             WHERE id = $1 AND version = $19",
            &params,
        )
        .await?
    };
    Ok(n == 1)
}

pub(super) async fn save_task(
    store: &PgStore,
    task: TaskRecord,
    events: Vec<TaskEvent>,
    idem: Option<IdempotencyRecord>,
) -> Result<SaveTask, StoreError> {
    check_task_events(&task, &events)?;
    if task.version == 0 {
        // Neither new (1) nor a replacement of a stored version.
        return Ok(SaveTask::Stale);
    }
    let args = (task, events, idem);
    store
        .tx_ending("save_task", &args, |t, (task, events, idem)| {
            Box::pin(async move {
                if let Some(r) = idem {
                    // Waits for a concurrent insert of the same key to end,
                    // and then locks the stored row even when it keeps it.
                    let status = i32::from(r.status);
                    let inserted = query_opt(
                        t,
                        &format!(
                            "INSERT INTO idempotency_keys ({IDEM_COLUMNS}) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                             ON CONFLICT (principal, key) DO UPDATE SET \
                             fingerprint = EXCLUDED.fingerprint, status = EXCLUDED.status, \
                             body = EXCLUDED.body, task_id = EXCLUDED.task_id, \
                             created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at \
                             WHERE idempotency_keys.expires_at <= EXCLUDED.created_at \
                             RETURNING 1"
                        ),
                        &[
                            &Hidden(&r.principal),
                            &Hidden(&r.key),
                            &Hidden(&r.fingerprint),
                            &status,
                            &Hidden(&r.body),
                            &r.task_id,
                            &r.created_at,
                            &r.expires_at,
                        ],
                    )
                    .await?;
                    if inserted.is_none() {
                        let row = query_opt(
                            t,
                            &format!(
                                "SELECT {IDEM_COLUMNS} FROM idempotency_keys \
                                 WHERE principal = $1 AND key = $2"
                            ),
                            &[&Hidden(&r.principal), &Hidden(&r.key)],
                        )
                        .await?
                        .ok_or_else(|| {
                            Fail::Backend("save_task: the idempotency record vanished".into())
                        })?;
                        return Ok(TxEnd::Rollback(SaveTask::KeyTaken(idem_from(&row)?)));
                    }
                }
                if !write_task(t, task).await? {
                    return Ok(TxEnd::Rollback(SaveTask::Stale));
                }
                if !events.is_empty() {
                    let seq: Vec<i64> = events.iter().map(|e| to_i64(e.seq)).collect();
                    let at: Vec<OffsetDateTime> = events.iter().map(|e| e.at).collect();
                    let kind: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
                    let data: Vec<&serde_json::Value> = events.iter().map(|e| &e.data).collect();
                    // A seq stored already violates the primary key: an error, all undone.
                    execute(
                        t,
                        "INSERT INTO task_events (task_id, seq, at, kind, data) \
                         SELECT $1::text, u.* FROM UNNEST($2::bigint[], $3::timestamptz[], \
                         $4::text[], $5::jsonb[]) AS u",
                        &[&task.id, &seq, &at, &kind, &Hidden(&data)],
                    )
                    .await?;
                }
                Ok(TxEnd::Commit(SaveTask::Saved))
            })
        })
        .await
        .map_err(into_store)
}

pub(super) async fn get_task(store: &PgStore, id: &str) -> Result<Option<TaskRecord>, StoreError> {
    store
        .one("get_task", id, |c, id| {
            Box::pin(async move {
                let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1");
                match query_opt(c, &sql, &[&id]).await? {
                    Some(row) => Ok(Some(task_from(&row)?)),
                    None => Ok(None),
                }
            })
        })
        .await
        .map_err(into_store)
}

pub(super) async fn load_tasks(store: &PgStore) -> Result<Vec<TaskRecord>, StoreError> {
    store
        .one("load_tasks", &(), |c, _| {
            Box::pin(async move {
                let sql = format!(
                    "SELECT {TASK_COLUMNS} FROM tasks ORDER BY created_at, id COLLATE \"C\""
                );
                query(c, &sql, &[]).await?.iter().map(task_from).collect()
            })
        })
        .await
        .map_err(into_store)
}

pub(super) async fn task_events(
    store: &PgStore,
    task_id: &str,
    after: u64,
) -> Result<Vec<TaskEvent>, StoreError> {
    let args = (task_id, to_i64(after));
    store
        .one("task_events", &args, |c, (id, after)| {
            Box::pin(async move {
                let rows = query(
                    c,
                    "SELECT task_id, seq, at, kind, data FROM task_events \
                     WHERE task_id = $1 AND seq > $2 ORDER BY seq",
                    &[id, after],
                )
                .await?;
                rows.iter()
                    .map(|r| {
                        Ok(TaskEvent {
                            task_id: r.try_get(0)?,
                            seq: to_u64(r.try_get(1)?),
                            at: r.try_get(2)?,
                            kind: r.try_get(3)?,
                            data: r.try_get(4)?,
                        })
                    })
                    .collect()
            })
        })
        .await
        .map_err(into_store)
}

pub(super) async fn get_idempotency(
    store: &PgStore,
    principal: &str,
    key: &str,
    now: OffsetDateTime,
) -> Result<Option<IdempotencyRecord>, StoreError> {
    let args = (principal, key, now);
    store
        .one("get_idempotency", &args, |c, (principal, key, now)| {
            Box::pin(async move {
                let sql = format!(
                    "SELECT {IDEM_COLUMNS} FROM idempotency_keys \
                     WHERE principal = $1 AND key = $2 AND expires_at > $3"
                );
                match query_opt(c, &sql, &[&Hidden(principal), &Hidden(key), now]).await? {
                    Some(row) => Ok(Some(idem_from(&row)?)),
                    None => Ok(None),
                }
            })
        })
        .await
        .map_err(into_store)
}

pub(super) async fn sweep_idempotency(
    store: &PgStore,
    now: OffsetDateTime,
) -> Result<u64, StoreError> {
    store
        .one("sweep_idempotency", &now, |c, now| {
            Box::pin(async move {
                execute(
                    c,
                    "DELETE FROM idempotency_keys WHERE expires_at <= $1",
                    &[now],
                )
                .await
            })
        })
        .await
        .map_err(into_store)
}

pub(super) async fn claim_tasks(
    store: &PgStore,
    instance: &str,
    now: OffsetDateTime,
    until: OffsetDateTime,
    limit: usize,
) -> Result<Vec<TaskRecord>, StoreError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let args = (
        instance,
        now,
        until,
        i64::try_from(limit).unwrap_or(i64::MAX),
    );
    let mut claimed = store
        .tx("claim_tasks", &args, |t, (instance, now, until, limit)| {
            Box::pin(async move {
                // Rows another claim holds are skipped, not waited for.
                let ids: Vec<String> = query(
                    t,
                    &format!(
                        "SELECT id FROM tasks WHERE {CLAIMABLE} \
                         ORDER BY created_at, id COLLATE \"C\" LIMIT $2 FOR UPDATE SKIP LOCKED"
                    ),
                    &[now, limit],
                )
                .await?
                .iter()
                .map(|r| r.try_get(0))
                .collect::<Result<_, _>>()?;
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let rows = query(
                    t,
                    &format!(
                        "UPDATE tasks SET claimed_by = $2, claim_until = $3, version = version + 1 \
                         WHERE id = ANY($1) RETURNING {TASK_COLUMNS}"
                    ),
                    &[&ids, instance, until],
                )
                .await?;
                rows.iter().map(task_from).collect::<Result<Vec<_>, Fail>>()
            })
        })
        .await
        .map_err(into_store)?;
    // RETURNING keeps no order: oldest first, as selected.
    claimed.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    Ok(claimed)
}

pub(super) async fn open_tasks(store: &PgStore, cap: usize) -> Result<usize, StoreError> {
    let cap = i64::try_from(cap).unwrap_or(i64::MAX);
    store
        .one("open_tasks", &cap, |c, cap| {
            Box::pin(async move {
                // Counts through the (status, created_at) index, no further than cap.
                let row = query_opt(
                    c,
                    "SELECT count(*) FROM (SELECT 1 FROM tasks \
                     WHERE status IN ('queued', 'running') LIMIT $1) open",
                    &[cap],
                )
                .await?;
                let n: i64 = match row {
                    Some(r) => r.try_get(0)?,
                    None => 0,
                };
                Ok(usize::try_from(n).unwrap_or(0))
            })
        })
        .await
        .map_err(into_store)
}
