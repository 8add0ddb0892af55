//! Provider management (API.md "Admin", providers): thin handlers over
//! [`crate::providers`]. Keys go in, never out.

use crate::accounts::Actor;
use crate::auth::client_ip;
use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody};
use crate::http::List;
use crate::providers::{self as svc, AliasPut, ProfilePut, ProviderPut};
use crate::providers::{AliasView, ProviderView, SavedProfile};
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

fn saved(created: bool, body: impl serde::Serialize) -> HttpResponse {
    if created {
        HttpResponse::Created().json(body)
    } else {
        HttpResponse::Ok().json(body)
    }
}

#[utoipa::path(get, path = "/admin/api/providers", tag = "providers", security(("bearer" = []), ("api_key" = []), ("session_cookie" = []), ("session_token" = [])),
    responses((status = 200, description = "Every provider, from the config and the API", body = List<ProviderView>)))]
pub async fn list(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let data: Vec<_> = svc::list(&state).await?.iter().map(svc::view).collect();
    Ok(HttpResponse::Ok().json(List::of(data)))
}

#[utoipa::path(get, path = "/admin/api/providers/{name}", tag = "providers", security(("bearer" = []), ("api_key" = []), ("session_cookie" = []), ("session_token" = [])),
    params(("name" = String, Path, description = "The provider's name")),
    responses(
        (status = 200, description = "The provider", body = ProviderView),
        (status = 404, description = "No such provider", body = ErrorBody),
    ))]
pub async fn get(
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(svc::view(&svc::get(&state, &path).await?)))
}

#[utoipa::path(put, path = "/admin/api/providers/{name}", tag = "providers", security(("bearer" = []), ("api_key" = []), ("session_cookie" = []), ("session_token" = [])),
    params(("name" = String, Path, description = "The provider's name")),
    request_body = ProviderPut,
    responses(
        (status = 200, description = "Changed (its profiles are kept)", body = ProviderView),
        (status = 201, description = "Added", body = ProviderView),
        (status = 409, description = "`config_provider`: defined in the config file", body = ErrorBody),
        (status = 415, description = "Not `application/json`", body = ErrorBody),
        (status = 422, description = "`egress_denied` or an invalid value", body = ErrorBody),
    ))]
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

#[utoipa::path(delete, path = "/admin/api/providers/{name}", tag = "providers", security(("bearer" = []), ("api_key" = []), ("session_cookie" = []), ("session_token" = [])),
    params(("name" = String, Path, description = "The provider's name")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No such provider", body = ErrorBody),
        (status = 409, description = "`config_provider`: defined in the config file", body = ErrorBody),
    ))]
pub async fn delete(
    req: HttpRequest,
    p: Principal,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    svc::delete_provider(&state, &actor(&req, &state, &p), &path).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(get, path = "/admin/api/providers/{name}/models", tag = "providers", security(("bearer" = []), ("api_key" = []), ("session_cookie" = []), ("session_token" = [])),
    params(("name" = String, Path, description = "The provider's name")),
    responses(
        (status = 200, description = "The models the provider lists now, in its own ids", body = List<UpstreamModel>),
        (status = 404, description = "No such provider", body = ErrorBody),
        (status = 502, description = "`upstream_error`: the provider did not answer", body = ErrorBody),
    ))]
pub async fn upstream_models(
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let ids = svc::upstream_models(&state, &path).await?;
    let data: Vec<_> = ids.into_iter().map(|id| UpstreamModel { id }).collect();
    Ok(HttpResponse::Ok().json(List::of(data)))
}

#[utoipa::path(put, path = "/admin/api/providers/{name}/profiles/{profile}", tag = "providers", security(("bearer" = []), ("api_key" = []), ("session_cookie" = []), ("session_token" = [])),
    params(
        ("name" = String, Path, description = "The provider's name"),
        ("profile" = String, Path, description = "The profile's name"),
    ),
    request_body = ProfilePut,
    responses(
        (status = 200, description = "Changed (the key never comes back)", body = SavedProfile),
        (status = 201, description = "Added", body = SavedProfile),
        (status = 404, description = "No such provider", body = ErrorBody),
        (status = 415, description = "Not `application/json`", body = ErrorBody),
        (status = 422, description = "An invalid name, key, order or header", body = ErrorBody),
    ))]
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

#[utoipa::path(delete, path = "/admin/api/providers/{name}/profiles/{profile}", tag = "providers", security(("bearer" = []), ("api_key" = []), ("session_cookie" = []), ("session_token" = [])),
    params(
        ("name" = String, Path, description = "The provider's name"),
        ("profile" = String, Path, description = "The profile's name"),
    ),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No such profile", body = ErrorBody),
        (status = 409, description = "`config_provider`: a profile from the config file", body = ErrorBody),
    ))]
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

#[utoipa::path(put, path = "/admin/api/models/aliases/{alias}", tag = "providers", security(("bearer" = []), ("api_key" = []), ("session_cookie" = []), ("session_token" = [])),
    params(("alias" = String, Path, description = "The alias")),
    request_body = AliasPut,
    responses(
        (status = 200, description = "Changed", body = AliasView),
        (status = 201, description = "Added", body = AliasView),
        (status = 415, description = "Not `application/json`", body = ErrorBody),
        (status = 422, description = "An invalid alias or targets", body = ErrorBody),
    ))]
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

#[derive(serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DefaultPut {
    /// A model name (`provider/model` or an alias); empty: back to the config file's.
    model: String,
}

/// What `default` resolves to now.
#[derive(serde::Serialize, ToSchema)]
pub struct DefaultModel {
    pub default: String,
}

/// A model the provider lists, in its own id.
#[derive(serde::Serialize, ToSchema)]
pub struct UpstreamModel {
    pub id: String,
}

#[utoipa::path(put, path = "/admin/api/models/default", tag = "providers", security(("bearer" = []), ("api_key" = []), ("session_cookie" = []), ("session_token" = [])),
    request_body = DefaultPut,
    responses(
        (status = 200, description = "Set", body = DefaultModel),
        (status = 404, description = "`model_not_found`", body = ErrorBody),
        (status = 415, description = "Not `application/json`", body = ErrorBody),
    ))]
pub async fn put_default(
    req: HttpRequest,
    p: Principal,
    body: web::Json<DefaultPut>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    svc::set_default(&state, &actor(&req, &state, &p), &body.model).await?;
    Ok(HttpResponse::Ok().json(DefaultModel {
        default: body.into_inner().model,
    }))
}
