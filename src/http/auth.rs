//! Sign-in and sessions (API.md "Sign-in and sessions").

use crate::accounts::{audit, Actor};
use crate::auth::{client_ip, Principal, Via, SESSION_COOKIE};
use crate::error::{ApiError, ErrorBody};
use crate::http::List;
use crate::password::MAX_PASSWORD_LEN;
use crate::AppState;
use actix_web::cookie::{time::Duration as CookieDuration, Cookie, SameSite};
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use gatehouse_actors::model::UserView;
use gatehouse_actors::session::{CreateSession, EndSession};
use gatehouse_actors::users::{BeginLogin, FinishLogin};
use gatehouse_actors::GatehouseError;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
pub struct LoginRequest {
    username: String,
    password: String,
}

/// A successful sign-in (the session token is only in the cookie).
#[derive(Serialize, ToSchema)]
pub struct SignedIn {
    pub user: UserView,
}

/// The caller's session.
#[derive(Serialize, ToSchema)]
pub struct SessionNow {
    pub user: UserView,
    #[schema(format = DateTime)]
    pub expires_at: String,
}

/// A sign-in method that is on.
#[derive(Serialize, ToSchema)]
pub struct SignInMethod {
    /// `password`, `github` or `oidc:NAME`.
    pub id: String,
    pub name: String,
    /// `password`, `oauth` or `oidc`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Where the browser starts the sign-in (not for `password`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// Opens a session for `user` (after any sign-in) and audits it; answers
/// the secret token, which only ever goes into the cookie.
pub(crate) async fn open_session(
    req: &HttpRequest,
    state: &AppState,
    user: &gatehouse_actors::model::UserRecord,
    via: String,
    ttl: time::Duration,
    external_sid: Option<String>,
) -> Result<String, ApiError> {
    let ip = client_ip(req, &state.config.server.trusted_proxies);
    let ua = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let now = state.handles.now();
    let create = CreateSession {
        user_id: user.id.clone(),
        via: via.clone(),
        ttl,
        ip,
        user_agent: ua,
        external_sid,
        now,
    };
    let (token, _) = state.handles.sessions().send(create).await??;
    let actor = Actor {
        id: Some(user.id.clone()),
        name: user.username.clone(),
        ip,
    };
    audit(
        state,
        &actor,
        "auth.login.success",
        Some(user.username.clone()),
        json!({ "via": via }),
    )
    .await;
    Ok(token)
}

pub fn session_cookie(state: &AppState, token: &str, ttl: time::Duration) -> Cookie<'static> {
    Cookie::build(SESSION_COOKIE, token.to_owned())
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(state.config.server.secure_cookies)
        .max_age(CookieDuration::seconds(ttl.whole_seconds()))
        .finish()
}

fn cleared_cookie(state: &AppState) -> Cookie<'static> {
    let mut c = Cookie::build(SESSION_COOKIE, "")
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(state.config.server.secure_cookies)
        .finish();
    c.make_removal();
    c
}

/// Signs in with a username and password; the session goes into the
/// `gatehouse_session` cookie.
#[utoipa::path(post, path = "/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in; `Set-Cookie: gatehouse_session=…`", body = SignedIn,
            headers(("set-cookie" = String, description = "The session cookie"))),
        (status = 401, description = "`invalid_credentials` (or `no_users`)", body = ErrorBody),
        (status = 403, description = "`account_locked`, only after a correct password", body = ErrorBody),
        (status = 415, description = "Not `application/json`", body = ErrorBody),
        (status = 429, description = "Throttled; see `Retry-After`", body = ErrorBody,
            headers(("retry-after" = String))),
    ))]
#[tracing::instrument(skip_all)]
pub async fn login(
    req: HttpRequest,
    body: web::Json<LoginRequest>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    crate::edge::auth_rate(&req, &state)?;
    let LoginRequest { username, password } = body.into_inner();
    let ip = client_ip(&req, &state.config.server.trusted_proxies);
    let now = state.handles.now();
    let actor = Actor {
        id: None,
        name: username.chars().take(64).collect(),
        ip,
    };
    let users = state.handles.users();
    let candidate = match users
        .send(BeginLogin {
            username: username.clone(),
            ip,
            now,
        })
        .await?
    {
        Ok(c) => c,
        Err(e @ GatehouseError::Throttled { .. }) => {
            state.metrics.signin_throttled();
            audit(
                &state,
                &actor,
                "auth.throttled",
                Some(actor.name.clone()),
                json!({}),
            )
            .await;
            return Err(e.into());
        }
        Err(e) => return Err(e.into()),
    };
    // Unknown users, users without a password and oversized input all pay
    // for one Argon2id verify, against the dummy hash.
    let stored = candidate.as_ref().and_then(|u| u.password.as_ref());
    let plausible = password.len() <= MAX_PASSWORD_LEN && username.len() <= 256;
    let checked = if plausible { password.as_str() } else { "" };
    let verified = state
        .hasher
        .verify(checked, stored.filter(|_| plausible))
        .await?;
    let finish = FinishLogin {
        username,
        user_id: candidate.as_ref().map(|u| u.id.clone()),
        password_ok: verified.ok,
        upgrade: verified.upgrade,
        ip,
        now,
    };
    let user = match users.send(finish).await? {
        Ok(u) => u,
        Err(e) => {
            let reason = if matches!(e, GatehouseError::AccountLocked) {
                "locked"
            } else {
                "invalid_credentials"
            };
            let details = json!({ "reason": reason });
            audit(
                &state,
                &actor,
                "auth.login.failure",
                Some(actor.name.clone()),
                details,
            )
            .await;
            return Err(e.into());
        }
    };
    let ttl = state.config.auth.session_ttl;
    let token = open_session(&req, &state, &user, "password".into(), ttl, None).await?;
    Ok(HttpResponse::Ok()
        .cookie(session_cookie(&state, &token, ttl))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(SignedIn { user: user.view() }))
}

/// Ends the caller's session (if any) and clears the cookie.
#[utoipa::path(post, path = "/auth/logout", tag = "auth",
    security((), ("bearer" = []), ("api_key" = []), ("session_cookie" = []), ("session_token" = [])),
    responses((status = 204, description = "Signed out; the cookie is cleared")))]
pub async fn logout(
    req: HttpRequest,
    principal: Option<Principal>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if let Some(p) = principal {
        if let Via::Session { token_hash, .. } = p.via {
            state
                .handles
                .sessions()
                .send(EndSession { token_hash })
                .await??;
            let ip = client_ip(&req, &state.config.server.trusted_proxies);
            let actor = Actor {
                id: Some(p.id.clone()),
                name: p.username.clone(),
                ip,
            };
            audit(&state, &actor, "auth.logout", Some(p.username), json!({})).await;
        }
    }
    Ok(HttpResponse::NoContent()
        .cookie(cleared_cookie(&state))
        .finish())
}

/// The caller's session: a session credential only.
#[utoipa::path(get, path = "/auth/session", tag = "auth",
    security(("session_cookie" = []), ("session_token" = [])),
    responses((status = 200, description = "The session and its user", body = SessionNow)))]
pub async fn session(
    principal: Principal,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let Via::Session { token_hash, .. } = principal.via else {
        return Err(ApiError::unauthenticated());
    };
    let s = state
        .handles
        .session_view()
        .validate(&token_hash, state.handles.now())
        .ok_or_else(ApiError::unauthenticated)?;
    let user = principal.user.ok_or_else(ApiError::unauthenticated)?;
    Ok(HttpResponse::Ok().json(SessionNow {
        user: user.view(),
        expires_at: crate::rfc3339(s.record.expires_at),
    }))
}

/// Which sign-in methods are on (for the sign-in page).
#[utoipa::path(get, path = "/auth/providers", tag = "auth",
    responses((status = 200, description = "The sign-in methods", body = List<SignInMethod>)))]
pub async fn providers(state: web::Data<AppState>) -> HttpResponse {
    let auth = &state.config.auth;
    let mut list = vec![SignInMethod {
        id: "password".into(),
        name: "Password".into(),
        kind: "password",
        url: None,
    }];
    if auth.github.is_some() {
        list.push(SignInMethod {
            id: "github".into(),
            name: "GitHub".into(),
            kind: "oauth",
            url: Some("/auth/github".into()),
        });
    }
    for name in auth.oidc.keys() {
        list.push(SignInMethod {
            id: format!("oidc:{name}"),
            name: name.clone(),
            kind: "oidc",
            url: Some(format!("/auth/oidc/{name}")),
        });
    }
    HttpResponse::Ok().json(List::of(list))
}
