//! A fast mock OpenAI-compatible upstream for the load benchmark (`benches/load.sh`).
//!
//! `cargo run --release --example mock_upstream -- --port 18081 [--workers 1]`
//!
//! - `POST /v1/chat/completions`: a fixed `chat.completion` with usage, or with
//!   `"stream": true` an SSE body of four small chunks, a usage chunk when
//!   `stream_options.include_usage` is true, and `data: [DONE]`.
//! - `GET /v1/models`: one model, `m`.
//!
//! Everything it sends is built once at start-up; it reads only two flags from
//! the request body, no JSON parsing.

use actix_web::http::header;
use actix_web::web::{self, Bytes};
use actix_web::{App, HttpResponse, HttpServer};
use futures_util::stream;

const COMPLETION: &str = r#"{"id":"chatcmpl-mock","object":"chat.completion","created":1700000000,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Hello from the mock."},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":5,"total_tokens":10}}"#;

const MODELS: &str = r#"{"object":"list","data":[{"id":"m","object":"model"}]}"#;

fn sse_chunk(delta: &str, finish: &str, with_usage_null: bool) -> String {
    let usage = if with_usage_null {
        r#","usage":null"#
    } else {
        ""
    };
    format!(
        "data: {{\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"finish_reason\":{finish}}}]{usage}}}\n\n"
    )
}

/// Pre-built SSE chunks, without and with the usage chunk.
struct Sse {
    plain: Vec<Bytes>,
    with_usage: Vec<Bytes>,
}

fn build_sse() -> Sse {
    let parts = [
        (r#"{"role":"assistant","content":""}"#, "null"),
        (r#"{"content":"Hello"}"#, "null"),
        (r#"{"content":" from the mock."}"#, "null"),
        (r#"{}"#, r#""stop""#),
    ];
    let done = Bytes::from_static(b"data: [DONE]\n\n");
    let plain: Vec<Bytes> = parts
        .iter()
        .map(|(d, f)| Bytes::from(sse_chunk(d, f, false)))
        .chain(std::iter::once(done.clone()))
        .collect();
    let usage = Bytes::from_static(
        b"data: {\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":5,\"total_tokens\":10}}\n\n",
    );
    let with_usage: Vec<Bytes> = parts
        .iter()
        .map(|(d, f)| Bytes::from(sse_chunk(d, f, true)))
        .chain([usage, done])
        .collect();
    Sse { plain, with_usage }
}

/// True when `"key"` is followed (after optional spaces and a colon) by `true`.
fn flag(body: &[u8], key: &[u8]) -> bool {
    let mut i = 0;
    while let Some(p) = find(&body[i..], key) {
        let mut j = i + p + key.len();
        while j < body.len() && matches!(body[j], b' ' | b'\t' | b'\n' | b'\r' | b':') {
            j += 1;
        }
        if body[j..].starts_with(b"true") {
            return true;
        }
        i += p + key.len();
    }
    false
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

async fn chat(body: Bytes, sse: web::Data<Sse>) -> HttpResponse {
    if !flag(&body, b"\"stream\"") {
        return HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, "application/json"))
            .body(COMPLETION);
    }
    let chunks = if flag(&body, b"\"include_usage\"") {
        sse.with_usage.clone()
    } else {
        sse.plain.clone()
    };
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .streaming(stream::iter(
            chunks.into_iter().map(Ok::<Bytes, actix_web::Error>),
        ))
}

async fn models() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "application/json"))
        .body(MODELS)
}

fn usage() -> ! {
    eprintln!("usage: mock_upstream [--port N] [--workers N]");
    std::process::exit(2)
}

fn main() -> std::io::Result<()> {
    let mut port: u16 = 18081;
    let mut workers: usize = 1;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--port" => port = v.parse().unwrap_or_else(|_| usage()),
            "--workers" => workers = v.parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    let sse = web::Data::new(build_sse());
    actix_web::rt::System::new().block_on(async move {
        let server = HttpServer::new(move || {
            App::new()
                .app_data(sse.clone())
                .app_data(web::PayloadConfig::new(32 * 1024 * 1024))
                .route("/v1/chat/completions", web::post().to(chat))
                .route("/v1/models", web::get().to(models))
        })
        .workers(workers.max(1))
        .backlog(4096)
        .bind(("127.0.0.1", port))?;
        println!("mock upstream listening on http://127.0.0.1:{port}");
        server.run().await
    })
}
