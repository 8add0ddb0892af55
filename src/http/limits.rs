//! Rate limits and budgets (admin): thin handlers over [`crate::limits`].

use crate::accounts::Actor;
use crate::auth::{client_ip, Principal};
use crate::error::ApiError;
use crate::limits::{self as svc, LimitsPut};
use crate::AppState;
use actix_web::{web, HttpRequest, HttpResponse};

fn actor(req: &HttpRequest, state: &AppState, p: &Principal) -> Actor {
    Actor {
        id: Some(p.id.clone()),
        name: p.username.clone(),
        ip: client_ip(req, &state.config.server.trusted_proxies),
    }
}

/// `users/{name}` or `tokens/{id}` → the subject.
async fn subject(state: &AppState, kind: &str, id: &str) -> Result<String, ApiError> {
    match kind {
        "users" => svc::user_subject(state, id).await,
        "tokens" => svc::token_subject(state, id).await,
        _ => Err(ApiError::not_found("limits are set on users or tokens")),
    }
}

pub async fn list(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(svc::list(&state).await?))
}

pub async fn get(
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let s = subject(&state, &path.0, &path.1).await?;
    Ok(HttpResponse::Ok().json(svc::view(&state, &s).await?))
}

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
