//! The model gateway's HTTP side: upstream clients (egress-checked), the
//! proxy with fallback, streaming pass-through and translation between the
//! OpenAI and Anthropic APIs.

pub mod body;
pub mod clients;
pub mod limits;
pub mod proxy;
pub mod sse;
pub mod stream;
pub mod translate;

use crate::config::{Config, ProviderKind};
use gatehouse_actors::gateway::{self as gw, GatewaySpec, ProviderSpec};

/// Where a call to `model` by `principal` may go, primary first:
/// `403 model_not_allowed` when its credential may not call it, `404
/// model_not_found` when no offered provider has it. The one check every
/// way into the gateway (model API, tasks) makes.
pub fn targets_for(
    state: &crate::AppState,
    principal: &crate::auth::Principal,
    model: &str,
) -> Result<Vec<gatehouse_actors::gateway::Target>, crate::error::ApiError> {
    use crate::error::ApiError;
    let shown: String = model
        .chars()
        .filter(|c| !c.is_control())
        .take(256)
        .collect();
    if !state.config.access.may_call(principal, model) {
        return Err(ApiError::forbidden(
            "model_not_allowed",
            format!("this credential may not call the model {shown:?}"),
        ));
    }
    state
        .handles
        .catalog()
        .load()
        .resolve(model)
        .ok_or_else(|| {
            ApiError::new(
                actix_web::http::StatusCode::NOT_FOUND,
                "invalid_request_error",
                "model_not_found",
                format!("the model {shown:?} does not exist or is not offered"),
            )
        })
}

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
            profiles: p
                .profiles
                .iter()
                .map(|q| gw::ProfileSpec {
                    name: q.name.clone(),
                    api_key: q.api_key.expose().to_owned(),
                    order: q.order,
                    headers: q.headers.clone(),
                })
                .collect(),
            auth_order: p.auth_order.clone(),
        })
        .collect();
    GatewaySpec {
        providers,
        aliases: config.models.aliases.clone(),
        default_model: config.models.default.clone(),
        egress: config.egress_policy(),
        refresh_every: config.models.refresh_interval,
        env: std::sync::Arc::new(|name| std::env::var(name).ok()),
        store: None,
        master: Default::default(),
        lister: Some(clients::HttpLister::factory(upstream)),
    }
}
