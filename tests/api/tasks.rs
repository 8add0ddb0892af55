//! Durable tasks: the routes and their transitions, ownership (404 for
//! anyone else), idempotency keys (replay, reuse, concurrency), the events
//! stream with `Last-Event-ID`, cancellation of the upstream call, and
//! `agent.run` against a fake agent backend.

use crate::fakes::serve;
use crate::gateway::{gateway, Gw};
use crate::helpers::*;
use actix_web::{web, App, HttpRequest, HttpResponse};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

impl Gw {
    pub async fn task_req(
        &self,
        token: &str,
        path: &str,
        key: Option<&str>,
        body: Value,
    ) -> reqwest::Response {
        let mut req = reqwest::Client::new()
            .post(format!("{}{path}", self.app.url))
            .bearer_auth(token)
            .json(&body);
        if let Some(k) = key {
            req = req.header("idempotency-key", k);
        }
        req.send().await.unwrap()
    }

    /// `POST /v1/tasks/{id}/{action}` with the gateway token and `key`.
    pub async fn task_action(&self, id: &str, action: &str, key: &str) -> reqwest::Response {
        let path = format!("/v1/tasks/{id}/{action}");
        self.task_req(&self.token, &path, Some(key), json!({}))
            .await
    }

    pub async fn get_as(&self, token: &str, path: &str) -> reqwest::Response {
        reqwest::Client::new()
            .get(format!("{}{path}", self.app.url))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub async fn wait_task(&self, id: &str) -> Value {
        let res = self
            .task_req(
                &self.token,
                &format!("/v1/tasks/{id}/wait"),
                None,
                json!({"timeout_s": 20}),
            )
            .await;
        assert_eq!(res.status(), 200);
        res.json().await.unwrap()
    }
}

fn chat_task(model: &str) -> Value {
    json!({"kind": "chat.completion", "input": {"model": model, "messages": [{"role": "user", "content": "hi there"}]}})
}

/// The SSE events of a finished stream: (id, event, data).
fn events_of(text: &str) -> Vec<(u64, String, Value)> {
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let field = |name: &str| {
                e.lines()
                    .find_map(|l| l.strip_prefix(name))
                    .unwrap_or_default()
                    .to_owned()
            };
            (
                field("id: ").parse().unwrap(),
                field("event: "),
                serde_json::from_str(&field("data: ")).unwrap(),
            )
        })
        .collect()
}

#[actix_rt::test]
async fn a_chat_task_runs_once_per_key_and_its_events_resume() {
    let gw = gateway("").await;
    let res = gw
        .task_req(&gw.token, "/v1/tasks", None, chat_task("oa/m1"))
        .await;
    assert_eq!(
        error_code(res).await,
        (400, "idempotency_key_required".into())
    );
    let res = gw
        .task_req(&gw.token, "/v1/tasks", Some(""), chat_task("oa/m1"))
        .await;
    assert_eq!(error_code(res).await.0, 400);

    let res = gw
        .task_req(&gw.token, "/v1/tasks", Some("k1"), chat_task("oa/m1"))
        .await;
    assert_eq!(res.status(), 202);
    assert!(res.headers().get("idempotent-replayed").is_none());
    let first: Value = res.json().await.unwrap();
    assert_eq!(first["status"], "queued");
    assert_eq!(first["owner_name"], "alice");
    let id = first["id"].as_str().unwrap().to_owned();

    let again = gw
        .task_req(&gw.token, "/v1/tasks", Some("k1"), chat_task("oa/m1"))
        .await;
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(
        again.json::<Value>().await.unwrap(),
        first,
        "the stored first response"
    );
    let other = gw
        .task_req(&gw.token, "/v1/tasks", Some("k1"), chat_task("an/claude-x"))
        .await;
    assert_eq!(
        error_code(other).await,
        (422, "idempotency_key_reused".into())
    );

    let done = gw.wait_task(&id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(
        done["result"]["choices"][0]["message"]["content"],
        "echo: hi there"
    );
    assert_eq!(done["result"]["usage"]["total_tokens"], 18);
    assert_eq!(
        gw.oa
            .seen()
            .iter()
            .filter(|s| s.path == "/v1/chat/completions")
            .count(),
        1,
        "ran once"
    );

    let text = gw
        .get_as(&gw.token, &format!("/v1/tasks/{id}/events"))
        .await
        .text()
        .await
        .unwrap();
    let events = events_of(&text);
    let ids: Vec<u64> = events.iter().map(|e| e.0).collect();
    assert_eq!(
        ids,
        (1..=events.len() as u64).collect::<Vec<_>>(),
        "ids count from 1 in order"
    );
    let statuses: Vec<&str> = events
        .iter()
        .filter(|e| e.1 == "status")
        .map(|e| e.2["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["queued", "running", "succeeded"]);
    let said: String = events
        .iter()
        .filter(|e| e.1 == "output")
        .map(|e| e.2["delta"].as_str().unwrap())
        .collect();
    assert_eq!(said, "echo: hi there");
    let resumed = reqwest::Client::new()
        .get(format!("{}/v1/tasks/{id}/events", gw.app.url))
        .bearer_auth(&gw.token)
        .header("last-event-id", "2")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(events_of(&resumed).first().unwrap().0, 3);
    assert_eq!(events_of(&resumed).len(), events.len() - 2);

    let list: Value = gw
        .get_as(&gw.token, "/v1/tasks")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!(list["data"][0]["id"], id.as_str());
}

#[actix_rt::test]
async fn another_principals_task_is_404_on_every_route() {
    let gw = gateway("").await;
    let created: Value = gw
        .task_req(
            &gw.token,
            "/v1/tasks",
            Some("mine"),
            json!({"kind": "chat.completion", "requires_approval": true,
        "input": {"model": "oa/m1", "messages": []}}),
        )
        .await
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap();
    gw.app.add_user("bob", PW, false).await;
    let bob_client = client();
    gw.app.login_with(&bob_client, "bob", PW).await;
    let bob = gw.app.post_json("/api/tokens", json!({"name": "x"})).await; // alice's second token
    let alice2 = bob.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let bob_token = {
        let res = bob_client
            .post(format!("{}/api/tokens", gw.app.url))
            .json(&json!({"name": "b"}))
            .send()
            .await
            .unwrap();
        res.json::<Value>().await.unwrap()["token"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    for token in [&bob_token, &alice2] {
        assert_eq!(
            gw.get_as(token, &format!("/v1/tasks/{id}")).await.status(),
            404
        );
        assert_eq!(
            gw.get_as(token, &format!("/v1/tasks/{id}/events"))
                .await
                .status(),
            404
        );
        assert_eq!(
            gw.task_req(token, &format!("/v1/tasks/{id}/wait"), None, json!({}))
                .await
                .status(),
            404
        );
        for action in ["approve", "cancel", "retry"] {
            let res = gw
                .task_req(
                    token,
                    &format!("/v1/tasks/{id}/{action}"),
                    Some("k"),
                    json!({}),
                )
                .await;
            assert_eq!(res.status(), 404, "{action}");
        }
        let list: Value = gw.get_as(token, "/v1/tasks").await.json().await.unwrap();
        assert!(list["data"].as_array().unwrap().is_empty());
    }
    assert_eq!(
        gw.get_as(&bob_token, "/v1/tasks?all=true").await.status(),
        403
    );
    // The owner signed in sees it; an admin sees every task.
    assert_eq!(gw.app.get(&format!("/v1/tasks/{id}")).await.status(), 200);
    gw.app.add_user("admin", PW, true).await;
    let admin = client();
    gw.app.login_with(&admin, "admin", PW).await;
    let all: Value = gw
        .app
        .get_with(&admin, "/v1/tasks?all=true")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(all["data"].as_array().unwrap().len(), 1);
}

#[actix_rt::test]
async fn twenty_concurrent_requests_with_one_key_make_one_task() {
    let gw = gateway("").await;
    let calls =
        (0..20).map(|_| gw.task_req(&gw.token, "/v1/tasks", Some("same"), chat_task("oa/m1")));
    let answers = futures_util::future::join_all(calls).await;
    let mut ids = std::collections::BTreeSet::new();
    for res in answers {
        match res.status().as_u16() {
            202 => {
                ids.insert(
                    res.json::<Value>().await.unwrap()["id"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                );
            }
            409 => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(ids.len(), 1, "every accepted answer names the same task");
    let list: Value = gw
        .get_as(&gw.token, "/v1/tasks")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
}

#[actix_rt::test]
async fn approval_holds_a_task_and_transitions_are_checked() {
    let gw = gateway("").await;
    let mut body = chat_task("oa/m1");
    body["requires_approval"] = json!(true);
    let t: Value = gw
        .task_req(&gw.token, "/v1/tasks", Some("a1"), body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(t["status"], "pending_approval");
    let id = t["id"].as_str().unwrap();
    assert_eq!(
        gw.wait_task(id).await["status"],
        "pending_approval",
        "wait answers a held task as it is"
    );
    assert_eq!(gw.oa.calls(), 0);
    let path = |a: &str| format!("/v1/tasks/{id}/{a}");
    let res = gw
        .task_req(&gw.token, &path("retry"), Some("r0"), json!({}))
        .await;
    assert_eq!(error_code(res).await, (409, "invalid_transition".into()));
    let res = gw
        .task_req(&gw.token, &path("approve"), None, json!({}))
        .await;
    assert_eq!(
        error_code(res).await,
        (400, "idempotency_key_required".into())
    );
    let approved = gw
        .task_req(&gw.token, &path("approve"), Some("ap"), json!({}))
        .await;
    assert_eq!(approved.status(), 200);
    assert_eq!(approved.json::<Value>().await.unwrap()["status"], "queued");
    assert_eq!(gw.wait_task(id).await["status"], "succeeded");
    let res = gw
        .task_req(&gw.token, &path("approve"), Some("ap2"), json!({}))
        .await;
    assert_eq!(error_code(res).await, (409, "invalid_transition".into()));
    let res = gw
        .task_req(&gw.token, &path("cancel"), Some("c1"), json!({}))
        .await;
    assert_eq!(error_code(res).await, (409, "invalid_transition".into()));
    // The replay of the approval is the first answer, whatever happened since.
    let replay = gw
        .task_req(&gw.token, &path("approve"), Some("ap"), json!({}))
        .await;
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(replay.json::<Value>().await.unwrap()["status"], "queued");
}

#[actix_rt::test]
async fn cancelling_a_running_task_stops_the_upstream_call_and_retry_runs_it_again() {
    let gw = gateway("").await;
    let t: Value = gw
        .task_req(&gw.token, "/v1/tasks", Some("e1"), chat_task("oa/endless"))
        .await
        .json()
        .await
        .unwrap();
    let id = t["id"].as_str().unwrap();
    // Wait for its first output event.
    let mut res = reqwest::Client::new()
        .get(format!("{}/v1/tasks/{id}/events", gw.app.url))
        .bearer_auth(&gw.token)
        .send()
        .await
        .unwrap();
    let mut seen = String::new();
    while !seen.contains("event: output") {
        let chunk = tokio::time::timeout(Duration::from_secs(20), res.chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    let cancelled = gw.task_action(id, "cancel", "c").await;
    assert_eq!(cancelled.status(), 200);
    assert_eq!(
        cancelled.json::<Value>().await.unwrap()["status"],
        "cancelled"
    );
    let mut waited = 0;
    while gw.oa.cancelled() == 0 && waited < 100 {
        actix_rt::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
    }
    assert_eq!(gw.oa.cancelled(), 1, "the upstream call was stopped");
    // The event stream ends with the cancellation.
    let mut rest = seen;
    while let Ok(Some(chunk)) = res.chunk().await {
        rest.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(rest.contains("\"status\":\"cancelled\""), "{rest}");
    let again = gw.task_action(id, "cancel", "c2").await;
    assert_eq!(error_code(again).await, (409, "invalid_transition".into()));
    let retried = gw.task_action(id, "retry", "r").await;
    assert_eq!(retried.json::<Value>().await.unwrap()["status"], "queued");
    let res = gw.task_action(id, "cancel", "c3").await;
    assert_eq!(res.status(), 200);
}

#[actix_rt::test]
async fn past_max_queued_a_create_is_429_until_the_backlog_shrinks() {
    let gw = gateway("[tasks]\nconcurrency = 1\nmax_queued = 3\n").await;
    let create =
        |key: &'static str| gw.task_req(&gw.token, "/v1/tasks", Some(key), chat_task("oa/endless"));
    let mut ids = Vec::new();
    for key in ["q1", "q2", "q3"] {
        let res = create(key).await;
        assert_eq!(res.status(), 202);
        ids.push(
            res.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let full = create("q4").await;
    assert_eq!(full.status(), 429);
    let retry_after: u64 = full.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    let body: Value = full.json().await.unwrap();
    assert_eq!(body["error"]["code"], "task_queue_full");
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("3 tasks"),
        "{body}"
    );

    // A replay is answered from its key; a task held for approval waits
    // outside the queue, and approving it would join the queue.
    let replay = create("q1").await;
    assert_eq!(replay.status(), 202);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let mut held = chat_task("oa/m1");
    held["requires_approval"] = json!(true);
    let held = gw.task_req(&gw.token, "/v1/tasks", Some("h1"), held).await;
    assert_eq!(held.status(), 202);
    let held_id = held.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let approve = gw.task_action(&held_id, "approve", "ap").await;
    assert_eq!(error_code(approve).await, (429, "task_queue_full".into()));
    let list: Value = gw
        .get_as(&gw.token, "/v1/tasks")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        list["data"].as_array().unwrap().len(),
        4,
        "nothing was made by a refusal"
    );

    // Cancelling shrinks the backlog; creates are taken again once it is
    // counted anew (each poll), under the same key that was refused.
    for id in &ids[1..] {
        let res = gw.task_action(id, "cancel", &format!("c-{id}")).await;
        assert_eq!(res.status(), 200);
    }
    let mut status = 0;
    for _ in 0..50 {
        status = create("q4").await.status().as_u16();
        if status != 429 {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(status, 202, "taken once the backlog was counted again");
}

/// What a fake agent backend saw: each request's path and its contract header.
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// A fake agent backend speaking contract `version`; answers its base URL and what it saw.
fn fake_agent(version: u64) -> (String, Seen) {
    fake_agent_run(version, "succeeded")
}

/// As [`fake_agent`], with the run's status fixed (`running`: it never ends until cancelled).
fn fake_agent_run(version: u64, status: &'static str) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let url = serve(move || {
        let s = s.clone();
        App::new().default_service(web::to(move |req: HttpRequest| {
            let contract = req
                .headers()
                .get("x-gatehouse-contract")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            s.lock()
                .unwrap()
                .push((format!("{} {}", req.method(), req.path()), contract));
            let after: u64 = req
                .query_string()
                .strip_prefix("after=")
                .and_then(|a| a.parse().ok())
                .unwrap_or(0);
            async move {
                match req.path() {
                    "/contract" => HttpResponse::Ok().json(json!({"version": version})),
                    "/runs" => HttpResponse::Created().json(json!({"id": "run-7"})),
                    "/runs/run-7/events" => {
                        let all = [
                            json!({"seq": 1, "kind": "output", "data": {"step": "plan"}}),
                            json!({"seq": 2, "kind": "output", "data": {"step": "act"}}),
                        ];
                        let events: Vec<&Value> = all
                            .iter()
                            .filter(|e| e["seq"].as_u64().unwrap() > after)
                            .collect();
                        HttpResponse::Ok().json(
                            json!({"status": status, "events": events, "result": {"answer": 42}}),
                        )
                    }
                    "/runs/run-7/cancel" => HttpResponse::Ok().json(json!({})),
                    _ => HttpResponse::NotFound().finish(),
                }
            }
        }))
    });
    (url, seen)
}

#[actix_rt::test]
async fn agent_runs_go_to_the_backend_and_a_contract_mismatch_is_a_clear_502() {
    let (url, seen) = fake_agent(1);
    let gw = gateway(&format!(
        "[tasks.agent]\nbase_url = \"{url}\"\nlocal = true"
    ))
    .await;
    let t: Value = gw
        .task_req(
            &gw.token,
            "/v1/tasks",
            Some("ag"),
            json!({"kind": "agent.run", "input": {"goal": "x"}}),
        )
        .await
        .json()
        .await
        .unwrap();
    let done = gw.wait_task(t["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["result"], json!({"answer": 42}));
    let text = gw
        .get_as(
            &gw.token,
            &format!("/v1/tasks/{}/events", t["id"].as_str().unwrap()),
        )
        .await
        .text()
        .await
        .unwrap();
    let outputs: Vec<Value> = events_of(&text)
        .into_iter()
        .filter(|e| e.1 == "output")
        .map(|e| e.2)
        .collect();
    assert_eq!(outputs, [json!({"step": "plan"}), json!({"step": "act"})]);
    let seen = seen.lock().unwrap().clone();
    let post = seen
        .iter()
        .find(|(what, _)| what == "POST /runs")
        .expect("the run was created");
    assert_eq!(
        post.1.as_deref(),
        Some("1"),
        "mutating calls carry the contract version"
    );
    assert!(
        seen.iter().position(|(w, _)| w == "GET /contract")
            < seen.iter().position(|(w, _)| w == "POST /runs")
    );

    let (old, _) = fake_agent(2);
    let gw = gateway(&format!(
        "[tasks.agent]\nbase_url = \"{old}\"\nlocal = true"
    ))
    .await;
    let res = gw
        .task_req(
            &gw.token,
            "/v1/tasks",
            Some("ag"),
            json!({"kind": "agent.run", "input": {}}),
        )
        .await;
    assert_eq!(
        error_code(res).await,
        (502, "agent_contract_mismatch".into())
    );
    let res = gw
        .task_req(
            &gw.token,
            "/v1/tasks",
            Some("bad"),
            json!({"kind": "nope", "input": {}}),
        )
        .await;
    assert_eq!(error_code(res).await, (400, "invalid_kind".into()));
}

#[actix_rt::test]
async fn cancelling_an_agent_run_cancels_it_at_the_backend() {
    let (url, seen) = fake_agent_run(1, "running");
    let gw = gateway(&format!(
        "[tasks.agent]\nbase_url = \"{url}\"\nlocal = true"
    ))
    .await;
    let t: Value = gw
        .task_req(
            &gw.token,
            "/v1/tasks",
            Some("long"),
            json!({"kind": "agent.run", "input": {}}),
        )
        .await
        .json()
        .await
        .unwrap();
    let id = t["id"].as_str().unwrap();
    let polled = |what: &str| seen.lock().unwrap().iter().any(|(w, _)| w == what);
    for _ in 0..200 {
        if polled("GET /runs/run-7/events") {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        polled("GET /runs/run-7/events"),
        "the run is being followed"
    );
    let res = gw.task_action(id, "cancel", "stop").await;
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "cancelled");
    for _ in 0..200 {
        if polled("POST /runs/run-7/cancel") {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(25)).await;
    }
    let seen = seen.lock().unwrap().clone();
    let cancel = seen
        .iter()
        .find(|(w, _)| w == "POST /runs/run-7/cancel")
        .expect("the backend was told to cancel");
    assert_eq!(cancel.1.as_deref(), Some("1"));
}
