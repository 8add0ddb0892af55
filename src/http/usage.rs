//! `GET /admin/api/usage`: calls and tokens per user and model over a time
//! range, with totals (and, with `bucket=SECONDS`, calls over time).

use crate::error::ApiError;
use crate::error::ErrorBody;
use crate::AppState;
use actix_web::{web, HttpResponse};
use gatehouse_actors::gateway::usage::FlushUsage;
use gatehouse_actors::model::{UsageBucket, UsageQuery, UsageRow};
use gatehouse_actors::GatehouseError;
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

#[derive(serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageParams {
    /// Only this username's calls.
    user: Option<String>,
    /// Only this model's calls (`provider/model`).
    model: Option<String>,
    /// RFC 3339, inclusive.
    since: Option<String>,
    /// RFC 3339, exclusive.
    until: Option<String>,
    /// Seconds per bucket of the `series` (omitted: no series), 60 to 31 days.
    #[param(minimum = 60, maximum = 2678400)]
    bucket: Option<u64>,
}

/// Usage per user and model, with totals.
#[derive(Serialize, ToSchema)]
pub struct Usage {
    #[schema(inline)]
    pub object: crate::http::ListObject,
    pub data: Vec<UsageRow>,
    pub totals: UsageTotals,
    /// With `user`: where that user stands against their limits now.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub limits: Option<crate::limits::LimitsView>,
    /// With `bucket`: calls over time.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub series: Option<Vec<UsageBucket>>,
}

/// The sums of the rows.
#[derive(Serialize, ToSchema)]
pub struct UsageTotals {
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    pub cost: f64,
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

#[utoipa::path(get, path = "/admin/api/usage", tag = "admin", security(("bearer" = []), ("api_key" = []), ("session_cookie" = []), ("session_token" = [])),
    params(UsageParams),
    responses(
        (status = 200, description = "Usage per user and model, with totals", body = Usage),
        (status = 422, description = "A time that is not RFC 3339, or a bucket out of range", body = ErrorBody),
    ))]
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
    let mut totals = UsageTotals {
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
    // Where the user stands against their limits now.
    let mut limits = None;
    if let Some(name) = query.user.as_deref() {
        if let Ok(subject) = crate::limits::user_subject(&state, name).await {
            limits = Some(crate::limits::view(&state, &subject).await?);
        }
    }
    let series = match q.bucket {
        Some(bucket) => Some(
            store
                .usage_buckets(query, bucket)
                .await
                .map_err(GatehouseError::from)?,
        ),
        None => None,
    };
    let body = Usage {
        object: crate::http::ListObject::List,
        data: rows,
        totals,
        limits,
        series,
    };
    Ok(HttpResponse::Ok().json(body))
}
