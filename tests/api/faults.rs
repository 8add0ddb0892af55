//! Fault injection on the upstream side: a provider that resets the
//! connection before answering or in the middle of a stream, sends
//! malformed SSE, an enormous event, or an oversized body. Each call ends
//! cleanly for the client (a 502 or an error event in the client's shape),
//! nothing panics, and the gateway serves the next request normally.

use crate::helpers::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

/// A hostile OpenAI-compatible upstream on a thread of its own: what it
/// does depends on the model asked for.
fn hostile_upstream() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            std::thread::spawn(move || serve(conn));
        }
    });
    url
}

fn read_request(conn: &mut TcpStream) -> Option<Value> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = conn.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = conn.read(&mut chunk).ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    serde_json::from_slice(&buf[head_end..]).ok()
}

const SSE_HEAD: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";

/// Writes `data` as one HTTP chunk.
fn send(conn: &mut TcpStream, data: &[u8]) -> std::io::Result<()> {
    conn.write_all(format!("{:x}\r\n", data.len()).as_bytes())?;
    conn.write_all(data)?;
    conn.write_all(b"\r\n")
}

/// Ends a chunked body.
fn end(conn: &mut TcpStream) -> std::io::Result<()> {
    conn.write_all(b"0\r\n\r\n")
}

fn chunk(text: &str) -> String {
    let v = json!({"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": "m",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]});
    format!("data: {v}\n\n")
}

/// Makes closing `conn` send a TCP reset (SO_LINGER 0) instead of a FIN.
fn reset(conn: &TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a correctly sized option value.
    unsafe {
        libc::setsockopt(
            conn.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

fn serve(mut conn: TcpStream) {
    let Some(body) = read_request(&mut conn) else {
        return;
    };
    let model = body["model"].as_str().unwrap_or("").to_owned();
    let _ = match model.as_str() {
        // Closes without a word.
        "reset" => {
            reset(&conn);
            Ok(())
        }
        // A good first chunk, then the connection drops.
        "reset-mid" => {
            let _ = conn.write_all(SSE_HEAD);
            let _ = send(&mut conn, chunk("first").as_bytes());
            let _ = conn.flush();
            std::thread::sleep(Duration::from_millis(100));
            reset(&conn);
            Ok(())
        }
        // Events that are not JSON, a bare field, binary junk, then a good chunk and the end.
        "garbage" => conn
            .write_all(SSE_HEAD)
            .and_then(|_| {
                send(
                    &mut conn,
                    b"data: {not json\n\n: comment\n\nevent\n\ndata: [1,2\n\n",
                )
            })
            .and_then(|_| send(&mut conn, chunk("after").as_bytes()))
            .and_then(|_| send(&mut conn, b"data: [DONE]\n\n"))
            .and_then(|_| end(&mut conn)),
        // HTTP/1.0 style: no length, no chunks, the body ends when the connection closes.
        "close-delimited" => conn
            .write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n",
            )
            .and_then(|_| conn.write_all(chunk("plain").as_bytes()))
            .and_then(|_| conn.write_all(b"data: [DONE]\n\n")),
        // Not UTF-8 at all.
        "binary" => conn
            .write_all(SSE_HEAD)
            .and_then(|_| send(&mut conn, chunk("ok").as_bytes()))
            .and_then(|_| send(&mut conn, b"data: \xff\xfe\x00\x01\n\n"))
            .and_then(|_| end(&mut conn)),
        // One event far over the size limit, never terminated.
        "huge" => {
            let _ = conn.write_all(SSE_HEAD);
            let _ = send(&mut conn, b"data: ");
            let block = vec![b'a'; 1 << 20];
            for _ in 0..16 {
                if send(&mut conn, &block).is_err() {
                    break;
                }
            }
            Ok(())
        }
        // A non-stream answer bigger than the gateway reads.
        "huge-json" => {
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                100u64 << 20
            );
            let _ = conn.write_all(head.as_bytes());
            let block = vec![b' '; 1 << 20];
            for _ in 0..100 {
                if conn.write_all(&block).is_err() {
                    break;
                }
            }
            Ok(())
        }
        // A well-behaved answer, to show the gateway is still fine.
        _ => {
            let v = json!({"id": "x", "object": "chat.completion", "created": 0, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "fine"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}});
            let body = v.to_string();
            conn.write_all(
                format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()).as_bytes(),
            )
        }
    };
}

async fn setup() -> (TestApp, String) {
    let url = hostile_upstream();
    let app = spawn_toml(
        &format!(
            "[providers.h]\nbase_url = \"{url}\"\napi_key = \"sk-hostile\"\nlocal = true\nfirst_byte_timeout = \"5s\"\n\
             models = [\"close-delimited\", \"reset\", \"reset-mid\", \"garbage\", \"binary\", \"huge\", \"huge-json\", \"ok\"]\n"
        ),
        &[],
    )
    .await;
    app.add_user("alice", PW, false).await;
    assert_eq!(app.login("alice", PW).await.status(), 200);
    let token = app.token(json!({"name": "t"})).await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    (app, token)
}

async fn call(app: &TestApp, token: &str, path: &str, model: &str, stream: bool) -> (u16, String) {
    let body = if path == "/v1/messages" {
        json!({"model": model, "max_tokens": 10, "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
    } else {
        json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
    };
    let res = reqwest::Client::new()
        .post(format!("{}{path}", app.url))
        .bearer_auth(token)
        .json(&body)
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .expect("an answer, never a hang");
    let status = res.status().as_u16();
    (status, res.text().await.unwrap_or_default())
}

async fn still_fine(app: &TestApp, token: &str) {
    let (status, body) = call(app, token, "/v1/chat/completions", "h/ok", false).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("fine"));
}

#[actix_rt::test]
async fn a_connection_reset_before_the_answer_is_a_clean_502() {
    let (app, token) = setup().await;
    for stream in [false, true] {
        let (status, body) = call(&app, &token, "/v1/chat/completions", "h/reset", stream).await;
        assert_eq!(status, 502, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["code"], "upstream_error");
        assert!(
            !body.contains("127.0.0.1") && !body.contains("sk-hostile"),
            "{body}"
        );
    }
    still_fine(&app, &token).await;
}

#[actix_rt::test]
async fn a_stream_cut_midway_ends_with_an_error_event_in_the_clients_shape() {
    let (app, token) = setup().await;
    let (status, body) = call(&app, &token, "/v1/chat/completions", "h/reset-mid", true).await;
    assert_eq!(status, 200, "the stream had started");
    assert!(
        body.contains("first"),
        "what came before the cut is delivered: {body}"
    );
    assert!(body.contains("\"upstream_error\""), "{body}");
    assert!(
        !body.contains("[DONE]"),
        "a cut stream does not claim to be complete"
    );
    let (status, body) = call(&app, &token, "/v1/messages", "h/reset-mid", true).await;
    assert_eq!(status, 200);
    assert!(
        body.contains("event: error"),
        "Anthropic clients get an Anthropic error event: {body}"
    );
    still_fine(&app, &token).await;
}

/// The HTTP client reads no body from an HTTP/1.1 answer with neither a
/// length nor chunks, so such a stream is refused as an upstream failure
/// (a clear 502, and a fallback may serve) rather than an empty 200.
#[actix_rt::test]
async fn a_stream_delimited_by_the_connection_closing_is_a_clear_failure() {
    let (app, token) = setup().await;
    let (status, body) = call(
        &app,
        &token,
        "/v1/chat/completions",
        "h/close-delimited",
        true,
    )
    .await;
    assert_eq!(status, 502, "{body:?}");
    assert!(body.contains("upstream_error"));
    still_fine(&app, &token).await;
}

#[actix_rt::test]
async fn malformed_and_binary_sse_never_crash_a_stream() {
    let (app, token) = setup().await;
    let (status, body) = call(&app, &token, "/v1/chat/completions", "h/garbage", true).await;
    assert_eq!(status, 200);
    assert!(body.contains("after") && body.contains("[DONE]"), "{body}");
    // Translated for an Anthropic client, junk events are skipped.
    let (status, body) = call(&app, &token, "/v1/messages", "h/garbage", true).await;
    assert_eq!(status, 200);
    assert!(
        body.contains("after") && body.contains("message_stop"),
        "{body}"
    );
    for path in ["/v1/chat/completions", "/v1/messages"] {
        let (status, body) = call(&app, &token, path, "h/binary", true).await;
        assert_eq!(status, 200);
        assert!(
            body.contains("error"),
            "a stream that is not UTF-8 ends with an error: {body}"
        );
    }
    still_fine(&app, &token).await;
}

#[actix_rt::test]
async fn an_enormous_event_or_body_is_cut_off_not_buffered() {
    let (app, token) = setup().await;
    let (status, body) = call(&app, &token, "/v1/chat/completions", "h/huge", true).await;
    assert_eq!(status, 200);
    assert!(
        body.contains("\"upstream_error\""),
        "the oversized event ends the stream"
    );
    assert!(
        body.len() < 64 * 1024,
        "nothing of the oversized event reaches the client ({} bytes)",
        body.len()
    );
    let (status, body) = call(&app, &token, "/v1/chat/completions", "h/huge-json", false).await;
    assert_eq!(status, 502, "{}", &body[..body.len().min(300)]);
    still_fine(&app, &token).await;
}
