//! The admin API (API.md "Admin"): Admin role or `admin` scope, enforced for
//! the whole scope by `RequireScope`. Thin: each handler calls the shared
//! account operations or one actor message.

use crate::accounts::{self, Actor};
use crate::auth::{client_ip, Principal};
use crate::error::ApiError;
use crate::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use gatehouse_actors::model::{TokenStatus, UserRecord};
use gatehouse_actors::session::{EndSessionById, ListSessions, SessionInfo};
use gatehouse_actors::store::EndSessions;
use gatehouse_actors::tokens::ListTokens;
use gatehouse_actors::users::{ListAudit, UserRef};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

fn actor(req: &HttpRequest, state: &AppState, p: &Principal) -> Actor {
    Actor {
        id: Some(p.id.clone()),
        name: p.username.clone(),
        ip: client_ip(req, &state.config.server.trusted_proxies),
    }
}

fn list(data: Vec<Value>) -> HttpResponse {
    HttpResponse::Ok().json(json!({"object": "list", "data": data}))
}

async fn user_named(state: &AppState, name: &str) -> Result<std::sync::Arc<UserRecord>, ApiError> {
    crate::tokens::user_by_name(state, name)
        .await
        .map_err(|e| match e.status.as_u16() {
            404 => ApiError::not_found("no such user"),
            _ => e,
        })
}

// --- users ----------------------------------------------------------------

pub async fn users(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let all = accounts::list_users(&state).await?;
    Ok(list(all.iter().map(|u| json!(u.view())).collect()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    username: String,
    password: String,
    #[serde(default)]
    admin: bool,
}

pub async fn create_user(
    req: HttpRequest,
    p: Principal,
    body: web::Json<NewUser>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let b = body.into_inner();
    let (user, _) = accounts::add_user(
        &state,
        &actor(&req, &state, &p),
        &b.username,
        &b.password,
        b.admin,
        false,
    )
    .await?;
    Ok(HttpResponse::Created().json(user.view()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPassword {
    password: String,
}

/// Sets a user's password and ends all their sessions.
pub async fn set_password(
    req: HttpRequest,
    p: Principal,
    name: web::Path<String>,
    body: web::Json<NewPassword>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let user = user_named(&state, &name).await?;
    accounts::set_password(
        &state,
        &actor(&req, &state, &p),
        UserRef::Id(user.id.clone()),
        &body.password,
        None,
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LockBody {
    reason: Option<String>,
}

/// Not yourself, and not another admin (409).
pub async fn lock(
    req: HttpRequest,
    p: Principal,
    name: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = crate::http::read_body(payload, state.config.server.max_body_bytes).await?;
    let body: LockBody = crate::http::optional_json(&body)?;
    let target = user_named(&state, &name).await?;
    if target.id == p.id {
        return Err(ApiError::conflict(
            "cannot_lock_self",
            "you cannot lock yourself",
        ));
    }
    if target.is_admin() {
        return Err(ApiError::conflict(
            "cannot_lock_admin",
            "an admin cannot be locked; take the Admin role first",
        ));
    }
    let reason = body.reason;
    let user =
        accounts::lock_user(&state, &actor(&req, &state, &p), &target.username, reason).await?;
    Ok(HttpResponse::Ok().json(user.view()))
}

pub async fn unlock(
    req: HttpRequest,
    p: Principal,
    name: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let target = user_named(&state, &name).await?;
    let user = accounts::unlock_user(&state, &actor(&req, &state, &p), &target.username).await?;
    Ok(HttpResponse::Ok().json(user.view()))
}

pub async fn delete_user(
    req: HttpRequest,
    p: Principal,
    name: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let target = user_named(&state, &name).await?;
    if target.id == p.id {
        return Err(ApiError::conflict(
            "cannot_delete_self",
            "you cannot delete yourself",
        ));
    }
    accounts::remove_user(&state, &actor(&req, &state, &p), &target.username).await?;
    Ok(HttpResponse::NoContent().finish())
}

// --- sessions -------------------------------------------------------------

/// A session row: never the token; `user` and `user_id`.
pub fn session_view(state: &AppState, s: &SessionInfo) -> Value {
    let user = state
        .handles
        .user_view()
        .get(&s.user_id)
        .map(|u| u.username.clone());
    json!({
        "id": s.id, "user": user, "user_id": s.user_id, "via": s.via,
        "created_at": crate::rfc3339(s.created_at), "expires_at": crate::rfc3339(s.expires_at),
        "last_seen_at": crate::rfc3339(s.last_seen_at), "ip": s.ip, "user_agent": s.user_agent,
    })
}

#[derive(Deserialize)]
pub struct UserFilter {
    user: Option<String>,
}

async fn sessions_of(state: &AppState, user: Option<&str>) -> Result<Vec<SessionInfo>, ApiError> {
    let user_id = match user {
        Some(name) => Some(user_named(state, name).await?.id.clone()),
        None => None,
    };
    Ok(state
        .handles
        .sessions()
        .send(ListSessions {
            user_id,
            now: state.handles.now(),
        })
        .await??)
}

pub async fn sessions(
    q: web::Query<UserFilter>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let all = sessions_of(&state, q.user.as_deref()).await?;
    Ok(list(all.iter().map(|s| session_view(&state, s)).collect()))
}

pub async fn delete_session(
    req: HttpRequest,
    p: Principal,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    state
        .handles
        .sessions()
        .send(EndSessionById {
            id: id.to_string(),
            owner: None,
        })
        .await??;
    accounts::audit(
        &state,
        &actor(&req, &state, &p),
        "session.revoke",
        Some(id.into_inner()),
        json!({}),
    )
    .await;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeUser {
    username: String,
}

pub async fn revoke_user_sessions(
    req: HttpRequest,
    p: Principal,
    body: web::Json<RevokeUser>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let user = user_named(&state, &body.username).await?;
    let msg = gatehouse_actors::session::EndUserSessions {
        user_id: user.id.clone(),
        end: EndSessions::All,
    };
    let n = state.handles.sessions().send(msg).await??;
    accounts::audit(
        &state,
        &actor(&req, &state, &p),
        "session.revoke",
        Some(user.username.clone()),
        json!({"deleted_count": n}),
    )
    .await;
    Ok(HttpResponse::Ok().json(json!({"deleted_count": n})))
}

pub async fn session_stats(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let all = sessions_of(&state, None).await?;
    let mut per_user: BTreeMap<String, u64> = BTreeMap::new();
    for s in &all {
        let name = state
            .handles
            .user_view()
            .get(&s.user_id)
            .map_or_else(|| s.user_id.clone(), |u| u.username.clone());
        *per_user.entry(name).or_default() += 1;
    }
    Ok(HttpResponse::Ok().json(json!({"total_sessions": all.len(), "unique_users": per_user.len(), "user_sessions": per_user})))
}

// --- tokens ---------------------------------------------------------------

pub async fn tokens(
    q: web::Query<UserFilter>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let user_id = match q.user.as_deref() {
        Some(name) => Some(user_named(&state, name).await?.id.clone()),
        None => None,
    };
    let all = state.handles.users().send(ListTokens { user_id }).await??;
    Ok(list(
        all.iter()
            .map(|t| crate::tokens::info_view(&state, t))
            .collect(),
    ))
}

pub async fn token_stats(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let all = state
        .handles
        .users()
        .send(ListTokens { user_id: None })
        .await??;
    let now = state.handles.now();
    let count = |want: TokenStatus| {
        all.iter()
            .filter(|t| t.record.status(now, t.last_used_at) == want)
            .count()
    };
    Ok(HttpResponse::Ok().json(json!({
        "total": all.len(), "active": count(TokenStatus::Active), "expired": count(TokenStatus::Expired), "revoked": count(TokenStatus::Revoked),
    })))
}

// --- audit and config -----------------------------------------------------

#[derive(Deserialize)]
pub struct AuditQuery {
    user: Option<String>,
    action: Option<String>,
    since: Option<String>,
    format: Option<String>,
    limit: Option<usize>,
}

/// Newest first; `?format=jsonl` for export.
pub async fn audit(
    q: web::Query<AuditQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let since = match q.since.as_deref() {
        Some(s) => Some(
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .map_err(|_| {
                    ApiError::unprocessable("invalid_value", "since must be an RFC 3339 time")
                })?,
        ),
        None => None,
    };
    let limit = q.limit.unwrap_or(1000).clamp(1, 10_000);
    let events = state
        .handles
        .users()
        .send(ListAudit { limit: 100_000 })
        .await??;
    let wanted = events
        .into_iter()
        .filter(|e| q.action.as_ref().is_none_or(|a| &e.action == a))
        .filter(|e| {
            q.user
                .as_ref()
                .is_none_or(|u| &e.actor_name == u || e.target.as_ref() == Some(u))
        })
        .filter(|e| since.is_none_or(|t| e.at >= t))
        .take(limit);
    if q.format.as_deref() == Some("jsonl") {
        let mut body = String::new();
        for e in wanted {
            body.push_str(&serde_json::to_string(&e).unwrap_or_default());
            body.push('\n');
        }
        return Ok(HttpResponse::Ok()
            .content_type("application/x-ndjson")
            .body(body));
    }
    Ok(list(wanted.map(|e| json!(e)).collect()))
}

pub async fn config(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(state.config.redacted_json())
}
