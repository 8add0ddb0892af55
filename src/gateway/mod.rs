//! The model gateway's HTTP side: upstream clients (egress-checked), the
//! proxy with fallback, streaming pass-through and translation between the
//! OpenAI and Anthropic APIs.

pub mod clients;
pub mod proxy;
pub mod sse;
pub mod stream;
pub mod translate;

use crate::config::{Config, ProviderKind};
use gatehouse_actors::gateway::{self as gw, GatewaySpec, ProviderSpec};

/// The actors' view of the configured providers.
pub fn spec(config: &Config, upstream: clients::UpstreamSetup) -> GatewaySpec {
    let providers = config
        .providers
        .iter()
        .map(|(name, p)| ProviderSpec {
            name: name.clone(),
            kind: match p.kind {
                ProviderKind::OpenAi => gw::ProviderKind::OpenAi,
                ProviderKind::Anthropic => gw::ProviderKind::Anthropic,
            },
            base_url: p.base_url.clone(),
            api_key: p.api_key.expose().to_owned(),
            models: p.models.clone(),
            local: p.local,
            timeouts: p.timeouts,
            circuit: p.circuit,
        })
        .collect();
    GatewaySpec {
        providers,
        aliases: config.models.aliases.clone(),
        default_model: config.models.default.clone(),
        egress: config.egress_policy(),
        refresh_every: config.models.refresh_interval,
        env: std::sync::Arc::new(|name| std::env::var(name).ok()),
        lister: Some(clients::HttpLister::factory(upstream)),
    }
}
