//! One model call: pick the targets for the model name, try them in order
//! (skipping providers whose circuit is open), and answer with the first
//! success — passed through or translated. Connection errors, timeouts,
//! `5xx` and `429` fall back to the next target; nothing falls back once a
//! stream has started. Every call leaves one usage record.

use super::body::ApiBody;
use super::clients::{authorize, WorkerClients};
use super::stream::{Mode, ProxyStream};
use super::translate;
use crate::auth::{Principal, Via};
use crate::error::ApiError;
use crate::AppState;
use actix_web::http::{header, StatusCode};
use actix_web::{HttpMessage, HttpResponse};
use gatehouse_actors::gateway::circuit::Admit;
use gatehouse_actors::gateway::{ProviderKind, Target, UsageSink};
use gatehouse_actors::model::UsageRecord;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Which API the client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    Chat,
    Messages,
    Embeddings,
}

/// The largest upstream body read whole (non-stream answers and errors).
const MAX_UPSTREAM_BODY: usize = 64 * 1024 * 1024;
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Writes the call's usage record when dropped, however the call ends.
pub struct CallGuard {
    sink: UsageSink,
    record: Option<UsageRecord>,
    started: Instant,
    pub tokens: (u64, u64),
    pub status: u16,
    /// The stream reached its end (otherwise the client left: 499).
    pub completed: bool,
    provider: Arc<str>,
    price: Option<crate::config::Price>,
    reservation: Option<Arc<super::limits::Reservation>>,
    metrics: Arc<crate::metrics::Metrics>,
}

impl CallGuard {
    fn new(
        state: &AppState,
        principal: &Principal,
        target: &Target,
        started: Instant,
        reservation: &Option<Arc<super::limits::Reservation>>,
    ) -> Self {
        let token_id = match &principal.via {
            Via::Token { id } => Some(id.clone()),
            _ => None,
        };
        CallGuard {
            sink: state.handles.usage_sink().clone(),
            record: Some(UsageRecord {
                at: state.handles.now(),
                user_id: principal.id.clone(),
                username: principal.username.clone(),
                token_id,
                provider: target.provider.name.to_string(),
                model: target.public.to_string(),
                prompt_tokens: 0,
                completion_tokens: 0,
                status: 0,
                latency_ms: 0,
                cost: 0.0,
                requests: 1,
            }),
            started,
            tokens: (0, 0),
            status: 200,
            completed: true,
            provider: target.provider.name.clone(),
            price: state.config.prices.get(&*target.public).copied(),
            reservation: reservation.clone(),
            metrics: state.metrics.clone(),
        }
    }

    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// Counts a stream as active until the returned guard drops.
    pub fn stream_opened(&self) -> crate::metrics::ActiveStream {
        self.metrics.stream_opened()
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        let Some(mut r) = self.record.take() else {
            return;
        };
        r.prompt_tokens = self.tokens.0;
        r.completion_tokens = self.tokens.1;
        r.status = if self.completed || self.status != 200 {
            self.status
        } else {
            499
        };
        let latency = self.started.elapsed();
        self.metrics.upstream(&self.provider).observe(latency);
        r.latency_ms = latency.as_millis() as u64;
        r.cost = self
            .price
            .map_or(0.0, |p| p.cost(r.prompt_tokens, r.completion_tokens));
        if let Some(reservation) = &self.reservation {
            reservation.used(r.prompt_tokens + r.completion_tokens, r.cost);
        }
        tracing::info!(
            target: "gatehouse::calls",
            user = %r.username,
            token = r.token_id.as_deref().unwrap_or("-"),
            provider = %r.provider,
            model = %r.model,
            status = r.status,
            prompt_tokens = r.prompt_tokens,
            completion_tokens = r.completion_tokens,
            latency_ms = r.latency_ms,
            "model call"
        );
        self.sink.record(r);
    }
}

/// Why one target failed, and whether the next may be tried.
enum Failure {
    /// Unreachable, timed out, `5xx`, a refused credential, or an unreadable answer.
    Upstream,
    RateLimited(Option<Duration>),
    /// The circuit is open: skipped without a call.
    Skipped,
}

/// A finished attempt that the client will see.
enum Answer {
    Full(HttpResponse),
    /// An upstream `4xx` (not 401/403/429), passed on in OpenAI shape.
    Refused(ApiError),
    /// The request cannot be put in this provider's shape (no call made).
    Invalid(ApiError),
}

pub struct Call<'a> {
    pub state: &'a AppState,
    pub clients: &'a WorkerClients,
    pub principal: &'a Principal,
    pub surface: Surface,
    pub body: ApiBody,
    /// When the request reached the gateway.
    pub t0: Instant,
    /// Client headers forwarded on the Anthropic surface (`anthropic-version`, `anthropic-beta`).
    pub anthropic_headers: Vec<(header::HeaderName, header::HeaderValue)>,
}

impl Call<'_> {
    pub async fn run(
        mut self,
        targets: Vec<Target>,
        requested: &str,
    ) -> Result<HttpResponse, ApiError> {
        let stream = self.surface != Surface::Embeddings && self.body.streams();
        let wants_usage = self.body.wants_usage();
        let reservation =
            super::limits::reserve(self.state, self.principal, &targets, &self.body).await?;
        let mut last = Failure::Skipped;
        let mut last_target = None;
        for target in targets {
            let now_ms = (self.state.handles.now().unix_timestamp_nanos() / 1_000_000) as i64;
            let admit = target.provider.circuit.admit(now_ms);
            if admit == Admit::Open {
                tracing::debug!(provider = %target.provider.name, "circuit open; skipped");
                last_target = Some(target);
                continue;
            }
            let guard = CallGuard::new(self.state, self.principal, &target, self.t0, &reservation);
            match self
                .attempt(&target, stream, wants_usage, requested, guard)
                .await
            {
                Ok(Answer::Full(res)) => {
                    target.provider.circuit.success();
                    return Ok(res);
                }
                Ok(Answer::Refused(e)) => {
                    target.provider.circuit.success();
                    return Err(e);
                }
                Ok(Answer::Invalid(e)) => {
                    target.provider.circuit.abandon_probe();
                    return Err(e);
                }
                Err((failure, mut guard)) => {
                    match failure {
                        Failure::RateLimited(_) => target.provider.circuit.abandon_probe(),
                        _ => target.provider.circuit.failure(now_ms),
                    }
                    // Only the last attempt leaves a record for the client's call.
                    guard.record = None;
                    last = failure;
                    last_target = Some(target);
                }
            }
        }
        let (status, err) = match last {
            Failure::RateLimited(after) => (
                429,
                ApiError::too_many(
                    "rate_limit_exceeded",
                    "the provider is rate limiting requests; retry later",
                    after.unwrap_or(Duration::from_secs(1)),
                ),
            ),
            _ => (502, ApiError::upstream()),
        };
        if let Some(target) = last_target {
            let mut guard =
                CallGuard::new(self.state, self.principal, &target, self.t0, &reservation);
            guard.status = status;
        }
        Err(err)
    }

    /// One target: send, then read or stream the answer.
    async fn attempt(
        &mut self,
        target: &Target,
        stream: bool,
        wants_usage: bool,
        requested: &str,
        mut guard: CallGuard,
    ) -> Result<Answer, (Failure, CallGuard)> {
        let provider = &target.provider;
        let kind = provider.kind;
        let (path, payload) = match self.upstream_body(target, stream, wants_usage) {
            Ok(v) => v,
            Err(e) => {
                guard.record = None;
                return Ok(Answer::Invalid(e));
            }
        };
        let client = self.clients.get(&self.state.upstream, provider);
        let Some(endpoint) = self.clients.uri(provider, path) else {
            tracing::warn!(provider = %provider.name, "the provider's base URL does not make a valid URI");
            return Err((Failure::Upstream, guard));
        };
        let payload = actix_web::web::Bytes::from(payload);
        let now_ms = (self.state.handles.now().unix_timestamp_nanos() / 1_000_000) as i64;
        let mut from = 0;
        // Each profile in turn: a refused key or a rate limit moves the
        // same request on to the next one.
        let (mut res, profile, sent) = loop {
            let profile = if provider.profiles.is_empty() {
                None
            } else {
                match provider.next_profile(now_ms, &target.model, from) {
                    Some((i, p)) => {
                        from = i + 1;
                        Some(p.clone())
                    }
                    None => return Err((no_profile_left(provider, &target.model, now_ms), guard)),
                }
            };
            let mut req = client
                .post(endpoint.uri.clone())
                .insert_header((header::HOST, endpoint.host.clone()));
            req = authorize(req, kind, profile.as_deref()).insert_header((
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            ));
            if kind == ProviderKind::Anthropic && self.surface == Surface::Messages {
                for (name, value) in &self.anthropic_headers {
                    req = req.insert_header((name.clone(), value.clone()));
                }
            }
            let sent = Instant::now();
            let res = match req.send_body(payload.clone()).await {
                Ok(res) => res,
                Err(e) => {
                    tracing::warn!(provider = %provider.name, error = %e, "upstream call failed");
                    return Err((Failure::Upstream, guard));
                }
            };
            let status = res.status();
            let Some(p) = &profile else {
                break (res, profile, sent);
            };
            if status == StatusCode::UNAUTHORIZED {
                if p.health.mark_failing() {
                    profile_failing(self.state, provider, p);
                }
                continue;
            }
            if status == StatusCode::FORBIDDEN {
                tracing::warn!(provider = %provider.name, profile = %p.name, "the provider answered 403 to this profile; trying the next");
                continue;
            }
            if status == StatusCode::TOO_MANY_REQUESTS {
                let after = retry_after(&res).unwrap_or(Duration::from_secs(60));
                p.health
                    .cool_until(&target.model, now_ms + after.as_millis() as i64, now_ms);
                tracing::warn!(provider = %provider.name, profile = %p.name, cooling_s = after.as_secs(), "upstream answered 429; the profile cools down");
                continue;
            }
            break (res, profile, sent);
        };
        let status = res.status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            tracing::warn!(provider = %provider.name, "upstream answered 429");
            return Err((Failure::RateLimited(retry_after(&res)), guard));
        }
        if status.is_server_error()
            || status == StatusCode::UNAUTHORIZED
            || status == StatusCode::FORBIDDEN
        {
            if status.is_server_error() {
                tracing::warn!(provider = %provider.name, status = status.as_u16(), "upstream error");
            } else {
                tracing::error!(provider = %provider.name, status = status.as_u16(), "the provider refused the gateway's credential");
            }
            return Err((Failure::Upstream, guard));
        }
        let total_left = provider.timeouts.total.saturating_sub(sent.elapsed());
        if !status.is_success() {
            let mut res = res.timeout(total_left);
            let body = res.body().limit(MAX_ERROR_BODY).await.unwrap_or_default();
            let err = passed_on_error(status, &body, profile.as_ref().map(|p| &*p.key));
            guard.status = err.status.as_u16();
            return Ok(Answer::Refused(err));
        }
        if stream && close_delimited(&res) {
            // awc reads no body from an HTTP/1.1 answer that has neither a
            // length nor chunks (it would end at the connection's close):
            // fail now, while another target may still be tried.
            tracing::warn!(provider = %provider.name, "the upstream stream has neither a length nor chunked encoding; not supported");
            return Err((Failure::Upstream, guard));
        }
        if stream {
            let mode = match (self.surface, kind) {
                (Surface::Chat, ProviderKind::OpenAi) => Mode::OpenAi {
                    strip_usage: !wants_usage,
                },
                (Surface::Messages, ProviderKind::Anthropic) => Mode::Anthropic,
                (Surface::Messages, ProviderKind::OpenAi) => Mode::ChatToMessages(Box::new(
                    translate::ChatStreamToMessages::new(requested, &message_id()),
                )),
                (_, ProviderKind::Anthropic) => Mode::MessagesToChat(Box::new(
                    translate::MessagesStreamToChat::new(requested, wants_usage),
                )),
                (Surface::Embeddings, ProviderKind::OpenAi) => Mode::OpenAi { strip_usage: false },
            };
            guard.completed = false;
            let overhead = millis(sent.duration_since(self.t0));
            let idle = provider.timeouts.first_byte;
            let body =
                ProxyStream::new(Box::pin(res.take_payload()), mode, idle, total_left, guard);
            return Ok(Answer::Full(
                HttpResponse::Ok()
                    .content_type("text/event-stream")
                    .insert_header((header::CACHE_CONTROL, "no-cache"))
                    .insert_header(("x-accel-buffering", "no"))
                    .insert_header((OVERHEAD, overhead))
                    .streaming(body),
            ));
        }
        let mut res = res.timeout(total_left);
        let body = match res.body().limit(MAX_UPSTREAM_BODY).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(provider = %provider.name, error = %e, "reading the upstream answer failed");
                return Err((Failure::Upstream, guard));
            }
        };
        let upstream_done = Instant::now();
        let out = match (self.surface, kind) {
            (Surface::Chat | Surface::Embeddings, ProviderKind::OpenAi) => {
                guard.tokens = translate::usage_in_body(&body, false);
                body
            }
            (Surface::Messages, ProviderKind::Anthropic) => {
                guard.tokens = translate::usage_in_body(&body, true);
                body
            }
            (Surface::Messages, ProviderKind::OpenAi) => {
                match serde_json::from_slice::<Value>(&body) {
                    Ok(v) => {
                        guard.tokens = translate::openai_usage(&v).unwrap_or_default();
                        serde_json::to_vec(&translate::chat_response_to_messages(&v, requested))
                            .unwrap_or_default()
                            .into()
                    }
                    Err(_) => return Err((Failure::Upstream, guard)),
                }
            }
            (_, ProviderKind::Anthropic) => match serde_json::from_slice::<Value>(&body) {
                Ok(v) => {
                    guard.tokens = translate::anthropic_usage(&v).unwrap_or_default();
                    serde_json::to_vec(&translate::messages_response_to_chat(&v, requested))
                        .unwrap_or_default()
                        .into()
                }
                Err(_) => return Err((Failure::Upstream, guard)),
            },
        };
        let upstream = upstream_done.duration_since(sent);
        let overhead = self.t0.elapsed().saturating_sub(upstream);
        Ok(Answer::Full(
            HttpResponse::Ok()
                .insert_header((
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("application/json"),
                ))
                .insert_header((OVERHEAD, millis(overhead)))
                .body(out),
        ))
    }

    /// The upstream path and body for `target`, in the provider's shape.
    fn upstream_body(
        &mut self,
        target: &Target,
        stream: bool,
        wants_usage: bool,
    ) -> Result<(&'static str, Vec<u8>), ApiError> {
        let invalid = |e: translate::TranslateError| ApiError::bad_request("invalid_request", e.0);
        let (path, value) = match (self.surface, target.provider.kind) {
            (Surface::Chat, ProviderKind::OpenAi) => {
                self.body.set("model", &*target.model);
                if stream && !wants_usage {
                    let mut opts = self
                        .body
                        .get::<Value>("stream_options")
                        .filter(Value::is_object)
                        .unwrap_or_else(|| Value::Object(Default::default()));
                    opts["include_usage"] = Value::Bool(true);
                    self.body.set("stream_options", &opts);
                }
                return Ok(("/chat/completions", self.body.to_vec()));
            }
            (Surface::Embeddings, _) => {
                self.body.set("model", &*target.model);
                return Ok(("/embeddings", self.body.to_vec()));
            }
            (Surface::Messages, ProviderKind::Anthropic) => {
                self.body.set("model", &*target.model);
                return Ok(("/v1/messages", self.body.to_vec()));
            }
            (Surface::Messages, ProviderKind::OpenAi) => (
                "/chat/completions",
                translate::messages_request_to_chat(&self.tree()?, &target.model)
                    .map_err(invalid)?,
            ),
            (Surface::Chat, ProviderKind::Anthropic) => (
                "/v1/messages",
                translate::chat_request_to_messages(&self.tree()?, &target.model)
                    .map_err(invalid)?,
            ),
        };
        Ok((path, serde_json::to_vec(&value).unwrap_or_default()))
    }

    /// The request as a JSON tree, for translation (refused for what a tree
    /// cannot hold; passed through, the same body would go as it came).
    fn tree(&self) -> Result<Value, ApiError> {
        self.body.to_value().map_err(|_| {
            ApiError::bad_request(
                "invalid_json",
                "the request body cannot be translated: a value is nested deeper than 128 levels or a number is out of range",
            )
        })
    }
}

/// An HTTP/1.1 answer whose body would end only when the connection closes.
fn close_delimited(res: &awc::ClientResponse<impl futures_util::Stream>) -> bool {
    res.version() == actix_web::http::Version::HTTP_11
        && !res.headers().contains_key(header::CONTENT_LENGTH)
        && !res
            .headers()
            .get(header::TRANSFER_ENCODING)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
}

/// `Retry-After` in seconds (1 s to 1 h).
fn retry_after(res: &awc::ClientResponse<impl futures_util::Stream>) -> Option<Duration> {
    res.headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| Duration::from_secs(s.clamp(1, 3600)))
}

/// Why no profile of `provider` may be used now: rate limited until the
/// first cooling one rests no more, else (every one failing) unusable.
fn no_profile_left(
    provider: &gatehouse_actors::gateway::Provider,
    model: &str,
    now_ms: i64,
) -> Failure {
    let rest = provider
        .profiles
        .iter()
        .filter(|p| p.health.state(now_ms).0 != gatehouse_actors::gateway::ProfileState::Failing)
        .filter_map(|p| p.health.rest_for(now_ms, model))
        .map(|until| until - now_ms)
        .min();
    match rest {
        Some(ms) => {
            Failure::RateLimited(Some(Duration::from_secs(((ms.max(1) + 999) / 1000) as u64)))
        }
        None => Failure::Upstream,
    }
}

/// A profile's key was refused: warn and audit once (never the key).
fn profile_failing(
    state: &AppState,
    provider: &gatehouse_actors::gateway::Provider,
    profile: &gatehouse_actors::gateway::Profile,
) {
    tracing::warn!(provider = %provider.name, profile = %profile.name, "the provider refused this profile's key (401); it is marked failing and skipped");
    let mut msg = gatehouse_actors::users::RecordAudit::new(
        state.handles.now(),
        None,
        "profile.failing",
        Some(format!("{}/{}", provider.name, profile.name)),
        None,
        serde_json::json!({"provider": &*provider.name, "profile": &*profile.name, "status": 401}),
    );
    msg.0.actor_name = "gateway".into();
    state.handles.users().do_send(msg);
}

fn message_id() -> String {
    let mut bytes = [0u8; 12];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes);
    format!("msg_{}", hex::encode(bytes))
}

const OVERHEAD: header::HeaderName = header::HeaderName::from_static("x-gatehouse-overhead-ms");

/// Milliseconds with three decimals (`1.234`), built without `fmt`.
fn millis(d: Duration) -> header::HeaderValue {
    let us = d.as_micros();
    let mut whole = itoa::Buffer::new();
    let mut frac = itoa::Buffer::new();
    let frac = frac.format(us % 1000 + 1000);
    let mut out = Vec::with_capacity(24);
    out.extend_from_slice(whole.format(us / 1000).as_bytes());
    out.push(b'.');
    out.extend_from_slice(&frac.as_bytes()[1..]);
    header::HeaderValue::from_maybe_shared(actix_web::web::Bytes::from(out))
        .expect("digits and a dot are a valid header value")
}

/// An upstream `4xx` in OpenAI shape: its status, its message (bounded, and
/// never with the gateway's key in it), its code when it gives one.
pub fn passed_on_error(status: StatusCode, body: &[u8], key: Option<&str>) -> ApiError {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let e = v.get("error").unwrap_or(&Value::Null);
    let text = |k: &str| e.get(k).and_then(Value::as_str).map(str::to_owned);
    let mut message = text("message")
        .or_else(|| e.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("the provider refused the request ({})", status.as_u16()));
    if let Some(key) = key.filter(|k| k.len() >= 4) {
        message = message.replace(key, "***");
    }
    let message: String = message
        .chars()
        .filter(|c| !c.is_control())
        .take(500)
        .collect();
    let code = text("code")
        .or_else(|| text("type"))
        .filter(|c| c.len() <= 64 && c.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or_else(|| match status {
            StatusCode::NOT_FOUND => "model_not_found".to_owned(),
            StatusCode::PAYLOAD_TOO_LARGE => "request_too_large".to_owned(),
            _ => "invalid_request".to_owned(),
        });
    ApiError::new(status, "invalid_request_error", code, message)
}
