//! The task API (API.md "Tasks"): create, list, read, approve, cancel,
//! retry, wait, and the events stream. Mutations need an `Idempotency-Key`,
//! scoped to the principal and fingerprinted by method, path and body; the
//! `TaskActor` makes the replay, reuse and create decisions atomically with
//! the write. A task that is not the caller's is `404` on every route.

use crate::auth::{Principal, Scope, Via};
use crate::error::ApiError;
use crate::gateway::clients::WorkerClients;
use crate::http::read_body;
use crate::tasks::agent::{self, AgentError};
use crate::AppState;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use gatehouse_actors::model::{TaskEvent, TaskRecord, TaskStatus};
use gatehouse_actors::tasks::{task_json, Mutate, Op, Viewer};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const MAX_KEY_LEN: usize = 255;

/// Keys whose first request is still being handled on this instance (`409`).
#[derive(Default, Clone)]
pub struct InFlight(Arc<Mutex<HashSet<(String, String)>>>);

struct InFlightGuard(InFlight, (String, String));

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0
             .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.1);
    }
}

impl InFlight {
    fn enter(&self, principal: &str, key: &str) -> Result<InFlightGuard, ApiError> {
        let entry = (principal.to_owned(), key.to_owned());
        let mut set = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if !set.insert(entry.clone()) {
            return Err(ApiError::conflict(
                "idempotency_key_in_use",
                "a request with this Idempotency-Key is still being handled; retry shortly",
            ));
        }
        Ok(InFlightGuard(self.clone(), entry))
    }
}

fn viewer(p: &Principal) -> Viewer {
    Viewer {
        user_id: p.id.clone(),
        token_id: match &p.via {
            Via::Token { id } => Some(id.clone()),
            _ => None,
        },
        admin: p.is_admin(),
    }
}

/// Whose idempotency keys these are.
fn key_scope(p: &Principal) -> String {
    match &p.via {
        Via::Token { id } => format!("token:{id}"),
        _ => format!("user:{}", p.id),
    }
}

fn idempotency_key(req: &HttpRequest) -> Result<String, ApiError> {
    let key = req.headers().get("idempotency-key").ok_or_else(|| {
        ApiError::bad_request(
            "idempotency_key_required",
            "this route needs an Idempotency-Key header",
        )
    })?;
    let key = key.to_str().unwrap_or("").trim();
    if key.is_empty() || key.len() > MAX_KEY_LEN || key.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "invalid_idempotency_key",
            "Idempotency-Key must be 1 to 255 visible characters",
        ));
    }
    Ok(key.to_owned())
}

fn fingerprint(req: &HttpRequest, body: &[u8]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(req.method().as_str().as_bytes());
    ctx.update(b"\n");
    ctx.update(req.path().as_bytes());
    ctx.update(b"\n");
    ctx.update(body);
    hex::encode(ctx.finish())
}

/// Sends one mutation and maps the answer (with `Idempotent-Replayed`).
async fn mutate(
    req: &HttpRequest,
    state: &AppState,
    principal: &Principal,
    body: &[u8],
    op: Op,
) -> Result<HttpResponse, ApiError> {
    let key = idempotency_key(req)?;
    let scope = key_scope(principal);
    let _guard = state.inflight.enter(&scope, &key)?;
    let answer = state
        .handles
        .tasks()
        .send(Mutate {
            viewer: viewer(principal),
            principal: scope,
            key,
            fingerprint: fingerprint(req, body),
            op,
            now: state.handles.now(),
        })
        .await??;
    let mut res =
        HttpResponse::build(StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK));
    if answer.replayed {
        res.insert_header(("idempotent-replayed", "true"));
    }
    Ok(res.json(answer.body))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTask {
    kind: String,
    input: Value,
    #[serde(default)]
    requires_approval: bool,
}

pub async fn create(
    req: HttpRequest,
    principal: Principal,
    payload: web::Payload,
    state: web::Data<AppState>,
    clients: web::Data<WorkerClients>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Scope::Write)?;
    idempotency_key(&req)?;
    if principal.user.is_none() && !matches!(principal.via, Via::LocalAnonymous) {
        return Err(ApiError::forbidden(
            "user_required",
            "tasks belong to Gatehouse users; use a session or a gateway token",
        ));
    }
    let body = read_body(payload, state.config.server.max_api_body_bytes).await?;
    let new: NewTask = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(
            "invalid_request",
            format!(
                "request body: {}",
                e.to_string().split(" at line").next().unwrap_or("invalid")
            ),
        )
    })?;
    match new.kind.as_str() {
        "chat.completion" => {
            let model = new
                .input
                .get("model")
                .and_then(Value::as_str)
                .filter(|m| !m.is_empty())
                .ok_or_else(|| {
                    ApiError::bad_request("invalid_request", "input.model: field required")
                })?;
            crate::gateway::targets_for(&state, &principal, model)?;
            if !new.input.get("messages").is_some_and(Value::is_array) {
                return Err(ApiError::bad_request(
                    "invalid_request",
                    "input.messages: must be a list",
                ));
            }
        }
        "agent.run" => match agent::check_contract(&state, &clients).await {
            Ok(()) => {}
            Err(AgentError::NotConfigured) => {
                return Err(ApiError::bad_request(
                    "agent_not_configured",
                    "no agent backend is configured",
                ))
            }
            Err(e) => {
                tracing::warn!(error = %e, "agent backend refused");
                return Err(ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "upstream_error",
                    "agent_contract_mismatch",
                    match e {
                        AgentError::Mismatch(_) => format!(
                            "the agent backend does not speak contract {}",
                            agent::CONTRACT
                        ),
                        _ => "the agent backend could not be reached".to_owned(),
                    },
                ));
            }
        },
        _ => {
            return Err(ApiError::bad_request(
                "invalid_kind",
                "kind must be chat.completion or agent.run",
            ))
        }
    }
    let now = state.handles.now();
    let task = TaskRecord {
        id: format!("task_{}", gatehouse_actors::ids::random_id()),
        kind: new.kind,
        status: TaskStatus::Queued,
        owner: principal.id.clone(),
        owner_name: principal.username.clone(),
        token_id: viewer(&principal).token_id,
        input: new.input,
        requires_approval: new.requires_approval,
        created_at: now,
        updated_at: now,
        result: None,
        error: None,
        attempts: 0,
        external_id: None,
        claimed_by: None,
        claim_until: None,
        events: 0,
        version: 0,
    };
    mutate(&req, &state, &principal, &body, Op::Create(Box::new(task))).await
}

/// `approve`, `cancel` or `retry`.
pub async fn action(
    req: HttpRequest,
    principal: Principal,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Scope::Write)?;
    let (id, action) = path.into_inner();
    let op = match action.as_str() {
        "approve" => Op::Approve(id),
        "cancel" => Op::Cancel(id),
        "retry" => Op::Retry(id),
        _ => return Err(ApiError::not_found("no such route")),
    };
    let body = read_body(payload, state.config.server.max_body_bytes).await?;
    mutate(&req, &state, &principal, &body, op).await
}

/// The task if this principal may see it (else `404`).
async fn visible(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<TaskRecord, ApiError> {
    let store = state.handles.store();
    let task = store
        .get_task(id)
        .await
        .map_err(gatehouse_actors::GatehouseError::from)?;
    task.filter(|t| viewer(principal).sees(t))
        .ok_or_else(|| ApiError::not_found("no such task"))
}

pub async fn get(
    principal: Principal,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Scope::Read)?;
    Ok(HttpResponse::Ok().json(task_json(&visible(&state, &principal, &id).await?)))
}

#[derive(serde::Deserialize)]
pub struct ListQuery {
    all: Option<bool>,
}

pub async fn list(
    principal: Principal,
    q: web::Query<ListQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Scope::Read)?;
    let all = q.all == Some(true);
    if all && !principal.is_admin() {
        return Err(ApiError::forbidden(
            "insufficient_scope",
            "only admins may list every task",
        ));
    }
    let v = viewer(&principal);
    let tasks = state
        .handles
        .store()
        .load_tasks()
        .await
        .map_err(gatehouse_actors::GatehouseError::from)?;
    let data: Vec<Value> = tasks
        .iter()
        .rev()
        .filter(|t| {
            if all {
                true
            } else {
                t.owner == v.user_id && (v.token_id.is_none() || t.token_id == v.token_id)
            }
        })
        .map(task_json)
        .collect();
    Ok(HttpResponse::Ok().json(json!({"object": "list", "data": data})))
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct WaitBody {
    timeout_s: Option<f64>,
}

pub async fn wait(
    principal: Principal,
    id: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Scope::Read)?;
    let body = read_body(payload, state.config.server.max_body_bytes).await?;
    let w: WaitBody = crate::http::optional_json(&body)?;
    let secs = w.timeout_s.unwrap_or(30.0);
    if !(0.0..=300.0).contains(&secs) {
        return Err(ApiError::unprocessable(
            "invalid_value",
            "timeout_s must be 0 to 300",
        ));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(secs);
    let notify = state.handles.task_notify().subscribe(&id);
    loop {
        let woken = notify.notified();
        let t = visible(&state, &principal, &id).await?;
        let now = tokio::time::Instant::now();
        if !matches!(t.status, TaskStatus::Queued | TaskStatus::Running) || now >= deadline {
            return Ok(HttpResponse::Ok().json(task_json(&t)));
        }
        let nap = (deadline - now).min(Duration::from_secs(1));
        let _ = tokio::time::timeout(nap, woken).await;
    }
}

fn sse_event(e: &TaskEvent) -> web::Bytes {
    web::Bytes::from(format!(
        "id: {}\nevent: {}\ndata: {}\n\n",
        e.seq, e.kind, e.data
    ))
}

/// `GET /v1/tasks/{id}/events`: stored events after `Last-Event-ID`, then
/// new ones as they are written; ends after the final status.
pub async fn events(
    req: HttpRequest,
    principal: Principal,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Scope::Read)?;
    let id = id.into_inner();
    visible(&state, &principal, &id).await?;
    let after: u64 = match req.headers().get("last-event-id") {
        None => 0,
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_last_event_id",
                    "Last-Event-ID must be an event id (a number)",
                )
            })?,
    };
    let notify = state.handles.task_notify().subscribe(&id);
    let state = state.into_inner();
    let stream = futures_util::stream::unfold(
        (after, false, Vec::<TaskEvent>::new()),
        move |(mut after, mut ended, mut pending)| {
            let (state, id, notify) = (state.clone(), id.clone(), notify.clone());
            async move {
                loop {
                    if let Some(e) = (!pending.is_empty()).then(|| pending.remove(0)) {
                        if e.kind == "status"
                            && e.data["status"]
                                .as_str()
                                .is_some_and(|s| matches!(s, "succeeded" | "failed" | "cancelled"))
                            && pending.is_empty()
                        {
                            ended = true;
                        }
                        after = e.seq;
                        return Some((
                            Ok::<_, actix_web::Error>(sse_event(&e)),
                            (after, ended, pending),
                        ));
                    }
                    if ended {
                        return None;
                    }
                    let woken = notify.notified();
                    match state.handles.store().task_events(&id, after).await {
                        Ok(new) if !new.is_empty() => pending = new,
                        Ok(_) => {
                            let t = state.handles.store().get_task(&id).await.ok().flatten();
                            if t.is_none_or(|t| t.status.is_final() && t.events <= after) {
                                return None;
                            }
                            let _ = tokio::time::timeout(Duration::from_secs(1), woken).await;
                        }
                        Err(e) => {
                            tracing::warn!(task = %id, error = %e, "reading task events failed");
                            return None;
                        }
                    }
                }
            }
        },
    );
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .streaming(stream))
}
