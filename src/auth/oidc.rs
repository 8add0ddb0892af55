//! OpenID Connect providers (`[auth.oidc.NAME]`): discovery from
//! `{issuer}/.well-known/openid-configuration`, fetched on first use and
//! refreshed hourly; the issuer in the document must be the configured one.

use crate::auth::external::jwks::JwksValidator;
use crate::config::OidcConfig;
use arc_swap::ArcSwapOption;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use time::{Duration, OffsetDateTime};

const REFRESH: Duration = Duration::HOUR;

pub struct Discovery {
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    /// Verifies ID tokens and logout tokens: the provider's keys, its issuer, our client id.
    pub keys: JwksValidator,
    fetched_at: OffsetDateTime,
}

pub struct OidcProvider {
    pub name: String,
    pub config: OidcConfig,
    discovery: ArcSwapOption<Discovery>,
}

#[derive(Default)]
pub struct OidcProviders {
    map: BTreeMap<String, Arc<OidcProvider>>,
}

impl OidcProviders {
    pub fn new(configs: &BTreeMap<String, OidcConfig>) -> Self {
        let map = configs
            .iter()
            .map(|(name, c)| {
                (
                    name.clone(),
                    Arc::new(OidcProvider {
                        name: name.clone(),
                        config: c.clone(),
                        discovery: ArcSwapOption::empty(),
                    }),
                )
            })
            .collect();
        Self { map }
    }

    pub fn get(&self, name: &str) -> Option<Arc<OidcProvider>> {
        self.map.get(name).cloned()
    }
}

fn same_issuer(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

impl OidcProvider {
    /// The `via` of sessions from this provider.
    pub fn via(&self) -> String {
        format!("oidc:{}", self.name)
    }

    pub async fn discovery(
        &self,
        http: &awc::Client,
        now: OffsetDateTime,
    ) -> Result<Arc<Discovery>, &'static str> {
        if let Some(d) = self.discovery.load_full() {
            if now - d.fetched_at < REFRESH {
                return Ok(d);
            }
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.config.issuer.trim_end_matches('/')
        );
        let (status, doc) = crate::http::github::read_json(
            http.get(&url)
                .insert_header(("accept", "application/json"))
                .send()
                .await,
        )
        .await?;
        if status != 200 {
            return Err("discovery document unavailable");
        }
        let text = |k: &str| {
            doc.get(k)
                .and_then(Value::as_str)
                .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
        };
        if !doc
            .get("issuer")
            .and_then(Value::as_str)
            .is_some_and(|i| same_issuer(i, &self.config.issuer))
        {
            return Err("discovery names another issuer");
        }
        let (Some(auth), Some(token), Some(jwks)) = (
            text("authorization_endpoint"),
            text("token_endpoint"),
            text("jwks_uri"),
        ) else {
            return Err("discovery document incomplete");
        };
        let issuer = doc
            .get("issuer")
            .and_then(Value::as_str)
            .unwrap_or(&self.config.issuer);
        let d = Arc::new(Discovery {
            authorization_endpoint: auth.to_owned(),
            token_endpoint: token.to_owned(),
            keys: JwksValidator::for_issuer(jwks, issuer, &self.config.client_id),
            fetched_at: now,
        });
        self.discovery.store(Some(d.clone()));
        Ok(d)
    }
}
