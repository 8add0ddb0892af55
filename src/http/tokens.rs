//! API tokens (API.md "API tokens").

use crate::accounts::Actor;
use crate::auth::{client_ip, Principal};
use crate::error::{ApiError, ErrorBody};
use crate::http::List;
use crate::tokens::{self as svc, NewToken};
use crate::tokens::{CreatedToken, TokenView};
use crate::AppState;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use gatehouse_actors::keys::Jwks;
use gatehouse_actors::tokens::{GetToken, ListTokens};
use serde::Deserialize;
use utoipa::ToSchema;

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

#[utoipa::path(post, path = "/api/tokens", tag = "tokens", security(("bearer" = []), ("api_key" = []), ("session_cookie" = []), ("session_token" = [])),
    request_body = NewToken,
    responses(
        (status = 201, description = "Issued; `token` is shown only here", body = CreatedToken),
        (status = 403, description = "`scope_not_allowed` (e.g. `admin` for a non-admin), `no_user`, or no `write` scope", body = ErrorBody),
        (status = 409, description = "`account_locked`", body = ErrorBody),
        (status = 415, description = "Not `application/json`", body = ErrorBody),
        (status = 422, description = "A field out of range (`expires_in`, a CIDR, …)", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many token requests from this address", body = ErrorBody,
            headers(("retry-after" = String))),
    ))]
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

#[utoipa::path(get, path = "/api/tokens", tag = "tokens", security(("bearer" = []), ("api_key" = []), ("session_cookie" = []), ("session_token" = [])),
    responses(
        (status = 200, description = "The caller's tokens, never their secrets", body = List<TokenView>),
        (status = 403, description = "`no_user`", body = ErrorBody),
    ))]
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
    Ok(HttpResponse::Ok().json(List::of(data)))
}

#[utoipa::path(get, path = "/api/tokens/{id}", tag = "tokens", security(("bearer" = []), ("api_key" = []), ("session_cookie" = []), ("session_token" = [])),
    params(("id" = String, Path, description = "The token's id")),
    responses(
        (status = 200, description = "The token (an admin sees any)", body = TokenView),
        (status = 403, description = "`no_user`", body = ErrorBody),
        (status = 404, description = "No such token of the caller's", body = ErrorBody),
    ))]
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

#[utoipa::path(delete, path = "/api/tokens/{id}", tag = "tokens", security(("bearer" = []), ("api_key" = []), ("session_cookie" = []), ("session_token" = [])),
    params(("id" = String, Path, description = "The token's id")),
    responses(
        (status = 204, description = "Revoked; every instance refuses it from now on"),
        (status = 403, description = "`no_user` or no `write` scope", body = ErrorBody),
        (status = 404, description = "No such token of the caller's", body = ErrorBody),
    ))]
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

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateBody {
    /// Seconds the old token keeps working, 0 to 7 days (default 1 h).
    #[schema(minimum = 0, maximum = 604800)]
    grace: Option<i64>,
}

/// `{"grace": seconds}`; an empty body takes the default (1 h).
#[utoipa::path(post, path = "/api/tokens/{id}/rotate", tag = "tokens", security(("bearer" = []), ("api_key" = []), ("session_cookie" = []), ("session_token" = [])),
    params(("id" = String, Path, description = "The token's id")),
    request_body(content = Option<RotateBody>, description = "Optional; an empty body takes the default grace"),
    responses(
        (status = 201, description = "A new token with the same name, scopes, models and limits", body = CreatedToken),
        (status = 403, description = "`no_user` or no `write` scope", body = ErrorBody),
        (status = 404, description = "No such token of the caller's", body = ErrorBody),
        (status = 409, description = "`token_not_active` or `account_locked`", body = ErrorBody),
        (status = 422, description = "`grace` out of range", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody, headers(("retry-after" = String))),
    ))]
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
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "tokens",
    responses((status = 200, description = "The public keys that sign gateway tokens", body = Jwks)))]
pub async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(state.handles.keyring().load().jwks())
}
