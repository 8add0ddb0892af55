//! The proxy's own work on a request's bytes, each against a baseline measured
//! in the same run: the same job done the `serde_json::Value` way (what the
//! proxy did before `ApiBody`, the typed usage reader and `relay_whole`).
//!
//! - `request_body`: read `model` and `stream`, put in the provider's model
//!   name, write the body out for upstream;
//! - `usage_of_answer`: the token counts of a non-stream answer;
//! - `usage_of_chunk`: the same of a stream's usage-only chunk, and whether it
//!   is one (an empty `choices`);
//! - `stream_chunk`: one upstream chunk of whole SSE events, passed on to an
//!   OpenAI client (the last one carries the usage the gateway asked for,
//!   which is cut out).
//!
//! `cargo bench --bench proxy_path`

use actix_web::web::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use gatehouse::gateway::body::ApiBody;
use gatehouse::gateway::sse::SseParser;
use gatehouse::gateway::stream::{relay, relay_whole, Mode, MAX_EVENT_BYTES};
use gatehouse::gateway::translate::{openai_chunk_usage, openai_usage, usage_in_body};
use serde_json::{json, Value};
use std::hint::black_box;

/// The load benchmark's request, and a 20-turn conversation with tools.
fn requests() -> Vec<(&'static str, Vec<u8>)> {
    let small = br#"{"model":"mock/m","messages":[{"role":"user","content":"hi"}]}"#.to_vec();
    let messages: Vec<Value> = (0..20)
        .map(|i| {
            let role = if i % 2 == 0 { "user" } else { "assistant" };
            json!({"role": role, "content": format!(
                "Turn {i}: “quoted” text with \"escapes\", a tab\t, a newline\n and some more words to make it a realistic paragraph of about two hundred bytes long, éàü.")})
        })
        .collect();
    let large = serde_json::to_vec(&json!({
        "model": "team/default",
        "messages": messages,
        "temperature": 0.2,
        "max_tokens": 1024,
        "stream": false,
        "tools": [{"type": "function", "function": {"name": "lookup", "description": "Looks a thing up",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}}],
        "user": "alice"
    }))
    .unwrap();
    vec![("small", small), ("20_turns", large)]
}

fn answers() -> Vec<(&'static str, Vec<u8>)> {
    let answer = |content: String| {
        serde_json::to_vec(&json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18,
                "prompt_tokens_details": {"cached_tokens": 0}}
        }))
        .unwrap()
    };
    vec![
        ("short", answer("echo: hi".into())),
        (
            "8_KiB",
            answer("A long answer, with \"quotes\". ".repeat(280)),
        ),
    ]
}

fn chunks() -> Vec<(&'static str, Vec<u8>)> {
    let chunk = |delta: Value| {
        format!(
            "data: {}\n\n",
            json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                "choices": [{"index": 0, "delta": delta, "finish_reason": null}], "usage": null})
        )
    };
    let content = chunk(json!({"content": "Hello"}));
    let last = format!(
        "{}data: {}\n\ndata: [DONE]\n\n",
        chunk(json!({})),
        json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [],
            "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}})
    );
    vec![
        ("content_delta", content.into_bytes()),
        ("last_with_usage", last.into_bytes()),
    ]
}

fn request_body(c: &mut Criterion) {
    let mut g = c.benchmark_group("request_body");
    let with_value = |bytes: &[u8]| {
        let mut v: Value = serde_json::from_slice(bytes).unwrap();
        let stream = v.get("stream").and_then(Value::as_bool) == Some(true);
        v["model"] = Value::String("m".into());
        (stream, serde_json::to_vec(&v).unwrap())
    };
    let with_api_body = |bytes: &[u8]| {
        let mut body = ApiBody::parse(bytes).unwrap();
        let stream = body.streams();
        body.set("model", "m");
        (stream, body.to_vec())
    };
    for (name, bytes) in requests() {
        let ((s1, v1), (s2, v2)) = (with_value(&bytes), with_api_body(&bytes));
        let tree = |v: &[u8]| serde_json::from_slice::<Value>(v).unwrap();
        assert!(
            s1 == s2 && tree(&v1) == tree(&v2),
            "both ways write the same request"
        );
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_with_input(
            BenchmarkId::new("baseline_value", name),
            &bytes,
            |b, bytes| b.iter(|| with_value(black_box(bytes))),
        );
        g.bench_with_input(BenchmarkId::new("api_body", name), &bytes, |b, bytes| {
            b.iter(|| with_api_body(black_box(bytes)))
        });
    }
    g.finish();
}

fn usage_of_answer(c: &mut Criterion) {
    let mut g = c.benchmark_group("usage_of_answer");
    for (name, bytes) in answers() {
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(openai_usage(&v), Some(usage_in_body(&bytes, false)));
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_with_input(
            BenchmarkId::new("baseline_value", name),
            &bytes,
            |b, bytes| {
                b.iter(|| {
                    let v: Value = serde_json::from_slice(black_box(bytes)).unwrap();
                    openai_usage(&v).unwrap_or_default()
                })
            },
        );
        g.bench_with_input(
            BenchmarkId::new("typed_reader", name),
            &bytes,
            |b, bytes| b.iter(|| usage_in_body(black_box(bytes), false)),
        );
    }
    g.finish();
}

/// The usage-only chunk's data (an OpenAI stream's last but one event).
const USAGE_CHUNK: &[u8] = br#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":11,"completion_tokens":7,"total_tokens":18}}"#;

fn usage_of_chunk(c: &mut Criterion) {
    let mut g = c.benchmark_group("usage_of_chunk");
    let with_value = |data: &[u8]| {
        let v: Value = serde_json::from_slice(data).ok()?;
        let no_choices = v
            .get("choices")
            .and_then(Value::as_array)
            .is_some_and(Vec::is_empty);
        openai_usage(&v).map(|u| (u, no_choices))
    };
    assert_eq!(with_value(USAGE_CHUNK), openai_chunk_usage(USAGE_CHUNK));
    assert_eq!(with_value(USAGE_CHUNK), Some(((11, 7), true)));
    g.throughput(Throughput::Bytes(USAGE_CHUNK.len() as u64));
    g.bench_function("baseline_value", |b| {
        b.iter(|| with_value(black_box(USAGE_CHUNK)))
    });
    g.bench_function("typed_reader", |b| {
        b.iter(|| openai_chunk_usage(black_box(USAGE_CHUNK)))
    });
    g.finish();
}

/// A parser past the stream's first event, as it is for every later chunk
/// (the first goes through the parser, which checks for a byte-order mark).
fn primed_parser() -> SseParser {
    let mut parser = SseParser::new(MAX_EVENT_BYTES);
    parser.feed(b"data: {}\n\n").unwrap();
    parser
}

fn stream_chunk(c: &mut Criterion) {
    let mut g = c.benchmark_group("stream_chunk");
    let mode = || Mode::OpenAi { strip_usage: true };
    let with_parser = |parser: &mut SseParser, bytes: &Bytes| {
        let (mut tokens, mut out) = ((0, 0), Vec::new());
        relay(parser, &mut mode(), &mut tokens, bytes, &mut out).unwrap();
        (tokens, out)
    };
    let whole = |parser: &mut SseParser, bytes: &Bytes| {
        let mut tokens = (0, 0);
        let out = relay_whole(parser, &mode(), &mut tokens, bytes).expect("whole events");
        (tokens, out)
    };
    for (name, bytes) in chunks() {
        let bytes = Bytes::from(bytes);
        let mut parser = primed_parser();
        let ((t1, o1), (t2, o2)) = (with_parser(&mut parser, &bytes), whole(&mut parser, &bytes));
        assert!(t1 == t2 && o1 == o2[..], "both ways write the same events");
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_with_input(
            BenchmarkId::new("baseline_parser", name),
            &bytes,
            |b, bytes| b.iter(|| with_parser(&mut parser, black_box(bytes))),
        );
        g.bench_with_input(BenchmarkId::new("relay_whole", name), &bytes, |b, bytes| {
            b.iter(|| whole(&mut parser, black_box(bytes)))
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    request_body,
    usage_of_answer,
    usage_of_chunk,
    stream_chunk
);
criterion_main!(benches);
