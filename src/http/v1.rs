//! The model API: `GET /v1/models`, `POST /v1/chat/completions`,
//! `POST /v1/embeddings` and `POST /v1/messages`. Handlers read the
//! published catalog (no message per request), check the principal may
//! call the model, and hand the call to the proxy.

use crate::accounts::{audit, Actor};
use crate::auth::{client_ip, Principal, RequestStart, Scope};
use crate::error::ApiError;
use crate::error::ErrorBody;
use crate::gateway::body::{ApiBody, BodyError};
use crate::gateway::clients::WorkerClients;
use crate::gateway::proxy::{Call, Surface};
use crate::http::read_body;
use crate::http::List;
use crate::AppState;
use actix_web::http::header;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use serde::Serialize;
use serde_json::{json, Value};
use std::time::Instant;
use utoipa::ToSchema;

/// A model this principal may call.
#[derive(Serialize, ToSchema)]
pub struct Model {
    /// `provider/model`, or an alias.
    pub id: String,
    /// Always `model`.
    #[schema(inline)]
    pub object: ModelObject,
    pub created: u64,
    /// The provider (`gatehouse` for an alias).
    pub owned_by: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ModelObject {
    Model,
}

/// `POST /v1/chat/completions`, as OpenAI's: other fields pass through.
#[derive(ToSchema)]
#[allow(dead_code)] // documents the body; the proxy reads it as JSON
pub struct ChatRequest {
    /// `provider/model`, an alias, or `default`.
    #[schema(example = "default")]
    model: String,
    #[schema(value_type = Vec<Object>)]
    messages: Vec<Value>,
    /// Server-sent events, chunk by chunk, ending with `data: [DONE]`.
    stream: Option<bool>,
}

/// `POST /v1/embeddings`, as OpenAI's: other fields pass through.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct EmbeddingsRequest {
    #[schema(example = "default")]
    model: String,
    /// A string, or a list of strings or of token ids.
    input: Value,
}

/// A turn of an Anthropic conversation (`content` may also be a list of
/// content blocks).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AnthropicMessage {
    role: AnthropicRole,
    content: String,
}

#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum AnthropicRole {
    User,
    Assistant,
}

/// `POST /v1/messages`, as Anthropic's: other fields pass through.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct MessagesRequest {
    #[schema(example = "default")]
    model: String,
    #[schema(minimum = 1)]
    max_tokens: u64,
    messages: Vec<AnthropicMessage>,
    stream: Option<bool>,
}

/// `GET /v1/models`: the names this principal may call.
#[utoipa::path(get, path = "/v1/models", tag = "models", security(("bearer" = []), ("api_key" = []), ("session_cookie" = []), ("session_token" = [])),
    responses((status = 200, description = "The models this principal may call", body = List<Model>)))]
pub async fn models(
    principal: Principal,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Scope::Read)?;
    let catalog = state.handles.catalog().load();
    let data: Vec<Model> = catalog
        .model_ids()
        .into_iter()
        .filter(|(id, _)| state.config.access.may_call(&principal, id))
        .map(|(id, owner)| Model {
            id,
            object: ModelObject::Model,
            created: 0,
            owned_by: owner,
        })
        .collect();
    Ok(HttpResponse::Ok().json(List::of(data)))
}

/// The route of one surface (`/chat/completions`, `/embeddings`, `/messages`).
pub fn route(surface: Surface) -> actix_web::Route {
    match surface {
        Surface::Chat => web::post().to(chat_completions),
        Surface::Embeddings => web::post().to(embeddings),
        Surface::Messages => web::post().to(messages),
    }
}

/// A chat completion, as OpenAI's; streamed with `"stream": true`.
#[utoipa::path(post, path = "/v1/chat/completions", tag = "models", security(("bearer" = []), ("api_key" = []), ("session_cookie" = []), ("session_token" = [])),
    request_body = ChatRequest,
    responses(
        (status = 200, description = "As OpenAI's: a chat completion, or with `stream` its chunks as server-sent events ending with `data: [DONE]`",
            content(
                (Object = "application/json"),
                (crate::http::ServerSentEvent = "text/event-stream"),
            )),
        (status = 400, description = "Not a JSON object, or no valid `model`", body = ErrorBody),
        (status = 403, description = "No `write` scope, or `model_not_allowed`", body = ErrorBody),
        (status = 404, description = "`model_not_found`", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 429, description = "Over a Gatehouse limit, or the provider's with no fallback left; see `Retry-After`", body = ErrorBody,
            headers(("retry-after" = String))),
        (status = "4XX", description = "The provider refused the request (its status, in this shape)", body = ErrorBody),
        (status = 502, description = "`upstream_error`: the provider failed, sanitized", body = ErrorBody),
    ))]
pub async fn chat_completions(
    req: HttpRequest,
    principal: Principal,
    payload: web::Payload,
    state: web::Data<AppState>,
    clients: web::Data<WorkerClients>,
) -> Result<HttpResponse, ApiError> {
    call(req, principal, payload, state, clients, Surface::Chat).await
}

/// Embeddings, as OpenAI's (OpenAI-compatible providers only).
#[utoipa::path(post, path = "/v1/embeddings", tag = "models", security(("bearer" = []), ("api_key" = []), ("session_cookie" = []), ("session_token" = [])),
    request_body = EmbeddingsRequest,
    responses(
        (status = 200, description = "As OpenAI's", body = Object),
        (status = 400, description = "Not a JSON object, or no valid `model`", body = ErrorBody),
        (status = 403, description = "No `write` scope, or `model_not_allowed`", body = ErrorBody),
        (status = 404, description = "`model_not_found`", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 429, description = "Over a Gatehouse limit, or the provider's with no fallback left; see `Retry-After`", body = ErrorBody,
            headers(("retry-after" = String))),
        (status = "4XX", description = "The provider refused the request (its status, in this shape)", body = ErrorBody),
        (status = 502, description = "`upstream_error`: the provider failed, sanitized", body = ErrorBody),
    ))]
pub async fn embeddings(
    req: HttpRequest,
    principal: Principal,
    payload: web::Payload,
    state: web::Data<AppState>,
    clients: web::Data<WorkerClients>,
) -> Result<HttpResponse, ApiError> {
    call(req, principal, payload, state, clients, Surface::Embeddings).await
}

/// A message, as Anthropic's (translated for OpenAI-compatible providers).
#[utoipa::path(post, path = "/v1/messages", tag = "models", security(("bearer" = []), ("api_key" = []), ("session_cookie" = []), ("session_token" = [])),
    request_body = MessagesRequest,
    responses(
        (status = 200, description = "As Anthropic's: a message, or with `stream` its events as server-sent events",
            content(
                (Object = "application/json"),
                (crate::http::ServerSentEvent = "text/event-stream"),
            )),
        (status = 400, description = "Not a JSON object, or no valid `model`", body = ErrorBody),
        (status = 403, description = "No `write` scope, or `model_not_allowed`", body = ErrorBody),
        (status = 404, description = "`model_not_found`", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 429, description = "Over a Gatehouse limit, or the provider's with no fallback left; see `Retry-After`", body = ErrorBody,
            headers(("retry-after" = String))),
        (status = "4XX", description = "The provider refused the request (its status, in this shape)", body = ErrorBody),
        (status = 502, description = "`upstream_error`: the provider failed, sanitized", body = ErrorBody),
    ))]
pub async fn messages(
    req: HttpRequest,
    principal: Principal,
    payload: web::Payload,
    state: web::Data<AppState>,
    clients: web::Data<WorkerClients>,
) -> Result<HttpResponse, ApiError> {
    call(req, principal, payload, state, clients, Surface::Messages).await
}

async fn call(
    req: HttpRequest,
    principal: Principal,
    payload: web::Payload,
    state: web::Data<AppState>,
    clients: web::Data<WorkerClients>,
    surface: Surface,
) -> Result<HttpResponse, ApiError> {
    let t0 = req
        .extensions()
        .get::<RequestStart>()
        .map_or_else(Instant::now, |s| s.0);
    principal.require(Scope::Write)?;
    let bytes = read_body(payload, state.config.server.max_api_body_bytes).await?;
    let body = ApiBody::parse(&bytes).map_err(|e| match e {
        BodyError::Json => ApiError::bad_request("invalid_json", "request body is not valid JSON"),
        BodyError::NotObject => {
            ApiError::bad_request("invalid_request", "the request body must be a JSON object")
        }
    })?;
    drop(bytes);
    let model = match body
        .raw("model")
        .map(|raw| serde_json::from_str::<String>(raw.get()))
    {
        Some(Ok(m)) if !m.is_empty() && m.len() <= 256 => m,
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "model: must be a model name",
            ))
        }
        None => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "model: field required",
            ))
        }
    };
    let mut targets = match crate::gateway::targets_for(&state, &principal, &model) {
        Ok(targets) => targets,
        Err(e) => {
            if e.code == "model_not_allowed" {
                let who = Actor {
                    id: Some(principal.id.clone()),
                    name: principal.username.clone(),
                    ip: client_ip(&req, &state.config.server.trusted_proxies),
                };
                let details = json!({"route": req.path()});
                audit(&state, &who, "policy.deny", Some(model.clone()), details).await;
            }
            return Err(e);
        }
    };
    if surface == Surface::Embeddings {
        targets.retain(|t| t.provider.kind == gatehouse_actors::gateway::ProviderKind::OpenAi);
        if targets.is_empty() {
            return Err(ApiError::bad_request(
                "model_not_supported",
                format!("the model {model:?} does not offer embeddings"),
            ));
        }
    }
    let anthropic_headers = ["anthropic-version", "anthropic-beta"]
        .iter()
        .filter_map(|name| {
            let value = req.headers().get(*name)?;
            (value.len() <= 256).then(|| (header::HeaderName::from_static(name), value.clone()))
        })
        .collect();
    // A stream holds a slot of its principal's until its body is dropped.
    let streaming = surface != Surface::Embeddings && body.streams();
    let slot = match streaming {
        true => crate::edge::stream_slot(&state, &principal.id)?,
        false => None,
    };
    let res = Call {
        state: &state,
        clients: &clients,
        principal: &principal,
        surface,
        body,
        t0,
        anthropic_headers,
    }
    .run(targets, &model)
    .await?;
    Ok(match slot {
        Some(slot) => crate::edge::SlotBody::wrap(res, slot),
        None => res,
    })
}
