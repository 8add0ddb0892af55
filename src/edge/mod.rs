//! Abuse protection at the HTTP edge (README "Abuse protection"): a
//! per-address request rate on the sign-in and token-issuing routes, a cap
//! on the streams one principal keeps open, and a middleware that bounds
//! the request head and the time a request body may take to arrive.
//! Sign-in failure throttling lives with the users actor
//! (`gatehouse_actors::throttle`).
//!
//! The state here is per gateway (in [`crate::AppState`]), never global, and
//! sharded so that no single lock is taken by every request.

mod guard;
mod rate;
mod streams;

pub use guard::EdgeGuard;
pub use rate::RateLimiter;
pub use streams::{SlotBody, StreamSlot, StreamSlots};

use crate::auth::client_ip;
use crate::error::ApiError;
use crate::AppState;
use actix_web::HttpRequest;

/// How many shards each concurrent map has.
const SHARDS: usize = 16;

/// The edge state of one gateway.
pub struct Edge {
    pub auth_rate: RateLimiter,
    pub streams: StreamSlots,
}

impl Edge {
    pub fn new(server: &crate::config::ServerConfig) -> Self {
        Edge {
            auth_rate: RateLimiter::new(server.auth_rate_per_minute),
            streams: StreamSlots::new(server.max_streams_per_principal),
        }
    }
}

/// Takes one request from the client address's sign-in/token bucket:
/// `429 rate_limited` with `Retry-After` when it is empty.
pub fn auth_rate(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    let Some(ip) = client_ip(req, &state.config.server.trusted_proxies) else {
        return Ok(());
    };
    state
        .edge
        .auth_rate
        .check(ip, state.handles.now())
        .map_err(|wait| {
            ApiError::too_many(
                "rate_limited",
                "too many sign-in or token requests from this address; retry later",
                wait,
            )
        })
}

/// A slot for one more open stream of `principal`: `429 too_many_streams`
/// when it already has as many as allowed.
pub fn stream_slot(state: &AppState, principal: &str) -> Result<Option<StreamSlot>, ApiError> {
    let slots = &state.edge.streams;
    if slots.unlimited() {
        return Ok(None);
    }
    slots.acquire(principal).map(Some).ok_or_else(|| {
        ApiError::too_many(
            "too_many_streams",
            format!(
                "at most {} streaming requests may be open at once; close one and retry",
                slots.max()
            ),
            std::time::Duration::from_secs(1),
        )
    })
}
