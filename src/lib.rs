//! Gatehouse: an authenticating gateway for LLM APIs, usable as a binary or
//! as a library mounted into another actix-web `App`:
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use actix_web::{web, App, HttpServer};
//! let home = std::path::PathBuf::from("/tmp/gh-home");
//! let config = gatehouse::config::Config::load(None, &home)?;
//! let gh = gatehouse::Gatehouse::builder(config).home(&home).build().await?;
//! let data = gh.data();
//! HttpServer::new(move || {
//!     App::new()
//!         .app_data(data.clone())
//!         .configure(gatehouse::configure)
//!         .service(web::scope("/mine").wrap(gatehouse::auth::Authenticate)
//!             .route("", web::get().to(|p: gatehouse::auth::Principal| async move { p.username })))
//! })
//! .bind(("127.0.0.1", 8080))?
//! .run()
//! .await?;
//! # Ok(()) }
//! ```

pub mod access;
pub mod accounts;
pub mod admin_socket;
pub mod auth;
pub mod chat;
pub mod cli;
pub mod config;
pub mod edge;
pub mod error;
pub mod gateway;
pub mod home;
pub mod http;
pub mod limits;
pub mod llms_import;
pub mod master;
pub mod metrics;
pub mod password;
pub mod providers;
pub mod server;
pub mod tasks;
pub mod tokens;

/// What the fuzz targets under `fuzz/` call that is not public otherwise.
/// Not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::auth::external::jwks::JwksValidator;
    pub use crate::auth::middleware::{bearer as bearer_credential, cross_site};
}

use actix::Addr;
use config::Config;
use gatehouse_actors::store::{SharedStore, SledStore};
use gatehouse_actors::users::ThrottleConfig;
use gatehouse_actors::{ActorConfig, ActorHandles, SharedClock, Supervisor, SystemClock};
use password::Hasher;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use gatehouse_actors;

/// What every handler reads from `app_data`.
pub struct AppState {
    pub handles: ActorHandles,
    pub config: Arc<Config>,
    pub hasher: Hasher,
    pub gateway_tokens: auth::bearer::GatewayTokens,
    pub validators: auth::external::Validators,
    pub oidc: auth::oidc::OidcProviders,
    /// What upstream model clients are built from (egress policy, TLS roots).
    pub upstream: gateway::clients::UpstreamSetup,
    /// Idempotency keys whose first request is still being handled here.
    pub inflight: http::tasks::InFlight,
    /// Where the master key came from (`None`: no stored provider keys).
    pub master_source: Option<master::Source>,
    /// Counters and histograms for `GET /metrics`.
    pub metrics: Arc<metrics::Metrics>,
    /// Request rates on sign-in and token routes, open streams (abuse protection).
    pub edge: edge::Edge,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("home directory {path}: {source}")]
    Home {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "opening the store in {path}: {source} (is another gatehouse process using this home?)"
    )]
    Store {
        path: PathBuf,
        source: gatehouse_actors::StoreError,
    },
    #[error("starting the actors: {0}")]
    Actors(#[from] gatehouse_actors::GatehouseError),
    #[error("connecting to PostgreSQL (store.url): {0}")]
    Postgres(gatehouse_actors::StoreError),
    #[error("configuration: {0}")]
    Config(String),
    #[error("master key: {0}")]
    MasterKey(String),
}

/// A running Gatehouse: its actors and the state handlers need.
pub struct Gatehouse {
    data: actix_web::web::Data<AppState>,
    supervisor: Addr<Supervisor>,
}

pub struct Builder {
    config: Config,
    home: Option<PathBuf>,
    clock: SharedClock,
    store: Option<SharedStore>,
    hasher_threads: Option<usize>,
    check_interval: std::time::Duration,
    env: Option<gatehouse_actors::gateway::EnvLookup>,
    usage_flush: std::time::Duration,
    master_key: Option<String>,
}

impl Gatehouse {
    pub fn builder(config: Config) -> Builder {
        Builder {
            config,
            home: None,
            clock: Arc::new(SystemClock),
            store: None,
            hasher_threads: None,
            check_interval: std::time::Duration::from_millis(250),
            env: None,
            usage_flush: std::time::Duration::from_secs(1),
            master_key: None,
        }
    }

    /// The state to put in `App::app_data` (cheap to clone per worker).
    pub fn data(&self) -> actix_web::web::Data<AppState> {
        self.data.clone()
    }

    pub fn handles(&self) -> &ActorHandles {
        &self.data.handles
    }

    pub fn supervisor(&self) -> &Addr<Supervisor> {
        &self.supervisor
    }

    pub fn config(&self) -> &Config {
        &self.data.config
    }
}

impl Builder {
    /// The data directory (default: `GATEHOUSE_HOME` or `~/.gatehouse`).
    pub fn home(mut self, home: &Path) -> Self {
        self.home = Some(home.to_owned());
        self
    }

    /// A clock other than the system's (tests move time with a `ManualClock`).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// A store other than the home's (e.g. one shared by tests).
    pub fn store(mut self, store: SharedStore) -> Self {
        self.store = Some(store);
        self
    }

    /// How many password hashes may run at once.
    pub fn hasher_threads(mut self, n: usize) -> Self {
        self.hasher_threads = Some(n);
        self
    }

    /// How often the supervisor looks for dead actors (default 250 ms).
    pub fn supervise_every(mut self, every: std::time::Duration) -> Self {
        self.check_interval = every;
        self
    }

    /// Where provider keys are looked up when the config gives none
    /// (default: the process environment).
    pub fn env(mut self, env: std::collections::HashMap<String, String>) -> Self {
        let env = Arc::new(env);
        self.env = Some(Arc::new(move |name: &str| env.get(name).cloned()));
        self
    }

    /// The master key sealing stored provider keys (64 hex digits or
    /// base64), instead of `GATEHOUSE_MASTER_KEY` or the home's key file.
    pub fn master_key(mut self, key: &str) -> Self {
        self.master_key = Some(key.to_owned());
        self
    }

    /// How often usage records are written to the store (default 1 s).
    pub fn usage_flush(mut self, every: std::time::Duration) -> Self {
        self.usage_flush = every;
        self
    }

    /// Opens the store, starts the actors on the current actix system and
    /// waits until they have loaded their state.
    pub async fn build(self) -> Result<Gatehouse, StartError> {
        let home_dir = self.home.clone();
        let own_sled =
            self.store.is_none() && self.config.store.backend == config::StoreBackend::Sled;
        let store = match self.store {
            Some(s) => s,
            None => {
                if self.config.store.backend == config::StoreBackend::Postgres {
                    // The data is in the database; the home still holds the
                    // admin socket and the master key.
                    if let Some(home) = &self.home {
                        home::prepare(home).map_err(|source| StartError::Home {
                            path: home.clone(),
                            source,
                        })?;
                    }
                    let url = self.config.store.url.expose();
                    let options = self.config.pg_options();
                    let store = gatehouse_actors::store::PgStore::open(url, &options)
                        .await
                        .map_err(StartError::Postgres)?;
                    Arc::new(store) as SharedStore
                } else {
                    let home = self.home.unwrap_or_else(home::default_home);
                    home::prepare(&home).map_err(|source| StartError::Home {
                        path: home.clone(),
                        source,
                    })?;
                    let dir = home.join("db");
                    let store = SledStore::open(&dir).map_err(|source| StartError::Store {
                        path: dir.clone(),
                        source,
                    })?;
                    home::restrict_tree(&dir)
                        .map_err(|source| StartError::Home { path: dir, source })?;
                    Arc::new(store) as SharedStore
                }
            }
        };
        let auth = &self.config.auth;
        let upstream = gateway::clients::UpstreamSetup::new(self.config.egress_policy());
        let mut gateway_spec = gateway::spec(&self.config, upstream.clone());
        if let Some(env) = self.env.clone() {
            gateway_spec.env = env;
        }
        let stored = store
            .load_gateway()
            .await
            .map_err(|e| StartError::Actors(gatehouse_actors::GatehouseError::Store(e)))?;
        let master = match self.master_key {
            Some(text) => master::load(Some(text), None, &stored)
                .map(|k| k.map(|(k, _)| (k, master::Source::Given))),
            None => {
                let env = match &self.env {
                    Some(lookup) => lookup(master::ENV_VAR),
                    None => std::env::var(master::ENV_VAR).ok(),
                };
                let home = match &home_dir {
                    Some(h) => Some(h.clone()),
                    None if own_sled => Some(home::default_home()),
                    None => None,
                };
                master::load(env, home.as_deref(), &stored)
            }
        }
        .map_err(StartError::MasterKey)?;
        let master_source = master.as_ref().map(|(_, s)| s.clone());
        gateway_spec.store = Some(store.clone());
        gateway_spec.master.store(master.map(|(k, _)| Arc::new(k)));
        let metrics = Arc::new(metrics::Metrics::default());
        let actor_config = ActorConfig {
            sweep_interval: self.config.store.sweep_interval,
            check_interval: self.check_interval,
            oauth_state_ttl: auth.oauth_state_ttl,
            throttle: ThrottleConfig {
                max_failures: auth.max_login_failures,
                max_failures_per_ip: auth.max_login_failures_per_ip,
                window: auth.login_failure_window,
            },
            gateway: gateway_spec,
            usage_flush: self.usage_flush,
            tasks: gatehouse_actors::tasks::TaskSetup {
                concurrency: self.config.tasks.concurrency as usize,
                max_queued: self.config.tasks.max_queued as usize,
                backlog: metrics.task_backlog.clone(),
                lease: self.config.tasks.lease,
                approver: self.config.tasks.approval,
                exclusive: self.config.store.backend != config::StoreBackend::Postgres,
                ..Default::default()
            },
        };
        let validators = auth::external::Validators::new(&self.config.auth.bearer)
            .map_err(StartError::Config)?;
        let (supervisor, handles) = Supervisor::start(store, self.clock, actor_config).await?;
        // Give model discovery a moment so the first requests see the lists.
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(3),
            handles
                .providers()
                .send(gatehouse_actors::gateway::actor::RefreshModels),
        )
        .await;
        let oidc = auth::oidc::OidcProviders::new(&self.config.auth.oidc);
        let edge = edge::Edge::new(&self.config.server);
        let state = AppState {
            handles,
            config: Arc::new(self.config),
            hasher: Hasher::new(self.hasher_threads),
            gateway_tokens: Default::default(),
            validators,
            oidc,
            upstream,
            inflight: Default::default(),
            master_source,
            metrics,
            edge,
        };
        let data = actix_web::web::Data::new(state);
        // Tasks run as soon as there is something to run them with.
        *data
            .handles
            .task_runner_slot()
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(tasks::Runner::factory(&data));
        data.handles.tasks().do_send(gatehouse_actors::tasks::Claim);
        Ok(Gatehouse { data, supervisor })
    }
}

/// Mounts Gatehouse's routes (each with its auth middleware and body limits).
/// The app must carry the [`AppState`] from [`Gatehouse::data`] in `app_data`.
pub fn configure(cfg: &mut actix_web::web::ServiceConfig) {
    configure_with_limit(cfg, 1024 * 1024)
}

/// As [`configure`], with the auth/account/admin body limit given.
pub fn configure_with_limit(cfg: &mut actix_web::web::ServiceConfig, body_limit: usize) {
    http::routes(cfg, body_limit)
}

/// RFC 3339 in UTC, as every time in the API.
pub fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
