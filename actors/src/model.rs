//! The records that actors own and the store keeps.

use crate::ids::TokenHash;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use time::OffsetDateTime;
use utoipa::ToSchema;

pub const ADMIN_ROLE: &str = "Admin";

/// A stored password hash. Legacy hashes come from an llms.py import and are
/// replaced by Argon2id at the next successful sign-in.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PasswordHash {
    /// A PHC string (`$argon2id$v=19$…`).
    Argon2 { phc: String },
    /// llms.py: `hex(sha256(salt + password))` with its salt.
    LegacySha256 { salt: String, hex: String },
}

impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PasswordHash::Argon2 { .. } => f.write_str("PasswordHash::Argon2(***)"),
            PasswordHash::LegacySha256 { .. } => f.write_str("PasswordHash::LegacySha256(***)"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LastLogin {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    #[schema(required = true, value_type = Option<String>)]
    pub ip: Option<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Lock {
    pub reason: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// A user as stored. `password` never leaves the actors crate in a response:
/// the public view is [`UserView`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    pub id: String,
    pub username: String,
    pub display_name: Option<String>,
    pub avatar_url: Option<String>,
    pub roles: Vec<String>,
    /// How the user signs in: `credentials`, `github`, …
    pub auth: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub last_login: Option<LastLogin>,
    pub locked: Option<Lock>,
    pub password: Option<PasswordHash>,
    /// The stable key at an external identity provider (`github:583231`).
    #[serde(default)]
    pub external_id: Option<String>,
    /// Bumped by the store on every change, so a reader keeps the newest.
    #[serde(default)]
    pub version: u64,
}

/// One change to a user, applied by the store under its lock.
#[derive(Debug, Clone)]
pub enum UserChange {
    Password(PasswordHash),
    Lock(Option<Lock>),
    /// A successful sign-in, with the Argon2id hash that replaces a legacy one.
    Login {
        at: LastLogin,
        upgrade: Option<PasswordHash>,
    },
    Roles(Vec<String>),
    /// What an identity provider says about the user at sign-in.
    Profile {
        display_name: Option<String>,
        avatar_url: Option<String>,
    },
}

impl UserChange {
    pub fn apply(self, user: &mut UserRecord) {
        match self {
            UserChange::Password(h) => user.password = Some(h),
            UserChange::Lock(l) => user.locked = l,
            UserChange::Login { at, upgrade } => {
                user.last_login = Some(at);
                if let Some(h) = upgrade {
                    user.password = Some(h);
                }
            }
            UserChange::Roles(r) => user.roles = r,
            UserChange::Profile {
                display_name,
                avatar_url,
            } => {
                user.display_name = display_name;
                user.avatar_url = avatar_url;
            }
        }
        user.version += 1;
    }
}

impl UserRecord {
    pub fn is_admin(&self) -> bool {
        self.roles.iter().any(|r| r == ADMIN_ROLE)
    }

    pub fn view(&self) -> UserView {
        UserView {
            id: self.id.clone(),
            username: self.username.clone(),
            display_name: self.display_name.clone(),
            avatar_url: self.avatar_url.clone(),
            roles: self.roles.clone(),
            auth: self.auth.clone(),
            created_at: self.created_at,
            last_login: self.last_login.clone(),
            locked: self.locked.clone(),
        }
    }
}

/// The `User` object of API.md.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = User)]
pub struct UserView {
    pub id: String,
    pub username: String,
    #[schema(required = true)]
    pub display_name: Option<String>,
    #[schema(required = true)]
    pub avatar_url: Option<String>,
    pub roles: Vec<String>,
    pub auth: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[schema(required = true)]
    pub last_login: Option<LastLogin>,
    #[schema(required = true)]
    pub locked: Option<Lock>,
}

/// A session as stored: keyed by the SHA-256 of its token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Public id (for listing and deleting); not the token.
    pub id: String,
    pub token_hash: TokenHash,
    pub user_id: String,
    /// `password`, `github`, `oidc:NAME`.
    pub via: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen_at: OffsetDateTime,
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    /// The identity provider's session (`sid`), for back-channel logout.
    #[serde(default)]
    pub external_sid: Option<String>,
}

/// A pending OAuth sign-in: single use, bound to one browser.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthState {
    pub state: String,
    /// Which sign-in method started it (`github`, `oidc:NAME`).
    pub provider: String,
    /// SHA-256 of the `gatehouse_oauth` cookie value of the browser.
    pub browser: TokenHash,
    pub pkce_verifier: String,
    pub nonce: Option<String>,
    pub next: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

impl std::fmt::Debug for OAuthState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthState")
            .field("provider", &self.provider)
            .field("next", &self.next)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// One audit event (API.md "Edge rules").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditEvent {
    pub id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    #[schema(required = true)]
    pub actor: Option<String>,
    pub actor_name: String,
    pub action: String,
    #[schema(required = true)]
    pub target: Option<String>,
    #[schema(required = true, value_type = Option<String>)]
    pub ip: Option<IpAddr>,
    pub details: serde_json::Value,
}

/// A gateway API token's metadata. The token itself (a signed JWT) is shown
/// once and never stored; its `id` is the JWT's `jti`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub models: Option<Vec<String>>,
    /// CIDRs the token may be used from.
    pub allowed_ips: Option<Vec<String>>,
    /// Seconds of non-use after which the token expires.
    pub max_idle: Option<i64>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
    /// Set on a token that was rotated: it works until then.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub grace_until: Option<OffsetDateTime>,
    pub rotated_from: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
}

/// `active`, `expired` or `revoked` at `now`, given when it was last used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TokenStatus {
    Active,
    Expired,
    Revoked,
}

impl TokenRecord {
    pub fn status(&self, now: OffsetDateTime, last_used: Option<OffsetDateTime>) -> TokenStatus {
        if self.revoked_at.is_some_and(|t| t <= now) {
            return TokenStatus::Revoked;
        }
        if self.grace_until.is_some_and(|t| t <= now) {
            return TokenStatus::Revoked;
        }
        if self.expires_at <= now {
            return TokenStatus::Expired;
        }
        if let Some(idle) = self.max_idle {
            let since = last_used.or(self.last_used_at).unwrap_or(self.created_at);
            if now - since > time::Duration::seconds(idle) {
                return TokenStatus::Expired;
            }
        }
        TokenStatus::Active
    }
}

/// One change to a token, applied by the store.
#[derive(Debug, Clone)]
pub enum TokenChange {
    Revoke { at: OffsetDateTime },
}

/// An Ed25519 key that signs gateway tokens. The newest one signs; older
/// ones keep verifying the tokens they signed until those expire.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningKeyRecord {
    pub kid: String,
    /// PKCS#8 document (private key), base64.
    pub pkcs8: String,
    /// Raw 32-byte public key, base64url.
    pub public: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl std::fmt::Debug for SigningKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyRecord")
            .field("kid", &self.kid)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// One proxied model call, as recorded for usage (no prompt or completion text).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageRecord {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub user_id: String,
    /// Kept with the record: usage history outlives the user.
    pub username: String,
    pub token_id: Option<String>,
    pub provider: String,
    /// `provider/model` as the client sees it.
    pub model: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// The HTTP status returned to the client.
    pub status: u16,
    /// Summed over `requests`.
    pub latency_ms: u64,
    /// 0.0 when no price is known.
    pub cost: f64,
    /// The calls this record stands for: the usage sink folds the calls of
    /// one minute with the same user, token, provider, model and status into
    /// one record (tokens, latency and cost summed).
    #[serde(default = "one_call")]
    pub requests: u64,
}

fn one_call() -> u64 {
    1
}

/// Which usage records a summary covers; `None` matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UsageQuery {
    /// Username, exact.
    pub user: Option<String>,
    /// Model, exact.
    pub model: Option<String>,
    /// Inclusive.
    pub since: Option<OffsetDateTime>,
    /// Exclusive.
    pub until: Option<OffsetDateTime>,
}

impl UsageQuery {
    /// Whether `r` matches the user and model filters (not the time range).
    pub fn matches(&self, r: &UsageRecord) -> bool {
        self.user.as_ref().is_none_or(|u| *u == r.username)
            && self.model.as_ref().is_none_or(|m| *m == r.model)
    }
}

/// Usage totals of one user and model.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct UsageRow {
    pub user: String,
    pub user_id: String,
    pub model: String,
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    pub cost: f64,
}

/// Usage in one time bucket.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct UsageBucket {
    #[serde(with = "time::serde::rfc3339")]
    pub start: OffsetDateTime,
    pub requests: u64,
    pub total_tokens: u64,
}

/// Where a task is in its life (API.md "Tasks").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    PendingApproval,
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::PendingApproval => "pending_approval",
            TaskStatus::Queued => "queued",
            TaskStatus::Running => "running",
            TaskStatus::Succeeded => "succeeded",
            TaskStatus::Failed => "failed",
            TaskStatus::Cancelled => "cancelled",
        }
    }

    /// Nothing more happens to a task in a final state (unless retried).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            TaskStatus::Succeeded | TaskStatus::Failed | TaskStatus::Cancelled
        )
    }

    /// The status named by [`TaskStatus::as_str`].
    pub fn parse(s: &str) -> Option<TaskStatus> {
        [
            TaskStatus::PendingApproval,
            TaskStatus::Queued,
            TaskStatus::Running,
            TaskStatus::Succeeded,
            TaskStatus::Failed,
            TaskStatus::Cancelled,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
    }
}

/// A durable task. `version` grows by one with every write, so a write
/// based on a stale read is refused instead of undoing another's change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub id: String,
    /// `chat.completion` or `agent.run`.
    pub kind: String,
    pub status: TaskStatus,
    /// The owner's user id.
    pub owner: String,
    pub owner_name: String,
    /// The gateway token that created it, if one did.
    pub token_id: Option<String>,
    pub input: serde_json::Value,
    pub requires_approval: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    pub result: Option<serde_json::Value>,
    pub error: Option<serde_json::Value>,
    /// How many times it has been started.
    pub attempts: u32,
    /// The agent backend's id for an `agent.run` task.
    pub external_id: Option<String>,
    /// The instance running it, and until when that claim holds.
    pub claimed_by: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub claim_until: Option<OffsetDateTime>,
    /// Events written so far (the last event's `seq`).
    pub events: u64,
    pub version: u64,
}

impl TaskRecord {
    /// Whether an instance may claim it at `now`: queued or running, and
    /// unclaimed or its claim ran out (`claim_until <= now`).
    pub fn claimable(&self, now: OffsetDateTime) -> bool {
        matches!(self.status, TaskStatus::Queued | TaskStatus::Running)
            && (self.claimed_by.is_none() || self.claim_until.is_none_or(|u| u <= now))
    }
}

/// One event of a task: `kind` is `status`, `output` or `error`; `seq` counts from 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskEvent {
    pub task_id: String,
    pub seq: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub kind: String,
    pub data: serde_json::Value,
}

/// The first response to a mutating request with an `Idempotency-Key`,
/// kept for 24 h and replayed for the same key and fingerprint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    /// Whose key it is (keys are scoped to the principal).
    pub principal: String,
    pub key: String,
    /// Hex SHA-256 of method, path and body.
    pub fingerprint: String,
    pub status: u16,
    pub body: serde_json::Value,
    pub task_id: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// What [`crate::store::Store::save_task`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum SaveTask {
    Saved,
    /// The idempotency key was already used: nothing was written.
    KeyTaken(IdempotencyRecord),
    /// The task changed since it was read (or a new task's id exists): nothing was written.
    Stale,
}

/// What kind of run-time gateway setting a [`GatewayItem`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemKind {
    Provider,
    /// A provider's credential profile, named `PROVIDER/PROFILE`; its
    /// secrets are sealed under the master key inside the body.
    Profile,
    Alias,
    Setting,
}

impl ItemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ItemKind::Provider => "provider",
            ItemKind::Profile => "profile",
            ItemKind::Alias => "alias",
            ItemKind::Setting => "setting",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "provider" => ItemKind::Provider,
            "profile" => ItemKind::Profile,
            "alias" => ItemKind::Alias,
            "setting" => ItemKind::Setting,
            _ => return None,
        })
    }
}

/// A provider, credential profile, alias or setting changed at run time
/// (through the admin API or CLI), as stored. The body is JSON owned by
/// the `ProviderActor`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct GatewayItem {
    pub kind: ItemKind,
    /// `NAME`; `PROVIDER/NAME` for a profile.
    pub name: String,
    pub body: String,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl std::fmt::Debug for GatewayItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayItem")
            .field("kind", &self.kind)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// One counter a model call draws on: a `metric` (`rpm`, `tpm`, `spend`) of
/// a `subject` (`user:ID`, `token:ID`) in the window `[start, end)` (Unix
/// seconds), and the most it may hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Draw {
    pub subject: String,
    pub metric: String,
    pub start: i64,
    pub end: i64,
    pub amount: f64,
    pub limit: f64,
}

/// What a reservation answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Reserve {
    /// Every draw was added.
    Granted,
    /// Nothing was added: the draw at this index would pass its limit.
    Refused(usize),
}

/// A counter as it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Counter {
    pub metric: String,
    pub start: i64,
    pub end: i64,
    pub value: f64,
}
