//! Brute force and abuse (issue 10 item 5): sign-in throttling under
//! distributed guessing, request rates on the sign-in and token routes, the
//! request head limit, open streams per principal, and slow clients.

use crate::helpers::*;
use crate::upstream::FakeLlm;
use gatehouse_actors::users::ListAudit;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Behind a trusted loopback proxy, so `X-Forwarded-For` names the client.
fn behind_proxy(c: &mut gatehouse::config::Config) {
    c.server.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
}

async fn login_from(app: &TestApp, ip: &str, name: &str, password: &str) -> reqwest::Response {
    app.client
        .post(format!("{}/auth/login", app.url))
        .header("x-forwarded-for", ip)
        .json(&json!({"username": name, "password": password}))
        .send()
        .await
        .unwrap()
}

fn retry_after(res: &reqwest::Response) -> u64 {
    res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

async fn throttled_events(app: &TestApp) -> Vec<Value> {
    let events = app
        .state()
        .handles
        .users()
        .send(ListAudit { limit: 1000 })
        .await
        .unwrap()
        .unwrap();
    events
        .into_iter()
        .filter(|e| e.action == "auth.throttled")
        .map(|e| serde_json::to_value(e).unwrap())
        .collect()
}

#[actix_web::test]
async fn one_address_guessing_many_usernames_is_throttled_by_its_own_limit() {
    let app = spawn_with(|c| {
        behind_proxy(c);
        c.auth.max_login_failures_per_ip = 8;
    })
    .await;
    app.add_user("alice", PW, false).await;
    let guesser = "203.0.113.66";
    // Eight usernames, one failure each: no username reaches its own limit.
    for i in 0..8 {
        let res = login_from(&app, guesser, &format!("user{i}"), "wrong-password-here").await;
        assert_eq!(res.status(), 401, "attempt {i}");
    }
    // The address is throttled now, whatever the username, even with the right password.
    for name in ["user9", "alice"] {
        let pw = if name == "alice" {
            PW
        } else {
            "wrong-password-here"
        };
        let res = login_from(&app, guesser, name, pw).await;
        assert_eq!(res.status(), 429);
        let after = retry_after(&res);
        assert!(after > 0 && after <= 15 * 60, "{after}");
        assert_eq!(error_code(res).await, (429, "too_many_attempts".into()));
    }
    // Another address is not.
    assert_eq!(
        login_from(&app, "198.51.100.1", "alice", PW).await.status(),
        200
    );
    let events = throttled_events(&app).await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(events.iter().all(|e| e["ip"] == guesser), "{events:?}");
    // After the window the address may try again.
    app.clock
        .advance(time::Duration::minutes(15) + time::Duration::seconds(1));
    assert_eq!(login_from(&app, guesser, "alice", PW).await.status(), 200);
}

#[actix_web::test]
async fn one_username_guessed_from_many_addresses_stays_throttled() {
    let app = spawn_with(behind_proxy).await;
    app.add_user("alice", PW, false).await;
    // Five failures from five addresses: no address reaches its limit.
    for i in 0..5 {
        let res = login_from(
            &app,
            &format!("203.0.113.{i}"),
            "alice",
            "wrong-password-here",
        )
        .await;
        assert_eq!(res.status(), 401);
    }
    // Alice is throttled from any address, a fresh one too, even with her password.
    let res = login_from(&app, "198.51.100.77", "ALICE", PW).await;
    assert_eq!(res.status(), 429);
    assert!(retry_after(&res) > 0);
    let events = throttled_events(&app).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["target"], "ALICE");
    // Refused attempts during the window do not extend it.
    app.clock.advance(time::Duration::minutes(10));
    for i in 0..3 {
        let res = login_from(&app, &format!("192.0.2.{i}"), "alice", PW).await;
        assert_eq!(res.status(), 429);
    }
    app.clock
        .advance(time::Duration::minutes(5) + time::Duration::seconds(1));
    assert_eq!(
        login_from(&app, "192.0.2.9", "alice", PW).await.status(),
        200
    );
    // Other users were never affected.
    app.add_user("bob", PW, false).await;
    assert_eq!(
        login_from(&app, "203.0.113.0", "bob", PW).await.status(),
        200
    );
}

#[actix_web::test]
async fn sign_in_and_token_routes_are_rate_limited_per_address() {
    let app = spawn_with(|c| {
        behind_proxy(c);
        c.server.auth_rate_per_minute = 3;
    })
    .await;
    app.add_user("alice", PW, false).await;
    let ip = "203.0.113.5";
    let create = |ip: &'static str| {
        app.client
            .post(format!("{}/api/tokens", app.url))
            .header("x-forwarded-for", ip)
            .json(&json!({"name": "t"}))
            .send()
    };
    // A bucket of three: one sign-in, two tokens.
    assert_eq!(login_from(&app, ip, "alice", PW).await.status(), 200);
    assert_eq!(create(ip).await.unwrap().status(), 201);
    assert_eq!(create(ip).await.unwrap().status(), 201);
    let res = create(ip).await.unwrap();
    assert_eq!(res.status(), 429);
    assert_eq!(retry_after(&res), 20);
    assert_eq!(error_code(res).await, (429, "rate_limited".into()));
    let res = login_from(&app, ip, "alice", PW).await;
    assert_eq!(error_code(res).await, (429, "rate_limited".into()));
    // Rate-limited sign-ins are not failures: nothing was throttled or counted.
    assert!(throttled_events(&app).await.is_empty());
    // Other routes and other addresses are not limited.
    assert_eq!(app.get("/api/tokens").await.status(), 200);
    assert_eq!(create("198.51.100.2").await.unwrap().status(), 201);
    // One request comes back every 20 s.
    app.clock.advance(time::Duration::seconds(20));
    assert_eq!(create(ip).await.unwrap().status(), 201);
    assert_eq!(create(ip).await.unwrap().status(), 429);
}

#[actix_web::test]
async fn an_oversized_request_head_gets_431_and_the_server_stays_healthy() {
    let app = spawn_with(|c| c.server.max_header_bytes = 4096).await;
    let res = app
        .client
        .get(format!("{}/health", app.url))
        .header("x-filler", "a".repeat(8 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(res).await, (431, "headers_too_large".into()));
    // Many small headers add up too.
    let mut req = app.client.get(format!("{}/v1/models", app.url));
    for i in 0..40 {
        req = req.header(format!("x-h{i}"), "b".repeat(200));
    }
    assert_eq!(req.send().await.unwrap().status(), 431);
    // Beyond what actix reads at all (128 KiB): refused too, one way or another.
    let res = app
        .client
        .get(format!("{}/health", app.url))
        .header("x-filler", "a".repeat(200 * 1024))
        .send()
        .await;
    if let Ok(res) = res {
        assert!(
            matches!(res.status().as_u16(), 400 | 431),
            "{}",
            res.status()
        );
    }
    assert_eq!(app.get("/health").await.status(), 200);
    // Under the limit all is as usual.
    let res = app
        .client
        .get(format!("{}/health", app.url))
        .header("x-filler", "a".repeat(2048))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // The default (16 KiB) holds as well.
    let app = spawn_app().await;
    let res = app
        .client
        .get(format!("{}/health", app.url))
        .header("x-filler", "a".repeat(20 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 431);
    assert_eq!(app.get("/health").await.status(), 200);
}

/// A gateway with one OpenAI-compatible fake whose `hold` streams wait for
/// `release`, and a token for alice.
async fn streaming_gateway(max_streams: usize) -> (TestApp, FakeLlm, String) {
    let oa = FakeLlm::openai(&["m1", "hold", "endless"]);
    let toml = format!(
        "[server]\nmax_streams_per_principal = {max_streams}\n\n\
         [providers.oa]\ntype = \"openai\"\nbase_url = \"{}\"\napi_key = \"sk-upstream\"\n\
         models = [\"m1\", \"hold\", \"endless\"]\nlocal = true\nfirst_byte_timeout = \"60s\"\n",
        oa.url
    );
    let app = spawn_toml(&toml, &[]).await;
    app.add_user("alice", PW, false).await;
    assert_eq!(app.login("alice", PW).await.status(), 200);
    let token = app.token(json!({"name": "sdk"})).await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    (app, oa, token)
}

async fn chat(app: &TestApp, token: &str, model: &str, stream: bool) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", app.url))
        .bearer_auth(token)
        .json(&json!({"model": format!("oa/{model}"), "stream": stream,
                      "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
}

#[actix_web::test]
async fn open_streams_per_principal_are_capped_and_freed_when_they_end() {
    let (app, oa, token) = streaming_gateway(2).await;
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut res = chat(&app, &token, "hold", true).await;
        assert_eq!(res.status(), 200);
        tokio::time::timeout(Duration::from_secs(10), res.chunk())
            .await
            .expect("the first chunk arrives")
            .unwrap();
        open.push(res);
    }
    let res = chat(&app, &token, "hold", true).await;
    assert_eq!(res.status(), 429);
    assert!(res.headers().contains_key("retry-after"));
    assert_eq!(error_code(res).await, (429, "too_many_streams".into()));
    // Calls that do not stream are not counted, nor are other users.
    assert_eq!(chat(&app, &token, "m1", false).await.status(), 200);
    app.add_user("bob", PW, false).await;
    let bob = client();
    assert_eq!(app.login_with(&bob, "bob", PW).await.status(), 200);
    let res = bob
        .post(format!("{}/v1/chat/completions", app.url))
        .json(&json!({"model": "oa/m1", "stream": true,
                      "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.text().await.unwrap();
    // One stream ends: a new one is let in.
    oa.release();
    let mut first = open.remove(0);
    while first.chunk().await.unwrap().is_some() {}
    let mut accepted = None;
    for _ in 0..100 {
        let res = chat(&app, &token, "hold", true).await;
        if res.status() == 200 {
            accepted = Some(res);
            break;
        }
        assert_eq!(res.status(), 429);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let accepted = accepted.expect("a stream is accepted once one has ended");
    // The held ones end; a client that goes away frees its slot as well
    // (noticed at the next write: `endless` writes every 50 ms).
    drop(open);
    drop(accepted);
    oa.release();
    oa.release();
    let alice = alice_id(&app).await;
    eventually_zero(&app, &alice).await;
    let mut res = chat(&app, &token, "endless", true).await;
    assert_eq!(res.status(), 200);
    res.chunk().await.unwrap();
    assert_eq!(app.state().edge.streams.open(&alice), 1);
    drop(res);
    eventually_zero(&app, &alice).await;
}

async fn eventually_zero(app: &TestApp, user_id: &str) {
    for _ in 0..200 {
        if app.state().edge.streams.open(user_id) == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the streams of {user_id} were not freed");
}

async fn alice_id(app: &TestApp) -> String {
    app.state()
        .handles
        .user_view()
        .find(|u| u.username == "alice")
        .unwrap()
        .id
        .clone()
}

/// Reads from `stream` until the server closes it (or 20 s pass): what it sent.
async fn read_until_closed(stream: &mut tokio::net::tcp::OwnedReadHalf) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => panic!("the server kept the connection open past 20 s"),
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Writes `bytes` one at a time, 100 ms apart, until done or the server hangs up.
fn trickle(mut w: tokio::net::tcp::OwnedWriteHalf, bytes: Vec<u8>) {
    actix_rt::spawn(async move {
        for b in bytes {
            if w.write_all(&[b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}

fn host_of(app: &TestApp) -> String {
    app.url.trim_start_matches("http://").to_owned()
}

#[actix_web::test]
async fn a_request_head_sent_slowly_is_cut_off() {
    let app = spawn_with(|c| c.server.client_header_timeout = Duration::from_secs(1)).await;
    let stream = TcpStream::connect(host_of(&app)).await.unwrap();
    let (mut r, mut w) = stream.into_split();
    w.write_all(b"GET /health HTTP/1.1\r\n").await.unwrap();
    // Headers that would take 30 s to arrive.
    trickle(w, b"X-Slow: ".repeat(40));
    let started = Instant::now();
    let got = read_until_closed(&mut r).await;
    assert!(got.is_empty() || got.starts_with("HTTP/1.1 408"), "{got}");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(app.get("/health").await.status(), 200);
}

#[actix_web::test]
async fn a_request_body_sent_slowly_gets_408() {
    let app = spawn_with(|c| c.server.client_body_timeout = Duration::from_secs(1)).await;
    app.add_user("alice", PW, false).await;
    let session = session_token(&app.login("alice", PW).await).unwrap();
    for path in ["/auth/login", "/v1/chat/completions"] {
        let stream = TcpStream::connect(host_of(&app)).await.unwrap();
        let (mut r, mut w) = stream.into_split();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             X-Session-Token: {session}\r\nContent-Length: 300\r\n\r\n",
            host_of(&app)
        );
        w.write_all(head.as_bytes()).await.unwrap();
        // A body that would take 30 s to arrive.
        trickle(w, vec![b' '; 300]);
        let started = Instant::now();
        let got = read_until_closed(&mut r).await;
        assert!(got.starts_with("HTTP/1.1 408"), "{path}: {got}");
        assert!(got.contains("request_timeout"), "{path}: {got}");
        assert!(started.elapsed() < Duration::from_secs(20));
    }
    // A body that arrives in time is fine.
    assert_eq!(app.login("alice", PW).await.status(), 200);
    assert_eq!(app.get("/health").await.status(), 200);
}
