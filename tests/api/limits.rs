//! Rate limits and budgets: requests and tokens per minute and a spend
//! budget, per user and per token, from config defaults and per-subject
//! overrides; on sled in one process and on PostgreSQL shared by two
//! instances (exact: N instances never grant more than the limit).

use crate::gateway::{gateway, Gw};
use crate::helpers::*;
use crate::postgres::{eventually, pg_url, schema, serve_config};
use crate::upstream::FakeLlm;
use serde_json::{json, Value};

async fn chat_with(gw: &Gw, body: Value) -> reqwest::Response {
    gw.post("/v1/chat/completions", body).await
}

fn hi(max_tokens: u64) -> Value {
    json!({"model": "oa/m1", "max_tokens": max_tokens, "messages": [{"role": "user", "content": "hi"}]})
}

async fn admin(gw: &Gw) -> reqwest::Client {
    gw.app.add_user("root", PW, true).await;
    let c = client();
    assert_eq!(gw.app.login_with(&c, "root", PW).await.status(), 200);
    c
}

async fn usage_limits(gw: &Gw, c: &reqwest::Client, user: &str) -> Value {
    let v: Value = c
        .get(format!("{}/admin/api/usage?user={user}", gw.app.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v
}

#[actix_rt::test]
async fn a_tokens_requests_per_minute_are_limited_until_the_window_ends() {
    let gw = gateway("[limits.token]\nrpm = 3").await;
    for i in 0..3 {
        assert_eq!(gw.chat("oa/m1", false).await.status(), 200, "call {i}");
    }
    let res = gw.chat("oa/m1", true).await;
    assert_eq!(res.status(), 429);
    let wait: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "requests_per_minute_exceeded");
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("this token's requests-per-minute limit (3)"));
    let calls = gw.oa.calls();
    assert_eq!(gw.chat("oa/m1", false).await.status(), 429);
    assert_eq!(gw.oa.calls(), calls, "a refused call never goes upstream");
    // Another token of the same user has its own count; the user has none.
    let other = gw.app.token(json!({"name": "second"})).await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", gw.app.url))
        .bearer_auth(&other)
        .json(&hi(5))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // The next minute starts afresh.
    gw.app.clock.advance(time::Duration::seconds(61));
    assert_eq!(gw.chat("oa/m1", false).await.status(), 200);
}

#[actix_rt::test]
async fn tokens_per_minute_reserve_the_estimate_and_settle_with_real_usage() {
    let gw = gateway("[limits.user]\ntpm = 600").await;
    let c = admin(&gw).await;
    // One request estimated above the whole limit is refused, saying so.
    let res = chat_with(&gw, hi(700)).await;
    assert_eq!(res.status(), 429);
    let err: Value = res.json().await.unwrap();
    assert_eq!(err["error"]["code"], "tokens_per_minute_exceeded");
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("lower max_tokens"));
    // A request within it is served; its reservation settles to what the
    // fake upstream reports (11 + 7 tokens).
    assert_eq!(chat_with(&gw, hi(500)).await.status(), 200);
    eventually("the reservation settles to real usage", || async {
        usage_limits(&gw, &c, "alice").await["limits"]["current"]["tpm"]["used"] == 18.0
    })
    .await;
    let v = usage_limits(&gw, &c, "alice").await;
    assert_eq!(v["limits"]["current"]["tpm"]["limit"], 600);
    assert_eq!(
        v["limits"]["subject"].as_str().unwrap().split(':').next(),
        Some("user")
    );
    // 18 used + an estimate of about 500 fits; then it does not.
    assert_eq!(chat_with(&gw, hi(500)).await.status(), 200);
    eventually("settled again", || async {
        usage_limits(&gw, &c, "alice").await["limits"]["current"]["tpm"]["used"] == 36.0
    })
    .await;
    assert_eq!(chat_with(&gw, hi(560)).await.status(), 429);
    // Streams settle too (with the usage the gateway asked upstream for).
    let res = chat_with(&gw, json!({"model": "oa/m1", "stream": true, "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]})).await;
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("[DONE]"));
    eventually("the stream settles", || async {
        usage_limits(&gw, &c, "alice").await["limits"]["current"]["tpm"]["used"] == 54.0
    })
    .await;
}

#[actix_rt::test]
async fn a_spend_budget_is_priced_from_the_table_and_enforced() {
    // A token costs 1.0 either way, so a call of 11 + 7 tokens costs 18.
    let gw = gateway("[prices]\n\"oa/m1\" = { input = 1000000.0, output = 1000000.0 }\n[limits.user]\nbudget = 70.0\nbudget_period = \"1d\"").await;
    let c = admin(&gw).await;
    let spent = || async {
        usage_limits(&gw, &c, "alice").await["limits"]["current"]["spend"]["used"]
            .as_f64()
            .unwrap()
    };
    let mut served = 0;
    for _ in 0..5 {
        let res = chat_with(&gw, hi(10)).await;
        if res.status() == 429 {
            let err: Value = res.json().await.unwrap();
            assert_eq!(err["error"]["code"], "budget_exceeded");
            break;
        }
        assert_eq!(res.status(), 200);
        served += 1;
        let want = 18.0 * served as f64;
        eventually("the spend settles", || async {
            (spent().await - want).abs() < 1e-9
        })
        .await;
    }
    // 18 per call, an estimate of about 20 + 10 reserved before each: 3 fit in 70.
    assert_eq!(served, 3, "served {served}");
    assert_eq!(spent().await, 54.0);
    let v = usage_limits(&gw, &c, "alice").await;
    assert_eq!(v["totals"]["cost"], 54.0, "usage records carry the price");
    // The next budget period starts afresh.
    gw.app.clock.advance(time::Duration::days(1));
    assert_eq!(chat_with(&gw, hi(10)).await.status(), 200);
}

#[actix_rt::test]
async fn overrides_per_user_and_token_through_the_admin_api() {
    let gw = gateway("").await;
    let c = admin(&gw).await;
    let put = |path: &str, body: Value| {
        let (c, url) = (c.clone(), format!("{}/admin/api/limits/{path}", gw.app.url));
        async move { c.put(url).json(&body).send().await.unwrap() }
    };
    assert_eq!(
        chat_with(&gw, hi(5)).await.status(),
        200,
        "no limits by default"
    );
    let res = put("users/alice", json!({"rpm": 1, "budget_period": "1d"})).await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["limits"]["rpm"], 1);
    assert_eq!(v["limits"]["budget_period"], 86_400);
    assert_eq!(v["override"], json!({"rpm": 1, "budget_period": 86_400}));
    gw.app.clock.advance(time::Duration::seconds(60));
    assert_eq!(chat_with(&gw, hi(5)).await.status(), 200);
    let res = chat_with(&gw, hi(5)).await;
    assert_eq!(
        error_code(res).await,
        (429, "requests_per_minute_exceeded".into())
    );
    let list: Value = c
        .get(format!("{}/admin/api/limits", gw.app.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!(list["defaults"]["user"]["rpm"], 0);
    let res = c
        .delete(format!("{}/admin/api/limits/users/alice", gw.app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(
        chat_with(&gw, hi(5)).await.status(),
        200,
        "back to the defaults"
    );

    // A token's own limit.
    let tokens: Value = c
        .get(format!("{}/admin/api/tokens?user=alice", gw.app.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = tokens["data"].as_array().or(tokens.as_array()).unwrap()[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        put(&format!("tokens/{id}"), json!({"tpm": 10}))
            .await
            .status(),
        200
    );
    assert_eq!(
        error_code(chat_with(&gw, hi(50)).await).await,
        (429, "tokens_per_minute_exceeded".into())
    );

    // Bad requests.
    assert_eq!(put("users/nobody", json!({"rpm": 1})).await.status(), 404);
    assert_eq!(put("tokens/nope", json!({"rpm": 1})).await.status(), 404);
    assert_eq!(put("groups/x", json!({"rpm": 1})).await.status(), 404);
    assert_eq!(
        put("users/alice", json!({"budget": -1})).await.status(),
        422
    );
    assert_eq!(
        put("users/alice", json!({"budget_period": "soon"}))
            .await
            .status(),
        422
    );
    assert_eq!(put("users/alice", json!({"rpm": -1})).await.status(), 400);
    assert_eq!(put("users/alice", json!({"qps": 1})).await.status(), 400);
    // Only admins.
    let res = reqwest::Client::new()
        .put(format!("{}/admin/api/limits/users/alice", gw.app.url))
        .bearer_auth(&gw.token)
        .json(&json!({"rpm": 1000}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let audit: Value = c
        .get(format!("{}/admin/api/audit", gw.app.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let text = audit.to_string();
    assert!(
        text.contains("limits.set") && text.contains("limits.clear"),
        "{text}"
    );
}

/// Two instances on one PostgreSQL database share one limit exactly, even
/// when the calls race.
#[actix_rt::test]
async fn two_instances_share_one_limit_exactly() {
    use gatehouse_actors::store::PgStore;
    use std::sync::Arc;
    let fake = FakeLlm::openai(&["m1"]);
    let schema = schema("gh_lim");
    let toml = format!(
        "[providers.oa]\nbase_url = \"{}\"\napi_key = \"k\"\nmodels = [\"m1\"]\nlocal = true\n[limits.user]\nrpm = 7\n",
        fake.url
    );
    let a_store = Arc::new(PgStore::connect(&pg_url(), Some(&schema)).await.unwrap());
    let b_store = Arc::new(PgStore::connect(&pg_url(), Some(&schema)).await.unwrap());
    let (a, a_url) = serve_config(config_from_toml(&toml).unwrap(), a_store.clone()).await;
    let (_b, b_url) = serve_config(config_from_toml(&toml).unwrap(), b_store).await;
    let actor = gatehouse::accounts::Actor::cli();
    gatehouse::accounts::add_user(&a.data(), &actor, "alice", PW, false, false)
        .await
        .unwrap();
    let c = client();
    let res = c
        .post(format!("{a_url}/auth/login"))
        .json(&json!({"username": "alice", "password": PW}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let token = c
        .post(format!("{a_url}/api/tokens"))
        .json(&json!({"name": "t"}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    // Keep the burst inside one minute window.
    let second = time::OffsetDateTime::now_utc().second();
    if second > 45 {
        tokio::time::sleep(std::time::Duration::from_secs(u64::from(61 - second))).await;
    }
    let calls = (0..20).map(|i| {
        let url = if i % 2 == 0 {
            a_url.clone()
        } else {
            b_url.clone()
        };
        let token = token.clone();
        async move {
            let mut last = 0;
            for _ in 0..100 {
                let res = reqwest::Client::new()
                    .post(format!("{url}/v1/chat/completions"))
                    .bearer_auth(&token)
                    .json(&hi(5))
                    .send()
                    .await
                    .unwrap();
                last = res.status().as_u16();
                // B may not know the token for a moment after A made it.
                if last != 401 {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            last
        }
    });
    let statuses = futures_util::future::join_all(calls).await;
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(
        ok, 7,
        "exactly the limit across both instances: {statuses:?}"
    );
    assert_eq!(ok + limited, 20, "{statuses:?}");
    assert_eq!(fake.calls(), ok, "refused calls never went upstream");
    a_store.drop_schema().await.unwrap();
}

#[actix_rt::test]
async fn the_cli_sets_shows_and_clears_limits() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let _server = Server::start(&home, &[]);
    cli_ok(
        &home,
        &["users", "add", "alice", "--password-stdin"],
        Some(PW),
    );
    let set = cli_ok(
        &home,
        &[
            "limits", "set", "--user", "alice", "--rpm", "2", "--budget", "5", "--period", "1d",
        ],
        None,
    );
    assert!(
        set.starts_with("user:") && set.contains("rpm: 0/2") && set.contains("per 86400s"),
        "{set}"
    );
    let all = cli_ok(&home, &["limits", "show"], None);
    assert!(
        all.contains("defaults for users  rpm: 0") && all.contains("rpm: 0/2"),
        "{all}"
    );
    let bad = cli(
        &home,
        &["limits", "set", "--user", "nobody", "--rpm", "1"],
        None,
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no such user"));
    let both = cli(
        &home,
        &[
            "limits", "set", "--user", "alice", "--token", "x", "--rpm", "1",
        ],
        None,
    );
    assert!(!both.status.success());
    let out = cli(&home, &["limits", "clear", "--user", "alice"], None);
    assert!(out.status.success());
    assert!(cli_ok(&home, &["limits", "show", "--user", "alice"], None).contains("rpm: 0/0"));
}
