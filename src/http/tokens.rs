//! API tokens (API.md "API tokens").

use crate::accounts::Actor;
use crate::auth::{client_ip, Principal};
use crate::error::ApiError;
use crate::tokens::{self as svc, NewToken};
use crate::AppState;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use gatehouse_actors::tokens::{GetToken, ListTokens};
use serde::Deserialize;
use serde_json::json;

fn actor(req: &HttpRequest, state: &AppState, p: &Principal) -> Actor {
    Actor {
        id: Some(p.id.clone()),
        name: p.username.clone(),
        ip: client_ip(req, &state.config.server.trusted_proxies),
    }
}

fn user_of(p: &Principal) -> Result<&gatehouse_actors::model::UserRecord, ApiError> {
    p.user
        .as_deref()
        .ok_or_else(|| ApiError::forbidden("no_user", "tokens belong to users; add a user first"))
}

/// Whose tokens the caller may act on: their own, or any for an admin.
fn owner_filter(p: &Principal) -> Option<String> {
    (!p.is_admin()).then(|| p.id.clone())
}

pub async fn create(
    req: HttpRequest,
    principal: Principal,
    body: web::Json<NewToken>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    crate::edge::auth_rate(&req, &state)?;
    principal.require(crate::auth::Scope::Write)?;
    let user = user_of(&principal)?;
    let spec = body.into_inner().validate(svc::grantable(&principal))?;
    let (secret, record) = svc::issue(&state, &actor(&req, &state, &principal), user, spec).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(svc::created_view(&state, &secret, &record)))
}

pub async fn list(
    principal: Principal,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let user = user_of(&principal)?;
    let tokens = state
        .handles
        .users()
        .send(ListTokens {
            user_id: Some(user.id.clone()),
        })
        .await??;
    let data: Vec<_> = tokens.iter().map(|t| svc::info_view(&state, t)).collect();
    Ok(HttpResponse::Ok().json(json!({"object": "list", "data": data})))
}

pub async fn get(
    principal: Principal,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let owner = Some(user_of(&principal)?.id.clone()).filter(|_| !principal.is_admin());
    let t = state
        .handles
        .users()
        .send(GetToken {
            id: id.into_inner(),
            owner,
        })
        .await??;
    Ok(HttpResponse::Ok().json(svc::info_view(&state, &t)))
}

pub async fn revoke(
    req: HttpRequest,
    principal: Principal,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    principal.require(crate::auth::Scope::Write)?;
    user_of(&principal)?;
    svc::revoke(
        &state,
        &actor(&req, &state, &principal),
        &id,
        owner_filter(&principal),
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RotateBody {
    grace: Option<i64>,
}

/// `{"grace": seconds}`; an empty body takes the default (1 h).
pub async fn rotate(
    req: HttpRequest,
    principal: Principal,
    id: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    crate::edge::auth_rate(&req, &state)?;
    let body = crate::http::read_body(payload, state.config.server.max_body_bytes).await?;
    principal.require(crate::auth::Scope::Write)?;
    user_of(&principal)?;
    let body: RotateBody = crate::http::optional_json(&body)?;
    let (secret, record) = svc::rotate(
        &state,
        &actor(&req, &state, &principal),
        &id,
        owner_filter(&principal),
        body.grace,
    )
    .await?;
    Ok(HttpResponse::Created()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(svc::created_view(&state, &secret, &record)))
}

/// The public keys that sign gateway tokens.
pub async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(state.handles.keyring().load().jwks())
}
