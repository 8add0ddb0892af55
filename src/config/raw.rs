//! The merged settings as deserialised: strict about unknown keys, tolerant about
//! scalar types (environment values arrive as strings).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::de::{Deserializer, Error as _};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A scalar as text: environment values may arrive as strings, numbers or bools.
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Any scalar, parsed with `FromStr` (so `"9000"` and `9000` both give a port).
fn lenient<'de, D: Deserializer<'de>, T: FromStr>(d: D) -> Result<T, D::Error>
where
    T::Err: fmt::Display,
{
    let v = Value::deserialize(d)?;
    let s = scalar_text(&v)
        .ok_or_else(|| D::Error::custom(format!("expected a single value, found {v}")))?;
    s.parse()
        .map_err(|e| D::Error::custom(format!("invalid value {v}: {e}")))
}

/// A value as its own type says (tables of tables).
fn plain<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    T::deserialize(d)
}

/// A list of strings; a single string is split on commas (environment values).
fn strings<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    match Value::deserialize(d)? {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                scalar_text(v)
                    .ok_or_else(|| D::Error::custom(format!("[{i}]: expected a string, found {v}")))
            })
            .collect(),
        Value::String(s) => Ok(s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()),
        v => scalar_text(&v)
            .map(|s| vec![s])
            .ok_or_else(|| D::Error::custom(format!("expected a list, found {v}"))),
    }
}

macro_rules! raw {
    ($name:ident { $($field:ident $(as $rename:literal)? : $ty:ty = $with:literal $(, default $def:literal)?;)* }) => {
        #[derive(Deserialize, Serialize)]
        #[serde(deny_unknown_fields)]
        pub(super) struct $name {
            $(
                #[serde(deserialize_with = $with $(, rename = $rename)? $(, default = $def)?)]
                pub(super) $field: $ty,
            )*
        }
    };
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) server: RawServer,
    pub(super) store: RawStore,
    pub(super) auth: RawAuth,
    #[serde(default)]
    pub(super) providers: BTreeMap<String, RawProvider>,
    pub(super) models: RawModels,
    pub(super) egress: RawEgress,
    pub(super) tasks: RawTasks,
    #[serde(default)]
    pub(super) access: RawAccess,
    pub(super) limits: RawLimitsSection,
    #[serde(default)]
    pub(super) prices: BTreeMap<String, RawPrice>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimitsSection {
    pub(super) user: RawLimits,
    pub(super) token: RawLimits,
}

raw!(RawLimits {
    rpm: u64 = "lenient", default "u64::default";
    tpm: u64 = "lenient", default "u64::default";
    budget: f64 = "lenient", default "f64::default";
    budget_period: String = "lenient", default "default_budget_period";
});

raw!(RawPrice {
    input: f64 = "lenient", default "f64::default";
    output: f64 = "lenient", default "f64::default";
});

fn default_budget_period() -> String {
    "30d".into()
}

#[derive(Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAccess {
    #[serde(default)]
    pub(super) rules: Vec<RawRule>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    #[serde(default)]
    pub(super) effect: Option<String>,
    #[serde(default, rename = "match")]
    pub(super) who: RawMatch,
    #[serde(default)]
    pub(super) models: Vec<String>,
    #[serde(default)]
    pub(super) scopes: Vec<String>,
}

#[derive(Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMatch {
    #[serde(default)]
    pub(super) roles: Vec<String>,
    #[serde(default)]
    pub(super) users: Vec<String>,
    #[serde(default)]
    pub(super) methods: Vec<String>,
    #[serde(default)]
    pub(super) attributes: BTreeMap<String, Vec<String>>,
}

raw!(RawServer {
    host: String = "lenient";
    port: u16 = "lenient";
    trusted_proxies: Vec<String> = "strings";
    secure_cookies: bool = "lenient";
    max_body_bytes: usize = "lenient";
    max_api_body_bytes: usize = "lenient";
    metrics_port: u16 = "lenient";
    metrics: String = "lenient";
    shutdown_timeout: String = "lenient";
    auth_rate_per_minute: u32 = "lenient";
    max_header_bytes: usize = "lenient";
    client_header_timeout: String = "lenient";
    client_body_timeout: String = "lenient";
    max_streams_per_principal: usize = "lenient";
});

raw!(RawStore {
    backend: String = "lenient";
    url: String = "lenient";
    sweep_interval: String = "lenient";
    schema: String = "lenient";
    pool_size: usize = "lenient";
    connect_timeout: String = "lenient";
    query_timeout: String = "lenient";
    slow_query: String = "lenient";
});

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuth {
    #[serde(deserialize_with = "lenient")]
    pub(super) allow_anonymous_local: bool,
    #[serde(deserialize_with = "lenient")]
    pub(super) session_ttl: String,
    #[serde(deserialize_with = "lenient")]
    pub(super) oauth_session_ttl: String,
    #[serde(deserialize_with = "lenient")]
    pub(super) oauth_state_ttl: String,
    #[serde(deserialize_with = "lenient")]
    pub(super) max_login_failures: u32,
    #[serde(deserialize_with = "lenient")]
    pub(super) login_failure_window: String,
    #[serde(deserialize_with = "lenient")]
    pub(super) max_login_failures_per_ip: u32,
    pub(super) github: RawGithub,
    #[serde(default)]
    pub(super) oidc: BTreeMap<String, RawOidc>,
    #[serde(default)]
    pub(super) bearer: Vec<RawBearer>,
}

raw!(RawGithub {
    client_id: String = "lenient";
    client_secret: String = "lenient";
    redirect_uri: String = "lenient";
    allowed_users: Vec<String> = "strings";
    allowed_orgs: Vec<String> = "strings";
    admin_users: Vec<String> = "strings";
    authorize_url: String = "lenient";
    token_url: String = "lenient";
    api_base_url: String = "lenient";
});

raw!(RawOidc {
    issuer: String = "lenient", default "String::new";
    client_id: String = "lenient", default "String::new";
    client_secret: String = "lenient", default "String::new";
    scopes: Vec<String> = "strings", default "default_oidc_scopes";
    allowed_domains: Vec<String> = "strings", default "Vec::new";
    allowed_groups: Vec<String> = "strings", default "Vec::new";
    groups_claim: String = "lenient", default "default_groups_claim";
    redirect_uri: String = "lenient", default "String::new";
});

raw!(RawBearer {
    kind as "type": String = "lenient";
    issuer: String = "lenient", default "String::new";
    audience: String = "lenient", default "String::new";
    jwks_uri: String = "lenient", default "String::new";
    key_recheck_period: String = "lenient", default "default_recheck";
    claims_mapping: BTreeMap<String, String> = "BTreeMap::deserialize", default "BTreeMap::new";
    default_scopes: Vec<String> = "strings", default "default_scopes";
    cache_ttl: String = "lenient", default "default_cache_ttl";
    url: String = "lenient", default "String::new";
    client_id: String = "lenient", default "String::new";
    client_secret: String = "lenient", default "String::new";
    send_secret_in_body: bool = "lenient", default "bool::default";
    api_base_url: String = "lenient", default "default_github_api";
    endpoint: String = "lenient", default "String::new";
    ca_file: String = "lenient", default "String::new";
});

raw!(RawProvider {
    kind as "type": String = "lenient", default "default_provider_type";
    base_url: String = "lenient", default "String::new";
    api_key: String = "lenient", default "String::new";
    models: Vec<String> = "strings", default "Vec::new";
    local: bool = "lenient", default "bool::default";
    connect_timeout: String = "lenient", default "default_connect_timeout";
    first_byte_timeout: String = "lenient", default "default_first_byte_timeout";
    total_timeout: String = "lenient", default "default_total_timeout";
    circuit_failures: u32 = "lenient", default "default_circuit_failures";
    circuit_cooldown: String = "lenient", default "default_circuit_cooldown";
    auth_order: Vec<String> = "strings", default "Vec::new";
    profiles: BTreeMap<String, RawProfile> = "plain", default "BTreeMap::new";
});

raw!(RawProfile {
    api_key: String = "lenient", default "String::new";
    order: i64 = "lenient", default "i64::default";
    headers: BTreeMap<String, String> = "plain", default "BTreeMap::new";
});

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawModels {
    #[serde(deserialize_with = "lenient")]
    pub(super) default: String,
    #[serde(deserialize_with = "lenient")]
    pub(super) refresh_interval: String,
    #[serde(default)]
    pub(super) aliases: BTreeMap<String, Vec<String>>,
}

raw!(RawEgress {
    allow_private: bool = "lenient";
    allow_hosts: Vec<String> = "strings";
    deny_hosts: Vec<String> = "strings";
});

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTasks {
    #[serde(deserialize_with = "lenient")]
    pub(super) concurrency: u32,
    #[serde(deserialize_with = "lenient")]
    pub(super) max_queued: u32,
    #[serde(deserialize_with = "lenient")]
    pub(super) approval: String,
    #[serde(deserialize_with = "lenient")]
    pub(super) lease: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) agent: Option<RawAgent>,
}

raw!(RawAgent {
    base_url: String = "lenient", default "String::new";
    local: bool = "lenient", default "bool::default";
    timeout: String = "lenient", default "default_agent_timeout";
});

fn default_oidc_scopes() -> Vec<String> {
    ["openid", "email", "profile"].map(String::from).to_vec()
}
fn default_groups_claim() -> String {
    "groups".into()
}
fn default_recheck() -> String {
    "1h".into()
}
fn default_scopes() -> Vec<String> {
    vec!["read".into(), "write".into()]
}
fn default_cache_ttl() -> String {
    "60s".into()
}
fn default_github_api() -> String {
    "https://api.github.com".into()
}
fn default_provider_type() -> String {
    "openai".into()
}
fn default_connect_timeout() -> String {
    "10s".into()
}
fn default_first_byte_timeout() -> String {
    "120s".into()
}
fn default_total_timeout() -> String {
    "10m".into()
}
fn default_circuit_failures() -> u32 {
    5
}
fn default_circuit_cooldown() -> String {
    "30s".into()
}
fn default_agent_timeout() -> String {
    "30s".into()
}
