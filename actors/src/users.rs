//! Users, roles, password hashes, locks, last login, sign-in throttling and
//! the audit trail. The actor is the only writer; the hot path reads the
//! published [`UserDirectory`].

use crate::error::GatehouseError;
use crate::ids::random_id;
use crate::keys::{KeyRing, KeyRingView};
use crate::model::{AuditEvent, LastLogin, Lock, PasswordHash, UserChange, UserRecord, ADMIN_ROLE};
use crate::store::{EndSessions, SharedStore};
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
    pub max_failures: u32,
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
            by_ip: FailureWindow::new(throttle.max_failures, throttle.window),
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

/// Creates a user, or (with `reset_if_exists`) sets the password of the
/// existing one and ends all their sessions. Answers `(user, created)`.
#[derive(Message)]
#[rtype(result = "Result<(UserRecord, bool), GatehouseError>")]
pub struct AddUser {
    pub username: String,
    pub password: Option<PasswordHash>,
    pub admin: bool,
    pub auth: String,
    pub reset_if_exists: bool,
    pub now: OffsetDateTime,
}

impl Handler<AddUser> for UserStoreActor {
    type Result = ResponseActFuture<Self, Result<(UserRecord, bool), GatehouseError>>;

    fn handle(&mut self, msg: AddUser, _: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.ensure_loaded() {
            return Box::pin(fut::ready(Err(e)));
        }
        let store = self.store.clone();
        if let Some(existing) = self.by_name(&msg.username) {
            if !msg.reset_if_exists {
                return Box::pin(fut::ready(Err(GatehouseError::Conflict(format!(
                    "user {}",
                    existing.username
                )))));
            }
            let id = existing.id.clone();
            let mut roles = existing.roles.clone();
            if msg.admin && !existing.is_admin() {
                roles.push(ADMIN_ROLE.to_owned());
            }
            let fut = async move {
                if let Some(hash) = msg.password {
                    store
                        .update_user(&id, UserChange::Password(hash), Some(EndSessions::All))
                        .await?;
                }
                store.update_user(&id, UserChange::Roles(roles), None).await
            };
            return Box::pin(write_user(self, fut).map(|res, _, _| res.map(|(u, _)| (u, false))));
        }
        let admin = msg.admin || msg.username == "admin";
        let user = UserRecord {
            id: random_id(),
            username: msg.username,
            display_name: None,
            avatar_url: None,
            roles: if admin {
                vec![ADMIN_ROLE.to_owned()]
            } else {
                Vec::new()
            },
            auth: msg.auth,
            created_at: msg.now,
            last_login: None,
            locked: None,
            password: msg.password,
            external_id: None,
            version: 0,
        };
        let stored = user.clone();
        Box::pin(
            async move { store.insert_user(stored).await }
                .into_actor(self)
                .map(move |res, act, _| {
                    res?;
                    act.put(user.clone());
                    Ok((user, true))
                }),
        )
    }
}

/// Adds users read from another system (llms.py). Existing names are skipped.
/// Answers `(imported, skipped names)`.
#[derive(Message)]
#[rtype(result = "Result<(u64, Vec<String>), GatehouseError>")]
pub struct ImportUsers {
    pub users: Vec<UserRecord>,
}

impl Handler<ImportUsers> for UserStoreActor {
    type Result = ResponseActFuture<Self, Result<(u64, Vec<String>), GatehouseError>>;

    fn handle(&mut self, msg: ImportUsers, _: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.ensure_loaded() {
            return Box::pin(fut::ready(Err(e)));
        }
        let store = self.store.clone();
        Box::pin(
            async move {
                let mut added = Vec::new();
                let mut skipped = Vec::new();
                for u in msg.users {
                    match store.insert_user(u.clone()).await {
                        Ok(()) => added.push(u),
                        Err(GatehouseError::Conflict(_)) => skipped.push(u.username),
                        Err(e) => return Err((e, added)),
                    }
                }
                Ok((added, skipped))
            }
            .into_actor(self)
            .map(|res, act, _| match res {
                Ok((added, skipped)) => {
                    let n = added.len() as u64;
                    added.into_iter().for_each(|u| act.put(u));
                    Ok((n, skipped))
                }
                Err((e, added)) => {
                    added.into_iter().for_each(|u| act.put(u));
                    Err(e)
                }
            }),
        )
    }
}

/// Applies a change to the named user (and ends sessions as asked).
/// Answers the new record and how many sessions the store ended.
#[derive(Message)]
#[rtype(result = "Result<(UserRecord, u64), GatehouseError>")]
pub struct ChangeUser {
    pub user: UserRef,
    pub change: UserChange,
    pub end: Option<EndSessions>,
}

#[derive(Debug, Clone)]
pub enum UserRef {
    Id(String),
    Name(String),
}

impl Handler<ChangeUser> for UserStoreActor {
    type Result = ResponseActFuture<Self, Result<(UserRecord, u64), GatehouseError>>;

    fn handle(&mut self, msg: ChangeUser, _: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.ensure_loaded() {
            return Box::pin(fut::ready(Err(e)));
        }
        let id = match &msg.user {
            UserRef::Id(id) => self.users.get(id).map(|u| u.id.clone()),
            UserRef::Name(n) => self.by_name(n).map(|u| u.id.clone()),
        };
        let Some(id) = id else {
            return Box::pin(fut::ready(Err(GatehouseError::NotFound)));
        };
        let store = self.store.clone();
        write_user(self, async move {
            store.update_user(&id, msg.change, msg.end).await
        })
    }
}

/// Removes the named user with their sessions. Answers `(user, sessions ended)`.
#[derive(Message)]
#[rtype(result = "Result<(UserRecord, u64), GatehouseError>")]
pub struct RemoveUser {
    pub username: String,
}

impl Handler<RemoveUser> for UserStoreActor {
    type Result = ResponseActFuture<Self, Result<(UserRecord, u64), GatehouseError>>;

    fn handle(&mut self, msg: RemoveUser, _: &mut Context<Self>) -> Self::Result {
        let user = match self.find(&msg.username) {
            Ok(u) => u,
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        let store = self.store.clone();
        let id = user.id.clone();
        Box::pin(
            async move { store.delete_user(&id).await }
                .into_actor(self)
                .map(move |res, act, _| {
                    let ended = res?;
                    act.local_writes += 1;
                    act.users.remove(&user.id);
                    act.by_name.remove(&user.username.to_lowercase());
                    act.view.publish(&act.users);
                    act.tokens.retain(|_, t| t.record.user_id != user.id);
                    act.token_view.publish(&act.tokens);
                    Ok(((*user).clone(), ended))
                }),
        )
    }
}

#[derive(Message)]
#[rtype(result = "Result<Arc<UserRecord>, GatehouseError>")]
pub struct GetUser {
    pub user: UserRef,
}

impl Handler<GetUser> for UserStoreActor {
    type Result = Result<Arc<UserRecord>, GatehouseError>;

    fn handle(&mut self, msg: GetUser, _: &mut Context<Self>) -> Self::Result {
        self.ensure_loaded()?;
        match msg.user {
            UserRef::Id(id) => self.users.get(&id).cloned().ok_or(GatehouseError::NotFound),
            UserRef::Name(n) => self.find(&n),
        }
    }
}

/// All users, by name.
#[derive(Message)]
#[rtype(result = "Result<Vec<Arc<UserRecord>>, GatehouseError>")]
pub struct ListUsers;

impl Handler<ListUsers> for UserStoreActor {
    type Result = Result<Vec<Arc<UserRecord>>, GatehouseError>;

    fn handle(&mut self, _: ListUsers, _: &mut Context<Self>) -> Self::Result {
        self.ensure_loaded()?;
        let mut all: Vec<_> = self.users.values().cloned().collect();
        all.sort_by_key(|u| u.username.to_lowercase());
        Ok(all)
    }
}

/// First half of a sign-in: refuses a throttled username or address, else
/// answers the user (if any) whose password the caller verifies off-actor.
#[derive(Message)]
#[rtype(result = "Result<Option<Arc<UserRecord>>, GatehouseError>")]
pub struct BeginLogin {
    pub username: String,
    pub ip: Option<IpAddr>,
    pub now: OffsetDateTime,
}

impl Handler<BeginLogin> for UserStoreActor {
    type Result = Result<Option<Arc<UserRecord>>, GatehouseError>;

    fn handle(&mut self, msg: BeginLogin, _: &mut Context<Self>) -> Self::Result {
        self.ensure_loaded()?;
        let name = msg.username.to_lowercase();
        let by_user = self.by_user.retry_after(&name, msg.now);
        let by_ip = msg.ip.and_then(|ip| self.by_ip.retry_after(&ip, msg.now));
        if let Some(retry_after) = by_user.max(by_ip) {
            return Err(GatehouseError::Throttled { retry_after });
        }
        Ok(self.by_name(&name))
    }
}

/// Second half of a sign-in, once the password was checked.
#[derive(Message)]
#[rtype(result = "Result<UserRecord, GatehouseError>")]
pub struct FinishLogin {
    pub username: String,
    pub user_id: Option<String>,
    pub password_ok: bool,
    /// An Argon2id hash replacing a legacy one.
    pub upgrade: Option<PasswordHash>,
    pub ip: Option<IpAddr>,
    pub now: OffsetDateTime,
}

impl Handler<FinishLogin> for UserStoreActor {
    type Result = ResponseActFuture<Self, Result<UserRecord, GatehouseError>>;

    fn handle(&mut self, msg: FinishLogin, _: &mut Context<Self>) -> Self::Result {
        let user = msg
            .user_id
            .as_ref()
            .and_then(|id| self.users.get(id).cloned());
        let (Some(user), true) = (user, msg.password_ok) else {
            self.by_user.record(msg.username.to_lowercase(), msg.now);
            if let Some(ip) = msg.ip {
                self.by_ip.record(ip, msg.now);
            }
            return Box::pin(fut::ready(Err(GatehouseError::InvalidCredentials)));
        };
        if user.locked.is_some() {
            return Box::pin(fut::ready(Err(GatehouseError::AccountLocked)));
        }
        self.by_user.clear(&msg.username.to_lowercase());
        let store = self.store.clone();
        let change = UserChange::Login {
            at: LastLogin {
                at: msg.now,
                ip: msg.ip,
            },
            upgrade: msg.upgrade,
        };
        let id = user.id.clone();
        Box::pin(
            write_user(
                self,
                async move { store.update_user(&id, change, None).await },
            )
            .map(|res, _, _| res.map(|(u, _)| u)),
        )
    }
}

/// Appends an audit event (durably).
#[derive(Message)]
#[rtype(result = "Result<(), GatehouseError>")]
pub struct RecordAudit(pub AuditEvent);

impl RecordAudit {
    pub fn new(
        now: OffsetDateTime,
        actor: Option<&UserRecordRef<'_>>,
        action: &str,
        target: Option<String>,
        ip: Option<IpAddr>,
        details: serde_json::Value,
    ) -> Self {
        RecordAudit(AuditEvent {
            id: random_id(),
            at: now,
            actor: actor.map(|a| a.id.to_owned()),
            actor_name: actor
                .map(|a| a.name.to_owned())
                .unwrap_or_else(|| "anonymous".into()),
            action: action.to_owned(),
            target,
            ip,
            details,
        })
    }
}

/// Who did something, for the audit trail.
#[derive(Debug, Clone, Copy)]
pub struct UserRecordRef<'a> {
    pub id: &'a str,
    pub name: &'a str,
}

impl Handler<RecordAudit> for UserStoreActor {
    type Result = ResponseFuture<Result<(), GatehouseError>>;

    fn handle(&mut self, msg: RecordAudit, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        Box::pin(async move { Ok(store.append_audit(msg.0).await?) })
    }
}

#[derive(Message)]
#[rtype(result = "Result<Vec<AuditEvent>, GatehouseError>")]
pub struct ListAudit {
    pub limit: usize,
}

impl Handler<ListAudit> for UserStoreActor {
    type Result = ResponseFuture<Result<Vec<AuditEvent>, GatehouseError>>;

    fn handle(&mut self, msg: ListAudit, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        Box::pin(async move { Ok(store.list_audit(msg.limit).await?) })
    }
}

/// Forgets throttling records that have left the window and writes the
/// batched token last-use times. Answers how many throttling keys went.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Result<u64, GatehouseError>")]
pub struct Sweep {
    pub now: OffsetDateTime,
}

impl Handler<Sweep> for UserStoreActor {
    type Result = ResponseActFuture<Self, Result<u64, GatehouseError>>;

    fn handle(&mut self, msg: Sweep, _: &mut Context<Self>) -> Self::Result {
        let before = self.by_user.len() + self.by_ip.len();
        self.by_user.prune(msg.now);
        self.by_ip.prune(msg.now);
        let pruned = (before - self.by_user.len() - self.by_ip.len()) as u64;
        let used = self.unsaved_token_use();
        let store = self.store.clone();
        Box::pin(
            async move { store.touch_tokens(used.clone()).await.map(|_| used) }
                .into_actor(self)
                .map(move |res, act, _| {
                    for (id, at) in res? {
                        if let Some(t) = act.tokens.get(&id) {
                            let mut r = t.record.clone();
                            r.last_used_at = Some(at);
                            act.put_token(r);
                        }
                    }
                    Ok(pruned)
                }),
        )
    }
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

/// A lock to apply now.
pub fn lock_now(reason: Option<String>, now: OffsetDateTime) -> Lock {
    Lock {
        reason: reason.unwrap_or_else(|| "locked by an administrator".into()),
        at: now,
    }
}

/// Signs in a user known to an identity provider: finds them by
/// `external_id` (a renamed login is still the same user), refreshes their
/// profile and last login, or creates them under a free username (never
/// taking over a password user's name). A locked user is refused.
#[derive(Message)]
#[rtype(result = "Result<UserRecord, GatehouseError>")]
pub struct UpsertExternalUser {
    pub external_id: String,
    pub login: String,
    pub display_name: Option<String>,
    pub avatar_url: Option<String>,
    /// `github`, `oidc:NAME`.
    pub auth: String,
    /// Grant the Admin role (the provider's admin list names this user).
    pub admin: bool,
    pub ip: Option<IpAddr>,
    pub now: OffsetDateTime,
}

impl UpsertExternalUser {
    /// The first username that is free: the login, then `login@auth`, then
    /// with the external id appended.
    fn username(&self, taken: impl Fn(&str) -> bool) -> String {
        let suffix: String = self
            .auth
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let id: String = self
            .external_id
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(12)
            .collect();
        [
            self.login.clone(),
            format!("{}@{suffix}", self.login),
            format!("{}@{suffix}-{id}", self.login),
        ]
        .into_iter()
        .find(|c| !taken(c))
        .unwrap_or_else(|| format!("{}@{suffix}-{}", self.login, &crate::ids::random_id()[..8]))
    }
}

impl Handler<UpsertExternalUser> for UserStoreActor {
    type Result = ResponseActFuture<Self, Result<UserRecord, GatehouseError>>;

    fn handle(&mut self, msg: UpsertExternalUser, _: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.ensure_loaded() {
            return Box::pin(fut::ready(Err(e)));
        }
        let store = self.store.clone();
        let login = LastLogin {
            at: msg.now,
            ip: msg.ip,
        };
        let existing = self
            .users
            .values()
            .find(|u| u.external_id.as_deref() == Some(&msg.external_id))
            .cloned();
        let fut = match existing {
            Some(u) if u.locked.is_some() => {
                return Box::pin(fut::ready(Err(GatehouseError::AccountLocked)))
            }
            Some(u) => {
                let profile = UserChange::Profile {
                    display_name: msg.display_name.clone(),
                    avatar_url: msg.avatar_url.clone(),
                };
                let grant = (msg.admin && !u.is_admin()).then(|| {
                    let mut roles = u.roles.clone();
                    roles.push(ADMIN_ROLE.to_owned());
                    UserChange::Roles(roles)
                });
                let id = u.id.clone();
                Box::pin(async move {
                    store.update_user(&id, profile, None).await?;
                    if let Some(g) = grant {
                        store.update_user(&id, g, None).await?;
                    }
                    store
                        .update_user(
                            &id,
                            UserChange::Login {
                                at: login,
                                upgrade: None,
                            },
                            None,
                        )
                        .await
                }) as futures_util::future::LocalBoxFuture<'static, _>
            }
            None => {
                let username = msg.username(|name| self.by_name.contains_key(&name.to_lowercase()));
                let user = UserRecord {
                    id: random_id(),
                    username,
                    display_name: msg.display_name,
                    avatar_url: msg.avatar_url,
                    roles: if msg.admin {
                        vec![ADMIN_ROLE.to_owned()]
                    } else {
                        Vec::new()
                    },
                    auth: msg.auth,
                    created_at: msg.now,
                    last_login: None,
                    locked: None,
                    password: None,
                    external_id: Some(msg.external_id),
                    version: 0,
                };
                Box::pin(async move {
                    store.insert_user(user.clone()).await?;
                    store
                        .update_user(
                            &user.id,
                            UserChange::Login {
                                at: login,
                                upgrade: None,
                            },
                            None,
                        )
                        .await
                })
            }
        };
        Box::pin(fut.into_actor(self).map(|res, act, _| {
            let (user, _) = res?;
            act.put(user.clone());
            Ok(user)
        }))
    }
}

/// Stores a user's avatar and points their `avatar_url` at it.
#[derive(Message)]
#[rtype(result = "Result<UserRecord, GatehouseError>")]
pub struct PutAvatar {
    pub user_id: String,
    pub content_type: &'static str,
    pub data: Vec<u8>,
}

impl Handler<PutAvatar> for UserStoreActor {
    type Result = ResponseActFuture<Self, Result<UserRecord, GatehouseError>>;

    fn handle(&mut self, msg: PutAvatar, _: &mut Context<Self>) -> Self::Result {
        let Some(user) = self.users.get(&msg.user_id).cloned() else {
            return Box::pin(fut::ready(Err(GatehouseError::NotFound)));
        };
        let store = self.store.clone();
        let profile = UserChange::Profile {
            display_name: user.display_name.clone(),
            avatar_url: Some(format!("/avatars/{}", user.id)),
        };
        write_user(self, async move {
            store
                .put_avatar(&msg.user_id, msg.content_type, msg.data)
                .await?;
            store.update_user(&msg.user_id, profile, None).await
        })
        .map(|res, _, _| res.map(|(u, _)| u))
        .boxed_local()
    }
}

/// A user's avatar: `(content type, bytes)`.
#[derive(Message)]
#[rtype(result = "Result<Option<(String, Vec<u8>)>, GatehouseError>")]
pub struct GetAvatar {
    pub user_id: String,
}

impl Handler<GetAvatar> for UserStoreActor {
    type Result = ResponseFuture<Result<Option<(String, Vec<u8>)>, GatehouseError>>;

    fn handle(&mut self, msg: GetAvatar, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        Box::pin(async move { Ok(store.get_avatar(&msg.user_id).await?) })
    }
}
