//! Rate limits and budgets for operators: per-user and per-token overrides
//! of the config defaults (admin API and CLI), and where each subject
//! stands now. The model path's side is [`crate::gateway::limits`].

use crate::accounts::{self, Actor};
use crate::error::ApiError;
use crate::gateway::limits::effective;
use crate::AppState;
use gatehouse_actors::gateway::actor::PutLimits;
use gatehouse_actors::gateway::limits::MAX_BUDGET_PERIOD;
use gatehouse_actors::gateway::{LimitOverride, Limits};
use gatehouse_actors::tokens::ListTokens;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;

/// An override as sent: each field `null`/absent keeps the default.
#[derive(Debug, Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsPut {
    /// Requests per minute (0: none).
    pub rpm: Option<u64>,
    /// Tokens per minute (0: none).
    pub tpm: Option<u64>,
    /// Spend per budget period (0: none).
    pub budget: Option<f64>,
    /// Seconds, or a duration (`1d`, `30d`); at most 3650 days.
    #[schema(schema_with = seconds_or_duration)]
    pub budget_period: Option<Value>,
}

/// `budget_period`: a number of seconds, a duration string, or `null`.
fn seconds_or_duration() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
    let one_of = OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(1))
                .maximum(Some(MAX_BUDGET_PERIOD)),
        )
        .item(ObjectBuilder::new().schema_type(Type::String))
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .build();
    Schema::OneOf(one_of)
}

/// Where a subject stands against its limits now.
#[derive(Serialize, ToSchema)]
pub struct LimitsView {
    /// `user:ID` or `token:ID`.
    pub subject: String,
    /// The limits in force (the override over the defaults).
    pub limits: Limits,
    /// The subject's own override, if any.
    #[serde(rename = "override")]
    pub overrides: Option<LimitOverride>,
    pub current: Current,
}

/// The counters of the current windows.
#[derive(Serialize, ToSchema)]
pub struct Current {
    pub rpm: Meter,
    pub tpm: Meter,
    pub spend: Meter,
}

/// One counter: how much of its limit is used in the window ending at `resets_at`.
#[derive(Serialize, ToSchema)]
pub struct Meter {
    pub used: f64,
    /// 0: none (an integer for `rpm` and `tpm`).
    #[schema(value_type = f64)]
    pub limit: serde_json::Number,
    #[schema(format = DateTime)]
    pub resets_at: String,
}

/// `GET /admin/api/limits`: the defaults and every override's view.
#[derive(Serialize, ToSchema)]
pub struct LimitsList {
    pub defaults: Defaults,
    #[schema(inline)]
    pub object: crate::http::ListObject,
    pub data: Vec<LimitsView>,
}

/// The limits of users and of tokens that have no override.
#[derive(Serialize, ToSchema)]
pub struct Defaults {
    pub user: Limits,
    pub token: Limits,
}

impl LimitsPut {
    pub fn validate(self) -> Result<LimitOverride, ApiError> {
        let bad = |m: &str| ApiError::unprocessable("invalid_value", m.to_owned());
        if let Some(b) = self.budget {
            if !b.is_finite() || b < 0.0 {
                return Err(bad("budget must be 0 (none) or more"));
            }
        }
        let budget_period = match self.budget_period {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => Some(n.as_u64().filter(|s| *s > 0).ok_or_else(|| {
                bad("budget_period must be a positive number of seconds or a duration such as 30d")
            })?),
            Some(Value::String(s)) => Some(
                crate::config::parse_duration(&s)
                    .ok()
                    .map(|d| d.as_secs())
                    .filter(|s| *s > 0)
                    .ok_or_else(|| bad("budget_period must be a duration such as 1d or 30d"))?,
            ),
            Some(_) => return Err(bad("budget_period must be seconds or a duration")),
        };
        if budget_period.is_some_and(|p| p > MAX_BUDGET_PERIOD) {
            return Err(bad("budget_period must be at most 3650 days"));
        }
        Ok(LimitOverride {
            rpm: self.rpm,
            tpm: self.tpm,
            budget: self.budget,
            budget_period,
        })
    }
}

/// `user:ID` of the user named `name` (`404` without one).
pub async fn user_subject(state: &AppState, name: &str) -> Result<String, ApiError> {
    let user = crate::tokens::user_by_name(state, name)
        .await
        .map_err(|e| match e.status.as_u16() {
            404 => ApiError::not_found("no such user"),
            _ => e,
        })?;
    Ok(format!("user:{}", user.id))
}

/// `token:ID` of an existing gateway token (`404` without one).
pub async fn token_subject(state: &AppState, id: &str) -> Result<String, ApiError> {
    let all = state
        .handles
        .users()
        .send(ListTokens { user_id: None })
        .await??;
    if all.iter().any(|t| t.record.id == id) {
        Ok(format!("token:{id}"))
    } else {
        Err(ApiError::not_found("no such token"))
    }
}

/// Where `subject` stands: its effective limits, its override, and the
/// counters of the current windows.
pub async fn view(state: &AppState, subject: &str) -> Result<LimitsView, ApiError> {
    let limits = effective(state, subject);
    let catalog = state.handles.catalog().load();
    let now = state.handles.now().unix_timestamp();
    let counters = state
        .handles
        .store()
        .counters(subject, now)
        .await
        .map_err(gatehouse_actors::GatehouseError::from)?;
    let current = |metric: &str, width: i64| {
        let start = now - now.rem_euclid(width);
        counters
            .iter()
            .find(|c| c.metric == metric && c.start == start)
            .map_or(0.0, |c| c.value)
    };
    let resets = |width: i64| {
        let end = now - now.rem_euclid(width) + width;
        time::OffsetDateTime::from_unix_timestamp(end)
            .map(crate::rfc3339)
            .unwrap_or_default()
    };
    let period = limits.budget_period.min(i64::MAX as u64) as i64;
    Ok(LimitsView {
        subject: subject.to_owned(),
        limits,
        overrides: catalog.limits_of(subject).cloned(),
        current: Current {
            rpm: Meter {
                used: current("rpm", 60),
                limit: limits.rpm.into(),
                resets_at: resets(60),
            },
            tpm: Meter {
                used: current("tpm", 60),
                limit: limits.tpm.into(),
                resets_at: resets(60),
            },
            spend: Meter {
                used: current("spend", period),
                // Finite: validated at load and on every change.
                limit: serde_json::Number::from_f64(limits.budget).unwrap_or_else(|| 0.into()),
                resets_at: resets(period),
            },
        },
    })
}

pub async fn set(
    state: &AppState,
    actor: &Actor,
    subject: &str,
    limits: Option<LimitOverride>,
) -> Result<(), ApiError> {
    let clearing = limits.is_none();
    let details = json!({"limits": limits});
    let existed = state
        .handles
        .providers()
        .send(PutLimits {
            subject: subject.to_owned(),
            limits,
        })
        .await??;
    if clearing && !existed {
        return Ok(());
    }
    let action = if clearing {
        "limits.clear"
    } else {
        "limits.set"
    };
    accounts::audit(state, actor, action, Some(subject.to_owned()), details).await;
    Ok(())
}

/// The defaults and every subject with an override.
pub async fn list(state: &AppState) -> Result<LimitsList, ApiError> {
    let subjects: Vec<String> = state
        .handles
        .catalog()
        .load()
        .limit_overrides()
        .keys()
        .cloned()
        .collect();
    let mut data = Vec::new();
    for s in subjects {
        data.push(view(state, &s).await?);
    }
    Ok(LimitsList {
        defaults: Defaults {
            user: state.config.limits.user,
            token: state.config.limits.token,
        },
        object: crate::http::ListObject::List,
        data,
    })
}
