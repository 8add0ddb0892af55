//! The model gateway's state: the provider catalog (owned by the
//! [`ProviderActor`], published as a snapshot handlers read without a
//! message), per-provider circuit breakers, the egress policy, and the usage
//! recorder that batches call records to the store.

pub mod actor;
pub mod catalog;
pub mod circuit;
pub mod egress;
pub mod limits;
pub mod profiles;
pub mod usage;

pub use actor::{ModelLister, ProviderActor, SharedLister};
pub use catalog::{Catalog, CatalogView, Provider, Target};
pub use circuit::Circuit;
pub use egress::{EgressDenied, EgressPolicy};
pub use limits::{LimitOverride, Limits};
pub use profiles::{Profile, ProfileHealth, ProfileSpec, ProfileState};
pub use usage::{UsageActor, UsageSink};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    /// Any OpenAI-compatible API (`base_url` ends in `/v1`).
    OpenAi,
    /// Anthropic's Messages API (`base_url` is the host).
    Anthropic,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::Anthropic => "anthropic",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connect and TLS handshake.
    pub connect: Duration,
    /// Until the response head arrives; also the longest pause between two
    /// chunks of a stream.
    pub first_byte: Duration,
    /// The whole call, body included.
    pub total: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            first_byte: Duration::from_secs(120),
            total: Duration::from_secs(600),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitConfig {
    /// Consecutive failures that open the circuit.
    pub failures: u32,
    /// How long an open circuit skips the provider before one probe.
    pub cooldown: Duration,
}

impl Default for CircuitConfig {
    fn default() -> Self {
        CircuitConfig {
            failures: 5,
            cooldown: Duration::from_secs(30),
        }
    }
}

/// A provider as configured (the key may still be empty: the actor resolves
/// it from the conventional environment variable).
#[derive(Clone, PartialEq)]
pub struct ProviderSpec {
    pub name: String,
    pub kind: ProviderKind,
    pub base_url: String,
    pub api_key: String,
    /// Empty: discovered with `GET /models`.
    pub models: Vec<String>,
    pub local: bool,
    pub timeouts: Timeouts,
    pub circuit: CircuitConfig,
    /// Named credentials (`[providers.NAME.profiles.P]`, or added at run time).
    pub profiles: Vec<ProfileSpec>,
    /// Profile names tried first, in this order.
    pub auth_order: Vec<String>,
}

impl std::fmt::Debug for ProviderSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderSpec")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("base_url", &self.base_url)
            .field("api_key", &"***")
            .field("models", &self.models)
            .field("local", &self.local)
            .field("profiles", &self.profiles)
            .finish()
    }
}

/// Looks up an environment variable (a function so tests and embedders can
/// supply their own environment).
pub type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Everything the gateway's actors start from.
#[derive(Clone)]
pub struct GatewaySpec {
    pub providers: Vec<ProviderSpec>,
    /// Alias → targets, primary first.
    pub aliases: BTreeMap<String, Vec<String>>,
    /// What the model name `default` resolves to (empty: nothing).
    pub default_model: String,
    pub egress: EgressPolicy,
    /// How often discovered model lists are fetched again.
    pub refresh_every: Duration,
    pub env: EnvLookup,
    /// Where providers, profiles and aliases added at run time are kept.
    pub store: Option<crate::store::SharedStore>,
    /// Seals stored profiles' secrets (empty: run-time profiles cannot be
    /// added). Shared, so a rotation holds for a restarted actor too.
    pub master: Arc<arc_swap::ArcSwapOption<crate::secrets::MasterKey>>,
    /// Makes the client that lists a provider's models (built on the actor's thread).
    pub lister: Option<SharedLister>,
}

impl Default for GatewaySpec {
    fn default() -> Self {
        GatewaySpec {
            providers: Vec::new(),
            aliases: BTreeMap::new(),
            default_model: String::new(),
            egress: EgressPolicy::default(),
            refresh_every: Duration::from_secs(600),
            env: Arc::new(|name| std::env::var(name).ok()),
            store: None,
            master: Default::default(),
            lister: None,
        }
    }
}

impl std::fmt::Debug for GatewaySpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewaySpec")
            .field("providers", &self.providers)
            .field("aliases", &self.aliases)
            .field("default_model", &self.default_model)
            .finish_non_exhaustive()
    }
}

/// The conventional environment variable holding a provider's key, by the
/// host of its base URL, else by its type, else `NAME_API_KEY`.
pub fn conventional_key_var(spec: &ProviderSpec) -> String {
    const BY_HOST: &[(&str, &str)] = &[
        ("api.openai.com", "OPENAI_API_KEY"),
        ("api.anthropic.com", "ANTHROPIC_API_KEY"),
        ("api.groq.com", "GROQ_API_KEY"),
        ("openrouter.ai", "OPENROUTER_API_KEY"),
        ("api.together.xyz", "TOGETHER_API_KEY"),
        ("api.together.ai", "TOGETHER_API_KEY"),
        ("api.mistral.ai", "MISTRAL_API_KEY"),
        ("api.deepseek.com", "DEEPSEEK_API_KEY"),
        ("api.fireworks.ai", "FIREWORKS_API_KEY"),
        ("api.x.ai", "XAI_API_KEY"),
        ("generativelanguage.googleapis.com", "GEMINI_API_KEY"),
        ("api.perplexity.ai", "PERPLEXITY_API_KEY"),
        ("api.cerebras.ai", "CEREBRAS_API_KEY"),
    ];
    let host = host_of(&spec.base_url);
    if let Some((_, var)) = BY_HOST.iter().find(|(h, _)| *h == host) {
        return (*var).to_owned();
    }
    let by_name: String = spec
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("{by_name}_API_KEY")
}

/// The host of an `http(s)://host[:port]/…` URL, lowercased.
pub fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        authority.split(':').next().unwrap_or("")
    };
    host.to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, url: &str) -> ProviderSpec {
        ProviderSpec {
            name: name.into(),
            kind: ProviderKind::OpenAi,
            base_url: url.into(),
            api_key: String::new(),
            models: vec![],
            local: false,
            timeouts: Timeouts::default(),
            circuit: CircuitConfig::default(),
            profiles: vec![],
            auth_order: vec![],
        }
    }

    #[test]
    fn the_conventional_variable_follows_the_host_then_the_name() {
        let v = |n, u| conventional_key_var(&spec(n, u));
        assert_eq!(v("main", "https://api.openai.com/v1"), "OPENAI_API_KEY");
        assert_eq!(v("x", "https://api.groq.com/openai/v1"), "GROQ_API_KEY");
        assert_eq!(
            v("or", "https://OpenRouter.ai/api/v1"),
            "OPENROUTER_API_KEY"
        );
        assert_eq!(v("my-llm", "https://llm.example.com/v1"), "MY_LLM_API_KEY");
        assert_eq!(host_of("http://[::1]:8080/v1"), "::1");
        assert_eq!(host_of("https://u:p@h.example:1/x"), "h.example");
    }

    #[test]
    fn a_spec_never_prints_its_key() {
        let mut s = spec("p", "https://x.example/v1");
        s.api_key = "sk-secret".into();
        assert!(!format!("{s:?}").contains("sk-secret"));
    }
}
