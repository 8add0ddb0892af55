//! The PostgreSQL backend, shared by several gateway instances.
//!
//! Each table keeps the record as the same JSON the sled backend writes, plus
//! the key columns derived from it that uniqueness, foreign keys, sweeps and
//! ordering need (`actors/migrations/`). Every operation runs as one
//! statement or one transaction and returns only after `COMMIT`, which
//! PostgreSQL makes durable (default `synchronous_commit`).
//!
//! Compound operations take row locks in one order, the user before what
//! hangs on it (`FOR SHARE` to add a session or token, `FOR UPDATE` to change
//! or remove the user), so a removal or lock racing a sign-in either sees the
//! new session or makes the sign-in fail. A transaction that PostgreSQL
//! aborts as a deadlock victim or serialization failure is retried.
//!
//! Connections live on a small runtime of their own (one thread), not on the
//! runtime of whichever actix worker first needed one, so a worker or arbiter
//! that stops never takes pooled connections with it.

use super::{EndSessions, Store};
use crate::error::{GatehouseError, StoreError};
use crate::ids::TokenHash;
use crate::model::{
    AuditEvent, OAuthState, SessionRecord, SigningKeyRecord, TokenChange, TokenRecord, UserChange,
    UserRecord,
};
use async_trait::async_trait;
use deadpool_postgres::{
    Connect, GenericClient, Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod,
    Runtime, Transaction,
};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use time::OffsetDateTime;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{to_sql_checked, FromSql, IsNull, ToSql, Type};
use tokio_postgres::{NoTls, Row};

/// Connections a store keeps at most.
pub const DEFAULT_POOL_SIZE: usize = 16;

/// An operation slower than this is logged (by name, never with its data).
const SLOW: Duration = Duration::from_millis(200);
/// How long a caller waits for a free connection, and for a new one.
const POOL_WAIT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts of a transaction that PostgreSQL aborted as a deadlock victim.
const ATTEMPTS: u32 = 5;

/// The embedded migrations, applied in order; a version is never edited once
/// released, only followed by a new one.
const MIGRATIONS: &[(i32, &str)] = &[(1, include_str!("../../migrations/0001_init.sql"))];

#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    // Dropped first: idle connections close before their runtime stops.
    pool: Pool,
    schema: Option<String>,
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
        Self::connect_with_pool_size(url, schema, DEFAULT_POOL_SIZE).await
    }

    /// [`PgStore::connect`] with at most `pool_size` connections.
    pub async fn connect_with_pool_size(
        url: &str,
        schema: Option<&str>,
        pool_size: usize,
    ) -> Result<PgStore, StoreError> {
        if let Some(s) = schema {
            if !valid_identifier(s) {
                return Err(StoreError::Backend(format!(
                    "invalid PostgreSQL schema name {s:?}: use [a-z_][a-z0-9_]{{0,62}}"
                )));
            }
        }
        let mut config: tokio_postgres::Config =
            url.parse().map_err(|e: tokio_postgres::Error| {
                redact(url, format!("PostgreSQL URL: {}", describe(&e)))
            })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("gatehouse");
        }
        let io = IoRuntime::start()?;
        let connect = IoConnect {
            rt: io.handle.clone(),
            search_path: schema.map(|s| format!("SET search_path TO \"{s}\"")),
        };
        let manager = Manager::from_connect(
            config,
            connect,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| StoreError::Backend(format!("PostgreSQL pool: {e}")))?;
        let store = PgStore {
            inner: Arc::new(Inner {
                pool,
                schema: schema.map(str::to_owned),
                _io: io,
            }),
        };
        store.migrate().await.map_err(|e| match into_store(e) {
            StoreError::Backend(m) => redact(url, m),
            other => other,
        })?;
        Ok(store)
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

    async fn migrate(&self) -> Result<(), GatehouseError> {
        let key = advisory_key(self.inner.schema.as_deref().unwrap_or(""));
        let args = (key, self.inner.schema.clone());
        self.tx("migrate", &args, |t, (key, schema)| {
            Box::pin(async move {
                t.execute("SELECT pg_advisory_xact_lock($1)", &[key])
                    .await?;
                if let Some(s) = schema {
                    t.batch_execute(&format!(
                        "CREATE SCHEMA IF NOT EXISTS \"{s}\"; SET LOCAL search_path TO \"{s}\""
                    ))
                    .await?;
                }
                t.batch_execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations (\
                       version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
                )
                .await?;
                let applied: Vec<i32> = t
                    .query("SELECT version FROM schema_migrations", &[])
                    .await?
                    .iter()
                    .map(|r| r.try_get(0))
                    .collect::<Result<_, _>>()?;
                for (version, sql) in MIGRATIONS {
                    if applied.contains(version) {
                        continue;
                    }
                    t.batch_execute(sql).await?;
                    t.execute(
                        "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, now())",
                        &[version],
                    )
                    .await?;
                    tracing::info!(version, "applied PostgreSQL store migration");
                }
                let known = MIGRATIONS.last().map_or(0, |m| m.0);
                if let Some(newer) = applied.iter().copied().filter(|v| *v > known).max() {
                    tracing::warn!(
                        newer,
                        known,
                        "the PostgreSQL store was migrated by a newer gatehouse"
                    );
                }
                Ok(())
            })
        })
        .await
    }

    async fn client(&self) -> Result<Object, Fail> {
        self.inner.pool.get().await.map_err(|e| match e {
            PoolError::Backend(e) => Fail::Db(e),
            PoolError::Timeout(_) => {
                Fail::Backend("timed out waiting for a PostgreSQL connection".into())
            }
            other => Fail::Backend(format!("PostgreSQL pool: {other}")),
        })
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
        timed(op, async {
            let mut attempt = 1;
            loop {
                let out = async {
                    let mut client = self.client().await?;
                    let t = client.transaction().await?;
                    match f(&t, args).await {
                        Ok(v) => {
                            t.commit().await?;
                            Ok(v)
                        }
                        Err(e) => {
                            let _ = t.rollback().await;
                            Err(e)
                        }
                    }
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
        timed(op, async {
            let mut attempt = 1;
            loop {
                let out = async {
                    let client = self.client().await?;
                    f(&client, args).await
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

async fn timed<T>(op: &'static str, fut: impl Future<Output = T>) -> T {
    let start = Instant::now();
    let out = fut.await;
    let elapsed = start.elapsed();
    if elapsed > SLOW {
        tracing::warn!(
            op,
            elapsed_ms = elapsed.as_millis() as u64,
            "slow PostgreSQL store operation"
        );
    }
    out
}

// --- errors ---------------------------------------------------------------

/// A failure inside an operation: kept as the driver's error until the end,
/// so a deadlock can be told apart and retried.
enum Fail {
    Db(tokio_postgres::Error),
    Backend(String),
    App(GatehouseError),
}

impl From<tokio_postgres::Error> for Fail {
    fn from(e: tokio_postgres::Error) -> Self {
        Fail::Db(e)
    }
}

impl From<GatehouseError> for Fail {
    fn from(e: GatehouseError) -> Self {
        Fail::App(e)
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        Fail::App(GatehouseError::Store(e))
    }
}

impl Fail {
    fn retryable(&self) -> bool {
        matches!(self, Fail::Db(e) if matches!(
            e.code(),
            Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE
        ))
    }

    fn into_gatehouse(self) -> GatehouseError {
        match self {
            Fail::Db(e) => GatehouseError::Store(StoreError::Backend(describe(&e))),
            Fail::Backend(m) => GatehouseError::Store(StoreError::Backend(m)),
            Fail::App(e) => e,
        }
    }
}

/// The driver's error for logs: the SQLSTATE and message of a server error
/// (not its DETAIL, which can quote row data), or the kind and cause of a
/// client-side one. Neither carries the connection URL or a password.
fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!(
            "PostgreSQL {} {}: {}",
            db.severity(),
            db.code().code(),
            db.message()
        );
    }
    match std::error::Error::source(e) {
        Some(cause) => format!("PostgreSQL: {e}: {cause}"),
        None => format!("PostgreSQL: {e}"),
    }
}

fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

fn into_store(e: GatehouseError) -> StoreError {
    match e {
        GatehouseError::Store(s) => s,
        other => StoreError::Backend(other.to_string()),
    }
}

/// Belt and braces: no message built while connecting repeats the URL or
/// its password, even if a driver message ever quoted them.
fn redact(url: &str, msg: String) -> StoreError {
    let mut msg = msg;
    if !url.is_empty() {
        msg = msg.replace(url, "<url>");
    }
    if let Ok(config) = url.parse::<tokio_postgres::Config>() {
        if let Some(pw) = config.get_password().filter(|p| !p.is_empty()) {
            if let Ok(pw) = std::str::from_utf8(pw) {
                msg = msg.replace(pw, "***");
            }
        }
    }
    StoreError::Backend(msg)
}

// --- schema names, locks ---------------------------------------------------

/// `[a-z_][a-z0-9_]{0,62}`: safe to quote into SQL.
fn valid_identifier(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && (b[0].is_ascii_lowercase() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}

/// The advisory-lock key that serialises migrations of one schema (FNV-1a).
fn advisory_key(schema: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in "gatehouse:migrate:".bytes().chain(schema.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h as i64
}

// --- the connections' own runtime -------------------------------------------

/// One thread running a current-thread runtime for connection I/O. It stops
/// when the store is dropped.
struct IoRuntime {
    handle: tokio::runtime::Handle,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl IoRuntime {
    fn start() -> Result<Self, StoreError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = rt.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("gatehouse-pg-io".into())
            .spawn(move || {
                let _ = rt.block_on(stopped);
            })?;
        Ok(IoRuntime {
            handle,
            _stop: stop,
        })
    }
}

/// Opens connections on the I/O runtime and points them at the schema.
struct IoConnect {
    rt: tokio::runtime::Handle,
    search_path: Option<String>,
}

impl Connect for IoConnect {
    fn connect(
        &self,
        pg_config: &tokio_postgres::Config,
    ) -> BoxFut<
        '_,
        Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), tokio_postgres::Error>,
    > {
        let config = pg_config.clone();
        let rt = self.rt.clone();
        let search_path = self.search_path.clone();
        Box::pin(async move {
            let spawner = rt.clone();
            let opened = rt
                .spawn(async move {
                    let (client, connection) = config.connect(NoTls).await?;
                    let task = spawner.spawn(async move {
                        if let Err(e) = connection.await {
                            tracing::warn!(error = %describe(&e), "PostgreSQL connection ended");
                        }
                    });
                    if let Some(sql) = search_path {
                        if let Err(e) = client.batch_execute(&sql).await {
                            task.abort();
                            return Err(e);
                        }
                    }
                    Ok((client, task))
                })
                .await;
            match opened {
                Ok(r) => r,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                // The runtime lives as long as the pool that calls this, so
                // this is not expected; answer with a driver error all the same.
                Err(_) => Err(tokio_postgres::Config::new()
                    .connect(NoTls)
                    .await
                    .err()
                    .expect("a configuration without a host does not connect")),
            }
        })
    }
}

// --- parameters and records --------------------------------------------------

/// A parameter whose value stays out of the driver's debug log (token hashes,
/// OAuth states, whole records).
struct Hidden<T>(T);

impl<T> std::fmt::Debug for Hidden<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl<T: ToSql> ToSql for Hidden<T> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        self.0.to_sql(ty, out)
    }

    fn accepts(ty: &Type) -> bool {
        T::accepts(ty)
    }

    to_sql_checked!();
}

/// A record serialised up front, sent as `jsonb`.
struct JsonOut(Vec<u8>);

impl std::fmt::Debug for JsonOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<json {} bytes>", self.0.len())
    }
}

impl ToSql for JsonOut {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        if *ty == Type::JSONB {
            out.extend_from_slice(&[1]);
        }
        out.extend_from_slice(&self.0);
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB || *ty == Type::JSON
    }

    to_sql_checked!();
}

/// A `jsonb` column's text, borrowed from the row.
struct JsonIn<'a>(&'a [u8]);

impl<'a> FromSql<'a> for JsonIn<'a> {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        if *ty == Type::JSONB {
            match raw.split_first() {
                Some((1, rest)) => Ok(JsonIn(rest)),
                _ => Err("unsupported jsonb version".into()),
            }
        } else {
            Ok(JsonIn(raw))
        }
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB || *ty == Type::JSON
    }
}

fn json<T: serde::Serialize>(v: &T) -> Result<JsonOut, StoreError> {
    // As the sled backend: a record that does not serialise is a backend error.
    serde_json::to_vec(v)
        .map(JsonOut)
        .map_err(|e| StoreError::Backend(e.to_string()))
}

fn record<T: serde::de::DeserializeOwned>(row: &Row, idx: usize) -> Result<T, Fail> {
    let raw: JsonIn<'_> = row.try_get(idx)?;
    Ok(serde_json::from_slice(raw.0).map_err(StoreError::from)?)
}

fn records<T: serde::de::DeserializeOwned>(rows: &[Row]) -> Result<Vec<T>, Fail> {
    rows.iter().map(|r| record(r, 0)).collect()
}

fn hash(h: &TokenHash) -> Hidden<&[u8]> {
    Hidden(&h.0[..])
}

async fn query<C: GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, Fail> {
    let st = c.prepare_cached(sql).await?;
    Ok(c.query(&st, params).await?)
}

async fn query_opt<C: GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Option<Row>, Fail> {
    let st = c.prepare_cached(sql).await?;
    Ok(c.query_opt(&st, params).await?)
}

async fn execute<C: GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, Fail> {
    let st = c.prepare_cached(sql).await?;
    Ok(c.execute(&st, params).await?)
}

/// The user, read under `lock` (`FOR SHARE` or `FOR UPDATE`); `NotFound` when gone.
async fn locked_user(t: &Transaction<'_>, id: &str, lock: Lock) -> Result<UserRecord, Fail> {
    let sql = match lock {
        Lock::Share => "SELECT record FROM users WHERE id = $1 FOR SHARE",
        Lock::Update => "SELECT record FROM users WHERE id = $1 FOR UPDATE",
    };
    match query_opt(t, sql, &[&id]).await? {
        Some(row) => record(&row, 0),
        None => Err(GatehouseError::NotFound.into()),
    }
}

/// As the sled backend's `check_user_active`: `NotFound` or `AccountLocked`.
/// Holds the user `FOR SHARE` until the transaction ends.
async fn check_user_active(t: &Transaction<'_>, id: &str) -> Result<(), Fail> {
    if locked_user(t, id, Lock::Share).await?.locked.is_some() {
        return Err(GatehouseError::AccountLocked.into());
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum Lock {
    Share,
    Update,
}

async fn upsert_token(t: &Transaction<'_>, token: &TokenRecord, rec: &JsonOut) -> Result<(), Fail> {
    execute(
        t,
        "INSERT INTO api_tokens (id, user_id, record) VALUES ($1, $2, $3) \
         ON CONFLICT (id) DO UPDATE SET user_id = EXCLUDED.user_id, record = EXCLUDED.record",
        &[&token.id, &token.user_id, rec],
    )
    .await?;
    Ok(())
}

async fn get_token_for_update(t: &Transaction<'_>, id: &str) -> Result<TokenRecord, Fail> {
    match query_opt(
        t,
        "SELECT record FROM api_tokens WHERE id = $1 FOR UPDATE",
        &[&id],
    )
    .await?
    {
        Some(row) => record(&row, 0),
        None => Err(GatehouseError::NotFound.into()),
    }
}

/// The rows whose `expires_at` column equals `now` to the microsecond may
/// still have expired by the record's nanoseconds: those are checked here,
/// so a sweep deletes exactly `expires_at < now`, as the sled backend does.
fn expired_at_boundary<K, R: serde::de::DeserializeOwned>(
    rows: &[Row],
    now: OffsetDateTime,
    key: impl Fn(&Row) -> Result<K, Fail>,
    expires: impl Fn(&R) -> OffsetDateTime,
) -> Result<Vec<K>, Fail> {
    let mut out = Vec::new();
    for row in rows {
        let r: R = record(row, 1)?;
        if expires(&r) < now {
            out.push(key(row)?);
        }
    }
    Ok(out)
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    // --- users -----------------------------------------------------------

    async fn load_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.one("load_users", &(), |c, _| {
            Box::pin(async move {
                let rows =
                    query(c, "SELECT record FROM users ORDER BY id COLLATE \"C\"", &[]).await?;
                records(&rows)
            })
        })
        .await
        .map_err(into_store)
    }

    async fn insert_user(&self, user: UserRecord) -> Result<(), GatehouseError> {
        let args = (json(&user)?, user);
        self.one("insert_user", &args, |c, (rec, user)| {
            Box::pin(async move {
                let sql = "INSERT INTO users (id, username_lower, record) VALUES ($1, $2, $3)";
                match execute(c, sql, &[&user.id, &user.username.to_lowercase(), rec]).await {
                    Err(Fail::Db(e)) if is_unique_violation(&e) => {
                        Err(GatehouseError::Conflict(format!("user {}", user.username)).into())
                    }
                    other => other.map(drop),
                }
            })
        })
        .await
    }

    async fn update_user(
        &self,
        user_id: &str,
        change: UserChange,
        end: Option<EndSessions>,
    ) -> Result<(UserRecord, u64), GatehouseError> {
        let args = (user_id, change, end);
        self.tx("update_user", &args, |t, (id, change, end)| {
            Box::pin(async move {
                let mut user = locked_user(t, id, Lock::Update).await?;
                change.clone().apply(&mut user);
                execute(
                    t,
                    "UPDATE users SET username_lower = $2, record = $3 WHERE id = $1",
                    &[id, &user.username.to_lowercase(), &json(&user)?],
                )
                .await?;
                let ended = match end {
                    Some(end) => delete_sessions_of(t, id, *end).await?,
                    None => 0,
                };
                Ok((user, ended))
            })
        })
        .await
    }

    async fn delete_user(&self, user_id: &str) -> Result<u64, GatehouseError> {
        self.tx("delete_user", user_id, |t, id| {
            Box::pin(async move {
                if query_opt(t, "SELECT 1 FROM users WHERE id = $1 FOR UPDATE", &[&id])
                    .await?
                    .is_none()
                {
                    return Err(GatehouseError::NotFound.into());
                }
                let ended = delete_sessions_of(t, id, EndSessions::All).await?;
                // API tokens go with the user (ON DELETE CASCADE).
                execute(t, "DELETE FROM users WHERE id = $1", &[&id]).await?;
                Ok(ended)
            })
        })
        .await
    }

    // --- sessions --------------------------------------------------------

    async fn load_sessions(&self) -> Result<Vec<SessionRecord>, StoreError> {
        self.one("load_sessions", &(), |c, _| {
            Box::pin(async move {
                let rows = query(c, "SELECT record FROM sessions ORDER BY token_hash", &[]).await?;
                records(&rows)
            })
        })
        .await
        .map_err(into_store)
    }

    async fn insert_session(&self, session: SessionRecord) -> Result<(), GatehouseError> {
        let args = (json(&session)?, session);
        self.tx("insert_session", &args, |t, (rec, s)| {
            Box::pin(async move {
                check_user_active(t, &s.user_id).await?;
                execute(
                    t,
                    "INSERT INTO sessions (token_hash, user_id, expires_at, record) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (token_hash) DO UPDATE SET \
                     user_id = EXCLUDED.user_id, expires_at = EXCLUDED.expires_at, \
                     record = EXCLUDED.record",
                    &[&hash(&s.token_hash), &s.user_id, &s.expires_at, rec],
                )
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn delete_session(&self, h: TokenHash) -> Result<bool, StoreError> {
        self.one("delete_session", &h, |c, h| {
            Box::pin(async move {
                let n =
                    execute(c, "DELETE FROM sessions WHERE token_hash = $1", &[&hash(h)]).await?;
                Ok(n > 0)
            })
        })
        .await
        .map_err(into_store)
    }

    async fn delete_user_sessions(
        &self,
        user_id: &str,
        end: EndSessions,
    ) -> Result<u64, StoreError> {
        let args = (user_id, end);
        self.one("delete_user_sessions", &args, |c, (id, end)| {
            Box::pin(async move { delete_sessions_of(c, id, *end).await })
        })
        .await
        .map_err(into_store)
    }

    async fn touch_sessions(
        &self,
        seen: Vec<(TokenHash, OffsetDateTime)>,
    ) -> Result<(), StoreError> {
        if seen.is_empty() {
            return Ok(());
        }
        // The latest time per session; the lock order is the key order.
        let mut latest = std::collections::BTreeMap::new();
        for (h, at) in seen {
            let e = latest.entry(h).or_insert(at);
            if at > *e {
                *e = at;
            }
        }
        self.tx("touch_sessions", &latest, |t, latest| {
            Box::pin(async move {
                let keys: Vec<_> = latest.keys().map(hash).collect();
                let rows = query(
                    t,
                    "SELECT token_hash, record FROM sessions WHERE token_hash = ANY($1) \
                     ORDER BY token_hash FOR UPDATE",
                    &[&keys],
                )
                .await?;
                let mut hashes = Vec::new();
                let mut recs = Vec::new();
                for row in &rows {
                    let mut s: SessionRecord = record(row, 1)?;
                    let Some(at) = latest.get(&s.token_hash) else {
                        continue;
                    };
                    if s.last_seen_at >= *at {
                        continue;
                    }
                    s.last_seen_at = *at;
                    let key: Vec<u8> = row.try_get(0)?;
                    hashes.push(Hidden(key));
                    recs.push(json(&s)?);
                }
                if !hashes.is_empty() {
                    execute(
                        t,
                        "UPDATE sessions SET record = u.record \
                         FROM UNNEST($1::bytea[], $2::jsonb[]) AS u(token_hash, record) \
                         WHERE sessions.token_hash = u.token_hash",
                        &[&hashes, &recs],
                    )
                    .await?;
                }
                Ok(())
            })
        })
        .await
        .map_err(into_store)
    }

    async fn sweep_sessions(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        self.tx("sweep_sessions", &now, |t, now| {
            Box::pin(async move {
                let edge = query(
                    t,
                    "SELECT token_hash, record FROM sessions WHERE expires_at = $1 FOR UPDATE",
                    &[now],
                )
                .await?;
                let edge = expired_at_boundary(
                    &edge,
                    *now,
                    |r| Ok(Hidden(r.try_get::<_, Vec<u8>>(0)?)),
                    |s: &SessionRecord| s.expires_at,
                )?;
                execute(
                    t,
                    "DELETE FROM sessions WHERE expires_at < $1 OR token_hash = ANY($2)",
                    &[now, &edge],
                )
                .await
            })
        })
        .await
        .map_err(into_store)
    }

    // --- API tokens ------------------------------------------------------

    async fn load_tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.one("load_tokens", &(), |c, _| {
            Box::pin(async move {
                let rows = query(
                    c,
                    "SELECT record FROM api_tokens ORDER BY id COLLATE \"C\"",
                    &[],
                )
                .await?;
                records(&rows)
            })
        })
        .await
        .map_err(into_store)
    }

    async fn insert_token(&self, token: TokenRecord) -> Result<(), GatehouseError> {
        let args = (json(&token)?, token);
        self.tx("insert_token", &args, |t, (rec, token)| {
            Box::pin(async move {
                check_user_active(t, &token.user_id).await?;
                upsert_token(t, token, rec).await
            })
        })
        .await
    }

    async fn update_token(
        &self,
        id: &str,
        change: TokenChange,
    ) -> Result<TokenRecord, GatehouseError> {
        let args = (id, change);
        self.tx("update_token", &args, |t, (id, change)| {
            Box::pin(async move {
                let mut tok = get_token_for_update(t, id).await?;
                match change {
                    TokenChange::Revoke { at } => {
                        if tok.revoked_at.is_none() {
                            tok.revoked_at = Some(*at);
                        }
                    }
                }
                execute(
                    t,
                    "UPDATE api_tokens SET record = $2 WHERE id = $1",
                    &[id, &json(&tok)?],
                )
                .await?;
                Ok(tok)
            })
        })
        .await
    }

    async fn rotate_token(
        &self,
        old_id: &str,
        grace_until: OffsetDateTime,
        new: TokenRecord,
    ) -> Result<TokenRecord, GatehouseError> {
        let args = (old_id, grace_until, json(&new)?, new);
        self.tx(
            "rotate_token",
            &args,
            |t, (old_id, grace_until, rec, new)| {
                Box::pin(async move {
                    // Lock order: the user (FOR SHARE) before its token, as a
                    // removal of the user does; the owner is read first unlocked.
                    let Some(row) =
                        query_opt(t, "SELECT user_id FROM api_tokens WHERE id = $1", &[old_id])
                            .await?
                    else {
                        return Err(GatehouseError::NotFound.into());
                    };
                    let owner: String = row.try_get(0)?;
                    check_user_active(t, &owner).await?;
                    let mut old = get_token_for_update(t, old_id).await?;
                    if old.user_id != owner {
                        check_user_active(t, &old.user_id).await?;
                    }
                    old.grace_until = Some(
                        old.grace_until
                            .map_or(*grace_until, |g| g.min(*grace_until)),
                    );
                    execute(
                        t,
                        "UPDATE api_tokens SET record = $2 WHERE id = $1",
                        &[old_id, &json(&old)?],
                    )
                    .await?;
                    upsert_token(t, new, rec).await?;
                    Ok(old)
                })
            },
        )
        .await
    }

    async fn touch_tokens(&self, used: Vec<(String, OffsetDateTime)>) -> Result<(), StoreError> {
        if used.is_empty() {
            return Ok(());
        }
        let mut latest = std::collections::BTreeMap::new();
        for (id, at) in used {
            let e = latest.entry(id).or_insert(at);
            if at > *e {
                *e = at;
            }
        }
        self.tx("touch_tokens", &latest, |t, latest| {
            Box::pin(async move {
                let ids: Vec<&str> = latest.keys().map(String::as_str).collect();
                let rows = query(
                    t,
                    "SELECT id, record FROM api_tokens WHERE id = ANY($1) \
                     ORDER BY id COLLATE \"C\" FOR UPDATE",
                    &[&ids],
                )
                .await?;
                let mut keys = Vec::new();
                let mut recs = Vec::new();
                for row in &rows {
                    let id: String = row.try_get(0)?;
                    let mut tok: TokenRecord = record(row, 1)?;
                    let Some(at) = latest.get(&id) else {
                        continue;
                    };
                    if tok.last_used_at.is_some_and(|l| l >= *at) {
                        continue;
                    }
                    tok.last_used_at = Some(*at);
                    keys.push(id);
                    recs.push(json(&tok)?);
                }
                if !keys.is_empty() {
                    execute(
                        t,
                        "UPDATE api_tokens SET record = u.record \
                         FROM UNNEST($1::text[], $2::jsonb[]) AS u(id, record) \
                         WHERE api_tokens.id = u.id",
                        &[&keys, &recs],
                    )
                    .await?;
                }
                Ok(())
            })
        })
        .await
        .map_err(into_store)
    }

    // --- token-signing keys ----------------------------------------------

    async fn load_signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError> {
        let mut keys: Vec<SigningKeyRecord> = self
            .one("load_signing_keys", &(), |c, _| {
                Box::pin(async move {
                    let rows = query(
                        c,
                        "SELECT record FROM signing_keys ORDER BY created_at, kid COLLATE \"C\"",
                        &[],
                    )
                    .await?;
                    records(&rows)
                })
            })
            .await
            .map_err(into_store)?;
        // Oldest first to the nanosecond (the column keeps microseconds).
        keys.sort_by(|a, b| {
            (a.created_at, a.kid.as_bytes()).cmp(&(b.created_at, b.kid.as_bytes()))
        });
        Ok(keys)
    }

    async fn insert_signing_key(&self, key: SigningKeyRecord) -> Result<(), StoreError> {
        let args = (json(&key)?, key);
        self.one("insert_signing_key", &args, |c, (rec, key)| {
            Box::pin(async move {
                execute(
                    c,
                    "INSERT INTO signing_keys (kid, created_at, record) VALUES ($1, $2, $3) \
                     ON CONFLICT (kid) DO UPDATE SET created_at = EXCLUDED.created_at, \
                     record = EXCLUDED.record",
                    &[&key.kid, &key.created_at, rec],
                )
                .await?;
                Ok(())
            })
        })
        .await
        .map_err(into_store)
    }

    // --- OAuth states ----------------------------------------------------

    async fn insert_oauth_state(&self, state: OAuthState) -> Result<(), StoreError> {
        let args = (json(&state)?, state);
        self.one("insert_oauth_state", &args, |c, (rec, s)| {
            Box::pin(async move {
                execute(
                    c,
                    "INSERT INTO oauth_states (state, expires_at, record) VALUES ($1, $2, $3) \
                     ON CONFLICT (state) DO UPDATE SET expires_at = EXCLUDED.expires_at, \
                     record = EXCLUDED.record",
                    &[&Hidden(s.state.as_str()), &s.expires_at, rec],
                )
                .await?;
                Ok(())
            })
        })
        .await
        .map_err(into_store)
    }

    async fn take_oauth_state(&self, state: &str) -> Result<Option<OAuthState>, StoreError> {
        self.one("take_oauth_state", state, |c, state| {
            Box::pin(async move {
                match query_opt(
                    c,
                    "DELETE FROM oauth_states WHERE state = $1 RETURNING record",
                    &[&Hidden(state)],
                )
                .await?
                {
                    Some(row) => Ok(Some(record(&row, 0)?)),
                    None => Ok(None),
                }
            })
        })
        .await
        .map_err(into_store)
    }

    async fn sweep_oauth_states(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        self.tx("sweep_oauth_states", &now, |t, now| {
            Box::pin(async move {
                let edge = query(
                    t,
                    "SELECT state, record FROM oauth_states WHERE expires_at = $1 FOR UPDATE",
                    &[now],
                )
                .await?;
                let edge = expired_at_boundary(
                    &edge,
                    *now,
                    |r| Ok(Hidden(r.try_get::<_, String>(0)?)),
                    |s: &OAuthState| s.expires_at,
                )?;
                execute(
                    t,
                    "DELETE FROM oauth_states WHERE expires_at < $1 OR state = ANY($2)",
                    &[now, &edge],
                )
                .await
            })
        })
        .await
        .map_err(into_store)
    }

    // --- audit -----------------------------------------------------------

    async fn append_audit(&self, event: AuditEvent) -> Result<(), StoreError> {
        let args = (json(&event)?, event.at);
        self.one("append_audit", &args, |c, (rec, at)| {
            Box::pin(async move {
                execute(
                    c,
                    "INSERT INTO audit (at, record) VALUES ($1, $2)",
                    &[at, rec],
                )
                .await?;
                Ok(())
            })
        })
        .await
        .map_err(into_store)
    }

    async fn list_audit(&self, limit: usize) -> Result<Vec<AuditEvent>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut events: Vec<AuditEvent> = self
            .one("list_audit", &limit, |c, limit| {
                Box::pin(async move {
                    let rows = query(
                        c,
                        "SELECT record FROM audit ORDER BY at DESC, seq DESC LIMIT $1",
                        &[limit],
                    )
                    .await?;
                    records(&rows)
                })
            })
            .await
            .map_err(into_store)?;
        // Newest first to the nanosecond (the column keeps microseconds);
        // stable, so equal times stay newest-inserted first.
        events.sort_by_key(|e| std::cmp::Reverse(e.at));
        Ok(events)
    }

    // --- health ----------------------------------------------------------

    async fn check_writable(&self) -> Result<(), StoreError> {
        let probe = hex::encode(crate::ids::random_bytes::<8>());
        self.one("check_writable", &probe, |c, probe| {
            Box::pin(async move {
                execute(
                    c,
                    "INSERT INTO meta (k, v) VALUES ('ready_probe', $1) \
                     ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v",
                    &[probe],
                )
                .await?;
                Ok(())
            })
        })
        .await
        .map_err(into_store)
    }
}

/// Deletes a user's sessions as `end` says; returns how many.
async fn delete_sessions_of<C: GenericClient>(
    c: &C,
    user_id: &str,
    end: EndSessions,
) -> Result<u64, Fail> {
    match end {
        EndSessions::All => {
            execute(c, "DELETE FROM sessions WHERE user_id = $1", &[&user_id]).await
        }
        EndSessions::AllBut(keep) => {
            execute(
                c,
                "DELETE FROM sessions WHERE user_id = $1 AND token_hash <> $2",
                &[&user_id, &hash(&keep)],
            )
            .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::random_id;
    use crate::model::{Lock as UserLock, PasswordHash};

    fn url() -> String {
        std::env::var("GATEHOUSE_TEST_PG")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
    }

    fn schema() -> String {
        format!("gh_t_{}", &random_id()[..16])
    }

    async fn store(schema: &str) -> PgStore {
        PgStore::connect(&url(), Some(schema))
            .await
            .expect("PostgreSQL at 127.0.0.1:5432 (or GATEHOUSE_TEST_PG)")
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    fn user(name: &str) -> UserRecord {
        UserRecord {
            id: random_id(),
            username: name.into(),
            display_name: None,
            avatar_url: None,
            roles: vec![],
            auth: "credentials".into(),
            created_at: now(),
            last_login: None,
            locked: None,
            password: Some(PasswordHash::Argon2 {
                phc: "$argon2id$x".into(),
            }),
            external_id: None,
            version: 0,
        }
    }

    fn session(user_id: &str) -> SessionRecord {
        let t = now();
        SessionRecord {
            id: random_id(),
            token_hash: TokenHash::of(&random_id()),
            user_id: user_id.into(),
            via: "password".into(),
            created_at: t,
            expires_at: t + time::Duration::hours(1),
            last_seen_at: t,
            ip: None,
            user_agent: None,
            external_sid: None,
        }
    }

    #[test]
    fn schema_names_are_checked() {
        assert!(valid_identifier("gh_t_0af3"));
        assert!(valid_identifier("_x"));
        assert!(valid_identifier(&"a".repeat(63)));
        for bad in ["", "1abc", "Gh", "a-b", "a\"b", "a b", &"a".repeat(64)] {
            assert!(!valid_identifier(bad), "{bad:?}");
        }
    }

    #[actix_rt::test]
    async fn pg_store_bad_schema_and_url_fail_cleanly() {
        let e = PgStore::connect(&url(), Some("x\"; DROP"))
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::Backend(_)));
        let e = PgStore::connect("postgres://u:s3cret-pw@127.0.0.1:1/test", None)
            .await
            .unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, StoreError::Backend(_)), "{msg}");
        assert!(!msg.contains("s3cret-pw"), "{msg}");
    }

    #[actix_rt::test]
    async fn pg_store_users_conflict_and_lock() {
        let name = schema();
        let s = store(&name).await;
        assert_eq!(s.backend(), "postgres");
        let u = user("Alice");
        s.insert_user(u.clone()).await.unwrap();
        match s.insert_user(user("aLICE")).await {
            Err(GatehouseError::Conflict(m)) => assert_eq!(m, "user aLICE"),
            other => panic!("{other:?}"),
        }
        assert_eq!(s.load_users().await.unwrap(), vec![u.clone()]);

        s.insert_session(session(&u.id)).await.unwrap();
        let lock = UserLock {
            reason: "left".into(),
            at: now(),
        };
        let (after, ended) = s
            .update_user(&u.id, UserChange::Lock(Some(lock)), Some(EndSessions::All))
            .await
            .unwrap();
        assert_eq!((after.version, ended), (1, 1));
        assert!(matches!(
            s.insert_session(session(&u.id)).await,
            Err(GatehouseError::AccountLocked)
        ));
        assert!(matches!(
            s.insert_session(session("nobody")).await,
            Err(GatehouseError::NotFound)
        ));
        assert!(s.load_sessions().await.unwrap().is_empty());
        s.check_writable().await.unwrap();
        s.drop_schema().await.unwrap();
    }

    #[actix_rt::test]
    async fn pg_store_end_sessions_all_but_one() {
        let name = schema();
        let s = store(&name).await;
        let u = user("bob");
        s.insert_user(u.clone()).await.unwrap();
        let sessions: Vec<_> = (0..3).map(|_| session(&u.id)).collect();
        for x in &sessions {
            s.insert_session(x.clone()).await.unwrap();
        }
        let keep = sessions[1].token_hash;
        let (after, ended) = s
            .update_user(
                &u.id,
                UserChange::Roles(vec!["Admin".into()]),
                Some(EndSessions::AllBut(keep)),
            )
            .await
            .unwrap();
        assert_eq!((after.version, ended), (1, 2));
        assert_eq!(s.load_sessions().await.unwrap(), vec![sessions[1].clone()]);
        // last_seen only moves forward, to the nanosecond.
        let later = sessions[1].last_seen_at + time::Duration::nanoseconds(1);
        s.touch_sessions(vec![(keep, later), (keep, sessions[1].last_seen_at)])
            .await
            .unwrap();
        assert_eq!(s.load_sessions().await.unwrap()[0].last_seen_at, later);
        assert_eq!(s.delete_user(&u.id).await.unwrap(), 1);
        assert!(matches!(
            s.delete_user(&u.id).await,
            Err(GatehouseError::NotFound)
        ));
        s.drop_schema().await.unwrap();
    }

    #[actix_rt::test]
    async fn pg_store_oauth_state_once_and_migrations_twice() {
        let name = schema();
        let s = store(&name).await;
        let t = now();
        let state = OAuthState {
            state: random_id(),
            provider: "github".into(),
            browser: TokenHash::of("cookie"),
            pkce_verifier: "v".into(),
            nonce: None,
            next: Some("/".into()),
            created_at: t,
            expires_at: t + time::Duration::minutes(10),
        };
        s.insert_oauth_state(state.clone()).await.unwrap();
        assert!(s.take_oauth_state(&state.state).await.unwrap() == Some(state.clone()));
        assert!(s.take_oauth_state(&state.state).await.unwrap().is_none());

        // Sweeps delete exactly `expires_at < now`, to the nanosecond.
        s.insert_oauth_state(state.clone()).await.unwrap();
        assert_eq!(s.sweep_oauth_states(state.expires_at).await.unwrap(), 0);
        let just_after = state.expires_at + time::Duration::nanoseconds(1);
        assert_eq!(s.sweep_oauth_states(just_after).await.unwrap(), 1);

        // Two instances starting together on one schema, then a third.
        let (a, b) = tokio::join!(store(&name), store(&name));
        a.check_writable().await.unwrap();
        b.check_writable().await.unwrap();
        let c = store(&name).await;
        let versions = c
            .one("versions", &(), |c, _| {
                Box::pin(async move {
                    let rows = query(c, "SELECT version FROM schema_migrations", &[]).await?;
                    Ok(rows.iter().map(|r| r.get::<_, i32>(0)).collect::<Vec<_>>())
                })
            })
            .await
            .unwrap();
        assert_eq!(versions, vec![1]);
        s.drop_schema().await.unwrap();
    }

    /// Operations that lock the same user, its sessions and tokens in
    /// different statements, run together: each ends in a domain answer
    /// (never a deadlock error), and nothing outlives the removed user.
    #[actix_rt::test]
    async fn pg_store_racing_operations_settle() {
        let name = schema();
        let s = store(&name).await;
        for i in 0..20 {
            let u = user(&format!("racer{i}"));
            s.insert_user(u.clone()).await.unwrap();
            let sessions: Vec<_> = (0..3).map(|_| session(&u.id)).collect();
            for x in &sessions {
                s.insert_session(x.clone()).await.unwrap();
            }
            let t = now();
            let tok = TokenRecord {
                id: random_id(),
                user_id: u.id.clone(),
                name: "t".into(),
                scopes: vec![],
                models: None,
                allowed_ips: None,
                max_idle: None,
                created_at: t,
                expires_at: t + time::Duration::days(1),
                revoked_at: None,
                grace_until: None,
                rotated_from: None,
                last_used_at: None,
            };
            s.insert_token(tok.clone()).await.unwrap();
            let new = TokenRecord {
                id: random_id(),
                rotated_from: Some(tok.id.clone()),
                ..tok.clone()
            };
            let seen: Vec<_> = sessions.iter().map(|x| (x.token_hash, now())).collect();
            let lock = UserLock {
                reason: "r".into(),
                at: now(),
            };
            let (rot, touch, touch_t, upd, ins, del) = tokio::join!(
                s.rotate_token(&tok.id, now(), new),
                s.touch_sessions(seen),
                s.touch_tokens(vec![(tok.id.clone(), now())]),
                s.update_user(&u.id, UserChange::Lock(Some(lock)), Some(EndSessions::All)),
                s.insert_session(session(&u.id)),
                s.delete_user(&u.id),
            );
            let domain = |r: Result<(), GatehouseError>| match r {
                Ok(()) | Err(GatehouseError::NotFound) | Err(GatehouseError::AccountLocked) => {}
                Err(e) => panic!("{e:?}"),
            };
            domain(rot.map(drop));
            domain(upd.map(drop));
            domain(ins);
            touch.unwrap();
            touch_t.unwrap();
            del.unwrap();
            assert!(s.load_sessions().await.unwrap().is_empty());
            assert!(s.load_tokens().await.unwrap().is_empty());
        }
        s.drop_schema().await.unwrap();
    }
}
