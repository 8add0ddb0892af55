//! The model API when providers misbehave: fallback, the circuit breaker,
//! timeouts, sanitized errors, and the egress policy at load and at request
//! time.

use crate::gateway::{gateway, sse_data};
use crate::helpers::*;
use crate::upstream::FakeLlm;
use serde_json::Value;

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[actix_rt::test]
async fn aliases_fall_back_on_5xx_429_and_unreachable_providers() {
    let port = closed_port();
    let gw = gateway(&format!(
        "[providers.gone]\nbase_url = \"http://127.0.0.1:{port}/v1\"\napi_key = \"k\"\nmodels = [\"m\"]\nlocal = true\n\
         [models.aliases]\nafter500 = [\"oa/fail-500\", \"an/claude-x\"]\nafter429 = [\"oa/rate-429\", \"oa/m1\"]\n\
         aftergone = [\"gone/m\", \"oa/m1\"]\nnone-left = [\"oa/fail-500\", \"gone/m\"]\nonly429 = [\"oa/rate-429\"]"
    ))
    .await;
    for alias in ["after500", "after429", "aftergone"] {
        let res = gw.chat(alias, false).await;
        assert_eq!(res.status(), 200, "{alias}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(
            body["choices"][0]["message"]["content"], "echo: hi there",
            "{alias}"
        );
    }
    // Streams fall back too, as long as nothing has been sent.
    let data = sse_data(&gw.chat("after500", true).await.text().await.unwrap());
    assert_eq!(data.last().unwrap(), "[DONE]");

    let res = gw.chat("none-left", false).await;
    assert_eq!(res.status(), 502);
    let text = res.text().await.unwrap();
    let err: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(err["error"]["code"], "upstream_error");
    for secret in [
        "127.0.0.1",
        &port.to_string(),
        "10.1.2.3",
        "sk-upstream",
        "boom",
        &gw.oa.url,
    ] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    let res = gw.chat("only429", false).await;
    assert_eq!(res.status(), 429);
    assert_eq!(res.headers()["retry-after"], "7");
    assert_eq!(error_code(res).await.1, "rate_limit_exceeded");
}

#[actix_rt::test]
async fn upstream_4xx_is_passed_on_in_openai_shape_without_the_key() {
    let gw = gateway("").await;
    let res = gw.chat("oa/bad-400", false).await;
    assert_eq!(res.status(), 400);
    let text = res.text().await.unwrap();
    let err: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(err["error"]["code"], "context_length_exceeded");
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("max_tokens is too large"));
    assert!(!text.contains("sk-upstream"), "{text}");
}

#[actix_rt::test]
async fn the_circuit_opens_after_failures_and_probes_after_the_cooldown() {
    let flaky = FakeLlm::openai(&["fail-500"]);
    let gw = gateway(&format!(
        "[providers.fl]\nbase_url = \"{}\"\napi_key = \"k\"\nmodels = [\"fail-500\"]\nlocal = true\ncircuit_failures = 2\ncircuit_cooldown = \"30s\"\n\
         [models.aliases]\nsafe = [\"fl/fail-500\", \"oa/m1\"]",
        flaky.url
    ))
    .await;
    for expected_calls in [1, 2, 2, 2] {
        assert_eq!(gw.chat("safe", false).await.status(), 200);
        assert_eq!(
            flaky.calls(),
            expected_calls,
            "calls to the failing provider"
        );
    }
    gw.app.clock.advance(time::Duration::seconds(31));
    assert_eq!(gw.chat("safe", false).await.status(), 200);
    assert_eq!(flaky.calls(), 3, "one probe after the cooldown");
    assert_eq!(gw.chat("safe", false).await.status(), 200);
    assert_eq!(flaky.calls(), 3, "the failed probe opened it again");
    assert_eq!(
        gw.chat("fl/fail-500", false).await.status(),
        502,
        "no fallback: a clean 502"
    );
}

#[actix_rt::test]
async fn timeouts_end_slow_calls_and_stalled_streams() {
    let gw = gateway("[models.aliases]\nslowthenok = [\"oa/slow\", \"an/claude-x\"]").await;
    // first_byte_timeout is 1 s; `slow` answers after 3 s.
    let res = gw.chat("oa/slow", false).await;
    assert_eq!(error_code(res).await, (502, "upstream_error".into()));
    assert_eq!(
        gw.chat("slowthenok", false).await.status(),
        200,
        "a timeout falls back"
    );
    // `stall` sends one chunk, then nothing for 5 s: the stream ends with an error event.
    let res = gw.chat("oa/stall", true).await;
    assert_eq!(res.status(), 200);
    let data = sse_data(&res.text().await.unwrap());
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_error");
}

#[test]
fn the_egress_policy_refuses_forbidden_providers_at_load() {
    let load = |provider: &str, egress: &str| {
        config_from_toml(&format!(
            "[providers.p]\n{provider}\napi_key = \"k\"\nmodels = [\"m\"]\n[egress]\n{egress}"
        ))
    };
    let refused = |provider: &str, egress: &str| {
        let err = load(provider, egress).expect_err("refused").to_string();
        assert!(err.contains("providers.p.base_url"), "{err}");
        err
    };
    refused(
        "base_url = \"http://169.254.169.254/v1\"\nlocal = true",
        "allow_private = true",
    );
    refused(
        "base_url = \"http://metadata.google.internal/v1\"\nlocal = true",
        "",
    );
    refused("base_url = \"http://[fe80::1]/v1\"", "allow_private = true");
    refused("base_url = \"http://127.0.0.1:9/v1\"", "");
    refused("base_url = \"https://10.0.0.7/v1\"", "");
    refused("base_url = \"http://203.0.113.9/v1\"", "");
    refused(
        "base_url = \"https://api.evil.example/v1\"",
        "deny_hosts = [\"*.evil.example\"]",
    );
    refused(
        "base_url = \"https://api.other.example/v1\"",
        "allow_hosts = [\"api.openai.com\"]",
    );
    assert!(load("base_url = \"http://127.0.0.1:9/v1\"\nlocal = true", "").is_ok());
    assert!(load("base_url = \"https://10.0.0.7/v1\"", "allow_private = true").is_ok());
    assert!(load(
        "base_url = \"https://api.openai.com/v1\"",
        "allow_hosts = [\"api.openai.com\"]"
    )
    .is_ok());
}

#[actix_rt::test]
async fn a_name_that_resolves_to_a_forbidden_address_is_refused_at_request_time() {
    // `localhost` is a name, so the config passes; it resolves to loopback,
    // which a provider without `local = true` may not reach.
    let fake = FakeLlm::openai(&["m"]);
    let port = fake
        .url
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches("/v1")
        .to_owned();
    let gw = gateway(&format!(
        "[providers.sneaky]\nbase_url = \"http://localhost:{port}/v1\"\napi_key = \"k\"\nmodels = [\"m\"]\n\
         [providers.named]\nbase_url = \"http://localhost:{port}/v1\"\napi_key = \"k\"\nmodels = [\"m\"]\nlocal = true\n"
    ))
    .await;
    let res = gw.chat("sneaky/m", false).await;
    assert_eq!(error_code(res).await, (502, "upstream_error".into()));
    assert_eq!(fake.calls(), 0, "no connection was made");
    assert_eq!(
        gw.chat("named/m", false).await.status(),
        200,
        "the same name is fine for a local provider"
    );
    assert_eq!(fake.calls(), 1);
}
