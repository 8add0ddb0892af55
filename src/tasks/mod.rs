//! What tasks do. `chat.completion` runs the chat request through the model
//! gateway (the same routing, fallback and usage as `/v1/chat/completions`),
//! streaming so that each delta becomes an `output` event; `agent.run` is
//! handed to the HTTP agent backend (see [`agent`]). Both run as the
//! principal that created the task, rebuilt from the store when they start
//! (a token revoked or a user locked since then fails the task).

pub mod agent;

use crate::auth::{Principal, Scope};
use crate::gateway::clients::WorkerClients;
use crate::gateway::proxy::{Call, Surface};
use crate::gateway::sse::SseParser;
use crate::AppState;
use actix::Recipient;
use actix_web::web;
use futures_util::future::LocalBoxFuture;
use futures_util::StreamExt;
use gatehouse_actors::model::{TaskRecord, TokenStatus};
use gatehouse_actors::tasks::{Outcome, Progress, SharedRunner, TaskRunner};
use serde_json::{json, Value};
use std::rc::Rc;
use std::sync::{Arc, Weak};
use std::time::Instant;

/// The principal a task runs as, or why it may not run.
pub fn principal_of(state: &AppState, t: &TaskRecord) -> Result<Principal, &'static str> {
    if t.owner == "local" {
        return Ok(Principal::local_admin());
    }
    let user = state
        .handles
        .user_view()
        .get(&t.owner)
        .filter(|u| u.locked.is_none())
        .ok_or("the task's owner is locked or gone")?;
    match &t.token_id {
        None => Ok(Principal::from_session(
            user,
            String::new(),
            gatehouse_actors::TokenHash::of("task"),
        )),
        Some(id) => {
            let live = state
                .handles
                .token_table()
                .get(id)
                .ok_or("the task's token is gone")?;
            let now = state.handles.now();
            if live.record.status(now, live.last_used_at()) != TokenStatus::Active {
                return Err("the task's token was revoked or expired");
            }
            Ok(Principal::from_token(user, &live.record))
        }
    }
}

/// How often a running chat task writes its output as an event.
const OUTPUT_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// Reports the output gathered since the last event (if any).
fn send_output(progress: &Recipient<Progress>, task_id: &str, pending: &mut String) {
    if pending.is_empty() {
        return;
    }
    progress.do_send(Progress {
        task_id: task_id.to_owned(),
        kind: "output",
        data: json!({"delta": std::mem::take(pending)}),
        external_id: None,
    });
}

fn failed(code: &str, message: impl Into<String>) -> Outcome {
    Outcome::Failed(json!({"code": code, "message": message.into()}))
}

/// Runs tasks for the `TaskActor`. It holds the state weakly: the state
/// holds the actor handles, which hold this runner's factory, and a strong
/// reference would keep the state (and its store) alive for good.
pub struct Runner {
    state: Weak<AppState>,
    clients: Rc<WorkerClients>,
}

impl Runner {
    pub fn factory(state: &web::Data<AppState>) -> SharedRunner {
        let state = Arc::downgrade(&state.clone().into_inner());
        Arc::new(move || {
            Box::new(Runner {
                state: state.clone(),
                clients: Rc::default(),
            }) as Box<dyn TaskRunner>
        })
    }
}

impl TaskRunner for Runner {
    fn run(
        &self,
        task: TaskRecord,
        progress: Recipient<Progress>,
    ) -> LocalBoxFuture<'static, Outcome> {
        let (state, clients) = (self.state.upgrade(), self.clients.clone());
        Box::pin(async move {
            let Some(state) = state else {
                return failed("unavailable", "the gateway is shutting down");
            };
            let principal = match principal_of(&state, &task) {
                Ok(p) => p,
                Err(why) => return failed("forbidden", why),
            };
            match task.kind.as_str() {
                "chat.completion" => chat(&state, &clients, &principal, task, progress).await,
                "agent.run" => agent::run(&state, &clients, task, progress).await,
                other => failed("invalid_kind", format!("unknown task kind {other:?}")),
            }
        })
    }

    fn cancel(&self, task: TaskRecord) -> LocalBoxFuture<'static, ()> {
        let (state, clients) = (self.state.upgrade(), self.clients.clone());
        Box::pin(async move {
            if let Some(state) = state {
                agent::cancel(&state, &clients, &task).await;
            }
        })
    }
}

/// Runs the chat request streaming, one `output` event per delta, and
/// answers a `chat.completion` built from them.
async fn chat(
    state: &AppState,
    clients: &WorkerClients,
    principal: &Principal,
    task: TaskRecord,
    progress: Recipient<Progress>,
) -> Outcome {
    if !principal.scopes.allows(Scope::Write) {
        return failed(
            "insufficient_scope",
            "the task's credential lacks the `write` scope",
        );
    }
    let mut body = task.input.clone();
    let Some(model) = body.get("model").and_then(Value::as_str).map(str::to_owned) else {
        return failed("invalid_request", "input.model: field required");
    };
    let targets = match crate::gateway::targets_for(state, principal, &model) {
        Ok(targets) => targets,
        Err(e) => return failed(&e.code, e.message),
    };
    body["stream"] = Value::Bool(true);
    body["stream_options"] = json!({"include_usage": true});
    let call = Call {
        state,
        clients,
        principal,
        surface: Surface::Chat,
        body: crate::gateway::body::ApiBody::from_value(body),
        t0: Instant::now(),
        anthropic_headers: Vec::new(),
    };
    let res = match call.run(targets, &model).await {
        Ok(res) => res,
        Err(e) => {
            return Outcome::Failed(
                json!({"code": e.code, "message": e.message, "status": e.status.as_u16()}),
            )
        }
    };
    let mut body = res.into_body();
    let (mut pending, mut last_sent) = (String::new(), None);
    let mut parser = SseParser::new(4 * 1024 * 1024);
    let (mut text, mut usage, mut finish, mut id) =
        (String::new(), Value::Null, Value::Null, Value::Null);
    let mut stream = std::pin::pin!(futures_util::stream::poll_fn(move |cx| {
        actix_web::body::MessageBody::poll_next(std::pin::Pin::new(&mut body), cx)
    }));
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else {
            return failed("upstream_error", "the model stream broke");
        };
        let Ok(events) = parser.feed(&chunk) else {
            return failed("upstream_error", "the model stream was malformed");
        };
        for ev in events {
            if ev.data.is_empty() || ev.data == "[DONE]" {
                continue;
            }
            let Ok(v) = serde_json::from_str::<Value>(&ev.data) else {
                continue;
            };
            if let Some(err) = v.get("error") {
                return Outcome::Failed(err.clone());
            }
            if id.is_null() {
                id = v["id"].clone();
            }
            if !v["usage"].is_null() {
                usage = v["usage"].clone();
            }
            if let Some(choice) = v["choices"].get(0) {
                if let Some(delta) = choice["delta"]["content"]
                    .as_str()
                    .filter(|d| !d.is_empty())
                {
                    text.push_str(delta);
                    pending.push_str(delta);
                    // One durable event per OUTPUT_EVERY at most: deltas in between are joined.
                    if last_sent.is_none_or(|t: Instant| t.elapsed() >= OUTPUT_EVERY) {
                        send_output(&progress, &task.id, &mut pending);
                        last_sent = Some(Instant::now());
                    }
                }
                if !choice["finish_reason"].is_null() {
                    finish = choice["finish_reason"].clone();
                }
            }
        }
    }
    send_output(&progress, &task.id, &mut pending);
    Outcome::Succeeded(json!({
        "id": id, "object": "chat.completion", "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
        "usage": usage,
    }))
}
