//! `GET /metrics`: the series after real traffic on the real binary, who may
//! read it, and that no secret ever appears in it.

use crate::gateway::gateway;
use crate::helpers::*;
use crate::upstream::FakeLlm;
use serde_json::json;
use std::path::Path;

/// A home whose config routes `oa/…` to `fake`; sign-ins throttle after 2 failures.
pub fn home_with(fake: &FakeLlm, extra: &str) -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    std::fs::write(
        home.path().join("gatehouse.toml"),
        format!(
            r#"
[providers.oa]
type = "openai"
base_url = "{}"
api_key = "sk-upstream-secret"
models = ["m1", "hold"]
local = true
first_byte_timeout = "30s"

[auth]
max_login_failures = 2
{extra}
"#,
            fake.url
        ),
    )
    .unwrap();
    home
}

/// Issues a token on the store of `home` (no server running).
pub fn issue(home: &Path, user: &str, scope: &str) -> String {
    cli_ok(
        home,
        &[
            "tokens", "issue", "--user", user, "--name", "ops", "--scope", scope,
        ],
        None,
    )
    .trim()
    .to_owned()
}

/// The value of the series written exactly as `series` (name and labels).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[actix_web::test]
async fn metrics_count_requests_calls_sessions_and_throttled_signins_by_route_pattern() {
    let fake = FakeLlm::openai(&["m1", "hold"]);
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let home = home_with(
        &fake,
        &format!("[server]\nmetrics = \"loopback\"\nmetrics_port = {metrics_port}\n"),
    );
    let alice_pw = "alice-password-not-in-metrics";
    let alice_pw2 = "alice-second-password-not-in-metrics";
    cli_ok(
        home.path(),
        &["users", "add", "alice", "--password-stdin"],
        Some(alice_pw),
    );
    cli_ok(
        home.path(),
        &["users", "add", "root", "--admin", "--password-stdin"],
        Some(PW),
    );
    let token = issue(home.path(), "alice", "read,write");
    let admin = issue(home.path(), "root", "admin");
    let server = Server::start(home.path(), &[]);
    let c = client();
    let url = |p: &str| format!("{}{p}", server.url);

    assert_eq!(c.get(url("/health")).send().await.unwrap().status(), 200);
    assert_eq!(c.get(url("/v1/models")).send().await.unwrap().status(), 401);
    let res = c
        .post(url("/v1/chat/completions"))
        .bearer_auth(&token)
        .json(&json!({"model": "oa/m1", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // A route with a name in its path is counted by its pattern.
    let res = c
        .put(url("/admin/api/users/alice/password"))
        .bearer_auth(&admin)
        .json(&json!({"password": alice_pw2}))
        .send()
        .await
        .unwrap();
    let put_status = res.status().as_u16();
    assert!(res.status().is_success(), "{put_status}");
    // One session, then guessing until the throttle answers twice.
    let login = |user: &str, pw: &str| {
        c.post(url("/auth/login"))
            .json(&json!({"username": user, "password": pw}))
            .send()
    };
    let res = login("alice", alice_pw2).await.unwrap();
    assert_eq!(res.status(), 200);
    let session = session_token(&res).unwrap();
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(login("alice", "wrong").await.unwrap().status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 429, 429]);
    assert_eq!(
        c.get(url("/no/such/route/42"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    let res = c.get(url("/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = res.text().await.unwrap();
    let req = |route: &str, method: &str, status: u16| {
        value(
            &text,
            &format!(
                "gatehouse_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}}"
            ),
        )
    };
    assert_eq!(req("/health", "GET", 200), Some(1.0), "{text}");
    assert_eq!(req("/v1/models", "GET", 401), Some(1.0), "{text}");
    assert_eq!(
        req("/v1/chat/completions", "POST", 200),
        Some(1.0),
        "{text}"
    );
    assert_eq!(req("/auth/login", "POST", 200), Some(1.0), "{text}");
    assert_eq!(req("/auth/login", "POST", 401), Some(2.0), "{text}");
    assert_eq!(req("/auth/login", "POST", 429), Some(2.0), "{text}");
    assert_eq!(
        req("/admin/api/users/{name}/password", "PUT", put_status),
        Some(1.0),
        "{text}"
    );
    assert_eq!(req("unmatched", "GET", 404), Some(1.0), "{text}");
    assert_eq!(
        value(
            &text,
            "gatehouse_upstream_latency_seconds_count{provider=\"oa\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "gatehouse_upstream_latency_seconds_bucket{provider=\"oa\",le=\"+Inf\"}"
        ),
        Some(1.0)
    );
    assert_eq!(value(&text, "gatehouse_signins_throttled_total"), Some(2.0));
    assert_eq!(value(&text, "gatehouse_sessions"), Some(1.0));
    assert_eq!(value(&text, "gatehouse_active_streams"), Some(0.0));
    assert_eq!(value(&text, "gatehouse_actor_restarts_total"), Some(0.0));
    assert_eq!(value(&text, "gatehouse_tasks_backlog"), Some(0.0));
    for line in text.lines().filter(|l| l.starts_with("# TYPE")) {
        assert!(
            line.ends_with(" counter") || line.ends_with(" gauge") || line.ends_with(" histogram"),
            "{line}"
        );
    }
    // Nothing secret, and no raw path or username.
    for secret in [
        token.as_str(),
        admin.as_str(),
        session.as_str(),
        alice_pw,
        alice_pw2,
        PW,
        "sk-upstream-secret",
        "alice",
        "/no/such",
    ] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    // The scrape itself is counted on the next one.
    let text = c
        .get(url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("route=\"/metrics\",method=\"GET\",status=\"200\"} 1"),
        "{text}"
    );

    // The separate metrics port answers anyone, and only /metrics.
    let open = format!("http://127.0.0.1:{metrics_port}");
    let res = client()
        .get(format!("{open}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("gatehouse_sessions 1"));
    let res = client().get(format!("{open}/health")).send().await.unwrap();
    assert_eq!(res.status(), 404);

    // Through a proxy on this machine the loopback peer proves nothing.
    let c = client();
    let res = c
        .get(url("/metrics"))
        .header("x-forwarded-for", "127.0.0.1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let res = c
        .get(url("/metrics"))
        .header("x-forwarded-for", "203.0.113.9")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let res = c
        .get(url("/metrics"))
        .header("forwarded", "for=203.0.113.9")
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    server.stop();
}

#[actix_web::test]
async fn metrics_admin_mode_asks_for_the_admin_scope_and_off_hides_it() {
    // In loopback mode a local scrape works before there is any user.
    let app = spawn_toml("[server]\nmetrics = \"loopback\"\n", &[]).await;
    let res = client()
        .get(format!("{}/metrics", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("gatehouse_sessions 0"));

    let app = spawn_toml("[server]\nmetrics = \"admin\"\n", &[]).await;
    app.add_user("root", PW, true).await;
    app.add_user("bob", PW, false).await;
    let anon = client();
    assert_eq!(
        anon.get(format!("{}/metrics", app.url))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(app.login("bob", PW).await.status(), 200);
    let res = app
        .client
        .get(format!("{}/metrics", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let admin = client();
    let res = admin
        .post(format!("{}/auth/login", app.url))
        .json(&json!({"username": "root", "password": PW}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = admin
        .get(format!("{}/metrics", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("gatehouse_sessions 2"));

    let app = spawn_toml("[server]\nmetrics = \"off\"\n", &[]).await;
    app.add_user("root", PW, true).await;
    assert_eq!(app.login("root", PW).await.status(), 200);
    let res = app
        .client
        .get(format!("{}/metrics", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
}

#[actix_web::test]
async fn metrics_count_a_stream_as_active_while_it_runs() {
    let gw = gateway("[server]\nmetrics = \"loopback\"").await;
    let metric = |name: &'static str| {
        let url = format!("{}/metrics", gw.app.url);
        async move {
            let text = client()
                .get(url)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            value(&text, name)
        }
    };
    assert_eq!(metric("gatehouse_active_streams").await, Some(0.0));
    let mut res = gw
        .app
        .client
        .post(format!("{}/v1/chat/completions", gw.app.url))
        .bearer_auth(&gw.token)
        .json(&json!({"model": "oa/hold", "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.chunk().await.unwrap().is_some());
    assert_eq!(metric("gatehouse_active_streams").await, Some(1.0));
    gw.oa.release();
    while res.chunk().await.unwrap().is_some() {}
    assert_eq!(metric("gatehouse_active_streams").await, Some(0.0));
    assert_eq!(
        metric("gatehouse_upstream_latency_seconds_count{provider=\"oa\"}").await,
        Some(1.0)
    );
}
