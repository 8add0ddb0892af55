//! `GET /admin/api/usage`: calls and tokens per user and model over a time
//! range, with totals (and, with `bucket=SECONDS`, calls over time).

use crate::error::ApiError;
use crate::AppState;
use actix_web::{web, HttpResponse};
use gatehouse_actors::gateway::usage::FlushUsage;
use gatehouse_actors::model::{UsageQuery, UsageRow};
use gatehouse_actors::GatehouseError;
use serde_json::json;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

#[derive(serde::Deserialize)]
pub struct UsageParams {
    user: Option<String>,
    model: Option<String>,
    since: Option<String>,
    until: Option<String>,
    /// Seconds per bucket of the `series` (omitted: no series).
    bucket: Option<u64>,
}

fn when(name: &str, value: Option<&str>) -> Result<Option<OffsetDateTime>, ApiError> {
    value
        .filter(|v| !v.is_empty())
        .map(|v| {
            OffsetDateTime::parse(v, &Rfc3339).map_err(|_| {
                ApiError::unprocessable("invalid_value", format!("{name} must be an RFC 3339 time"))
            })
        })
        .transpose()
}

pub async fn usage(
    q: web::Query<UsageParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let query = UsageQuery {
        user: q.user.clone().filter(|u| !u.is_empty()),
        model: q.model.clone().filter(|m| !m.is_empty()),
        since: when("since", q.since.as_deref())?,
        until: when("until", q.until.as_deref())?,
    };
    if let Some(b) = q.bucket {
        if !(60..=31 * 86_400).contains(&b) {
            return Err(ApiError::unprocessable(
                "invalid_value",
                "bucket must be 60 to 2678400 seconds",
            ));
        }
    }
    // What is still waiting in memory counts too.
    if let Err(e) = state.handles.usage().send(FlushUsage).await? {
        tracing::warn!(error = %e, "usage flush before a report failed");
    }
    let store = state.handles.store();
    let rows = store
        .usage_summary(query.clone())
        .await
        .map_err(GatehouseError::from)?;
    let mut totals = UsageRow {
        user: String::new(),
        user_id: String::new(),
        model: String::new(),
        requests: 0,
        prompt_tokens: 0,
        completion_tokens: 0,
        total_tokens: 0,
        cost: 0.0,
    };
    for r in &rows {
        totals.requests += r.requests;
        totals.prompt_tokens += r.prompt_tokens;
        totals.completion_tokens += r.completion_tokens;
        totals.total_tokens += r.total_tokens;
        totals.cost += r.cost;
    }
    let mut body = json!({
        "object": "list",
        "data": rows,
        "totals": {
            "requests": totals.requests,
            "prompt_tokens": totals.prompt_tokens,
            "completion_tokens": totals.completion_tokens,
            "total_tokens": totals.total_tokens,
            "cost": totals.cost,
        },
    });
    // Where the user stands against their limits now.
    if let Some(name) = query.user.as_deref() {
        if let Ok(subject) = crate::limits::user_subject(&state, name).await {
            body["limits"] = crate::limits::view(&state, &subject).await?;
        }
    }
    if let Some(bucket) = q.bucket {
        let series = store
            .usage_buckets(query, bucket)
            .await
            .map_err(GatehouseError::from)?;
        body["series"] = json!(series);
    }
    Ok(HttpResponse::Ok().json(body))
}
