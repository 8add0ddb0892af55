//! Gateway API tokens on the hot path: an Ed25519 verify costs tens of µs,
//! so a token is verified once per process and its claims are kept in a
//! bounded cache keyed by the token, expiring with the token. The
//! published token table is consulted on every request (revocation, grace,
//! idle expiry); a token missing from it is refused.

use super::cache::TokenCache;
use gatehouse_actors::keys::{KeyRing, ISSUER};
use gatehouse_actors::model::TokenStatus;
use gatehouse_actors::tokens::{LiveToken, TokenClaims, TOKEN_PREFIX};
use gatehouse_actors::ActorHandles;
use jsonwebtoken::{Algorithm, Validation};
use std::sync::Arc;
use time::OffsetDateTime;

/// Tokens longer than this are refused unread.
pub const MAX_TOKEN_LEN: usize = 8192;
const CACHE_ENTRIES: usize = 100_000;

pub struct GatewayTokens {
    verified: TokenCache<Arc<TokenClaims>>,
}

impl Default for GatewayTokens {
    fn default() -> Self {
        Self {
            verified: TokenCache::new(CACHE_ENTRIES),
        }
    }
}

/// Why a token was refused (logged at debug, never sent to the client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Malformed,
    Signature,
    Expired,
    Unknown,
    Revoked,
    UserGone,
}

pub fn is_gateway_token(token: &str) -> bool {
    token.starts_with(TOKEN_PREFIX)
}

impl GatewayTokens {
    /// The claims and live record of a valid gateway token.
    #[tracing::instrument(skip_all)]
    pub fn check(
        &self,
        token: &str,
        handles: &ActorHandles,
        now: OffsetDateTime,
    ) -> Result<(Arc<TokenClaims>, Arc<LiveToken>), Refused> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(Refused::Malformed);
        }
        let claims = match self.verified.get(token) {
            Some(c) => c,
            None => {
                let jwt = token.strip_prefix(TOKEN_PREFIX).ok_or(Refused::Malformed)?;
                let claims = Arc::new(verify(jwt, &handles.keyring().load())?);
                self.verified.insert(token, claims.clone());
                claims
            }
        };
        if claims.exp <= now.unix_timestamp() {
            return Err(Refused::Expired);
        }
        let live = handles
            .token_table()
            .get(&claims.jti)
            .ok_or(Refused::Unknown)?;
        if live.record.user_id != claims.sub {
            return Err(Refused::Unknown);
        }
        match live.record.status(now, live.last_used_at()) {
            TokenStatus::Active => Ok((claims, live)),
            TokenStatus::Expired => Err(Refused::Expired),
            TokenStatus::Revoked => Err(Refused::Revoked),
        }
    }
}

/// Signature (EdDSA only, a known `kid`), issuer and expiry.
pub fn verify(jwt: &str, ring: &KeyRing) -> Result<TokenClaims, Refused> {
    let header = jsonwebtoken::decode_header(jwt).map_err(|_| Refused::Malformed)?;
    if header.alg != Algorithm::EdDSA {
        return Err(Refused::Signature);
    }
    let key = header
        .kid
        .as_deref()
        .and_then(|k| ring.decoding_key(k))
        .ok_or(Refused::Signature)?;
    let mut v = Validation::new(Algorithm::EdDSA);
    v.set_issuer(&[ISSUER]);
    v.set_required_spec_claims(&["exp", "sub", "iss"]);
    v.validate_aud = false;
    v.leeway = 0;
    jsonwebtoken::decode::<TokenClaims>(jwt, key, &v)
        .map(|d| d.claims)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => Refused::Expired,
            _ => Refused::Signature,
        })
}
