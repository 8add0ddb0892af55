//! SIGTERM on `gatehouse serve`: no new connections, the stream in flight
//! finishes, and its usage is in the store after a restart.

use crate::helpers::*;
use crate::metrics::{home_with, issue};
use crate::upstream::FakeLlm;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[actix_web::test]
async fn sigterm_lets_the_stream_in_flight_finish_refuses_new_connections_and_keeps_its_usage() {
    let fake = FakeLlm::openai(&["m1", "hold"]);
    let home = home_with(&fake, "[server]\nshutdown_timeout = \"20s\"\n");
    cli_ok(
        home.path(),
        &["users", "add", "root", "--admin", "--password-stdin"],
        Some(PW),
    );
    let token = issue(home.path(), "root", "admin");
    let mut server = Server::start(home.path(), &[]);
    let url = server.url.clone();
    let mut res = client()
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth(&token)
        .json(&json!({"model": "oa/hold", "stream": true,
            "messages": [{"role": "user", "content": "finish me"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let mut body = String::from_utf8(res.chunk().await.unwrap().unwrap().to_vec()).unwrap();
    assert!(body.contains("echo: "), "{body}");

    unsafe {
        libc::kill(server.child.id() as i32, libc::SIGTERM);
    }
    // The listener closes at once: a new connection is refused.
    let t0 = Instant::now();
    loop {
        let fresh = client().get(format!("{url}/health")).send().await;
        match fresh {
            Err(e) if e.is_connect() => break,
            _ if t0.elapsed() > Duration::from_secs(5) => {
                panic!("still accepting after SIGTERM: {fresh:?}")
            }
            _ => actix_rt::time::sleep(Duration::from_millis(50)).await,
        }
    }
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "the process waits for the stream"
    );
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    fake.release();
    while let Some(chunk) = res.chunk().await.unwrap() {
        body.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(body.contains("finish me"), "{body}");
    assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status:?}\n{}", server.log());
    assert!(
        server.log().contains("stopped accepting"),
        "{}",
        server.log()
    );
    drop(server);

    let server = Server::start(home.path(), &[]);
    let usage: Value = client()
        .get(format!("{}/admin/api/usage", server.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let row = usage["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["model"] == "oa/hold")
        .unwrap_or_else(|| panic!("{usage}"));
    assert_eq!(row["requests"], 1, "{usage}");
    assert_eq!(row["prompt_tokens"], 11, "{usage}");
    assert_eq!(row["completion_tokens"], 7, "{usage}");
    server.stop();
}
