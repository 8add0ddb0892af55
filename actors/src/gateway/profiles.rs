//! Credential profiles: the keys a provider may be called with, in order.
//! A request uses the first healthy one; a profile answered `401`/`403` is
//! marked failing (until its key changes), one answered `429` cools down
//! until the upstream's `Retry-After`. Health is atomics shared by every
//! worker, kept by the `ProviderActor` across catalog changes.

use super::Timeouts;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

/// A profile as configured or stored (its key in the clear: in memory only).
#[derive(Clone, PartialEq)]
pub struct ProfileSpec {
    pub name: String,
    /// The key, or `$VAR` / `${VAR}` to read it from the environment.
    pub api_key: String,
    pub order: i64,
    /// Extra headers sent with this key (`OpenAI-Organization`, `OpenAI-Project`, …).
    pub headers: Vec<(String, String)>,
}

impl std::fmt::Debug for ProfileSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProfileSpec")
            .field("name", &self.name)
            .field("order", &self.order)
            .finish_non_exhaustive()
    }
}

/// One usable credential of an offered provider.
pub struct Profile {
    pub name: Arc<str>,
    pub key: Arc<str>,
    pub headers: Vec<(String, String)>,
    pub order: i64,
    /// `config`, `api`, or `env` (the conventional variable).
    pub source: &'static str,
    pub health: Arc<ProfileHealth>,
}

impl std::fmt::Debug for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Profile")
            .field("name", &self.name)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// How a profile is doing, for operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProfileState {
    Ok,
    Cooling,
    Failing,
}

/// A profile's health. A `429` rests the profile for the model it was
/// asked for (rate limits are per key and model upstream), so its other
/// models keep working; a `401` marks the whole key failing.
#[derive(Debug, Default)]
pub struct ProfileHealth {
    failing: AtomicBool,
    /// The latest end of any model's rest (Unix ms; 0: none): lets the
    /// common case (nothing cooling) answer without taking the lock.
    cooling_until: AtomicI64,
    cooling: Mutex<Vec<(Arc<str>, i64)>>,
}

impl ProfileHealth {
    /// Whether a request for `model` may use the profile at `now_ms`.
    pub fn usable(&self, now_ms: i64, model: &str) -> bool {
        if self.failing.load(Ordering::Relaxed) {
            return false;
        }
        if self.cooling_until.load(Ordering::Relaxed) <= now_ms {
            return true;
        }
        self.rest_for(now_ms, model).is_none()
    }

    /// Until when `model` rests on this profile, if it does at `now_ms`.
    pub fn rest_for(&self, now_ms: i64, model: &str) -> Option<i64> {
        let cooling = self.cooling.lock().unwrap_or_else(|e| e.into_inner());
        cooling
            .iter()
            .find(|(m, until)| &**m == model && *until > now_ms)
            .map(|(_, until)| *until)
    }

    /// Marks the profile failing; `true` the first time (to warn and audit once).
    pub fn mark_failing(&self) -> bool {
        !self.failing.swap(true, Ordering::Relaxed)
    }

    /// Rests the profile for `model` until `until_ms` (never shortening a longer rest).
    pub fn cool_until(&self, model: &str, until_ms: i64, now_ms: i64) {
        let mut cooling = self.cooling.lock().unwrap_or_else(|e| e.into_inner());
        cooling.retain(|(_, until)| *until > now_ms);
        match cooling.iter_mut().find(|(m, _)| &**m == model) {
            Some((_, until)) => *until = (*until).max(until_ms),
            None => cooling.push((model.into(), until_ms)),
        }
        self.cooling_until.fetch_max(until_ms, Ordering::Relaxed);
    }

    /// The state at `now_ms`, and until when it cools (Unix ms; the latest
    /// rest of any model).
    pub fn state(&self, now_ms: i64) -> (ProfileState, Option<i64>) {
        if self.failing.load(Ordering::Relaxed) {
            return (ProfileState::Failing, None);
        }
        let until = self.cooling_until.load(Ordering::Relaxed);
        if until > now_ms {
            (ProfileState::Cooling, Some(until))
        } else {
            (ProfileState::Ok, None)
        }
    }
}

/// A provider added at run time, as stored (`GatewayItem` body).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredProvider {
    #[serde(rename = "type")]
    pub kind: String,
    pub base_url: String,
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub local: bool,
    pub timeouts: StoredTimeouts,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = Timeouts)]
pub struct StoredTimeouts {
    pub connect_ms: u64,
    pub first_byte_ms: u64,
    pub total_ms: u64,
}

impl From<Timeouts> for StoredTimeouts {
    fn from(t: Timeouts) -> Self {
        StoredTimeouts {
            connect_ms: t.connect.as_millis() as u64,
            first_byte_ms: t.first_byte.as_millis() as u64,
            total_ms: t.total.as_millis() as u64,
        }
    }
}

impl From<StoredTimeouts> for Timeouts {
    fn from(t: StoredTimeouts) -> Self {
        use std::time::Duration;
        Timeouts {
            connect: Duration::from_millis(t.connect_ms),
            first_byte: Duration::from_millis(t.first_byte_ms),
            total: Duration::from_millis(t.total_ms),
        }
    }
}

/// A profile as stored: its order in the clear, its secrets sealed.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredProfile {
    pub order: i64,
    /// [`ProfileSecrets`] as JSON, sealed under the master key for `PROVIDER/NAME`.
    pub sealed: String,
}

/// What a stored profile seals.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileSecrets {
    pub api_key: String,
    #[serde(default)]
    pub headers: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredAlias {
    pub targets: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredSetting {
    pub value: String,
}

/// The setting naming what the model `default` resolves to.
pub const DEFAULT_MODEL: &str = "default_model";

/// Orders profiles: first the names `auth_order` lists, in its order, then
/// the rest by `order`, then name.
pub fn ordered<'a>(profiles: &'a [ProfileSpec], auth_order: &[String]) -> Vec<&'a ProfileSpec> {
    let rank = |p: &ProfileSpec| {
        auth_order
            .iter()
            .position(|n| *n == p.name)
            .unwrap_or(usize::MAX)
    };
    let mut out: Vec<&ProfileSpec> = profiles.iter().collect();
    out.sort_by(|a, b| (rank(a), a.order, &a.name).cmp(&(rank(b), b.order, &b.name)));
    out
}

/// Header names a profile may not set (the gateway sets them, or they
/// would change how the request travels).
pub fn header_allowed(name: &str) -> bool {
    const RESERVED: &[&str] = &[
        "authorization",
        "x-api-key",
        "anthropic-version",
        "host",
        "content-length",
        "content-type",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "te",
        "trailer",
        "proxy-authorization",
        "cookie",
        "expect",
    ];
    let lower = name.to_ascii_lowercase();
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !RESERVED.contains(&lower.as_str())
}

/// A header value a profile may set: visible ASCII and spaces, bounded.
pub fn header_value_allowed(value: &str) -> bool {
    !value.is_empty() && value.len() <= 1024 && value.bytes().all(|b| (0x20..0x7f).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str, order: i64) -> ProfileSpec {
        ProfileSpec {
            name: name.into(),
            api_key: "k".into(),
            order,
            headers: vec![],
        }
    }

    #[test]
    fn auth_order_comes_first_then_order_then_name() {
        let ps = [p("c", 0), p("b", 2), p("a", 2), p("z", 9)];
        let names = |v: Vec<&ProfileSpec>| v.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(ordered(&ps, &[])), ["c", "a", "b", "z"]);
        assert_eq!(
            names(ordered(&ps, &["z".into(), "b".into()])),
            ["z", "b", "c", "a"]
        );
    }

    #[test]
    fn health_moves_between_ok_cooling_and_failing() {
        let h = ProfileHealth::default();
        assert!(h.usable(0, "m"));
        h.cool_until("m", 1_000, 0);
        assert!(!h.usable(999, "m"));
        assert!(
            h.usable(999, "other"),
            "a rest is for the model that was limited"
        );
        assert_eq!(h.state(500), (ProfileState::Cooling, Some(1_000)));
        h.cool_until("m", 10, 500);
        assert_eq!(
            h.rest_for(500, "m"),
            Some(1_000),
            "a shorter rest never shortens a longer one"
        );
        assert!(h.usable(1_000, "m"));
        assert_eq!(h.state(1_000), (ProfileState::Ok, None));
        assert!(h.mark_failing());
        assert!(!h.mark_failing(), "warned once");
        assert_eq!(h.state(5_000), (ProfileState::Failing, None));
        assert!(!h.usable(5_000, "other"));
    }

    #[test]
    fn profiles_may_not_set_credentials_or_framing_headers() {
        assert!(header_allowed("OpenAI-Organization"));
        assert!(header_allowed("OpenAI-Project"));
        for bad in [
            "Authorization",
            "x-api-key",
            "Host",
            "Content-Length",
            "bad name",
            "",
        ] {
            assert!(!header_allowed(bad), "{bad}");
        }
        assert!(header_value_allowed("org-123"));
        assert!(!header_value_allowed("a\r\nb"));
    }
}
