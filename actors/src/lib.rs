//! `gatehouse-actors`: every piece of Gatehouse's mutable state lives in an
//! actor here; the `Store` trait and its backends keep it durable.

pub mod clock;
pub mod error;
pub mod gateway;
pub mod ids;
pub mod keys;
pub mod model;
pub mod oauth;
pub mod secrets;
pub mod session;
pub mod store;
pub mod supervisor;
pub mod tasks;
pub mod throttle;
pub mod tokens;
pub mod users;

pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use error::{GatehouseError, StoreError};
pub use ids::TokenHash;
pub use supervisor::{ActorConfig, ActorHandles, Supervisor};

/// Fault injection: the actor that receives it panics.
#[cfg(feature = "testing")]
#[derive(actix::Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct Crash;
