//! The PostgreSQL backend, shared by several gateway instances.
//!
//! Each table keeps the record as the same JSON the sled backend writes, plus
//! the key columns derived from it that uniqueness, foreign keys, sweeps and
//! ordering need (`actors/migrations/`); usage records are plain columns,
//! which summaries aggregate in SQL, and so are tasks, their events and
//! idempotency keys, which claims and sweeps select on. Every operation runs as one
//! statement or one transaction and returns only after `COMMIT`, which
//! PostgreSQL makes durable (default `synchronous_commit`).
//!
//! Compound operations take row locks in one order, the user before what
//! hangs on it (`FOR SHARE` to add a session or token, `FOR UPDATE` to change
//! or remove the user), so a removal or lock racing a sign-in either sees the
//! new session or makes the sign-in fail. A transaction that PostgreSQL
//! aborts as a deadlock victim or serialization failure is retried.
//!
//! Every wait is bounded ([`PgOptions`]): a free or new connection comes
//! within the connect timeout and an operation ends within the query timeout
//! (also the server's `statement_timeout`), else it fails as
//! [`StoreError::Unavailable`], so a lost database is a quick `503`, not a
//! hang. An operation slower than the slow-query threshold is logged with
//! its `elapsed_ms`.
//!
//! Connections live on a small runtime of their own (one thread), not on the
//! runtime of whichever actix worker first needed one, so a worker or arbiter
//! that stops never takes pooled connections with it.

mod error;
mod gateway;
mod io;
mod limits;
mod listen;
mod migrate;
mod misc;
mod options;
mod sessions;
mod sql;
mod tasks;
mod tokens;
mod usage;
mod users;

#[cfg(test)]
mod tests;

use super::{Change, EndSessions, Store};
use crate::error::{GatehouseError, StoreError};
use crate::ids::TokenHash;
use crate::model::{
    AuditEvent, Counter, Draw, GatewayItem, IdempotencyRecord, ItemKind, OAuthState, Reserve,
    SaveTask, SessionRecord, SigningKeyRecord, TaskEvent, TaskRecord, TokenChange, TokenRecord,
    UsageBucket, UsageQuery, UsageRecord, UsageRow, UserChange, UserRecord,
};
use async_trait::async_trait;
use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime, Transaction,
};
use error::{describe, into_store, redact, Fail};
use io::{IoConnect, IoRuntime};
use migrate::valid_identifier;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use time::OffsetDateTime;

pub use options::PgOptions;

/// Operations that are not bounded by the query timeout.
const UNBOUNDED: &[&str] = &["migrate"];
/// Attempts of a transaction that PostgreSQL aborted as a deadlock victim.
const ATTEMPTS: u32 = 5;

#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    // Dropped first: idle connections close before their runtime stops.
    pool: Pool,
    schema: Option<String>,
    query_timeout: Duration,
    slow: Duration,
    /// Other instances' changes, from the listening connection.
    changes: tokio::sync::broadcast::Sender<Change>,
    /// This store's id in notifications (its own are skipped).
    instance: String,
    channel: String,
    _io: IoRuntime,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("schema", &self.inner.schema)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects, creates the schema if `schema` is given (every pooled
    /// connection then uses `SET search_path TO <schema>`), and applies the
    /// embedded migrations in one transaction under an advisory lock, so two
    /// instances starting together don't race.
    pub async fn connect(url: &str, schema: Option<&str>) -> Result<PgStore, StoreError> {
        let options = PgOptions {
            schema: schema.map(str::to_owned),
            ..Default::default()
        };
        Self::open(url, &options).await
    }

    /// [`PgStore::connect`] with at most `pool_size` connections.
    pub async fn connect_with_pool_size(
        url: &str,
        schema: Option<&str>,
        pool_size: usize,
    ) -> Result<PgStore, StoreError> {
        let options = PgOptions {
            schema: schema.map(str::to_owned),
            pool_size,
            ..Default::default()
        };
        Self::open(url, &options).await
    }

    /// [`PgStore::connect`] with every knob of [`PgOptions`].
    pub async fn open(url: &str, options: &PgOptions) -> Result<PgStore, StoreError> {
        let schema = options.schema.as_deref();
        if let Some(s) = schema {
            if !valid_identifier(s) {
                return Err(StoreError::Backend(format!(
                    "invalid PostgreSQL schema name {s:?}: use [a-z_][a-z0-9_]{{0,62}}"
                )));
            }
        }
        let mut config: tokio_postgres::Config =
            url.parse().map_err(|e: tokio_postgres::Error| {
                StoreError::Backend(redact(url, format!("PostgreSQL URL: {}", describe(&e))))
            })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(options.connect_timeout);
        }
        let connect_timeout = *config
            .get_connect_timeout()
            .unwrap_or(&options.connect_timeout);
        if config.get_application_name().is_none() {
            config.application_name("gatehouse");
        }
        let io = IoRuntime::start()?;
        let connect = IoConnect {
            rt: io.handle.clone(),
            setup: options.session_setup(),
        };
        let listen_config = config.clone();
        let manager = Manager::from_connect(
            config,
            connect,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.connect_timeout))
            .create_timeout(Some(connect_timeout))
            .recycle_timeout(Some(connect_timeout))
            .build()
            .map_err(|e| StoreError::Backend(format!("PostgreSQL pool: {e}")))?;
        let (changes, _) = tokio::sync::broadcast::channel(1024);
        let instance = crate::ids::random_id();
        let channel = listen::channel(schema);
        io.handle.spawn(listen::listen(
            listen_config,
            channel.clone(),
            instance.clone(),
            changes.clone(),
            connect_timeout.max(options.query_timeout),
        ));
        let store = PgStore {
            inner: Arc::new(Inner {
                pool,
                schema: schema.map(str::to_owned),
                query_timeout: options.query_timeout,
                slow: options.slow,
                changes,
                instance,
                channel,
                _io: io,
            }),
        };
        migrate::migrate(&store)
            .await
            .map_err(|e| match into_store(e) {
                StoreError::Backend(m) => StoreError::Backend(redact(url, m)),
                StoreError::Unavailable(m) => StoreError::Unavailable(redact(url, m)),
                other => other,
            })?;
        Ok(store)
    }

    /// The migration versions applied to this database (schema), in order.
    pub async fn applied_migrations(&self) -> Result<Vec<i32>, StoreError> {
        self.one("applied_migrations", &(), |c, _| {
            Box::pin(async move {
                let rows = c
                    .query(
                        "SELECT version FROM schema_migrations ORDER BY version",
                        &[],
                    )
                    .await?;
                Ok(rows.iter().map(|r| r.get::<_, i32>(0)).collect())
            })
        })
        .await
        .map_err(into_store)
    }

    /// Drops the schema (`CASCADE`): for tests. Refuses when the store was
    /// opened without a schema of its own.
    pub async fn drop_schema(&self) -> Result<(), StoreError> {
        let Some(schema) = self.inner.schema.clone() else {
            return Err(StoreError::Backend(
                "drop_schema: this store has no schema of its own".into(),
            ));
        };
        let sql = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
        self.one("drop_schema", &sql, |c, sql| {
            Box::pin(async move {
                c.batch_execute(sql).await?;
                Ok(())
            })
        })
        .await
        .map_err(into_store)
    }

    /// Tells the other instances what changed (after the write committed).
    /// A lost notification is made good by their periodic resync.
    async fn notify(&self, topics: &[Change]) {
        let names: Vec<&str> = topics.iter().map(|c| listen::topic(*c)).collect();
        let args = (
            self.inner.channel.clone(),
            format!("{} {}", self.inner.instance, names.join(",")),
        );
        let sent = self
            .one("notify", &args, |c, (channel, payload)| {
                Box::pin(async move {
                    c.execute("SELECT pg_notify($1, $2)", &[channel, payload])
                        .await?;
                    Ok(())
                })
            })
            .await;
        if let Err(e) = sent {
            tracing::warn!(error = %e, "change notification not sent; other instances resync shortly");
        }
    }

    /// A pooled connection: a free one, or a new one while the pool has
    /// room, each wait bounded by the connect timeout.
    async fn client(&self) -> Result<Object, Fail> {
        self.inner.pool.get().await.map_err(|e| match e {
            PoolError::Backend(e) => Fail::Db(e),
            PoolError::Timeout(_) => Fail::Unavailable("no PostgreSQL connection in time".into()),
            other => Fail::Backend(format!("PostgreSQL pool: {other}")),
        })
    }

    /// `work` (on a pooled connection), bounded by the query timeout unless
    /// `op` is unbounded; `None` when it overran.
    async fn within<T>(
        &self,
        op: &'static str,
        work: impl Future<Output = Result<T, Fail>>,
    ) -> Option<Result<T, Fail>> {
        if UNBOUNDED.contains(&op) {
            return Some(work.await);
        }
        tokio::time::timeout(self.inner.query_timeout, work)
            .await
            .ok()
    }

    /// Closes a connection whose operation overran instead of giving it back
    /// to the pool (a statement may still run on it, or the network is gone).
    fn overran(&self, op: &'static str, client: Object) -> Fail {
        drop(Object::take(client));
        let ms = self.inner.query_timeout.as_millis();
        tracing::warn!(
            op,
            timeout_ms = ms as u64,
            "PostgreSQL store operation timed out; its connection is closed"
        );
        Fail::Unavailable(format!("PostgreSQL did not answer within {ms} ms"))
    }

    /// Runs `f` in one transaction and commits, retrying when PostgreSQL
    /// picks it as a deadlock victim (or a serialization failure). `f` takes
    /// its data through `args` so it can run again.
    async fn tx<A, T, F>(&self, op: &'static str, args: &A, f: F) -> Result<T, GatehouseError>
    where
        A: Sync + ?Sized,
        T: Send,
        F: for<'c> Fn(&'c Transaction<'c>, &'c A) -> BoxFut<'c, Result<T, Fail>> + Send + Sync,
    {
        self.tx_with(op, args, f, TxEnd::Commit).await
    }

    /// [`PgStore::tx`] where `f` also decides how the transaction ends: a
    /// refusal found after some writes rolls them back and still answers.
    async fn tx_ending<A, T, F>(
        &self,
        op: &'static str,
        args: &A,
        f: F,
    ) -> Result<T, GatehouseError>
    where
        A: Sync + ?Sized,
        T: Send,
        F: for<'c> Fn(&'c Transaction<'c>, &'c A) -> BoxFut<'c, Result<TxEnd<T>, Fail>>
            + Send
            + Sync,
    {
        self.tx_with(op, args, f, |end| end).await
    }

    async fn tx_with<A, R, T, F, E>(
        &self,
        op: &'static str,
        args: &A,
        f: F,
        end: E,
    ) -> Result<T, GatehouseError>
    where
        A: Sync + ?Sized,
        T: Send,
        F: for<'c> Fn(&'c Transaction<'c>, &'c A) -> BoxFut<'c, Result<R, Fail>> + Send + Sync,
        E: Fn(R) -> TxEnd<T> + Send + Sync,
    {
        self.timed(op, async {
            let mut attempt = 1;
            loop {
                let out = async {
                    let mut client = self.client().await?;
                    let work = async {
                        let t = client.transaction().await?;
                        match f(&t, args).await.map(&end) {
                            Ok(TxEnd::Commit(v)) => {
                                t.commit().await?;
                                Ok(v)
                            }
                            Ok(TxEnd::Rollback(v)) => {
                                t.rollback().await?;
                                Ok(v)
                            }
                            Err(e) => {
                                let _ = t.rollback().await;
                                Err(e)
                            }
                        }
                    };
                    let done = self.within(op, work).await;
                    done.unwrap_or_else(|| Err(self.overran(op, client)))
                }
                .await;
                match out {
                    Err(e) if e.retryable() && attempt < ATTEMPTS => {
                        tracing::debug!(op, attempt, "PostgreSQL transaction retried");
                        tokio::time::sleep(Duration::from_millis(5 * u64::from(attempt))).await;
                        attempt += 1;
                    }
                    other => return other.map_err(Fail::into_gatehouse),
                }
            }
        })
        .await
    }

    /// Runs `f` (one statement, atomic by itself) on a pooled connection.
    async fn one<A, T, F>(&self, op: &'static str, args: &A, f: F) -> Result<T, GatehouseError>
    where
        A: Sync + ?Sized,
        T: Send,
        F: for<'c> Fn(&'c Object, &'c A) -> BoxFut<'c, Result<T, Fail>> + Send + Sync,
    {
        self.timed(op, async {
            let mut attempt = 1;
            loop {
                let out = async {
                    let client = self.client().await?;
                    let done = self.within(op, f(&client, args)).await;
                    done.unwrap_or_else(|| Err(self.overran(op, client)))
                }
                .await;
                match out {
                    Err(e) if e.retryable() && attempt < ATTEMPTS => {
                        tokio::time::sleep(Duration::from_millis(5 * u64::from(attempt))).await;
                        attempt += 1;
                    }
                    other => return other.map_err(Fail::into_gatehouse),
                }
            }
        })
        .await
    }
}

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How a transaction of [`PgStore::tx_ending`] ends, with its answer.
pub(super) enum TxEnd<T> {
    Commit(T),
    Rollback(T),
}

impl PgStore {
    /// Runs `fut`, logging it (by name, never with its data) when it took
    /// longer than the slow-query threshold.
    async fn timed<T>(&self, op: &'static str, fut: impl Future<Output = T>) -> T {
        let start = Instant::now();
        let out = fut.await;
        let elapsed = start.elapsed();
        if elapsed > self.inner.slow {
            tracing::warn!(
                op,
                elapsed_ms = elapsed.as_millis() as u64,
                threshold_ms = self.inner.slow.as_millis() as u64,
                "slow PostgreSQL store operation"
            );
        }
        out
    }
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn changes(&self) -> Option<tokio::sync::broadcast::Receiver<Change>> {
        Some(self.inner.changes.subscribe())
    }

    // --- users -----------------------------------------------------------

    async fn load_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        users::load_users(self).await
    }

    async fn insert_user(&self, user: UserRecord) -> Result<(), GatehouseError> {
        users::insert_user(self, user).await?;
        self.notify(&[Change::Users]).await;
        Ok(())
    }

    async fn update_user(
        &self,
        user_id: &str,
        change: UserChange,
        end: Option<EndSessions>,
    ) -> Result<(UserRecord, u64), GatehouseError> {
        let out = users::update_user(self, user_id, change, end).await?;
        self.notify(&[Change::Users, Change::Sessions]).await;
        Ok(out)
    }

    async fn delete_user(&self, user_id: &str) -> Result<u64, GatehouseError> {
        let out = users::delete_user(self, user_id).await?;
        self.notify(&[Change::Users, Change::Sessions, Change::Tokens])
            .await;
        Ok(out)
    }

    // --- sessions --------------------------------------------------------

    async fn load_sessions(&self) -> Result<Vec<SessionRecord>, StoreError> {
        sessions::load_sessions(self).await
    }

    async fn insert_session(&self, session: SessionRecord) -> Result<(), GatehouseError> {
        sessions::insert_session(self, session).await?;
        self.notify(&[Change::Sessions]).await;
        Ok(())
    }

    async fn delete_session(&self, h: TokenHash) -> Result<bool, StoreError> {
        let out = sessions::delete_session(self, h).await?;
        self.notify(&[Change::Sessions]).await;
        Ok(out)
    }

    async fn delete_user_sessions(
        &self,
        user_id: &str,
        end: EndSessions,
    ) -> Result<u64, StoreError> {
        let out = sessions::delete_user_sessions(self, user_id, end).await?;
        self.notify(&[Change::Sessions]).await;
        Ok(out)
    }

    async fn touch_sessions(
        &self,
        seen: Vec<(TokenHash, OffsetDateTime)>,
    ) -> Result<(), StoreError> {
        sessions::touch_sessions(self, seen).await
    }

    async fn sweep_sessions(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        let out = sessions::sweep_sessions(self, now).await?;
        if out > 0 {
            self.notify(&[Change::Sessions]).await;
        }
        Ok(out)
    }

    // --- API tokens ------------------------------------------------------

    async fn load_tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        tokens::load_tokens(self).await
    }

    async fn insert_token(&self, token: TokenRecord) -> Result<(), GatehouseError> {
        tokens::insert_token(self, token).await?;
        self.notify(&[Change::Tokens]).await;
        Ok(())
    }

    async fn update_token(
        &self,
        id: &str,
        change: TokenChange,
    ) -> Result<TokenRecord, GatehouseError> {
        let out = tokens::update_token(self, id, change).await?;
        self.notify(&[Change::Tokens]).await;
        Ok(out)
    }

    async fn rotate_token(
        &self,
        old_id: &str,
        grace_until: OffsetDateTime,
        new: TokenRecord,
    ) -> Result<TokenRecord, GatehouseError> {
        let out = tokens::rotate_token(self, old_id, grace_until, new).await?;
        self.notify(&[Change::Tokens]).await;
        Ok(out)
    }

    async fn touch_tokens(&self, used: Vec<(String, OffsetDateTime)>) -> Result<(), StoreError> {
        tokens::touch_tokens(self, used).await
    }

    // --- token-signing keys ----------------------------------------------

    async fn load_signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError> {
        tokens::load_signing_keys(self).await
    }

    async fn insert_signing_key(&self, key: SigningKeyRecord) -> Result<(), StoreError> {
        tokens::insert_signing_key(self, key).await?;
        self.notify(&[Change::Keys]).await;
        Ok(())
    }

    // --- avatars ---------------------------------------------------------

    async fn put_avatar(
        &self,
        user_id: &str,
        content_type: &str,
        data: Vec<u8>,
    ) -> Result<(), GatehouseError> {
        misc::put_avatar(self, user_id, content_type, data).await
    }

    async fn get_avatar(&self, user_id: &str) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        misc::get_avatar(self, user_id).await
    }

    // --- OAuth states ----------------------------------------------------

    async fn insert_oauth_state(&self, state: OAuthState) -> Result<(), StoreError> {
        sessions::insert_oauth_state(self, state).await
    }

    async fn take_oauth_state(&self, state: &str) -> Result<Option<OAuthState>, StoreError> {
        sessions::take_oauth_state(self, state).await
    }

    async fn sweep_oauth_states(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        sessions::sweep_oauth_states(self, now).await
    }

    // --- audit -----------------------------------------------------------

    async fn append_audit(&self, event: AuditEvent) -> Result<(), StoreError> {
        misc::append_audit(self, event).await
    }

    async fn list_audit(&self, limit: usize) -> Result<Vec<AuditEvent>, StoreError> {
        misc::list_audit(self, limit).await
    }

    // --- usage (not cached by actors: no notification) -------------------

    async fn record_usage(&self, batch: Vec<UsageRecord>) -> Result<(), StoreError> {
        usage::record_usage(self, batch).await
    }

    async fn usage_summary(&self, q: UsageQuery) -> Result<Vec<UsageRow>, StoreError> {
        usage::usage_summary(self, q).await
    }

    async fn usage_buckets(
        &self,
        q: UsageQuery,
        bucket_secs: u64,
    ) -> Result<Vec<UsageBucket>, StoreError> {
        usage::usage_buckets(self, q, bucket_secs).await
    }

    // --- tasks and idempotency keys (not cached by actors: no notification)

    async fn save_task(
        &self,
        task: TaskRecord,
        events: Vec<TaskEvent>,
        idem: Option<IdempotencyRecord>,
    ) -> Result<SaveTask, StoreError> {
        tasks::save_task(self, task, events, idem).await
    }

    async fn get_task(&self, id: &str) -> Result<Option<TaskRecord>, StoreError> {
        tasks::get_task(self, id).await
    }

    async fn load_tasks(&self) -> Result<Vec<TaskRecord>, StoreError> {
        tasks::load_tasks(self).await
    }

    async fn task_events(&self, task_id: &str, after: u64) -> Result<Vec<TaskEvent>, StoreError> {
        tasks::task_events(self, task_id, after).await
    }

    async fn get_idempotency(
        &self,
        principal: &str,
        key: &str,
        now: OffsetDateTime,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        tasks::get_idempotency(self, principal, key, now).await
    }

    async fn sweep_idempotency(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        tasks::sweep_idempotency(self, now).await
    }

    async fn claim_tasks(
        &self,
        instance: &str,
        now: OffsetDateTime,
        until: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        tasks::claim_tasks(self, instance, now, until, limit).await
    }

    async fn open_tasks(&self, cap: usize) -> Result<usize, StoreError> {
        tasks::open_tasks(self, cap).await
    }

    // --- run-time gateway settings ---------------------------------------

    async fn load_gateway(&self) -> Result<Vec<GatewayItem>, StoreError> {
        gateway::load_gateway(self).await
    }

    async fn put_gateway_item(&self, item: GatewayItem) -> Result<bool, StoreError> {
        let out = gateway::put_gateway_item(self, item).await?;
        self.notify(&[Change::Gateway]).await;
        Ok(out)
    }

    async fn delete_gateway_item(&self, kind: ItemKind, name: &str) -> Result<bool, StoreError> {
        let out = gateway::delete_gateway_item(self, kind, name).await?;
        self.notify(&[Change::Gateway]).await;
        Ok(out)
    }

    async fn put_gateway_items(&self, items: Vec<GatewayItem>) -> Result<(), StoreError> {
        gateway::put_gateway_items(self, items).await?;
        self.notify(&[Change::Gateway]).await;
        Ok(())
    }

    // --- rate limits and budgets ------------------------------------------

    async fn reserve(&self, draws: Vec<Draw>) -> Result<Reserve, StoreError> {
        limits::reserve(self, draws).await
    }

    async fn adjust(&self, draws: Vec<Draw>) -> Result<(), StoreError> {
        limits::adjust(self, draws).await
    }

    async fn counters(&self, subject: &str, now: i64) -> Result<Vec<Counter>, StoreError> {
        limits::counters(self, subject, now).await
    }

    async fn sweep_counters(&self, now: i64) -> Result<u64, StoreError> {
        limits::sweep_counters(self, now).await
    }

    // --- health ----------------------------------------------------------

    async fn check_writable(&self) -> Result<(), StoreError> {
        misc::check_writable(self).await
    }
}
