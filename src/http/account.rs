//! The signed-in user's own account (API.md "Account").

use crate::accounts::{self, Actor};
use crate::auth::{client_ip, Principal, Via};
use crate::error::ApiError;
use crate::password::check_strength;
use crate::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use gatehouse_actors::session::{EndSessionById, EndUserSessions, ListSessions};
use gatehouse_actors::store::EndSessions;
use gatehouse_actors::users::{BeginLogin, FinishLogin, UserRef};
use gatehouse_actors::GatehouseError;
use serde::Deserialize;
use serde_json::json;

pub async fn me(principal: Principal) -> Result<HttpResponse, ApiError> {
    if let Some(u) = &principal.user {
        return Ok(HttpResponse::Ok().json(u.view()));
    }
    // A principal without a user record here: the local admin, or a bearer
    // token accepted by an external validator.
    let auth = match principal.via {
        Via::External { method } => method,
        _ => "local",
    };
    Ok(HttpResponse::Ok().json(json!({
        "id": principal.id, "username": principal.username, "display_name": null,
        "avatar_url": null, "roles": principal.roles, "auth": auth,
        "created_at": null, "last_login": null, "locked": null,
        "attributes": principal.attributes, "scopes": principal.scopes.names(),
    })))
}

#[derive(Deserialize)]
pub struct PasswordChange {
    current: String,
    new: String,
}

/// Changes the caller's own password: ends their other sessions, keeps this one.
/// A wrong `current` counts as a failed sign-in for throttling.
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
        .map(|s| {
            let mut v = crate::http::admin::session_view(&state, s);
            v["current"] = json!(Some(s.token_hash) == current);
            v
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({"object": "list", "data": data})))
}

/// Ends one of the caller's sessions (another user's is `404`).
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
    Ok(HttpResponse::Ok().json(json!({"deleted_count": n})))
}
