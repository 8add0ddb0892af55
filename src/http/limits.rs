//! Rate limits and budgets (admin): thin handlers over [`crate::limits`].

use crate::accounts::Actor;
use crate::auth::{client_ip, Principal};
use crate::error::{ApiError, ErrorBody};
use crate::limits::{self as svc, LimitsList, LimitsPut, LimitsView};
use crate::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use utoipa::ToSchema;

fn actor(req: &HttpRequest, state: &AppState, p: &Principal) -> Actor {
    Actor {
        id: Some(p.id.clone()),
        name: p.username.clone(),
        ip: client_ip(req, &state.config.server.trusted_proxies),
    }
}

/// What limits are set on.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)] // a path parameter's schema; the handlers match the string
pub enum SubjectKind {
    Users,
    Tokens,
}

/// `users/{name}` or `tokens/{id}` → the subject.
async fn subject(state: &AppState, kind: &str, id: &str) -> Result<String, ApiError> {
    match kind {
        "users" => svc::user_subject(state, id).await,
        "tokens" => svc::token_subject(state, id).await,
        _ => Err(ApiError::not_found("limits are set on users or tokens")),
    }
}

#[utoipa::path(get, path = "/admin/api/limits", tag = "limits", security(("bearer" = []), ("api_key" = []), ("session_cookie" = []), ("session_token" = [])),
    responses((status = 200, description = "The defaults and every override", body = LimitsList)))]
pub async fn list(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(svc::list(&state).await?))
}

#[utoipa::path(get, path = "/admin/api/limits/{kind}/{id}", tag = "limits", security(("bearer" = []), ("api_key" = []), ("session_cookie" = []), ("session_token" = [])),
    params(
        ("kind" = SubjectKind, Path, description = "`users` or `tokens`"),
        ("id" = String, Path, description = "A username, or a token's id"),
    ),
    responses(
        (status = 200, description = "Where the subject stands", body = LimitsView),
        (status = 404, description = "No such user or token (or kind)", body = ErrorBody),
    ))]
pub async fn get(
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let s = subject(&state, &path.0, &path.1).await?;
    Ok(HttpResponse::Ok().json(svc::view(&state, &s).await?))
}

#[utoipa::path(put, path = "/admin/api/limits/{kind}/{id}", tag = "limits", security(("bearer" = []), ("api_key" = []), ("session_cookie" = []), ("session_token" = [])),
    params(
        ("kind" = SubjectKind, Path, description = "`users` or `tokens`"),
        ("id" = String, Path, description = "A username, or a token's id"),
    ),
    request_body = LimitsPut,
    responses(
        (status = 200, description = "Set; where the subject stands now", body = LimitsView),
        (status = 404, description = "No such user or token (or kind)", body = ErrorBody),
        (status = 415, description = "Not `application/json`", body = ErrorBody),
        (status = 422, description = "An invalid value", body = ErrorBody),
    ))]
pub async fn put(
    req: HttpRequest,
    p: Principal,
    path: web::Path<(String, String)>,
    body: web::Json<LimitsPut>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let s = subject(&state, &path.0, &path.1).await?;
    let limits = body.into_inner().validate()?;
    svc::set(&state, &actor(&req, &state, &p), &s, Some(limits)).await?;
    Ok(HttpResponse::Ok().json(svc::view(&state, &s).await?))
}

#[utoipa::path(delete, path = "/admin/api/limits/{kind}/{id}", tag = "limits", security(("bearer" = []), ("api_key" = []), ("session_cookie" = []), ("session_token" = [])),
    params(
        ("kind" = SubjectKind, Path, description = "`users` or `tokens`"),
        ("id" = String, Path, description = "A username, or a token's id"),
    ),
    responses(
        (status = 204, description = "Cleared: the defaults apply"),
        (status = 404, description = "No such user or token (or kind)", body = ErrorBody),
    ))]
pub async fn delete(
    req: HttpRequest,
    p: Principal,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let s = subject(&state, &path.0, &path.1).await?;
    svc::set(&state, &actor(&req, &state, &p), &s, None).await?;
    Ok(HttpResponse::NoContent().finish())
}
