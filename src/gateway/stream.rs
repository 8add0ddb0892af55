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
pub const MAX_EVENT_BYTES: usize = 4 * 1024 * 1024;

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

/// The proxy's path for a chunk of an OpenAI stream passed through that is
/// whole events the parser would dispatch unchanged (see [`whole_events`]),
/// UTF-8 and no larger than one event may be, with the parser between
/// events: what [`relay`] would write, without the parser's copies — the
/// chunk itself when no event carries a usage object (the common chunk),
/// else the chunk without the usage-only event the gateway asked for on the
/// client's behalf. `None`: the chunk needs [`relay`]. (The parser is
/// between events from a stream's start once its first chunk shows there
/// is no byte-order mark: the only state this sets, as `relay` would.)
pub fn relay_whole(
    parser: &mut SseParser,
    mode: &Mode,
    tokens: &mut (u64, u64),
    chunk: &Bytes,
) -> Option<Bytes> {
    let Mode::OpenAi { strip_usage } = *mode else {
        return None;
    };
    parser.settle_bom(chunk);
    if !(parser.at_boundary()
        && chunk.len() <= parser.max_event_bytes()
        && chunk.ends_with(b"\n\n")
        && whole_events(chunk))
    {
        return None;
    }
    let text = std::str::from_utf8(chunk).ok()?;
    if !has_usage_object(text) {
        return Some(chunk.clone());
    }
    // Event by event, as `relay` reads them: whole events end at each "\n\n".
    let mut kept: Option<Vec<u8>> = None;
    let mut start = 0;
    for end in memchr::memmem::find_iter(chunk, b"\n\n") {
        let event = &text[start..end + 2];
        let drop = has_usage_object(event) && read_usage(&event_data(event), strip_usage, tokens);
        match (&mut kept, drop) {
            (None, true) => kept = Some(chunk[..start].to_vec()),
            (Some(out), false) => out.extend_from_slice(event.as_bytes()),
            _ => {}
        }
        start = end + 2;
    }
    Some(kept.map_or_else(|| chunk.clone(), Bytes::from))
}

/// The data of a whole event of `data:` and comment lines, as the parser
/// joins it.
fn event_data(event: &str) -> String {
    let mut data = String::new();
    for (i, v) in event
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|v| v.strip_prefix(' ').unwrap_or(v))
        .enumerate()
    {
        if i > 0 {
            data.push('\n');
        }
        data.push_str(v);
    }
    data
}

/// Reads the usage of an OpenAI chunk's data into `tokens`; whether to drop
/// the chunk (a usage-only chunk the client did not ask for).
fn read_usage(data: &str, strip_usage: bool, tokens: &mut (u64, u64)) -> bool {
    if !has_usage_object(data) {
        return false;
    }
    let Some((u, no_choices)) = translate::openai_chunk_usage(data.as_bytes()) else {
        return false;
    };
    *tokens = u;
    strip_usage && no_choices
}

/// Whether `chunk` is whole events, each kept by the parser as it is: lines
/// end with `\n` (no `\r`), each line is `data:…` or a `:` comment (a block
/// of those is always dispatched, never dropped), and each blank line ends a
/// block (a leading or second blank line would be dropped).
fn whole_events(chunk: &[u8]) -> bool {
    if memchr::memchr(b'\r', chunk).is_some() {
        return false;
    }
    let (mut start, mut after_blank) = (0, true);
    for end in memchr::memchr_iter(b'\n', chunk) {
        let line = &chunk[start..end];
        if line.is_empty() {
            if after_blank {
                return false;
            }
            after_blank = true;
        } else if line.starts_with(b"data:") || line.starts_with(b":") {
            after_blank = false;
        } else {
            return false;
        }
        start = end + 1;
    }
    start == chunk.len() && after_blank
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
                if read_usage(data, *strip_usage, tokens) {
                    continue;
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
    static USAGE: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"usage\""));
    let mut rest = data;
    while let Some(i) = USAGE.find(rest.as_bytes()) {
        // `"usage"` is ASCII: i + 7 is a char boundary.
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
                    if let Some(whole) =
                        relay_whole(&mut this.parser, &this.mode, &mut this.guard.tokens, &chunk)
                    {
                        if whole.is_empty() {
                            continue;
                        }
                        return Poll::Ready(Some(Ok(whole)));
                    }
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

    /// A chunk taken by `relay_whole` gives what `relay` would have written,
    /// and leaves the parser and the usage as `relay` would: over every split
    /// of streams with usage chunks (stripped or kept), multi-line data,
    /// comments, CRLFs, a BOM and blocks the parser drops.
    #[test]
    fn relay_whole_writes_what_relay_writes() {
        let streams = [
            "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"usage\":null}\n\n\
             data: {\"choices\":[{\"delta\":{\"content\":\"b\"}}]}\n\n: keep-alive\n\n\
             data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4,\"total_tokens\":7}}\n\n\
             data: [DONE]\n\n",
            // Usage with choices (kept), over two data lines, and a comment
            // that only looks like usage.
            ": \"usage\": {\n\ndata: {\"choices\":[{\"delta\":{}}],\ndata: \"usage\" : {\"prompt_tokens\":2,\"completion_tokens\":9}}\n\n\
             data: {\"choices\": [], \"usage\": {\"prompt_tokens\":1}}\n\ndata: {\"usage\":{\"bad\"\n\n",
            "\u{feff}data: {\"choices\":[]}\r\n\r\ndata: {\"x\":\"é\"}\n\ndata: {\"usage\" : {\"prompt_tokens\":1}}\n\ndata: [DONE]\n\n",
            // Blocks the parser drops or reshapes: id-only, empty event names,
            // extra blank lines, an unknown field.
            "data: a\n\nid: 7\n\ndata: b\n\n\ndata: c\n\nevent:\n\nevent: x\ndata: d\n\nfoo: y\ndata: e\n\ndata\n\n",
        ];
        let (mut whole, mut with_usage) = (0, 0);
        for strip_usage in [false, true] {
            for stream in streams {
                let bytes = Bytes::from_static(stream.as_bytes());
                for i in 0..=bytes.len() {
                    for j in (i..=bytes.len()).step_by(3) {
                        let parts = [bytes.slice(..i), bytes.slice(i..j), bytes.slice(j..)];
                        let mode = || Mode::OpenAi { strip_usage };
                        let mut p1 = SseParser::new(MAX_EVENT_BYTES);
                        let mut p2 = SseParser::new(MAX_EVENT_BYTES);
                        let (mut m1, mut m2) = (mode(), mode());
                        let (mut t1, mut t2) = ((0, 0), (0, 0));
                        let (mut o1, mut o2) = (Vec::new(), Vec::new());
                        for part in parts {
                            relay(&mut p1, &mut m1, &mut t1, &part, &mut o1).unwrap();
                            if let Some(out) = relay_whole(&mut p2, &m2, &mut t2, &part) {
                                o2.extend_from_slice(&out);
                                whole += 1;
                                with_usage += usize::from(t2 != (0, 0));
                            } else {
                                relay(&mut p2, &mut m2, &mut t2, &part, &mut o2).unwrap();
                            }
                            assert_eq!(o1, o2, "{stream:?} split at {i},{j}");
                            assert_eq!(t1, t2, "{stream:?} split at {i},{j}");
                            assert_eq!(p1.pending(), p2.pending());
                        }
                    }
                }
            }
        }
        assert!(
            whole > 100 && with_usage > 10,
            "taken: {whole}, with usage: {with_usage}"
        );

        let primed = || {
            let mut p = SseParser::new(MAX_EVENT_BYTES);
            relay(
                &mut p,
                &mut Mode::Anthropic,
                &mut (0, 0),
                b"data: {}\n\n",
                &mut Vec::new(),
            )
            .unwrap();
            p
        };
        let whole = |mode: &Mode, chunk: &'static [u8]| {
            relay_whole(&mut primed(), mode, &mut (0, 0), &Bytes::from_static(chunk))
        };
        let openai = Mode::OpenAi { strip_usage: true };
        let chunk = b"data: {\"usage\":null}\n\n: ping\n\ndata: {}\ndata: {}\n\n";
        assert_eq!(
            whole(&openai, chunk).unwrap(),
            &chunk[..],
            "the chunk itself"
        );
        let usage_only = b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1}}\n\n";
        assert_eq!(whole(&openai, usage_only).unwrap(), &b""[..], "stripped");
        for refused in [
            &b"data: {}\r\n\r\n"[..],
            b"data: {}\n",
            b"id: 1\n\n",
            b"data: {}\n\n\n",
            b"\ndata: {}\n\n",
            b"data: \xff\n\n",
        ] {
            assert_eq!(
                whole(&openai, refused),
                None,
                "{:?}",
                String::from_utf8_lossy(refused)
            );
        }
        assert_eq!(
            whole(&Mode::Anthropic, b"data: {}\n\n"),
            None,
            "not translated streams"
        );
        // A stream's first chunk: whole unless it starts as a BOM could.
        let first = |chunk: &'static [u8]| {
            let mut fresh = SseParser::new(MAX_EVENT_BYTES);
            relay_whole(&mut fresh, &openai, &mut (0, 0), &Bytes::from_static(chunk))
        };
        assert_eq!(first(b"data: {}\n\n").unwrap(), &b"data: {}\n\n"[..]);
        for maybe_bom in [&b"\xef\xbb\xbfdata: {}\n\n"[..], b"\xefdata: {}\n\n", b""] {
            assert_eq!(first(maybe_bom), None, "{maybe_bom:?}");
        }
    }
}
