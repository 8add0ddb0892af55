//! Starts the actors, restarts any that die, runs the sweep timer and
//! reports readiness. A panicking actor's mailbox closes (actix does not
//! restart it); the supervisor notices on its timer, starts a fresh one that
//! reloads from the store, and swaps it into the handles handlers read.

use crate::clock::SharedClock;
use crate::error::{GatehouseError, StoreError};
use crate::gateway::{self, CatalogView, GatewaySpec, ProviderActor, UsageActor, UsageSink};
use crate::keys::KeyRingView;
use crate::oauth::{self, OAuthStateActor};
use crate::session::{self, SessionActor, SessionView};
use crate::store::SharedStore;
use crate::tasks::{self, TaskActor, TaskNotify, TaskSetup};
use crate::tokens::TokenTable;
use crate::users::{self, ThrottleConfig, UserDirectory, UserStoreActor, UserViews};
use actix::prelude::*;
use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration as StdDuration;
use time::Duration;

#[derive(Debug, Clone)]
pub struct ActorConfig {
    pub sweep_interval: StdDuration,
    /// How often the supervisor looks for dead actors.
    pub check_interval: StdDuration,
    pub oauth_state_ttl: Duration,
    pub throttle: ThrottleConfig,
    /// Providers, aliases and egress policy for the `ProviderActor`.
    pub gateway: GatewaySpec,
    /// How often usage records are written to the store.
    pub usage_flush: StdDuration,
    pub tasks: TaskSetup,
}

/// What handlers hold: current actor addresses (swapped on restart), the
/// published read-side views, the store and the clock.
#[derive(Clone)]
pub struct ActorHandles {
    inner: Arc<HandlesInner>,
}

struct HandlesInner {
    sessions: ArcSwap<Addr<SessionActor>>,
    users: ArcSwap<Addr<UserStoreActor>>,
    oauth: ArcSwap<Addr<OAuthStateActor>>,
    providers: ArcSwap<Addr<ProviderActor>>,
    usage: ArcSwap<Addr<UsageActor>>,
    tasks: ArcSwap<Addr<TaskActor>>,
    task_setup: TaskSetup,
    catalog: CatalogView,
    usage_sink: UsageSink,
    session_view: SessionView,
    user_views: UserViews,
    store: SharedStore,
    clock: SharedClock,
    restarts: AtomicU64,
}

impl ActorHandles {
    pub fn sessions(&self) -> Addr<SessionActor> {
        Addr::clone(&self.inner.sessions.load())
    }
    pub fn users(&self) -> Addr<UserStoreActor> {
        Addr::clone(&self.inner.users.load())
    }
    pub fn oauth(&self) -> Addr<OAuthStateActor> {
        Addr::clone(&self.inner.oauth.load())
    }
    pub fn providers(&self) -> Addr<ProviderActor> {
        Addr::clone(&self.inner.providers.load())
    }
    pub fn usage(&self) -> Addr<UsageActor> {
        Addr::clone(&self.inner.usage.load())
    }
    pub fn tasks(&self) -> Addr<TaskActor> {
        Addr::clone(&self.inner.tasks.load())
    }
    /// Wakes event streams and waiters when a task is written.
    pub fn task_notify(&self) -> &TaskNotify {
        &self.inner.task_setup.notify
    }
    /// Where the HTTP side puts the task runner once it is built.
    pub fn task_runner_slot(&self) -> &Arc<Mutex<Option<tasks::SharedRunner>>> {
        &self.inner.task_setup.runner
    }
    /// The published provider catalog.
    pub fn catalog(&self) -> &CatalogView {
        &self.inner.catalog
    }
    /// Where proxied calls leave their usage records.
    pub fn usage_sink(&self) -> &UsageSink {
        &self.inner.usage_sink
    }
    pub fn session_view(&self) -> &SessionView {
        &self.inner.session_view
    }
    pub fn user_view(&self) -> &UserDirectory {
        &self.inner.user_views.users
    }
    pub fn token_table(&self) -> &TokenTable {
        &self.inner.user_views.tokens
    }
    pub fn keyring(&self) -> &KeyRingView {
        &self.inner.user_views.keyring
    }
    pub fn store(&self) -> &SharedStore {
        &self.inner.store
    }
    pub fn clock(&self) -> &SharedClock {
        &self.inner.clock
    }
    pub fn now(&self) -> time::OffsetDateTime {
        self.inner.clock.now()
    }
    /// How many times a dead actor has been replaced.
    pub fn restarts(&self) -> u64 {
        self.inner.restarts.load(Ordering::Relaxed)
    }

    /// Asks every actor to answer and probes the store with a write.
    /// Answers the failing parts, each with a reason fit for anyone to read
    /// (no address, no driver message: those go to the log).
    pub async fn readiness(&self) -> Vec<NotReady> {
        let t = StdDuration::from_secs(2);
        let pings = [
            (
                "sessions",
                self.sessions().send(session::Ping).timeout(t).await,
            ),
            ("users", self.users().send(users::Ping).timeout(t).await),
            (
                "oauth_states",
                self.oauth().send(oauth::Ping).timeout(t).await,
            ),
            (
                "providers",
                self.providers().send(gateway::actor::Ping).timeout(t).await,
            ),
            (
                "usage",
                self.usage().send(gateway::usage::Ping).timeout(t).await,
            ),
            ("tasks", self.tasks().send(tasks::Ping).timeout(t).await),
        ];
        let mut failing: Vec<NotReady> = pings
            .into_iter()
            .filter_map(|(part, answer)| {
                let reason = match answer {
                    Ok(Ok(())) => return None,
                    Ok(Err(_)) => "failing",
                    Err(actix::MailboxError::Timeout) => "did not answer within 2 s",
                    Err(actix::MailboxError::Closed) => "stopped",
                };
                Some(NotReady::new(part, reason))
            })
            .collect();
        let reason = match tokio::time::timeout(t, self.store().check_writable()).await {
            Ok(Ok(())) => None,
            Ok(Err(e @ StoreError::Unavailable(_))) => {
                tracing::warn!(error = %e, "store is unreachable");
                Some("the database is unreachable")
            }
            Ok(Err(e)) if e.is_storage_full() => {
                tracing::error!(error = %e, "store is not writable: the disk is full");
                Some("no space left on the disk of the data directory; free space, then restart")
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "store is not writable");
                Some("the store refused a write")
            }
            Err(_) => {
                tracing::warn!("store did not answer the readiness probe within 2 s");
                Some("the store did not answer within 2 s")
            }
        };
        if let Some(reason) = reason {
            failing.push(NotReady::new("store", reason));
        }
        failing
    }
}

/// A part of the gateway that is not ready, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotReady {
    pub part: &'static str,
    pub reason: &'static str,
}

impl NotReady {
    fn new(part: &'static str, reason: &'static str) -> Self {
        NotReady { part, reason }
    }
}

pub struct Supervisor {
    handles: ActorHandles,
    config: ActorConfig,
}

fn spawn_sessions(store: &SharedStore, view: &SessionView) -> Addr<SessionActor> {
    let (store, view) = (store.clone(), view.clone());
    actix::Supervisor::start(move |_| SessionActor::new(store, view))
}

fn spawn_users(store: &SharedStore, views: &UserViews, t: ThrottleConfig) -> Addr<UserStoreActor> {
    let (store, views) = (store.clone(), views.clone());
    actix::Supervisor::start(move |_| UserStoreActor::new(store, views, t))
}

fn spawn_oauth(store: &SharedStore, ttl: Duration) -> Addr<OAuthStateActor> {
    let store = store.clone();
    actix::Supervisor::start(move |_| OAuthStateActor::new(store, ttl))
}

fn spawn_providers(spec: &GatewaySpec, view: &CatalogView) -> Addr<ProviderActor> {
    let (spec, view) = (spec.clone(), view.clone());
    actix::Supervisor::start(move |_| ProviderActor::new(spec, view))
}

fn spawn_usage(store: &SharedStore, sink: &UsageSink, every: StdDuration) -> Addr<UsageActor> {
    let (store, sink) = (store.clone(), sink.clone());
    actix::Supervisor::start(move |_| UsageActor::new(store, sink, every))
}

fn spawn_tasks(store: &SharedStore, clock: &SharedClock, setup: &TaskSetup) -> Addr<TaskActor> {
    let (store, clock, setup) = (store.clone(), clock.clone(), setup.clone());
    actix::Supervisor::start(move |_| TaskActor::new(store, clock, setup))
}

impl Supervisor {
    /// Starts every actor on the current arbiter, waits until each has loaded
    /// its state, and answers the supervisor with the handles.
    pub async fn start(
        store: SharedStore,
        clock: SharedClock,
        config: ActorConfig,
    ) -> Result<(Addr<Supervisor>, ActorHandles), GatehouseError> {
        let session_view = SessionView::default();
        let user_views = UserViews::default();
        let catalog = CatalogView::default();
        let usage_sink = UsageSink::default();
        let handles = ActorHandles {
            inner: Arc::new(HandlesInner {
                sessions: ArcSwap::from_pointee(spawn_sessions(&store, &session_view)),
                users: ArcSwap::from_pointee(spawn_users(&store, &user_views, config.throttle)),
                oauth: ArcSwap::from_pointee(spawn_oauth(&store, config.oauth_state_ttl)),
                providers: ArcSwap::from_pointee(spawn_providers(&config.gateway, &catalog)),
                usage: ArcSwap::from_pointee(spawn_usage(&store, &usage_sink, config.usage_flush)),
                tasks: ArcSwap::from_pointee(spawn_tasks(&store, &clock, &config.tasks)),
                task_setup: config.tasks.clone(),
                catalog,
                usage_sink,
                session_view,
                user_views,
                store,
                clock,
                restarts: AtomicU64::new(0),
            }),
        };
        handles
            .sessions()
            .send(session::Ping)
            .await
            .map_err(unavailable)??;
        handles
            .users()
            .send(users::Ping)
            .await
            .map_err(unavailable)??;
        handles
            .oauth()
            .send(oauth::Ping)
            .await
            .map_err(unavailable)??;
        handles
            .providers()
            .send(gateway::actor::Ping)
            .await
            .map_err(unavailable)??;
        let sup = Supervisor {
            handles: handles.clone(),
            config,
        }
        .start();
        Ok((sup, handles))
    }

    fn check(&mut self) {
        let h = &self.handles.inner;
        let mut replaced = Vec::new();
        if !h.sessions.load().connected() {
            h.sessions
                .store(Arc::new(spawn_sessions(&h.store, &h.session_view)));
            replaced.push("sessions");
        }
        if !h.users.load().connected() {
            h.users.store(Arc::new(spawn_users(
                &h.store,
                &h.user_views,
                self.config.throttle,
            )));
            replaced.push("users");
        }
        if !h.oauth.load().connected() {
            h.oauth
                .store(Arc::new(spawn_oauth(&h.store, self.config.oauth_state_ttl)));
            replaced.push("oauth_states");
        }
        if !h.providers.load().connected() {
            h.providers
                .store(Arc::new(spawn_providers(&self.config.gateway, &h.catalog)));
            replaced.push("providers");
        }
        if !h.usage.load().connected() {
            h.usage.store(Arc::new(spawn_usage(
                &h.store,
                &h.usage_sink,
                self.config.usage_flush,
            )));
            replaced.push("usage");
        }
        if !h.tasks.load().connected() {
            h.tasks.store(Arc::new(spawn_tasks(
                &h.store,
                &h.clock,
                &self.config.tasks,
            )));
            replaced.push("tasks");
        }
        for actor in replaced {
            h.restarts.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                actor,
                "actor died; started a fresh one that reloads from the store"
            );
        }
    }

    fn sweep(&mut self, ctx: &mut Context<Self>) {
        let now = self.handles.now();
        let (s, u, o, t) = (
            self.handles.sessions(),
            self.handles.users(),
            self.handles.oauth(),
            self.handles.tasks(),
        );
        let store = self.handles.store().clone();
        let job = async move {
            if let Ok(Err(e)) = t.send(tasks::Sweep { now }).await {
                tracing::warn!(error = %e, "sweeping idempotency keys failed");
            }
            // Counters live in the store alone (no actor caches them).
            if let Err(e) = store.sweep_counters(now.unix_timestamp()).await {
                tracing::warn!(error = %e, "sweeping limit counters failed");
            }
            let sessions = s.send(session::Sweep { now }).await;
            let states = o.send(oauth::Sweep { now }).await;
            let _ = u.send(users::Sweep { now }).await;
            match (sessions, states) {
                (Ok(Ok(a)), Ok(Ok(b))) => {
                    tracing::debug!(sessions = a, oauth_states = b, "sweep done")
                }
                (a, b) => tracing::warn!(?a, ?b, "sweep failed; the next one retries"),
            }
        };
        ctx.spawn(job.into_actor(self));
    }
}

fn unavailable(e: MailboxError) -> GatehouseError {
    GatehouseError::Unavailable(e.to_string())
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.config.check_interval, |act, _| act.check());
        ctx.run_interval(self.config.sweep_interval, |act, ctx| act.sweep(ctx));
    }
}

/// Sweeps now (tests, and the CLI before it exits).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SweepNow;

impl Handler<SweepNow> for Supervisor {
    type Result = ();
    fn handle(&mut self, _: SweepNow, ctx: &mut Context<Self>) {
        self.sweep(ctx);
    }
}

/// Checks for dead actors now instead of at the next tick.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CheckNow;

impl Handler<CheckNow> for Supervisor {
    type Result = ();
    fn handle(&mut self, _: CheckNow, _: &mut Context<Self>) {
        self.check();
    }
}
