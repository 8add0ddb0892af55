//! The published provider catalog: which providers are offered, their
//! models, aliases and the default model. Built only by the `ProviderActor`;
//! handlers `load()` it once per request.

use super::circuit::Circuit;
use super::profiles::Profile;
use super::{ProviderKind, Timeouts};
use arc_swap::ArcSwap;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// A provider as offered to clients: its key already resolved.
pub struct Provider {
    pub name: Arc<str>,
    pub kind: ProviderKind,
    /// Without a trailing slash.
    pub base_url: String,
    pub local: bool,
    pub timeouts: Timeouts,
    /// The credentials, in the order requests try them (empty only for a
    /// local provider that needs none).
    pub profiles: Vec<Arc<Profile>>,
    pub models: Vec<String>,
    /// True when `models` came from `GET /models` (config listed none).
    pub discovered: bool,
    pub circuit: Arc<Circuit>,
    /// Changes whenever the connection settings change, so per-worker
    /// clients know to rebuild.
    pub serial: u64,
}

impl Provider {
    /// The first profile a request for `model` may use at `now_ms`, from
    /// index `from` on, with its index; `None` when none is left.
    pub fn next_profile(
        &self,
        now_ms: i64,
        model: &str,
        from: usize,
    ) -> Option<(usize, &Arc<Profile>)> {
        self.profiles
            .iter()
            .enumerate()
            .skip(from)
            .find(|(_, p)| p.health.usable(now_ms, model))
    }

    /// Every key of this provider (to scrub from what upstreams answer).
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.profiles.iter().map(|p| &*p.key)
    }
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("base_url", &self.base_url)
            .field("profiles", &self.profiles)
            .field("models", &self.models)
            .finish_non_exhaustive()
    }
}

/// One place a model call may go: the provider and its own model id.
#[derive(Clone, Debug)]
pub struct Target {
    pub provider: Arc<Provider>,
    /// The provider's own id (sent upstream).
    pub model: Arc<str>,
    /// `provider/model`, as clients name it.
    pub public: Arc<str>,
}

#[derive(Default, Debug)]
pub struct Catalog {
    providers: BTreeMap<String, Arc<Provider>>,
    routes: HashMap<String, Target>,
    aliases: BTreeMap<String, Vec<String>>,
    default_model: String,
    /// Per-subject limit overrides (`user:ID`, `token:ID`).
    limits: HashMap<String, super::LimitOverride>,
}

/// What handlers read: the current catalog, swapped whole on every change.
pub type CatalogView = Arc<ArcSwap<Catalog>>;

impl Catalog {
    pub fn new(
        providers: Vec<Arc<Provider>>,
        aliases: BTreeMap<String, Vec<String>>,
        default_model: String,
    ) -> Self {
        let mut routes = HashMap::new();
        for p in &providers {
            for m in &p.models {
                let public: Arc<str> = format!("{}/{m}", p.name).into();
                routes.insert(
                    public.to_string(),
                    Target {
                        provider: p.clone(),
                        model: m.as_str().into(),
                        public,
                    },
                );
            }
        }
        Catalog {
            providers: providers
                .into_iter()
                .map(|p| (p.name.to_string(), p))
                .collect(),
            routes,
            aliases,
            default_model,
            limits: HashMap::new(),
        }
    }

    /// The catalog with these limit overrides.
    pub fn with_limits(mut self, limits: HashMap<String, super::LimitOverride>) -> Self {
        self.limits = limits;
        self
    }

    /// A subject's override, if it has one.
    pub fn limits_of(&self, subject: &str) -> Option<&super::LimitOverride> {
        self.limits.get(subject)
    }

    pub fn limit_overrides(&self) -> &HashMap<String, super::LimitOverride> {
        &self.limits
    }

    /// Where a call to `name` goes, primary first; `None` when the name is unknown
    /// (an alias whose targets are all unknown is unknown too).
    pub fn resolve(&self, name: &str) -> Option<Vec<Target>> {
        let name = if name == "default" && !self.default_model.is_empty() {
            self.default_model.as_str()
        } else {
            name
        };
        if let Some(t) = self.routes.get(name) {
            return Some(vec![t.clone()]);
        }
        let targets: Vec<Target> = self
            .aliases
            .get(name)?
            .iter()
            .filter_map(|t| self.routes.get(t).cloned())
            .collect();
        (!targets.is_empty()).then_some(targets)
    }

    /// Every name a client may use: `provider/model` ids, then aliases (and
    /// `default` when set), with who owns them.
    pub fn model_ids(&self) -> Vec<(String, String)> {
        let mut ids: Vec<(String, String)> = self
            .providers
            .values()
            .flat_map(|p| {
                p.models
                    .iter()
                    .map(|m| (format!("{}/{m}", p.name), p.name.to_string()))
            })
            .collect();
        for name in self.aliases.keys() {
            if self.resolve(name).is_some() {
                ids.push((name.clone(), "gatehouse".to_owned()));
            }
        }
        if !self.default_model.is_empty() && self.resolve("default").is_some() {
            ids.push(("default".to_owned(), "gatehouse".to_owned()));
        }
        ids
    }

    pub fn provider(&self, name: &str) -> Option<&Arc<Provider>> {
        self.providers.get(name)
    }

    pub fn default_model(&self) -> &str {
        &self.default_model
    }

    pub fn providers(&self) -> impl Iterator<Item = &Arc<Provider>> {
        self.providers.values()
    }

    pub fn aliases(&self) -> &BTreeMap<String, Vec<String>> {
        &self.aliases
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::CircuitConfig;

    fn provider(name: &str, models: &[&str]) -> Arc<Provider> {
        Arc::new(Provider {
            name: name.into(),
            kind: ProviderKind::OpenAi,
            base_url: "http://127.0.0.1:1/v1".into(),
            local: true,
            timeouts: Timeouts::default(),
            profiles: vec![],
            models: models.iter().map(|m| m.to_string()).collect(),
            discovered: false,
            circuit: Arc::new(Circuit::new(CircuitConfig::default())),
            serial: 1,
        })
    }

    fn catalog() -> Catalog {
        let aliases = BTreeMap::from([
            (
                "fast".to_owned(),
                vec!["a/m1".to_owned(), "b/meta/llama".to_owned()],
            ),
            ("ghost".to_owned(), vec!["c/none".to_owned()]),
        ]);
        Catalog::new(
            vec![provider("a", &["m1", "m2"]), provider("b", &["meta/llama"])],
            aliases,
            "fast".into(),
        )
    }

    #[test]
    fn names_resolve_to_provider_ids_aliases_in_order_and_the_default() {
        let c = catalog();
        let one = c.resolve("a/m2").unwrap();
        assert_eq!((&*one[0].provider.name, &*one[0].model), ("a", "m2"));
        let slashy = c.resolve("b/meta/llama").unwrap();
        assert_eq!(&*slashy[0].model, "meta/llama");
        let fast: Vec<_> = c
            .resolve("fast")
            .unwrap()
            .iter()
            .map(|t| t.public.clone())
            .collect();
        assert_eq!(
            fast,
            vec!["a/m1".into(), "b/meta/llama".into()] as Vec<Arc<str>>
        );
        assert_eq!(c.resolve("default").unwrap().len(), 2);
        assert!(c.resolve("a/unknown").is_none());
        assert!(c.resolve("m1").is_none(), "a bare model id is not a name");
        assert!(
            c.resolve("ghost").is_none(),
            "an alias of unknown models is unknown"
        );
    }

    #[test]
    fn model_ids_list_models_then_usable_aliases() {
        let ids: Vec<String> = catalog()
            .model_ids()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(ids, ["a/m1", "a/m2", "b/meta/llama", "fast", "default"]);
    }
}
