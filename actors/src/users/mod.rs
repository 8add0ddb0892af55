//! Users, roles, password hashes, locks, last login, sign-in throttling and
//! the audit trail. The actor is the only writer; the hot path reads the
//! published [`UserDirectory`].

mod audit;
mod avatars;
mod login;
mod manage;

pub use audit::{ListAudit, RecordAudit, UserRecordRef};
pub use avatars::{GetAvatar, PutAvatar};
pub use login::{BeginLogin, FinishLogin, Sweep, UpsertExternalUser};
pub use manage::{
    lock_now, AddUser, ChangeUser, GetUser, ImportUsers, ListUsers, RemoveUser, UserRef,
};

use crate::error::GatehouseError;
use crate::keys::{KeyRing, KeyRingView};
use crate::model::UserRecord;
use crate::store::SharedStore;
use crate::throttle::FailureWindow;
use crate::tokens::{LiveToken, TokenMap, TokenTable};
use actix::prelude::*;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use time::{Duration, OffsetDateTime};

pub type UserMap = imbl::HashMap<String, Arc<UserRecord>>;

/// The read side of the users, keyed by id.
#[derive(Clone, Default)]
pub struct UserDirectory(Arc<ArcSwap<UserMap>>);

impl UserDirectory {
    #[inline]
    pub fn get(&self, id: &str) -> Option<Arc<UserRecord>> {
        self.0.load().get(id).cloned()
    }

    pub fn len(&self) -> usize {
        self.0.load().len()
    }

    /// The first user for which `pred` holds (a scan: for rare lookups).
    pub fn find(&self, pred: impl Fn(&UserRecord) -> bool) -> Option<Arc<UserRecord>> {
        self.0.load().values().find(|u| pred(u)).cloned()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn publish(&self, map: &UserMap) {
        self.0.store(Arc::new(map.clone()));
    }
}

#[derive(Debug, Clone, Copy)]
pub struct ThrottleConfig {
    /// Failures per username in the window (from any addresses).
    pub max_failures: u32,
    /// Failures per client address in the window (for any usernames).
    pub max_failures_per_ip: u32,
    pub window: Duration,
}

pub struct UserStoreActor {
    pub(crate) store: SharedStore,
    view: UserDirectory,
    users: UserMap,
    by_name: HashMap<String, String>,
    by_user: FailureWindow<String>,
    by_ip: FailureWindow<IpAddr>,
    pub(crate) tokens: TokenMap,
    pub(crate) token_view: TokenTable,
    pub(crate) keyring: KeyRingView,
    loaded: bool,
    reloading: bool,
    reload_again: bool,
    /// Local changes so far: a reload that raced one is discarded and redone,
    /// so it can never undo a lock or revocation made here.
    pub(crate) local_writes: u64,
}

/// The read-side views the `UserStoreActor` publishes.
#[derive(Clone, Default)]
pub struct UserViews {
    pub users: UserDirectory,
    pub tokens: TokenTable,
    pub keyring: KeyRingView,
}

impl UserStoreActor {
    pub fn new(store: SharedStore, views: UserViews, throttle: ThrottleConfig) -> Self {
        Self {
            store,
            view: views.users,
            tokens: TokenMap::new(),
            token_view: views.tokens,
            keyring: views.keyring,
            reloading: false,
            reload_again: false,
            local_writes: 0,
            users: UserMap::new(),
            by_name: HashMap::new(),
            by_user: FailureWindow::new(throttle.max_failures, throttle.window),
            by_ip: FailureWindow::new(throttle.max_failures_per_ip, throttle.window),
            loaded: false,
        }
    }

    pub(crate) fn ensure_loaded(&self) -> Result<(), GatehouseError> {
        if self.loaded {
            Ok(())
        } else {
            Err(GatehouseError::Unavailable("users are loading".into()))
        }
    }

    /// Keeps `user` unless memory already has a newer version.
    fn put(&mut self, user: UserRecord) {
        self.local_writes += 1;
        if self
            .users
            .get(&user.id)
            .is_some_and(|u| u.version > user.version)
        {
            return;
        }
        self.by_name
            .insert(user.username.to_lowercase(), user.id.clone());
        self.users.insert(user.id.clone(), Arc::new(user));
        self.view.publish(&self.users);
    }

    fn by_name(&self, name: &str) -> Option<Arc<UserRecord>> {
        let id = self.by_name.get(&name.to_lowercase())?;
        self.users.get(id).cloned()
    }

    fn find(&self, name: &str) -> Result<Arc<UserRecord>, GatehouseError> {
        self.ensure_loaded()?;
        self.by_name(name).ok_or(GatehouseError::NotFound)
    }
}

impl Actor for UserStoreActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.wait(
            load_all(self.store.clone())
                .into_actor(self)
                .map(|res, act, ctx| match res {
                    Ok(loaded) => act.replace_all(loaded),
                    Err(e) => {
                        tracing::error!(error = %e, "loading users failed; retrying");
                        ctx.run_later(std::time::Duration::from_secs(1), |_, ctx| ctx.stop());
                    }
                }),
        );
        // On a store shared with other instances, follow their changes.
        if let Some(rx) = self.store.changes() {
            ctx.add_stream(crate::store::change_stream(rx));
            ctx.run_interval(crate::session::RESYNC_EVERY, |act, ctx| act.reload(ctx));
        }
    }
}

type Loaded = (Vec<UserRecord>, Vec<crate::model::TokenRecord>, KeyRing);

/// Users, tokens and signing keys from the store (making the first signing
/// key on a fresh store).
async fn load_all(store: SharedStore) -> Result<Loaded, crate::error::StoreError> {
    let users = store.load_users().await?;
    let tokens = store.load_tokens().await?;
    let mut keys = store.load_signing_keys().await?;
    if keys.is_empty() {
        store
            .insert_signing_key(crate::keys::generate(OffsetDateTime::now_utc()))
            .await?;
        keys = store.load_signing_keys().await?;
    }
    let ring = KeyRing::from_records(&keys)?;
    Ok((users, tokens, ring))
}

impl UserStoreActor {
    /// Replaces the in-memory state with what the store holds, keeping the
    /// token last-use times bumped here, and publishes it.
    fn replace_all(&mut self, (users, tokens, ring): Loaded) {
        self.users = UserMap::new();
        self.by_name.clear();
        for u in users {
            self.by_name.insert(u.username.to_lowercase(), u.id.clone());
            self.users.insert(u.id.clone(), Arc::new(u));
        }
        let old = std::mem::take(&mut self.tokens);
        for t in tokens {
            let live = LiveToken::new(t);
            if let Some(used) = old.get(&live.record.id).and_then(|o| o.last_used_at()) {
                live.touch(used);
            }
            self.tokens.insert(live.record.id.clone(), Arc::new(live));
        }
        self.view.publish(&self.users);
        self.token_view.publish(&self.tokens);
        self.keyring.publish(ring);
        self.loaded = true;
    }

    /// Reloads everything (another instance changed it). Bursts coalesce.
    fn reload(&mut self, ctx: &mut Context<Self>) {
        if self.reloading {
            self.reload_again = true;
            return;
        }
        self.reloading = true;
        let writes = self.local_writes;
        ctx.spawn(load_all(self.store.clone()).into_actor(self).map(move |res, act, ctx| {
            act.reloading = false;
            match res {
                // A local change raced the load: its result may be stale.
                Ok(_) if act.local_writes != writes => act.reload_again = true,
                Ok(loaded) => act.replace_all(loaded),
                Err(e) => tracing::warn!(error = %e, "reloading users failed; the next change or resync retries"),
            }
            if std::mem::take(&mut act.reload_again) {
                ctx.run_later(std::time::Duration::from_millis(20), |act, ctx| act.reload(ctx));
            }
        }));
    }
}

impl StreamHandler<crate::store::Change> for UserStoreActor {
    fn handle(&mut self, change: crate::store::Change, ctx: &mut Context<Self>) {
        use crate::store::Change;
        if matches!(
            change,
            Change::Users | Change::Tokens | Change::Keys | Change::All
        ) {
            self.reload(ctx);
        }
    }

    fn finished(&mut self, _: &mut Context<Self>) {
        tracing::warn!("the store's change feed ended; relying on the periodic resync");
    }
}

impl Supervised for UserStoreActor {
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.users = UserMap::new();
        self.tokens = TokenMap::new();
        self.by_name.clear();
        self.loaded = false;
    }
}

/// Runs a store write, then keeps the record it answers with.
fn write_user<F>(
    act: &UserStoreActor,
    fut: F,
) -> ResponseActFuture<UserStoreActor, Result<(UserRecord, u64), GatehouseError>>
where
    F: std::future::Future<Output = Result<(UserRecord, u64), GatehouseError>> + 'static,
{
    Box::pin(fut.into_actor(act).map(|res, act, _| {
        let (user, ended) = res?;
        act.put(user.clone());
        Ok((user, ended))
    }))
}

#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Result<(), GatehouseError>")]
pub struct Ping;

impl Handler<Ping> for UserStoreActor {
    type Result = Result<(), GatehouseError>;

    fn handle(&mut self, _: Ping, _: &mut Context<Self>) -> Self::Result {
        self.ensure_loaded()
    }
}

#[cfg(feature = "testing")]
impl Handler<crate::Crash> for UserStoreActor {
    type Result = ();

    fn handle(&mut self, _: crate::Crash, _: &mut Context<Self>) {
        panic!("UserStoreActor: crash requested (fault injection)");
    }
}
