//! OAuth sign-in states: random, single use, bound to one browser, with a
//! PKCE verifier, an optional nonce and a `next` path; they expire after the
//! configured TTL (10 minutes by default). The store is the only copy, so a
//! flow may start on one instance and finish on another.

use crate::error::GatehouseError;
use crate::ids::{new_secret_token, TokenHash};
use crate::model::OAuthState;
use crate::store::SharedStore;
use actix::prelude::*;
use time::{Duration, OffsetDateTime};

pub struct OAuthStateActor {
    store: SharedStore,
    ttl: Duration,
}

impl OAuthStateActor {
    pub fn new(store: SharedStore, ttl: Duration) -> Self {
        Self { store, ttl }
    }
}

impl Actor for OAuthStateActor {
    type Context = Context<Self>;
}

impl Supervised for OAuthStateActor {}

/// Starts a flow; answers the stored state (its `state` goes to the provider).
#[derive(Message)]
#[rtype(result = "Result<OAuthState, GatehouseError>")]
pub struct CreateState {
    pub provider: String,
    /// SHA-256 of the browser's `gatehouse_oauth` cookie.
    pub browser: TokenHash,
    pub pkce_verifier: String,
    pub nonce: Option<String>,
    pub next: Option<String>,
    pub now: OffsetDateTime,
}

impl Handler<CreateState> for OAuthStateActor {
    type Result = ResponseFuture<Result<OAuthState, GatehouseError>>;

    fn handle(&mut self, msg: CreateState, _: &mut Context<Self>) -> Self::Result {
        let state = OAuthState {
            state: new_secret_token(),
            provider: msg.provider,
            browser: msg.browser,
            pkce_verifier: msg.pkce_verifier,
            nonce: msg.nonce,
            next: msg.next,
            created_at: msg.now,
            expires_at: msg.now + self.ttl,
        };
        let store = self.store.clone();
        Box::pin(async move {
            store.insert_oauth_state(state.clone()).await?;
            Ok(state)
        })
    }
}

/// Consumes a state: it must exist, be unexpired, belong to `provider` and
/// this browser. It is gone afterwards whatever the outcome, so a state
/// shown to a foreign browser cannot be used by the right one either.
#[derive(Message)]
#[rtype(result = "Result<OAuthState, GatehouseError>")]
pub struct ConsumeState {
    pub state: String,
    pub provider: String,
    pub browser: Option<TokenHash>,
    pub now: OffsetDateTime,
}

impl Handler<ConsumeState> for OAuthStateActor {
    type Result = ResponseFuture<Result<OAuthState, GatehouseError>>;

    fn handle(&mut self, msg: ConsumeState, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        Box::pin(async move {
            let invalid = || GatehouseError::invalid("invalid_state");
            if msg.state.is_empty() || msg.state.len() > 256 {
                return Err(invalid());
            }
            let found = store
                .take_oauth_state(&msg.state)
                .await?
                .ok_or_else(invalid)?;
            let same_browser = msg
                .browser
                .is_some_and(|b| crate::ids::ct_eq(&b.0, &found.browser.0));
            if found.expires_at <= msg.now || found.provider != msg.provider || !same_browser {
                return Err(invalid());
            }
            Ok(found)
        })
    }
}

/// Deletes expired states; answers how many.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Result<u64, GatehouseError>")]
pub struct Sweep {
    pub now: OffsetDateTime,
}

impl Handler<Sweep> for OAuthStateActor {
    type Result = ResponseFuture<Result<u64, GatehouseError>>;

    fn handle(&mut self, msg: Sweep, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        Box::pin(async move { Ok(store.sweep_oauth_states(msg.now).await?) })
    }
}

#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Result<(), GatehouseError>")]
pub struct Ping;

impl Handler<Ping> for OAuthStateActor {
    type Result = Result<(), GatehouseError>;

    fn handle(&mut self, _: Ping, _: &mut Context<Self>) -> Self::Result {
        Ok(())
    }
}

#[cfg(feature = "testing")]
impl Handler<crate::Crash> for OAuthStateActor {
    type Result = ();

    fn handle(&mut self, _: crate::Crash, _: &mut Context<Self>) {
        panic!("OAuthStateActor: crash requested (fault injection)");
    }
}

/// A fresh PKCE verifier (43 characters, RFC 7636) and its S256 challenge.
pub fn pkce_pair() -> (String, String) {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let verifier = new_secret_token();
    let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
    (verifier, URL_SAFE_NO_PAD.encode(digest))
}
