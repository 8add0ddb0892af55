//! `kill -9` in the middle of each kind of write — user, session, token,
//! revocation, task with its idempotency key — then a restart: every
//! acknowledged write is there and works, and a write that was in flight at
//! the kill is either wholly there or not there at all.
//!
//! Several writers keep writing until some writes are acknowledged; the
//! server is killed while the others are still on their way, so the kill
//! lands in the middle of requests, store writes and flushes.

use crate::helpers::*;
use crate::upstream::FakeLlm;
use serde_json::{json, Value};
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::future::Future;
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

/// What the writers saw at the kill.
struct Outcome {
    /// Acknowledged writes: their number and what the server answered.
    acked: Vec<(usize, Value)>,
    /// Writes sent whose answer never came.
    in_flight: BTreeSet<usize>,
}

/// Runs `writers` loops of `write(n)` (n = 0, 1, 2, … across all loops)
/// until `enough` writes are acknowledged, then kills the server with
/// SIGKILL while the loops go on writing. `write` gives `Some(answer)` for an
/// acknowledged write and `None` when the connection failed (the kill); any
/// other answer fails the test inside `write`.
async fn kill_during<F, Fut>(server: Server, writers: usize, enough: usize, write: F) -> Outcome
where
    F: Fn(usize) -> Fut + Clone + 'static,
    Fut: Future<Output = Option<Value>> + 'static,
{
    let next = Rc::new(RefCell::new(0usize));
    let sent = Rc::new(RefCell::new(BTreeSet::new()));
    let acked = Rc::new(RefCell::new(Vec::new()));
    let mut loops = Vec::new();
    for _ in 0..writers {
        let (next, sent, acked, write) = (next.clone(), sent.clone(), acked.clone(), write.clone());
        loops.push(actix_rt::spawn(async move {
            loop {
                let n = {
                    let mut next = next.borrow_mut();
                    *next += 1;
                    *next - 1
                };
                sent.borrow_mut().insert(n);
                match write(n).await {
                    Some(answer) => acked.borrow_mut().push((n, answer)),
                    None => break,
                }
            }
        }));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while acked.borrow().len() < enough {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} writes acknowledged in 120 s",
            acked.borrow().len()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    server.kill9();
    for l in loops {
        l.await.unwrap();
    }
    let acked = acked.borrow().clone();
    let in_flight = sent
        .borrow()
        .iter()
        .filter(|n| !acked.iter().any(|(a, _)| a == *n))
        .copied()
        .collect();
    let in_flight: BTreeSet<usize> = in_flight;
    eprintln!(
        "killed with {} writes acknowledged and {} in flight",
        acked.len(),
        in_flight.len()
    );
    // Every writer had a request out when the kill came (each loops without
    // pause), so the kill landed in the middle of writes, not after them.
    assert_eq!(in_flight.len(), writers, "the kill did not land mid-write");
    Outcome { acked, in_flight }
}

/// Sends a request; `None` when no answer came (the server is gone), else
/// the status and the JSON body (`null` when there is none).
async fn send(req: reqwest::RequestBuilder) -> Option<(u16, Value)> {
    let res = req.send().await.ok()?;
    let status = res.status().as_u16();
    let text = res.text().await.ok()?;
    Some((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// A home with the admin user and an admin token, and a config that lifts
/// the per-address rate limit on token routes (the writers come from one
/// address) and points at a fake upstream.
fn prepare(fake: &FakeLlm) -> (tempfile::TempDir, Vec<String>, String) {
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("gatehouse.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nauth_rate_per_minute = 0\n\
             [providers.oa]\nbase_url = \"{}\"\napi_key = \"k\"\nmodels = [\"m1\"]\nlocal = true\n",
            fake.url
        ),
    )
    .unwrap();
    cli_ok(
        home.path(),
        &["users", "add", "admin", "--password-stdin"],
        Some(PW),
    );
    let token = cli_ok(
        home.path(),
        &[
            "tokens",
            "issue",
            "--user",
            "admin",
            "--name",
            "crash",
            "--scope",
            "read,write,admin",
        ],
        None,
    )
    .trim()
    .to_owned();
    let args = vec!["--config".to_owned(), config.to_str().unwrap().to_owned()];
    (home, args, token)
}

fn start(home: &Path, args: &[String]) -> Server {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::start(home, &args)
}

fn assert_ok(what: &str, n: usize, got: Option<(u16, Value)>, want: u16) -> Option<Value> {
    let (status, body) = got?;
    assert_eq!(status, want, "{what} {n} before the kill: {body}");
    Some(body)
}

#[actix_web::test]
async fn kill9_while_adding_users() {
    let fake = FakeLlm::openai(&["m1"]);
    let (home, args, admin) = prepare(&fake);
    let server = start(home.path(), &args);
    let url = server.url.clone();
    let out = kill_during(server, 4, 6, move |n| {
        let (url, admin) = (url.clone(), admin.clone());
        async move {
            let req = client()
                .post(format!("{url}/admin/api/users"))
                .bearer_auth(&admin)
                .json(&json!({"username": format!("u{n}"), "password": format!("{PW}-{n}")}));
            assert_ok("user", n, send(req).await, 201)
        }
    })
    .await;

    let server = start(home.path(), &args);
    let c = client();
    let login = |n: usize| {
        c.post(format!("{}/auth/login", server.url))
            .json(&json!({"username": format!("u{n}"), "password": format!("{PW}-{n}")}))
    };
    for (n, _) in &out.acked {
        let (status, _) = send(login(*n)).await.unwrap();
        assert_eq!(status, 200, "acknowledged user u{n} cannot sign in");
    }
    let listed = cli_ok(home.path(), &["users", "list"], None);
    for n in &out.in_flight {
        let there = listed.lines().any(|l| l.starts_with(&format!("u{n}  ")));
        let (status, _) = send(login(*n)).await.unwrap();
        assert_eq!(
            status,
            if there { 200 } else { 401 },
            "user u{n} in flight at the kill is half there (listed: {there})"
        );
    }
    let known = listed.lines().filter(|l| l.starts_with('u')).count();
    assert!(known >= out.acked.len() && known <= out.acked.len() + out.in_flight.len());
}

#[actix_web::test]
async fn kill9_while_signing_in() {
    let fake = FakeLlm::openai(&["m1"]);
    let (home, args, admin) = prepare(&fake);
    cli_ok(
        home.path(),
        &["users", "add", "alice", "--password-stdin"],
        Some(PW),
    );
    let server = start(home.path(), &args);
    let url = server.url.clone();
    let out = kill_during(server, 4, 6, move |n| {
        let url = url.clone();
        async move {
            let res = client()
                .post(format!("{url}/auth/login"))
                .json(&json!({"username": "alice", "password": PW}))
                .send()
                .await
                .ok()?;
            assert_eq!(res.status(), 200, "sign-in {n} before the kill");
            Some(Value::String(session_token(&res).unwrap()))
        }
    })
    .await;

    let server = start(home.path(), &args);
    for (n, token) in &out.acked {
        let got = send(
            client()
                .get(format!("{}/auth/session", server.url))
                .header("x-session-token", token.as_str().unwrap()),
        )
        .await
        .unwrap();
        assert_eq!(got.0, 200, "acknowledged session {n} lost: {}", got.1);
    }
    let (status, list) = send(
        client()
            .get(format!("{}/admin/api/sessions?user=alice", server.url))
            .bearer_auth(&admin),
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    let sessions = list["data"].as_array().unwrap();
    for s in sessions {
        assert_eq!(s["user"], "alice");
        assert!(
            s["expires_at"].is_string() && s["created_at"].is_string(),
            "{s}"
        );
    }
    assert!(
        sessions.len() >= out.acked.len()
            && sessions.len() <= out.acked.len() + out.in_flight.len(),
        "{} sessions for {} acknowledged and {} in flight",
        sessions.len(),
        out.acked.len(),
        out.in_flight.len()
    );
}

/// Tokens listed for the admin, by name: (id, status).
async fn tokens_by_name(url: &str, admin: &str) -> Vec<(String, String, String)> {
    let (status, list) = send(client().get(format!("{url}/api/tokens")).bearer_auth(admin))
        .await
        .unwrap();
    assert_eq!(status, 200, "{list}");
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_owned(),
                t["id"].as_str().unwrap().to_owned(),
                t["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn models_status(url: &str, token: &str) -> u16 {
    send(client().get(format!("{url}/v1/models")).bearer_auth(token))
        .await
        .unwrap()
        .0
}

#[actix_web::test]
async fn kill9_while_issuing_tokens() {
    let fake = FakeLlm::openai(&["m1"]);
    let (home, args, admin) = prepare(&fake);
    let server = start(home.path(), &args);
    let (url, a) = (server.url.clone(), admin.clone());
    let out = kill_during(server, 6, 20, move |n| {
        let (url, admin) = (url.clone(), a.clone());
        async move {
            let req = client()
                .post(format!("{url}/api/tokens"))
                .bearer_auth(&admin)
                .json(&json!({"name": format!("t{n}"), "expires_in": 3600}));
            assert_ok("token", n, send(req).await, 201)
        }
    })
    .await;

    let server = start(home.path(), &args);
    for (n, t) in &out.acked {
        let status = models_status(&server.url, t["token"].as_str().unwrap()).await;
        assert_eq!(
            status, 200,
            "acknowledged token t{n} refused after the restart"
        );
    }
    let listed = tokens_by_name(&server.url, &admin).await;
    let mut names = BTreeSet::new();
    for (name, _, status) in &listed {
        assert!(names.insert(name.clone()), "{name} listed twice");
        if name == "crash" {
            continue;
        }
        let n: usize = name[1..].parse().unwrap();
        assert!(
            out.in_flight.contains(&n) || out.acked.iter().any(|(a, _)| *a == n),
            "{name} was never sent"
        );
        assert_eq!(status, "active", "{name}");
    }
    for (n, _) in &out.acked {
        assert!(names.contains(&format!("t{n}")), "t{n} not listed");
    }
}

#[actix_web::test]
async fn kill9_while_revoking_tokens() {
    let fake = FakeLlm::openai(&["m1"]);
    let (home, args, admin) = prepare(&fake);
    let server = start(home.path(), &args);
    let mut tokens = Vec::new();
    for n in 0..60 {
        let req = client()
            .post(format!("{}/api/tokens", server.url))
            .bearer_auth(&admin)
            .json(&json!({"name": format!("t{n}"), "expires_in": 3600}));
        let t = assert_ok("token", n, send(req).await, 201).unwrap();
        tokens.push((
            t["id"].as_str().unwrap().to_owned(),
            t["token"].as_str().unwrap().to_owned(),
        ));
    }
    let (url, a, ids) = (
        server.url.clone(),
        admin.clone(),
        Rc::new(tokens.iter().map(|t| t.0.clone()).collect::<Vec<_>>()),
    );
    let out = kill_during(server, 6, 15, move |n| {
        let (url, admin, ids) = (url.clone(), a.clone(), ids.clone());
        async move {
            let Some(id) = ids.get(n) else {
                // All revoked already: wait for the kill.
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return None;
            };
            let req = client()
                .delete(format!("{url}/api/tokens/{id}"))
                .bearer_auth(&admin);
            assert_ok("revocation", n, send(req).await, 204)
        }
    })
    .await;

    let server = start(home.path(), &args);
    let listed = tokens_by_name(&server.url, &admin).await;
    for (n, (id, token)) in tokens.iter().enumerate() {
        let status = models_status(&server.url, token).await;
        let (_, _, listed_as) = listed
            .iter()
            .find(|(_, i, _)| i == id)
            .unwrap_or_else(|| panic!("token t{n} vanished"));
        if out.acked.iter().any(|(a, _)| *a == n) {
            assert_eq!(status, 401, "acknowledged revocation of t{n} lost");
            assert_eq!(listed_as, "revoked");
        } else if out.in_flight.contains(&n) {
            let want = if listed_as == "revoked" { 401 } else { 200 };
            assert_eq!(status, want, "t{n} listed {listed_as} but answers {status}");
        } else {
            assert_eq!(
                (status, listed_as.as_str()),
                (200, "active"),
                "t{n} untouched"
            );
        }
    }
}

fn task_body(n: usize) -> Value {
    json!({
        "kind": "chat.completion",
        "input": {"model": "oa/m1", "messages": [{"role": "user", "content": format!("task {n}")}]},
        "requires_approval": true,
    })
}

async fn post_task(url: &str, token: &str, n: usize) -> Option<(u16, Value, bool)> {
    let res = client()
        .post(format!("{url}/v1/tasks"))
        .bearer_auth(token)
        .header("idempotency-key", format!("key-{n}"))
        .json(&task_body(n))
        .send()
        .await
        .ok()?;
    let status = res.status().as_u16();
    let replayed = res
        .headers()
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true");
    Some((status, res.json().await.ok()?, replayed))
}

#[actix_web::test]
async fn kill9_while_creating_tasks_with_idempotency_keys() {
    let fake = FakeLlm::openai(&["m1"]);
    let (home, args, admin) = prepare(&fake);
    let server = start(home.path(), &args);
    let (url, a) = (server.url.clone(), admin.clone());
    let out = kill_during(server, 6, 20, move |n| {
        let (url, admin) = (url.clone(), a.clone());
        async move {
            let (status, task, _) = post_task(&url, &admin, n).await?;
            assert_eq!(status, 202, "task {n} before the kill: {task}");
            Some(task)
        }
    })
    .await;

    let server = start(home.path(), &args);
    for (n, task) in &out.acked {
        let (status, again, replayed) = post_task(&server.url, &admin, *n).await.unwrap();
        assert_eq!(status, 202, "key-{n}: {again}");
        assert!(replayed, "acknowledged key-{n} was forgotten");
        assert_eq!(again["id"], task["id"], "key-{n} answers another task");
        let (status, got) = send(
            client()
                .get(format!(
                    "{}/v1/tasks/{}",
                    server.url,
                    task["id"].as_str().unwrap()
                ))
                .bearer_auth(&admin),
        )
        .await
        .unwrap();
        assert_eq!(
            (status, got["status"].as_str()),
            (200, Some("pending_approval"))
        );
    }
    // A key in flight at the kill is either answered with its task (which
    // exists) or free to create it now: never stuck, never a dangling task.
    let mut ids = BTreeSet::new();
    for n in &out.in_flight {
        let (status, task, replayed) = post_task(&server.url, &admin, *n).await.unwrap();
        assert_eq!(status, 202, "key-{n} in flight at the kill: {task}");
        let (status, _) = send(
            client()
                .get(format!(
                    "{}/v1/tasks/{}",
                    server.url,
                    task["id"].as_str().unwrap()
                ))
                .bearer_auth(&admin),
        )
        .await
        .unwrap();
        assert_eq!(
            status, 200,
            "key-{n} (replayed: {replayed}) names a task that is not there"
        );
        ids.insert(task["id"].as_str().unwrap().to_owned());
    }
    let (status, list) = send(
        client()
            .get(format!("{}/v1/tasks", server.url))
            .bearer_auth(&admin),
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    ids.extend(
        out.acked
            .iter()
            .map(|(_, t)| t["id"].as_str().unwrap().to_owned()),
    );
    let listed: BTreeSet<String> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, ids, "tasks without a key that names them");
}
