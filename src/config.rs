//! Configuration: built-in `config/default.toml`, then the user's file, then
//! `GATEHOUSE__SECTION__KEY` environment variables, then `$VAR`/`${VAR}`
//! expansion, then one validation pass that names the offending key.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use config::{Environment, File, FileFormat};
use ipnet::IpNet;
use serde::de::{Deserializer, Error as _};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

const DEFAULT_TOML: &str = include_str!("../config/default.toml");
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

/// Parses `"500ms"`, `"90s"`, `"15m"`, `"24h"`, `"30d"` (also `ns`, `us`); a bare integer is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let fail = |why: &str| Err(format!("bad duration {s:?}: {why}"));
    if t.is_empty() {
        return fail("empty");
    }
    if t.starts_with('-') {
        return fail("negative");
    }
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return fail("expected a number followed by ms, s, m, h or d");
    }
    let Ok(n) = num.parse::<u64>() else {
        return fail("too large");
    };
    let secs = |k: u64| n.checked_mul(k).map(Duration::from_secs);
    let d = match unit.trim() {
        "ns" => Some(Duration::from_nanos(n)),
        "us" => Some(Duration::from_micros(n)),
        "ms" => Some(Duration::from_millis(n)),
        "" | "s" => secs(1),
        "m" => secs(60),
        "h" => secs(3_600),
        "d" => secs(86_400),
        _ => return fail("unknown unit (use ms, s, m, h or d)"),
    };
    d.map_or_else(|| fail("too large"), Ok)
}

/// The inverse of [`parse_duration`]: the largest unit that divides `d` exactly.
pub fn format_duration(d: Duration) -> String {
    let (secs, nanos) = (d.as_secs(), d.subsec_nanos());
    if nanos == 0 {
        for (k, unit) in [(86_400, "d"), (3_600, "h"), (60, "m")] {
            if secs != 0 && secs % k == 0 {
                return format!("{}{unit}", secs / k);
            }
        }
        return format!("{secs}s");
    }
    let total = d.as_nanos();
    if nanos % 1_000_000 == 0 {
        format!("{}ms", total / 1_000_000)
    } else if nanos % 1_000 == 0 {
        format!("{}us", total / 1_000)
    } else {
        format!("{total}ns")
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
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuthConfig {
    pub allow_anonymous_local: bool,
    pub session_ttl: time::Duration,
    pub oauth_session_ttl: time::Duration,
    pub oauth_state_ttl: time::Duration,
    pub max_login_failures: u32,
    pub login_failure_window: time::Duration,
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
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelsConfig {
    pub default: String,
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
}

// ---------------------------------------------------------------- raw settings

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
        struct $name {
            $(
                #[serde(deserialize_with = $with $(, rename = $rename)? $(, default = $def)?)]
                $field: $ty,
            )*
        }
    };
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    server: RawServer,
    store: RawStore,
    auth: RawAuth,
    #[serde(default)]
    providers: BTreeMap<String, RawProvider>,
    models: RawModels,
    egress: RawEgress,
    tasks: RawTasks,
}

raw!(RawServer {
    host: String = "lenient";
    port: u16 = "lenient";
    trusted_proxies: Vec<String> = "strings";
    secure_cookies: bool = "lenient";
    max_body_bytes: usize = "lenient";
    max_api_body_bytes: usize = "lenient";
    metrics_port: u16 = "lenient";
});

raw!(RawStore {
    backend: String = "lenient";
    url: String = "lenient";
    sweep_interval: String = "lenient";
});

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    #[serde(deserialize_with = "lenient")]
    allow_anonymous_local: bool,
    #[serde(deserialize_with = "lenient")]
    session_ttl: String,
    #[serde(deserialize_with = "lenient")]
    oauth_session_ttl: String,
    #[serde(deserialize_with = "lenient")]
    oauth_state_ttl: String,
    #[serde(deserialize_with = "lenient")]
    max_login_failures: u32,
    #[serde(deserialize_with = "lenient")]
    login_failure_window: String,
    github: RawGithub,
    #[serde(default)]
    oidc: BTreeMap<String, RawOidc>,
    #[serde(default)]
    bearer: Vec<RawBearer>,
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
});

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawModels {
    #[serde(deserialize_with = "lenient")]
    default: String,
    #[serde(default)]
    aliases: BTreeMap<String, Vec<String>>,
}

raw!(RawEgress {
    allow_private: bool = "lenient";
    allow_hosts: Vec<String> = "strings";
    deny_hosts: Vec<String> = "strings";
});

raw!(RawTasks {
    concurrency: u32 = "lenient";
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
                toml::from_str::<toml::Table>(&text).map_err(|e| ConfigError::Syntax {
                    path: path.clone(),
                    message: e.to_string().trim().to_string(),
                })?;
                Some(text)
            }
            None => None,
        };
        build(user.as_deref(), env)
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

    /// True when GitHub, any OIDC provider or any bearer validator is configured.
    pub fn has_external_auth(&self) -> bool {
        self.auth.github.is_some() || !self.auth.oidc.is_empty() || !self.auth.bearer.is_empty()
    }
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

/// Replaces `$VAR` and `${VAR}` in every string (unset: empty); `$$` is a literal `$`.
fn expand(s: &str, env: &HashMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
        if let Some(after) = after.strip_prefix('$') {
            out.push('$');
            rest = after;
        } else if let Some(braced) = after.strip_prefix('{') {
            let end = braced
                .find('}')
                .ok_or_else(|| format!("unterminated ${{ in {s:?}"))?;
            let name = &braced[..end];
            if name.is_empty() || !name.chars().all(is_name) {
                return Err(format!("bad variable name {name:?} in {s:?}"));
            }
            out.push_str(env.get(name).map_or("", String::as_str));
            rest = &braced[end + 1..];
        } else if after.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
            let end = after.find(|c: char| !is_name(c)).unwrap_or(after.len());
            out.push_str(env.get(&after[..end]).map_or("", String::as_str));
            rest = &after[end..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn expand_value(
    v: &mut Value,
    path: &mut String,
    env: &HashMap<String, String>,
) -> Result<(), ConfigError> {
    let len = path.len();
    match v {
        Value::String(s) => *s = expand(s, env).map_err(|e| bad(path.clone(), e))?,
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                path.push_str(&format!("[{i}]"));
                expand_value(item, path, env)?;
                path.truncate(len);
            }
        }
        Value::Object(map) => {
            for (k, item) in map.iter_mut() {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                expand_value(item, path, env)?;
                path.truncate(len);
            }
        }
        _ => {}
    }
    Ok(())
}

fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.contains("secret")
        || key.contains("password")
        || key == "api_key"
        || key.ends_with("_key")
        || (key.contains("token") && !key.ends_with("_url") && !key.ends_with("_uri"))
}

/// Replaces every non-empty secret string with `***` (and `store.url`, which holds credentials).
fn redact(v: &mut Value, path: &str) {
    match v {
        Value::Array(items) => items.iter_mut().for_each(|item| redact(item, path)),
        Value::Object(map) => {
            for (k, item) in map.iter_mut() {
                let child = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                let secret = is_secret_key(k) || child == "store.url";
                match item {
                    Value::String(s) if secret && !s.is_empty() => *s = REDACTED.into(),
                    Value::Number(_) | Value::Bool(_) if secret => {
                        *item = Value::String(REDACTED.into())
                    }
                    _ => redact(item, &child),
                }
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------- validation

fn duration(key: &str, s: &str, allow_zero: bool) -> Result<Duration, ConfigError> {
    let d = parse_duration(s).map_err(|e| bad(key, e))?;
    if d.is_zero() && !allow_zero {
        return Err(bad(
            key,
            format!("duration {s:?} must be greater than zero"),
        ));
    }
    Ok(d)
}

fn time_duration(key: &str, s: &str) -> Result<time::Duration, ConfigError> {
    time::Duration::try_from(duration(key, s, false)?)
        .map_err(|_| bad(key, format!("bad duration {s:?}: too large")))
}

fn http_url(key: &str, s: &str) -> Result<String, ConfigError> {
    let s = s.trim();
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"));
    if rest.is_none_or(str::is_empty) {
        return Err(bad(
            key,
            format!("{s:?} must start with http:// or https://"),
        ));
    }
    Ok(s.to_string())
}

fn non_empty(key: &str, s: &str) -> Result<String, ConfigError> {
    match s.trim() {
        "" => Err(bad(key, "must not be empty")),
        t => Ok(t.to_string()),
    }
}

/// Names of providers and OIDC providers appear in URLs and model names.
fn check_name(key: &str, name: &str) -> Result<(), ConfigError> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(bad(
            key,
            format!("bad name {name:?}: use letters, digits, '-', '_' or '.'"),
        ));
    }
    Ok(())
}

fn lowercase(items: Vec<String>) -> Vec<String> {
    items
        .into_iter()
        .map(|s| s.trim().to_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

fn at_least<T: PartialOrd + fmt::Display>(key: &str, v: T, min: T) -> Result<T, ConfigError> {
    if v < min {
        return Err(bad(key, format!("must be at least {min}, got {v}")));
    }
    Ok(v)
}

fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
    let s = raw.server;
    let trusted_proxies = s
        .trusted_proxies
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let p = p.trim();
            p.parse::<IpNet>()
                .or_else(|_| p.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    bad(
                        format!("server.trusted_proxies[{i}]"),
                        format!("bad CIDR {p:?}"),
                    )
                })
        })
        .collect::<Result<_, _>>()?;
    if s.metrics_port != 0 && s.metrics_port == s.port {
        return Err(bad(
            "server.metrics_port",
            "must differ from server.port (0: serve /metrics on the main port)",
        ));
    }
    let server = ServerConfig {
        host: non_empty("server.host", &s.host)?,
        port: at_least("server.port", s.port, 1)?,
        trusted_proxies,
        secure_cookies: s.secure_cookies,
        max_body_bytes: at_least("server.max_body_bytes", s.max_body_bytes, 1024)?,
        max_api_body_bytes: at_least("server.max_api_body_bytes", s.max_api_body_bytes, 1024)?,
        metrics_port: s.metrics_port,
    };

    let backend = match s_lower(&raw.store.backend).as_str() {
        "sled" => StoreBackend::Sled,
        "postgres" | "postgresql" => StoreBackend::Postgres,
        other => {
            return Err(bad(
                "store.backend",
                format!("unknown backend {other:?} (expected sled or postgres)"),
            ))
        }
    };
    if backend == StoreBackend::Postgres && raw.store.url.trim().is_empty() {
        return Err(bad(
            "store.url",
            "required when store.backend = \"postgres\"",
        ));
    }
    let store = StoreConfig {
        backend,
        url: Secret::new(raw.store.url.trim()),
        sweep_interval: duration("store.sweep_interval", &raw.store.sweep_interval, false)?,
    };

    let a = raw.auth;
    let g = a.github;
    let github = if g.client_id.trim().is_empty() {
        None
    } else {
        if g.client_secret.trim().is_empty() {
            return Err(bad(
                "auth.github.client_secret",
                "required when auth.github.client_id is set",
            ));
        }
        let users = g
            .allowed_users
            .iter()
            .flat_map(|u| u.split(|c: char| c == ',' || c.is_whitespace()));
        Some(GithubConfig {
            client_id: g.client_id.trim().to_string(),
            client_secret: Secret::new(g.client_secret.trim()),
            redirect_uri: http_url("auth.github.redirect_uri", &g.redirect_uri)?,
            allowed_users: lowercase(users.map(String::from).collect()),
            allowed_orgs: lowercase(g.allowed_orgs),
            admin_users: lowercase(g.admin_users),
            authorize_url: http_url("auth.github.authorize_url", &g.authorize_url)?,
            token_url: http_url("auth.github.token_url", &g.token_url)?,
            api_base_url: http_url("auth.github.api_base_url", &g.api_base_url)?,
        })
    };
    let mut oidc = BTreeMap::new();
    for (name, o) in a.oidc {
        let key = |k: &str| format!("auth.oidc.{name}.{k}");
        check_name(&format!("auth.oidc.{name}"), &name)?;
        let cfg = OidcConfig {
            issuer: http_url(&key("issuer"), &o.issuer)?,
            client_id: non_empty(&key("client_id"), &o.client_id)?,
            client_secret: Secret::new(o.client_secret.trim()),
            scopes: o
                .scopes
                .into_iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            allowed_domains: lowercase(o.allowed_domains),
            allowed_groups: o.allowed_groups,
            groups_claim: non_empty(&key("groups_claim"), &o.groups_claim)?,
            redirect_uri: match o.redirect_uri.trim() {
                "" => String::new(),
                uri => http_url(&key("redirect_uri"), uri)?,
            },
        };
        oidc.insert(name, cfg);
    }
    let mut bearer = Vec::new();
    for (i, b) in a.bearer.into_iter().enumerate() {
        let key = |k: &str| format!("auth.bearer[{i}].{k}");
        let kind =
            match s_lower(&b.kind).as_str() {
                "jwks" => BearerKind::Jwks,
                "introspection" => BearerKind::Introspection,
                "github" => BearerKind::Github,
                "custom" => BearerKind::Custom,
                other => return Err(bad(
                    key("type"),
                    format!(
                        "unknown type {other:?} (expected jwks, introspection, github or custom)"
                    ),
                )),
            };
        let (needed, value) = match kind {
            BearerKind::Jwks => ("jwks_uri", &b.jwks_uri),
            BearerKind::Introspection => ("url", &b.url),
            BearerKind::Github => ("api_base_url", &b.api_base_url),
            BearerKind::Custom => ("endpoint", &b.endpoint),
        };
        if value.trim().is_empty() {
            return Err(bad(
                key(needed),
                format!("required for type = \"{}\"", s_lower(&b.kind)),
            ));
        }
        http_url(&key(needed), value)?;
        for (j, scope) in b.default_scopes.iter().enumerate() {
            if !matches!(scope.as_str(), "read" | "write" | "admin") {
                return Err(bad(
                    format!("{}[{j}]", key("default_scopes")),
                    format!("unknown scope {scope:?} (expected read, write or admin)"),
                ));
            }
        }
        bearer.push(BearerConfig {
            kind,
            issuer: b.issuer.trim().to_string(),
            audience: b.audience.trim().to_string(),
            jwks_uri: b.jwks_uri.trim().to_string(),
            key_recheck_period: duration(&key("key_recheck_period"), &b.key_recheck_period, false)?,
            claims_mapping: b.claims_mapping,
            default_scopes: b.default_scopes,
            cache_ttl: duration(&key("cache_ttl"), &b.cache_ttl, true)?,
            url: b.url.trim().to_string(),
            client_id: b.client_id.trim().to_string(),
            client_secret: Secret::new(b.client_secret.trim()),
            send_secret_in_body: b.send_secret_in_body,
            api_base_url: b.api_base_url.trim().to_string(),
            endpoint: b.endpoint.trim().to_string(),
            ca_file: b.ca_file.trim().to_string(),
        });
    }
    let auth = AuthConfig {
        allow_anonymous_local: a.allow_anonymous_local,
        session_ttl: time_duration("auth.session_ttl", &a.session_ttl)?,
        oauth_session_ttl: time_duration("auth.oauth_session_ttl", &a.oauth_session_ttl)?,
        oauth_state_ttl: time_duration("auth.oauth_state_ttl", &a.oauth_state_ttl)?,
        max_login_failures: at_least("auth.max_login_failures", a.max_login_failures, 1)?,
        login_failure_window: time_duration("auth.login_failure_window", &a.login_failure_window)?,
        github,
        oidc,
        bearer,
    };

    let mut providers = BTreeMap::new();
    for (name, p) in raw.providers {
        let key = |k: &str| format!("providers.{name}.{k}");
        check_name(&format!("providers.{name}"), &name)?;
        let kind = match s_lower(&p.kind).as_str() {
            "openai" => ProviderKind::OpenAi,
            "anthropic" => ProviderKind::Anthropic,
            other => {
                return Err(bad(
                    key("type"),
                    format!("unknown type {other:?} (expected openai or anthropic)"),
                ))
            }
        };
        let mut models = Vec::new();
        for (j, m) in p.models.iter().enumerate() {
            models.push(non_empty(&format!("{}[{j}]", key("models")), m)?);
        }
        let cfg = ProviderConfig {
            kind,
            base_url: http_url(&key("base_url"), &p.base_url)?
                .trim_end_matches('/')
                .to_string(),
            api_key: Secret::new(p.api_key.trim()),
            models,
            local: p.local,
        };
        providers.insert(name, cfg);
    }

    let mut aliases = BTreeMap::new();
    for (name, targets) in raw.models.aliases {
        let key = format!("models.aliases.{name}");
        if name.trim().is_empty() {
            return Err(bad("models.aliases", "alias names must not be empty"));
        }
        if targets.is_empty() {
            return Err(bad(key, "must name at least one model"));
        }
        let targets = targets
            .iter()
            .enumerate()
            .map(|(j, t)| non_empty(&format!("{key}[{j}]"), t))
            .collect::<Result<Vec<_>, _>>()?;
        aliases.insert(name, targets);
    }
    let models = ModelsConfig {
        default: raw.models.default.trim().to_string(),
        aliases,
    };

    let egress = EgressConfig {
        allow_private: raw.egress.allow_private,
        allow_hosts: lowercase(raw.egress.allow_hosts),
        deny_hosts: lowercase(raw.egress.deny_hosts),
    };
    let tasks = TasksConfig {
        concurrency: at_least("tasks.concurrency", raw.tasks.concurrency, 1)?,
    };

    Ok(Config {
        server,
        store,
        auth,
        providers,
        models,
        egress,
        tasks,
        redacted: Value::Null,
    })
}

fn s_lower(s: &str) -> String {
    s.trim().to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Loads `body` as the user's `$GATEHOUSE_HOME/gatehouse.toml`.
    fn load(body: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(home.path().join("gatehouse.toml"), body).unwrap();
        Config::load_with_env(None, home.path(), &env(vars))
    }

    fn err(body: &str) -> String {
        load(body, &[]).expect_err("should be refused").to_string()
    }

    #[test]
    fn defaults_have_documented_values() {
        let c = Config::defaults();
        assert_eq!(
            (c.server.host.as_str(), c.server.port, c.server.metrics_port),
            ("127.0.0.1", 8080, 0)
        );
        assert!(c.server.trusted_proxies.is_empty() && !c.server.secure_cookies);
        assert_eq!(
            (c.server.max_body_bytes, c.server.max_api_body_bytes),
            (1_048_576, 33_554_432)
        );
        assert_eq!(c.store.backend, StoreBackend::Sled);
        assert!(c.store.url.is_empty());
        assert_eq!(c.store.sweep_interval, Duration::from_secs(60));
        assert!(!c.auth.allow_anonymous_local);
        assert_eq!(c.auth.session_ttl, time::Duration::days(30));
        assert_eq!(c.auth.oauth_session_ttl, time::Duration::hours(24));
        assert_eq!(c.auth.oauth_state_ttl, time::Duration::minutes(10));
        assert_eq!(c.auth.max_login_failures, 5);
        assert_eq!(c.auth.login_failure_window, time::Duration::minutes(15));
        assert!(c.auth.github.is_none() && c.auth.oidc.is_empty() && c.auth.bearer.is_empty());
        assert!(!c.has_external_auth());
        assert!(c.providers.is_empty());
        assert_eq!(
            c.models,
            ModelsConfig {
                default: String::new(),
                aliases: BTreeMap::new()
            }
        );
        assert_eq!(
            c.egress,
            EgressConfig {
                allow_private: false,
                allow_hosts: vec![],
                deny_hosts: vec![]
            }
        );
        assert_eq!(c.tasks.concurrency, 4);
    }

    #[test]
    fn home_file_overrides_defaults() {
        let c = load("[server]\nport = 9090\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n[tasks]\nconcurrency = 2\n", &[]).unwrap();
        assert_eq!(c.server.port, 9090);
        assert_eq!(c.server.host, "127.0.0.1");
        assert_eq!(
            c.server.trusted_proxies,
            vec![
                "10.0.0.0/8".parse::<IpNet>().unwrap(),
                "::1/128".parse().unwrap()
            ]
        );
        assert_eq!(c.tasks.concurrency, 2);
    }

    #[test]
    fn explicit_file_is_used_and_must_exist() {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(
            home.path().join("gatehouse.toml"),
            "[server]\nport = 1111\n",
        )
        .unwrap();
        let other = home.path().join("other.toml");
        std::fs::write(&other, "[server]\nport = 2222\n").unwrap();
        let c = Config::load_with_env(Some(&other), home.path(), &HashMap::new()).unwrap();
        assert_eq!(c.server.port, 2222);
        let missing = home.path().join("missing.toml");
        let e = Config::load_with_env(Some(&missing), home.path(), &HashMap::new()).unwrap_err();
        assert!(matches!(e, ConfigError::Read { .. }), "{e}");
        assert!(e.to_string().contains("missing.toml"), "{e}");
        // No file at all in home: defaults.
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(
            Config::load_with_env(None, empty.path(), &HashMap::new())
                .unwrap()
                .server
                .port,
            8080
        );
    }

    #[test]
    fn env_overrides_file() {
        let vars = [
            ("GATEHOUSE__SERVER__PORT", "9000"),
            ("GATEHOUSE__AUTH__SESSION_TTL", "1h"),
            ("GATEHOUSE__SERVER__SECURE_COOKIES", "true"),
            ("GATEHOUSE__EGRESS__ALLOW_HOSTS", "a.example, B.example"),
            ("GATEHOUSE__SERVER__TRUSTED_PROXIES", "10.0.0.0/8"),
            ("GATEHOUSE_HOME", "/ignored"),
        ];
        let c = load(
            "[server]\nport = 7000\n[auth]\nsession_ttl = \"2d\"\n",
            &vars,
        )
        .unwrap();
        assert_eq!(c.server.port, 9000);
        assert!(c.server.secure_cookies);
        assert_eq!(c.auth.session_ttl, time::Duration::hours(1));
        assert_eq!(c.egress.allow_hosts, vec!["a.example", "b.example"]);
        assert_eq!(c.server.trusted_proxies.len(), 1);
        let e = load("", &[("GATEHOUSE__SERVER__PORT", "nine")])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("server.port: invalid value"), "{e}");
        let e = load("", &[("GATEHOUSE__SERVER__PROT", "1")])
            .unwrap_err()
            .to_string();
        assert_eq!(e, "unknown key `server.prot`");
    }

    #[test]
    fn expands_variables() {
        let body = "[auth.github]\nclient_id = \"${GH_ID}-x\"\nclient_secret = \"$GH_SECRET\"\nallowed_orgs = [\"$ORG\"]\n\
                    [models]\ndefault = \"cost$$5 $UNSET|${UNSET}|\"\n";
        let vars = [
            ("GH_ID", "abc"),
            ("GH_SECRET", "s3cr$t"),
            ("ORG", "Acme"),
            ("GITHUB_USERS", "Alice, bob carol,,"),
        ];
        let c = load(body, &vars).unwrap();
        let gh = c.auth.github.as_ref().unwrap();
        assert_eq!(gh.client_id, "abc-x");
        assert_eq!(gh.client_secret.expose(), "s3cr$t");
        assert_eq!(gh.allowed_users, vec!["alice", "bob", "carol"]);
        assert_eq!(gh.allowed_orgs, vec!["acme"]);
        assert_eq!(c.models.default, "cost$5 ||");
        assert!(c.has_external_auth());
        assert_eq!(expand("a$", &HashMap::new()).unwrap(), "a$");
        assert!(err("[models]\ndefault = \"${OPEN\"\n").starts_with("models.default: unterminated"));
    }

    #[test]
    fn github_needs_a_secret() {
        let e = load("", &[("GITHUB_CLIENT_ID", "id")])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("auth.github.client_secret:"), "{e}");
    }

    #[test]
    fn unknown_keys_are_named() {
        assert_eq!(err("[server]\nprot = 1\n"), "unknown key `server.prot`");
        assert_eq!(err("[nope]\nx = 1\n"), "unknown key `nope`");
        assert_eq!(
            err("[auth.github]\nclient_idd = \"x\"\n"),
            "unknown key `auth.github.client_idd`"
        );
        assert_eq!(
            err("[providers.x]\nbase_url = \"http://a\"\nfoo = 1\n"),
            "unknown key `providers.x.foo`"
        );
        assert_eq!(
            err("[[auth.bearer]]\ntype = \"jwks\"\njwks_uri = \"https://a/jwks\"\n[[auth.bearer]]\ntype = \"github\"\nbar = 2\n"),
            "unknown key `auth.bearer[1].bar`"
        );
        assert_eq!(err("[access]\nx = 1\n"), "unknown key `access`");
    }

    #[test]
    fn bad_values_are_named() {
        assert_eq!(
            err("[auth]\nsession_ttl = \"3x\"\n"),
            "auth.session_ttl: bad duration \"3x\": unknown unit (use ms, s, m, h or d)"
        );
        assert!(err("[store]\nsweep_interval = \"0s\"\n").starts_with("store.sweep_interval:"));
        assert_eq!(
            err("[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"10.0.0.0/99\"]\n"),
            "server.trusted_proxies[1]: bad CIDR \"10.0.0.0/99\""
        );
        assert!(err("[server]\nport = 0\n").starts_with("server.port:"));
        assert!(err("[server]\nport = 70000\n").starts_with("server.port: invalid value 70000"));
        assert!(err("[server]\nmax_body_bytes = 10\n").starts_with("server.max_body_bytes:"));
        assert!(err("[server]\nsecure_cookies = \"yes\"\n").starts_with("server.secure_cookies:"));
        assert!(err("[store]\nbackend = \"mysql\"\n").starts_with("store.backend:"));
        assert!(err("[store]\nbackend = \"postgres\"\n").starts_with("store.url:"));
        assert!(err("[auth]\nmax_login_failures = 0\n").starts_with("auth.max_login_failures:"));
        assert!(err("[tasks]\nconcurrency = 0\n").starts_with("tasks.concurrency:"));
        assert!(err("[providers.x]\nbase_url = \"ftp://a\"\n").starts_with("providers.x.base_url:"));
        assert!(
            err("[providers.x]\ntype = \"cohere\"\nbase_url = \"http://a\"\n")
                .starts_with("providers.x.type:")
        );
        assert!(err("[providers.\"a/b\"]\nbase_url = \"http://a\"\n").starts_with("providers.a/b:"));
        assert!(err("[models.aliases]\nfast = []\n").starts_with("models.aliases.fast:"));
        assert_eq!(
            err("[[auth.bearer]]\njwks_uri = \"https://a\"\n"),
            "auth.bearer[0].type: missing"
        );
        assert!(err("[[auth.bearer]]\ntype = \"jwks\"\n").starts_with("auth.bearer[0].jwks_uri:"));
        assert!(
            err("[[auth.bearer]]\ntype = \"introspection\"\n").starts_with("auth.bearer[0].url:")
        );
        assert!(err("[[auth.bearer]]\ntype = \"custom\"\n").starts_with("auth.bearer[0].endpoint:"));
        let e = err("[[auth.bearer]]\ntype = \"github\"\ndefault_scopes = [\"read\", \"root\"]\n");
        assert!(e.starts_with("auth.bearer[0].default_scopes[1]:"), "{e}");
        assert!(err("[auth.oidc.corp]\nclient_id = \"x\"\n").starts_with("auth.oidc.corp.issuer:"));
        assert!(err("[server\n").contains("not valid TOML"));
    }

    #[test]
    fn optional_tables_get_defaults() {
        let body = "[auth.oidc.corp]\nissuer = \"https://id.example.com\"\nclient_id = \"gh\"\nclient_secret = \"x\"\n\
                    [[auth.bearer]]\ntype = \"jwks\"\njwks_uri = \"https://id.example.com/jwks\"\nclaims_mapping = { groups = \"roles\" }\n\
                    [providers.openai]\nbase_url = \"https://api.openai.com/v1/\"\nmodels = [\"gpt-4o-mini\"]\n\
                    [models.aliases]\nfast = [\"openai/gpt-4o-mini\", \"groq/llama\"]\n";
        let c = load(body, &[]).unwrap();
        let o = &c.auth.oidc["corp"];
        assert_eq!(o.scopes, vec!["openid", "email", "profile"]);
        assert_eq!(
            (o.groups_claim.as_str(), o.redirect_uri.as_str()),
            ("groups", "")
        );
        let b = &c.auth.bearer[0];
        assert_eq!(b.kind, BearerKind::Jwks);
        assert_eq!(
            (b.key_recheck_period, b.cache_ttl),
            (Duration::from_secs(3600), Duration::from_secs(60))
        );
        assert_eq!(b.default_scopes, vec!["read", "write"]);
        assert_eq!(b.claims_mapping["groups"], "roles");
        let p = &c.providers["openai"];
        assert_eq!(
            (p.kind, p.base_url.as_str(), p.local),
            (ProviderKind::OpenAi, "https://api.openai.com/v1", false)
        );
        assert_eq!(c.models.aliases["fast"].len(), 2);
        assert!(c.has_external_auth());
    }

    #[test]
    fn redacted_output_hides_secrets() {
        let body = "[auth.github]\nclient_id = \"cid\"\nclient_secret = \"gh-SECRET-1\"\n\
                    [providers.x]\nbase_url = \"https://a.example\"\napi_key = \"$KEY\"\n\
                    [store]\nbackend = \"postgres\"\nurl = \"postgres://u:pw-SECRET-3@db/gh\"\n";
        let c = load(body, &[("KEY", "sk-SECRET-2")]).unwrap();
        assert_eq!(c.providers["x"].api_key.expose(), "sk-SECRET-2");
        let text = c.redacted_toml();
        let json = c.redacted_json().to_string();
        let debug = format!("{c:?}");
        for out in [&text, &json, &debug] {
            assert!(out.contains("***"), "{out}");
            assert!(!out.contains("SECRET"), "{out}");
        }
        assert!(
            text.contains("token_url = \"https://github.com/login/oauth/access_token\""),
            "{text}"
        );
        assert!(text.contains("type = \"openai\""), "{text}");
        let back: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(back["providers"]["x"]["api_key"].as_str(), Some("***"));
        assert_eq!(c.redacted_json()["auth"]["github"]["client_secret"], "***");
        assert_eq!(serde_json::to_string(&Secret::new("x")).unwrap(), "\"***\"");
        assert_eq!(format!("{:?}", Secret::new("x")), "***");
    }

    #[test]
    fn durations() {
        let cases = [
            ("500ms", 0, 500),
            ("90s", 90, 0),
            ("15m", 900, 0),
            ("24h", 86_400, 0),
            ("30d", 2_592_000, 0),
            ("42", 42, 0),
        ];
        for (s, secs, ms) in cases {
            assert_eq!(
                parse_duration(s),
                Ok(Duration::from_secs(secs) + Duration::from_millis(ms)),
                "{s}"
            );
        }
        for s in [
            "",
            " ",
            "-5s",
            "3x",
            "h",
            "1.5h",
            "99999999999999999999s",
            "999999999999999999d",
        ] {
            assert!(parse_duration(s).is_err(), "{s:?}");
        }
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
        assert_eq!(format_duration(Duration::from_secs(7200)), "2h");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }

    proptest! {
        #[test]
        fn format_parses_back(secs in any::<u64>()) {
            let d = Duration::from_secs(secs);
            prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }

        #[test]
        fn sub_second_parses_back(ms in 0u64..1_000_000_000_000) {
            let d = Duration::from_millis(ms);
            prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }

        #[test]
        fn garbage_never_panics(s in "\\PC*", t in "[0-9]{0,25}[a-z ]{0,3}") {
            let _ = parse_duration(&s);
            let _ = parse_duration(&t);
            let _ = expand(&s, &HashMap::new());
        }
    }
}
