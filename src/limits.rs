//! Rate limits and budgets for operators: per-user and per-token overrides
//! of the config defaults (admin API and CLI), and where each subject
//! stands now. The model path's side is [`crate::gateway::limits`].

use crate::accounts::{self, Actor};
use crate::error::ApiError;
use crate::gateway::limits::effective;
use crate::AppState;
use gatehouse_actors::gateway::actor::PutLimits;
use gatehouse_actors::gateway::{LimitOverride, Limits};
use gatehouse_actors::tokens::ListTokens;
use serde::Deserialize;
use serde_json::{json, Value};

/// An override as sent: each field `null`/absent keeps the default.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LimitsPut {
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub budget: Option<f64>,
    /// Seconds, or a duration (`1d`, `30d`).
    pub budget_period: Option<Value>,
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

fn limits_json(l: &Limits) -> Value {
    json!({"rpm": l.rpm, "tpm": l.tpm, "budget": l.budget, "budget_period": l.budget_period})
}

/// Where `subject` stands: its effective limits, its override, and the
/// counters of the current windows.
pub async fn view(state: &AppState, subject: &str) -> Result<Value, ApiError> {
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
    Ok(json!({
        "subject": subject,
        "limits": limits_json(&limits),
        "override": catalog.limits_of(subject),
        "current": {
            "rpm": {"used": current("rpm", 60), "limit": limits.rpm, "resets_at": resets(60)},
            "tpm": {"used": current("tpm", 60), "limit": limits.tpm, "resets_at": resets(60)},
            "spend": {"used": current("spend", period), "limit": limits.budget, "resets_at": resets(period)},
        },
    }))
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
pub async fn list(state: &AppState) -> Result<Value, ApiError> {
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
    Ok(json!({
        "defaults": {
            "user": limits_json(&state.config.limits.user),
            "token": limits_json(&state.config.limits.token),
        },
        "object": "list",
        "data": data,
    }))
}
