//! Raw settings to typed settings: every string becomes a `Duration`, URL, CIDR or
//! enum here, and every error names the offending key.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use ipnet::IpNet;
use serde_json::Value;

use super::raw::RawConfig;
use super::{
    bad, parse_duration, AuthConfig, BearerConfig, BearerKind, Config, ConfigError, EgressConfig,
    GithubConfig, MetricsAccess, ModelsConfig, OidcConfig, ProfileConfig, ProviderConfig,
    ProviderKind, Secret, ServerConfig, StoreBackend, StoreConfig, TasksConfig,
};

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

/// actix reads at most 128 KiB of request head; a larger limit could not hold.
const MAX_HEADER_BYTES: usize = 128 * 1024;

fn within<T: PartialOrd + fmt::Display>(key: &str, v: T, min: T, max: T) -> Result<T, ConfigError> {
    if v < min || v > max {
        return Err(bad(key, format!("must be from {min} to {max}, got {v}")));
    }
    Ok(v)
}

fn at_least<T: PartialOrd + fmt::Display>(key: &str, v: T, min: T) -> Result<T, ConfigError> {
    if v < min {
        return Err(bad(key, format!("must be at least {min}, got {v}")));
    }
    Ok(v)
}

/// `[a-z_][a-z0-9_]{0,62}`: a schema name the store can quote into SQL.
fn valid_schema(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() <= 63
        && b.first()
            .is_some_and(|c| c.is_ascii_lowercase() || *c == b'_')
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}

/// The egress policy as configured (host lists lowercased).
pub(super) fn egress_policy(e: &super::raw::RawEgress) -> gatehouse_actors::gateway::EgressPolicy {
    gatehouse_actors::gateway::EgressPolicy {
        allow_private: e.allow_private,
        allow_hosts: lowercase(e.allow_hosts.clone()),
        deny_hosts: lowercase(e.deny_hosts.clone()),
    }
}

pub(super) fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
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
        metrics: match s_lower(&s.metrics).as_str() {
            "loopback" => MetricsAccess::Loopback,
            "admin" => MetricsAccess::Admin,
            "off" => MetricsAccess::Off,
            other => {
                return Err(bad(
                    "server.metrics",
                    format!("{other:?}: expected \"loopback\", \"admin\" or \"off\""),
                ))
            }
        },
        shutdown_timeout: duration("server.shutdown_timeout", &s.shutdown_timeout, true)?,
        auth_rate_per_minute: s.auth_rate_per_minute,
        max_header_bytes: within(
            "server.max_header_bytes",
            s.max_header_bytes,
            1024,
            MAX_HEADER_BYTES,
        )?,
        client_header_timeout: duration(
            "server.client_header_timeout",
            &s.client_header_timeout,
            false,
        )?,
        client_body_timeout: duration("server.client_body_timeout", &s.client_body_timeout, false)?,
        max_streams_per_principal: s.max_streams_per_principal,
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
    let schema = raw.store.schema.trim();
    if !schema.is_empty() && !valid_schema(schema) {
        return Err(bad(
            "store.schema",
            format!("invalid schema name {schema:?}: use [a-z_][a-z0-9_]{{0,62}}"),
        ));
    }
    let store = StoreConfig {
        backend,
        url: Secret::new(raw.store.url.trim()),
        sweep_interval: duration("store.sweep_interval", &raw.store.sweep_interval, false)?,
        schema: (!schema.is_empty()).then(|| schema.to_owned()),
        pool_size: at_least("store.pool_size", raw.store.pool_size, 1)?,
        connect_timeout: duration("store.connect_timeout", &raw.store.connect_timeout, false)?,
        query_timeout: duration("store.query_timeout", &raw.store.query_timeout, false)?,
        slow_query: duration("store.slow_query", &raw.store.slow_query, false)?,
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
            // Empty: derived from the request (this gateway's own callback URL).
            redirect_uri: match g.redirect_uri.trim() {
                "" => String::new(),
                uri => http_url("auth.github.redirect_uri", uri)?,
            },
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
        let kind = match s_lower(&b.kind).as_str() {
            "jwks" => BearerKind::Jwks,
            "introspection" => BearerKind::Introspection,
            "github" => BearerKind::Github,
            "custom" => BearerKind::Custom,
            other => {
                return Err(bad(
                    key("type"),
                    format!(
                        "unknown type {other:?} (expected jwks, introspection, github or custom)"
                    ),
                ))
            }
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
        max_login_failures_per_ip: match a.max_login_failures_per_ip {
            0 => a.max_login_failures,
            n => n,
        },
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
        let base_url = http_url(&key("base_url"), &p.base_url)?
            .trim_end_matches('/')
            .to_string();
        egress_policy(&raw.egress)
            .check_url(&base_url, p.local)
            .map_err(|e| {
                bad(
                    key("base_url"),
                    format!("refused by the egress policy: {e}"),
                )
            })?;
        let timeouts = gatehouse_actors::gateway::Timeouts {
            connect: duration(&key("connect_timeout"), &p.connect_timeout, false)?,
            first_byte: duration(&key("first_byte_timeout"), &p.first_byte_timeout, false)?,
            total: duration(&key("total_timeout"), &p.total_timeout, false)?,
        };
        let circuit = gatehouse_actors::gateway::CircuitConfig {
            failures: at_least(&key("circuit_failures"), p.circuit_failures, 1)?,
            cooldown: duration(&key("circuit_cooldown"), &p.circuit_cooldown, false)?,
        };
        let mut profiles = Vec::new();
        for (pname, raw_profile) in p.profiles {
            let pkey = |k: &str| key(&format!("profiles.{pname}.{k}"));
            check_name(&key(&format!("profiles.{pname}")), &pname)?;
            if raw_profile.api_key.trim().is_empty() {
                return Err(bad(pkey("api_key"), "must not be empty"));
            }
            let mut headers = Vec::new();
            for (h, v) in raw_profile.headers {
                if !gatehouse_actors::gateway::profiles::header_allowed(&h) {
                    return Err(bad(
                        pkey("headers"),
                        format!("the header {h:?} may not be set by a profile"),
                    ));
                }
                if !gatehouse_actors::gateway::profiles::header_value_allowed(&v) {
                    return Err(bad(
                        pkey("headers"),
                        format!("the value of {h:?} must be printable ASCII, at most 1024 bytes"),
                    ));
                }
                headers.push((h, v));
            }
            profiles.push(ProfileConfig {
                name: pname,
                api_key: Secret::new(raw_profile.api_key.trim()),
                order: raw_profile.order,
                headers,
            });
        }
        let cfg = ProviderConfig {
            kind,
            base_url,
            api_key: Secret::new(p.api_key.trim()),
            models,
            local: p.local,
            timeouts,
            circuit,
            profiles,
            auth_order: p.auth_order,
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
        refresh_interval: duration(
            "models.refresh_interval",
            &raw.models.refresh_interval,
            true,
        )?,
        aliases,
    };

    let agent = match raw.tasks.agent {
        Some(a) if !a.base_url.trim().is_empty() => {
            let base_url = http_url("tasks.agent.base_url", &a.base_url)?
                .trim_end_matches('/')
                .to_string();
            egress_policy(&raw.egress)
                .check_url(&base_url, a.local)
                .map_err(|e| {
                    bad(
                        "tasks.agent.base_url",
                        format!("refused by the egress policy: {e}"),
                    )
                })?;
            Some(super::AgentConfig {
                base_url,
                local: a.local,
                timeout: duration("tasks.agent.timeout", &a.timeout, false)?,
            })
        }
        _ => None,
    };
    let egress = EgressConfig {
        allow_private: raw.egress.allow_private,
        allow_hosts: lowercase(raw.egress.allow_hosts),
        deny_hosts: lowercase(raw.egress.deny_hosts),
    };
    let tasks = TasksConfig {
        concurrency: at_least("tasks.concurrency", raw.tasks.concurrency, 1)?,
        max_queued: raw.tasks.max_queued,
        approval: match s_lower(&raw.tasks.approval).as_str() {
            "owner" => gatehouse_actors::tasks::Approver::Owner,
            "admin" => gatehouse_actors::tasks::Approver::Admin,
            "both" => gatehouse_actors::tasks::Approver::Both,
            other => {
                return Err(bad(
                    "tasks.approval",
                    format!("unknown {other:?} (expected owner, admin or both)"),
                ))
            }
        },
        lease: duration("tasks.lease", &raw.tasks.lease, false)?,
        agent,
    };

    let access = access(raw.access)?;
    let limits = super::LimitsConfig {
        user: limits("limits.user", &raw.limits.user)?,
        token: limits("limits.token", &raw.limits.token)?,
    };
    let mut prices = std::collections::HashMap::new();
    for (model, p) in raw.prices {
        let key = format!("prices.{model}");
        if !(p.input.is_finite() && p.output.is_finite() && p.input >= 0.0 && p.output >= 0.0) {
            return Err(bad(
                key,
                "input and output must be prices of 0 or more per million tokens",
            ));
        }
        prices.insert(
            model,
            super::Price {
                input: p.input,
                output: p.output,
            },
        );
    }

    Ok(Config {
        server,
        store,
        auth,
        providers,
        models,
        egress,
        tasks,
        limits,
        prices,
        access,
        redacted: Value::Null,
    })
}

fn limits(
    key: &str,
    raw: &super::raw::RawLimits,
) -> Result<gatehouse_actors::gateway::Limits, ConfigError> {
    if !(raw.budget.is_finite() && raw.budget >= 0.0) {
        return Err(bad(format!("{key}.budget"), "must be 0 (none) or more"));
    }
    let period = duration(&format!("{key}.budget_period"), &raw.budget_period, false)?;
    if period.as_secs() > gatehouse_actors::gateway::limits::MAX_BUDGET_PERIOD {
        return Err(bad(
            format!("{key}.budget_period"),
            "must be at most 3650 days",
        ));
    }
    Ok(gatehouse_actors::gateway::Limits {
        rpm: raw.rpm,
        tpm: raw.tpm,
        budget: raw.budget,
        budget_period: period.as_secs().max(1),
    })
}

/// `[[access.rules]]`: every rule must say what it grants or denies, to whom,
/// with known effects, scopes and methods.
fn access(raw: super::raw::RawAccess) -> Result<crate::access::AccessPolicy, ConfigError> {
    use crate::access::{Effect, Match, Rule, METHODS};
    let mut rules = Vec::new();
    for (i, r) in raw.rules.into_iter().enumerate() {
        let key = format!("access.rules[{i}]");
        let effect = match r.effect.as_deref().map(str::trim) {
            None | Some("allow") => Effect::Allow,
            Some("deny") => Effect::Deny,
            Some(other) => {
                return Err(bad(
                    format!("{key}.effect"),
                    format!("must be \"allow\" or \"deny\", not {other:?}"),
                ))
            }
        };
        if r.models.is_empty() && r.scopes.is_empty() {
            return Err(bad(&key, "a rule must list models or scopes"));
        }
        for (j, m) in r.models.iter().enumerate() {
            if m.trim().is_empty() || m.len() > 200 {
                return Err(bad(
                    format!("{key}.models[{j}]"),
                    "must be a model name or pattern such as \"openai/*\"",
                ));
            }
        }
        let mut scopes = Vec::new();
        for (j, sc) in r.scopes.iter().enumerate() {
            let scope = crate::auth::Scope::parse(sc.trim()).ok_or_else(|| {
                bad(
                    format!("{key}.scopes[{j}]"),
                    format!("unknown scope {sc:?} (read, write, admin)"),
                )
            })?;
            scopes.push(scope);
        }
        for (j, m) in r.who.methods.iter().enumerate() {
            if !METHODS.contains(&m.as_str()) {
                return Err(bad(
                    format!("{key}.match.methods[{j}]"),
                    format!("unknown method {m:?} ({})", METHODS.join(", ")),
                ));
            }
        }
        for (k, v) in &r.who.attributes {
            if k.trim().is_empty() || v.is_empty() {
                return Err(bad(
                    format!("{key}.match.attributes.{k}"),
                    "must name an attribute and at least one value",
                ));
            }
        }
        let who = Match {
            roles: r.who.roles,
            users: r.who.users,
            methods: r.who.methods,
            attributes: r.who.attributes,
        };
        rules.push(Rule {
            effect,
            who,
            models: r.models.into_iter().map(|m| m.trim().to_owned()).collect(),
            scopes,
        });
    }
    Ok(crate::access::AccessPolicy { rules })
}

fn s_lower(s: &str) -> String {
    s.trim().to_ascii_lowercase()
}
