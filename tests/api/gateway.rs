//! The model API against fake providers: what goes upstream, what comes
//! back, streaming, translation between the OpenAI and Anthropic shapes,
//! model lists, bad requests and usage.

use crate::helpers::*;
use crate::postgres::eventually;
use crate::upstream::FakeLlm;
use serde_json::{json, Value};
use std::time::Duration;

pub const OPENAI_MODELS: &[&str] = &[
    "m1", "fail-500", "rate-429", "bad-400", "slow", "hold", "stall", "endless",
];

pub struct Gw {
    pub app: TestApp,
    pub oa: FakeLlm,
    pub an: FakeLlm,
    pub token: String,
}

/// Two fake providers (`oa`: OpenAI-compatible, `an`: Anthropic), `extra`
/// config after them, and a user `alice` with a gateway token.
pub async fn gateway(extra: &str) -> Gw {
    gateway_env(extra, &[]).await
}

pub async fn gateway_env(extra: &str, env: &[(&str, &str)]) -> Gw {
    let oa = FakeLlm::openai(OPENAI_MODELS);
    let an = FakeLlm::anthropic(&["claude-x"]);
    let toml = format!(
        r#"
[providers.oa]
type = "openai"
base_url = "{}"
api_key = "sk-upstream"
models = {:?}
local = true
first_byte_timeout = "1s"

[providers.an]
type = "anthropic"
base_url = "{}"
api_key = "sk-ant-upstream"
models = ["claude-x", "hold"]
local = true
{extra}
"#,
        oa.url, OPENAI_MODELS, an.url
    );
    let app = spawn_toml(&toml, env).await;
    app.add_user("alice", PW, false).await;
    assert_eq!(app.login("alice", PW).await.status(), 200);
    let token = app.token(json!({"name": "sdk"})).await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    Gw { app, oa, an, token }
}

impl Gw {
    /// `GET /v1/models` with `token`: the answer and its ids.
    pub async fn models(&self, token: &str) -> (Value, Vec<String>) {
        let res = reqwest::Client::new()
            .get(format!("{}/v1/models", self.app.url))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let body: Value = res.json().await.unwrap();
        let ids = body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect();
        (body, ids)
    }

    pub async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        reqwest::Client::new()
            .post(format!("{}{path}", self.app.url))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn chat(&self, model: &str, stream: bool) -> reqwest::Response {
        self.post(
            "/v1/chat/completions",
            json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi there"}]}),
        )
        .await
    }
}

/// The SSE `data:` payloads of a whole body.
pub fn sse_data(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter_map(|ev| {
            ev.lines()
                .find_map(|l| l.strip_prefix("data: "))
                .map(str::to_owned)
        })
        .collect()
}

#[actix_rt::test]
async fn chat_goes_upstream_with_the_providers_key_and_never_the_clients() {
    let gw = gateway("").await;
    let res = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", gw.app.url))
        .bearer_auth(&gw.token)
        .header("cookie", "gatehouse_session=abc")
        .header("x-api-key", "client-key")
        .json(&json!({"model": "oa/m1", "messages": [{"role": "user", "content": "hi there"}], "temperature": 0.2}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let overhead: f64 = res.headers()["x-gatehouse-overhead-ms"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(overhead >= 0.0);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "echo: hi there");
    let seen = gw.oa.last();
    assert_eq!(seen.path, "/v1/chat/completions");
    assert_eq!(seen.body["model"], "m1", "the provider gets its own id");
    assert_eq!(seen.body["temperature"], 0.2);
    assert_eq!(seen.header("authorization"), Some("Bearer sk-upstream"));
    for (name, value) in &seen.headers {
        assert!(
            !value.contains(&gw.token) && !value.contains("client-key") && !value.contains("abc"),
            "{name} leaked"
        );
    }
    assert!(seen.header("cookie").is_none() && seen.header("x-api-key").is_none());
}

#[actix_rt::test]
async fn a_stream_passes_through_with_the_usage_chunk_only_when_asked() {
    let gw = gateway("").await;
    let res = gw.chat("oa/m1", true).await;
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let data = sse_data(&res.text().await.unwrap());
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "echo: hi there");
    assert!(
        chunks
            .iter()
            .all(|c| !c["choices"].as_array().unwrap().is_empty()),
        "no usage chunk: {chunks:?}"
    );
    assert_eq!(
        gw.oa.last().body["stream_options"]["include_usage"],
        true,
        "the gateway asks for usage"
    );

    let asked = gw
        .post(
            "/v1/chat/completions",
            json!({"model": "oa/m1", "stream": true, "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    let data = sse_data(&asked.text().await.unwrap());
    let usage: Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
    assert_eq!(usage["usage"]["total_tokens"], 18);
}

#[actix_rt::test]
async fn streams_are_incremental_and_a_client_that_leaves_cancels_upstream() {
    let gw = gateway("").await;
    let res = gw.chat("oa/hold", true).await;
    assert_eq!(res.status(), 200);
    let mut res = res;
    let first = tokio::time::timeout(Duration::from_secs(10), res.chunk())
        .await
        .expect("the first chunk arrives while the upstream holds the rest")
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&first).contains("echo: "));
    gw.oa.release();
    let mut rest = Vec::new();
    while let Some(chunk) = res.chunk().await.unwrap() {
        rest.extend_from_slice(&chunk);
    }
    assert!(String::from_utf8_lossy(&rest).contains("[DONE]"));

    // Now one that the client abandons while the upstream is still sending.
    let mut res = gw.chat("oa/endless", true).await;
    res.chunk().await.unwrap().unwrap();
    drop(res);
    let mut waited = 0;
    while gw.oa.cancelled() == 0 && waited < 100 {
        actix_rt::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
    }
    assert_eq!(gw.oa.cancelled(), 1, "the upstream request was cancelled");
}

#[actix_rt::test]
async fn messages_reach_anthropic_natively_and_openai_providers_translated() {
    let gw = gateway("").await;
    let msg = |model: &str, stream: bool| {
        json!({"model": model, "max_tokens": 64, "stream": stream, "system": "be brief",
               "messages": [{"role": "user", "content": "hi there"}]})
    };
    let res = reqwest::Client::new()
        .post(format!("{}/v1/messages", gw.app.url))
        .header("x-api-key", &gw.token)
        .header("anthropic-version", "2023-06-01")
        .json(&msg("an/claude-x", false))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["content"][0]["text"], "echo: hi there");
    let seen = gw.an.last();
    assert_eq!(
        (seen.path.as_str(), &seen.body["model"]),
        ("/v1/messages", &json!("claude-x"))
    );
    assert_eq!(seen.header("x-api-key"), Some("sk-ant-upstream"));
    assert_eq!(seen.header("anthropic-version"), Some("2023-06-01"));
    assert!(seen.header("authorization").is_none());

    // To an OpenAI-compatible provider: translated both ways.
    let body: Value = gw
        .post("/v1/messages", msg("oa/m1", false))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["type"], "message");
    assert_eq!(body["content"][0]["text"], "echo: hi there");
    assert_eq!(body["usage"]["input_tokens"], 11);
    let seen = gw.oa.last();
    assert_eq!(
        seen.body["messages"][0],
        json!({"role": "system", "content": "be brief"})
    );

    for model in ["an/claude-x", "oa/m1"] {
        let text = gw
            .post("/v1/messages", msg(model, true))
            .await
            .text()
            .await
            .unwrap();
        let events: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("event: "))
            .collect();
        assert_eq!(events.first(), Some(&"message_start"), "{model}: {text}");
        assert_eq!(events.last(), Some(&"message_stop"), "{model}: {text}");
        let said: String = sse_data(&text)
            .iter()
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .filter_map(|v| v["delta"]["text"].as_str().map(str::to_owned))
            .collect();
        assert_eq!(said, "echo: hi there", "{model}");
    }
}

#[actix_rt::test]
async fn chat_reaches_an_anthropic_provider_translated() {
    let gw = gateway("").await;
    let body: Value = gw.chat("an/claude-x", false).await.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["message"]["content"], "echo: hi there");
    assert_eq!(body["usage"]["prompt_tokens"], 13);
    let seen = gw.an.last();
    assert_eq!(seen.path, "/v1/messages");
    assert!(seen.body["max_tokens"].as_u64().unwrap() > 0);

    let data = sse_data(&gw.chat("an/claude-x", true).await.text().await.unwrap());
    assert_eq!(data.last().unwrap(), "[DONE]");
    let text: String = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(text, "echo: hi there");
}

#[actix_rt::test]
async fn embeddings_pass_through_and_anthropic_offers_none() {
    let gw = gateway("").await;
    let res = gw
        .post(
            "/v1/embeddings",
            json!({"model": "oa/m1", "input": "hello"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["data"][0]["embedding"], json!([0.25, -0.5, 1.0]));
    assert_eq!(gw.oa.last().path, "/v1/embeddings");
    let res = gw
        .post(
            "/v1/embeddings",
            json!({"model": "an/claude-x", "input": "hello"}),
        )
        .await;
    assert_eq!(error_code(res).await, (400, "model_not_supported".into()));
}

#[actix_rt::test]
async fn models_list_only_what_the_principal_may_call() {
    let gw = gateway("[models]\ndefault = \"oa/m1\"\n[models.aliases]\nfast = [\"oa/m1\", \"an/claude-x\"]\nghost = [\"zz/none\"]").await;
    let (all, ids) = gw.models(&gw.token).await;
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    assert!(
        ids.contains(&"oa/m1")
            && ids.contains(&"an/claude-x")
            && ids.contains(&"fast")
            && ids.contains(&"default")
    );
    assert!(
        !ids.contains(&"ghost"),
        "an alias of unknown models is not offered"
    );
    assert_eq!(all["data"][0]["object"], "model");

    let narrow = gw
        .app
        .token(json!({"name": "narrow", "models": ["an/*"]}))
        .await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, ids) = gw.models(&narrow).await;
    assert_eq!(ids, ["an/claude-x", "an/hold"]);
    let res = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", gw.app.url))
        .bearer_auth(&narrow)
        .json(&json!({"model": "oa/m1", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(res).await, (403, "model_not_allowed".into()));
    // The denial is in the audit log.
    gw.app.add_user("admin", PW, true).await;
    let admin = client();
    gw.app.login_with(&admin, "admin", PW).await;
    let audit: Value = gw
        .app
        .get_with(&admin, "/admin/api/audit?action=policy.deny")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(audit["data"].as_array().unwrap().len(), 1, "{audit}");
    assert_eq!(audit["data"][0]["target"], "oa/m1");
    assert_eq!(audit["data"][0]["actor_name"], "alice");
    let default: Value = gw.chat("default", false).await.json().await.unwrap();
    assert_eq!(
        default["choices"][0]["message"]["content"],
        "echo: hi there"
    );
}

#[actix_rt::test]
async fn bad_requests_get_clear_errors() {
    let gw = gateway("[server]\nmax_api_body_bytes = 4096").await;
    assert_eq!(
        error_code(gw.chat("oa/nope", false).await).await,
        (404, "model_not_found".into())
    );
    assert_eq!(
        error_code(gw.chat("nope", false).await).await,
        (404, "model_not_found".into())
    );
    let res = gw
        .post("/v1/chat/completions", json!({"messages": []}))
        .await;
    assert_eq!(error_code(res).await.0, 400);
    let res = gw.post("/v1/chat/completions", json!({"model": 7})).await;
    assert_eq!(error_code(res).await.0, 400);
    let res = gw.post("/v1/chat/completions", json!([1, 2])).await;
    assert_eq!(error_code(res).await.0, 400);
    let res = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", gw.app.url))
        .bearer_auth(&gw.token)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(res).await, (400, "invalid_json".into()));
    let big = "x".repeat(5000);
    let res = gw
        .post(
            "/v1/chat/completions",
            json!({"model": "oa/m1", "messages": [{"role": "user", "content": big}]}),
        )
        .await;
    assert_eq!(error_code(res).await.0, 413);
    let res = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", gw.app.url))
        .json(&json!({"model": "oa/m1", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let read_only = gw
        .app
        .token(json!({"name": "ro", "scopes": ["read"]}))
        .await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", gw.app.url))
        .bearer_auth(&read_only)
        .json(&json!({"model": "oa/m1", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(res).await, (403, "insufficient_scope".into()));
    // An Anthropic request that cannot be translated is the client's error.
    let res = gw
        .post(
            "/v1/messages",
            json!({"model": "oa/m1", "messages": "nope", "max_tokens": 5}),
        )
        .await;
    assert_eq!(error_code(res).await.0, 400);
    assert_eq!(gw.oa.calls(), 0, "nothing bad went upstream");
}

#[actix_rt::test]
async fn usage_is_recorded_per_user_and_model_and_reported_to_admins() {
    let gw = gateway("").await;
    for _ in 0..2 {
        assert_eq!(gw.chat("oa/m1", false).await.status(), 200);
    }
    let _ = gw.chat("oa/m1", true).await.text().await;
    let _ = gw.post("/v1/messages", json!({"model": "an/claude-x", "max_tokens": 9, "messages": [{"role": "user", "content": "x"}], "stream": true})).await.text().await;
    assert_eq!(error_code(gw.chat("oa/fail-500", false).await).await.0, 502);

    let admin = client();
    gw.app.add_user("admin", PW, true).await;
    assert_eq!(gw.app.login_with(&admin, "admin", PW).await.status(), 200);
    let res = gw
        .app
        .get_with(&admin, "/admin/api/usage?user=alice&bucket=60")
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    let row = |model: &str| {
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["model"] == model)
            .cloned()
            .unwrap()
    };
    let m1 = row("oa/m1");
    assert_eq!(
        (
            m1["requests"].as_u64(),
            m1["prompt_tokens"].as_u64(),
            m1["completion_tokens"].as_u64()
        ),
        (Some(3), Some(33), Some(21))
    );
    assert_eq!(m1["user"], "alice");
    assert!(m1["user_id"].is_string());
    let an = row("an/claude-x");
    assert_eq!(
        (
            an["prompt_tokens"].as_u64(),
            an["completion_tokens"].as_u64()
        ),
        (Some(13), Some(5))
    );
    assert_eq!(row("oa/fail-500")["requests"], 1);
    assert_eq!(body["totals"]["requests"], 5);
    assert_eq!(body["totals"]["total_tokens"], 33 + 21 + 18);
    assert_eq!(body["series"][0]["requests"], 5);
    let none: Value = gw
        .app
        .get_with(&admin, "/admin/api/usage?user=bob")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(none["totals"]["requests"], 0);
    let bad = gw
        .app
        .get_with(&admin, "/admin/api/usage?since=yesterday")
        .await;
    assert_eq!(error_code(bad).await.0, 422);
    let forbidden = gw.app.get("/admin/api/usage").await;
    assert_eq!(forbidden.status(), 403);
}

#[actix_rt::test]
async fn discovered_models_are_refreshed_and_a_failed_refresh_keeps_the_last_list() {
    let disc = FakeLlm::openai(&["alpha"]);
    let gw = gateway(&format!(
        "\n[providers.disc]\nbase_url = \"{}\"\napi_key = \"sk-disc\"\nlocal = true\n\n[models]\nrefresh_interval = \"1s\"\n",
        disc.url
    ))
    .await;
    let listed = || async {
        let (_, ids) = gw.models(&gw.token).await;
        ids.into_iter()
            .filter(|id| id.starts_with("disc/"))
            .collect::<Vec<_>>()
    };
    let lists_asked = || {
        disc.seen()
            .iter()
            .filter(|s| s.path == "/v1/models")
            .count()
    };
    // Refreshes come every second.
    let until_listed = |want: &'static [&'static str]| async move {
        let what = format!("the model list is {want:?}");
        eventually(&what, move || async move { listed().await == want }).await
    };
    until_listed(&["disc/alpha"]).await;
    assert_eq!(gw.chat("disc/gamma", false).await.status(), 404);

    disc.set_models(Some(&["alpha", "gamma"]));
    until_listed(&["disc/alpha", "disc/gamma"]).await;
    let res = gw.chat("disc/gamma", false).await;
    assert_eq!(res.status(), 200);
    assert_eq!(disc.last().body["model"], "gamma");

    // The provider's list fails: two more refreshes keep the last list.
    disc.set_models(None);
    let asked = lists_asked();
    eventually("the list is asked twice more", || async {
        lists_asked() >= asked + 2
    })
    .await;
    assert_eq!(listed().await, ["disc/alpha", "disc/gamma"]);
    assert_eq!(gw.chat("disc/gamma", false).await.status(), 200);

    // A model the provider drops goes from the list and from routing.
    disc.set_models(Some(&["gamma"]));
    until_listed(&["disc/gamma"]).await;
    let res = gw.chat("disc/alpha", false).await;
    assert_eq!(error_code(res).await, (404, "model_not_found".to_owned()));
}

#[actix_rt::test]
async fn keys_come_from_the_conventional_variable_and_models_from_discovery() {
    let disc = FakeLlm::openai(&["alpha", "beta"]);
    let toml = format!(
        "[providers.groq]\nbase_url = \"{}\"\nlocal = true\n\n[providers.keyless]\nbase_url = \"https://api.keyless.example/v1\"\nmodels = [\"k\"]\n",
        disc.url
    );
    let app = spawn_toml(&toml, &[("GROQ_API_KEY", "gsk-from-env")]).await;
    app.add_user("alice", PW, false).await;
    app.login("alice", PW).await;
    let body: Value = app.get("/v1/models").await.json().await.unwrap();
    let ids: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["groq/alpha", "groq/beta"],
        "discovered; the keyless provider is not offered"
    );
    assert_eq!(
        disc.last().header("authorization"),
        Some("Bearer gsk-from-env")
    );
    let res = app
        .post_json(
            "/v1/chat/completions",
            json!({"model": "groq/beta", "messages": [{"role": "user", "content": "yo"}]}),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(disc.last().body["model"], "beta");
}
