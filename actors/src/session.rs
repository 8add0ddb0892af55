//! Sessions: the actor is the only writer; handlers validate against the
//! published [`SessionView`] without sending a message.

use crate::clock::AtomicTime;
use crate::error::GatehouseError;
use crate::ids::{new_secret_token, random_id, TokenHash};
use crate::model::SessionRecord;
use crate::store::{EndSessions, SharedStore};
use actix::prelude::*;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use time::{Duration, OffsetDateTime};

/// A session in memory, with a last-seen time that readers bump atomically.
#[derive(Debug)]
pub struct LiveSession {
    pub record: SessionRecord,
    last_seen: AtomicTime,
}

impl LiveSession {
    fn new(record: SessionRecord) -> Self {
        let last_seen = AtomicTime::new(Some(record.last_seen_at));
        Self { record, last_seen }
    }

    /// Records use at `now`.
    pub fn touch(&self, now: OffsetDateTime) {
        self.last_seen.bump(now);
    }

    pub fn last_seen_at(&self) -> OffsetDateTime {
        self.last_seen.get().unwrap_or(self.record.last_seen_at)
    }
}

pub type SessionMap = imbl::HashMap<TokenHash, Arc<LiveSession>>;

/// The read side of the sessions, shared by every handler and worker thread.
#[derive(Clone, Default)]
pub struct SessionView(Arc<ArcSwap<SessionMap>>);

impl SessionView {
    /// The live, unexpired session for this token digest.
    #[inline]
    pub fn validate(&self, hash: &TokenHash, now: OffsetDateTime) -> Option<Arc<LiveSession>> {
        let map = self.0.load();
        let s = map.get(hash)?;
        (s.record.expires_at > now).then(|| s.clone())
    }

    pub fn len(&self) -> usize {
        self.0.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn publish(&self, map: &SessionMap) {
        self.0.store(Arc::new(map.clone()));
    }
}

/// Public facts about a session (never its token).
#[derive(Debug, Clone, serde::Serialize)]
pub struct SessionInfo {
    pub id: String,
    pub user_id: String,
    pub via: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen_at: OffsetDateTime,
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    #[serde(skip)]
    pub token_hash: TokenHash,
}

pub struct SessionActor {
    store: SharedStore,
    view: SessionView,
    map: SessionMap,
    by_id: HashMap<String, TokenHash>,
    /// Last-seen seconds already written to the store.
    persisted_seen: HashMap<TokenHash, i64>,
    loaded: bool,
    /// A reload from the store is running / another one is wanted after it.
    reloading: bool,
    reload_again: bool,
    /// Local changes so far: a reload that raced one is discarded and redone,
    /// so it can never bring back a session this instance just ended.
    local_writes: u64,
}

/// How often an actor on a shared store reloads everything, in case a
/// change notification was lost.
pub const RESYNC_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

impl SessionActor {
    pub fn new(store: SharedStore, view: SessionView) -> Self {
        Self {
            store,
            view,
            map: SessionMap::new(),
            by_id: HashMap::new(),
            persisted_seen: HashMap::new(),
            loaded: false,
            reloading: false,
            reload_again: false,
            local_writes: 0,
        }
    }

    /// A session created here.
    fn insert(&mut self, record: SessionRecord) {
        self.local_writes += 1;
        self.load_record(record);
    }

    /// A session as the store holds it.
    fn load_record(&mut self, record: SessionRecord) {
        self.by_id.insert(record.id.clone(), record.token_hash);
        self.persisted_seen
            .insert(record.token_hash, record.last_seen_at.unix_timestamp());
        self.map
            .insert(record.token_hash, Arc::new(LiveSession::new(record)));
    }

    fn remove(&mut self, hash: &TokenHash) -> Option<Arc<LiveSession>> {
        self.local_writes += 1;
        let s = self.map.remove(hash)?;
        self.by_id.remove(&s.record.id);
        self.persisted_seen.remove(hash);
        Some(s)
    }

    fn remove_where(&mut self, keep: impl Fn(&SessionRecord) -> bool) -> u64 {
        let gone: Vec<TokenHash> = self
            .map
            .iter()
            .filter(|(_, s)| !keep(&s.record))
            .map(|(h, _)| *h)
            .collect();
        for h in &gone {
            self.remove(h);
        }
        gone.len() as u64
    }

    /// Reloads every session from the store (another instance changed
    /// them), keeping the last-seen times bumped here. Bursts coalesce.
    fn reload(&mut self, ctx: &mut Context<Self>) {
        if self.reloading {
            self.reload_again = true;
            return;
        }
        self.reloading = true;
        let store = self.store.clone();
        let writes = self.local_writes;
        ctx.spawn(async move { store.load_sessions().await }.into_actor(self).map(move |res, act, ctx| {
            act.reloading = false;
            match res {
                // A local change raced the load: its result may be stale.
                Ok(_) if act.local_writes != writes => act.reload_again = true,
                Ok(records) => {
                    let old = std::mem::take(&mut act.map);
                    act.by_id.clear();
                    act.persisted_seen.clear();
                    for r in records {
                        let seen = old.get(&r.token_hash).map(|s| s.last_seen_at());
                        let hash = r.token_hash;
                        act.load_record(r);
                        if let (Some(t), Some(s)) = (seen, act.map.get(&hash)) {
                            s.touch(t);
                        }
                    }
                    act.view.publish(&act.map);
                    act.loaded = true;
                }
                Err(e) => tracing::warn!(error = %e, "reloading sessions failed; the next change or resync retries"),
            }
            if std::mem::take(&mut act.reload_again) {
                ctx.run_later(std::time::Duration::from_millis(20), |act, ctx| act.reload(ctx));
            }
        }));
    }

    fn ensure_loaded(&self) -> Result<(), GatehouseError> {
        if self.loaded {
            Ok(())
        } else {
            Err(GatehouseError::Unavailable("sessions are loading".into()))
        }
    }

    fn info(s: &LiveSession) -> SessionInfo {
        let r = &s.record;
        SessionInfo {
            id: r.id.clone(),
            user_id: r.user_id.clone(),
            via: r.via.clone(),
            created_at: r.created_at,
            expires_at: r.expires_at,
            last_seen_at: s.last_seen_at(),
            ip: r.ip,
            user_agent: r.user_agent.clone(),
            token_hash: r.token_hash,
        }
    }

    /// Last-seen times that changed since they were last written.
    fn unsaved_seen(&self) -> Vec<(TokenHash, OffsetDateTime)> {
        self.map
            .iter()
            .filter_map(|(h, s)| {
                let seen = s.last_seen_at();
                let saved = self.persisted_seen.get(h).copied().unwrap_or(0);
                (seen.unix_timestamp() > saved).then_some((*h, seen))
            })
            .collect()
    }
}

impl Actor for SessionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Hold every message until the sessions are loaded from the store.
        let store = self.store.clone();
        ctx.wait(
            async move { store.load_sessions().await }
                .into_actor(self)
                .map(|res, act, ctx| match res {
                    Ok(records) => {
                        for r in records {
                            act.load_record(r);
                        }
                        act.view.publish(&act.map);
                        act.loaded = true;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "loading sessions failed; retrying");
                        ctx.run_later(std::time::Duration::from_secs(1), |_, ctx| ctx.stop());
                    }
                }),
        );
        // On a store shared with other instances, follow their changes.
        if let Some(rx) = self.store.changes() {
            ctx.add_stream(crate::store::change_stream(rx));
            ctx.run_interval(RESYNC_EVERY, |act, ctx| act.reload(ctx));
        }
    }
}

impl StreamHandler<crate::store::Change> for SessionActor {
    fn handle(&mut self, change: crate::store::Change, ctx: &mut Context<Self>) {
        use crate::store::Change;
        if matches!(change, Change::Sessions | Change::All) {
            self.reload(ctx);
        }
    }

    fn finished(&mut self, _: &mut Context<Self>) {
        tracing::warn!("the store's change feed ended; relying on the periodic resync");
    }
}

impl Supervised for SessionActor {
    fn restarting(&mut self, _: &mut Context<Self>) {
        // The published view stays as it was until the reload replaces it.
        self.map = SessionMap::new();
        self.by_id.clear();
        self.persisted_seen.clear();
        self.loaded = false;
    }
}

/// Creates a session; answers with the secret token (shown once) and the record.
#[derive(Message)]
#[rtype(result = "Result<(String, SessionRecord), GatehouseError>")]
pub struct CreateSession {
    pub user_id: String,
    pub via: String,
    pub ttl: Duration,
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    /// The identity provider's session, for back-channel logout.
    pub external_sid: Option<String>,
    pub now: OffsetDateTime,
}

impl Handler<CreateSession> for SessionActor {
    type Result = ResponseActFuture<Self, Result<(String, SessionRecord), GatehouseError>>;

    fn handle(&mut self, msg: CreateSession, _: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.ensure_loaded() {
            return Box::pin(fut::ready(Err(e)));
        }
        let token = new_secret_token();
        let record = SessionRecord {
            id: random_id(),
            token_hash: TokenHash::of(&token),
            user_id: msg.user_id,
            via: msg.via,
            created_at: msg.now,
            expires_at: msg.now + msg.ttl,
            last_seen_at: msg.now,
            ip: msg.ip,
            user_agent: msg.user_agent.map(|ua| ua.chars().take(256).collect()),
            external_sid: msg.external_sid,
        };
        let store = self.store.clone();
        let stored = record.clone();
        Box::pin(
            async move { store.insert_session(stored).await }
                .into_actor(self)
                .map(move |res, act, _| {
                    res?;
                    act.insert(record.clone());
                    act.view.publish(&act.map);
                    Ok((token, record))
                }),
        )
    }
}

/// Validation through the mailbox. Handlers use [`SessionView::validate`];
/// this exists for callers without the view (and as the bench's baseline).
#[derive(Message)]
#[rtype(result = "Result<SessionRecord, GatehouseError>")]
pub struct ValidateSession {
    pub token_hash: TokenHash,
    pub now: OffsetDateTime,
}

impl Handler<ValidateSession> for SessionActor {
    type Result = Result<SessionRecord, GatehouseError>;

    fn handle(&mut self, msg: ValidateSession, _: &mut Context<Self>) -> Self::Result {
        self.ensure_loaded()?;
        match self.map.get(&msg.token_hash) {
            Some(s) if s.record.expires_at > msg.now => {
                s.touch(msg.now);
                Ok(s.record.clone())
            }
            _ => Err(GatehouseError::Unauthenticated),
        }
    }
}

/// Ends one session by its token digest (sign-out). Answers whether it existed.
#[derive(Message)]
#[rtype(result = "Result<bool, GatehouseError>")]
pub struct EndSession {
    pub token_hash: TokenHash,
}

impl Handler<EndSession> for SessionActor {
    type Result = ResponseActFuture<Self, Result<bool, GatehouseError>>;

    fn handle(&mut self, msg: EndSession, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        let hash = msg.token_hash;
        Box::pin(
            async move { store.delete_session(hash).await }
                .into_actor(self)
                .map(move |res, act, _| {
                    let existed = res?;
                    let was_live = act.remove(&hash).is_some();
                    act.view.publish(&act.map);
                    Ok(existed || was_live)
                }),
        )
    }
}

/// Ends one session by its public id; with `owner`, only if it is theirs.
#[derive(Message)]
#[rtype(result = "Result<(), GatehouseError>")]
pub struct EndSessionById {
    pub id: String,
    pub owner: Option<String>,
}

impl Handler<EndSessionById> for SessionActor {
    type Result = ResponseActFuture<Self, Result<(), GatehouseError>>;

    fn handle(&mut self, msg: EndSessionById, _: &mut Context<Self>) -> Self::Result {
        let hash = self
            .by_id
            .get(&msg.id)
            .copied()
            .filter(|h| match &msg.owner {
                Some(owner) => self.map.get(h).is_some_and(|s| &s.record.user_id == owner),
                None => true,
            });
        let Some(hash) = hash else {
            return Box::pin(fut::ready(Err(GatehouseError::NotFound)));
        };
        let store = self.store.clone();
        Box::pin(
            async move { store.delete_session(hash).await }
                .into_actor(self)
                .map(move |res, act, _| {
                    res?;
                    act.remove(&hash);
                    act.view.publish(&act.map);
                    Ok(())
                }),
        )
    }
}

/// Ends a user's sessions in the store and in memory; answers how many.
#[derive(Message)]
#[rtype(result = "Result<u64, GatehouseError>")]
pub struct EndUserSessions {
    pub user_id: String,
    pub end: EndSessions,
}

impl Handler<EndUserSessions> for SessionActor {
    type Result = ResponseActFuture<Self, Result<u64, GatehouseError>>;

    fn handle(&mut self, msg: EndUserSessions, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        let (user_id, end) = (msg.user_id, msg.end);
        let uid = user_id.clone();
        Box::pin(
            async move { store.delete_user_sessions(&uid, end).await }
                .into_actor(self)
                .map(move |res, act, _| {
                    let stored = res?;
                    let live = act.remove_where(|r| {
                        r.user_id != user_id || end == EndSessions::AllBut(r.token_hash)
                    });
                    act.view.publish(&act.map);
                    Ok(stored.max(live))
                }),
        )
    }
}

/// Ends the sessions that came from one identity-provider session (`sid`)
/// or user (`user_id`), signed in through `via` (back-channel logout).
/// Answers how many ended.
#[derive(Message)]
#[rtype(result = "Result<u64, GatehouseError>")]
pub struct EndExternalSessions {
    pub via: String,
    pub sid: Option<String>,
    pub user_id: Option<String>,
}

impl Handler<EndExternalSessions> for SessionActor {
    type Result = ResponseActFuture<Self, Result<u64, GatehouseError>>;

    fn handle(&mut self, msg: EndExternalSessions, _: &mut Context<Self>) -> Self::Result {
        let matching: Vec<TokenHash> = self
            .map
            .iter()
            .filter(|(_, s)| {
                let r = &s.record;
                r.via == msg.via
                    && (msg
                        .sid
                        .as_ref()
                        .is_some_and(|sid| r.external_sid.as_ref() == Some(sid))
                        || msg.user_id.as_ref().is_some_and(|u| &r.user_id == u))
            })
            .map(|(h, _)| *h)
            .collect();
        let store = self.store.clone();
        let hashes = matching.clone();
        Box::pin(
            async move {
                for h in &hashes {
                    store.delete_session(*h).await?;
                }
                Ok::<_, GatehouseError>(())
            }
            .into_actor(self)
            .map(move |res, act, _| {
                res?;
                for h in &matching {
                    act.remove(h);
                }
                act.view.publish(&act.map);
                Ok(matching.len() as u64)
            }),
        )
    }
}

/// Drops from memory the sessions that the store has already ended (a lock,
/// a removal or a password change did it atomically with the user).
#[derive(Message)]
#[rtype(result = "Result<u64, GatehouseError>")]
pub struct ForgetUserSessions {
    pub user_id: String,
    pub end: EndSessions,
}

impl Handler<ForgetUserSessions> for SessionActor {
    type Result = Result<u64, GatehouseError>;

    fn handle(&mut self, msg: ForgetUserSessions, _: &mut Context<Self>) -> Self::Result {
        let n = self.remove_where(|r| {
            r.user_id != msg.user_id || msg.end == EndSessions::AllBut(r.token_hash)
        });
        self.view.publish(&self.map);
        Ok(n)
    }
}

/// Lists live sessions, all or one user's, oldest first.
#[derive(Message)]
#[rtype(result = "Result<Vec<SessionInfo>, GatehouseError>")]
pub struct ListSessions {
    pub user_id: Option<String>,
    pub now: OffsetDateTime,
}

impl Handler<ListSessions> for SessionActor {
    type Result = Result<Vec<SessionInfo>, GatehouseError>;

    fn handle(&mut self, msg: ListSessions, _: &mut Context<Self>) -> Self::Result {
        self.ensure_loaded()?;
        let mut out: Vec<SessionInfo> = self
            .map
            .values()
            .filter(|s| s.record.expires_at > msg.now)
            .filter(|s| msg.user_id.as_ref().is_none_or(|u| &s.record.user_id == u))
            .map(|s| Self::info(s))
            .collect();
        out.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(out)
    }
}

/// Deletes expired sessions from memory and store, and writes the batched
/// last-seen times. Answers how many sessions were deleted.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Result<u64, GatehouseError>")]
pub struct Sweep {
    pub now: OffsetDateTime,
}

impl Handler<Sweep> for SessionActor {
    type Result = ResponseActFuture<Self, Result<u64, GatehouseError>>;

    fn handle(&mut self, msg: Sweep, _: &mut Context<Self>) -> Self::Result {
        let now = msg.now;
        let expired = self.remove_where(|r| r.expires_at >= now);
        self.view.publish(&self.map);
        let seen = self.unsaved_seen();
        let store = self.store.clone();
        Box::pin(
            async move {
                let swept = store.sweep_sessions(now).await?;
                store.touch_sessions(seen.clone()).await?;
                Ok::<_, GatehouseError>((swept, seen))
            }
            .into_actor(self)
            .map(move |res, act, _| {
                let (swept, seen) = res?;
                for (h, at) in seen {
                    if act.map.contains_key(&h) {
                        act.persisted_seen.insert(h, at.unix_timestamp());
                    }
                }
                Ok(swept.max(expired))
            }),
        )
    }
}

/// Answers once the actor has loaded its state.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Result<(), GatehouseError>")]
pub struct Ping;

impl Handler<Ping> for SessionActor {
    type Result = Result<(), GatehouseError>;

    fn handle(&mut self, _: Ping, _: &mut Context<Self>) -> Self::Result {
        self.ensure_loaded()
    }
}

#[cfg(feature = "testing")]
impl Handler<crate::Crash> for SessionActor {
    type Result = ();

    fn handle(&mut self, _: crate::Crash, _: &mut Context<Self>) {
        panic!("SessionActor: crash requested (fault injection)");
    }
}
