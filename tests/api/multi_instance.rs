//! Several instances on one PostgreSQL database, as behind a load balancer:
//! a GitHub sign-in started on one finishes on another, one idempotency key
//! makes one task whichever instances get it, and a task whose instance is
//! killed is finished by another.

use crate::fakes::FakeGithubOauth;
use crate::helpers::*;
use crate::postgres::{eventually, pg_url, schema, serve_config};
use crate::upstream::FakeLlm;
use gatehouse::accounts::{add_user, Actor};
use gatehouse_actors::store::{PgStore, Store};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

fn location(res: &reqwest::Response) -> String {
    res.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Starts a GitHub sign-in on `start` with `browser` and plays GitHub:
/// answers the callback URL GitHub sends the browser back to, on `finish`.
async fn github_round_trip(browser: &reqwest::Client, start: &str, finish: &str) -> String {
    let res = browser
        .get(format!("{start}/auth/github?next=/account"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 302);
    assert!(set_cookie(&res).starts_with("gatehouse_oauth="));
    let res = browser.get(location(&res)).send().await.unwrap();
    assert_eq!(res.status(), 302, "the fake GitHub authorizes");
    location(&res).replace("http://gateway.invalid", finish)
}

async fn me(browser: &reqwest::Client, url: &str) -> reqwest::Response {
    browser
        .get(format!("{url}/account/api/me"))
        .send()
        .await
        .unwrap()
}

#[actix_web::test]
async fn a_github_sign_in_started_on_one_instance_finishes_on_another() {
    let gh = FakeGithubOauth::start();
    let config = config_from_toml(&gh.config("")).unwrap();
    let schema = schema("gh_oauth");
    let a_store = Arc::new(PgStore::connect(&pg_url(), Some(&schema)).await.unwrap());
    let b_store = Arc::new(PgStore::connect(&pg_url(), Some(&schema)).await.unwrap());
    let (_a, a_url) = serve_config(config.clone(), a_store.clone()).await;
    let (_b, b_url) = serve_config(config, b_store).await;

    // Started on A, finished on B (the browser's cookies go to both: one host).
    let browser = client();
    let callback = github_round_trip(&browser, &a_url, &b_url).await;
    let res = browser.get(&callback).send().await.unwrap();
    assert_eq!(res.status(), 302, "{:?}", res.text().await);
    assert_eq!(location(&res), "/account");
    let token = session_token(&res).expect("a session cookie from B");
    assert!(!location(&res).contains(&token));
    let on_b: Value = me(&browser, &b_url).await.json().await.unwrap();
    assert_eq!(on_b["username"], "octocat");
    assert_eq!(on_b["auth"], "github");
    eventually("the session made on B is valid on A", || {
        let (c, url) = (browser.clone(), a_url.clone());
        async move { me(&c, &url).await.status() == 200 }
    })
    .await;

    // The state was used on B: replayed on A (or B again) it is refused.
    for url in [&a_url, &b_url] {
        let replay = callback.replace(&b_url, url);
        let (status, code) = error_code(browser.get(&replay).send().await.unwrap()).await;
        assert_eq!((status, code.as_str()), (400, "invalid_state"), "{url}");
    }

    // Another browser cannot finish a flow started elsewhere, on either
    // instance, and its attempt burns the state for the rightful browser.
    let rightful = client();
    let callback = github_round_trip(&rightful, &b_url, &a_url).await;
    let (status, code) = error_code(client().get(&callback).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (400, "invalid_state"));
    let (status, code) = error_code(rightful.get(&callback).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (400, "invalid_state"));
    assert_eq!(me(&rightful, &a_url).await.status(), 401);

    // Started on B, finished on A: the same GitHub user, not a second one.
    let callback = github_round_trip(&rightful, &b_url, &a_url).await;
    assert_eq!(rightful.get(&callback).send().await.unwrap().status(), 302);
    let on_a: Value = me(&rightful, &a_url).await.json().await.unwrap();
    assert_eq!(on_a["id"], on_b["id"]);
    let users = a_store.load_users().await.unwrap();
    assert_eq!(users.len(), 1, "one user for one GitHub account");
    a_store.drop_schema().await.unwrap();
}

/// Two gateways on one schema, with a token of alice's that works on both.
struct Pair {
    _gateways: (gatehouse::Gatehouse, gatehouse::Gatehouse),
    a_url: String,
    b_url: String,
    token: String,
    store: Arc<PgStore>,
}

/// Two gateways on one fresh schema with the fake provider `oa`.
async fn two_gateways(fake: &FakeLlm, schema: &str) -> Pair {
    let config = config_from_toml(&format!(
        "[providers.oa]\nbase_url = \"{}\"\napi_key = \"sk-upstream\"\nmodels = [\"m1\"]\nlocal = true\n",
        fake.url
    ))
    .unwrap();
    let a_store = Arc::new(PgStore::connect(&pg_url(), Some(schema)).await.unwrap());
    let b_store = Arc::new(PgStore::connect(&pg_url(), Some(schema)).await.unwrap());
    let (a, a_url) = serve_config(config.clone(), a_store.clone()).await;
    let (b, b_url) = serve_config(config, b_store).await;
    add_user(&a.data(), &Actor::cli(), "alice", PW, false, false)
        .await
        .unwrap();
    let browser = client();
    let res = browser
        .post(format!("{a_url}/auth/login"))
        .json(&json!({"username": "alice", "password": PW}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let token: Value = browser
        .post(format!("{a_url}/api/tokens"))
        .json(&json!({"name": "ci"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["token"].as_str().unwrap().to_owned();
    eventually("A's token works on B", || {
        let (url, t) = (b_url.clone(), token.clone());
        async move {
            client()
                .get(format!("{url}/v1/tasks"))
                .bearer_auth(t)
                .send()
                .await
                .unwrap()
                .status()
                == 200
        }
    })
    .await;
    Pair {
        _gateways: (a, b),
        a_url,
        b_url,
        token,
        store: a_store,
    }
}

async fn create_task(url: &str, token: &str, key: &str, body: &Value) -> reqwest::Response {
    client()
        .post(format!("{url}/v1/tasks"))
        .bearer_auth(token)
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
        .unwrap()
}

fn chat(text: &str) -> Value {
    json!({"kind": "chat.completion", "input": {"model": "oa/m1", "messages": [{"role": "user", "content": text}]}})
}

#[actix_web::test]
async fn one_idempotency_key_sent_to_two_instances_at_once_makes_one_task() {
    let fake = FakeLlm::openai(&["m1"]);
    let schema = schema("gh_idem");
    let pair = two_gateways(&fake, &schema).await;
    let (a_url, b_url, token, store) = (&pair.a_url, &pair.b_url, &pair.token, &pair.store);

    const ROUNDS: usize = 8;
    let mut ids = Vec::new();
    for round in 0..ROUNDS {
        let key = format!("race-{round}");
        let body = chat(&format!("job {round}"));
        let (ra, rb) = futures_util::join!(
            create_task(a_url, token, &key, &body),
            create_task(b_url, token, &key, &body)
        );
        let mut named = Vec::new();
        for res in [ra, rb] {
            match res.status().as_u16() {
                202 => {
                    let t: Value = res.json().await.unwrap();
                    named.push(t["id"].as_str().unwrap().to_owned());
                }
                409 => assert_eq!(error_code(res).await.0, 409),
                other => panic!("round {round}: {other} {:?}", res.text().await),
            }
        }
        assert!(
            !named.is_empty(),
            "round {round}: one of them made the task"
        );
        assert!(
            named.windows(2).all(|w| w[0] == w[1]),
            "round {round}: both name one task: {named:?}"
        );
        // Each instance answers the key with that task from now on.
        for url in [a_url, b_url] {
            let res = create_task(url, token, &key, &body).await;
            assert_eq!(res.status(), 202);
            assert_eq!(res.headers()["idempotent-replayed"], "true");
            assert_eq!(res.json::<Value>().await.unwrap()["id"], named[0].as_str());
        }
        // The key holds its body on every instance.
        let res = create_task(b_url, token, &key, &chat("something else")).await;
        assert_eq!(
            error_code(res).await,
            (422, "idempotency_key_reused".into())
        );
        ids.push(named[0].clone());
    }

    // Exactly one task per key, in the database and in both lists; each
    // ran once.
    let stored = store.load_tasks().await.unwrap();
    assert_eq!(stored.len(), ROUNDS, "{stored:#?}");
    for url in [a_url, b_url] {
        let list: Value = client()
            .get(format!("{url}/v1/tasks"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let mut listed: Vec<String> = list["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_owned())
            .collect();
        listed.sort();
        let mut want = ids.clone();
        want.sort();
        assert_eq!(listed, want, "{url}");
    }
    eventually("every task has run", || {
        let store = store.clone();
        async move {
            store
                .load_tasks()
                .await
                .unwrap()
                .iter()
                .all(|t| t.status.as_str() == "succeeded")
        }
    })
    .await;
    for round in 0..ROUNDS {
        let calls = fake
            .seen()
            .iter()
            .filter(|s| s.body["messages"][0]["content"] == format!("job {round}"))
            .count();
        assert_eq!(calls, 1, "job {round} ran once");
    }
    store.drop_schema().await.unwrap();
}

async fn task_on(url: &str, token: &str, id: &str) -> Value {
    client()
        .get(format!("{url}/v1/tasks/{id}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Polls until the task has `status` on `url` (bounded), answering it.
async fn until_status(url: &str, token: &str, id: &str, status: &str, fake: &FakeLlm) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let t = task_on(url, token, id).await;
        if t["status"] == status {
            return t;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "task never {status}: {t}"
        );
        if status == "succeeded" {
            fake.release();
        }
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
}

#[actix_rt::test]
async fn a_task_of_an_instance_killed_mid_run_is_finished_by_another() {
    let fake = FakeLlm::openai(&["m1", "hold"]);
    let schema = schema("gh_kill");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gatehouse.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\nbackend = \"postgres\"\nurl = \"{}\"\nschema = \"{schema}\"\n\
             [providers.oa]\nbase_url = \"{}\"\napi_key = \"k\"\nmodels = [\"m1\", \"hold\"]\nlocal = true\n\
             [tasks]\nlease = \"4s\"\n",
            pg_url(),
            fake.url
        ),
    )
    .unwrap();
    let args = ["--config", config.to_str().unwrap()];
    let (home_a, home_b) = (dir.path().join("a"), dir.path().join("b"));
    let a = Server::start(&home_a, &args);
    cli_ok(
        &home_a,
        &[
            "users",
            "add",
            "alice",
            "--password-stdin",
            "--config",
            args[1],
        ],
        Some(PW),
    );
    let token = cli_ok(
        &home_a,
        &[
            "tokens", "issue", "--user", "alice", "--name", "t", "--config", args[1],
        ],
        None,
    )
    .trim()
    .to_owned();

    // A runs the task: the fake holds its answer.
    let res = create_task(&a.url, &token, "held", &json!({"kind": "chat.completion", "input": {"model": "oa/hold", "messages": [{"role": "user", "content": "held job"}]}})).await;
    assert_eq!(res.status(), 202, "{:?}", res.text().await);
    let id = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    until_status(&a.url, &token, &id, "running", &fake).await;
    let held_calls = || {
        fake.seen()
            .iter()
            .filter(|s| s.body["messages"][0]["content"] == "held job")
            .count()
    };
    assert_eq!(held_calls(), 1);

    // B sees it running and leaves it alone while A renews its claim.
    let b = Server::start(&home_b, &args);
    assert_eq!(task_on(&b.url, &token, &id).await["status"], "running");
    actix_rt::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(held_calls(), 1, "B took a live claim:\n{}", b.log());
    assert_eq!(task_on(&b.url, &token, &id).await["status"], "running");

    // A dies without a word; once its claim lapses B runs the task again.
    a.kill9();
    let t = until_status(&b.url, &token, &id, "succeeded", &fake).await;
    assert_eq!(
        t["result"]["choices"][0]["message"]["content"],
        "echo: held job"
    );
    assert_eq!(held_calls(), 2, "run by A, then once by B");
    let events = client()
        .get(format!("{}/v1/tasks/{id}/events", b.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        events.matches("\"status\":\"succeeded\"").count(),
        1,
        "finished once: {events}"
    );
    let list: Value = client()
        .get(format!("{}/v1/tasks", b.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    // The key still answers the same task, now from B.
    let res = create_task(&b.url, &token, "held", &json!({"kind": "chat.completion", "input": {"model": "oa/hold", "messages": [{"role": "user", "content": "held job"}]}})).await;
    assert_eq!(res.headers()["idempotent-replayed"], "true");
    assert_eq!(res.json::<Value>().await.unwrap()["id"], id.as_str());
    b.stop();
    PgStore::connect(&pg_url(), Some(&schema))
        .await
        .unwrap()
        .drop_schema()
        .await
        .unwrap();
}
