//! Gateway API tokens, owned by the `UserStoreActor` (with the users they
//! belong to). The actor publishes a [`TokenTable`] of every token it knows;
//! a token missing from it is refused, so a table that failed to load
//! refuses everything (fail closed). Revocation is O(1) and needs no message.

use crate::clock::AtomicTime;
use crate::error::GatehouseError;
use crate::ids::random_id;
use crate::keys::{self, ISSUER};
use crate::model::{TokenChange, TokenRecord};
use crate::users::UserStoreActor;
use actix::prelude::*;
use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use time::{Duration, OffsetDateTime};

/// A token in memory, with a last-use time that readers bump atomically.
#[derive(Debug)]
pub struct LiveToken {
    pub record: TokenRecord,
    last_used: AtomicTime,
}

impl LiveToken {
    pub(crate) fn new(record: TokenRecord) -> Self {
        let last_used = AtomicTime::new(record.last_used_at);
        Self { record, last_used }
    }

    pub fn touch(&self, now: OffsetDateTime) {
        self.last_used.bump(now);
    }

    pub fn last_used_at(&self) -> Option<OffsetDateTime> {
        self.last_used.get()
    }
}

pub type TokenMap = imbl::HashMap<String, Arc<LiveToken>>;

#[derive(Clone, Default)]
pub struct TokenTable(Arc<ArcSwap<TokenMap>>);

impl TokenTable {
    #[inline]
    pub fn get(&self, id: &str) -> Option<Arc<LiveToken>> {
        self.0.load().get(id).cloned()
    }

    pub(crate) fn publish(&self, map: &TokenMap) {
        self.0.store(Arc::new(map.clone()));
    }
}

/// The claims of a gateway token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenClaims {
    pub sub: String,
    pub jti: String,
    pub name: String,
    pub scopes: Vec<String>,
    #[serde(default)]
    pub models: Option<Vec<String>>,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
}

pub const TOKEN_PREFIX: &str = "gh_";

impl UserStoreActor {
    fn sign(&self, record: &TokenRecord) -> Result<String, GatehouseError> {
        let claims = TokenClaims {
            sub: record.user_id.clone(),
            jti: record.id.clone(),
            name: record.name.clone(),
            scopes: record.scopes.clone(),
            models: record.models.clone(),
            iat: record.created_at.unix_timestamp(),
            exp: record.expires_at.unix_timestamp(),
            iss: ISSUER.to_owned(),
        };
        Ok(format!(
            "{TOKEN_PREFIX}{}",
            self.keyring.load().sign(&claims)?
        ))
    }

    pub(crate) fn put_token(&mut self, record: TokenRecord) {
        self.local_writes += 1;
        let last = self.tokens.get(&record.id).and_then(|t| t.last_used_at());
        let live = LiveToken::new(record);
        if let Some(t) = last {
            live.touch(t);
        }
        self.tokens.insert(live.record.id.clone(), Arc::new(live));
        self.token_view.publish(&self.tokens);
    }

    fn owned(&self, id: &str, owner: &Option<String>) -> Result<Arc<LiveToken>, GatehouseError> {
        self.ensure_loaded()?;
        let t = self
            .tokens
            .get(id)
            .cloned()
            .ok_or(GatehouseError::NotFound)?;
        match owner {
            Some(o) if &t.record.user_id != o => Err(GatehouseError::NotFound),
            _ => Ok(t),
        }
    }

    /// Last-use times changed since they were written.
    pub(crate) fn unsaved_token_use(&self) -> Vec<(String, OffsetDateTime)> {
        self.tokens
            .values()
            .filter_map(|t| {
                let used = t.last_used_at()?;
                (t.record.last_used_at.is_none_or(|w| used > w))
                    .then(|| (t.record.id.clone(), used))
            })
            .collect()
    }
}

/// What a new token may do (validated by the caller).
#[derive(Debug, Clone)]
pub struct TokenSpec {
    pub name: String,
    pub scopes: Vec<String>,
    pub models: Option<Vec<String>>,
    pub allowed_ips: Option<Vec<String>>,
    pub max_idle: Option<i64>,
    pub ttl: Duration,
}

impl TokenSpec {
    fn record(
        &self,
        user_id: String,
        now: OffsetDateTime,
        rotated_from: Option<String>,
    ) -> TokenRecord {
        TokenRecord {
            id: random_id(),
            user_id,
            name: self.name.clone(),
            scopes: self.scopes.clone(),
            models: self.models.clone(),
            allowed_ips: self.allowed_ips.clone(),
            max_idle: self.max_idle,
            created_at: now,
            expires_at: now + self.ttl,
            revoked_at: None,
            grace_until: None,
            rotated_from,
            last_used_at: None,
        }
    }
}

/// Issues a token; answers the secret (shown once) and the record.
#[derive(Message)]
#[rtype(result = "Result<(String, TokenRecord), GatehouseError>")]
pub struct CreateToken {
    pub user_id: String,
    pub spec: TokenSpec,
    pub now: OffsetDateTime,
}

impl Handler<CreateToken> for UserStoreActor {
    type Result = ResponseActFuture<Self, Result<(String, TokenRecord), GatehouseError>>;

    fn handle(&mut self, msg: CreateToken, _: &mut Context<Self>) -> Self::Result {
        let prepared = self.ensure_loaded().and_then(|_| {
            let record = msg.spec.record(msg.user_id, msg.now, None);
            Ok((self.sign(&record)?, record))
        });
        let (secret, record) = match prepared {
            Ok(p) => p,
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        let store = self.store.clone();
        let stored = record.clone();
        Box::pin(
            async move { store.insert_token(stored).await }
                .into_actor(self)
                .map(move |res, act, _| {
                    res?;
                    act.put_token(record.clone());
                    Ok((secret, record))
                }),
        )
    }
}

/// Revokes a token (with `owner`, only that user's). Answers the record.
#[derive(Message)]
#[rtype(result = "Result<TokenRecord, GatehouseError>")]
pub struct RevokeToken {
    pub id: String,
    pub owner: Option<String>,
    pub now: OffsetDateTime,
}

impl Handler<RevokeToken> for UserStoreActor {
    type Result = ResponseActFuture<Self, Result<TokenRecord, GatehouseError>>;

    fn handle(&mut self, msg: RevokeToken, _: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.owned(&msg.id, &msg.owner) {
            return Box::pin(fut::ready(Err(e)));
        }
        let store = self.store.clone();
        Box::pin(
            async move {
                store
                    .update_token(&msg.id, TokenChange::Revoke { at: msg.now })
                    .await
            }
            .into_actor(self)
            .map(|res, act, _| {
                let t = res?;
                act.put_token(t.clone());
                Ok(t)
            }),
        )
    }
}

/// Rotates a token: a new one with the same name, scopes and limits; the old
/// one works for `grace` more. Answers the new secret and record.
#[derive(Message)]
#[rtype(result = "Result<(String, TokenRecord), GatehouseError>")]
pub struct RotateToken {
    pub id: String,
    pub owner: Option<String>,
    pub grace: Duration,
    pub now: OffsetDateTime,
}

impl Handler<RotateToken> for UserStoreActor {
    type Result = ResponseActFuture<Self, Result<(String, TokenRecord), GatehouseError>>;

    fn handle(&mut self, msg: RotateToken, _: &mut Context<Self>) -> Self::Result {
        let prepared = self.owned(&msg.id, &msg.owner).and_then(|old| {
            let r = &old.record;
            if r.status(msg.now, old.last_used_at()) != crate::model::TokenStatus::Active {
                return Err(GatehouseError::Conflict("token_not_active".into()));
            }
            let spec = TokenSpec {
                name: r.name.clone(),
                scopes: r.scopes.clone(),
                models: r.models.clone(),
                allowed_ips: r.allowed_ips.clone(),
                max_idle: r.max_idle,
                ttl: r.expires_at - r.created_at,
            };
            let record = spec.record(r.user_id.clone(), msg.now, Some(r.id.clone()));
            Ok((self.sign(&record)?, record))
        });
        let (secret, record) = match prepared {
            Ok(p) => p,
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        let store = self.store.clone();
        let (stored, until) = (record.clone(), msg.now + msg.grace);
        Box::pin(
            async move { store.rotate_token(&msg.id, until, stored).await }
                .into_actor(self)
                .map(move |res, act, _| {
                    act.put_token(res?);
                    act.put_token(record.clone());
                    Ok((secret, record))
                }),
        )
    }
}

/// A token as listed: its record and when it was last used.
#[derive(Debug, Clone)]
pub struct TokenInfo {
    pub record: TokenRecord,
    pub last_used_at: Option<OffsetDateTime>,
}

/// Tokens, all or one user's, newest first.
#[derive(Message)]
#[rtype(result = "Result<Vec<TokenInfo>, GatehouseError>")]
pub struct ListTokens {
    pub user_id: Option<String>,
}

impl Handler<ListTokens> for UserStoreActor {
    type Result = Result<Vec<TokenInfo>, GatehouseError>;

    fn handle(&mut self, msg: ListTokens, _: &mut Context<Self>) -> Self::Result {
        self.ensure_loaded()?;
        let mut out: Vec<TokenInfo> = self
            .tokens
            .values()
            .filter(|t| msg.user_id.as_ref().is_none_or(|u| &t.record.user_id == u))
            .map(|t| TokenInfo {
                record: t.record.clone(),
                last_used_at: t.last_used_at(),
            })
            .collect();
        out.sort_by(|a, b| {
            b.record
                .created_at
                .cmp(&a.record.created_at)
                .then(a.record.id.cmp(&b.record.id))
        });
        Ok(out)
    }
}

#[derive(Message)]
#[rtype(result = "Result<TokenInfo, GatehouseError>")]
pub struct GetToken {
    pub id: String,
    pub owner: Option<String>,
}

impl Handler<GetToken> for UserStoreActor {
    type Result = Result<TokenInfo, GatehouseError>;

    fn handle(&mut self, msg: GetToken, _: &mut Context<Self>) -> Self::Result {
        let t = self.owned(&msg.id, &msg.owner)?;
        Ok(TokenInfo {
            record: t.record.clone(),
            last_used_at: t.last_used_at(),
        })
    }
}

/// A new signing key; older keys keep verifying until their tokens expire.
/// Answers the new key id.
#[derive(Message)]
#[rtype(result = "Result<String, GatehouseError>")]
pub struct RotateSigningKey {
    pub now: OffsetDateTime,
}

impl Handler<RotateSigningKey> for UserStoreActor {
    type Result = ResponseActFuture<Self, Result<String, GatehouseError>>;

    fn handle(&mut self, msg: RotateSigningKey, _: &mut Context<Self>) -> Self::Result {
        let key = keys::generate(msg.now);
        let store = self.store.clone();
        Box::pin(
            async move {
                store.insert_signing_key(key.clone()).await?;
                Ok::<_, GatehouseError>((key.kid, store.load_signing_keys().await?))
            }
            .into_actor(self)
            .map(|res, act, _| {
                let (kid, records) = res?;
                act.keyring.publish(keys::KeyRing::from_records(&records)?);
                Ok(kid)
            }),
        )
    }
}
