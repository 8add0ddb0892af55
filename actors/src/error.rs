//! What failed, as the actors see it. `ApiError` in the `gatehouse` crate maps
//! these to HTTP; nothing here carries a secret.

use time::Duration;

/// A failure of the storage backend. The message is for logs only.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store backend: {0}")]
    Backend(String),
    /// The backend cannot be reached or did not answer in time (a lost
    /// database): the same operation may well work once it is back.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store record is corrupt: {0}")]
    Corrupt(String),
    #[error("store i/o: {0}")]
    Io(#[from] std::io::Error),
}

impl StoreError {
    /// The disk under the store is full (`ENOSPC`).
    pub fn is_storage_full(&self) -> bool {
        matches!(self, StoreError::Io(e) if e.kind() == std::io::ErrorKind::StorageFull)
    }
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        match e {
            sled::Error::Io(io) => StoreError::Io(io),
            other => StoreError::Backend(other.to_string()),
        }
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GatehouseError {
    #[error("invalid username or password")]
    InvalidCredentials,
    #[error("account is locked")]
    AccountLocked,
    #[error("too many failed sign-in attempts")]
    Throttled { retry_after: Duration },
    #[error("not found")]
    NotFound,
    #[error("{0} already exists")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("not authenticated")]
    Unauthenticated,
    #[error("service unavailable: {0}")]
    Unavailable(String),
    #[error("idempotency key reused with a different body")]
    IdempotencyKeyReused,
    #[error("{0}")]
    InvalidTransition(String),
    /// Owned by the config file: not changed through the API.
    #[error("{0}")]
    ConfigOwned(String),
    /// The egress policy forbids this upstream address.
    #[error("egress policy: {0}")]
    EgressDenied(String),
    /// So many tasks wait to run that no more are taken for now.
    #[error("the task queue is full ({limit} tasks wait to run)")]
    QueueFull { limit: usize },
    #[error("storage")]
    Store(#[from] StoreError),
}

impl GatehouseError {
    pub fn invalid(msg: impl Into<String>) -> Self {
        GatehouseError::Invalid(msg.into())
    }
}
