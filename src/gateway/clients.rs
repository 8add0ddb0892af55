//! HTTP clients for upstream calls. `awc` clients are per thread, so each
//! worker keeps one per provider (its connection pool), rebuilt when the
//! provider's connection settings change. Every client resolves names
//! through the egress policy and connects only to the addresses it
//! allowed, so a name that resolves to a forbidden address is refused at
//! request time even if it was fine at start.

use actix_tls::connect::{Resolve, Resolver};
use futures_util::future::LocalBoxFuture;
use gatehouse_actors::gateway::{EgressPolicy, ModelLister, Profile, Provider, ProviderKind};
use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// What every upstream client is built from (shared by all workers).
#[derive(Clone)]
pub struct UpstreamSetup {
    pub egress: Arc<EgressPolicy>,
    pub tls: Arc<rustls::ClientConfig>,
}

impl UpstreamSetup {
    pub fn new(egress: EgressPolicy) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        UpstreamSetup {
            egress: Arc::new(egress),
            tls: Arc::new(tls),
        }
    }

    /// A client for `provider`: egress-checked resolution, its connect and
    /// first-byte timeouts, no redirects, no default headers.
    pub fn client(&self, provider: &Provider) -> awc::Client {
        self.client_for(
            &provider.name,
            &provider.base_url,
            provider.local,
            provider.timeouts,
        )
    }

    /// A client for any upstream at `base_url` (a provider, the agent backend).
    pub fn client_for(
        &self,
        name: &Arc<str>,
        base_url: &str,
        local: bool,
        timeouts: gatehouse_actors::gateway::Timeouts,
    ) -> awc::Client {
        let resolver = Resolver::custom(EgressResolver {
            egress: self.egress.clone(),
            local,
            tls: base_url.starts_with("https://"),
            provider: name.clone(),
        });
        let connector = awc::Connector::new()
            .connector(actix_tls::connect::Connector::new(resolver).service())
            .rustls_0_23(self.tls.clone())
            .timeout(timeouts.connect)
            .limit(1024)
            .conn_keep_alive(Duration::from_secs(30));
        awc::Client::builder()
            .connector(connector)
            .timeout(timeouts.first_byte)
            .disable_redirects()
            .no_default_headers()
            .add_default_header((
                "user-agent",
                concat!("gatehouse/", env!("CARGO_PKG_VERSION")),
            ))
            .finish()
    }
}

struct EgressResolver {
    egress: Arc<EgressPolicy>,
    local: bool,
    tls: bool,
    provider: Arc<str>,
}

impl Resolve for EgressResolver {
    fn lookup<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> LocalBoxFuture<'a, Result<Vec<SocketAddr>, Box<dyn std::error::Error>>> {
        Box::pin(async move {
            self.egress
                .resolve(host, port, self.local, self.tls)
                .await
                .map_err(|e| {
                    tracing::warn!(provider = %self.provider, reason = %e, "egress denied");
                    Box::new(e) as Box<dyn std::error::Error>
                })
        })
    }
}

/// A provider version's endpoint (`None`: its URL is not a valid URI).
type ParsedEndpoint = (u64, Option<Endpoint>);

/// This worker's clients, one per provider (and one for the agent backend).
#[derive(Default)]
pub struct WorkerClients {
    clients: RefCell<foldhash::HashMap<Arc<str>, (u64, awc::Client)>>,
    /// Each provider's endpoint URIs, parsed once (`None`: not a valid URI).
    uris: RefCell<foldhash::HashMap<(Arc<str>, &'static str), ParsedEndpoint>>,
    agent: RefCell<Option<awc::Client>>,
}

impl WorkerClients {
    /// The client for the agent backend at `base_url`.
    pub fn agent(
        &self,
        setup: &UpstreamSetup,
        base_url: &str,
        local: bool,
        timeout: Duration,
    ) -> awc::Client {
        self.agent
            .borrow_mut()
            .get_or_insert_with(|| {
                let t = gatehouse_actors::gateway::Timeouts {
                    connect: timeout,
                    first_byte: timeout,
                    total: timeout,
                };
                setup.client_for(&Arc::from("agent"), base_url, local, t)
            })
            .clone()
    }

    pub fn get(&self, setup: &UpstreamSetup, provider: &Provider) -> awc::Client {
        let mut clients = self.clients.borrow_mut();
        if let Some((serial, client)) = clients.get(&provider.name) {
            if *serial == provider.serial {
                return client.clone();
            }
        }
        let client = setup.client(provider);
        clients.insert(provider.name.clone(), (provider.serial, client.clone()));
        client
    }

    /// The URI of `path` under the provider's base URL (`None` when the two
    /// do not make a valid URI), parsed once per provider version.
    pub fn uri(&self, provider: &Provider, path: &'static str) -> Option<Endpoint> {
        let mut uris = self.uris.borrow_mut();
        let key = (provider.name.clone(), path);
        match uris.get(&key) {
            Some((serial, uri)) if *serial == provider.serial => uri.clone(),
            _ => {
                let uri = Endpoint::new(&format!("{}{path}", provider.base_url));
                uris.insert(key, (provider.serial, uri.clone()));
                uri
            }
        }
    }
}

/// An upstream URI and the `Host` header for it (as awc would write it:
/// the port only when it is not 80 or 443).
#[derive(Clone)]
pub struct Endpoint {
    pub uri: awc::http::Uri,
    pub host: awc::http::header::HeaderValue,
}

impl Endpoint {
    fn new(url: &str) -> Option<Self> {
        let uri: awc::http::Uri = url.parse().ok()?;
        let host = uri.host()?;
        let host = match uri.port_u16() {
            None | Some(80) | Some(443) => host.to_owned(),
            Some(port) => format!("{host}:{port}"),
        };
        Some(Endpoint {
            host: awc::http::header::HeaderValue::from_str(&host).ok()?,
            uri,
        })
    }
}

/// Adds a profile's credential (and headers) the way the provider's API
/// expects them; `None` for a local provider that needs no key.
pub fn authorize(
    mut req: awc::ClientRequest,
    kind: ProviderKind,
    profile: Option<&Profile>,
) -> awc::ClientRequest {
    if kind == ProviderKind::Anthropic {
        req = req.insert_header(("anthropic-version", ANTHROPIC_VERSION));
    }
    let Some(profile) = profile else {
        return req;
    };
    req = match kind {
        ProviderKind::OpenAi => match bearer_value(&profile.key) {
            Some(v) => req.insert_header((awc::http::header::AUTHORIZATION, v)),
            None => req.insert_header(("authorization", format!("Bearer {}", profile.key))),
        },
        ProviderKind::Anthropic => req.insert_header(("x-api-key", &*profile.key)),
    };
    for (name, value) in &profile.headers {
        req = req.insert_header((name.as_str(), value.as_str()));
    }
    req
}

/// `Bearer <key>` as a header value marked sensitive, built without `fmt`.
fn bearer_value(key: &str) -> Option<awc::http::header::HeaderValue> {
    let mut v = Vec::with_capacity(7 + key.len());
    v.extend_from_slice(b"Bearer ");
    v.extend_from_slice(key.as_bytes());
    let mut v =
        awc::http::header::HeaderValue::from_maybe_shared(actix_web::web::Bytes::from(v)).ok()?;
    v.set_sensitive(true);
    Some(v)
}

pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// The model-list URL of a provider.
pub fn models_url(provider: &Provider) -> String {
    match provider.kind {
        ProviderKind::OpenAi => format!("{}/models", provider.base_url),
        ProviderKind::Anthropic => format!("{}/v1/models?limit=1000", provider.base_url),
    }
}

/// Model ids a provider lists now (`GET /models`), in its own ids.
pub async fn list_models(client: &awc::Client, provider: &Provider) -> Result<Vec<String>, String> {
    #[derive(serde::Deserialize)]
    struct Listed {
        data: Vec<Item>,
    }
    #[derive(serde::Deserialize)]
    struct Item {
        id: String,
    }
    let now_ms = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let profile = provider.next_profile(now_ms, "", 0).map(|(_, p)| &**p);
    if profile.is_none() && !provider.profiles.is_empty() {
        return Err("every profile is failing or cooling down".into());
    }
    let req = authorize(client.get(models_url(provider)), provider.kind, profile);
    let res = req
        .send()
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    if !res.status().is_success() {
        return Err(format!("upstream answered {}", res.status().as_u16()));
    }
    let mut res = res.timeout(provider.timeouts.total);
    let body = res
        .body()
        .limit(8 * 1024 * 1024)
        .await
        .map_err(|e| format!("reading the list failed: {e}"))?;
    let listed: Listed = serde_json::from_slice(&body)
        .map_err(|_| "the list is not {\"data\":[{\"id\"}]}".to_string())?;
    let mut ids: Vec<String> = listed
        .data
        .into_iter()
        .map(|i| i.id)
        .filter(|id| !id.is_empty() && id.len() <= 256 && !id.chars().any(char::is_control))
        .collect();
    ids.sort();
    ids.dedup();
    Ok(ids)
}

/// The `ProviderActor`'s model lister, on the actor's thread.
pub struct HttpLister {
    setup: UpstreamSetup,
    clients: WorkerClients,
}

impl HttpLister {
    pub fn factory(setup: UpstreamSetup) -> gatehouse_actors::gateway::SharedLister {
        Arc::new(move || {
            Box::new(HttpLister {
                setup: setup.clone(),
                clients: WorkerClients::default(),
            }) as Box<dyn ModelLister>
        })
    }
}

impl ModelLister for HttpLister {
    fn list(
        &self,
        provider: Arc<Provider>,
    ) -> LocalBoxFuture<'static, Result<Vec<String>, String>> {
        let client = self.clients.get(&self.setup, &provider);
        Box::pin(async move { list_models(&client, &provider).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_carries_the_host_header_awc_would_write() {
        for (url, host) in [
            (
                "http://127.0.0.1:8080/v1/chat/completions",
                "127.0.0.1:8080",
            ),
            ("https://api.openai.com/v1/embeddings", "api.openai.com"),
            ("https://api.example.com:443/v1/messages", "api.example.com"),
            ("http://example.com:80/x", "example.com"),
            ("http://[::1]:11434/v1/models", "[::1]:11434"),
        ] {
            let e = Endpoint::new(url).unwrap();
            assert_eq!(e.host.to_str().unwrap(), host, "{url}");
            assert_eq!(e.uri.to_string(), url);
        }
        let e = Endpoint::new("http://h:1/a/b?c=d").unwrap();
        assert_eq!(e.uri.path_and_query().unwrap().as_str(), "/a/b?c=d");
        for bad in ["", "not a url", "http://", "/relative/only"] {
            assert!(Endpoint::new(bad).is_none(), "{bad}");
        }
    }
}
