//! Rate-limit and budget counters: a reservation is one transaction whose
//! conditional upserts lock each counter row, so concurrent instances see
//! each other's draws and never pass a limit together.

use super::error::into_store;
use super::sql::{execute, query, query_opt};
use super::{PgStore, TxEnd};
use crate::error::StoreError;
use crate::model::{Counter, Draw, Reserve};

/// Draws in one order everywhere, so two reservations never wait on each other's rows crosswise.
fn sorted(mut draws: Vec<Draw>) -> Vec<Draw> {
    draws.sort_by(|a, b| (&a.subject, &a.metric, a.start).cmp(&(&b.subject, &b.metric, b.start)));
    draws
}

pub(super) async fn reserve(store: &PgStore, draws: Vec<Draw>) -> Result<Reserve, StoreError> {
    if let Some(i) = draws.iter().position(|d| d.amount > d.limit) {
        return Ok(Reserve::Refused(i));
    }
    let order: Vec<Draw> = sorted(draws.clone());
    let args = (draws, order);
    store
        .tx_ending("reserve", &args, |t, (draws, order)| {
            Box::pin(async move {
                for d in order {
                    let row = query_opt(
                        t,
                        "INSERT INTO limit_counters (subject, metric, window_start, window_end, value) \
                         VALUES ($1, $2, $3, $4, $5) \
                         ON CONFLICT (subject, metric, window_start) DO UPDATE \
                         SET value = limit_counters.value + EXCLUDED.value \
                         WHERE limit_counters.value + EXCLUDED.value <= $6 \
                         RETURNING value",
                        &[&d.subject, &d.metric, &d.start, &d.end, &d.amount, &d.limit],
                    )
                    .await?;
                    if row.is_none() {
                        let i = draws.iter().position(|x| x == d).unwrap_or(0);
                        return Ok(TxEnd::Rollback(Reserve::Refused(i)));
                    }
                }
                Ok(TxEnd::Commit(Reserve::Granted))
            })
        })
        .await
        .map_err(into_store)
}

pub(super) async fn adjust(store: &PgStore, draws: Vec<Draw>) -> Result<(), StoreError> {
    let draws = sorted(draws);
    store
        .tx("adjust", &draws, |t, draws| {
            Box::pin(async move {
                for d in draws {
                    execute(
                        t,
                        "INSERT INTO limit_counters (subject, metric, window_start, window_end, value) \
                         VALUES ($1, $2, $3, $4, GREATEST($5::float8, 0)) \
                         ON CONFLICT (subject, metric, window_start) DO UPDATE \
                         SET value = GREATEST(limit_counters.value + $5::float8, 0)",
                        &[&d.subject, &d.metric, &d.start, &d.end, &d.amount],
                    )
                    .await?;
                }
                Ok(())
            })
        })
        .await
        .map_err(into_store)
}

pub(super) async fn counters(
    store: &PgStore,
    subject: &str,
    now: i64,
) -> Result<Vec<Counter>, StoreError> {
    let args = (subject.to_owned(), now);
    store
        .one("counters", &args, |c, (subject, now)| {
            Box::pin(async move {
                let rows = query(
                    c,
                    "SELECT metric, window_start, window_end, value FROM limit_counters \
                     WHERE subject = $1 AND window_end > $2 ORDER BY metric, window_start",
                    &[subject, now],
                )
                .await?;
                Ok(rows
                    .iter()
                    .map(|r| Counter {
                        metric: r.get(0),
                        start: r.get(1),
                        end: r.get(2),
                        value: r.get(3),
                    })
                    .collect())
            })
        })
        .await
        .map_err(into_store)
}

pub(super) async fn sweep_counters(store: &PgStore, now: i64) -> Result<u64, StoreError> {
    store
        .one("sweep_counters", &now, |c, now| {
            Box::pin(async move {
                execute(
                    c,
                    "DELETE FROM limit_counters WHERE window_end <= $1",
                    &[now],
                )
                .await
            })
        })
        .await
        .map_err(into_store)
}
