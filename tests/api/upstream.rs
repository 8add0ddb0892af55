//! Fake model providers on loopback (the third parties tests cannot reach):
//! an OpenAI-compatible API and an Anthropic one. What they do depends on the
//! model asked for, so one fake serves every case:
//!
//! - `fail-500` → 500, `rate-429` → 429 with `Retry-After: 7`, `bad-400` → 400
//!   with an error that quotes the key it got, `slow` → waits 3 s before answering;
//! - `hold` (stream) → the first chunk, then nothing until [`FakeLlm::release`];
//! - `stall` (stream) → the first chunk, then silence for 5 s;
//! - `endless` (stream) → a chunk every 50 ms until the reader goes away;
//! - anything else answers `echo: <last user text>` with fixed usage.
//!
//! Whatever the model, a key (bearer or `x-api-key`) starting `sk-revoked`
//! gets `401`, and one starting `sk-limited` gets `429` with `Retry-After: 1`
//! (the model list too), as a provider does for a bad or exhausted key.

use super::fakes::serve;
use actix_web::{web, App, HttpRequest, HttpResponse};
use futures_util::stream;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, Notify};

#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone, Default)]
pub struct Shared {
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub release: Arc<Notify>,
    /// Streams whose client (the gateway) went away before the end.
    pub cancelled: Arc<AtomicUsize>,
    pub calls: Arc<AtomicUsize>,
    /// What `GET /v1/models` lists; `None`: it answers `503`.
    pub models: Arc<Mutex<Option<Vec<String>>>>,
}

pub struct FakeLlm {
    pub url: String,
    pub shared: Shared,
}

impl FakeLlm {
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }
    pub fn last(&self) -> Seen {
        self.seen().pop().expect("the fake was called")
    }
    pub fn calls(&self) -> usize {
        self.shared.calls.load(Ordering::SeqCst)
    }
    /// Lets one held stream go on (kept if none waits yet).
    pub fn release(&self) {
        self.shared.release.notify_one();
    }
    pub fn cancelled(&self) -> usize {
        self.shared.cancelled.load(Ordering::SeqCst)
    }
    /// Changes what the model list answers from now on (`None`: `503`).
    pub fn set_models(&self, models: Option<&[&str]>) {
        *self.shared.models.lock().unwrap() =
            models.map(|m| m.iter().map(|m| m.to_string()).collect());
    }

    /// An OpenAI-compatible API; its base URL (…/v1) is `url`.
    pub fn openai(models: &[&str]) -> FakeLlm {
        Self::start(models, false)
    }

    /// An Anthropic Messages API; its base URL (the host) is `url`.
    pub fn anthropic(models: &[&str]) -> FakeLlm {
        Self::start(models, true)
    }

    fn start(models: &[&str], anthropic: bool) -> FakeLlm {
        let shared = Shared::default();
        let s = shared.clone();
        let url = serve(move || {
            let s = s.clone();
            let s2 = s.clone();
            App::new()
                .app_data(web::PayloadConfig::new(64 * 1024 * 1024))
                .route(
                    "/v1/models",
                    web::get().to(move |req: HttpRequest| {
                        record(&s, &req, Value::Null);
                        let refused = refuse_key(&req);
                        let data: Option<Vec<Value>> = s.models.lock().unwrap().as_ref().map(|m| {
                            m.iter()
                                .map(|m| json!({"id": m, "object": "model"}))
                                .collect()
                        });
                        async move {
                            refused.unwrap_or_else(|| match data {
                                Some(data) => {
                                    HttpResponse::Ok().json(json!({"object": "list", "data": data}))
                                }
                                None => HttpResponse::ServiceUnavailable().finish(),
                            })
                        }
                    }),
                )
                .default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
                    let s = s2.clone();
                    async move { handle(req, body, s, anthropic).await }
                }))
        });
        let url = if anthropic { url } else { format!("{url}/v1") };
        let fake = FakeLlm { url, shared };
        fake.set_models(Some(models));
        fake
    }
}

/// The key the gateway sent, by either API's header.
pub fn key_of(req: &HttpRequest) -> String {
    let h = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    h("authorization")
        .map(|v| v.trim_start_matches("Bearer ").to_owned())
        .or_else(|| h("x-api-key"))
        .unwrap_or_default()
}

fn refuse_key(req: &HttpRequest) -> Option<HttpResponse> {
    let key = key_of(req);
    if key.starts_with("sk-revoked") {
        return Some(HttpResponse::Unauthorized().json(json!({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key"}})));
    }
    if key.starts_with("sk-limited") {
        return Some(
            HttpResponse::TooManyRequests()
                .insert_header(("retry-after", "1"))
                .json(json!({"error": {"message": "quota exceeded", "type": "rate_limit"}})),
        );
    }
    None
}

async fn handle(req: HttpRequest, body: web::Bytes, s: Shared, anthropic: bool) -> HttpResponse {
    s.calls.fetch_add(1, Ordering::SeqCst);
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    record(&s, &req, body.clone());
    if let Some(refused) = refuse_key(&req) {
        return refused;
    }
    let model = body["model"].as_str().unwrap_or("").to_owned();
    match model.as_str() {
        "fail-500" => {
            return HttpResponse::InternalServerError().body("boom at 10.1.2.3 with sk-upstream")
        }
        "rate-429" => {
            return HttpResponse::TooManyRequests()
                .insert_header(("retry-after", "7"))
                .json(json!({"error": {"message": "slow down", "type": "rate_limit"}}))
        }
        "bad-400" => {
            let key = req
                .headers()
                .get("authorization")
                .or(req.headers().get("x-api-key"));
            let key = key
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .trim_start_matches("Bearer ")
                .to_owned();
            return HttpResponse::BadRequest().json(json!({"error": {
                "message": format!("max_tokens is too large for key {key}"), "type": "invalid_request_error", "code": "context_length_exceeded"}}));
        }
        "slow" => actix_rt::time::sleep(Duration::from_secs(3)).await,
        _ => {}
    }
    let text = last_user_text(&body);
    let stream = body["stream"].as_bool() == Some(true);
    match (req.path(), anthropic, stream) {
        ("/v1/chat/completions", false, false) => HttpResponse::Ok().json(json!({
            "id": "chatcmpl-fake", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": format!("echo: {text}")}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}})),
        ("/v1/chat/completions", false, true) => {
            let usage = body.pointer("/stream_options/include_usage").and_then(Value::as_bool) == Some(true);
            let chunk = |delta: Value, finish: Value| {
                let mut c = json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1, "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
                if usage { c["usage"] = Value::Null; }
                format!("data: {c}\n\n")
            };
            let mut parts = vec![
                chunk(json!({"role": "assistant", "content": "echo: "}), Value::Null),
                chunk(json!({"content": text}), Value::Null),
                chunk(json!({}), json!("stop")),
            ];
            if usage {
                parts.push(format!("data: {}\n\n", json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1, "model": model,
                    "choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}})));
            }
            parts.push("data: [DONE]\n\n".into());
            sse(parts, &model, s)
        }
        ("/v1/embeddings", false, _) => HttpResponse::Ok().json(json!({
            "object": "list", "model": model,
            "data": [{"object": "embedding", "index": 0, "embedding": [0.25, -0.5, 1.0]}],
            "usage": {"prompt_tokens": 3, "total_tokens": 3}})),
        ("/v1/messages", true, false) => HttpResponse::Ok().json(json!({
            "id": "msg_fake", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": format!("echo: {text}")}],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": 13, "output_tokens": 5}})),
        ("/v1/messages", true, true) => {
            let ev = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
            let parts = vec![
                ev("message_start", json!({"type": "message_start", "message": {"id": "msg_fake", "type": "message", "role": "assistant", "model": model, "content": [], "stop_reason": null, "usage": {"input_tokens": 13, "output_tokens": 1}}})),
                ev("content_block_start", json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})),
                ev("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "echo: "}})),
                ev("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}})),
                ev("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
                ev("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 5}})),
                ev("message_stop", json!({"type": "message_stop"})),
            ];
            sse(parts, &model, s)
        }
        _ => HttpResponse::NotFound().json(json!({"error": {"message": "no such route", "type": "not_found"}})),
    }
}

fn record(s: &Shared, req: &HttpRequest, body: Value) {
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    s.seen.lock().unwrap().push(Seen {
        path: req.path().to_owned(),
        headers,
        body,
    });
}

fn last_user_text(body: &Value) -> String {
    let Some(last) = body["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
    else {
        return String::new();
    };
    match &last["content"] {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

/// Streams `parts`; for `hold` and `stall` only the first goes at once.
fn sse(parts: Vec<String>, model: &str, s: Shared) -> HttpResponse {
    let (tx, rx) = mpsc::channel::<String>(1);
    let model = model.to_owned();
    actix_rt::spawn(async move {
        for (i, part) in parts.into_iter().enumerate() {
            if i == 1 && model == "hold" {
                tokio::select! {
                    _ = s.release.notified() => {}
                    _ = tx.closed() => {
                        s.cancelled.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                }
            }
            if i == 1 && model == "stall" {
                actix_rt::time::sleep(Duration::from_secs(5)).await;
            }
            if tx.send(part).await.is_err() {
                s.cancelled.fetch_add(1, Ordering::SeqCst);
                return;
            }
            // `endless` goes on with a chunk every 50 ms until its reader is gone.
            if i == 0 && model == "endless" {
                loop {
                    actix_rt::time::sleep(Duration::from_millis(50)).await;
                    let more = format!(
                        "data: {}\n\n",
                        json!({"choices": [{"index": 0, "delta": {"content": "."}}]})
                    );
                    if tx.send(more).await.is_err() {
                        s.cancelled.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                }
            }
        }
    });
    let body = stream::unfold(rx, |mut rx| async move {
        let part = rx.recv().await?;
        Some((Ok::<_, actix_web::Error>(web::Bytes::from(part)), rx))
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .streaming(body)
}
