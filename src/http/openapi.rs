//! `GET /openapi.json`: the OpenAPI 3.1 document of every route, generated
//! from the handlers' `#[utoipa::path]` attributes and the `ToSchema` types
//! they answer with. Served without authentication, like `/health`.
//!
//! Besides what each handler states, [`CommonResponses`] adds what the
//! middleware of a scope answers on every route of it (`401`, `403`), what a
//! JSON body can fail with (`400`, `413`), and `503` where an actor or the
//! store is asked.

use crate::error::ErrorBody;
use actix_web::{http::header, web, HttpResponse};
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, HttpMethod, Ref, RefOr};
use utoipa::{Modify, OpenApi, PartialSchema};

/// The route scopes mounted behind [`crate::auth::Authenticate`]: every
/// route under them may answer `401` (no or a bad credential, or no user
/// yet) and `403` (a credential that may not be used here, a cross-site
/// request, a missing scope).
const AUTHENTICATED: &[&str] = &[
    "/v1/",
    "/auth/",
    "/account/api/",
    "/admin/api/",
    "/api/tokens",
    "/metrics",
];

/// Routes that ask no actor and no store (no `503`).
const NO_ACTOR: &[&str] = &[
    "/health",
    "/ready",
    "/openapi.json",
    "/.well-known/jwks.json",
    "/auth/providers",
    "/metrics",
];

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Gatehouse",
        description = "An authenticating gateway for LLM APIs. Every error is \
            `{\"error\": {\"message\", \"type\", \"code\"}}`; every list is \
            `{\"object\": \"list\", \"data\": [...]}`; every time is RFC 3339 in UTC.",
    ),
    paths(
        super::health::health,
        super::health::ready,
        document,
        super::metrics::metrics,
        super::auth::login,
        super::auth::logout,
        super::auth::session,
        super::auth::providers,
        super::github::start,
        super::github::callback,
        super::oidc::start,
        super::oidc::callback,
        super::oidc::backchannel_logout,
        super::tokens::create,
        super::tokens::list,
        super::tokens::get,
        super::tokens::revoke,
        super::tokens::rotate,
        super::tokens::jwks,
        super::v1::models,
        super::v1::chat_completions,
        super::v1::embeddings,
        super::v1::messages,
        super::tasks::create,
        super::tasks::list,
        super::tasks::get,
        super::tasks::events,
        super::tasks::wait,
        super::tasks::approve,
        super::tasks::cancel,
        super::tasks::retry,
        super::account::me,
        super::account::change_password,
        super::account::sessions,
        super::account::delete_session,
        super::account::revoke_others,
        super::avatars::put,
        super::avatars::get,
        super::admin::users,
        super::admin::create_user,
        super::admin::set_password,
        super::admin::lock,
        super::admin::unlock,
        super::admin::delete_user,
        super::admin::sessions,
        super::admin::session_stats,
        super::admin::revoke_user_sessions,
        super::admin::delete_session,
        super::admin::tokens,
        super::admin::token_stats,
        super::usage::usage,
        super::admin::audit,
        super::admin::config,
        super::providers::list,
        super::providers::get,
        super::providers::put,
        super::providers::delete,
        super::providers::upstream_models,
        super::providers::put_profile,
        super::providers::delete_profile,
        super::providers::put_alias,
        super::providers::put_default,
        super::limits::list,
        super::limits::get,
        super::limits::put,
        super::limits::delete,
    ),
    components(schemas(ErrorBody, super::limits::SubjectKind)),
    modifiers(&SecuritySchemes, &CommonResponses, &Pages),
    tags(
        (name = "health", description = "Liveness, readiness, metrics and this document"),
        (name = "auth", description = "Sign-in and sessions"),
        (name = "tokens", description = "Gateway API tokens and their signing keys"),
        (name = "models", description = "The model API (OpenAI- and Anthropic-compatible)"),
        (name = "tasks", description = "Durable tasks; mutations take an `Idempotency-Key`"),
        (name = "account", description = "The signed-in user's own account"),
        (name = "admin", description = "Users, sessions, tokens, usage, audit and config (Admin role or `admin` scope)"),
        (name = "providers", description = "Providers, credential profiles, aliases and the default model (admin)"),
        (name = "limits", description = "Rate limits and budgets per user and token (admin)"),
        (name = "pages", description = "The web UI"),
    )
)]
pub struct ApiDoc;

/// The four ways to send a credential.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let c = api.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "`Authorization: Bearer …`: a gateway token (`gh_…`) or a token of a \
                         configured `[[auth.bearer]]` validator",
                    ))
                    .build(),
            ),
        );
        c.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "x-api-key",
                "A gateway token, as the Anthropic SDK sends it",
            ))),
        );
        c.add_security_scheme(
            "session_cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::auth::SESSION_COOKIE,
                "The browser session set by sign-in (HttpOnly)",
            ))),
        );
        c.add_security_scheme(
            "session_token",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Session-Token",
                "A session token, for scripts (the llms.py habit)",
            ))),
        );
    }
}

fn error(description: &str) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            Content::new(Some(Ref::from_schema_name("Error"))),
        )
        .build()
        .into()
}

/// What every route of a scope can answer besides its own responses.
struct CommonResponses;

impl CommonResponses {
    fn add(path: &str, method: &HttpMethod, op: &mut Operation) {
        let r = &mut op.responses.responses;
        let mut put = |status: &str, description: &str| {
            r.entry(status.to_owned())
                .or_insert_with(|| error(description));
        };
        if AUTHENTICATED.iter().any(|p| path.starts_with(p)) {
            put(
                "401",
                "Not authenticated: no or an invalid credential (`authentication_required`, \
                 `invalid_api_key`, `invalid_session`), or `no_users` before the first user \
                 exists; with `WWW-Authenticate`",
            );
            put(
                "403",
                "Refused: a credential used from outside its `allowed_ips` \
                 (`ip_not_allowed`), a cross-site browser request (`cross_site_request`), or \
                 a missing scope (`insufficient_scope`)",
            );
        }
        let has_query = op
            .parameters
            .iter()
            .flatten()
            .any(|p| matches!(p.parameter_in, utoipa::openapi::path::ParameterIn::Query));
        if has_query {
            put("400", "A query parameter does not parse");
        }
        if op.request_body.is_some() && !matches!(method, HttpMethod::Get) {
            put(
                "400",
                "The body is not valid JSON or misses a required field",
            );
            put("413", "The body is larger than the route allows");
        }
        if !NO_ACTOR.contains(&path) && !path.starts_with("/static/") {
            put(
                "503",
                "`service_unavailable`: a part is restarting or the store is out of reach; \
                 retry shortly",
            );
        }
    }
}

impl Modify for CommonResponses {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        for (path, item) in api.paths.paths.iter_mut() {
            for (method, op) in operations(item) {
                Self::add(path, &method, op);
            }
        }
    }
}

fn operations(item: &mut PathItem) -> Vec<(HttpMethod, &mut Operation)> {
    [
        (HttpMethod::Get, item.get.as_mut()),
        (HttpMethod::Put, item.put.as_mut()),
        (HttpMethod::Post, item.post.as_mut()),
        (HttpMethod::Delete, item.delete.as_mut()),
        (HttpMethod::Patch, item.patch.as_mut()),
    ]
    .into_iter()
    .filter_map(|(m, op)| op.map(|op| (m, op)))
    .collect()
}

/// The web UI's pages and static files, as [`super::pages`] mounts them.
struct Pages;

impl Modify for Pages {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::OperationBuilder;
        for (path, content_type) in super::pages::served() {
            let ok = ResponseBuilder::new()
                .description("The file (no credential needed)")
                .content(
                    content_type,
                    Content::new(Some(<String as PartialSchema>::schema())),
                )
                .build();
            let op = OperationBuilder::new()
                .tag("pages")
                .operation_id(Some(format!("page {path}")))
                .response("200", ok)
                .build();
            api.paths
                .paths
                .insert(path, PathItem::new(HttpMethod::Get, op));
        }
    }
}

/// The document, rendered once per worker.
pub struct Document(String);

impl Document {
    pub fn new() -> Self {
        Document(
            ApiDoc::openapi()
                .to_json()
                .unwrap_or_else(|e| panic!("the OpenAPI document does not render: {e}")),
        )
    }
}

impl Default for Document {
    fn default() -> Self {
        Self::new()
    }
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "health",
    responses((status = 200, description = "The OpenAPI 3.1 document of every route", body = Object)))]
pub async fn document(doc: web::Data<Document>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(doc.0.clone())
}
