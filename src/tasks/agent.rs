//! `agent.run` tasks go to an HTTP agent backend (`[tasks.agent]`), which
//! implements a small contract (README, "Agent backend contract"):
//!
//! - `GET /contract` → `{"version": 1}`, checked before the first mutating call;
//! - `POST /runs {"task_id","input"}` → `{"id"}`;
//! - `GET /runs/{id}/events?after=N` → `{"status","events":[{"seq","kind","data"}],"result","error"}`;
//! - `POST /runs/{id}/cancel`.
//!
//! Every mutating call carries `X-Gatehouse-Contract: 1`. The gateway polls
//! the events and turns them into the task's events; a task whose instance
//! stopped is re-attached by its backend id.

use crate::gateway::clients::WorkerClients;
use crate::AppState;
use actix::Recipient;
use gatehouse_actors::model::TaskRecord;
use gatehouse_actors::tasks::{Outcome, Progress};
use serde_json::{json, Value};
use std::time::Duration;

pub const CONTRACT: u64 = 1;
const POLL: Duration = Duration::from_millis(250);
const MAX_BODY: usize = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("no agent backend is configured ([tasks.agent] base_url)")]
    NotConfigured,
    #[error("the agent backend speaks contract {0}, the gateway speaks {CONTRACT}")]
    Mismatch(String),
    #[error("the agent backend failed: {0}")]
    Failed(String),
}

fn client(state: &AppState, clients: &WorkerClients) -> Result<(awc::Client, String), AgentError> {
    let cfg = state
        .config
        .tasks
        .agent
        .as_ref()
        .ok_or(AgentError::NotConfigured)?;
    Ok((
        clients.agent(&state.upstream, &cfg.base_url, cfg.local, cfg.timeout),
        cfg.base_url.clone(),
    ))
}

/// The JSON body of a 2xx answer; with `lenient`, `null` when it is empty or not JSON.
async fn answer<S>(
    sent: impl std::future::Future<
        Output = Result<awc::ClientResponse<S>, awc::error::SendRequestError>,
    >,
    lenient: bool,
) -> Result<Value, AgentError>
where
    S: futures_util::Stream<Item = Result<actix_web::web::Bytes, awc::error::PayloadError>> + Unpin,
{
    let failed = |e: &dyn std::fmt::Display| AgentError::Failed(e.to_string());
    let mut res = sent.await.map_err(|e| failed(&e))?;
    if !res.status().is_success() {
        return Err(AgentError::Failed(format!(
            "answered {}",
            res.status().as_u16()
        )));
    }
    let body = res.body().limit(MAX_BODY).await.map_err(|e| failed(&e))?;
    match serde_json::from_slice(&body) {
        Ok(v) => Ok(v),
        Err(_) if lenient => Ok(Value::Null),
        Err(_) => Err(AgentError::Failed(
            "answered something that is not JSON".into(),
        )),
    }
}

async fn get_json(req: awc::ClientRequest) -> Result<Value, AgentError> {
    answer(req.send(), false).await
}

async fn post_json(req: awc::ClientRequest, body: Value) -> Result<Value, AgentError> {
    let req = req.insert_header(("x-gatehouse-contract", CONTRACT.to_string()));
    answer(req.send_json(&body), true).await
}

/// Checks the backend speaks our contract (before any mutating call).
pub async fn check_contract(state: &AppState, clients: &WorkerClients) -> Result<(), AgentError> {
    let (http, base) = client(state, clients)?;
    let v = get_json(http.get(format!("{base}/contract"))).await?;
    match v.get("version").and_then(Value::as_u64) {
        Some(CONTRACT) => Ok(()),
        Some(other) => Err(AgentError::Mismatch(other.to_string())),
        None => Err(AgentError::Mismatch("(none)".into())),
    }
}

fn failed(e: AgentError) -> Outcome {
    let code = match e {
        AgentError::Mismatch(_) => "agent_contract_mismatch",
        AgentError::NotConfigured => "agent_not_configured",
        AgentError::Failed(_) => "agent_error",
    };
    tracing::warn!(error = %e, "agent task failed");
    Outcome::Failed(json!({"code": code, "message": e.to_string()}))
}

pub async fn run(
    state: &AppState,
    clients: &WorkerClients,
    task: TaskRecord,
    progress: Recipient<Progress>,
) -> Outcome {
    let (http, base) = match client(state, clients) {
        Ok(c) => c,
        Err(e) => return failed(e),
    };
    let run_id = match &task.external_id {
        Some(id) => id.clone(),
        None => {
            if let Err(e) = check_contract(state, clients).await {
                return failed(e);
            }
            let created = post_json(
                http.post(format!("{base}/runs")),
                json!({"task_id": task.id, "input": task.input}),
            )
            .await;
            let id = match created.map(|v| v.get("id").and_then(Value::as_str).map(str::to_owned)) {
                Ok(Some(id)) if !id.is_empty() && id.len() <= 256 => id,
                Ok(_) => return failed(AgentError::Failed("the run has no id".into())),
                Err(e) => return failed(e),
            };
            progress.do_send(Progress {
                task_id: task.id.clone(),
                kind: "output",
                data: Value::Null,
                external_id: Some(id.clone()),
            });
            id
        }
    };
    let mut after = 0u64;
    let mut errors = 0;
    loop {
        let url = format!(
            "{base}/runs/{}/events?after={after}",
            urlencoding::encode(&run_id)
        );
        let v = match get_json(http.get(url)).await {
            Ok(v) => {
                errors = 0;
                v
            }
            Err(e) => {
                errors += 1;
                if errors >= 20 {
                    return failed(e);
                }
                actix_rt::time::sleep(POLL).await;
                continue;
            }
        };
        for ev in v["events"].as_array().into_iter().flatten() {
            let seq = ev["seq"].as_u64().unwrap_or(after + 1);
            if seq <= after {
                continue;
            }
            after = seq;
            let kind = if ev["kind"] == "error" {
                "error"
            } else {
                "output"
            };
            progress.do_send(Progress {
                task_id: task.id.clone(),
                kind,
                data: ev["data"].clone(),
                external_id: None,
            });
        }
        match v["status"].as_str() {
            Some("succeeded") => return Outcome::Succeeded(v["result"].clone()),
            Some("failed") => {
                return Outcome::Failed(
                    json!({"code": "agent_failed", "message": "the agent run failed", "detail": v["error"]}),
                )
            }
            Some("cancelled") => {
                return Outcome::Failed(
                    json!({"code": "agent_cancelled", "message": "the agent backend cancelled the run"}),
                )
            }
            _ => actix_rt::time::sleep(POLL).await,
        }
    }
}

/// Asks the backend to stop a run (the task was cancelled).
pub async fn cancel(state: &AppState, clients: &WorkerClients, task: &TaskRecord) {
    let (Ok((http, base)), Some(id)) = (client(state, clients), &task.external_id) else {
        return;
    };
    if let Err(e) = check_contract(state, clients).await {
        tracing::warn!(error = %e, "not cancelling the agent run");
        return;
    }
    let url = format!("{base}/runs/{}/cancel", urlencoding::encode(id));
    if let Err(e) = post_json(http.post(url), json!({})).await {
        tracing::warn!(task = %task.id, error = %e, "cancelling the agent run failed");
    }
}
