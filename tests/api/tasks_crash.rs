//! `kill -9` while tasks are queued and running and their keys are fresh:
//! after a restart the same key answers the same task, every acknowledged
//! task is there, and each one finishes exactly once.

use crate::helpers::*;
use crate::upstream::FakeLlm;
use serde_json::{json, Value};
use std::time::Duration;

async fn post(url: &str, token: &str, path: &str, key: &str, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{url}{path}"))
        .bearer_auth(token)
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn task(url: &str, token: &str, id: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{url}/v1/tasks/{id}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn body(model: &str, n: usize) -> Value {
    json!({"kind": "chat.completion", "input": {"model": model, "messages": [{"role": "user", "content": format!("job {n}")}]}})
}

#[actix_rt::test]
async fn tasks_survive_kill_9_and_each_finishes_exactly_once() {
    let fake = FakeLlm::openai(&["m1", "hold"]);
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("gatehouse.toml");
    std::fs::write(
        &config,
        format!(
            "[providers.oa]\nbase_url = \"{}\"\napi_key = \"k\"\nmodels = [\"m1\", \"hold\"]\nlocal = true\n[tasks]\nconcurrency = 2\n",
            fake.url
        ),
    )
    .unwrap();
    let args = ["--config", config.to_str().unwrap()];
    let server = Server::start(home.path(), &args);
    cli_ok(
        home.path(),
        &["users", "add", "alice", "--password-stdin"],
        Some(PW),
    );
    let token = cli_ok(
        home.path(),
        &["tokens", "issue", "--user", "alice", "--name", "t"],
        None,
    )
    .trim()
    .to_owned();

    // Two tasks hold both slots (running); three wait behind them (queued).
    let mut jobs = Vec::new();
    for (n, model) in ["oa/hold", "oa/hold", "oa/m1", "oa/m1", "oa/m1"]
        .iter()
        .enumerate()
    {
        let key = format!("key-{n}");
        let res = post(&server.url, &token, "/v1/tasks", &key, &body(model, n)).await;
        assert_eq!(res.status(), 202);
        let t: Value = res.json().await.unwrap();
        jobs.push((key, t["id"].as_str().unwrap().to_owned(), n, *model));
    }
    for (_, id, _, model) in &jobs {
        let want = if *model == "oa/hold" {
            "running"
        } else {
            "queued"
        };
        let mut status = String::new();
        for _ in 0..200 {
            status = task(&server.url, &token, id).await["status"]
                .as_str()
                .unwrap()
                .to_owned();
            if status == want {
                break;
            }
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(status, want, "{id}");
    }
    let m1_calls_before = fake
        .seen()
        .iter()
        .filter(|s| s.body["model"] == "m1")
        .count();
    assert_eq!(m1_calls_before, 0);
    server.kill9();

    let server = Server::start(home.path(), &args);
    // The same keys answer the same tasks.
    for (key, id, n, model) in &jobs {
        let res = post(&server.url, &token, "/v1/tasks", key, &body(model, *n)).await;
        assert_eq!(res.status(), 202);
        assert_eq!(res.headers()["idempotent-replayed"], "true");
        assert_eq!(res.json::<Value>().await.unwrap()["id"], id.as_str());
    }
    // Let the re-run holds go, then every task finishes.
    let mut done = 0;
    for _ in 0..400 {
        fake.release();
        done = 0;
        for (_, id, _, _) in &jobs {
            if task(&server.url, &token, id).await["status"] == "succeeded" {
                done += 1;
            }
        }
        if done == jobs.len() {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    if done != jobs.len() {
        let mut states = Vec::new();
        for (_, id, _, _) in &jobs {
            states.push(task(&server.url, &token, id).await);
        }
        let log: String = server
            .log()
            .lines()
            .filter(|l| l.contains("gatehouse") && !l.contains("DEBUG"))
            .collect::<Vec<_>>()
            .join("\n");
        panic!("{done} of {} finished: {states:#?}\n{log}", jobs.len());
    }
    let list: Value = reqwest::Client::new()
        .get(format!("{}/v1/tasks", server.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        list["data"].as_array().unwrap().len(),
        jobs.len(),
        "no task twice, none lost"
    );
    for (_, id, n, _) in &jobs {
        let t = task(&server.url, &token, id).await;
        assert_eq!(
            t["result"]["choices"][0]["message"]["content"],
            format!("echo: job {n}")
        );
        let events = reqwest::Client::new()
            .get(format!("{}/v1/tasks/{id}/events", server.url))
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
    }
    // The queued ones ran once each; the held ones were re-run after the crash.
    for n in 2..5 {
        let calls = fake
            .seen()
            .iter()
            .filter(|s| s.body["messages"][0]["content"] == format!("job {n}"))
            .count();
        assert_eq!(calls, 1, "job {n}");
    }
    server.stop();
}
