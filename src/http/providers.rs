//! Provider management (API.md "Admin", providers): thin handlers over
//! [`crate::providers`]. Keys go in, never out.

use crate::accounts::Actor;
use crate::auth::client_ip;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::providers::{self as svc, AliasPut, ProfilePut, ProviderPut};
use crate::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

fn actor(req: &HttpRequest, state: &AppState, p: &Principal) -> Actor {
    Actor {
        id: Some(p.id.clone()),
        name: p.username.clone(),
        ip: client_ip(req, &state.config.server.trusted_proxies),
    }
}

fn saved(created: bool, body: serde_json::Value) -> HttpResponse {
    if created {
        HttpResponse::Created().json(body)
    } else {
        HttpResponse::Ok().json(body)
    }
}

pub async fn list(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let data: Vec<_> = svc::list(&state).await?.iter().map(svc::view).collect();
    Ok(HttpResponse::Ok().json(json!({"object": "list", "data": data})))
}

pub async fn get(
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(svc::view(&svc::get(&state, &path).await?)))
}

pub async fn put(
    req: HttpRequest,
    p: Principal,
    path: web::Path<String>,
    body: web::Json<ProviderPut>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let who = actor(&req, &state, &p);
    let (info, created) = svc::put_provider(&state, &who, &path, body.into_inner()).await?;
    Ok(saved(created, svc::view(&info)))
}

pub async fn delete(
    req: HttpRequest,
    p: Principal,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    svc::delete_provider(&state, &actor(&req, &state, &p), &path).await?;
    Ok(HttpResponse::NoContent().finish())
}

pub async fn upstream_models(
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let ids = svc::upstream_models(&state, &path).await?;
    let data: Vec<_> = ids.into_iter().map(|id| json!({"id": id})).collect();
    Ok(HttpResponse::Ok().json(json!({"object": "list", "data": data})))
}

pub async fn put_profile(
    req: HttpRequest,
    p: Principal,
    path: web::Path<(String, String)>,
    body: web::Json<ProfilePut>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (provider, profile) = path.into_inner();
    let who = actor(&req, &state, &p);
    let (view, created) =
        svc::put_profile(&state, &who, &provider, &profile, body.into_inner()).await?;
    Ok(saved(created, view))
}

pub async fn delete_profile(
    req: HttpRequest,
    p: Principal,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (provider, profile) = path.into_inner();
    svc::delete_profile(&state, &actor(&req, &state, &p), &provider, &profile).await?;
    Ok(HttpResponse::NoContent().finish())
}

pub async fn put_alias(
    req: HttpRequest,
    p: Principal,
    path: web::Path<String>,
    body: web::Json<AliasPut>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let who = actor(&req, &state, &p);
    let (view, created) = svc::put_alias(&state, &who, &path, body.into_inner()).await?;
    Ok(saved(created, view))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultPut {
    model: String,
}

pub async fn put_default(
    req: HttpRequest,
    p: Principal,
    body: web::Json<DefaultPut>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    svc::set_default(&state, &actor(&req, &state, &p), &body.model).await?;
    Ok(HttpResponse::Ok().json(json!({"default": body.model})))
}
