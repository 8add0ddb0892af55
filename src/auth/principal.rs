//! Who is making a request, and what they may do.

use crate::error::ApiError;
use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use gatehouse_actors::model::UserRecord;
use gatehouse_actors::TokenHash;
use std::collections::BTreeMap;
use std::future::{ready, Ready};
use std::sync::Arc;

/// `read`, `write`, `admin`; `admin` implies the other two.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Read,
    Write,
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        match s {
            "read" => Some(Scope::Read),
            "write" => Some(Scope::Write),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }
}

/// A small set of scopes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scopes(u8);

impl Scopes {
    pub const SIGNED_IN: Scopes = Scopes(0b011);
    pub const ALL: Scopes = Scopes(0b111);

    fn bit(s: Scope) -> u8 {
        1 << (s as u8)
    }

    pub fn with(self, s: Scope) -> Self {
        Scopes(self.0 | Self::bit(s))
    }

    pub fn and(self, other: Scopes) -> Self {
        Scopes(self.0 & other.0)
    }

    pub fn without(self, s: Scope) -> Self {
        Scopes(self.0 & !Self::bit(s))
    }

    /// Whether these scopes allow `s` (`admin` allows everything).
    pub fn allows(self, s: Scope) -> bool {
        self.0 & Self::bit(s) != 0 || self.0 & Self::bit(Scope::Admin) != 0
    }

    pub fn names(self) -> Vec<&'static str> {
        [Scope::Read, Scope::Write, Scope::Admin]
            .into_iter()
            .filter(|s| self.0 & Self::bit(*s) != 0)
            .map(Scope::as_str)
            .collect()
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(it: I) -> Self {
        it.into_iter().fold(Scopes::default(), Scopes::with)
    }
}

/// How a principal was authenticated.
#[derive(Debug, Clone)]
pub enum Via {
    /// A session cookie or `X-Session-Token`.
    Session { id: String, token_hash: TokenHash },
    /// A gateway API token (`gh_…`), by its id.
    Token { id: String },
    /// A bearer token accepted by an `[[auth.bearer]]` validator.
    External { method: &'static str },
    /// No authentication configured, on loopback, with `allow_anonymous_local`.
    LocalAnonymous,
}

#[derive(Debug, Clone)]
pub struct Principal {
    pub id: String,
    pub username: String,
    pub roles: Vec<String>,
    pub scopes: Scopes,
    pub attributes: BTreeMap<String, Vec<String>>,
    pub via: Via,
    /// The user record behind the principal, when there is one.
    pub user: Option<Arc<UserRecord>>,
    /// The models this credential may call (`None`: no restriction of its own).
    pub models: Option<Arc<[String]>>,
}

impl Principal {
    /// What a signed-in user may do: `read` and `write`, and `admin` with the Admin role.
    pub fn user_scopes(user: &UserRecord) -> Scopes {
        if user.is_admin() {
            Scopes::ALL
        } else {
            Scopes::SIGNED_IN
        }
    }

    fn of_user(
        user: Arc<UserRecord>,
        scopes: Scopes,
        via: Via,
        models: Option<Arc<[String]>>,
    ) -> Self {
        Principal {
            id: user.id.clone(),
            username: user.username.clone(),
            roles: user.roles.clone(),
            scopes,
            attributes: BTreeMap::new(),
            via,
            user: Some(user),
            models,
        }
    }

    pub fn from_session(user: Arc<UserRecord>, id: String, token_hash: TokenHash) -> Self {
        let scopes = Self::user_scopes(&user);
        Self::of_user(user, scopes, Via::Session { id, token_hash }, None)
    }

    /// A gateway token's principal: the token's scopes, capped by what its
    /// user may do now (a user who lost the Admin role loses `admin`).
    pub fn from_token(user: Arc<UserRecord>, token: &gatehouse_actors::model::TokenRecord) -> Self {
        let cap = Self::user_scopes(&user);
        let scopes = token
            .scopes
            .iter()
            .filter_map(|s| Scope::parse(s))
            .filter(|s| cap.allows(*s))
            .collect();
        let models = token.models.as_ref().map(|m| m.clone().into());
        Self::of_user(
            user,
            scopes,
            Via::Token {
                id: token.id.clone(),
            },
            models,
        )
    }

    /// What a user may do when signed in (for listing on their behalf).
    pub fn as_user(user: Arc<UserRecord>) -> Self {
        let scopes = Self::user_scopes(&user);
        Self::of_user(user, scopes, Via::LocalAnonymous, None)
    }

    pub fn local_admin() -> Self {
        Principal {
            id: "local".into(),
            username: "local".into(),
            roles: vec![gatehouse_actors::model::ADMIN_ROLE.into()],
            scopes: Scopes::ALL,
            attributes: BTreeMap::new(),
            via: Via::LocalAnonymous,
            user: None,
            models: None,
        }
    }

    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.scopes.allows(scope) {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "insufficient_scope",
                format!("this credential lacks the `{}` scope", scope.as_str()),
            ))
        }
    }

    pub fn is_admin(&self) -> bool {
        self.scopes.allows(Scope::Admin)
    }

    /// The session this request came with, if any.
    pub fn session_hash(&self) -> Option<TokenHash> {
        match &self.via {
            Via::Session { token_hash, .. } => Some(*token_hash),
            _ => None,
        }
    }
}

/// Why a request has no principal: the extractor's 401 says so.
#[derive(Debug, Clone)]
pub enum Unauthenticated {
    /// No user and no other method yet: say how to add the first user.
    NoUsersYet,
    /// A credential was sent and refused; the message names the method,
    /// never why this one failed.
    Refused {
        code: &'static str,
        message: std::borrow::Cow<'static, str>,
    },
}

impl Unauthenticated {
    pub fn error(&self) -> ApiError {
        match self {
            Unauthenticated::NoUsersYet => no_users_error(),
            Unauthenticated::Refused { code, message } => {
                ApiError::unauthorized(code, message.clone())
            }
        }
    }
}

impl FromRequest for Principal {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let ext = req.extensions();
        ready(match ext.get::<Principal>() {
            Some(p) => Ok(p.clone()),
            None => Err(ext
                .get::<Unauthenticated>()
                .map_or_else(ApiError::unauthenticated, Unauthenticated::error)),
        })
    }
}

pub fn no_users_error() -> ApiError {
    ApiError::unauthorized(
        "no_users",
        "authentication is not set up yet: add the first user with `gatehouse users add admin`",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_implies_all() {
        let admin: Scopes = [Scope::Admin].into_iter().collect();
        assert!(admin.allows(Scope::Read) && admin.allows(Scope::Write));
        let rw = Scopes::SIGNED_IN;
        assert!(rw.allows(Scope::Read) && rw.allows(Scope::Write) && !rw.allows(Scope::Admin));
        assert_eq!(Scopes::default().names(), Vec::<&str>::new());
        assert!(!Scopes::default().allows(Scope::Read));
    }
}
