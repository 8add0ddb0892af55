//! Usage records: one multi-row insert per batch, totals and time buckets
//! aggregated in SQL. Counts are `u64` in the model and `bigint` here, so
//! each is saturated at `i64::MAX` on the way in and on the way out.

use super::error::{into_store, Fail};
use super::sql::{execute, query, Hidden};
use super::PgStore;
use crate::error::StoreError;
use crate::model::{UsageBucket, UsageQuery, UsageRecord, UsageRow};
use crate::store::{bucket_width, finite_cost};
use time::OffsetDateTime;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

/// `bigint`'s maximum, where a sum saturates.
const SATURATE: &str = "9223372036854775807";

pub(super) fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(super) fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// A batch as one array per column, for `UNNEST`.
#[derive(Default)]
struct Columns {
    at: Vec<OffsetDateTime>,
    user_id: Vec<String>,
    username: Vec<String>,
    token_id: Vec<Option<String>>,
    provider: Vec<String>,
    model: Vec<String>,
    prompt_tokens: Vec<i64>,
    completion_tokens: Vec<i64>,
    status: Vec<i32>,
    latency_ms: Vec<i64>,
    cost: Vec<f64>,
    requests: Vec<i64>,
}

pub(super) async fn record_usage(
    store: &PgStore,
    batch: Vec<UsageRecord>,
) -> Result<(), StoreError> {
    if batch.is_empty() {
        return Ok(());
    }
    let mut cols = Columns::default();
    for r in batch {
        cols.at.push(r.at);
        cols.user_id.push(r.user_id);
        cols.username.push(r.username);
        cols.token_id.push(r.token_id);
        cols.provider.push(r.provider);
        cols.model.push(r.model);
        cols.prompt_tokens.push(to_i64(r.prompt_tokens));
        cols.completion_tokens.push(to_i64(r.completion_tokens));
        cols.status.push(i32::from(r.status));
        cols.latency_ms.push(to_i64(r.latency_ms));
        cols.cost.push(finite_cost(r.cost));
        cols.requests.push(to_i64(r.requests));
    }
    store
        .one("record_usage", &cols, |c, cols| {
            Box::pin(async move {
                // One statement: the whole batch or none of it.
                execute(
                    c,
                    "INSERT INTO usage (at, user_id, username, token_id, provider, model, \
                     prompt_tokens, completion_tokens, status, latency_ms, cost, requests) \
                     SELECT * FROM UNNEST($1::timestamptz[], $2::text[], $3::text[], $4::text[], \
                     $5::text[], $6::text[], $7::bigint[], $8::bigint[], $9::int[], $10::bigint[], \
                     $11::float8[], $12::bigint[])",
                    &[
                        &cols.at,
                        &Hidden(&cols.user_id),
                        &Hidden(&cols.username),
                        &Hidden(&cols.token_id),
                        &cols.provider,
                        &cols.model,
                        &cols.prompt_tokens,
                        &cols.completion_tokens,
                        &cols.status,
                        &cols.latency_ms,
                        &cols.cost,
                        &cols.requests,
                    ],
                )
                .await?;
                Ok(())
            })
        })
        .await
        .map_err(into_store)
}

/// Parameters of a query, kept to be bound on every attempt.
type Params = Vec<Box<dyn ToSql + Sync + Send>>;

/// The `WHERE` clause of `q`, its parameters numbered after `params`: only
/// fixed fragments are joined, every value is bound.
fn filter(q: &UsageQuery, params: &mut Params) -> String {
    let mut conds: Vec<String> = Vec::new();
    let mut bind = |cond: &str, p: Box<dyn ToSql + Sync + Send>| {
        params.push(p);
        conds.push(format!("{cond} ${}", params.len()));
    };
    if let Some(u) = &q.user {
        bind("username =", Box::new(Hidden(u.clone())));
    }
    if let Some(m) = &q.model {
        bind("model =", Box::new(m.clone()));
    }
    if let Some(t) = q.since {
        bind("at >=", Box::new(t));
    }
    if let Some(t) = q.until {
        bind("at <", Box::new(t));
    }
    if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    }
}

async fn select(
    store: &PgStore,
    op: &'static str,
    sql: String,
    params: Params,
) -> Result<Vec<Row>, StoreError> {
    let args = (sql, params);
    store
        .one(op, &args, |c, (sql, params)| {
            Box::pin(async move {
                let refs: Vec<&(dyn ToSql + Sync)> =
                    params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect();
                query(c, sql, &refs).await
            })
        })
        .await
        .map_err(into_store)
}

pub(super) async fn usage_summary(
    store: &PgStore,
    q: UsageQuery,
) -> Result<Vec<UsageRow>, StoreError> {
    let mut params = Params::new();
    let sql = format!(
        "SELECT username, user_id, model, LEAST(sum(requests), {SATURATE})::bigint, \
         LEAST(sum(prompt_tokens), {SATURATE})::bigint, \
         LEAST(sum(completion_tokens), {SATURATE})::bigint, \
         LEAST(sum(prompt_tokens) + sum(completion_tokens), {SATURATE})::bigint, \
         sum(cost) \
         FROM usage{} GROUP BY user_id, username, model \
         ORDER BY username COLLATE \"C\", model COLLATE \"C\", user_id COLLATE \"C\"",
        filter(&q, &mut params)
    );
    let rows = select(store, "usage_summary", sql, params).await?;
    rows.iter()
        .map(|r| {
            Ok(UsageRow {
                user: r.try_get(0)?,
                user_id: r.try_get(1)?,
                model: r.try_get(2)?,
                requests: to_u64(r.try_get(3)?),
                prompt_tokens: to_u64(r.try_get(4)?),
                completion_tokens: to_u64(r.try_get(5)?),
                total_tokens: to_u64(r.try_get(6)?),
                cost: r.try_get(7)?,
            })
        })
        .collect::<Result<_, Fail>>()
        .map_err(|e| into_store(e.into_gatehouse()))
}

pub(super) async fn usage_buckets(
    store: &PgStore,
    q: UsageQuery,
    bucket_secs: u64,
) -> Result<Vec<UsageBucket>, StoreError> {
    let mut params: Params = vec![Box::new(bucket_width(bucket_secs)?)];
    let sql = format!(
        "SELECT (floor(extract(epoch FROM at) / $1::bigint) * $1::bigint)::bigint AS start, \
         LEAST(sum(requests), {SATURATE})::bigint, \
         LEAST(sum(prompt_tokens) + sum(completion_tokens), {SATURATE})::bigint \
         FROM usage{} GROUP BY 1 ORDER BY 1",
        filter(&q, &mut params)
    );
    let rows = select(store, "usage_buckets", sql, params).await?;
    rows.iter()
        .map(|r| {
            let start: i64 = r.try_get(0)?;
            Ok(UsageBucket {
                start: OffsetDateTime::from_unix_timestamp(start)
                    .map_err(|e| Fail::Backend(format!("usage bucket: {e}")))?,
                requests: to_u64(r.try_get(1)?),
                total_tokens: to_u64(r.try_get(2)?),
            })
        })
        .collect::<Result<_, Fail>>()
        .map_err(|e| into_store(e.into_gatehouse()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_saturate_both_ways() {
        assert_eq!(to_i64(u64::MAX), i64::MAX);
        assert_eq!(to_i64(7), 7);
        assert_eq!(to_u64(-1), 0);
        assert_eq!(to_u64(i64::MAX), i64::MAX as u64);
    }

    #[test]
    fn filters_bind_every_value() {
        let mut params: Params = vec![Box::new(60_i64)];
        let q = UsageQuery {
            user: Some("x' OR 1=1 --".into()),
            model: None,
            since: Some(OffsetDateTime::UNIX_EPOCH),
            until: Some(OffsetDateTime::UNIX_EPOCH),
        };
        assert_eq!(
            filter(&q, &mut params),
            " WHERE username = $2 AND at >= $3 AND at < $4"
        );
        assert_eq!(params.len(), 4);
        assert_eq!(filter(&UsageQuery::default(), &mut Params::new()), "");
    }
}
