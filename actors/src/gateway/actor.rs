//! `ProviderActor`: owns the provider catalog. It merges the providers of
//! the config file with those added at run time (kept in the store, their
//! profiles' secrets sealed under the master key), resolves each provider's
//! credential profiles, checks base URLs against the egress policy,
//! discovers model lists with `GET /models` (at start and every
//! `refresh_every`), and publishes the result as a [`Catalog`] snapshot.
//! Circuit breakers and profile health live as long as the provider (and
//! profile key) of that name, across catalog changes. Every run-time change
//! is written to the store before it is published; requests in flight keep
//! the snapshot they started with.

use super::catalog::{Catalog, CatalogView, Provider};
use super::circuit::Circuit;
use super::profiles::{
    self, Profile, ProfileHealth, ProfileSecrets, ProfileSpec, ProfileState, StoredAlias,
    StoredProfile, StoredProvider, StoredSetting, StoredTimeouts,
};
use super::{conventional_key_var, GatewaySpec, ProviderKind, ProviderSpec};
use crate::error::GatehouseError;
use crate::model::{GatewayItem, ItemKind};
use crate::secrets::MasterKey;
use crate::store::{Change, SharedStore};
use actix::prelude::*;
use futures_util::future::LocalBoxFuture;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;
use time::OffsetDateTime;

/// Fetches a provider's model ids (`GET /models`). Lives on the actor's
/// thread (HTTP clients are per thread).
pub trait ModelLister {
    fn list(&self, provider: Arc<Provider>)
        -> LocalBoxFuture<'static, Result<Vec<String>, String>>;
}

/// Makes the actor's [`ModelLister`] on the actor's own thread.
pub type SharedLister = Arc<dyn Fn() -> Box<dyn ModelLister> + Send + Sync>;

/// What was changed at run time, as loaded from the store.
#[derive(Default, Clone)]
struct Runtime {
    providers: BTreeMap<String, StoredProvider>,
    /// `PROVIDER/NAME` → the stored profile and its secrets (`None`: they
    /// do not open with the master key).
    profiles: BTreeMap<String, (StoredProfile, Option<ProfileSecrets>)>,
    aliases: BTreeMap<String, Vec<String>>,
    default_model: Option<String>,
    /// Subject (`user:ID`, `token:ID`) → its limit override.
    limits: HashMap<String, super::LimitOverride>,
}

/// A profile as listed for operators (never its key).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProfileInfo {
    pub name: String,
    pub state: ProfileState,
    /// Unix ms until which a cooling profile rests.
    pub until_ms: Option<i64>,
    pub order: i64,
    /// `config`, `api` or `env`.
    pub source: &'static str,
}

/// A provider as listed for operators.
#[derive(Debug, Clone)]
pub struct ProviderInfo {
    pub name: String,
    pub kind: ProviderKind,
    pub base_url: String,
    /// Listed models, or the ones discovered.
    pub models: Vec<String>,
    pub local: bool,
    /// `config` (from the file; read-only here) or `api`.
    pub source: &'static str,
    /// Whether clients can call it now (egress allowed, a usable credential).
    pub offered: bool,
    pub timeouts: StoredTimeouts,
    pub profiles: Vec<ProfileInfo>,
}

/// Per published provider: its profiles for the listing, with the health
/// of each usable one (`None`: no key, or it does not open).
type Listing = Vec<(String, i64, &'static str, Option<Arc<ProfileHealth>>)>;

pub struct ProviderActor {
    spec: GatewaySpec,
    view: CatalogView,
    runtime: Runtime,
    circuits: HashMap<String, Arc<Circuit>>,
    discovered: HashMap<String, Vec<String>>,
    /// Connection settings last published per provider, and their serial.
    serials: HashMap<String, (String, u64)>,
    next_serial: u64,
    /// `PROVIDER/PROFILE` → (fingerprint of key and headers, health).
    health: HashMap<String, (u64, Arc<ProfileHealth>)>,
    listing: HashMap<String, (bool, Listing)>,
    warned: HashSet<String>,
    lister: Option<Rc<dyn ModelLister>>,
}

impl ProviderActor {
    pub fn new(spec: GatewaySpec, view: CatalogView) -> Self {
        ProviderActor {
            spec,
            view,
            runtime: Runtime::default(),
            circuits: HashMap::new(),
            discovered: HashMap::new(),
            serials: HashMap::new(),
            next_serial: 1,
            health: HashMap::new(),
            listing: HashMap::new(),
            warned: HashSet::new(),
            lister: None,
        }
    }

    fn warn_once(&mut self, name: &str, message: String) {
        if self.warned.insert(format!("{name}:{message}")) {
            tracing::warn!(provider = name, "{message}");
        }
    }

    /// `$VAR` / `${VAR}` read from the environment; anything else as is.
    fn resolve_key(&self, key: &str) -> Option<String> {
        let var = key
            .strip_prefix("${")
            .and_then(|k| k.strip_suffix('}'))
            .or_else(|| key.strip_prefix('$'));
        let value = match var {
            Some(v)
                if !v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
            {
                (self.spec.env)(v)?
            }
            _ => key.to_owned(),
        };
        let value = value.trim().to_owned();
        (!value.is_empty()).then_some(value)
    }

    /// The config file's providers, then the run-time ones, as specs.
    fn effective(&self) -> Vec<(ProviderSpec, &'static str)> {
        let mut out: Vec<(ProviderSpec, &'static str)> = self
            .spec
            .providers
            .iter()
            .map(|p| (p.clone(), "config"))
            .collect();
        for (name, p) in &self.runtime.providers {
            if self.spec.providers.iter().any(|c| &c.name == name) {
                continue;
            }
            let kind = match p.kind.as_str() {
                "anthropic" => ProviderKind::Anthropic,
                _ => ProviderKind::OpenAi,
            };
            out.push((
                ProviderSpec {
                    name: name.clone(),
                    kind,
                    base_url: p.base_url.clone(),
                    api_key: String::new(),
                    models: p.models.clone(),
                    local: p.local,
                    timeouts: p.timeouts.into(),
                    circuit: Default::default(),
                    profiles: Vec::new(),
                    auth_order: Vec::new(),
                },
                "api",
            ));
        }
        out
    }

    /// A provider's profiles in the order requests try them: `auth_order`,
    /// then by `order`; the provider's `api_key` and the conventional
    /// variable come last, as the `api_key` and `env` profiles.
    fn profile_specs(&self, spec: &ProviderSpec) -> Vec<(ProfileSpec, &'static str, bool)> {
        let mut all: Vec<(ProfileSpec, &'static str, bool)> = spec
            .profiles
            .iter()
            .map(|p| (p.clone(), "config", true))
            .collect();
        let prefix = format!("{}/", spec.name);
        for (key, (stored, secrets)) in self.runtime.profiles.range(prefix.clone()..) {
            let Some(name) = key.strip_prefix(&prefix) else {
                break;
            };
            all.retain(|(p, _, _)| p.name != name);
            let (api_key, headers, opens) = match secrets {
                Some(s) => (s.api_key.clone(), s.headers.clone(), true),
                None => (String::new(), Vec::new(), false),
            };
            all.push((
                ProfileSpec {
                    name: name.to_owned(),
                    api_key,
                    order: stored.order,
                    headers,
                },
                "api",
                opens,
            ));
        }
        if !spec.api_key.is_empty() && !all.iter().any(|(p, _, _)| p.name == "api_key") {
            all.push((
                ProfileSpec {
                    name: "api_key".into(),
                    api_key: spec.api_key.clone(),
                    order: i64::MAX - 1,
                    headers: Vec::new(),
                },
                "config",
                true,
            ));
        }
        let var = conventional_key_var(spec);
        if (self.spec.env)(&var).is_some_and(|v| !v.trim().is_empty())
            && !all.iter().any(|(p, _, _)| p.name == "env")
        {
            all.push((
                ProfileSpec {
                    name: "env".into(),
                    api_key: format!("${var}"),
                    order: i64::MAX,
                    headers: Vec::new(),
                },
                "env",
                true,
            ));
        }
        let specs: Vec<ProfileSpec> = all.iter().map(|(p, _, _)| p.clone()).collect();
        profiles::ordered(&specs, &spec.auth_order)
            .into_iter()
            .map(|p| {
                all.iter()
                    .find(|(q, _, _)| q.name == p.name)
                    .cloned()
                    .expect("ordered returns the same profiles")
            })
            .collect()
    }

    /// The health of `provider/profile`, kept while its key and headers stay the same.
    fn health_of(
        &mut self,
        id: String,
        key: &str,
        headers: &[(String, String)],
    ) -> Arc<ProfileHealth> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        headers.hash(&mut h);
        let fingerprint = h.finish();
        match self.health.get(&id) {
            Some((f, health)) if *f == fingerprint => health.clone(),
            _ => {
                let health = Arc::new(ProfileHealth::default());
                self.health.insert(id, (fingerprint, health.clone()));
                health
            }
        }
    }

    /// Builds the catalog from the config, the run-time changes and what
    /// discovery found, and publishes it.
    fn publish(&mut self) {
        let mut offered = Vec::new();
        let mut listing = HashMap::new();
        let mut live_profiles = HashSet::new();
        for (spec, _) in self.effective() {
            let mut profiles = Vec::new();
            let mut listed: Listing = Vec::new();
            for (p, source, opens) in self.profile_specs(&spec) {
                let id = format!("{}/{}", spec.name, p.name);
                let key = if opens {
                    self.resolve_key(&p.api_key)
                } else {
                    None
                };
                match key {
                    Some(key) => {
                        let health = self.health_of(id.clone(), &key, &p.headers);
                        live_profiles.insert(id);
                        listed.push((p.name.clone(), p.order, source, Some(health.clone())));
                        profiles.push(Arc::new(Profile {
                            name: p.name.as_str().into(),
                            key: key.into(),
                            headers: p.headers.clone(),
                            order: p.order,
                            source,
                            health,
                        }));
                    }
                    None => {
                        let why = if opens {
                            "its key is empty or its variable is not set"
                        } else {
                            "its key does not open with the master key"
                        };
                        self.warn_once(&spec.name, format!("profile {} not used: {why}", p.name));
                        listed.push((p.name.clone(), p.order, source, None));
                    }
                }
            }
            if let Err(e) = self.spec.egress.check_url(&spec.base_url, spec.local) {
                self.warn_once(
                    &spec.name,
                    format!("provider not offered: egress policy: {e}"),
                );
                listing.insert(spec.name.clone(), (false, listed));
                continue;
            }
            if profiles.is_empty() && !spec.local {
                let var = conventional_key_var(&spec);
                self.warn_once(
                    &spec.name,
                    format!(
                        "provider not offered: no usable profile or api_key, and ${var} is not set"
                    ),
                );
                listing.insert(spec.name.clone(), (false, listed));
                continue;
            }
            listing.insert(spec.name.clone(), (true, listed));
            let discovered = spec.models.is_empty();
            let models = if discovered {
                self.discovered.get(&spec.name).cloned().unwrap_or_default()
            } else {
                spec.models.clone()
            };
            let circuit = self
                .circuits
                .entry(spec.name.clone())
                .or_insert_with(|| Arc::new(Circuit::new(spec.circuit)))
                .clone();
            let settings = format!("{}|{}|{:?}", spec.base_url, spec.local, spec.timeouts);
            let serial = match self.serials.get(&spec.name) {
                Some((s, n)) if *s == settings => *n,
                _ => {
                    let n = self.next_serial;
                    self.next_serial += 1;
                    self.serials.insert(spec.name.clone(), (settings, n));
                    n
                }
            };
            offered.push(Arc::new(Provider {
                name: spec.name.as_str().into(),
                kind: spec.kind,
                base_url: spec.base_url.trim_end_matches('/').to_owned(),
                local: spec.local,
                timeouts: spec.timeouts,
                profiles,
                models,
                discovered,
                circuit,
                serial,
            }));
        }
        self.health.retain(|id, _| live_profiles.contains(id));
        self.listing = listing;
        let mut aliases = self.spec.aliases.clone();
        aliases.extend(self.runtime.aliases.clone());
        let default_model = self
            .runtime
            .default_model
            .clone()
            .unwrap_or_else(|| self.spec.default_model.clone());
        self.view.store(Arc::new(
            Catalog::new(offered, aliases, default_model).with_limits(self.runtime.limits.clone()),
        ));
    }

    /// Fetches the model lists of providers that list none, then publishes.
    fn discover(&mut self) -> ResponseActFuture<Self, Result<(), GatehouseError>> {
        let lister = self.lister.clone();
        let wanted: Vec<Arc<Provider>> = self
            .view
            .load()
            .providers()
            .filter(|p| p.discovered)
            .cloned()
            .collect();
        let job = async move {
            let Some(lister) = lister else {
                return Vec::new();
            };
            let calls = wanted.into_iter().map(|p| {
                let name = p.name.to_string();
                let call = lister.list(p);
                async move { (name, call.await) }
            });
            futures_util::future::join_all(calls).await
        };
        Box::pin(job.into_actor(self).map(|results, act, _| {
            for (name, result) in results {
                match result {
                    Ok(models) => {
                        tracing::info!(provider = %name, models = models.len(), "models discovered");
                        act.discovered.insert(name, models);
                    }
                    Err(e) => {
                        tracing::warn!(provider = %name, error = %e, "model discovery failed; keeping the last list")
                    }
                }
            }
            act.publish();
            Ok(())
        }))
    }

    /// Reads the run-time changes from the store (opening profiles with the
    /// master key), then publishes and discovers.
    fn reload(&mut self, ctx: &mut Context<Self>) {
        let Some(store) = self.spec.store.clone() else {
            return;
        };
        let master = self.spec.master.load_full();
        let load = async move { store.load_gateway().await };
        ctx.wait(load.into_actor(self).map(move |loaded, act, ctx| {
            match loaded {
                Ok(items) => {
                    act.runtime = runtime_from(items, master.as_deref());
                    act.publish();
                    ctx.spawn(act.discover().map(|_, _, _| ()));
                }
                Err(e) => {
                    tracing::error!(error = %e, "loading run-time providers failed; keeping the last ones")
                }
            }
        }));
    }

    fn store(&self) -> Result<SharedStore, GatehouseError> {
        self.spec.store.clone().ok_or_else(|| {
            GatehouseError::Unavailable("this gateway keeps no run-time providers".into())
        })
    }

    fn is_config_provider(&self, name: &str) -> bool {
        self.spec.providers.iter().any(|p| p.name == name)
    }

    fn provider_exists(&self, name: &str) -> bool {
        self.is_config_provider(name) || self.runtime.providers.contains_key(name)
    }

    /// Writes `item` (or deletes it), then applies `apply` and republishes.
    fn write(
        &mut self,
        change: Write,
        apply: impl FnOnce(&mut Runtime) + 'static,
    ) -> ResponseActFuture<Self, Result<bool, GatehouseError>> {
        // Only a change of providers or keys can change model lists.
        let rediscover = matches!(
            &change,
            Write::Put(GatewayItem {
                kind: ItemKind::Provider | ItemKind::Profile,
                ..
            }) | Write::Delete(ItemKind::Provider | ItemKind::Profile, _)
        );
        let store = match self.store() {
            Ok(s) => s,
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        let job = async move {
            match change {
                Write::Put(item) => store.put_gateway_item(item).await,
                Write::Delete(kind, name) => store.delete_gateway_item(kind, &name).await,
            }
        };
        Box::pin(job.into_actor(self).map(move |done, act, ctx| {
            let created = done.map_err(GatehouseError::Store)?;
            apply(&mut act.runtime);
            act.publish();
            if rediscover {
                ctx.spawn(act.discover().map(|_, _, _| ()));
            }
            Ok(created)
        }))
    }
}

enum Write {
    Put(GatewayItem),
    Delete(ItemKind, String),
}

fn item(kind: ItemKind, name: String, body: &impl serde::Serialize) -> GatewayItem {
    GatewayItem {
        kind,
        name,
        body: serde_json::to_string(body).unwrap_or_default(),
        updated_at: OffsetDateTime::now_utc(),
    }
}

/// The run-time state of the stored items; a profile whose secrets do not
/// open (or no master key) is kept without them.
fn runtime_from(items: Vec<GatewayItem>, master: Option<&MasterKey>) -> Runtime {
    let mut rt = Runtime::default();
    for it in items {
        match it.kind {
            ItemKind::Provider => match serde_json::from_str(&it.body) {
                Ok(p) => {
                    rt.providers.insert(it.name, p);
                }
                Err(_) => {
                    tracing::error!(provider = %it.name, "a stored provider is unreadable; skipped")
                }
            },
            ItemKind::Profile => match serde_json::from_str::<StoredProfile>(&it.body) {
                Ok(p) => {
                    let secrets = open_profile(master, &it.name, &p.sealed);
                    rt.profiles.insert(it.name, (p, secrets));
                }
                Err(_) => {
                    tracing::error!(profile = %it.name, "a stored profile is unreadable; skipped")
                }
            },
            ItemKind::Alias => {
                if let Ok(a) = serde_json::from_str::<StoredAlias>(&it.body) {
                    rt.aliases.insert(it.name, a.targets);
                }
            }
            ItemKind::Setting => {
                if let Some(subject) = it.name.strip_prefix("limits/") {
                    if let Ok(o) = serde_json::from_str(&it.body) {
                        rt.limits.insert(subject.to_owned(), o);
                    }
                } else if it.name == profiles::DEFAULT_MODEL {
                    if let Ok(s) = serde_json::from_str::<StoredSetting>(&it.body) {
                        rt.default_model = Some(s.value);
                    }
                }
            }
        }
    }
    rt
}

/// Opens a stored profile's secrets; `None` (logged, without the secret)
/// when they do not open with `master`.
pub fn open_profile(master: Option<&MasterKey>, id: &str, sealed: &str) -> Option<ProfileSecrets> {
    let Some(master) = master else {
        tracing::error!(profile = %id, "a stored profile cannot be opened: no master key");
        return None;
    };
    match master.open(sealed, id) {
        Ok(plain) => serde_json::from_slice(&plain).ok(),
        Err(e) => {
            tracing::error!(profile = %id, master_key = master.id(), error = %e, "a stored profile cannot be opened");
            None
        }
    }
}

/// Stored profiles that do not open with `master` (checked before serving).
pub fn unopenable(items: &[GatewayItem], master: Option<&MasterKey>) -> Vec<String> {
    items
        .iter()
        .filter(|i| i.kind == ItemKind::Profile)
        .filter(|i| {
            let Ok(p) = serde_json::from_str::<StoredProfile>(&i.body) else {
                return true;
            };
            match master {
                Some(m) => m.open(&p.sealed, &i.name).is_err(),
                None => true,
            }
        })
        .map(|i| i.name.clone())
        .collect()
}

impl Actor for ProviderActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.lister = self.spec.lister.as_ref().map(|make| Rc::from(make()));
        self.publish();
        if let Some(rx) = self.spec.store.as_ref().and_then(|s| s.changes()) {
            ctx.add_stream(crate::store::change_stream(rx));
        }
        self.reload(ctx);
        ctx.notify(RefreshModels);
        let every = self.spec.refresh_every;
        if !every.is_zero() {
            ctx.run_interval(every, |_, ctx| ctx.notify(RefreshModels));
        }
    }
}

impl StreamHandler<Change> for ProviderActor {
    fn handle(&mut self, change: Change, ctx: &mut Context<Self>) {
        if matches!(change, Change::Gateway | Change::All) {
            self.reload(ctx);
        }
    }

    fn finished(&mut self, _: &mut Context<Self>) {
        tracing::warn!(
            "the store's change feed ended; providers changed elsewhere show after a restart"
        );
    }
}

impl Supervised for ProviderActor {
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.lister = None;
        self.warned.clear();
    }
}

#[derive(Message)]
#[rtype(result = "Result<(), GatehouseError>")]
pub struct Ping;

impl Handler<Ping> for ProviderActor {
    type Result = Result<(), GatehouseError>;
    fn handle(&mut self, _: Ping, _: &mut Context<Self>) -> Self::Result {
        Ok(())
    }
}

/// Discovers model lists now; answers once the new catalog is published.
#[derive(Message)]
#[rtype(result = "Result<(), GatehouseError>")]
pub struct RefreshModels;

impl Handler<RefreshModels> for ProviderActor {
    type Result = ResponseActFuture<Self, Result<(), GatehouseError>>;
    fn handle(&mut self, _: RefreshModels, _: &mut Context<Self>) -> Self::Result {
        self.discover()
    }
}

/// Replaces the config-file part: providers, aliases and default.
#[derive(Message)]
#[rtype(result = "Result<(), GatehouseError>")]
pub struct Reconfigure(pub GatewaySpec);

impl Handler<Reconfigure> for ProviderActor {
    type Result = ResponseActFuture<Self, Result<(), GatehouseError>>;
    fn handle(&mut self, msg: Reconfigure, _: &mut Context<Self>) -> Self::Result {
        let lister = self.spec.lister.clone();
        let store = self.spec.store.clone();
        self.spec = msg.0;
        if self.spec.lister.is_none() {
            self.spec.lister = lister;
        }
        if self.spec.store.is_none() {
            self.spec.store = store;
        }
        let names: HashSet<String> = self.effective().into_iter().map(|(p, _)| p.name).collect();
        self.circuits.retain(|n, _| names.contains(n));
        self.discovered.retain(|n, _| names.contains(n));
        self.publish();
        self.discover()
    }
}

/// Every provider (configured and run-time, offered or not) with its
/// profiles' health at `now_ms`.
#[derive(Message)]
#[rtype(result = "Vec<ProviderInfo>")]
pub struct Describe {
    pub now_ms: i64,
}

impl Handler<Describe> for ProviderActor {
    type Result = MessageResult<Describe>;
    fn handle(&mut self, m: Describe, _: &mut Context<Self>) -> Self::Result {
        let out = self
            .effective()
            .into_iter()
            .map(|(spec, source)| {
                let (offered, listed) = self
                    .listing
                    .get(&spec.name)
                    .cloned()
                    .unwrap_or((false, Vec::new()));
                let profiles = listed
                    .into_iter()
                    .map(|(name, order, source, health)| {
                        let (state, until_ms) = match health {
                            Some(h) => h.state(m.now_ms),
                            None => (ProfileState::Failing, None),
                        };
                        ProfileInfo {
                            name,
                            state,
                            until_ms,
                            order,
                            source,
                        }
                    })
                    .collect();
                let models = if spec.models.is_empty() {
                    self.discovered.get(&spec.name).cloned().unwrap_or_default()
                } else {
                    spec.models.clone()
                };
                ProviderInfo {
                    name: spec.name,
                    kind: spec.kind,
                    base_url: spec.base_url,
                    models,
                    local: spec.local,
                    source,
                    offered,
                    timeouts: spec.timeouts.into(),
                    profiles,
                }
            })
            .collect();
        MessageResult(out)
    }
}

/// Adds or replaces a run-time provider (its profiles stay). `Ok(true)`
/// when new. Refused: a provider of the config file (`Forbidden`), a
/// `base_url` the egress policy forbids (`Invalid`, nothing stored).
#[derive(Message)]
#[rtype(result = "Result<bool, GatehouseError>")]
pub struct PutProvider {
    pub name: String,
    pub provider: StoredProvider,
}

impl Handler<PutProvider> for ProviderActor {
    type Result = AtomicResponse<Self, Result<bool, GatehouseError>>;
    fn handle(&mut self, m: PutProvider, _: &mut Context<Self>) -> Self::Result {
        if self.is_config_provider(&m.name) {
            return refused(GatehouseError::ConfigOwned(format!(
                "the provider {} comes from the config file; change it there",
                m.name
            )));
        }
        if let Err(e) = self
            .spec
            .egress
            .check_url(&m.provider.base_url, m.provider.local)
        {
            return refused(GatehouseError::EgressDenied(e.to_string()));
        }
        let it = item(ItemKind::Provider, m.name.clone(), &m.provider);
        AtomicResponse::new(self.write(Write::Put(it), move |rt| {
            rt.providers.insert(m.name, m.provider);
        }))
    }
}

fn refused(e: GatehouseError) -> AtomicResponse<ProviderActor, Result<bool, GatehouseError>> {
    AtomicResponse::new(Box::pin(fut::ready(Err(e))))
}

/// Removes a run-time provider and its profiles. `Ok(false)` when there
/// was none; `Forbidden` for one of the config file.
#[derive(Message)]
#[rtype(result = "Result<bool, GatehouseError>")]
pub struct DeleteProvider {
    pub name: String,
}

impl Handler<DeleteProvider> for ProviderActor {
    type Result = AtomicResponse<Self, Result<bool, GatehouseError>>;
    fn handle(&mut self, m: DeleteProvider, _: &mut Context<Self>) -> Self::Result {
        if self.is_config_provider(&m.name) {
            return refused(GatehouseError::ConfigOwned(format!(
                "the provider {} comes from the config file; remove it there",
                m.name
            )));
        }
        if !self.runtime.providers.contains_key(&m.name) {
            return AtomicResponse::new(Box::pin(fut::ready(Ok(false))));
        }
        let name = m.name.clone();
        AtomicResponse::new(
            self.write(Write::Delete(ItemKind::Provider, m.name), move |rt| {
                rt.providers.remove(&name);
                let prefix = format!("{name}/");
                rt.profiles.retain(|k, _| !k.starts_with(&prefix));
            }),
        )
    }
}

/// Adds or changes a credential profile of a provider (configured or
/// run-time). A new profile needs a key; a change without one keeps the
/// stored key. `Ok(true)` when new; `NotFound` without such a provider.
#[derive(Message)]
#[rtype(result = "Result<bool, GatehouseError>")]
pub struct PutProfile {
    pub provider: String,
    pub name: String,
    pub api_key: Option<String>,
    pub order: Option<i64>,
    pub headers: Option<Vec<(String, String)>>,
}

impl Handler<PutProfile> for ProviderActor {
    type Result = AtomicResponse<Self, Result<bool, GatehouseError>>;
    fn handle(&mut self, m: PutProfile, _: &mut Context<Self>) -> Self::Result {
        if !self.provider_exists(&m.provider) {
            return refused(GatehouseError::NotFound);
        }
        let Some(master) = self.spec.master.load_full() else {
            return refused(GatehouseError::Unavailable(
                "no master key: profiles cannot be stored".into(),
            ));
        };
        let id = format!("{}/{}", m.provider, m.name);
        let old = self.runtime.profiles.get(&id);
        let old_secrets = match old {
            Some((_, Some(s))) => Some(s.clone()),
            Some((_, None)) if m.api_key.is_none() => {
                return refused(GatehouseError::invalid(
                    "the stored key of this profile does not open; send api_key to replace it",
                ))
            }
            _ => None,
        };
        let api_key = match (m.api_key, &old_secrets) {
            (Some(k), _) => k,
            (None, Some(s)) => s.api_key.clone(),
            (None, None) => {
                return refused(GatehouseError::invalid("a new profile needs an api_key"))
            }
        };
        let secrets = ProfileSecrets {
            api_key,
            headers: m
                .headers
                .or_else(|| old_secrets.map(|s| s.headers))
                .unwrap_or_default(),
        };
        let order = m.order.or(old.map(|(p, _)| p.order)).unwrap_or(0);
        let plain = serde_json::to_vec(&secrets).unwrap_or_default();
        let stored = StoredProfile {
            order,
            sealed: master.seal(&plain, &id),
        };
        let it = item(ItemKind::Profile, id.clone(), &stored);
        AtomicResponse::new(self.write(Write::Put(it), move |rt| {
            rt.profiles.insert(id, (stored, Some(secrets)));
        }))
    }
}

/// Removes a stored profile. `Ok(false)` when there was none.
#[derive(Message)]
#[rtype(result = "Result<bool, GatehouseError>")]
pub struct DeleteProfile {
    pub provider: String,
    pub name: String,
}

impl Handler<DeleteProfile> for ProviderActor {
    type Result = AtomicResponse<Self, Result<bool, GatehouseError>>;
    fn handle(&mut self, m: DeleteProfile, _: &mut Context<Self>) -> Self::Result {
        let id = format!("{}/{}", m.provider, m.name);
        if !self.runtime.profiles.contains_key(&id) {
            return AtomicResponse::new(Box::pin(fut::ready(Ok(false))));
        }
        let key = id.clone();
        AtomicResponse::new(self.write(Write::Delete(ItemKind::Profile, id), move |rt| {
            rt.profiles.remove(&key);
        }))
    }
}

/// Sets an alias (primary target first); replaces one of the config file.
#[derive(Message)]
#[rtype(result = "Result<bool, GatehouseError>")]
pub struct PutAlias {
    pub name: String,
    pub targets: Vec<String>,
}

impl Handler<PutAlias> for ProviderActor {
    type Result = AtomicResponse<Self, Result<bool, GatehouseError>>;
    fn handle(&mut self, m: PutAlias, _: &mut Context<Self>) -> Self::Result {
        if let Some(t) = m.targets.iter().find(|t| {
            !t.split_once('/')
                .is_some_and(|(p, _)| self.provider_exists(p))
        }) {
            return refused(GatehouseError::invalid(format!(
                "the target {t:?} is not PROVIDER/MODEL of a known provider"
            )));
        }
        let it = item(
            ItemKind::Alias,
            m.name.clone(),
            &StoredAlias {
                targets: m.targets.clone(),
            },
        );
        let config_alias = self.spec.aliases.contains_key(&m.name);
        let write = self.write(Write::Put(it), move |rt| {
            rt.aliases.insert(m.name, m.targets);
        });
        // A config alias replaced the first time is a change, not a creation.
        AtomicResponse::new(Box::pin(
            write.map(move |r, _, _| r.map(|created| created && !config_alias)),
        ))
    }
}

/// Sets what the model name `default` resolves to (empty: the config file's).
#[derive(Message)]
#[rtype(result = "Result<bool, GatehouseError>")]
pub struct SetDefaultModel {
    pub model: String,
}

impl Handler<SetDefaultModel> for ProviderActor {
    type Result = AtomicResponse<Self, Result<bool, GatehouseError>>;
    fn handle(&mut self, m: SetDefaultModel, _: &mut Context<Self>) -> Self::Result {
        if m.model.is_empty() {
            return AtomicResponse::new(self.write(
                Write::Delete(ItemKind::Setting, profiles::DEFAULT_MODEL.into()),
                |rt| rt.default_model = None,
            ));
        }
        if m.model == "default" || self.view.load().resolve(&m.model).is_none() {
            return refused(GatehouseError::NotFound);
        }
        let it = item(
            ItemKind::Setting,
            profiles::DEFAULT_MODEL.into(),
            &StoredSetting {
                value: m.model.clone(),
            },
        );
        AtomicResponse::new(self.write(Write::Put(it), move |rt| rt.default_model = Some(m.model)))
    }
}

/// The model ids a provider lists upstream now (its own ids).
#[derive(Message)]
#[rtype(result = "Result<Vec<String>, GatehouseError>")]
pub struct ListUpstream {
    pub name: String,
}

impl Handler<ListUpstream> for ProviderActor {
    type Result = ResponseFuture<Result<Vec<String>, GatehouseError>>;
    fn handle(&mut self, m: ListUpstream, _: &mut Context<Self>) -> Self::Result {
        if !self.provider_exists(&m.name) {
            return Box::pin(async { Err(GatehouseError::NotFound) });
        }
        let provider = self.view.load().provider(&m.name).cloned();
        let lister = self.lister.clone();
        Box::pin(async move {
            let (Some(provider), Some(lister)) = (provider, lister) else {
                return Err(GatehouseError::Unavailable(
                    "the provider is not offered (egress policy or no usable credential)".into(),
                ));
            };
            lister
                .list(provider)
                .await
                .map_err(GatehouseError::Unavailable)
        })
    }
}

/// Re-seals every stored profile under `new` in one atomic write, then
/// uses it. Refused when a stored profile does not open with the current
/// key (nothing is written). Answers how many profiles were re-sealed.
#[derive(Message)]
#[rtype(result = "Result<usize, GatehouseError>")]
pub struct RotateMaster(pub Arc<MasterKey>);

impl Handler<RotateMaster> for ProviderActor {
    type Result = AtomicResponse<Self, Result<usize, GatehouseError>>;
    fn handle(&mut self, m: RotateMaster, _: &mut Context<Self>) -> Self::Result {
        let fail = |e| AtomicResponse::new(Box::pin(fut::ready(Err(e))));
        let store = match self.store() {
            Ok(s) => s,
            Err(e) => return fail(e),
        };
        let mut items = Vec::new();
        let mut resealed_all = Vec::new();
        for (id, (stored, secrets)) in &self.runtime.profiles {
            let Some(secrets) = secrets else {
                return fail(GatehouseError::invalid(format!(
                    "the stored profile {id} does not open with the current master key; nothing was changed"
                )));
            };
            let plain = serde_json::to_vec(secrets).unwrap_or_default();
            let resealed = StoredProfile {
                order: stored.order,
                sealed: m.0.seal(&plain, id),
            };
            items.push(item(ItemKind::Profile, id.clone(), &resealed));
            resealed_all.push((id.clone(), resealed));
        }
        let n = items.len();
        let new = m.0;
        AtomicResponse::new(Box::pin(
            async move { store.put_gateway_items(items).await }
                .into_actor(self)
                .map(move |done, act, _| {
                    done.map_err(GatehouseError::Store)?;
                    for (id, resealed) in resealed_all {
                        if let Some(entry) = act.runtime.profiles.get_mut(&id) {
                            entry.0 = resealed;
                        }
                    }
                    act.spec.master.store(Some(new));
                    Ok(n)
                }),
        ))
    }
}

/// Sets (or, with `None`, removes) a subject's limit override.
#[derive(Message)]
#[rtype(result = "Result<bool, GatehouseError>")]
pub struct PutLimits {
    /// `user:ID` or `token:ID`.
    pub subject: String,
    pub limits: Option<super::LimitOverride>,
}

impl Handler<PutLimits> for ProviderActor {
    type Result = AtomicResponse<Self, Result<bool, GatehouseError>>;
    fn handle(&mut self, m: PutLimits, _: &mut Context<Self>) -> Self::Result {
        let name = super::limits::setting_name(&m.subject);
        let subject = m.subject;
        let write = match m.limits {
            Some(o) => {
                let it = item(ItemKind::Setting, name, &o);
                self.write(Write::Put(it), move |rt| {
                    rt.limits.insert(subject, o);
                })
            }
            None => self.write(Write::Delete(ItemKind::Setting, name), move |rt| {
                rt.limits.remove(&subject);
            }),
        };
        AtomicResponse::new(write)
    }
}
