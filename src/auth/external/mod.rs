//! Bearer tokens issued elsewhere (`[[auth.bearer]]`, tried in order): JWT
//! access tokens checked against a JWKS, RFC 7662 introspection, GitHub
//! tokens, and a custom endpoint. Verdicts are kept in one bounded cache keyed
//! by the token, never past the token's expiry. A gateway token
//! (`gh_…`) is never sent to any of them.

mod claims;
pub(crate) mod jwks;
mod remote;

use crate::auth::cache::TokenCache;
use crate::auth::principal::{Principal, Scope, Scopes, Via};
use crate::config::{BearerConfig, BearerKind};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

const CACHE_ENTRIES: usize = 100_000;
/// Bodies of validator answers are read up to this size.
pub(crate) const MAX_ANSWER: usize = 1024 * 1024;
/// Every call to a validator ends by then.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// What a request tells a custom validator (never its credentials).
pub struct RequestInfo {
    pub path: String,
    pub headers: BTreeMap<String, String>,
    pub params: BTreeMap<String, String>,
}

const PRIVATE_HEADERS: [&str; 6] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
    "x-session-token",
    "set-cookie",
];

impl RequestInfo {
    pub fn of(req: &actix_web::HttpRequest) -> Self {
        let headers = req
            .headers()
            .iter()
            .filter(|(k, _)| !PRIVATE_HEADERS.contains(&k.as_str()))
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        let params = req
            .query_string()
            .split('&')
            .filter_map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                let k = urlencoding::decode(k).ok()?.into_owned();
                (!k.is_empty()).then(|| {
                    (
                        k,
                        urlencoding::decode(v)
                            .map(|v| v.into_owned())
                            .unwrap_or_default(),
                    )
                })
            })
            .collect();
        RequestInfo {
            path: req.path().to_owned(),
            headers,
            params,
        }
    }
}

/// An identity established by a validator.
#[derive(Debug, Clone)]
pub struct Identity {
    pub subject: String,
    pub username: String,
    /// Scopes the token names (`read`, `write`, `admin`), before defaults.
    pub scopes: Vec<Scope>,
    pub attributes: BTreeMap<String, Vec<String>>,
    /// When the token stops being valid, if known.
    pub expires_at: Option<OffsetDateTime>,
}

enum Method {
    Jwks(jwks::JwksValidator),
    Introspection(remote::Introspection),
    Github(remote::Github),
    Custom(remote::Custom),
}

struct Validator {
    method: Method,
    config: BearerConfig,
    name: &'static str,
}

#[derive(Clone)]
struct Cached {
    principal: Arc<Principal>,
    until: OffsetDateTime,
}

pub struct Validators {
    list: Vec<Validator>,
    cache: TokenCache<Cached>,
    tls: Arc<rustls::ClientConfig>,
    /// The 401 message: which kind of token is expected, never why one failed.
    message: Arc<str>,
}

impl Validators {
    pub fn new(configs: &[BearerConfig]) -> Result<Validators, String> {
        let list: Vec<Validator> = configs
            .iter()
            .map(|c| {
                let (method, name) = match c.kind {
                    BearerKind::Jwks => (Method::Jwks(jwks::JwksValidator::new(c)), "jwks"),
                    BearerKind::Introspection => (
                        Method::Introspection(remote::Introspection::new(c)),
                        "introspection",
                    ),
                    BearerKind::Github => (Method::Github(remote::Github::new(c)), "github"),
                    BearerKind::Custom => (Method::Custom(remote::Custom::new(c)), "custom"),
                };
                Validator {
                    method,
                    config: c.clone(),
                    name,
                }
            })
            .collect();
        let kinds: Vec<String> = list
            .iter()
            .map(|v| match &v.method {
                Method::Jwks(_) if !v.config.issuer.is_empty() => {
                    format!("a JWT access token issued by {}", v.config.issuer)
                }
                Method::Jwks(_) => "a signed JWT access token".to_owned(),
                Method::Introspection(_) => {
                    "an access token accepted by the introspection endpoint".to_owned()
                }
                Method::Github(_) => "a GitHub token".to_owned(),
                Method::Custom(_) => "a token accepted by the configured validator".to_owned(),
            })
            .collect();
        let message = if kinds.is_empty() {
            "invalid API token: send a valid gateway token (gh_…) as `Authorization: Bearer` or `x-api-key`".to_owned()
        } else {
            format!(
                "invalid bearer token: send a gateway token (gh_…) or {}",
                kinds.join(", or ")
            )
        };
        let tls = tls_config(configs)?;
        Ok(Validators {
            list,
            cache: TokenCache::new(CACHE_ENTRIES),
            tls,
            message: message.into(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn message(&self) -> Arc<str> {
        self.message.clone()
    }

    /// A client for validator calls, with the configured CA certificates.
    /// `awc` clients are per thread; each worker builds its own.
    pub fn http_client(&self) -> awc::Client {
        awc::Client::builder()
            .timeout(CALL_TIMEOUT)
            .connector(
                awc::Connector::new()
                    .rustls_0_23(self.tls.clone())
                    .timeout(Duration::from_secs(5)),
            )
            .add_default_header((
                "user-agent",
                concat!("gatehouse/", env!("CARGO_PKG_VERSION")),
            ))
            .finish()
    }

    /// The principal for `token`, from the cache or the first validator that accepts it.
    #[tracing::instrument(skip_all)]
    pub async fn validate(
        &self,
        http: &awc::Client,
        token: &str,
        request: &actix_web::HttpRequest,
        now: OffsetDateTime,
    ) -> Option<Arc<Principal>> {
        if let Some(c) = self.cache.get(token) {
            if c.until > now {
                return Some(c.principal);
            }
            self.cache.remove(token);
        }
        for v in &self.list {
            let found = match &v.method {
                Method::Jwks(j) => j.validate(http, token, now).await,
                Method::Introspection(i) => i.validate(http, token, now).await,
                Method::Github(g) => g.validate(http, token).await,
                Method::Custom(c) => c.validate(http, token, &RequestInfo::of(request)).await,
            };
            match found {
                Ok(identity) => {
                    let principal = Arc::new(principal(&v.config, v.name, identity.clone()));
                    let ttl = match v.method {
                        Method::Jwks(_) => time::Duration::days(1),
                        _ => time::Duration::try_from(v.config.cache_ttl)
                            .unwrap_or(time::Duration::MINUTE),
                    };
                    let until = identity
                        .expires_at
                        .map_or(now + ttl, |exp| exp.min(now + ttl));
                    if until > now {
                        self.cache.insert(
                            token,
                            Cached {
                                principal: principal.clone(),
                                until,
                            },
                        );
                    }
                    return Some(principal);
                }
                Err(why) => tracing::debug!(validator = v.name, why, "bearer token refused"),
            }
        }
        None
    }
}

/// Scopes from the token where it names read/write/admin, else the
/// validator's defaults; attributes through `claims_mapping`.
fn principal(config: &BearerConfig, name: &'static str, id: Identity) -> Principal {
    let scopes: Scopes = if id.scopes.is_empty() {
        config
            .default_scopes
            .iter()
            .filter_map(|s| Scope::parse(s))
            .collect()
    } else {
        id.scopes.iter().copied().collect()
    };
    let roles = id.attributes.get("roles").cloned().unwrap_or_default();
    Principal {
        id: format!("{name}:{}", id.subject),
        username: id.username,
        roles,
        scopes,
        attributes: id.attributes,
        via: Via::External { method: name },
        user: None,
        models: None,
    }
}

fn tls_config(configs: &[BearerConfig]) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for c in configs.iter().filter(|c| !c.ca_file.is_empty()) {
        let certs = rustls_pki_types::CertificateDer::pem_file_iter(&c.ca_file)
            .map_err(|e| format!("auth.bearer ca_file {}: {e}", c.ca_file))?;
        for cert in certs {
            let cert = cert.map_err(|e| format!("auth.bearer ca_file {}: {e}", c.ca_file))?;
            roots
                .add(cert)
                .map_err(|e| format!("auth.bearer ca_file {}: {e}", c.ca_file))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn github(ca_file: &str) -> BearerConfig {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("g.toml");
        std::fs::write(
            &file,
            format!("[[auth.bearer]]\ntype = \"github\"\nca_file = \"{ca_file}\"\n"),
        )
        .unwrap();
        crate::config::Config::load_with_env(Some(&file), dir.path(), &Default::default())
            .unwrap()
            .auth
            .bearer[0]
            .clone()
    }

    #[test]
    fn a_ca_file_is_loaded_or_the_start_fails_naming_it() {
        let err = Validators::new(&[github("/nonexistent/ca.pem")])
            .err()
            .expect("a missing CA file is refused");
        assert!(err.contains("ca_file /nonexistent/ca.pem"), "{err}");
        // webpki's own roots as PEM: a real, parseable CA bundle.
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("ca.pem");
        let garbage = dir.path().join("bad.pem");
        std::fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        assert!(Validators::new(&[github(garbage.to_str().unwrap())]).is_err());
        std::fs::write(&pem, "").unwrap();
        let v = Validators::new(&[github(pem.to_str().unwrap())])
            .expect("an empty bundle adds nothing");
        assert!(!v.is_empty());
        assert!(v.message().contains("a GitHub token"));
    }
}
