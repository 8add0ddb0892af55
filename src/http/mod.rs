//! Route table. Handlers are thin: parse, one message, map the answer.

pub mod account;
pub mod admin;
pub mod auth;
pub mod avatars;
pub mod github;
pub mod health;
pub mod limits;
pub mod metrics;
pub mod oidc;
pub mod openapi;
pub mod pages;
pub mod providers;
pub mod tasks;
pub mod tokens;
pub mod usage;
pub mod v1;

use crate::auth::Authenticate;
use crate::error::json_error;
use crate::gateway::proxy::Surface;
use actix_web::web;

/// Every list response: `{"object": "list", "data": [...]}`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct List<T> {
    /// Always `list`.
    #[schema(inline)]
    pub object: ListObject,
    pub data: Vec<T>,
}

impl<T> List<T> {
    pub fn of(data: Vec<T>) -> Self {
        List {
            object: ListObject::List,
            data,
        }
    }
}

#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ListObject {
    List,
}

/// One server-sent event as a client reads it off a `text/event-stream`
/// answer (the model API's streams: `event` is `message`, the default).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // documents a stream; the proxy passes the provider's bytes on
pub struct ServerSentEvent {
    /// A JSON object, or `[DONE]` at the end of an OpenAI stream.
    data: String,
    #[schema(nullable = false)]
    event: Option<String>,
    #[schema(nullable = false)]
    id: Option<String>,
    #[schema(nullable = false)]
    retry: Option<u64>,
}

/// Reads a body of at most `limit` bytes; more is a `413` in the API's shape
/// (actix's own `Bytes` extractor would answer in plain text).
pub async fn read_body(
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::Bytes, crate::error::ApiError> {
    use futures_util::StreamExt;
    // A body that arrives in one chunk (most) is kept as it is, not copied.
    let mut first: Option<web::Bytes> = None;
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| {
            crate::error::ApiError::bad_request(
                "invalid_request",
                "could not read the request body",
            )
        })?;
        let held = first.as_ref().map_or(0, web::Bytes::len);
        if held + body.len() + chunk.len() > limit {
            return Err(crate::error::ApiError::payload_too_large(limit));
        }
        if first.is_none() && body.is_empty() {
            first = Some(chunk);
            continue;
        }
        if let Some(held) = first.take() {
            body.extend_from_slice(&held);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(first.unwrap_or_else(|| body.freeze()))
}

/// A JSON body that may be empty (then the default): `400` when it is
/// not valid JSON or not of the expected shape.
pub fn optional_json<T: serde::de::DeserializeOwned + Default>(
    body: &[u8],
) -> Result<T, crate::error::ApiError> {
    use crate::error::ApiError;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        if e.is_data() {
            ApiError::bad_request("invalid_request", "invalid request body")
        } else {
            ApiError::bad_request("invalid_json", "request body is not valid JSON")
        }
    })
}

/// JSON limits for the auth, account and admin routes.
pub fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .error_handler(json_error)
}

pub fn routes(cfg: &mut web::ServiceConfig, body_limit: usize) {
    // This worker's upstream clients (awc clients are per thread).
    cfg.app_data(web::Data::new(
        crate::gateway::clients::WorkerClients::default(),
    ));
    // A query string that does not parse is a 400 in the API's shape.
    cfg.app_data(web::QueryConfig::default().error_handler(crate::error::query_error));
    cfg.service(
        web::scope("/v1")
            .wrap(Authenticate)
            .route("/models", web::get().to(v1::models))
            .route("/chat/completions", v1::route(Surface::Chat))
            .route("/embeddings", v1::route(Surface::Embeddings))
            .route("/messages", v1::route(Surface::Messages))
            .route("/tasks", web::post().to(tasks::create))
            .route("/tasks", web::get().to(tasks::list))
            .route("/tasks/{id}", web::get().to(tasks::get))
            .route("/tasks/{id}/events", web::get().to(tasks::events))
            .route("/tasks/{id}/wait", web::post().to(tasks::wait))
            .route("/tasks/{id}/approve", web::post().to(tasks::approve))
            .route("/tasks/{id}/cancel", web::post().to(tasks::cancel))
            .route("/tasks/{id}/retry", web::post().to(tasks::retry)),
    );
    metrics::routes(cfg);
    cfg.route("/health", web::get().to(health::health))
        .service(
            web::resource("/openapi.json")
                .app_data(web::Data::new(openapi::Document::new()))
                .route(web::get().to(openapi::document)),
        )
        .route("/ready", web::get().to(health::ready))
        .service(
            web::scope("/auth")
                .app_data(json_config(body_limit))
                .app_data(web::PayloadConfig::new(body_limit))
                .wrap(Authenticate)
                .route("/login", web::post().to(auth::login))
                .route("/logout", web::post().to(auth::logout))
                .route("/session", web::get().to(auth::session))
                .route("/providers", web::get().to(auth::providers))
                .route("/github", web::get().to(github::start))
                .route("/github/callback", web::get().to(github::callback))
                .route("/oidc/{name}", web::get().to(oidc::start))
                .route("/oidc/{name}/callback", web::get().to(oidc::callback))
                .route(
                    "/oidc/{name}/backchannel-logout",
                    web::post().to(oidc::backchannel_logout),
                ),
        )
        .service(
            web::scope("/account/api")
                .app_data(json_config(body_limit))
                .app_data(web::PayloadConfig::new(body_limit))
                .wrap(Authenticate)
                .route("/me", web::get().to(account::me))
                .route("/password", web::post().to(account::change_password))
                .route("/avatar", web::put().to(avatars::put))
                .route("/sessions", web::get().to(account::sessions))
                .route(
                    "/sessions/revoke-others",
                    web::post().to(account::revoke_others),
                )
                .route("/sessions/{id}", web::delete().to(account::delete_session)),
        )
        .service(
            web::scope("/admin/api")
                .app_data(json_config(body_limit))
                .app_data(web::PayloadConfig::new(body_limit))
                .wrap(crate::auth::RequireScope(crate::auth::Scope::Admin))
                .wrap(Authenticate)
                .route("/users", web::get().to(admin::users))
                .route("/users", web::post().to(admin::create_user))
                .route("/users/{name}/password", web::put().to(admin::set_password))
                .route("/users/{name}/lock", web::post().to(admin::lock))
                .route("/users/{name}/unlock", web::post().to(admin::unlock))
                .route("/users/{name}", web::delete().to(admin::delete_user))
                .route("/sessions", web::get().to(admin::sessions))
                .route("/sessions/stats", web::get().to(admin::session_stats))
                .route(
                    "/sessions/revoke-user",
                    web::post().to(admin::revoke_user_sessions),
                )
                .route("/sessions/{id}", web::delete().to(admin::delete_session))
                .route("/tokens", web::get().to(admin::tokens))
                .route("/tokens/stats", web::get().to(admin::token_stats))
                .route("/audit", web::get().to(admin::audit))
                .route("/usage", web::get().to(usage::usage))
                .route("/providers", web::get().to(providers::list))
                .route("/providers/{name}", web::get().to(providers::get))
                .route("/providers/{name}", web::put().to(providers::put))
                .route("/providers/{name}", web::delete().to(providers::delete))
                .route(
                    "/providers/{name}/models",
                    web::get().to(providers::upstream_models),
                )
                .route(
                    "/providers/{name}/profiles/{profile}",
                    web::put().to(providers::put_profile),
                )
                .route(
                    "/providers/{name}/profiles/{profile}",
                    web::delete().to(providers::delete_profile),
                )
                .route("/models/default", web::put().to(providers::put_default))
                .route("/limits", web::get().to(limits::list))
                .route("/limits/{kind}/{id}", web::get().to(limits::get))
                .route("/limits/{kind}/{id}", web::put().to(limits::put))
                .route("/limits/{kind}/{id}", web::delete().to(limits::delete))
                .route(
                    "/models/aliases/{alias}",
                    web::put().to(providers::put_alias),
                )
                .route("/config", web::get().to(admin::config)),
        )
        .route("/.well-known/jwks.json", web::get().to(tokens::jwks))
        .route("/avatars/{user_id}", web::get().to(avatars::get))
        .service(
            web::scope("/api/tokens")
                .app_data(json_config(body_limit))
                .app_data(web::PayloadConfig::new(body_limit))
                .wrap(Authenticate)
                .route("", web::post().to(tokens::create))
                .route("", web::get().to(tokens::list))
                .route("/{id}", web::get().to(tokens::get))
                .route("/{id}", web::delete().to(tokens::revoke))
                .route("/{id}/rotate", web::post().to(tokens::rotate)),
        );
}
