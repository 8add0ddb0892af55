//! Provider credentials and live configuration: credential profiles (a
//! refused key is skipped, a rate-limited one cools down), providers,
//! profiles and aliases changed through the admin API and the CLI without a
//! restart, egress checks at write time, keys sealed at rest under the
//! master key, and no key in any answer, log line or data file.

use crate::gateway::gateway;
use crate::helpers::*;
use crate::upstream::FakeLlm;
use serde_json::{json, Value};
use std::time::Duration;

/// An admin token for `gw`'s app (alice stays signed in as herself elsewhere).
async fn admin_token(app: &TestApp) -> String {
    app.add_user("root", PW, true).await;
    let c = client();
    assert_eq!(app.login_with(&c, "root", PW).await.status(), 200);
    let res = c
        .post(format!("{}/api/tokens", app.url))
        .json(&json!({"name": "ops", "scopes": ["read", "write", "admin"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    res.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

struct Admin {
    url: String,
    token: String,
}

impl Admin {
    async fn new(app: &TestApp) -> Admin {
        Admin {
            url: app.url.clone(),
            token: admin_token(app).await,
        }
    }
    async fn send(&self, method: &str, path: &str, body: Option<Value>) -> reqwest::Response {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = reqwest::Client::new()
            .request(m, format!("{}{path}", self.url))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.unwrap()
    }
    async fn providers(&self) -> (String, Value) {
        let res = self.send("GET", "/admin/api/providers", None).await;
        assert_eq!(res.status(), 200);
        let text = res.text().await.unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        (text, v)
    }
    async fn provider(&self, name: &str) -> Value {
        let (_, v) = self.providers().await;
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    }
    async fn audit_actions(&self) -> Vec<String> {
        let v: Value = self
            .send("GET", "/admin/api/audit", None)
            .await
            .json()
            .await
            .unwrap();
        let list = v["data"]
            .as_array()
            .or(v.as_array())
            .cloned()
            .unwrap_or_default();
        list.iter()
            .map(|e| e["action"].as_str().unwrap_or("").to_owned())
            .collect()
    }
}

fn profile_state(provider: &Value, name: &str) -> Value {
    provider["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .cloned()
        .unwrap_or(Value::Null)
}

fn keys_seen(fake: &FakeLlm) -> Vec<String> {
    fake.seen()
        .iter()
        .map(|s| {
            s.header("authorization")
                .unwrap_or("")
                .trim_start_matches("Bearer ")
                .to_owned()
        })
        .collect()
}

fn pool(fake: &FakeLlm, first: &str, second: &str) -> String {
    format!(
        "[providers.pool]\ntype = \"openai\"\nbase_url = \"{}\"\nmodels = [\"m1\", \"m2\"]\nlocal = true\nauth_order = [\"first\", \"second\"]\n\
         [providers.pool.profiles.second]\napi_key = \"{second}\"\n\
         [providers.pool.profiles.first]\napi_key = \"{first}\"\nheaders = {{ OpenAI-Organization = \"org-first\" }}\n",
        fake.url
    )
}

#[actix_rt::test]
async fn a_refused_key_is_marked_failing_and_the_next_profile_serves() {
    let fake = FakeLlm::openai(&["m1", "m2"]);
    let gw = gateway(&pool(&fake, "sk-revoked-first", "sk-good-second")).await;
    let admin = Admin::new(&gw.app).await;
    let res = gw.chat("pool/m1", false).await;
    assert_eq!(res.status(), 200, "the client never sees the 401");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "echo: hi there");
    let chats: Vec<String> = keys_seen(&fake)
        .into_iter()
        .filter(|k| !k.is_empty())
        .collect();
    assert!(
        chats.ends_with(&["sk-revoked-first".to_owned(), "sk-good-second".to_owned()]),
        "{chats:?}"
    );
    let first_try = fake
        .seen()
        .into_iter()
        .find(|s| {
            s.header("authorization") == Some("Bearer sk-revoked-first")
                && s.path.ends_with("/chat/completions")
        })
        .unwrap();
    assert_eq!(first_try.header("openai-organization"), Some("org-first"));
    let before = fake.calls();
    assert_eq!(gw.chat("pool/m2", false).await.status(), 200);
    assert_eq!(fake.calls(), before + 1, "the failing profile is skipped");
    assert_eq!(
        fake.last().header("authorization"),
        Some("Bearer sk-good-second")
    );

    let (text, _) = admin.providers().await;
    let p = admin.provider("pool").await;
    assert_eq!(p["source"], "config");
    assert_eq!(profile_state(&p, "first")["state"], "failing");
    assert_eq!(profile_state(&p, "second")["state"], "ok");
    assert_eq!(profile_state(&p, "first")["order"], 0);
    for secret in [
        "sk-revoked-first",
        "sk-good-second",
        "sk-upstream",
        "sk-ant-upstream",
    ] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    assert!(admin
        .audit_actions()
        .await
        .contains(&"profile.failing".to_owned()));
}

#[actix_rt::test]
async fn a_rate_limited_profile_cools_down_and_returns_after_the_wait() {
    let fake = FakeLlm::openai(&["m1"]);
    let gw = gateway(&pool(&fake, "sk-limited-first", "sk-good-second")).await;
    let admin = Admin::new(&gw.app).await;
    assert_eq!(gw.chat("pool/m1", false).await.status(), 200);
    let limited = |f: &FakeLlm| {
        keys_seen(f)
            .iter()
            .filter(|k| k.as_str() == "sk-limited-first")
            .count()
    };
    let hits = limited(&fake);
    assert!(hits >= 1);
    let p = admin.provider("pool").await;
    let first = profile_state(&p, "first");
    assert_eq!(first["state"], "cooling");
    assert!(first["until"].is_string(), "{first}");
    // While it cools, requests go straight to the next profile.
    assert_eq!(gw.chat("pool/m1", false).await.status(), 200);
    assert_eq!(limited(&fake), hits);
    // After its Retry-After (1 s), the first profile is tried again.
    gw.app.clock.advance(time::Duration::seconds(2));
    assert_eq!(admin.provider("pool").await["profiles"][0]["state"], "ok");
    assert_eq!(gw.chat("pool/m1", false).await.status(), 200);
    assert_eq!(limited(&fake), hits + 1);

    // With every profile cooling, the client gets 429 with Retry-After.
    let solo = FakeLlm::openai(&["m1"]);
    let gw2 = gateway(&format!(
        "[providers.solo]\nbase_url = \"{}\"\nmodels = [\"m1\"]\nlocal = true\n[providers.solo.profiles.only]\napi_key = \"sk-limited-x\"\n",
        solo.url
    ))
    .await;
    let res = gw2.chat("solo/m1", false).await;
    assert_eq!(res.status(), 429);
    assert_eq!(res.headers()["retry-after"], "1");
    assert_eq!(error_code(res).await.1, "rate_limit_exceeded");
}

#[actix_rt::test]
async fn providers_profiles_and_aliases_change_through_the_api_without_a_restart() {
    let gw = gateway("[models]\ndefault = \"oa/m1\"").await;
    let admin = Admin::new(&gw.app).await;
    let live = FakeLlm::openai(&["lm1", "lm2"]);
    assert_eq!(
        error_code(gw.chat("live/lm1", false).await).await,
        (404, "model_not_found".into())
    );

    let res = admin
        .send("PUT", "/admin/api/providers/live", Some(json!({"type": "openai", "base_url": live.url, "local": true, "timeouts": {"connect_ms": 2000}})))
        .await;
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["source"], "api");
    assert_eq!(body["timeouts"]["connect_ms"], 2000);
    // Models are discovered from the new provider; it serves at once.
    let res = admin
        .send(
            "PUT",
            "/admin/api/providers/live/profiles/main",
            Some(json!({"api_key": "sk-live-canary-77", "headers": {"OpenAI-Project": "proj-9"}})),
        )
        .await;
    assert_eq!(res.status(), 201);
    let text = res.text().await.unwrap();
    assert!(!text.contains("sk-live-canary-77"), "{text}");
    let mut served = false;
    for _ in 0..50 {
        if gw.chat("live/lm1", false).await.status() == 200 {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        served,
        "a provider added through the API serves without a restart"
    );
    let seen = live.last();
    assert_eq!(
        seen.header("authorization"),
        Some("Bearer sk-live-canary-77")
    );
    assert_eq!(seen.header("openai-project"), Some("proj-9"));
    // The same PUT again changes, and keeps the key when none is sent.
    let res = admin
        .send(
            "PUT",
            "/admin/api/providers/live/profiles/main",
            Some(json!({"order": 5})),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["order"], 5);
    assert_eq!(gw.chat("live/lm1", false).await.status(), 200);
    assert_eq!(
        live.last().header("authorization"),
        Some("Bearer sk-live-canary-77")
    );
    let res = admin
        .send(
            "PUT",
            "/admin/api/providers/live",
            Some(json!({"type": "openai", "base_url": live.url, "local": true, "models": ["lm2"]})),
        )
        .await;
    assert_eq!(res.status(), 200, "a changed provider keeps its profiles");
    assert_eq!(gw.chat("live/lm2", false).await.status(), 200);
    assert_eq!(error_code(gw.chat("live/lm1", false).await).await.0, 404);
    // Upstream models, live.
    let v: Value = admin
        .send("GET", "/admin/api/providers/live/models", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"], json!([{"id": "lm1"}, {"id": "lm2"}]));

    // Aliases and the default model.
    let res = admin
        .send(
            "PUT",
            "/admin/api/models/aliases/quick",
            Some(json!({"targets": ["live/lm2", "oa/m1"]})),
        )
        .await;
    assert_eq!(res.status(), 201);
    assert_eq!(gw.chat("quick", false).await.status(), 200);
    let res = admin
        .send(
            "PUT",
            "/admin/api/models/aliases/quick",
            Some(json!({"targets": ["oa/m1"]})),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(gw.chat("default", false).await.status(), 200);
    assert_eq!(gw.oa.last().body["model"], "m1");
    let res = admin
        .send(
            "PUT",
            "/admin/api/models/default",
            Some(json!({"model": "live/lm2"})),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(gw.chat("default", false).await.status(), 200);
    assert_eq!(live.last().body["model"], "lm2");
    let (_, ids) = gw.models(&gw.token).await;
    assert!(
        ids.contains(&"default".to_owned()) && ids.contains(&"quick".to_owned()),
        "{ids:?}"
    );

    // Config-file providers are read-only here.
    for (m, body) in [
        (
            "PUT",
            Some(json!({"type": "openai", "base_url": "http://127.0.0.1:1/v1", "local": true})),
        ),
        ("DELETE", None),
    ] {
        let res = admin.send(m, "/admin/api/providers/oa", body).await;
        assert_eq!(
            error_code(res).await,
            (409, "config_provider".into()),
            "{m}"
        );
    }
    // Removing the provider takes its models away at once.
    assert_eq!(
        admin
            .send("DELETE", "/admin/api/providers/live/profiles/main", None)
            .await
            .status(),
        204
    );
    assert_eq!(
        admin
            .send("DELETE", "/admin/api/providers/live", None)
            .await
            .status(),
        204
    );
    assert_eq!(
        admin
            .send("DELETE", "/admin/api/providers/live", None)
            .await
            .status(),
        404
    );
    assert_eq!(error_code(gw.chat("live/lm2", false).await).await.0, 404);
    let actions = admin.audit_actions().await;
    for a in [
        "provider.put",
        "profile.put",
        "profile.delete",
        "provider.delete",
        "alias.put",
    ] {
        assert!(actions.contains(&a.to_owned()), "{a} audited: {actions:?}");
    }
    // Nobody but an admin may touch providers.
    let res = reqwest::Client::new()
        .get(format!("{}/admin/api/providers", gw.app.url))
        .bearer_auth(&gw.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
}

#[actix_rt::test]
async fn bad_provider_changes_are_refused_and_nothing_is_stored() {
    let gw = gateway("").await;
    let admin = Admin::new(&gw.app).await;
    let put = |name: &str, body: Value| {
        let path = format!("/admin/api/providers/{name}");
        let admin = &admin;
        async move { admin.send("PUT", &path, Some(body)).await }
    };
    for (url, local) in [
        ("http://169.254.169.254/v1", true),
        ("http://metadata.google.internal/v1", true),
        ("http://127.0.0.1:9/v1", false),
        ("http://10.0.0.5/v1", false),
    ] {
        let res = put(
            "evil",
            json!({"type": "openai", "base_url": url, "local": local}),
        )
        .await;
        assert_eq!(
            error_code(res).await,
            (422, "egress_denied".into()),
            "{url}"
        );
    }
    for body in [
        json!({"type": "cohere", "base_url": "https://api.example.com/v1"}),
        json!({"type": "openai", "base_url": "ftp://x/v1"}),
        json!({"type": "openai", "base_url": "https://user:pw@api.example.com/v1"}),
        json!({"type": "openai", "base_url": "https://api.example.com/v1", "models": [""]}),
        json!({"type": "openai", "base_url": "https://api.example.com/v1", "timeouts": {"total_ms": 0}}),
    ] {
        assert_eq!(put("evil", body.clone()).await.status(), 422, "{body}");
    }
    for body in [
        json!({"base_url": "https://api.example.com/v1"}),
        json!({"type": "openai", "base_url": "https://a.example/v1", "extra": 1}),
    ] {
        assert_eq!(put("evil", body.clone()).await.status(), 400, "{body}");
    }
    assert_eq!(
        put(
            "bad%20name",
            json!({"type": "openai", "base_url": "https://api.example.com/v1"})
        )
        .await
        .status(),
        422
    );
    let res = admin
        .send(
            "PUT",
            "/admin/api/providers/nope/profiles/p",
            Some(json!({"api_key": "sk-x"})),
        )
        .await;
    assert_eq!(res.status(), 404);
    let res = admin
        .send(
            "PUT",
            "/admin/api/providers/oa/profiles/p",
            Some(json!({"order": 1})),
        )
        .await;
    assert_eq!(error_code(res).await.0, 422, "a new profile needs a key");
    for headers in [
        json!({"Authorization": "Bearer x"}),
        json!({"x-api-key": "x"}),
        json!({"X-Ok": "a\nb"}),
    ] {
        let res = admin
            .send(
                "PUT",
                "/admin/api/providers/oa/profiles/p",
                Some(json!({"api_key": "sk-x", "headers": headers})),
            )
            .await;
        assert_eq!(res.status(), 422, "{headers}");
    }
    let res = admin
        .send(
            "PUT",
            "/admin/api/models/aliases/x",
            Some(json!({"targets": ["ghost/m"]})),
        )
        .await;
    assert_eq!(res.status(), 422);
    let res = admin
        .send(
            "PUT",
            "/admin/api/models/aliases/default",
            Some(json!({"targets": ["oa/m1"]})),
        )
        .await;
    assert_eq!(res.status(), 422);
    let res = admin
        .send(
            "PUT",
            "/admin/api/models/default",
            Some(json!({"model": "oa/ghost"})),
        )
        .await;
    assert_eq!(error_code(res).await, (404, "model_not_found".into()));
    let (_, v) = admin.providers().await;
    let names: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["an", "oa"]);
    let stored = gw.app.state().handles.store().load_gateway().await.unwrap();
    assert!(stored.is_empty(), "nothing refused was stored: {stored:?}");
}

/// Hot reload under load: requests keep succeeding while providers,
/// profiles and aliases change around them.
#[actix_rt::test]
async fn changes_under_load_cause_no_errors() {
    let gw = gateway("[models.aliases]\nbusy = [\"oa/m1\"]").await;
    let admin = Admin::new(&gw.app).await;
    let other = FakeLlm::openai(&["x1"]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (url, token, stop) = (gw.app.url.clone(), gw.token.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let c = reqwest::Client::new();
            let (mut ok, mut bad) = (0u32, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let stream = ok % 2 == 0;
                let res = c
                    .post(format!("{url}/v1/chat/completions"))
                    .bearer_auth(&token)
                    .json(&json!({"model": if ok % 3 == 0 { "busy" } else { "oa/m1" }, "stream": stream, "messages": [{"role": "user", "content": "x"}]}))
                    .send()
                    .await
                    .unwrap();
                let status = res.status().as_u16();
                let text = res.text().await.unwrap_or_default();
                if status == 200 && (!stream || text.contains("[DONE]")) {
                    ok += 1;
                } else {
                    bad.push(format!("{status} {text}"));
                }
            }
            (ok, bad)
        }));
    }
    for i in 0..15 {
        let name = format!("p{}", i % 3);
        let res = admin
            .send("PUT", &format!("/admin/api/providers/{name}"), Some(json!({"type": "openai", "base_url": other.url, "local": true, "models": ["x1"]})))
            .await;
        assert!(res.status().is_success());
        let res = admin
            .send(
                "PUT",
                &format!("/admin/api/providers/{name}/profiles/k"),
                Some(json!({"api_key": format!("sk-{i}")})),
            )
            .await;
        assert!(res.status().is_success());
        let targets = if i % 2 == 0 {
            json!(["oa/m1", format!("{name}/x1")])
        } else {
            json!(["oa/m1"])
        };
        assert!(admin
            .send(
                "PUT",
                "/admin/api/models/aliases/busy",
                Some(json!({"targets": targets}))
            )
            .await
            .status()
            .is_success());
        if i % 3 == 2 {
            assert_eq!(
                admin
                    .send("DELETE", &format!("/admin/api/providers/{name}"), None)
                    .await
                    .status(),
                204
            );
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for w in workers {
        let (ok, bad) = w.await.unwrap();
        assert!(bad.is_empty(), "errors under reload: {bad:?}");
        total += ok;
    }
    assert!(total > 20, "the load ran ({total} requests)");
}

/// The key is sealed on disk: no file of the home holds it, the master key
/// file is 0600, a wrong master key stops `serve`, and `keys rotate-master`
/// re-seals so a restart still opens the keys. All through the CLI and a
/// real `gatehouse serve`, whose log must not hold the key either.
#[actix_rt::test]
async fn keys_are_sealed_at_rest_and_the_master_key_rotates() {
    use std::os::unix::fs::PermissionsExt;
    let fake = FakeLlm::openai(&["m1", "m2"]);
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let canary = "sk-canary-0123456789abcdef";
    // Let the fake start serving before this thread blocks on processes.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let server = Server::start(&home, &[]);
    let master = std::fs::read_to_string(home.join("master.key")).unwrap();
    let mode = std::fs::metadata(home.join("master.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    cli_ok(
        &home,
        &["users", "add", "admin", "--password-stdin"],
        Some(PW),
    );
    let out = cli(
        &home,
        &[
            "providers",
            "add",
            "fake",
            "--type",
            "openai",
            "--base-url",
            &fake.url,
            "--local",
            "--key-stdin",
        ],
        Some(canary),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = cli_ok(&home, &["providers", "list"], None);
    assert!(
        listed.contains("fake  openai")
            && listed.contains("source: api")
            && listed.contains("default(ok)"),
        "{listed}"
    );
    // Discovery runs in the background; `test` asks upstream now.
    let out = cli(&home, &["providers", "test", "fake"], None);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        server
            .log()
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let tested = String::from_utf8(out.stdout).unwrap();
    assert!(
        tested.starts_with("ok  ") && tested.contains(" ms  models: m1, m2"),
        "{tested}"
    );
    assert_eq!(
        fake.last().header("authorization"),
        Some(&*format!("Bearer {canary}"))
    );
    let mut models = String::new();
    for _ in 0..50 {
        models = cli_ok(&home, &["models", "list"], None);
        if models.contains("fake/m2") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(models.lines().any(|l| l == "fake/m1"), "{models}");
    cli_ok(&home, &["models", "set-default", "fake/m2"], None);
    assert!(cli_ok(&home, &["models", "list"], None)
        .lines()
        .any(|l| l == "default"));
    let bad = cli(&home, &["providers", "test", "ghost"], None);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("ghost"));
    let refused = cli(
        &home,
        &[
            "providers",
            "add",
            "meta",
            "--type",
            "openai",
            "--base-url",
            "http://169.254.169.254/v1",
            "--local",
        ],
        None,
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("egress"));

    cli_ok(&home, &["keys", "rotate-master"], None);
    let rotated = std::fs::read_to_string(home.join("master.key")).unwrap();
    assert_ne!(rotated, master, "a new master key");
    assert!(!home.join("master.key.new").exists());
    let log = server.log();
    server.stop();
    assert!(!log.contains(canary), "the key is not in the log");
    assert!(
        !contains(&all_file_bytes(&home), canary.as_bytes()),
        "no file of the home holds the key"
    );

    // A restart opens the re-sealed key; the provider still serves.
    let server = Server::start(&home, &[]);
    let tested = cli_ok(&home, &["providers", "test", "fake"], None);
    assert!(tested.starts_with("ok  "), "{tested}");
    server.stop();

    // With another master key, serve refuses to start and says why.
    let other = "11".repeat(32);
    let out = std::process::Command::new(bin())
        .args(["serve", "--port", "0"])
        .env("GATEHOUSE_HOME", &home)
        .env("GATEHOUSE_MASTER_KEY", &other)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("GATEHOUSE_MASTER_KEY") && err.contains("master key"),
        "{err}"
    );
    // Without the key file, the data alone reveals nothing and opens nothing.
    std::fs::remove_file(home.join("master.key")).unwrap();
    let out = std::process::Command::new(bin())
        .args(["serve", "--port", "0"])
        .env("GATEHOUSE_HOME", &home)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("master key"));
}

/// On PostgreSQL the database holds only sealed keys, and a profile added
/// on one instance serves on another (same master key).
#[actix_rt::test]
async fn postgres_holds_only_sealed_keys_and_instances_share_providers() {
    use gatehouse_actors::store::{PgStore, SharedStore, Store};
    let schema = format!("gh_prov_{}", &gatehouse_actors::ids::random_id()[..10]);
    let url = std::env::var("GATEHOUSE_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let store = std::sync::Arc::new(PgStore::connect(&url, Some(&schema)).await.unwrap());
    let key = "ab".repeat(32);
    let fake = FakeLlm::openai(&["m1"]);
    let serve = |store: SharedStore| {
        let key = key.clone();
        async move {
            let gh = gatehouse::Gatehouse::builder(gatehouse::config::Config::defaults())
                .store(store)
                .master_key(&key)
                .build()
                .await
                .unwrap();
            gh
        }
    };
    let a = serve(store.clone()).await;
    // Another connection, as another instance has (its own change feed).
    let other = std::sync::Arc::new(PgStore::connect(&url, Some(&schema)).await.unwrap());
    let b = serve(other).await;
    let actor = gatehouse::accounts::Actor::cli();
    let canary = "sk-pg-canary-424242";
    let body: gatehouse::providers::ProviderPut = serde_json::from_value(
        json!({"type": "openai", "base_url": fake.url, "local": true, "models": ["m1"]}),
    )
    .unwrap();
    gatehouse::providers::put_provider(&a.data(), &actor, "shared", body)
        .await
        .unwrap();
    let profile: gatehouse::providers::ProfilePut =
        serde_json::from_value(json!({"api_key": canary})).unwrap();
    gatehouse::providers::put_profile(&a.data(), &actor, "shared", "main", profile)
        .await
        .unwrap();
    let mut seen_on_b = false;
    for _ in 0..50 {
        let p = gatehouse::providers::get(&b.data(), "shared").await;
        if p.is_ok_and(|p| p.offered && p.profiles.iter().any(|q| q.name == "main")) {
            seen_on_b = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen_on_b, "instance B picks up the provider added on A");
    let (_, models) = gatehouse::providers::test(&b.data(), "shared")
        .await
        .unwrap();
    assert_eq!(models, ["m1"]);
    assert_eq!(
        fake.last().header("authorization"),
        Some(&*format!("Bearer {canary}"))
    );
    let items = store.load_gateway().await.unwrap();
    let dump = serde_json::to_string(&items.iter().map(|i| &i.body).collect::<Vec<_>>()).unwrap();
    assert!(dump.contains("v1."), "sealed values are stored");
    assert!(!dump.contains(canary), "the database holds no key");
    store.drop_schema().await.unwrap();
}
