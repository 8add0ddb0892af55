//! One storage trait, shaped by the domain: each operation is something the
//! gateway does (lock a user and end their sessions, consume an OAuth state),
//! so each backend can make it atomic its own way. Every write returns only
//! once it is durable.

mod pg;
mod sled_store;

pub use pg::{PgOptions, PgStore};
pub use sled_store::SledStore;

use crate::error::{GatehouseError, StoreError};
use crate::ids::TokenHash;
use crate::model::{
    AuditEvent, Counter, Draw, GatewayItem, IdempotencyRecord, ItemKind, OAuthState, Reserve,
    SaveTask, SessionRecord, SigningKeyRecord, TaskEvent, TaskRecord, TokenChange, TokenRecord,
    UsageBucket, UsageQuery, UsageRecord, UsageRow, UserChange, UserRecord,
};
use async_trait::async_trait;
use std::sync::Arc;
use time::OffsetDateTime;

pub type SharedStore = Arc<dyn Store>;

/// What another process sharing the store changed (PostgreSQL
/// `LISTEN/NOTIFY`); `All` after a gap in the feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Users,
    Sessions,
    Tokens,
    Keys,
    /// Providers, profiles, aliases and settings changed at run time.
    Gateway,
    All,
}

/// The change feed as a stream for an actor (`ctx.add_stream`). A lagging
/// reader gets `All` (reload everything) instead of the changes it missed.
pub fn change_stream(
    rx: tokio::sync::broadcast::Receiver<Change>,
) -> impl futures_util::Stream<Item = Change> {
    futures_util::stream::unfold(rx, |mut rx| async move {
        use tokio::sync::broadcast::error::RecvError;
        match rx.recv().await {
            Ok(c) => Some((c, rx)),
            Err(RecvError::Lagged(_)) => Some((Change::All, rx)),
            Err(RecvError::Closed) => None,
        }
    })
}

/// The bucket width both backends use: at least 1 s, at most `i64::MAX` s.
fn bucket_width(bucket_secs: u64) -> Result<i64, StoreError> {
    if bucket_secs == 0 {
        return Err(StoreError::Backend(
            "usage buckets must be at least 1 second".into(),
        ));
    }
    Ok(i64::try_from(bucket_secs).unwrap_or(i64::MAX))
}

/// A cost as stored: a NaN or infinity (which JSON cannot carry) becomes 0.0.
fn finite_cost(cost: f64) -> f64 {
    if cost.is_finite() {
        cost
    } else {
        0.0
    }
}

/// What both backends refuse before `save_task` writes anything: an event
/// of another task (a caller's bug, not a domain answer).
fn check_task_events(task: &TaskRecord, events: &[TaskEvent]) -> Result<(), StoreError> {
    match events.iter().find(|e| e.task_id != task.id) {
        Some(e) => Err(StoreError::Backend(format!(
            "save_task: event {} belongs to another task",
            e.seq
        ))),
        None => Ok(()),
    }
}

/// Which of a user's sessions a credential change ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndSessions {
    All,
    AllBut(TokenHash),
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `sled`, `postgres`, … for `/ready` and logs.
    fn backend(&self) -> &'static str;

    /// Changes other processes make to this store, as they happen; `None`
    /// when no other process writes it (sled admits one process).
    fn changes(&self) -> Option<tokio::sync::broadcast::Receiver<Change>> {
        None
    }

    // --- users -----------------------------------------------------------
    async fn load_users(&self) -> Result<Vec<UserRecord>, StoreError>;
    /// Inserts a new user; `Conflict` when the username (case-insensitive) is taken.
    async fn insert_user(&self, user: UserRecord) -> Result<(), GatehouseError>;
    /// Applies one change to a user under the backend's lock (bumping its
    /// `version`) and ends that user's sessions as asked, atomically.
    async fn update_user(
        &self,
        user_id: &str,
        change: UserChange,
        end: Option<EndSessions>,
    ) -> Result<(UserRecord, u64), GatehouseError>;
    /// Removes a user and everything that hangs on it (sessions, API
    /// tokens), atomically. Returns how many sessions ended.
    async fn delete_user(&self, user_id: &str) -> Result<u64, GatehouseError>;

    // --- sessions --------------------------------------------------------
    async fn load_sessions(&self) -> Result<Vec<SessionRecord>, StoreError>;
    /// Inserts a session; `NotFound` when its user no longer exists, so a
    /// removal racing a sign-in never leaves a session behind.
    async fn insert_session(&self, session: SessionRecord) -> Result<(), GatehouseError>;
    async fn delete_session(&self, hash: TokenHash) -> Result<bool, StoreError>;
    async fn delete_user_sessions(
        &self,
        user_id: &str,
        end: EndSessions,
    ) -> Result<u64, StoreError>;
    /// Records last-seen times in one batch (sessions that are gone are skipped).
    async fn touch_sessions(
        &self,
        seen: Vec<(TokenHash, OffsetDateTime)>,
    ) -> Result<(), StoreError>;
    /// Deletes every session with `expires_at < now`.
    async fn sweep_sessions(&self, now: OffsetDateTime) -> Result<u64, StoreError>;

    // --- API tokens ------------------------------------------------------
    async fn load_tokens(&self) -> Result<Vec<TokenRecord>, StoreError>;
    /// Inserts a token; `NotFound` when its user is gone, `AccountLocked` when locked.
    async fn insert_token(&self, token: TokenRecord) -> Result<(), GatehouseError>;
    async fn update_token(
        &self,
        id: &str,
        change: TokenChange,
    ) -> Result<TokenRecord, GatehouseError>;
    /// Atomically: the old token keeps working until `grace_until`, the new one is stored.
    async fn rotate_token(
        &self,
        old_id: &str,
        grace_until: OffsetDateTime,
        new: TokenRecord,
    ) -> Result<TokenRecord, GatehouseError>;
    /// Records last-use times in one batch (tokens that are gone are skipped).
    async fn touch_tokens(&self, used: Vec<(String, OffsetDateTime)>) -> Result<(), StoreError>;

    // --- token-signing keys ----------------------------------------------
    async fn load_signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError>;
    async fn insert_signing_key(&self, key: SigningKeyRecord) -> Result<(), StoreError>;

    // --- OAuth states ----------------------------------------------------
    async fn insert_oauth_state(&self, state: OAuthState) -> Result<(), StoreError>;
    /// Removes and returns the state: a second call for the same state finds nothing.
    async fn take_oauth_state(&self, state: &str) -> Result<Option<OAuthState>, StoreError>;
    async fn sweep_oauth_states(&self, now: OffsetDateTime) -> Result<u64, StoreError>;

    // --- avatars ---------------------------------------------------------
    /// Stores a user's avatar (replacing the last); `NotFound` when the user is gone.
    /// It goes when the user does.
    async fn put_avatar(
        &self,
        user_id: &str,
        content_type: &str,
        data: Vec<u8>,
    ) -> Result<(), GatehouseError>;
    /// `(content type, bytes)`.
    async fn get_avatar(&self, user_id: &str) -> Result<Option<(String, Vec<u8>)>, StoreError>;

    // --- audit -----------------------------------------------------------
    async fn append_audit(&self, event: AuditEvent) -> Result<(), StoreError>;
    /// Newest first, at most `limit`.
    async fn list_audit(&self, limit: usize) -> Result<Vec<AuditEvent>, StoreError>;

    // --- usage -----------------------------------------------------------
    // Usage history outlives users (a removed user's records stay), and is
    // not cached by actors, so writing it notifies no one.

    /// Appends a batch of usage records atomically (all or none), durable when it returns.
    /// An empty batch is a no-op; a cost that is not finite is stored as 0.0.
    async fn record_usage(&self, batch: Vec<UsageRecord>) -> Result<(), StoreError>;
    /// Totals per (user_id, model) of the records matching `q`, ordered by username then model.
    async fn usage_summary(&self, q: UsageQuery) -> Result<Vec<UsageRow>, StoreError>;
    /// Requests and total tokens per time bucket of `bucket_secs` seconds (aligned to the Unix epoch),
    /// oldest first, only buckets that have records. `bucket_secs` of 0 is an error.
    async fn usage_buckets(
        &self,
        q: UsageQuery,
        bucket_secs: u64,
    ) -> Result<Vec<UsageBucket>, StoreError>;

    // --- tasks and idempotency keys -------------------------------------
    // Tasks are not cached by actors, so writing them notifies no one.

    /// Writes `task` (insert when new, else replace), appends `events`, and, when
    /// given, inserts the idempotency record — all or nothing, durable when it returns.
    /// Refused without writing anything:
    /// - `KeyTaken(existing)` when `idem`'s (principal, key) is already stored (and not expired: an expired one is replaced);
    /// - `Stale` when the stored task's version is not `task.version - 1`
    ///   (for a new task, `task.version` must be 1 and no task with its id may exist).
    ///
    /// "Expired" is as of `idem.created_at` (the request's time), so the store
    /// reads no clock. An event of another task is an error.
    async fn save_task(
        &self,
        task: TaskRecord,
        events: Vec<TaskEvent>,
        idem: Option<IdempotencyRecord>,
    ) -> Result<SaveTask, StoreError>;
    async fn get_task(&self, id: &str) -> Result<Option<TaskRecord>, StoreError>;
    /// Every task, oldest first (created_at, then id).
    async fn load_tasks(&self) -> Result<Vec<TaskRecord>, StoreError>;
    /// The task's events with `seq > after`, in order.
    async fn task_events(&self, task_id: &str, after: u64) -> Result<Vec<TaskEvent>, StoreError>;
    /// The stored response for (principal, key), unless it expired.
    async fn get_idempotency(
        &self,
        principal: &str,
        key: &str,
        now: OffsetDateTime,
    ) -> Result<Option<IdempotencyRecord>, StoreError>;
    /// Deletes idempotency records whose `expires_at` <= now; answers how many.
    async fn sweep_idempotency(&self, now: OffsetDateTime) -> Result<u64, StoreError>;
    /// Claims up to `limit` tasks for `instance`, oldest first: tasks whose status is `queued`
    /// or `running` and that are unclaimed or whose `claim_until` <= now (their instance died).
    /// Sets `claimed_by = instance`, `claim_until = until`, bumps `version`, and answers the
    /// claimed tasks as stored. Atomic: two instances claiming at once never get the same task
    /// (PostgreSQL: one transaction with `SELECT … FOR UPDATE SKIP LOCKED`; sled: one lock).
    async fn claim_tasks(
        &self,
        instance: &str,
        now: OffsetDateTime,
        until: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<TaskRecord>, StoreError>;

    /// How many tasks are `queued` or `running` (the backlog the runners
    /// work through), counting no further than `cap`.
    async fn open_tasks(&self, cap: usize) -> Result<usize, StoreError>;

    // --- run-time gateway settings ---------------------------------------
    /// Every provider, profile, alias and setting added at run time.
    async fn load_gateway(&self) -> Result<Vec<GatewayItem>, StoreError>;
    /// Inserts or replaces one item; `true` when it is new.
    async fn put_gateway_item(&self, item: GatewayItem) -> Result<bool, StoreError>;
    /// Removes one item (a provider with all its profiles, atomically);
    /// `true` when it existed.
    async fn delete_gateway_item(&self, kind: ItemKind, name: &str) -> Result<bool, StoreError>;
    /// Writes every item of `items` (inserting or replacing), all or none:
    /// how a master-key rotation re-seals the profiles.
    async fn put_gateway_items(&self, items: Vec<GatewayItem>) -> Result<(), StoreError>;

    // --- rate limits and budgets ------------------------------------------
    /// Adds every draw's amount to its counter, all or none: `Refused(i)`
    /// (nothing written) when draw `i` would take its counter past its
    /// limit. Atomic against every other caller, in every process sharing
    /// the store, so N instances never grant more than the limit.
    async fn reserve(&self, draws: Vec<Draw>) -> Result<Reserve, StoreError>;
    /// Adds each draw's amount (negative: gives back), never below zero
    /// and without a limit check: settles a reservation with real usage.
    async fn adjust(&self, draws: Vec<Draw>) -> Result<(), StoreError>;
    /// A subject's counters whose window has not ended at `now` (Unix s).
    async fn counters(&self, subject: &str, now: i64) -> Result<Vec<Counter>, StoreError>;
    /// Deletes counters whose window ended at or before `now`.
    async fn sweep_counters(&self, now: i64) -> Result<u64, StoreError>;

    // --- health ----------------------------------------------------------
    /// Writes and flushes a probe record.
    async fn check_writable(&self) -> Result<(), StoreError>;
}
