//! The task API (API.md "Tasks"): create, list, read, approve, cancel,
//! retry, wait, and the events stream. Mutations need an `Idempotency-Key`,
//! scoped to the principal and fingerprinted by method, path and body; the
//! `TaskActor` makes the replay, reuse and create decisions atomically with
//! the write. A task that is not the caller's is `404` on every route.

use crate::auth::{Principal, Scope, Via};
use crate::error::ApiError;
use crate::error::ErrorBody;
use crate::gateway::clients::WorkerClients;
use crate::http::read_body;
use crate::http::List;
use crate::tasks::agent::{self, AgentError};
use crate::AppState;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use gatehouse_actors::model::{TaskEvent, TaskRecord, TaskStatus};
use gatehouse_actors::tasks::{Mutate, Op, TaskView, Viewer};
use serde_json::Value;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use utoipa::{IntoParams, ToSchema};

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

#[derive(serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTask {
    /// `chat.completion` or `agent.run`.
    #[schema(
        pattern = "^(chat\\.completion|agent\\.run)$",
        example = "chat.completion"
    )]
    kind: String,
    /// For `chat.completion`, a chat request (`model`, `messages`, …); for
    /// `agent.run`, the agent's input.
    #[schema(schema_with = task_input)]
    input: Value,
    #[serde(default)]
    requires_approval: bool,
}

/// `input`: a chat request, or any object for an agent.
fn task_input() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{AnyOfBuilder, ObjectBuilder, Schema, Type};
    use utoipa::openapi::Ref;
    Schema::AnyOf(
        AnyOfBuilder::new()
            .item(Ref::from_schema_name("ChatRequest"))
            .item(ObjectBuilder::new().schema_type(Type::Object))
            .build(),
    )
}

#[utoipa::path(post, path = "/v1/tasks", tag = "tasks", security(("bearer" = []), ("api_key" = []), ("session_cookie" = []), ("session_token" = [])),
    params(("Idempotency-Key" = String, Header, description = "1 to 255 visible characters; the same key and body replay the first answer")),
    request_body = NewTask,
    responses(
        (status = 202, description = "Accepted", body = TaskView, headers(("idempotent-replayed" = String, description = "`true` on a replay of the first answer"))),
        (status = 400, description = "No or an invalid `Idempotency-Key`, an invalid body, `invalid_kind` or `agent_not_configured`", body = ErrorBody),
        (status = 403, description = "No `write` scope, `user_required`, or `model_not_allowed`", body = ErrorBody),
        (status = 404, description = "`model_not_found`", body = ErrorBody),
        (status = 409, description = "`idempotency_key_in_use` while the first request is handled", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 422, description = "`idempotency_key_reused` with another body", body = ErrorBody),
        (status = 429, description = "`task_queue_full`: `[tasks] max_queued` tasks wait to run already (with `Retry-After`), or a rate limit", body = ErrorBody),
        (status = 502, description = "`agent_contract_mismatch`: the agent backend cannot take it", body = ErrorBody),
    ))]
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

/// Approves a task that waits for approval.
#[utoipa::path(post, path = "/v1/tasks/{id}/approve", tag = "tasks", security(("bearer" = []), ("api_key" = []), ("session_cookie" = []), ("session_token" = [])),
    params(("id" = String, Path, description = "The task's id"), ("Idempotency-Key" = String, Header, description = "1 to 255 visible characters; the same key and body replay the first answer")),
    responses(
        (status = 200, description = "Approved (now queued)", body = TaskView, headers(("idempotent-replayed" = String, description = "`true` on a replay of the first answer"))),
        (status = 400, description = "`idempotency_key_required` or `invalid_idempotency_key`", body = ErrorBody),
        (status = 404, description = "No such task of the caller's", body = ErrorBody),
        (status = 409, description = "`invalid_transition`, or `idempotency_key_in_use` while the first request is handled", body = ErrorBody),
        (status = 422, description = "`idempotency_key_reused` with another body", body = ErrorBody),
        (status = 429, description = "`task_queue_full`: `[tasks] max_queued` tasks wait to run already (with `Retry-After`)", body = ErrorBody),
    ))]
pub async fn approve(
    req: HttpRequest,
    principal: Principal,
    id: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    action(req, principal, Op::Approve(id.into_inner()), payload, state).await
}

/// Cancels a task that has not ended.
#[utoipa::path(post, path = "/v1/tasks/{id}/cancel", tag = "tasks", security(("bearer" = []), ("api_key" = []), ("session_cookie" = []), ("session_token" = [])),
    params(("id" = String, Path, description = "The task's id"), ("Idempotency-Key" = String, Header, description = "1 to 255 visible characters; the same key and body replay the first answer")),
    responses(
        (status = 200, description = "Cancelled", body = TaskView, headers(("idempotent-replayed" = String, description = "`true` on a replay of the first answer"))),
        (status = 400, description = "`idempotency_key_required` or `invalid_idempotency_key`", body = ErrorBody),
        (status = 404, description = "No such task of the caller's", body = ErrorBody),
        (status = 409, description = "`invalid_transition`, or `idempotency_key_in_use` while the first request is handled", body = ErrorBody),
        (status = 422, description = "`idempotency_key_reused` with another body", body = ErrorBody),
    ))]
pub async fn cancel(
    req: HttpRequest,
    principal: Principal,
    id: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    action(req, principal, Op::Cancel(id.into_inner()), payload, state).await
}

/// Runs a `failed` or `cancelled` task again.
#[utoipa::path(post, path = "/v1/tasks/{id}/retry", tag = "tasks", security(("bearer" = []), ("api_key" = []), ("session_cookie" = []), ("session_token" = [])),
    params(("id" = String, Path, description = "The task's id"), ("Idempotency-Key" = String, Header, description = "1 to 255 visible characters; the same key and body replay the first answer")),
    responses(
        (status = 200, description = "Queued again", body = TaskView, headers(("idempotent-replayed" = String, description = "`true` on a replay of the first answer"))),
        (status = 400, description = "`idempotency_key_required` or `invalid_idempotency_key`", body = ErrorBody),
        (status = 404, description = "No such task of the caller's", body = ErrorBody),
        (status = 409, description = "`invalid_transition`, or `idempotency_key_in_use` while the first request is handled", body = ErrorBody),
        (status = 422, description = "`idempotency_key_reused` with another body", body = ErrorBody),
        (status = 429, description = "`task_queue_full`: `[tasks] max_queued` tasks wait to run already (with `Retry-After`)", body = ErrorBody),
    ))]
pub async fn retry(
    req: HttpRequest,
    principal: Principal,
    id: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    action(req, principal, Op::Retry(id.into_inner()), payload, state).await
}

/// `approve`, `cancel` or `retry`: a mutation with an `Idempotency-Key`.
async fn action(
    req: HttpRequest,
    principal: Principal,
    op: Op,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Scope::Write)?;
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

#[utoipa::path(get, path = "/v1/tasks/{id}", tag = "tasks", security(("bearer" = []), ("api_key" = []), ("session_cookie" = []), ("session_token" = [])),
    params(("id" = String, Path, description = "The task's id")),
    responses(
        (status = 200, description = "The task", body = TaskView),
        (status = 404, description = "No such task of the caller's", body = ErrorBody),
    ))]
pub async fn get(
    principal: Principal,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Scope::Read)?;
    Ok(HttpResponse::Ok().json(TaskView::of(&visible(&state, &principal, &id).await?)))
}

#[derive(serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Every principal's tasks (admins only).
    all: Option<bool>,
}

#[utoipa::path(get, path = "/v1/tasks", tag = "tasks", security(("bearer" = []), ("api_key" = []), ("session_cookie" = []), ("session_token" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "The caller's tasks (every task with `all=true`), newest first", body = List<TaskView>),
        (status = 403, description = "`all=true` from a non-admin", body = ErrorBody),
    ))]
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
    let data: Vec<TaskView> = tasks
        .iter()
        .rev()
        .filter(|t| {
            if all {
                true
            } else {
                t.owner == v.user_id && (v.token_id.is_none() || t.token_id == v.token_id)
            }
        })
        .map(TaskView::of)
        .collect();
    Ok(HttpResponse::Ok().json(List::of(data)))
}

#[derive(serde::Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitBody {
    /// Seconds to wait, 0 to 300 (default 30).
    #[schema(minimum = 0, maximum = 300)]
    timeout_s: Option<f64>,
}

/// The task once it is no longer `queued` or `running`, or as it is when
/// the timeout ends. Not a mutation: no `Idempotency-Key`.
#[utoipa::path(post, path = "/v1/tasks/{id}/wait", tag = "tasks", security(("bearer" = []), ("api_key" = []), ("session_cookie" = []), ("session_token" = [])),
    params(("id" = String, Path, description = "The task's id")),
    request_body(content = Option<WaitBody>, description = "Optional; an empty body waits 30 s"),
    responses(
        (status = 200, description = "The task", body = TaskView),
        (status = 404, description = "No such task of the caller's", body = ErrorBody),
        (status = 422, description = "`timeout_s` out of range", body = ErrorBody),
    ))]
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
            return Ok(HttpResponse::Ok().json(TaskView::of(&t)));
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

/// One event of a task's stream.
#[derive(ToSchema)]
#[allow(dead_code)] // documents the stream written by `sse_event`
pub struct TaskStreamEvent {
    /// The event's number: 1, 2, … (for `Last-Event-ID`).
    id: String,
    event: TaskEventKind,
    /// A JSON object (a `status` event has `status`).
    data: String,
}

#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum TaskEventKind {
    Status,
    Output,
    Error,
}

/// `GET /v1/tasks/{id}/events`: stored events after `Last-Event-ID`, then
/// new ones as they are written; ends after the final status.
#[utoipa::path(get, path = "/v1/tasks/{id}/events", tag = "tasks", security(("bearer" = []), ("api_key" = []), ("session_cookie" = []), ("session_token" = [])),
    params(
        ("id" = String, Path, description = "The task's id"),
        ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this event"),
    ),
    responses(
        (status = 200, description = "Server-sent events: `id: N`, `event: status|output|error`, `data:` a JSON object; the stream ends after the final status",
            content_type = "text/event-stream", body = TaskStreamEvent),
        (status = 400, description = "`invalid_last_event_id`", body = ErrorBody),
        (status = 404, description = "No such task of the caller's", body = ErrorBody),
    ))]
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
