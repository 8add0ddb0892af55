//! How a [`super::PgStore`] connects and how long it waits: every wait is
//! bounded, so losing the database answers an error within seconds (the
//! gateway's `503`) instead of holding requests, and the pool is bounded.

use std::time::Duration;

/// Connections a store keeps at most.
const DEFAULT_POOL_SIZE: usize = 16;

/// The knobs of a [`super::PgStore`] (`[store]` in the gateway's config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgOptions {
    /// A schema of its own, created at start (every pooled connection then
    /// uses `SET search_path TO <schema>`); `None`: the connection's own
    /// `search_path`.
    pub schema: Option<String>,
    /// Connections kept at most (at least 1).
    pub pool_size: usize,
    /// Opening a connection, and waiting for a free one, at most this long
    /// each (unless the URL sets `connect_timeout`, which then opens).
    pub connect_timeout: Duration,
    /// One operation, all of its statements, at most this long; the server's
    /// `statement_timeout` too. A connection that overran is closed, not
    /// reused. Migrations are not bounded.
    pub query_timeout: Duration,
    /// An operation slower than this is logged with its duration (by name,
    /// never with its data).
    pub slow: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            schema: None,
            pool_size: DEFAULT_POOL_SIZE,
            connect_timeout: Duration::from_secs(2),
            query_timeout: Duration::from_secs(5),
            slow: Duration::from_millis(500),
        }
    }
}

impl PgOptions {
    /// The defaults, in `schema`.
    pub fn in_schema(schema: &str) -> Self {
        PgOptions {
            schema: Some(schema.to_owned()),
            ..Default::default()
        }
    }

    /// The `SET` statements every pooled connection runs once opened.
    pub(super) fn session_setup(&self) -> String {
        let mut sql = format!(
            "SET statement_timeout = {}",
            self.query_timeout.as_millis().max(1)
        );
        if let Some(s) = &self.schema {
            sql.push_str(&format!("; SET search_path TO \"{s}\""));
        }
        sql
    }
}
