//! The body of a streamed model call: upstream SSE bytes go to the client as
//! each event completes — passed through as they came, or translated
//! between the OpenAI and Anthropic shapes — while the usage is read off the
//! way. A pause longer than the first-byte timeout or a call longer than the
//! total timeout ends the stream with an error event. Dropping the body (the
//! client went away) drops the upstream response, which closes its
//! connection and so cancels the upstream request.

use super::proxy::CallGuard;
use super::sse::SseParser;
use super::translate::{self, ChatStreamToMessages, MessagesStreamToChat};
use actix_web::web::Bytes;
use futures_util::Stream;
use serde_json::Value;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// The largest single SSE event accepted from upstream.
const MAX_EVENT_BYTES: usize = 4 * 1024 * 1024;

pub type Upstream = Pin<Box<dyn Stream<Item = Result<Bytes, awc::error::PayloadError>>>>;

pub enum Mode {
    /// OpenAI chunks to an OpenAI client; `strip_usage` drops the usage-only
    /// chunk the gateway asked for on the client's behalf.
    OpenAi { strip_usage: bool },
    /// Anthropic events to an Anthropic client.
    Anthropic,
    /// OpenAI chunks to an Anthropic client.
    ChatToMessages(Box<ChatStreamToMessages>),
    /// Anthropic events to an OpenAI client.
    MessagesToChat(Box<MessagesStreamToChat>),
}

impl Mode {
    fn openai_client(&self) -> bool {
        matches!(self, Mode::OpenAi { .. } | Mode::MessagesToChat(_))
    }
}

pub struct ProxyStream {
    upstream: Upstream,
    parser: SseParser,
    mode: Mode,
    idle: Duration,
    /// Fires at the earliest when the idle timeout could be over; it is
    /// moved on only when it fires, not for every chunk (a chunk only
    /// notes its time in `last_data`).
    idle_timer: Pin<Box<Sleep>>,
    last_data: Instant,
    deadline: Pin<Box<Sleep>>,
    done: bool,
    /// Whether any byte came from upstream (an empty stream is a failure).
    received: bool,
    guard: CallGuard,
    _active: crate::metrics::ActiveStream,
}

impl ProxyStream {
    pub fn new(
        upstream: Upstream,
        mode: Mode,
        idle: Duration,
        total_left: Duration,
        guard: CallGuard,
    ) -> Self {
        ProxyStream {
            upstream,
            parser: SseParser::new(MAX_EVENT_BYTES),
            mode,
            idle,
            idle_timer: Box::pin(tokio::time::sleep(idle)),
            last_data: Instant::now(),
            deadline: Box::pin(tokio::time::sleep(total_left)),
            done: false,
            received: false,
            _active: guard.stream_opened(),
            guard,
        }
    }

    /// Turns upstream bytes into client bytes.
    fn process(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        relay(
            &mut self.parser,
            &mut self.mode,
            &mut self.guard.tokens,
            chunk,
            out,
        )
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        finish(&mut self.mode, &mut self.guard.tokens, out);
    }

    /// Ends the stream with an error event in the client's shape.
    fn fail(&mut self, why: &str, out: &mut Vec<u8>) {
        tracing::warn!(provider = %self.guard.provider(), reason = why, "upstream stream failed");
        self.guard.status = 502;
        if self.mode.openai_client() {
            out.extend_from_slice(
                b"data: {\"error\":{\"message\":\"upstream error\",\"type\":\"upstream_error\",\"code\":\"upstream_error\"}}\n\n",
            );
        } else {
            out.extend_from_slice(
                b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"upstream error\"}}\n\n",
            );
        }
        self.done = true;
    }
}

/// What a [`ProxyStream`] does with a chunk of upstream bytes, its timers
/// aside: the SSE events it completes go to `out`, passed through or
/// translated by `mode`, and the usage read off the way goes to `tokens`.
pub fn relay(
    parser: &mut SseParser,
    mode: &mut Mode,
    tokens: &mut (u64, u64),
    chunk: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let events = parser.feed(chunk).map_err(|e| e.to_string())?;
    for ev in events {
        let data = ev.data.as_str();
        match mode {
            Mode::OpenAi { strip_usage } => {
                if has_usage_object(data) {
                    if let Ok(v) = serde_json::from_str::<Value>(data) {
                        if let Some(u) = translate::openai_usage(&v) {
                            *tokens = u;
                            let no_choices = v
                                .get("choices")
                                .and_then(Value::as_array)
                                .is_some_and(Vec::is_empty);
                            if *strip_usage && no_choices {
                                continue;
                            }
                        }
                    }
                }
                out.extend_from_slice(&ev.raw);
            }
            Mode::Anthropic => {
                if data.contains("\"usage\"") {
                    if let Ok(v) = serde_json::from_str::<Value>(data) {
                        merge_anthropic(tokens, &v);
                    }
                }
                out.extend_from_slice(&ev.raw);
            }
            Mode::ChatToMessages(t) => {
                if data == "[DONE]" {
                    continue;
                }
                if let Ok(v) = serde_json::from_str::<Value>(data) {
                    t.on_chunk(&v, out);
                    *tokens = t.usage();
                }
            }
            Mode::MessagesToChat(t) => {
                if let Ok(v) = serde_json::from_str::<Value>(data) {
                    t.on_event(&v, out);
                    *tokens = t.usage();
                }
            }
        }
    }
    Ok(())
}

/// The end of the upstream stream: the translators close what is open.
pub fn finish(mode: &mut Mode, tokens: &mut (u64, u64), out: &mut Vec<u8>) {
    match mode {
        Mode::ChatToMessages(t) => {
            t.finish(out);
            *tokens = t.usage();
        }
        Mode::MessagesToChat(t) => {
            t.finish(out);
            *tokens = t.usage();
        }
        _ => {}
    }
}

/// Whether a chunk carries a usage object (not `"usage": null`), without parsing it.
pub fn has_usage_object(data: &str) -> bool {
    let mut rest = data;
    while let Some(i) = rest.find("\"usage\"") {
        rest = &rest[i + 7..];
        let after = rest.trim_start();
        if let Some(value) = after.strip_prefix(':') {
            if value.trim_start().starts_with('{') {
                return true;
            }
        }
    }
    false
}

/// Anthropic reports input tokens at `message_start` and output tokens at `message_delta`.
fn merge_anthropic(tokens: &mut (u64, u64), v: &Value) {
    let usage = v
        .get("usage")
        .or_else(|| v.get("message").and_then(|m| m.get("usage")));
    let Some(u) = usage else { return };
    let n = |k: &str| u.get(k).and_then(Value::as_u64);
    let input = n("input_tokens").map(|i| {
        i.saturating_add(n("cache_creation_input_tokens").unwrap_or(0))
            .saturating_add(n("cache_read_input_tokens").unwrap_or(0))
    });
    if let Some(i) = input.filter(|i| *i > 0) {
        tokens.0 = i;
    }
    if let Some(o) = n("output_tokens") {
        tokens.1 = tokens.1.max(o);
    }
}

impl ProxyStream {
    /// Whether no data came for the idle timeout; else the timer is armed
    /// for the earliest moment it could be over.
    fn idle_over(&mut self, cx: &mut Context<'_>) -> bool {
        while self.idle_timer.as_mut().poll(cx).is_ready() {
            let due = self.last_data + self.idle;
            if due <= Instant::now() {
                return true;
            }
            self.idle_timer.as_mut().reset(due);
        }
        false
    }
}

impl Stream for ProxyStream {
    type Item = Result<Bytes, actix_web::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            let mut out = Vec::new();
            match this.upstream.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    this.last_data = Instant::now();
                    this.received |= !chunk.is_empty();
                    if let Err(e) = this.process(&chunk, &mut out) {
                        this.fail(&e, &mut out);
                    }
                }
                Poll::Ready(Some(Err(e))) => this.fail(&e.to_string(), &mut out),
                Poll::Ready(None) if !this.received => {
                    this.fail("the upstream stream ended without any data", &mut out)
                }
                Poll::Ready(None) => {
                    this.finish(&mut out);
                    this.guard.completed = true;
                    this.done = true;
                }
                Poll::Pending => {
                    if this.idle_over(cx) {
                        this.fail("no data within the first-byte timeout", &mut out);
                    } else if this.deadline.as_mut().poll(cx).is_ready() {
                        this.fail("total timeout", &mut out);
                    } else {
                        return Poll::Pending;
                    }
                }
            }
            if !out.is_empty() {
                return Poll::Ready(Some(Ok(Bytes::from(out))));
            }
        }
    }
}

use std::future::Future as _;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_usage_object_is_found_and_a_null_usage_is_not() {
        assert!(has_usage_object(
            r#"{"choices":[],"usage":{"prompt_tokens":1}}"#
        ));
        assert!(has_usage_object(r#"{"usage" :  {"prompt_tokens":1}}"#));
        assert!(!has_usage_object(
            r#"{"choices":[{"delta":{}}],"usage":null}"#
        ));
        assert!(!has_usage_object(r#"{"content":"the \"usage\" word"}"#));
        let mut t = (0, 0);
        merge_anthropic(
            &mut t,
            &serde_json::json!({"type":"message_start","message":{"usage":{"input_tokens":7,"cache_read_input_tokens":3,"output_tokens":1}}}),
        );
        merge_anthropic(
            &mut t,
            &serde_json::json!({"type":"message_delta","usage":{"output_tokens":12}}),
        );
        assert_eq!(t, (10, 12));
    }
}
