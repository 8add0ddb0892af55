//! The signed-in user's own account (API.md "Account").

use crate::accounts::{self, Actor};
use crate::auth::{client_ip, Principal, Via};
use crate::error::{ApiError, ErrorBody};
use crate::http::admin::{Deleted, SessionView};
use crate::http::List;
use crate::password::check_strength;
use crate::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use gatehouse_actors::model::{LastLogin, Lock, UserView};
use gatehouse_actors::session::{EndSessionById, EndUserSessions, ListSessions};
use gatehouse_actors::store::EndSessions;
use gatehouse_actors::users::{BeginLogin, FinishLogin, UserRef};
use gatehouse_actors::GatehouseError;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// `GET /account/api/me`: a user, or a principal without a user record.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum Me {
    User(UserView),
    Principal(PrincipalView),
}

/// A principal without a user record: the local admin
/// (`auth.allow_anonymous_local`) or a bearer token of an external
/// validator. Shaped as a `User` whose record fields are `null`, with its
/// attributes and scopes.
#[derive(Serialize, ToSchema)]
pub struct PrincipalView {
    pub id: String,
    pub username: String,
    #[schema(required = true)]
    pub display_name: Option<String>,
    #[schema(required = true)]
    pub avatar_url: Option<String>,
    pub roles: Vec<String>,
    /// How it authenticated: `local`, or the external method (`jwks`, …).
    pub auth: &'static str,
    #[schema(required = true)]
    pub created_at: Option<String>,
    #[schema(required = true, value_type = Option<LastLogin>)]
    pub last_login: Option<LastLogin>,
    #[schema(required = true, value_type = Option<Lock>)]
    pub locked: Option<Lock>,
    pub attributes: BTreeMap<String, Vec<String>>,
    pub scopes: Vec<&'static str>,
}

#[utoipa::path(get, path = "/account/api/me", tag = "account", security(("bearer" = []), ("api_key" = []), ("session_cookie" = []), ("session_token" = [])),
    responses((status = 200, description = "The caller", body = Me)))]
pub async fn me(principal: Principal) -> Result<HttpResponse, ApiError> {
    if let Some(u) = &principal.user {
        return Ok(HttpResponse::Ok().json(Me::User(u.view())));
    }
    // A principal without a user record here: the local admin, or a bearer
    // token accepted by an external validator.
    let auth = match principal.via {
        Via::External { method } => method,
        _ => "local",
    };
    Ok(HttpResponse::Ok().json(Me::Principal(PrincipalView {
        id: principal.id,
        username: principal.username,
        display_name: None,
        avatar_url: None,
        roles: principal.roles,
        auth,
        created_at: None,
        last_login: None,
        locked: None,
        attributes: principal.attributes,
        scopes: principal.scopes.names(),
    })))
}

#[derive(Deserialize, ToSchema)]
pub struct PasswordChange {
    current: String,
    /// At least 12 characters, at most 1024 bytes.
    #[schema(min_length = 12, max_length = 1024)]
    new: String,
}

/// Changes the caller's own password: ends their other sessions, keeps this one.
/// A wrong `current` counts as a failed sign-in for throttling.
#[utoipa::path(post, path = "/account/api/password", tag = "account", security(("bearer" = []), ("api_key" = []), ("session_cookie" = []), ("session_token" = [])),
    request_body = PasswordChange,
    responses(
        (status = 204, description = "Changed; the caller's other sessions are ended"),
        (status = 403, description = "`invalid_current_password`, or `no_password` for an account without one", body = ErrorBody),
        (status = 415, description = "Not `application/json`", body = ErrorBody),
        (status = 422, description = "`weak_password`: shorter than 12 characters", body = ErrorBody),
        (status = 429, description = "`too_many_attempts`: a wrong `current` counts as a failed sign-in, and throttles as one",
            body = ErrorBody, headers(("retry-after" = String))),
    ))]
pub async fn change_password(
    req: HttpRequest,
    principal: Principal,
    body: web::Json<PasswordChange>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let user = principal
        .user
        .clone()
        .ok_or_else(|| ApiError::forbidden("no_password", "this account has no password"))?;
    let ip = client_ip(&req, &state.config.server.trusted_proxies);
    let now = state.handles.now();
    let begin = BeginLogin {
        username: user.username.clone(),
        ip,
        now,
    };
    let current = state
        .handles
        .users()
        .send(begin)
        .await??
        .ok_or_else(ApiError::unauthenticated)?;
    check_strength(&body.new).map_err(|m| ApiError::unprocessable("weak_password", m))?;
    let stored = current
        .password
        .as_ref()
        .ok_or_else(|| ApiError::forbidden("no_password", "this account has no password"))?;
    let ok = body.current.len() <= crate::password::MAX_PASSWORD_LEN
        && state.hasher.verify(&body.current, Some(stored)).await?.ok;
    if !ok {
        let fail = FinishLogin {
            username: user.username.clone(),
            user_id: None,
            password_ok: false,
            upgrade: None,
            ip,
            now,
        };
        let _ = state.handles.users().send(fail).await?;
        return Err(ApiError::forbidden(
            "invalid_current_password",
            "the current password is not correct",
        ));
    }
    let actor = Actor {
        id: Some(user.id.clone()),
        name: user.username.clone(),
        ip,
    };
    accounts::set_password(
        &state,
        &actor,
        UserRef::Id(user.id.clone()),
        &body.new,
        principal.session_hash(),
    )
    .await
    .map_err(|e| match e.status.as_u16() {
        404 => GatehouseError::Unauthenticated.into(),
        _ => e,
    })?;
    Ok(HttpResponse::NoContent().finish())
}

/// The caller's sessions, with `"current": true` on this one.
#[utoipa::path(get, path = "/account/api/sessions", tag = "account", security(("bearer" = []), ("api_key" = []), ("session_cookie" = []), ("session_token" = [])),
    responses(
        (status = 200, description = "The caller's sessions", body = List<SessionView>),
        (status = 403, description = "`no_user`: the principal has no user record", body = ErrorBody),
    ))]
pub async fn sessions(
    principal: Principal,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let user = principal
        .user
        .as_ref()
        .ok_or_else(|| ApiError::forbidden("no_user", "sessions belong to users"))?;
    let msg = ListSessions {
        user_id: Some(user.id.clone()),
        now: state.handles.now(),
    };
    let all = state.handles.sessions().send(msg).await??;
    let current = principal.session_hash();
    let data: Vec<_> = all
        .iter()
        .map(|s| SessionView {
            current: Some(Some(s.token_hash) == current),
            ..SessionView::of(&state, s)
        })
        .collect();
    Ok(HttpResponse::Ok().json(List::of(data)))
}

/// Ends one of the caller's sessions (another user's is `404`).
#[utoipa::path(delete, path = "/account/api/sessions/{id}", tag = "account", security(("bearer" = []), ("api_key" = []), ("session_cookie" = []), ("session_token" = [])),
    params(("id" = String, Path, description = "The session's id (not its token)")),
    responses(
        (status = 204, description = "Ended"),
        (status = 403, description = "`no_user`", body = ErrorBody),
        (status = 404, description = "No such session of the caller's", body = ErrorBody),
    ))]
pub async fn delete_session(
    req: HttpRequest,
    principal: Principal,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let user = principal
        .user
        .as_ref()
        .ok_or_else(|| ApiError::forbidden("no_user", "sessions belong to users"))?;
    let msg = EndSessionById {
        id: id.to_string(),
        owner: Some(user.id.clone()),
    };
    state.handles.sessions().send(msg).await??;
    let actor = Actor {
        id: Some(user.id.clone()),
        name: user.username.clone(),
        ip: client_ip(&req, &state.config.server.trusted_proxies),
    };
    accounts::audit(
        &state,
        &actor,
        "session.revoke",
        Some(id.into_inner()),
        json!({}),
    )
    .await;
    Ok(HttpResponse::NoContent().finish())
}

/// Ends every session of the caller but this one.
#[utoipa::path(post, path = "/account/api/sessions/revoke-others", tag = "account", security(("bearer" = []), ("api_key" = []), ("session_cookie" = []), ("session_token" = [])),
    responses(
        (status = 200, description = "How many sessions ended", body = Deleted),
        (status = 403, description = "`no_user`", body = ErrorBody),
    ))]
pub async fn revoke_others(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let user = principal
        .user
        .as_ref()
        .ok_or_else(|| ApiError::forbidden("no_user", "sessions belong to users"))?;
    let end = principal
        .session_hash()
        .map_or(EndSessions::All, EndSessions::AllBut);
    let n = state
        .handles
        .sessions()
        .send(EndUserSessions {
            user_id: user.id.clone(),
            end,
        })
        .await??;
    let actor = Actor {
        id: Some(user.id.clone()),
        name: user.username.clone(),
        ip: client_ip(&req, &state.config.server.trusted_proxies),
    };
    accounts::audit(
        &state,
        &actor,
        "session.revoke",
        Some(user.username.clone()),
        json!({"deleted_count": n}),
    )
    .await;
    Ok(HttpResponse::Ok().json(Deleted { deleted_count: n }))
}
