//! `ProviderActor`: owns the provider catalog. It resolves each provider's
//! credential (the configured key, else the conventional environment
//! variable), checks base URLs against the egress policy, discovers model
//! lists with `GET /models` (at start and every `refresh_every`), and
//! publishes the result as a [`Catalog`] snapshot. Circuit breakers live as
//! long as the actor's provider of that name, across catalog changes.

use super::catalog::{Catalog, CatalogView, Provider};
use super::circuit::Circuit;
use super::{conventional_key_var, GatewaySpec, ProviderSpec};
use crate::error::GatehouseError;
use actix::prelude::*;
use futures_util::future::LocalBoxFuture;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;

/// Fetches a provider's model ids (`GET /models`). Lives on the actor's
/// thread (HTTP clients are per thread).
pub trait ModelLister {
    fn list(&self, provider: Arc<Provider>)
        -> LocalBoxFuture<'static, Result<Vec<String>, String>>;
}

/// Makes the actor's [`ModelLister`] on the actor's own thread.
pub type SharedLister = Arc<dyn Fn() -> Box<dyn ModelLister> + Send + Sync>;

pub struct ProviderActor {
    spec: GatewaySpec,
    view: CatalogView,
    circuits: HashMap<String, Arc<Circuit>>,
    discovered: HashMap<String, Vec<String>>,
    /// Connection settings last published per provider, and their serial.
    serials: HashMap<String, (String, u64)>,
    next_serial: u64,
    warned: HashSet<String>,
    lister: Option<Rc<dyn ModelLister>>,
}

impl ProviderActor {
    pub fn new(spec: GatewaySpec, view: CatalogView) -> Self {
        ProviderActor {
            spec,
            view,
            circuits: HashMap::new(),
            discovered: HashMap::new(),
            serials: HashMap::new(),
            next_serial: 1,
            warned: HashSet::new(),
            lister: None,
        }
    }

    /// The key for `spec`: its own, else the conventional variable.
    fn credential(&self, spec: &ProviderSpec) -> (Option<Arc<str>>, String) {
        if !spec.api_key.is_empty() {
            return (Some(spec.api_key.as_str().into()), "config".into());
        }
        let var = conventional_key_var(spec);
        match (self.spec.env)(&var).filter(|v| !v.trim().is_empty()) {
            Some(key) => (Some(key.trim().into()), format!("env:{var}")),
            None => (None, "none".into()),
        }
    }

    fn warn_once(&mut self, name: &str, message: String) {
        if self.warned.insert(format!("{name}:{message}")) {
            tracing::warn!(provider = name, "{message}");
        }
    }

    /// Builds the catalog from the spec and what discovery found, and publishes it.
    fn publish(&mut self) {
        let mut offered = Vec::new();
        for spec in self.spec.providers.clone() {
            if let Err(e) = self.spec.egress.check_url(&spec.base_url, spec.local) {
                self.warn_once(
                    &spec.name,
                    format!("provider not offered: egress policy: {e}"),
                );
                continue;
            }
            let (key, key_source) = self.credential(&spec);
            if key.is_none() && !spec.local {
                let var = conventional_key_var(&spec);
                self.warn_once(
                    &spec.name,
                    format!("provider not offered: no api_key and ${var} is not set"),
                );
                continue;
            }
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
            let settings = format!(
                "{}|{}|{:?}|{}",
                spec.base_url, spec.local, spec.timeouts, key_source
            );
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
                key,
                key_source,
                models,
                discovered,
                circuit,
                serial,
            }));
        }
        let catalog = Catalog::new(
            offered,
            self.spec.aliases.clone(),
            self.spec.default_model.clone(),
        );
        self.view.store(Arc::new(catalog));
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
}

impl Actor for ProviderActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.lister = self.spec.lister.as_ref().map(|make| Rc::from(make()));
        self.publish();
        ctx.notify(RefreshModels);
        let every = self.spec.refresh_every;
        if !every.is_zero() {
            ctx.run_interval(every, |_, ctx| ctx.notify(RefreshModels));
        }
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

/// Replaces the providers, aliases and default (live configuration).
#[derive(Message)]
#[rtype(result = "Result<(), GatehouseError>")]
pub struct Reconfigure(pub GatewaySpec);

impl Handler<Reconfigure> for ProviderActor {
    type Result = ResponseActFuture<Self, Result<(), GatehouseError>>;
    fn handle(&mut self, msg: Reconfigure, _: &mut Context<Self>) -> Self::Result {
        let lister = self.spec.lister.clone();
        self.spec = msg.0;
        if self.spec.lister.is_none() {
            self.spec.lister = lister;
        }
        let names: HashSet<&str> = self
            .spec
            .providers
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        self.circuits.retain(|n, _| names.contains(n.as_str()));
        self.discovered.retain(|n, _| names.contains(n.as_str()));
        self.publish();
        self.discover()
    }
}
