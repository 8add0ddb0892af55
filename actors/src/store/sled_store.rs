//! The embedded backend. Every write is followed by `flush` before it returns,
//! so an acknowledged write survives `kill -9`. Compound writes that touch a
//! user and their sessions run under one lock and one multi-tree transaction;
//! so do task writes (the task, its events and an idempotency key), under a
//! lock of their own.

use super::{bucket_width, check_task_events, finite_cost, EndSessions, Store};
use crate::error::{GatehouseError, StoreError};
use crate::ids::TokenHash;
use crate::model::{
    AuditEvent, Counter, Draw, GatewayItem, IdempotencyRecord, ItemKind, OAuthState, Reserve,
    SaveTask, SessionRecord, SigningKeyRecord, TaskEvent, TaskRecord, TaskStatus, TokenChange,
    TokenRecord, UsageBucket, UsageQuery, UsageRecord, UsageRow, UserChange, UserRecord,
};
use async_trait::async_trait;
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
use sled::Tree;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, Mutex};
use time::OffsetDateTime;

#[derive(Clone)]
pub struct SledStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: sled::Db,
    users: Tree,
    names: Tree,
    sessions: Tree,
    oauth: Tree,
    audit: Tree,
    tokens: Tree,
    keys: Tree,
    avatars: Tree,
    /// Usage records by time: [`usage_time_key`] of `at`, then a unique id.
    usage: Tree,
    /// Task id → task.
    tasks: Tree,
    /// [`queue_key`] → nothing, for each task that is `queued` or `running`:
    /// claims and the backlog count read this, not every task ever made.
    task_queue: Tree,
    /// [`event_key`] → task event.
    task_events: Tree,
    /// [`idem_key`] → idempotency record.
    idempotency: Tree,
    /// [`gateway_key`] → run-time provider, profile, alias or setting.
    gateway: Tree,
    /// [`counter_key`] → window end (i64 BE) and value (f64 BE).
    limits: Tree,
    meta: Tree,
    /// Serialises writes that read sessions and then change them with a user.
    user_lock: Mutex<()>,
    /// Serialises task and idempotency writes, each a read-check-write.
    task_lock: Mutex<()>,
    /// Serialises reservations (read, check every draw, then write).
    limit_lock: Mutex<()>,
}

impl SledStore {
    /// Opens (or creates) the database in `dir`. Fails when another process holds it.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::HighThroughput)
            // sled's default page cache is 1 GiB; the gateway's working set
            // (users, sessions, tokens, recent tasks) is far smaller.
            .cache_capacity(64 * 1024 * 1024)
            .open()?;
        let inner = Inner {
            users: db.open_tree("users")?,
            names: db.open_tree("usernames")?,
            sessions: db.open_tree("sessions")?,
            oauth: db.open_tree("oauth_states")?,
            audit: db.open_tree("audit")?,
            tokens: db.open_tree("api_tokens")?,
            keys: db.open_tree("signing_keys")?,
            avatars: db.open_tree("avatars")?,
            usage: db.open_tree("usage")?,
            tasks: db.open_tree("tasks")?,
            task_queue: db.open_tree("task_queue")?,
            task_events: db.open_tree("task_events")?,
            idempotency: db.open_tree("idempotency")?,
            gateway: db.open_tree("gateway")?,
            limits: db.open_tree("limit_counters")?,
            meta: db.open_tree("meta")?,
            db,
            user_lock: Mutex::new(()),
            task_lock: Mutex::new(()),
            limit_lock: Mutex::new(()),
        };
        inner.index_task_queue()?;
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    async fn run<T, F>(&self, f: F) -> Result<T, GatehouseError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, GatehouseError> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let out = f(&inner)?;
            inner.db.flush().map_err(StoreError::from)?;
            Ok(out)
        })
        .await
        .map_err(|e| StoreError::Backend(format!("blocking task: {e}")))?
    }

    /// Runs `f`, which only reads, on a blocking thread.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| StoreError::Backend(format!("blocking task: {e}")))?
    }

    async fn run_store<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    {
        self.run(move |i| f(i).map_err(GatehouseError::from))
            .await
            .map_err(|e| match e {
                GatehouseError::Store(s) => s,
                other => StoreError::Backend(other.to_string()),
            })
    }
}

/// `subject NUL metric NUL start (i64 BE)`: a subject's counters sort together.
fn counter_key(subject: &str, metric: &str, start: i64) -> Vec<u8> {
    let mut k = Vec::with_capacity(subject.len() + metric.len() + 10);
    k.extend_from_slice(subject.as_bytes());
    k.push(0);
    k.extend_from_slice(metric.as_bytes());
    k.push(0);
    k.extend_from_slice(&start.to_be_bytes());
    k
}

fn counter_value(end: i64, value: f64) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&end.to_be_bytes());
    v[8..].copy_from_slice(&value.to_be_bytes());
    v
}

fn read_counter(v: &[u8]) -> Result<(i64, f64), StoreError> {
    let bytes: [u8; 16] = v
        .try_into()
        .map_err(|_| StoreError::Corrupt("limit counter".into()))?;
    Ok((
        i64::from_be_bytes(bytes[..8].try_into().expect("8 bytes")),
        f64::from_be_bytes(bytes[8..].try_into().expect("8 bytes")),
    ))
}

/// `kind NUL name`: a provider's profiles (`provider/…`) sort together.
fn gateway_key(kind: ItemKind, name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(kind.as_str().len() + 1 + name.len());
    k.extend_from_slice(kind.as_str().as_bytes());
    k.push(0);
    k.extend_from_slice(name.as_bytes());
    k
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|e| StoreError::Backend(e.to_string()))
}

fn from_json<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, StoreError> {
    Ok(serde_json::from_slice(b)?)
}

fn name_key(username: &str) -> Vec<u8> {
    username.to_lowercase().into_bytes()
}

/// Big-endian nanoseconds with the sign bit flipped, so keys sort by time
/// (times before 1970 included) and a time range is a key range.
fn usage_time_key(at: OffsetDateTime) -> [u8; 16] {
    ((at.unix_timestamp_nanos() as u128) ^ (1 << 127)).to_be_bytes()
}

/// [`usage_time_key`] of `created_at`, then the id: the claim order.
fn queue_key(t: &TaskRecord) -> Vec<u8> {
    let mut k = Vec::with_capacity(16 + t.id.len());
    k.extend_from_slice(&usage_time_key(t.created_at));
    k.extend_from_slice(t.id.as_bytes());
    k
}

/// Whether a task in this status waits in (or holds a place of) the queue.
fn in_queue(t: &TaskRecord) -> bool {
    matches!(t.status, TaskStatus::Queued | TaskStatus::Running)
}

impl Inner {
    /// Builds the queue index from the tasks once (a home from before it).
    fn index_task_queue(&self) -> Result<(), StoreError> {
        const DONE: &str = "task_queue_indexed";
        if self.meta.contains_key(DONE)? {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        for v in self.tasks.iter().values() {
            let t: TaskRecord = from_json(&v?)?;
            if in_queue(&t) {
                batch.insert(queue_key(&t), &[]);
            }
        }
        self.task_queue.apply_batch(batch)?;
        self.meta.insert(DONE, &[1u8])?;
        self.db.flush()?;
        Ok(())
    }
}

/// The task id, a 0 byte, then the big-endian `seq`: a task's events sort
/// by `seq`, after every key of a task whose id is a prefix of this one.
fn event_key(task_id: &str, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(task_id.len() + 9);
    k.extend_from_slice(task_id.as_bytes());
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The principal, a 0 byte, then the key.
fn idem_key(principal: &str, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(principal.len() + 1 + key.len());
    k.extend_from_slice(principal.as_bytes());
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}

/// Oldest first: `created_at`, then id.
fn sort_tasks(tasks: &mut [TaskRecord]) {
    tasks.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
}

fn store_tx_err(e: TransactionError<StoreError>) -> StoreError {
    match e {
        TransactionError::Abort(s) => s,
        TransactionError::Storage(s) => s.into(),
    }
}

fn tx_err(e: TransactionError<GatehouseError>) -> GatehouseError {
    match e {
        TransactionError::Abort(g) => g,
        TransactionError::Storage(s) => GatehouseError::Store(s.into()),
    }
}

fn abort<T>(
    e: impl Into<GatehouseError>,
) -> Result<T, ConflictableTransactionError<GatehouseError>> {
    Err(ConflictableTransactionError::Abort(e.into()))
}

impl Inner {
    fn get_user(&self, id: &str) -> Result<UserRecord, GatehouseError> {
        match self.users.get(id.as_bytes()).map_err(StoreError::from)? {
            Some(b) => Ok(from_json(&b)?),
            None => Err(GatehouseError::NotFound),
        }
    }

    fn session_keys_of(
        &self,
        user_id: &str,
        end: EndSessions,
    ) -> Result<Vec<sled::IVec>, StoreError> {
        let mut keys = Vec::new();
        for item in self.sessions.iter() {
            let (k, v) = item?;
            let s: SessionRecord = from_json(&v)?;
            if s.user_id == user_id && end != EndSessions::AllBut(s.token_hash) {
                keys.push(k);
            }
        }
        Ok(keys)
    }

    fn token_keys_of(&self, user_id: &str) -> Result<Vec<sled::IVec>, StoreError> {
        let mut keys = Vec::new();
        for item in self.tokens.iter() {
            let (k, v) = item?;
            if from_json::<TokenRecord>(&v)?.user_id == user_id {
                keys.push(k);
            }
        }
        Ok(keys)
    }

    fn get_token(&self, id: &str) -> Result<TokenRecord, GatehouseError> {
        match self.tokens.get(id.as_bytes()).map_err(StoreError::from)? {
            Some(b) => Ok(from_json(&b)?),
            None => Err(GatehouseError::NotFound),
        }
    }

    fn check_user_active(&self, user_id: &str) -> Result<(), GatehouseError> {
        if self.get_user(user_id)?.locked.is_some() {
            return Err(GatehouseError::AccountLocked);
        }
        Ok(())
    }

    fn load_all<T: serde::de::DeserializeOwned>(tree: &Tree) -> Result<Vec<T>, StoreError> {
        tree.iter().values().map(|v| from_json(&v?)).collect()
    }

    /// Writes `user` and removes `ending` sessions in one transaction.
    fn put_user_ending(
        &self,
        user: &UserRecord,
        ending: &[sled::IVec],
    ) -> Result<(), GatehouseError> {
        let bytes = to_json(user)?;
        (&self.users, &self.sessions)
            .transaction(|(users, sessions)| {
                users.insert(user.id.as_bytes(), bytes.as_slice())?;
                for k in ending {
                    sessions.remove(k)?;
                }
                Ok(())
            })
            .map_err(tx_err)
    }

    /// Calls `f` with each usage record matching `q`, oldest first; only
    /// the keys between `since` and `until` are read.
    fn scan_usage(&self, q: &UsageQuery, mut f: impl FnMut(UsageRecord)) -> Result<(), StoreError> {
        if let (Some(since), Some(until)) = (q.since, q.until) {
            if since >= until {
                return Ok(());
            }
        }
        // A key is its 16-byte time then more bytes, so it sorts after its
        // time alone: `since` includes the records at `since`, `until` excludes them.
        let start = q.since.map_or(Bound::Unbounded, |t| {
            Bound::Included(usage_time_key(t).to_vec())
        });
        let end = q.until.map_or(Bound::Unbounded, |t| {
            Bound::Excluded(usage_time_key(t).to_vec())
        });
        for v in self.usage.range::<Vec<u8>, _>((start, end)).values() {
            let r: UsageRecord = from_json(&v?)?;
            if q.matches(&r) {
                f(r);
            }
        }
        Ok(())
    }

    fn sweep(
        tree: &Tree,
        now: OffsetDateTime,
        expires: impl Fn(&[u8]) -> Result<OffsetDateTime, StoreError>,
    ) -> Result<u64, StoreError> {
        let mut n = 0;
        for item in tree.iter() {
            let (k, v) = item?;
            if expires(&v)? < now {
                tree.remove(k)?;
                n += 1;
            }
        }
        Ok(n)
    }
}

#[async_trait]
impl Store for SledStore {
    fn backend(&self) -> &'static str {
        "sled"
    }

    async fn load_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            inner
                .users
                .iter()
                .values()
                .map(|v| from_json(&v?))
                .collect()
        })
        .await
        .map_err(|e| StoreError::Backend(e.to_string()))?
    }

    async fn insert_user(&self, user: UserRecord) -> Result<(), GatehouseError> {
        self.run(move |i| {
            let bytes = to_json(&user)?;
            let key = name_key(&user.username);
            (&i.users, &i.names)
                .transaction(|(users, names)| {
                    if names.get(&key)?.is_some() {
                        return abort(GatehouseError::Conflict(format!("user {}", user.username)));
                    }
                    names.insert(key.as_slice(), user.id.as_bytes())?;
                    users.insert(user.id.as_bytes(), bytes.as_slice())?;
                    Ok(())
                })
                .map_err(tx_err)
        })
        .await
    }

    async fn update_user(
        &self,
        user_id: &str,
        change: UserChange,
        end: Option<EndSessions>,
    ) -> Result<(UserRecord, u64), GatehouseError> {
        let user_id = user_id.to_owned();
        self.run(move |i| {
            let _guard = i.user_lock.lock().unwrap_or_else(|p| p.into_inner());
            let mut user = i.get_user(&user_id)?;
            change.apply(&mut user);
            let ending = match end {
                Some(end) => i.session_keys_of(&user_id, end)?,
                None => Vec::new(),
            };
            i.put_user_ending(&user, &ending)?;
            Ok((user, ending.len() as u64))
        })
        .await
    }

    async fn delete_user(&self, user_id: &str) -> Result<u64, GatehouseError> {
        let user_id = user_id.to_owned();
        self.run(move |i| {
            let _guard = i.user_lock.lock().unwrap_or_else(|p| p.into_inner());
            let user = i.get_user(&user_id)?;
            let ending = i.session_keys_of(&user_id, EndSessions::All)?;
            let tokens = i.token_keys_of(&user_id)?;
            let key = name_key(&user.username);
            (&i.users, &i.names, &i.sessions, &i.tokens)
                .transaction(|(users, names, sessions, tok)| {
                    users.remove(user_id.as_bytes())?;
                    names.remove(key.as_slice())?;
                    for k in &ending {
                        sessions.remove(k)?;
                    }
                    for k in &tokens {
                        tok.remove(k)?;
                    }
                    Ok(())
                })
                .map_err(tx_err)?;
            i.avatars
                .remove(user_id.as_bytes())
                .map_err(StoreError::from)?;
            Ok(ending.len() as u64)
        })
        .await
    }

    async fn load_sessions(&self) -> Result<Vec<SessionRecord>, StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            inner
                .sessions
                .iter()
                .values()
                .map(|v| from_json(&v?))
                .collect()
        })
        .await
        .map_err(|e| StoreError::Backend(e.to_string()))?
    }

    async fn insert_session(&self, session: SessionRecord) -> Result<(), GatehouseError> {
        self.run(move |i| {
            let _guard = i.user_lock.lock().unwrap_or_else(|p| p.into_inner());
            let user = i.get_user(&session.user_id)?;
            if user.locked.is_some() {
                return Err(GatehouseError::AccountLocked);
            }
            i.sessions
                .insert(session.token_hash.0, to_json(&session)?)
                .map_err(StoreError::from)?;
            Ok(())
        })
        .await
    }

    async fn delete_session(&self, hash: TokenHash) -> Result<bool, StoreError> {
        self.run_store(move |i| Ok(i.sessions.remove(hash.0)?.is_some()))
            .await
    }

    async fn delete_user_sessions(
        &self,
        user_id: &str,
        end: EndSessions,
    ) -> Result<u64, StoreError> {
        let user_id = user_id.to_owned();
        self.run_store(move |i| {
            let _guard = i.user_lock.lock().unwrap_or_else(|p| p.into_inner());
            let keys = i.session_keys_of(&user_id, end)?;
            let mut batch = sled::Batch::default();
            for k in &keys {
                batch.remove(k);
            }
            i.sessions.apply_batch(batch)?;
            Ok(keys.len() as u64)
        })
        .await
    }

    async fn touch_sessions(
        &self,
        seen: Vec<(TokenHash, OffsetDateTime)>,
    ) -> Result<(), StoreError> {
        if seen.is_empty() {
            return Ok(());
        }
        self.run_store(move |i| {
            for (hash, at) in seen {
                // Compare-and-swap so a concurrent delete is never undone.
                loop {
                    let Some(old) = i.sessions.get(hash.0)? else {
                        break;
                    };
                    let mut s: SessionRecord = from_json(&old)?;
                    if s.last_seen_at >= at {
                        break;
                    }
                    s.last_seen_at = at;
                    let new = to_json(&s)?;
                    if i.sessions
                        .compare_and_swap(hash.0, Some(old), Some(new))?
                        .is_ok()
                    {
                        break;
                    }
                }
            }
            Ok(())
        })
        .await
    }

    async fn sweep_sessions(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        self.run_store(move |i| {
            Inner::sweep(&i.sessions, now, |v| {
                Ok(from_json::<SessionRecord>(v)?.expires_at)
            })
        })
        .await
    }

    async fn load_tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || Inner::load_all(&inner.tokens))
            .await
            .map_err(|e| StoreError::Backend(e.to_string()))?
    }

    async fn insert_token(&self, token: TokenRecord) -> Result<(), GatehouseError> {
        self.run(move |i| {
            let _guard = i.user_lock.lock().unwrap_or_else(|p| p.into_inner());
            i.check_user_active(&token.user_id)?;
            i.tokens
                .insert(token.id.as_bytes(), to_json(&token)?)
                .map_err(StoreError::from)?;
            Ok(())
        })
        .await
    }

    async fn update_token(
        &self,
        id: &str,
        change: TokenChange,
    ) -> Result<TokenRecord, GatehouseError> {
        let id = id.to_owned();
        self.run(move |i| {
            let _guard = i.user_lock.lock().unwrap_or_else(|p| p.into_inner());
            let mut t = i.get_token(&id)?;
            match change {
                TokenChange::Revoke { at } => {
                    if t.revoked_at.is_none() {
                        t.revoked_at = Some(at);
                    }
                }
            }
            i.tokens
                .insert(id.as_bytes(), to_json(&t)?)
                .map_err(StoreError::from)?;
            Ok(t)
        })
        .await
    }

    async fn rotate_token(
        &self,
        old_id: &str,
        grace_until: OffsetDateTime,
        new: TokenRecord,
    ) -> Result<TokenRecord, GatehouseError> {
        let old_id = old_id.to_owned();
        self.run(move |i| {
            let _guard = i.user_lock.lock().unwrap_or_else(|p| p.into_inner());
            let mut old = i.get_token(&old_id)?;
            i.check_user_active(&old.user_id)?;
            old.grace_until = Some(old.grace_until.map_or(grace_until, |g| g.min(grace_until)));
            let (old_bytes, new_bytes) = (to_json(&old)?, to_json(&new)?);
            i.tokens
                .transaction(|tok| {
                    tok.insert(old.id.as_bytes(), old_bytes.as_slice())?;
                    tok.insert(new.id.as_bytes(), new_bytes.as_slice())?;
                    Ok(())
                })
                .map_err(tx_err)?;
            Ok(old)
        })
        .await
    }

    async fn touch_tokens(&self, used: Vec<(String, OffsetDateTime)>) -> Result<(), StoreError> {
        if used.is_empty() {
            return Ok(());
        }
        self.run_store(move |i| {
            for (id, at) in used {
                loop {
                    let Some(old) = i.tokens.get(id.as_bytes())? else {
                        break;
                    };
                    let mut t: TokenRecord = from_json(&old)?;
                    if t.last_used_at.is_some_and(|l| l >= at) {
                        break;
                    }
                    t.last_used_at = Some(at);
                    let new = to_json(&t)?;
                    if i.tokens
                        .compare_and_swap(id.as_bytes(), Some(old), Some(new))?
                        .is_ok()
                    {
                        break;
                    }
                }
            }
            Ok(())
        })
        .await
    }

    async fn load_signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || Inner::load_all(&inner.keys))
            .await
            .map_err(|e| StoreError::Backend(e.to_string()))?
    }

    async fn insert_signing_key(&self, key: SigningKeyRecord) -> Result<(), StoreError> {
        self.run_store(move |i| {
            // Keys sort by creation time, so the last one is the newest.
            let mut k = (key.created_at.unix_timestamp_nanos() as u128)
                .to_be_bytes()
                .to_vec();
            k.extend_from_slice(key.kid.as_bytes());
            i.keys.insert(k, to_json(&key)?)?;
            Ok(())
        })
        .await
    }

    async fn put_avatar(
        &self,
        user_id: &str,
        content_type: &str,
        data: Vec<u8>,
    ) -> Result<(), GatehouseError> {
        let (user_id, content_type) = (user_id.to_owned(), content_type.to_owned());
        self.run(move |i| {
            let _guard = i.user_lock.lock().unwrap_or_else(|p| p.into_inner());
            i.get_user(&user_id)?;
            // One byte of content-type length, the content type, the image.
            let mut value = Vec::with_capacity(1 + content_type.len() + data.len());
            value.push(content_type.len() as u8);
            value.extend_from_slice(content_type.as_bytes());
            value.extend_from_slice(&data);
            i.avatars
                .insert(user_id.as_bytes(), value)
                .map_err(StoreError::from)?;
            Ok(())
        })
        .await
    }

    async fn get_avatar(&self, user_id: &str) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        let inner = self.inner.clone();
        let user_id = user_id.to_owned();
        tokio::task::spawn_blocking(move || {
            let Some(v) = inner.avatars.get(user_id.as_bytes())? else {
                return Ok(None);
            };
            let n = *v
                .first()
                .ok_or_else(|| StoreError::Corrupt("avatar".into()))? as usize;
            let ct = v
                .get(1..1 + n)
                .ok_or_else(|| StoreError::Corrupt("avatar".into()))?;
            Ok(Some((
                String::from_utf8_lossy(ct).into_owned(),
                v[1 + n..].to_vec(),
            )))
        })
        .await
        .map_err(|e| StoreError::Backend(e.to_string()))?
    }

    async fn insert_oauth_state(&self, state: OAuthState) -> Result<(), StoreError> {
        self.run_store(move |i| {
            i.oauth.insert(state.state.as_bytes(), to_json(&state)?)?;
            Ok(())
        })
        .await
    }

    async fn take_oauth_state(&self, state: &str) -> Result<Option<OAuthState>, StoreError> {
        let state = state.to_owned();
        self.run_store(move |i| match i.oauth.remove(state.as_bytes())? {
            Some(v) => Ok(Some(from_json(&v)?)),
            None => Ok(None),
        })
        .await
    }

    async fn sweep_oauth_states(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        self.run_store(move |i| {
            Inner::sweep(
                &i.oauth,
                now,
                |v| Ok(from_json::<OAuthState>(v)?.expires_at),
            )
        })
        .await
    }

    async fn append_audit(&self, event: AuditEvent) -> Result<(), StoreError> {
        self.run_store(move |i| {
            // Keys sort by time: big-endian nanoseconds, then the random id.
            let mut key = (event.at.unix_timestamp_nanos() as u128)
                .to_be_bytes()
                .to_vec();
            key.extend_from_slice(event.id.as_bytes());
            i.audit.insert(key, to_json(&event)?)?;
            Ok(())
        })
        .await
    }

    async fn list_audit(&self, limit: usize) -> Result<Vec<AuditEvent>, StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            inner
                .audit
                .iter()
                .values()
                .rev()
                .take(limit)
                .map(|v| from_json(&v?))
                .collect()
        })
        .await
        .map_err(|e| StoreError::Backend(e.to_string()))?
    }

    async fn record_usage(&self, batch: Vec<UsageRecord>) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.run_store(move |i| {
            let mut b = sled::Batch::default();
            for mut r in batch {
                r.cost = finite_cost(r.cost);
                // The time, then an id unique in this database, so records
                // at the same time never overwrite each other.
                let mut key = usage_time_key(r.at).to_vec();
                key.extend_from_slice(&i.db.generate_id()?.to_be_bytes());
                b.insert(key, to_json(&r)?);
            }
            i.usage.apply_batch(b)?;
            Ok(())
        })
        .await
    }

    async fn usage_summary(&self, q: UsageQuery) -> Result<Vec<UsageRow>, StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            // By (username, model, user_id): the order of the answer.
            let mut rows: BTreeMap<(String, String, String), UsageRow> = BTreeMap::new();
            inner.scan_usage(&q, |r| {
                let row = rows
                    .entry((r.username.clone(), r.model.clone(), r.user_id.clone()))
                    .or_insert_with(|| UsageRow {
                        user: r.username,
                        user_id: r.user_id,
                        model: r.model,
                        requests: 0,
                        prompt_tokens: 0,
                        completion_tokens: 0,
                        total_tokens: 0,
                        cost: 0.0,
                    });
                row.requests = row.requests.saturating_add(r.requests);
                row.prompt_tokens = row.prompt_tokens.saturating_add(r.prompt_tokens);
                row.completion_tokens = row.completion_tokens.saturating_add(r.completion_tokens);
                row.total_tokens = row
                    .total_tokens
                    .saturating_add(r.prompt_tokens)
                    .saturating_add(r.completion_tokens);
                row.cost += r.cost;
            })?;
            Ok(rows.into_values().collect())
        })
        .await
        .map_err(|e| StoreError::Backend(e.to_string()))?
    }

    async fn usage_buckets(
        &self,
        q: UsageQuery,
        bucket_secs: u64,
    ) -> Result<Vec<UsageBucket>, StoreError> {
        let width = i128::from(bucket_width(bucket_secs)?) * 1_000_000_000;
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            // Bucket start in nanoseconds → (requests, total tokens).
            let mut buckets: BTreeMap<i128, (u64, u64)> = BTreeMap::new();
            inner.scan_usage(&q, |r| {
                let start = r.at.unix_timestamp_nanos().div_euclid(width) * width;
                let b = buckets.entry(start).or_default();
                b.0 = b.0.saturating_add(r.requests);
                b.1 =
                    b.1.saturating_add(r.prompt_tokens)
                        .saturating_add(r.completion_tokens);
            })?;
            buckets
                .into_iter()
                .map(|(start, (requests, total_tokens))| {
                    Ok(UsageBucket {
                        start: OffsetDateTime::from_unix_timestamp_nanos(start)
                            .map_err(|e| StoreError::Backend(format!("usage bucket: {e}")))?,
                        requests,
                        total_tokens,
                    })
                })
                .collect()
        })
        .await
        .map_err(|e| StoreError::Backend(e.to_string()))?
    }

    async fn save_task(
        &self,
        task: TaskRecord,
        events: Vec<TaskEvent>,
        idem: Option<IdempotencyRecord>,
    ) -> Result<SaveTask, StoreError> {
        check_task_events(&task, &events)?;
        self.run_store(move |i| {
            let _guard = i.task_lock.lock().unwrap_or_else(|p| p.into_inner());
            let idem_key = idem.as_ref().map(|r| idem_key(&r.principal, &r.key));
            if let (Some(new), Some(k)) = (&idem, &idem_key) {
                if let Some(v) = i.idempotency.get(k)? {
                    let existing: IdempotencyRecord = from_json(&v)?;
                    if existing.expires_at > new.created_at {
                        return Ok(SaveTask::KeyTaken(existing));
                    }
                }
            }
            let stored = match i.tasks.get(task.id.as_bytes())? {
                Some(v) => Some(from_json::<TaskRecord>(&v)?.version),
                None => None,
            };
            let expected = match stored {
                None => task.version == 1,
                Some(v) => task.version >= 2 && v == task.version - 1,
            };
            if !expected {
                return Ok(SaveTask::Stale);
            }
            let task_bytes = to_json(&task)?;
            let event_bytes = events
                .iter()
                .map(|e| Ok((e.seq, event_key(&e.task_id, e.seq), to_json(e)?)))
                .collect::<Result<Vec<_>, StoreError>>()?;
            let idem_bytes = idem.as_ref().map(to_json).transpose()?;
            let (queue_key, queued) = (queue_key(&task), in_queue(&task));
            (&i.tasks, &i.task_events, &i.idempotency, &i.task_queue)
                .transaction(|(tasks, evs, keys, queue)| {
                    tasks.insert(task.id.as_bytes(), task_bytes.as_slice())?;
                    if queued {
                        queue.insert(queue_key.as_slice(), &[])?;
                    } else {
                        queue.remove(queue_key.as_slice())?;
                    }
                    for (seq, k, v) in &event_bytes {
                        if evs.insert(k.as_slice(), v.as_slice())?.is_some() {
                            // As PostgreSQL's primary key: never overwritten.
                            return Err(ConflictableTransactionError::Abort(StoreError::Backend(
                                format!("save_task: event {seq} of the task exists"),
                            )));
                        }
                    }
                    if let (Some(k), Some(v)) = (&idem_key, &idem_bytes) {
                        keys.insert(k.as_slice(), v.as_slice())?;
                    }
                    Ok(())
                })
                .map_err(store_tx_err)?;
            Ok(SaveTask::Saved)
        })
        .await
    }

    async fn get_task(&self, id: &str) -> Result<Option<TaskRecord>, StoreError> {
        let id = id.to_owned();
        self.read(move |i| match i.tasks.get(id.as_bytes())? {
            Some(v) => Ok(Some(from_json(&v)?)),
            None => Ok(None),
        })
        .await
    }

    async fn load_tasks(&self) -> Result<Vec<TaskRecord>, StoreError> {
        self.read(|i| {
            let mut tasks: Vec<TaskRecord> = Inner::load_all(&i.tasks)?;
            sort_tasks(&mut tasks);
            Ok(tasks)
        })
        .await
    }

    async fn task_events(&self, task_id: &str, after: u64) -> Result<Vec<TaskEvent>, StoreError> {
        let Some(first) = after.checked_add(1) else {
            return Ok(Vec::new());
        };
        let task_id = task_id.to_owned();
        self.read(move |i| {
            // From (id, after + 1) up to the end of the id's 0-separated prefix.
            let start = event_key(&task_id, first);
            let mut end = task_id.into_bytes();
            end.push(1);
            i.task_events
                .range(start..end)
                .values()
                .map(|v| from_json(&v?))
                .collect()
        })
        .await
    }

    async fn get_idempotency(
        &self,
        principal: &str,
        key: &str,
        now: OffsetDateTime,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        let k = idem_key(principal, key);
        self.read(move |i| {
            let Some(v) = i.idempotency.get(k)? else {
                return Ok(None);
            };
            let r: IdempotencyRecord = from_json(&v)?;
            Ok((r.expires_at > now).then_some(r))
        })
        .await
    }

    async fn sweep_idempotency(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        self.run_store(move |i| {
            // Under the task lock, so a live record that replaced an expired
            // one in between is never swept.
            let _guard = i.task_lock.lock().unwrap_or_else(|p| p.into_inner());
            let mut batch = sled::Batch::default();
            let mut n = 0;
            for item in i.idempotency.iter() {
                let (k, v) = item?;
                if from_json::<IdempotencyRecord>(&v)?.expires_at <= now {
                    batch.remove(k);
                    n += 1;
                }
            }
            i.idempotency.apply_batch(batch)?;
            Ok(n)
        })
        .await
    }

    async fn claim_tasks(
        &self,
        instance: &str,
        now: OffsetDateTime,
        until: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let instance = instance.to_owned();
        self.run_store(move |i| {
            let _guard = i.task_lock.lock().unwrap_or_else(|p| p.into_inner());
            // Oldest first, through the queue index: the claimed and
            // running tasks skipped here are few (the instances' slots).
            let mut due = Vec::new();
            for k in i.task_queue.iter().keys() {
                let k = k?;
                let id = k.get(16..).unwrap_or_default();
                let Some(v) = i.tasks.get(id)? else { continue };
                let t: TaskRecord = from_json(&v)?;
                if t.claimable(now) {
                    due.push(t);
                    if due.len() == limit {
                        break;
                    }
                }
            }
            let mut batch = sled::Batch::default();
            for t in &mut due {
                t.claimed_by = Some(instance.clone());
                t.claim_until = Some(until);
                t.version += 1;
                batch.insert(t.id.as_bytes(), to_json(t)?);
            }
            i.tasks.apply_batch(batch)?;
            Ok(due)
        })
        .await
    }

    async fn open_tasks(&self, cap: usize) -> Result<usize, StoreError> {
        self.read(move |i| {
            let mut n = 0;
            for k in i.task_queue.iter().keys().take(cap) {
                k?;
                n += 1;
            }
            Ok(n)
        })
        .await
    }

    async fn check_writable(&self) -> Result<(), StoreError> {
        self.run_store(|i| {
            i.meta
                .insert("ready_probe", &crate::ids::random_bytes::<8>())?;
            Ok(())
        })
        .await
    }

    async fn load_gateway(&self) -> Result<Vec<GatewayItem>, StoreError> {
        self.read(|i| Inner::load_all(&i.gateway)).await
    }

    async fn put_gateway_item(&self, item: GatewayItem) -> Result<bool, StoreError> {
        self.run_store(move |i| {
            let old = i
                .gateway
                .insert(gateway_key(item.kind, &item.name), to_json(&item)?)?;
            Ok(old.is_none())
        })
        .await
    }

    async fn delete_gateway_item(&self, kind: ItemKind, name: &str) -> Result<bool, StoreError> {
        let name = name.to_owned();
        self.run_store(move |i| {
            let mut batch = sled::Batch::default();
            let key = gateway_key(kind, &name);
            let existed = i.gateway.contains_key(&key)?;
            batch.remove(key);
            if kind == ItemKind::Provider {
                let prefix = gateway_key(ItemKind::Profile, &format!("{name}/"));
                for k in i.gateway.scan_prefix(prefix).keys() {
                    batch.remove(k?);
                }
            }
            i.gateway.apply_batch(batch)?;
            Ok(existed)
        })
        .await
    }

    async fn put_gateway_items(&self, items: Vec<GatewayItem>) -> Result<(), StoreError> {
        self.run_store(move |i| {
            let mut batch = sled::Batch::default();
            for item in &items {
                batch.insert(gateway_key(item.kind, &item.name), to_json(item)?);
            }
            i.gateway.apply_batch(batch)?;
            Ok(())
        })
        .await
    }

    // Counters are written without a flush each (sled flushes within half a
    // second): a reservation is on the request path, and a crash loses at
    // most that much counting.
    async fn reserve(&self, draws: Vec<Draw>) -> Result<Reserve, StoreError> {
        self.read(move |i| {
            let _guard = i.limit_lock.lock().unwrap_or_else(|p| p.into_inner());
            let mut batch = sled::Batch::default();
            for (n, d) in draws.iter().enumerate() {
                let key = counter_key(&d.subject, &d.metric, d.start);
                let now = match i.limits.get(&key)? {
                    Some(v) => read_counter(&v)?.1,
                    None => 0.0,
                };
                // Two draws on one counter add up.
                let earlier: f64 = draws[..n]
                    .iter()
                    .filter(|e| {
                        e.subject == d.subject && e.metric == d.metric && e.start == d.start
                    })
                    .map(|e| e.amount)
                    .sum();
                if now + earlier + d.amount > d.limit {
                    return Ok(Reserve::Refused(n));
                }
                batch.insert(key, &counter_value(d.end, now + earlier + d.amount)[..]);
            }
            i.limits.apply_batch(batch)?;
            Ok(Reserve::Granted)
        })
        .await
    }

    async fn adjust(&self, draws: Vec<Draw>) -> Result<(), StoreError> {
        self.read(move |i| {
            let _guard = i.limit_lock.lock().unwrap_or_else(|p| p.into_inner());
            for d in &draws {
                let key = counter_key(&d.subject, &d.metric, d.start);
                let now = match i.limits.get(&key)? {
                    Some(v) => read_counter(&v)?.1,
                    None => 0.0,
                };
                i.limits
                    .insert(key, &counter_value(d.end, (now + d.amount).max(0.0))[..])?;
            }
            Ok(())
        })
        .await
    }

    async fn counters(&self, subject: &str, now: i64) -> Result<Vec<Counter>, StoreError> {
        let subject = subject.to_owned();
        self.read(move |i| {
            let mut prefix = subject.into_bytes();
            prefix.push(0);
            let mut out = Vec::new();
            for item in i.limits.scan_prefix(&prefix) {
                let (k, v) = item?;
                let (end, value) = read_counter(&v)?;
                if end <= now {
                    continue;
                }
                let rest = &k[prefix.len()..];
                let split = rest.len().saturating_sub(9);
                let metric = String::from_utf8_lossy(&rest[..split]).into_owned();
                let start = i64::from_be_bytes(
                    rest[split + 1..]
                        .try_into()
                        .map_err(|_| StoreError::Corrupt("limit counter key".into()))?,
                );
                out.push(Counter {
                    metric,
                    start,
                    end,
                    value,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn sweep_counters(&self, now: i64) -> Result<u64, StoreError> {
        self.run_store(move |i| {
            let _guard = i.limit_lock.lock().unwrap_or_else(|p| p.into_inner());
            let mut n = 0;
            for item in i.limits.iter() {
                let (k, v) = item?;
                if read_counter(&v)?.0 <= now {
                    i.limits.remove(k)?;
                    n += 1;
                }
            }
            Ok(n)
        })
        .await
    }
}
