//! How a failure inside an operation is carried (so a deadlock can be told
//! apart and retried) and how it is reported without row data, URLs or
//! passwords.

use crate::error::{GatehouseError, StoreError};
use tokio_postgres::error::SqlState;

/// A failure inside an operation: kept as the driver's error until the end,
/// so a deadlock can be told apart and retried.
pub(super) enum Fail {
    Db(tokio_postgres::Error),
    Backend(String),
    /// No connection, or no answer in time.
    Unavailable(String),
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
    pub(super) fn retryable(&self) -> bool {
        matches!(self, Fail::Db(e) if matches!(
            e.code(),
            Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE
        ))
    }

    pub(super) fn into_gatehouse(self) -> GatehouseError {
        match self {
            Fail::Db(e) if unreachable(&e) => {
                GatehouseError::Store(StoreError::Unavailable(describe(&e)))
            }
            Fail::Db(e) => GatehouseError::Store(StoreError::Backend(describe(&e))),
            Fail::Backend(m) => GatehouseError::Store(StoreError::Backend(m)),
            Fail::Unavailable(m) => GatehouseError::Store(StoreError::Unavailable(m)),
            Fail::App(e) => e,
        }
    }
}

/// The driver's error for logs: the SQLSTATE and message of a server error
/// (not its DETAIL, which can quote row data), or the kind and cause of a
/// client-side one. Neither carries the connection URL or a password.
pub(super) fn describe(e: &tokio_postgres::Error) -> String {
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

/// Whether `e` says the server is out of reach rather than that it refused
/// the operation: no connection (refused, reset, closed, timed out), or the
/// server shutting down, starting up, out of connections or cancelling the
/// statement at `statement_timeout`.
pub(super) fn unreachable(e: &tokio_postgres::Error) -> bool {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        return code.starts_with("08")
            || code.starts_with("57P")
            || code == SqlState::TOO_MANY_CONNECTIONS.code()
            || code == SqlState::QUERY_CANCELED.code();
    }
    if e.is_closed() {
        return true;
    }
    if std::error::Error::source(e).is_some_and(|c| c.is::<std::io::Error>()) {
        return true;
    }
    // Connecting failed or timed out (the driver's kinds are private).
    let m = e.to_string();
    m == "error connecting to server" || m == "timeout waiting for server"
}

pub(super) fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

pub(super) fn into_store(e: GatehouseError) -> StoreError {
    match e {
        GatehouseError::Store(s) => s,
        other => StoreError::Backend(other.to_string()),
    }
}

/// Belt and braces: no message built while connecting repeats the URL or
/// its password, even if a driver message ever quoted them.
pub(super) fn redact(url: &str, msg: String) -> String {
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
    msg
}
