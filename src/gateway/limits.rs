//! Rate limits and budgets on the model path. Before the upstream call the
//! call's estimated draw (one request, its estimated tokens and spend) is
//! reserved in the store for the user and for the token, all or none, so
//! instances sharing a database never grant more than a limit together.
//! When the call ends its [`Reservation`] settles: the estimate is replaced
//! by the real usage. A principal with no limits costs nothing here.

use crate::auth::{Principal, Via};
use crate::config::Price;
use crate::error::ApiError;
use crate::gateway::body::ApiBody;
use crate::AppState;
use gatehouse_actors::gateway::{Limits, Target};
use gatehouse_actors::model::{Draw, Reserve};
use gatehouse_actors::store::SharedStore;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Tokens assumed for the answer when the request sets no `max_tokens`.
const DEFAULT_COMPLETION: u64 = 512;

/// The limits that apply to a subject now: its override over the defaults.
pub fn effective(state: &AppState, subject: &str) -> Limits {
    let defaults = if subject.starts_with("token:") {
        state.config.limits.token
    } else {
        state.config.limits.user
    };
    match state.handles.catalog().load().limits_of(subject) {
        Some(o) => o.over(defaults),
        None => defaults,
    }
}

/// The subjects a principal's calls count against: its user, then its token.
pub fn subjects(p: &Principal) -> Vec<String> {
    let mut out = Vec::with_capacity(2);
    if p.user.is_some() {
        out.push(format!("user:{}", p.id));
    }
    if let Via::Token { id } = &p.via {
        out.push(format!("token:{id}"));
    }
    out
}

/// The most any of `targets` would charge for a call (fallbacks may differ).
fn price_of(state: &AppState, targets: &[Target]) -> Option<Price> {
    targets
        .iter()
        .filter_map(|t| state.config.prices.get(&*t.public).copied())
        .reduce(|a, b| if a.cost(1, 1) >= b.cost(1, 1) { a } else { b })
}

/// Prompt tokens from the body's size, completion tokens from its limit.
fn estimate(body: &ApiBody, body_len: usize) -> (u64, u64) {
    let prompt = (body_len as u64 / 4).max(1);
    let completion = ["max_completion_tokens", "max_tokens"]
        .iter()
        .find_map(|k| body.get::<u64>(k))
        .unwrap_or(DEFAULT_COMPLETION)
        .min(1_000_000);
    (prompt, completion)
}

/// A call's reserved draw, settled with the real usage when dropped.
pub struct Reservation {
    store: SharedStore,
    /// The `tpm` and `spend` draws as reserved.
    estimated: Vec<Draw>,
    used_tokens: AtomicU64,
    /// Spend in millionths.
    used_micros: AtomicU64,
}

impl Reservation {
    /// What the call really used (the last attempt's, from its usage record).
    pub fn used(&self, tokens: u64, cost: f64) {
        self.used_tokens.store(tokens, Ordering::Relaxed);
        self.used_micros.store(
            (cost * 1_000_000.0).round().max(0.0) as u64,
            Ordering::Relaxed,
        );
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let tokens = self.used_tokens.load(Ordering::Relaxed) as f64;
        let cost = self.used_micros.load(Ordering::Relaxed) as f64 / 1_000_000.0;
        let adjust: Vec<Draw> = self
            .estimated
            .iter()
            .filter_map(|d| {
                let real = if d.metric == "tpm" { tokens } else { cost };
                let delta = real - d.amount;
                (delta.abs() > f64::EPSILON).then(|| Draw {
                    amount: delta,
                    ..d.clone()
                })
            })
            .collect();
        if adjust.is_empty() {
            return;
        }
        let store = self.store.clone();
        let settle = async move {
            if let Err(e) = store.adjust(adjust).await {
                tracing::warn!(error = %e, "settling a limit reservation failed; the estimate stays counted");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(settle);
            }
            Err(_) => tracing::warn!(
                "no runtime to settle a limit reservation; the estimate stays counted"
            ),
        }
    }
}

fn window(now: i64, width: i64) -> (i64, i64) {
    let start = now - now.rem_euclid(width);
    (start, start + width)
}

/// Reserves the call's draw for every subject with a limit; `Ok(None)` when
/// none has one. Over a limit: `429` naming it, with `Retry-After`. A store
/// that cannot answer fails closed (`503`).
pub async fn reserve(
    state: &AppState,
    principal: &Principal,
    targets: &[Target],
    body: &ApiBody,
) -> Result<Option<std::sync::Arc<Reservation>>, ApiError> {
    // No limit anywhere (the default): nothing to reserve, nothing to format.
    if state.config.limits.user.is_unlimited()
        && state.config.limits.token.is_unlimited()
        && state.handles.catalog().load().limit_overrides().is_empty()
    {
        return Ok(None);
    }
    let subjects = subjects(principal);
    let limited: Vec<(String, Limits)> = subjects
        .into_iter()
        .map(|s| {
            let l = effective(state, &s);
            (s, l)
        })
        .filter(|(_, l)| !l.is_unlimited())
        .collect();
    if limited.is_empty() {
        return Ok(None);
    }
    let now = state.handles.now().unix_timestamp();
    let (prompt, completion) = estimate(body, body.len());
    let est_cost = price_of(state, targets).map_or(0.0, |p| p.cost(prompt, completion));
    let minute = window(now, 60);
    let mut draws = Vec::new();
    for (subject, l) in &limited {
        let mut add = |metric: &str, (start, end): (i64, i64), amount: f64, limit: f64| {
            draws.push(Draw {
                subject: subject.clone(),
                metric: metric.into(),
                start,
                end,
                amount,
                limit,
            })
        };
        if l.rpm > 0 {
            add("rpm", minute, 1.0, l.rpm as f64);
        }
        if l.tpm > 0 {
            add("tpm", minute, (prompt + completion) as f64, l.tpm as f64);
        }
        if l.budget > 0.0 {
            let period = window(now, l.budget_period.min(i64::MAX as u64) as i64);
            add("spend", period, est_cost, l.budget);
        }
    }
    let answer = state
        .handles
        .store()
        .reserve(draws.clone())
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "limit reservation failed; refusing the call");
            ApiError::unavailable()
        })?;
    match answer {
        Reserve::Granted => Ok(Some(std::sync::Arc::new(Reservation {
            store: state.handles.store().clone(),
            estimated: draws.into_iter().filter(|d| d.metric != "rpm").collect(),
            used_tokens: AtomicU64::new(0),
            used_micros: AtomicU64::new(0),
        }))),
        Reserve::Refused(i) => {
            let d = &draws[i];
            Err(refused(d, now))
        }
    }
}

fn refused(d: &Draw, now: i64) -> ApiError {
    let whose = if d.subject.starts_with("token:") {
        "this token's"
    } else {
        "your"
    };
    let wait = (d.end - now).max(1) as u64;
    let (code, what) = match d.metric.as_str() {
        "rpm" => (
            "requests_per_minute_exceeded",
            format!("requests-per-minute limit ({})", d.limit),
        ),
        "tpm" => (
            "tokens_per_minute_exceeded",
            format!("tokens-per-minute limit ({})", d.limit),
        ),
        _ => (
            "budget_exceeded",
            format!("spend budget ({:.4} per period)", d.limit),
        ),
    };
    let limit_hint = if d.metric == "tpm" && d.amount > d.limit {
        "; this request alone is estimated above it (lower max_tokens)"
    } else {
        ""
    };
    ApiError::too_many(
        code,
        format!("{whose} {what} is reached{limit_hint}; retry in {wait} s"),
        Duration::from_secs(wait),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_use_the_body_size_and_max_tokens() {
        let body = ApiBody::from_value(serde_json::json!({"max_tokens": 100}));
        assert_eq!(estimate(&body, 400), (100, 100));
        assert_eq!(
            estimate(&ApiBody::from_value(serde_json::json!({})), 0),
            (1, DEFAULT_COMPLETION)
        );
        let both =
            ApiBody::from_value(serde_json::json!({"max_tokens": 100, "max_completion_tokens": 7}));
        assert_eq!(estimate(&both, 8).1, 7);
    }

    #[test]
    fn windows_align_to_the_epoch() {
        assert_eq!(window(125, 60), (120, 180));
        assert_eq!(window(86_400 * 3 + 5, 86_400), (86_400 * 3, 86_400 * 4));
    }

    #[test]
    fn a_refusal_names_its_limit_and_when_to_retry() {
        let d = Draw {
            subject: "token:t1".into(),
            metric: "rpm".into(),
            start: 60,
            end: 120,
            amount: 1.0,
            limit: 5.0,
        };
        let e = refused(&d, 100);
        assert_eq!(e.status.as_u16(), 429);
        assert_eq!(e.code, "requests_per_minute_exceeded");
        assert_eq!(e.retry_after, Some(Duration::from_secs(20)));
        assert!(e
            .message
            .contains("this token's requests-per-minute limit (5)"));
    }
}
