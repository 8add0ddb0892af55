//! Configuration: built-in `config/default.toml`, then the user's file, then
//! `GATEHOUSE__SECTION__KEY` environment variables, then `$VAR`/`${VAR}`
//! expansion, then one validation pass that names the offending key.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::{Environment, File, FileFormat};
use ipnet::IpNet;
use serde::de::Deserializer;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

mod duration;
mod expand;
mod raw;
mod validate;

pub use duration::{format_duration, parse_duration};

use expand::{expand_value, redact};
use raw::RawConfig;
use validate::validate;

const DEFAULT_TOML: &str = include_str!("../../config/default.toml");
const REDACTED: &str = "***";
/// Keys whose environment value is split on commas into a list.
const LIST_KEYS: &[&str] = &[
    "server.trusted_proxies",
    "egress.allow_hosts",
    "egress.deny_hosts",
    "auth.github.allowed_orgs",
    "auth.github.admin_users",
];

/// A secret string: `Debug` and `Serialize` print `***`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {} is not valid TOML: {message}", path.display())]
    Syntax { path: PathBuf, message: String },
    #[error("unknown key `{0}`")]
    UnknownKey(String),
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
    #[error("cannot merge configuration: {0}")]
    Merge(String),
}

fn bad(key: impl Into<String>, message: impl fmt::Display) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.to_string(),
    }
}

// ---------------------------------------------------------------- typed settings

#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub auth: AuthConfig,
    pub providers: BTreeMap<String, ProviderConfig>,
    pub models: ModelsConfig,
    pub egress: EgressConfig,
    pub tasks: TasksConfig,
    /// `[limits.user]`, `[limits.token]`: the defaults.
    pub limits: LimitsConfig,
    /// `[prices]`: per million tokens, by `provider/model`.
    pub prices: std::collections::HashMap<String, Price>,
    /// `[[access.rules]]`.
    pub access: crate::access::AccessPolicy,
    /// The merged, expanded settings with secrets already replaced by `***`.
    redacted: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    pub host: String,
    pub port: u16,
    pub trusted_proxies: Vec<IpNet>,
    pub secure_cookies: bool,
    pub max_body_bytes: usize,
    pub max_api_body_bytes: usize,
    pub metrics_port: u16,
    /// Who may read `/metrics` on the main port.
    pub metrics: MetricsAccess,
    /// How long requests in flight may take to finish after SIGTERM.
    pub shutdown_timeout: Duration,
    /// Sign-in and token-issuing requests per client address a minute (0: no limit).
    pub auth_rate_per_minute: u32,
    /// Request line and headers together at most, else `431`.
    pub max_header_bytes: usize,
    /// The request head must arrive within this, else `408`.
    pub client_header_timeout: Duration,
    /// A request body must arrive whole within this, else `408`.
    pub client_body_timeout: Duration,
    /// Streaming model calls open at once per principal (0: no limit).
    pub max_streams_per_principal: usize,
}

/// Who may read `GET /metrics` on the main port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsAccess {
    /// Requests from this machine (not forwarded by a proxy), and admins.
    Loopback,
    /// Only credentials with the `admin` scope.
    Admin,
    /// Not served (404).
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreBackend {
    Sled,
    Postgres,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoreConfig {
    pub backend: StoreBackend,
    pub url: Secret,
    pub sweep_interval: Duration,
    /// PostgreSQL: a schema of its own (`None`: the URL's `search_path`).
    pub schema: Option<String>,
    /// PostgreSQL: connections kept at most.
    pub pool_size: usize,
    /// PostgreSQL: opening a connection, and waiting for a free one.
    pub connect_timeout: Duration,
    /// PostgreSQL: one store operation at most.
    pub query_timeout: Duration,
    /// PostgreSQL: operations slower than this are logged.
    pub slow_query: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuthConfig {
    pub allow_anonymous_local: bool,
    pub session_ttl: time::Duration,
    pub oauth_session_ttl: time::Duration,
    pub oauth_state_ttl: time::Duration,
    pub max_login_failures: u32,
    pub login_failure_window: time::Duration,
    /// Failures per client address in the window (whatever the usernames).
    pub max_login_failures_per_ip: u32,
    /// Some only when `auth.github.client_id` is non-empty.
    pub github: Option<GithubConfig>,
    pub oidc: BTreeMap<String, OidcConfig>,
    pub bearer: Vec<BearerConfig>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GithubConfig {
    pub client_id: String,
    pub client_secret: Secret,
    pub redirect_uri: String,
    /// Lowercased logins; empty: anyone.
    pub allowed_users: Vec<String>,
    /// Lowercased org logins.
    pub allowed_orgs: Vec<String>,
    /// Lowercased logins that get the Admin role.
    pub admin_users: Vec<String>,
    pub authorize_url: String,
    pub token_url: String,
    pub api_base_url: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OidcConfig {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub scopes: Vec<String>,
    /// Lowercased email domains; empty: any.
    pub allowed_domains: Vec<String>,
    pub allowed_groups: Vec<String>,
    pub groups_claim: String,
    pub redirect_uri: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BearerKind {
    Jwks,
    Introspection,
    Github,
    Custom,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BearerConfig {
    pub kind: BearerKind,
    pub issuer: String,
    pub audience: String,
    pub jwks_uri: String,
    pub key_recheck_period: Duration,
    pub claims_mapping: BTreeMap<String, String>,
    pub default_scopes: Vec<String>,
    pub cache_ttl: Duration,
    pub url: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub send_secret_in_body: bool,
    pub api_base_url: String,
    pub endpoint: String,
    pub ca_file: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    OpenAi,
    Anthropic,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProviderConfig {
    pub kind: ProviderKind,
    pub base_url: String,
    pub api_key: Secret,
    pub models: Vec<String>,
    pub local: bool,
    pub timeouts: gatehouse_actors::gateway::Timeouts,
    pub circuit: gatehouse_actors::gateway::CircuitConfig,
    /// `[providers.NAME.profiles.P]`: named keys, tried in order.
    pub profiles: Vec<ProfileConfig>,
    /// Profile names tried first, in this order.
    pub auth_order: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProfileConfig {
    pub name: String,
    pub api_key: Secret,
    pub order: i64,
    pub headers: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LimitsConfig {
    pub user: gatehouse_actors::gateway::Limits,
    pub token: gatehouse_actors::gateway::Limits,
}

/// A model's price per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Price {
    pub input: f64,
    pub output: f64,
}

impl Price {
    pub fn cost(&self, prompt: u64, completion: u64) -> f64 {
        (prompt as f64 * self.input + completion as f64 * self.output) / 1_000_000.0
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelsConfig {
    pub default: String,
    /// How often discovered model lists are fetched again.
    pub refresh_interval: Duration,
    pub aliases: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EgressConfig {
    pub allow_private: bool,
    pub allow_hosts: Vec<String>,
    pub deny_hosts: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TasksConfig {
    pub concurrency: u32,
    /// Tasks that may wait to run (queued or running) before creates are
    /// refused with `429 task_queue_full`; 0 means no bound.
    pub max_queued: u32,
    /// Who may approve a task that requires approval.
    pub approval: gatehouse_actors::tasks::Approver,
    /// How long an instance's claim on a running task holds without renewal.
    pub lease: Duration,
    pub agent: Option<AgentConfig>,
}

/// The HTTP agent backend that runs `agent.run` tasks.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    pub base_url: String,
    pub local: bool,
    /// Each call to the backend.
    pub timeout: Duration,
}

// ---------------------------------------------------------------- loading

impl Config {
    /// Layers: built-in defaults, then `file` (must exist) or else `home/gatehouse.toml`
    /// if it exists, then `GATEHOUSE__SECTION__KEY` from the process environment.
    pub fn load(file: Option<&Path>, home: &Path) -> Result<Config, ConfigError> {
        let env: HashMap<String, String> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        Self::load_with_env(file, home, &env)
    }

    /// Like [`Config::load`] with an explicit environment (overrides and `$VAR` expansion).
    pub fn load_with_env(
        file: Option<&Path>,
        home: &Path,
        env: &HashMap<String, String>,
    ) -> Result<Config, ConfigError> {
        let path = match file {
            Some(p) => Some(p.to_path_buf()),
            None => Some(home.join("gatehouse.toml")).filter(|p| p.exists()),
        };
        let user = match path {
            Some(path) => {
                let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                check_syntax(&text, &path)?;
                Some(text)
            }
            None => None,
        };
        build(user.as_deref(), env)
    }

    /// [`Config::load_with_env`] with the file's text given (the fuzz targets).
    #[doc(hidden)]
    pub fn from_toml_with_env(
        text: &str,
        env: &HashMap<String, String>,
    ) -> Result<Config, ConfigError> {
        check_syntax(text, Path::new("(text)"))?;
        build(Some(text), env)
    }

    /// Built-in defaults only: no file, empty environment.
    pub fn defaults() -> Config {
        build(None, &HashMap::new()).expect("built-in config/default.toml is valid")
    }

    /// The effective configuration as TOML, secrets shown as `***`.
    pub fn redacted_toml(&self) -> String {
        toml::to_string(&self.redacted)
            .unwrap_or_else(|e| format!("# cannot render configuration: {e}\n"))
    }

    /// The effective configuration as JSON, secrets shown as `***`.
    pub fn redacted_json(&self) -> Value {
        self.redacted.clone()
    }

    /// How the PostgreSQL store connects and how long it waits (`[store]`).
    pub fn pg_options(&self) -> gatehouse_actors::store::PgOptions {
        gatehouse_actors::store::PgOptions {
            schema: self.store.schema.clone(),
            pool_size: self.store.pool_size,
            connect_timeout: self.store.connect_timeout,
            query_timeout: self.store.query_timeout,
            slow: self.store.slow_query,
        }
    }

    /// The egress policy for upstream calls.
    pub fn egress_policy(&self) -> gatehouse_actors::gateway::EgressPolicy {
        gatehouse_actors::gateway::EgressPolicy {
            allow_private: self.egress.allow_private,
            allow_hosts: self.egress.allow_hosts.clone(),
            deny_hosts: self.egress.deny_hosts.clone(),
        }
    }

    /// True when GitHub, any OIDC provider or any bearer validator is configured.
    pub fn has_external_auth(&self) -> bool {
        self.auth.github.is_some() || !self.auth.oidc.is_empty() || !self.auth.bearer.is_empty()
    }
}

fn check_syntax(text: &str, path: &Path) -> Result<(), ConfigError> {
    toml::from_str::<toml::Table>(text)
        .map(drop)
        .map_err(|e| ConfigError::Syntax {
            path: path.to_path_buf(),
            message: e.to_string().trim().to_string(),
        })
}

fn build(user: Option<&str>, env: &HashMap<String, String>) -> Result<Config, ConfigError> {
    let mut environment = Environment::with_prefix("GATEHOUSE")
        .separator("__")
        .try_parsing(true)
        .list_separator(",")
        .source(Some(
            env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        ));
    for key in LIST_KEYS {
        environment = environment.with_list_parse_key(key);
    }
    let mut builder =
        config::Config::builder().add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml));
    if let Some(text) = user {
        builder = builder.add_source(File::from_str(text, FileFormat::Toml));
    }
    let mut value: Value = builder
        .add_source(environment)
        .build()
        .and_then(|c| c.try_deserialize())
        .map_err(|e| ConfigError::Merge(e.to_string()))?;
    expand_value(&mut value, &mut String::new(), env)?;
    let raw: RawConfig = serde_path_to_error::deserialize(&value).map_err(serde_error)?;
    // Re-serialised from the raw structs so that per-entry defaults show too.
    let mut effective =
        serde_json::to_value(&raw).map_err(|e| ConfigError::Merge(e.to_string()))?;
    let mut config = validate(raw)?;
    redact(&mut effective, "");
    config.redacted = effective;
    Ok(config)
}

fn serde_error(e: serde_path_to_error::Error<serde_json::Error>) -> ConfigError {
    let path = e.path().to_string();
    let message = e.inner().to_string();
    let quoted = |prefix: &str| {
        message
            .strip_prefix(prefix)
            .and_then(|rest| rest.split('`').next())
            .map(String::from)
    };
    let join = |field: &str| {
        if path == "." || path.is_empty() {
            field.to_string()
        } else {
            format!("{path}.{field}")
        }
    };
    if let Some(field) = quoted("unknown field `") {
        // The path may or may not already end with the offending field.
        let key = if path.rsplit('.').next() == Some(field.as_str()) {
            path.clone()
        } else {
            join(&field)
        };
        ConfigError::UnknownKey(key)
    } else if let Some(field) = quoted("missing field `") {
        bad(join(&field), "missing")
    } else {
        bad(path, message)
    }
}

#[cfg(test)]
mod tests;
