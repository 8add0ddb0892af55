//! The admin API (API.md "Admin"): Admin role or `admin` scope, enforced for
//! the whole scope by `RequireScope`. Thin: each handler calls the shared
//! account operations or one actor message.

use crate::accounts::{self, Actor};
use crate::auth::{client_ip, Principal};
use crate::error::{ApiError, ErrorBody};
use crate::http::List;
use crate::tokens::TokenView;
use crate::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use gatehouse_actors::model::{AuditEvent, UserView};
use gatehouse_actors::model::{TokenStatus, UserRecord};
use gatehouse_actors::session::{EndSessionById, ListSessions, SessionInfo};
use gatehouse_actors::store::EndSessions;
use gatehouse_actors::tokens::ListTokens;
use gatehouse_actors::users::{ListAudit, UserRef};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};

fn actor(req: &HttpRequest, state: &AppState, p: &Principal) -> Actor {
    Actor {
        id: Some(p.id.clone()),
        name: p.username.clone(),
        ip: client_ip(req, &state.config.server.trusted_proxies),
    }
}

fn list<T: serde::Serialize>(data: Vec<T>) -> HttpResponse {
    HttpResponse::Ok().json(List::of(data))
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

#[utoipa::path(get, path = "/admin/api/users", tag = "admin", security(("bearer" = []), ("api_key" = []), ("session_cookie" = []), ("session_token" = [])),
    responses((status = 200, description = "Every user", body = List<UserView>)))]
pub async fn users(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let all = accounts::list_users(&state).await?;
    Ok(list(all.iter().map(|u| u.view()).collect()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// 1 to 64 letters, digits, `.`, `_`, `-` or `@`.
    #[schema(pattern = "^[A-Za-z0-9._@-]{1,64}$")]
    username: String,
    /// At least 12 characters, at most 1024 bytes.
    #[schema(min_length = 12, max_length = 1024)]
    password: String,
    #[serde(default)]
    admin: bool,
}

#[utoipa::path(post, path = "/admin/api/users", tag = "admin", security(("bearer" = []), ("api_key" = []), ("session_cookie" = []), ("session_token" = [])),
    request_body = NewUser,
    responses(
        (status = 201, description = "Created", body = UserView),
        (status = 409, description = "`username_taken`", body = ErrorBody),
        (status = 415, description = "Not `application/json`", body = ErrorBody),
        (status = 422, description = "`invalid_username` or `weak_password`", body = ErrorBody),
    ))]
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

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPassword {
    /// At least 12 characters, at most 1024 bytes.
    #[schema(min_length = 12, max_length = 1024)]
    password: String,
}

/// Sets a user's password and ends all their sessions.
#[utoipa::path(put, path = "/admin/api/users/{name}/password", tag = "admin", security(("bearer" = []), ("api_key" = []), ("session_cookie" = []), ("session_token" = [])),
    params(("name" = String, Path, description = "The username")),
    request_body = NewPassword,
    responses(
        (status = 204, description = "Set; every session of the user ended"),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 415, description = "Not `application/json`", body = ErrorBody),
        (status = 422, description = "`weak_password`", body = ErrorBody),
    ))]
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

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LockBody {
    reason: Option<String>,
}

/// Not yourself, and not another admin (409).
#[utoipa::path(post, path = "/admin/api/users/{name}/lock", tag = "admin", security(("bearer" = []), ("api_key" = []), ("session_cookie" = []), ("session_token" = [])),
    params(("name" = String, Path, description = "The username")),
    request_body(content = Option<LockBody>, description = "Optional; an empty body locks without a reason"),
    responses(
        (status = 200, description = "Locked; the user's sessions ended", body = UserView),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 409, description = "`cannot_lock_self` or `cannot_lock_admin`", body = ErrorBody),
    ))]
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

#[utoipa::path(post, path = "/admin/api/users/{name}/unlock", tag = "admin", security(("bearer" = []), ("api_key" = []), ("session_cookie" = []), ("session_token" = [])),
    params(("name" = String, Path, description = "The username")),
    responses(
        (status = 200, description = "Unlocked", body = UserView),
        (status = 404, description = "No such user", body = ErrorBody),
    ))]
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

#[utoipa::path(delete, path = "/admin/api/users/{name}", tag = "admin", security(("bearer" = []), ("api_key" = []), ("session_cookie" = []), ("session_token" = [])),
    params(("name" = String, Path, description = "The username")),
    responses(
        (status = 204, description = "Removed, with their sessions and tokens"),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 409, description = "`cannot_delete_self`", body = ErrorBody),
    ))]
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
#[derive(Serialize, ToSchema)]
#[schema(as = Session)]
pub struct SessionView {
    /// The session's public id (not its token).
    pub id: String,
    /// The username (`null` once the user is gone).
    #[schema(required = true)]
    pub user: Option<String>,
    pub user_id: String,
    /// How it signed in: `password`, `github`, `oidc:NAME`.
    pub via: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub expires_at: String,
    #[schema(format = DateTime)]
    pub last_seen_at: String,
    #[schema(required = true, value_type = Option<String>)]
    pub ip: Option<std::net::IpAddr>,
    #[schema(required = true)]
    pub user_agent: Option<String>,
    /// In the caller's own list only: whether this is the session asking.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub current: Option<bool>,
}

impl SessionView {
    pub fn of(state: &AppState, s: &SessionInfo) -> Self {
        let user = state
            .handles
            .user_view()
            .get(&s.user_id)
            .map(|u| u.username.clone());
        SessionView {
            id: s.id.clone(),
            user,
            user_id: s.user_id.clone(),
            via: s.via.clone(),
            created_at: crate::rfc3339(s.created_at),
            expires_at: crate::rfc3339(s.expires_at),
            last_seen_at: crate::rfc3339(s.last_seen_at),
            ip: s.ip,
            user_agent: s.user_agent.clone(),
            current: None,
        }
    }
}

/// How many sessions a bulk revocation ended.
#[derive(Serialize, ToSchema)]
pub struct Deleted {
    pub deleted_count: u64,
}

/// Live sessions, in all and per username.
#[derive(Serialize, ToSchema)]
pub struct SessionStats {
    pub total_sessions: usize,
    pub unique_users: usize,
    pub user_sessions: BTreeMap<String, u64>,
}

/// Tokens by status.
#[derive(Serialize, ToSchema)]
pub struct TokenStats {
    pub total: usize,
    pub active: usize,
    pub expired: usize,
    pub revoked: usize,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserFilter {
    /// Only this user's (a username).
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

#[utoipa::path(get, path = "/admin/api/sessions", tag = "admin", security(("bearer" = []), ("api_key" = []), ("session_cookie" = []), ("session_token" = [])),
    params(UserFilter),
    responses(
        (status = 200, description = "Live sessions", body = List<SessionView>),
        (status = 404, description = "No such user", body = ErrorBody),
    ))]
pub async fn sessions(
    q: web::Query<UserFilter>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let all = sessions_of(&state, q.user.as_deref()).await?;
    Ok(list(
        all.iter().map(|s| SessionView::of(&state, s)).collect(),
    ))
}

#[utoipa::path(delete, path = "/admin/api/sessions/{id}", tag = "admin", security(("bearer" = []), ("api_key" = []), ("session_cookie" = []), ("session_token" = [])),
    params(("id" = String, Path, description = "The session's id")),
    responses(
        (status = 204, description = "Ended"),
        (status = 404, description = "No such session", body = ErrorBody),
    ))]
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

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeUser {
    username: String,
}

#[utoipa::path(post, path = "/admin/api/sessions/revoke-user", tag = "admin", security(("bearer" = []), ("api_key" = []), ("session_cookie" = []), ("session_token" = [])),
    request_body = RevokeUser,
    responses(
        (status = 200, description = "How many sessions ended", body = Deleted),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 415, description = "Not `application/json`", body = ErrorBody),
    ))]
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
    Ok(HttpResponse::Ok().json(Deleted { deleted_count: n }))
}

#[utoipa::path(get, path = "/admin/api/sessions/stats", tag = "admin", security(("bearer" = []), ("api_key" = []), ("session_cookie" = []), ("session_token" = [])),
    responses((status = 200, description = "Session counts", body = SessionStats)))]
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
    Ok(HttpResponse::Ok().json(SessionStats {
        total_sessions: all.len(),
        unique_users: per_user.len(),
        user_sessions: per_user,
    }))
}

// --- tokens ---------------------------------------------------------------

#[utoipa::path(get, path = "/admin/api/tokens", tag = "admin", security(("bearer" = []), ("api_key" = []), ("session_cookie" = []), ("session_token" = [])),
    params(UserFilter),
    responses(
        (status = 200, description = "Every token (never a secret), with its status", body = List<TokenView>),
        (status = 404, description = "No such user", body = ErrorBody),
    ))]
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

#[utoipa::path(get, path = "/admin/api/tokens/stats", tag = "admin", security(("bearer" = []), ("api_key" = []), ("session_cookie" = []), ("session_token" = [])),
    responses((status = 200, description = "Token counts by status", body = TokenStats)))]
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
    Ok(HttpResponse::Ok().json(TokenStats {
        total: all.len(),
        active: count(TokenStatus::Active),
        expired: count(TokenStatus::Expired),
        revoked: count(TokenStatus::Revoked),
    }))
}

// --- audit and config -----------------------------------------------------

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Events by or about this username.
    user: Option<String>,
    /// Only this action (`auth.login.success`, `user.lock`, …).
    action: Option<String>,
    /// RFC 3339; only events at or after it.
    since: Option<String>,
    /// `jsonl` for an export, one event per line.
    format: Option<String>,
    /// At most this many (1 to 10000, default 1000).
    limit: Option<usize>,
}

/// Newest first; `?format=jsonl` for export.
#[utoipa::path(get, path = "/admin/api/audit", tag = "admin", security(("bearer" = []), ("api_key" = []), ("session_cookie" = []), ("session_token" = [])),
    params(AuditQuery),
    responses(
        (status = 200, description = "Audit events, newest first",
            content(
                (List<AuditEvent> = "application/json"),
                (String = "application/x-ndjson"),
            )),
        (status = 422, description = "`since` is not an RFC 3339 time", body = ErrorBody),
    ))]
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
    Ok(list(wanted.collect()))
}

#[utoipa::path(get, path = "/admin/api/config", tag = "admin", security(("bearer" = []), ("api_key" = []), ("session_cookie" = []), ("session_token" = [])),
    responses((status = 200, description = "The effective config; every secret `***`", body = Object)))]
pub async fn config(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(state.config.redacted_json())
}
