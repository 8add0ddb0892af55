//! The model API: `GET /v1/models`, `POST /v1/chat/completions`,
//! `POST /v1/embeddings` and `POST /v1/messages`. Handlers read the
//! published catalog (no message per request), check the principal may
//! call the model, and hand the call to the proxy.

use crate::accounts::{audit, Actor};
use crate::auth::{client_ip, Principal, RequestStart, Scope};
use crate::error::ApiError;
use crate::gateway::clients::WorkerClients;
use crate::gateway::proxy::{Call, Surface};
use crate::http::read_body;
use crate::AppState;
use actix_web::http::header;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use serde_json::{json, Value};
use std::time::Instant;

/// `GET /v1/models`: the names this principal may call.
pub async fn models(
    principal: Principal,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Scope::Read)?;
    let catalog = state.handles.catalog().load();
    let data: Vec<Value> = catalog
        .model_ids()
        .into_iter()
        .filter(|(id, _)| state.config.access.may_call(&principal, id))
        .map(|(id, owner)| json!({"id": id, "object": "model", "created": 0, "owned_by": owner}))
        .collect();
    Ok(HttpResponse::Ok().json(json!({"object": "list", "data": data})))
}

/// The route of one surface (`/chat/completions`, `/embeddings`, `/messages`).
pub fn route(surface: Surface) -> actix_web::Route {
    web::post().to(
        move |req: HttpRequest,
              principal: Principal,
              payload: web::Payload,
              state: web::Data<AppState>,
              clients: web::Data<WorkerClients>| {
            call(req, principal, payload, state, clients, surface)
        },
    )
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
    let body: Value = serde_json::from_slice(&bytes)
        .map_err(|_| ApiError::bad_request("invalid_json", "request body is not valid JSON"))?;
    if !body.is_object() {
        return Err(ApiError::bad_request(
            "invalid_request",
            "the request body must be a JSON object",
        ));
    }
    let model = match body.get("model") {
        Some(Value::String(m)) if !m.is_empty() && m.len() <= 256 => m.clone(),
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
    let streaming =
        surface != Surface::Embeddings && body.get("stream") == Some(&Value::Bool(true));
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
