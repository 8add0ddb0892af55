//! API-token operations shared by the HTTP API and the CLI: validation of a
//! request in one place, then one message to the `UserStoreActor`.

use crate::accounts::{audit, Actor};
use crate::auth::{Principal, Scope};
use crate::error::ApiError;
use crate::AppState;
use gatehouse_actors::model::{TokenRecord, TokenStatus, UserRecord};
use gatehouse_actors::tokens::{CreateToken, RevokeToken, RotateToken, TokenInfo, TokenSpec};
use gatehouse_actors::users::{GetUser, UserRef};
use gatehouse_actors::GatehouseError;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use time::Duration;

pub const DEFAULT_TTL: i64 = 30 * 86_400;
pub const MAX_TTL: i64 = 90 * 86_400;
pub const DEFAULT_GRACE: i64 = 3_600;
pub const MAX_GRACE: i64 = 7 * 86_400;

/// `POST /api/tokens`, and `gatehouse tokens issue`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// 1 to 100 printable characters.
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    /// Seconds, 1 to 90 days (default 30 days).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 7776000)]
    pub expires_in: Option<i64>,
    /// Default `["read", "write"]`; no more than the caller's own.
    #[serde(default)]
    #[schema(value_type = Option<Vec<TokenScope>>, min_items = 1)]
    pub scopes: Option<Vec<String>>,
    /// The models it may call (`null`: any the user may).
    #[serde(default)]
    #[schema(max_items = 100)]
    pub models: Option<Vec<String>>,
    /// 1 to 100 CIDRs (`10.0.0.0/8`) or addresses it may be used from.
    #[serde(default)]
    #[schema(min_items = 1, max_items = 100)]
    pub allowed_ips: Option<Vec<String>>,
    /// Seconds of non-use after which it expires, 1 to 90 days.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 7776000)]
    pub max_idle: Option<i64>,
}

/// A scope a token may hold.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)] // documents `scopes`; `Scope::parse` reads them
pub enum TokenScope {
    Read,
    Write,
    Admin,
}

fn invalid(msg: impl Into<std::borrow::Cow<'static, str>>) -> ApiError {
    ApiError::unprocessable("invalid_value", msg)
}

impl NewToken {
    /// Checks every field; `may` is what the caller may grant.
    pub fn validate(self, may: crate::auth::Scopes) -> Result<TokenSpec, ApiError> {
        let name = self.name.trim().to_owned();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(invalid("name must be 1 to 100 printable characters"));
        }
        let ttl = self.expires_in.unwrap_or(DEFAULT_TTL);
        if !(1..=MAX_TTL).contains(&ttl) {
            return Err(invalid("expires_in must be between 1 second and 90 days"));
        }
        let requested = self
            .scopes
            .unwrap_or_else(|| vec!["read".into(), "write".into()]);
        if requested.is_empty() {
            return Err(invalid(
                "scopes must name at least one of read, write, admin",
            ));
        }
        let mut scopes = Vec::new();
        for s in &requested {
            let scope =
                Scope::parse(s).ok_or_else(|| invalid("scopes may be read, write and admin"))?;
            if !may.allows(scope) {
                return Err(ApiError::forbidden(
                    "scope_not_allowed",
                    format!("you may not grant the `{}` scope", scope.as_str()),
                ));
            }
            if !scopes.contains(&scope.as_str().to_owned()) {
                scopes.push(scope.as_str().to_owned());
            }
        }
        if let Some(models) = &self.models {
            if models.len() > 100
                || models
                    .iter()
                    .any(|m| m.is_empty() || m.len() > 200 || m.chars().any(char::is_control))
            {
                return Err(invalid(
                    "models must be at most 100 names of 1 to 200 characters",
                ));
            }
        }
        let allowed_ips = match self.allowed_ips {
            None => None,
            Some(list) => {
                if list.is_empty() || list.len() > 100 {
                    return Err(invalid("allowed_ips must list 1 to 100 CIDRs"));
                }
                let mut nets = Vec::new();
                for entry in list {
                    let net: ipnet::IpNet = entry
                        .parse()
                        .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                        .map_err(|_| invalid("allowed_ips must be CIDRs such as 10.0.0.0/8"))?;
                    nets.push(net.trunc().to_string());
                }
                Some(nets)
            }
        };
        if let Some(idle) = self.max_idle {
            if !(1..=MAX_TTL).contains(&idle) {
                return Err(invalid("max_idle must be between 1 second and 90 days"));
            }
        }
        Ok(TokenSpec {
            name,
            scopes,
            models: self.models,
            allowed_ips,
            max_idle: self.max_idle,
            ttl: Duration::seconds(ttl),
        })
    }
}

/// Issues a token for `user`. Answers the secret (shown once) and the record.
pub async fn issue(
    state: &AppState,
    actor: &Actor,
    user: &UserRecord,
    spec: TokenSpec,
) -> Result<(String, TokenRecord), ApiError> {
    let msg = CreateToken {
        user_id: user.id.clone(),
        spec,
        now: state.handles.now(),
    };
    let (secret, record) = state
        .handles
        .users()
        .send(msg)
        .await?
        .map_err(locked_is_conflict)?;
    audit(
        state,
        actor,
        "token.create",
        Some(record.id.clone()),
        json!({"user": user.username, "name": record.name, "scopes": record.scopes}),
    )
    .await;
    Ok((secret, record))
}

pub async fn revoke(
    state: &AppState,
    actor: &Actor,
    id: &str,
    owner: Option<String>,
) -> Result<TokenRecord, ApiError> {
    let msg = RevokeToken {
        id: id.to_owned(),
        owner,
        now: state.handles.now(),
    };
    let record = state.handles.users().send(msg).await??;
    audit(
        state,
        actor,
        "token.revoke",
        Some(record.id.clone()),
        json!({}),
    )
    .await;
    Ok(record)
}

pub async fn rotate(
    state: &AppState,
    actor: &Actor,
    id: &str,
    owner: Option<String>,
    grace: Option<i64>,
) -> Result<(String, TokenRecord), ApiError> {
    let grace = grace.unwrap_or(DEFAULT_GRACE);
    if !(0..=MAX_GRACE).contains(&grace) {
        return Err(invalid("grace must be between 0 and 7 days"));
    }
    let msg = RotateToken {
        id: id.to_owned(),
        owner,
        grace: Duration::seconds(grace),
        now: state.handles.now(),
    };
    let (secret, record) = state
        .handles
        .users()
        .send(msg)
        .await?
        .map_err(locked_is_conflict)?;
    audit(
        state,
        actor,
        "token.rotate",
        Some(id.to_owned()),
        json!({"new": record.id, "grace": grace}),
    )
    .await;
    Ok((secret, record))
}

fn locked_is_conflict(e: GatehouseError) -> ApiError {
    match e {
        GatehouseError::AccountLocked => {
            ApiError::conflict("account_locked", "the token's user is locked")
        }
        GatehouseError::Conflict(c) if c == "token_not_active" => {
            ApiError::conflict("token_not_active", "only an active token can be rotated")
        }
        other => other.into(),
    }
}

/// What the caller may grant: their own scopes.
pub fn grantable(p: &Principal) -> crate::auth::Scopes {
    p.scopes
}

pub async fn user_by_name(state: &AppState, name: &str) -> Result<Arc<UserRecord>, ApiError> {
    Ok(state
        .handles
        .users()
        .send(GetUser {
            user: UserRef::Name(name.to_owned()),
        })
        .await??)
}

/// A token as the API shows it: never the secret.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[schema(as = Token)]
pub struct TokenView {
    /// The token's id (its JWT's `jti`).
    pub id: String,
    /// Always `api_token`.
    #[schema(inline)]
    pub object: TokenObject,
    pub name: String,
    /// The owner's username (`null` once the user is gone).
    #[schema(required = true)]
    pub user: Option<String>,
    pub user_id: String,
    /// `read`, `write`, `admin`.
    pub scopes: Vec<String>,
    /// The models it may call (`null`: any the user may).
    #[schema(required = true)]
    pub models: Option<Vec<String>>,
    /// CIDRs it may be used from (`null`: anywhere).
    #[schema(required = true)]
    pub allowed_ips: Option<Vec<String>>,
    /// Seconds of non-use after which it expires.
    #[schema(required = true)]
    pub max_idle: Option<i64>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub expires_at: String,
    pub status: TokenStatus,
    #[schema(required = true, format = DateTime)]
    pub last_used_at: Option<String>,
    /// The token this one replaced by rotation.
    #[schema(required = true)]
    pub rotated_from: Option<String>,
    /// A rotated token works until then.
    #[schema(required = true, format = DateTime)]
    pub grace_until: Option<String>,
    #[schema(required = true, format = DateTime)]
    pub revoked_at: Option<String>,
}

#[derive(Debug, Clone, Copy, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TokenObject {
    ApiToken,
}

/// A token just issued or rotated: the record plus the secret, shown once.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub record: TokenView,
    /// `gh_` and a compact JWS (EdDSA); never shown again.
    pub token: String,
}

pub fn view(
    state: &AppState,
    t: &TokenRecord,
    last_used: Option<time::OffsetDateTime>,
) -> TokenView {
    let now = state.handles.now();
    let username = state
        .handles
        .user_view()
        .get(&t.user_id)
        .map(|u| u.username.clone());
    TokenView {
        id: t.id.clone(),
        object: TokenObject::ApiToken,
        name: t.name.clone(),
        user: username,
        user_id: t.user_id.clone(),
        scopes: t.scopes.clone(),
        models: t.models.clone(),
        allowed_ips: t.allowed_ips.clone(),
        max_idle: t.max_idle,
        created_at: crate::rfc3339(t.created_at),
        expires_at: crate::rfc3339(t.expires_at),
        status: t.status(now, last_used),
        last_used_at: last_used.or(t.last_used_at).map(crate::rfc3339),
        rotated_from: t.rotated_from.clone(),
        grace_until: t.grace_until.map(crate::rfc3339),
        revoked_at: t.revoked_at.map(crate::rfc3339),
    }
}

pub fn info_view(state: &AppState, i: &TokenInfo) -> TokenView {
    view(state, &i.record, i.last_used_at)
}

/// The answer to a creation or rotation: the record plus the secret, once.
pub fn created_view(state: &AppState, secret: &str, t: &TokenRecord) -> CreatedToken {
    CreatedToken {
        record: view(state, t, None),
        token: secret.to_owned(),
    }
}
