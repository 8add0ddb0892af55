//! The admin API and the account's own sessions.

use crate::bearer::spawn_toml;
use crate::helpers::*;
use serde_json::{json, Value};

async fn admin_app() -> TestApp {
    let app = spawn_toml(
        "[auth.github]\nclient_id = \"id\"\nclient_secret = \"super-secret-github-value\"\n",
    )
    .await;
    app.add_user("root", PW, true).await;
    app.add_user("alice", PW, false).await;
    assert_eq!(app.login("root", PW).await.status(), 200);
    app
}

async fn send(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut req = app.client.request(method, format!("{}{path}", app.url));
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.unwrap()
}

#[actix_web::test]
async fn only_admins_and_admin_scoped_tokens_get_in() {
    let app = admin_app().await;
    assert_eq!(app.get("/admin/api/users").await.status(), 200);
    assert_eq!(
        client()
            .get(format!("{}/admin/api/users", app.url))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let alice = client();
    app.login_with(&alice, "alice", PW).await;
    let (s, code) = error_code(app.get_with(&alice, "/admin/api/users").await).await;
    assert_eq!((s, code.as_str()), (403, "insufficient_scope"));
    let rw: Value = app
        .post_json("/api/tokens", json!({"name": "rw"}))
        .await
        .json()
        .await
        .unwrap();
    let adm: Value = app
        .post_json("/api/tokens", json!({"name": "adm", "scopes": ["admin"]}))
        .await
        .json()
        .await
        .unwrap();
    let with = |t: &Value| {
        client()
            .get(format!("{}/admin/api/users", app.url))
            .bearer_auth(t["token"].as_str().unwrap().to_owned())
            .send()
    };
    assert_eq!(
        with(&rw).await.unwrap().status(),
        403,
        "a token without the admin scope"
    );
    assert_eq!(with(&adm).await.unwrap().status(), 200);
}

#[actix_web::test]
async fn users_are_created_changed_locked_and_removed() {
    let app = admin_app().await;
    let res = send(
        &app,
        reqwest::Method::POST,
        "/admin/api/users",
        Some(json!({"username": "bob", "password": "bob-password-123"})),
    )
    .await;
    assert_eq!(res.status(), 201);
    let bob: Value = res.json().await.unwrap();
    assert_eq!(
        (bob["username"].as_str(), bob["roles"].clone()),
        (Some("bob"), json!([]))
    );
    assert!(bob.get("password").is_none());
    let dup = send(
        &app,
        reqwest::Method::POST,
        "/admin/api/users",
        Some(json!({"username": "BOB", "password": "bob-password-123"})),
    )
    .await;
    assert_eq!(error_code(dup).await, (409, "username_taken".into()));
    let weak = send(
        &app,
        reqwest::Method::POST,
        "/admin/api/users",
        Some(json!({"username": "carl", "password": "short"})),
    )
    .await;
    assert_eq!(weak.status(), 422);
    let missing = send(
        &app,
        reqwest::Method::POST,
        "/admin/api/users",
        Some(json!({"username": "carl"})),
    )
    .await;
    assert_eq!(missing.status(), 400);

    let bob_browser = client();
    assert_eq!(
        app.login_with(&bob_browser, "bob", "bob-password-123")
            .await
            .status(),
        200
    );
    let res = send(
        &app,
        reqwest::Method::PUT,
        "/admin/api/users/bob/password",
        Some(json!({"password": "new-bob-password-1"})),
    )
    .await;
    assert_eq!(res.status(), 204);
    assert_eq!(
        app.get_with(&bob_browser, "/account/api/me").await.status(),
        401,
        "a password set by an admin ends all sessions"
    );
    assert_eq!(
        app.login_with(&bob_browser, "bob", "new-bob-password-1")
            .await
            .status(),
        200
    );
    let weak = send(
        &app,
        reqwest::Method::PUT,
        "/admin/api/users/bob/password",
        Some(json!({"password": "x"})),
    )
    .await;
    assert_eq!(weak.status(), 422);

    let res = send(
        &app,
        reqwest::Method::POST,
        "/admin/api/users/bob/lock",
        Some(json!({"reason": "on leave"})),
    )
    .await;
    assert_eq!(res.status(), 200);
    let locked: Value = res.json().await.unwrap();
    assert_eq!(locked["locked"]["reason"], "on leave");
    assert_eq!(
        app.get_with(&bob_browser, "/account/api/me").await.status(),
        401,
        "the lock ends the live session"
    );
    assert_eq!(
        send(
            &app,
            reqwest::Method::POST,
            "/admin/api/users/bob/lock",
            None
        )
        .await
        .status(),
        200,
        "no body is fine"
    );
    assert_eq!(
        send(
            &app,
            reqwest::Method::POST,
            "/admin/api/users/bob/unlock",
            None
        )
        .await
        .status(),
        200
    );
    assert_eq!(
        error_code(
            send(
                &app,
                reqwest::Method::POST,
                "/admin/api/users/root/lock",
                None
            )
            .await
        )
        .await,
        (409, "cannot_lock_self".into())
    );
    app.add_user("root2", PW, true).await;
    assert_eq!(
        error_code(
            send(
                &app,
                reqwest::Method::POST,
                "/admin/api/users/root2/lock",
                None
            )
            .await
        )
        .await,
        (409, "cannot_lock_admin".into())
    );
    assert_eq!(
        send(
            &app,
            reqwest::Method::POST,
            "/admin/api/users/nobody/lock",
            None
        )
        .await
        .status(),
        404
    );
    let bad = app
        .client
        .post(format!("{}/admin/api/users/bob/lock", app.url))
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    assert_eq!(
        error_code(send(&app, reqwest::Method::DELETE, "/admin/api/users/root", None).await).await,
        (409, "cannot_delete_self".into())
    );
    assert_eq!(
        send(&app, reqwest::Method::DELETE, "/admin/api/users/bob", None)
            .await
            .status(),
        204
    );
    assert_eq!(
        send(&app, reqwest::Method::DELETE, "/admin/api/users/bob", None)
            .await
            .status(),
        404
    );
    let users: Value = app.get("/admin/api/users").await.json().await.unwrap();
    let names: Vec<&str> = users["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["alice", "root", "root2"]);
}

#[actix_web::test]
async fn sessions_tokens_audit_and_config() {
    let app = admin_app().await;
    let alice = client();
    let token = session_token(&app.login_with(&alice, "alice", PW).await).unwrap();
    app.login_with(&client(), "alice", PW).await;
    let all: Value = app.get("/admin/api/sessions").await.json().await.unwrap();
    assert_eq!(all["data"].as_array().unwrap().len(), 3);
    assert!(
        !all.to_string().contains(&token),
        "no session token in the list"
    );
    let row = &all["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["user"] == "alice")
        .unwrap()
        .clone();
    for k in [
        "id",
        "user",
        "user_id",
        "created_at",
        "expires_at",
        "last_seen_at",
        "ip",
        "user_agent",
    ] {
        assert!(row.get(k).is_some(), "{k}");
    }
    let mine: Value = app
        .get("/admin/api/sessions?user=alice")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(mine["data"].as_array().unwrap().len(), 2);
    let stats: Value = app
        .get("/admin/api/sessions/stats")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        stats,
        json!({"total_sessions": 3, "unique_users": 2, "user_sessions": {"alice": 2, "root": 1}})
    );
    let revoked: Value = send(
        &app,
        reqwest::Method::POST,
        "/admin/api/sessions/revoke-user",
        Some(json!({"username": "alice"})),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(revoked["deleted_count"], 2);
    assert_eq!(app.get_with(&alice, "/account/api/me").await.status(), 401);
    let alice2 = client();
    app.login_with(&alice2, "alice", PW).await;
    let id = app
        .get("/admin/api/sessions?user=alice")
        .await
        .json::<Value>()
        .await
        .unwrap()["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        send(
            &app,
            reqwest::Method::DELETE,
            &format!("/admin/api/sessions/{id}"),
            None
        )
        .await
        .status(),
        204
    );
    assert_eq!(app.get_with(&alice2, "/account/api/me").await.status(), 401);
    assert_eq!(
        send(
            &app,
            reqwest::Method::DELETE,
            &format!("/admin/api/sessions/{id}"),
            None
        )
        .await
        .status(),
        404
    );

    let t: Value = app
        .post_json("/api/tokens", json!({"name": "x"}))
        .await
        .json()
        .await
        .unwrap();
    app.post_json("/api/tokens", json!({"name": "y"})).await;
    send(
        &app,
        reqwest::Method::DELETE,
        &format!("/api/tokens/{}", t["id"].as_str().unwrap()),
        None,
    )
    .await;
    let stats: Value = app
        .get("/admin/api/tokens/stats")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        stats,
        json!({"total": 2, "active": 1, "expired": 0, "revoked": 1})
    );
    let listed: Value = app
        .get("/admin/api/tokens?user=root")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["data"].as_array().unwrap().len(), 2);
    assert!(listed["data"][0].get("token").is_none());

    let audit: Value = app
        .get("/admin/api/audit?action=token.revoke")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(audit["data"].as_array().unwrap().len(), 1);
    let ev = &audit["data"][0];
    for k in [
        "id",
        "at",
        "actor",
        "actor_name",
        "action",
        "target",
        "ip",
        "details",
    ] {
        assert!(ev.get(k).is_some(), "{k}");
    }
    let all: Value = app.get("/admin/api/audit").await.json().await.unwrap();
    let times: Vec<&str> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["at"].as_str().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");
    let jsonl = app.get("/admin/api/audit?format=jsonl&user=alice").await;
    assert_eq!(jsonl.headers()["content-type"], "application/x-ndjson");
    let text = jsonl.text().await.unwrap();
    assert!(
        text.lines().count() >= 3
            && text
                .lines()
                .all(|l| serde_json::from_str::<Value>(l).is_ok())
    );
    assert!(!text.contains(PW), "no password in the audit trail");
    assert_eq!(
        app.get("/admin/api/audit?since=yesterday").await.status(),
        422
    );

    let config = app.get("/admin/api/config").await.text().await.unwrap();
    assert!(
        config.contains("\"***\"") && !config.contains("super-secret-github-value"),
        "{config}"
    );
}

#[actix_web::test]
async fn users_manage_their_own_sessions() {
    let app = admin_app().await;
    let here = client();
    app.login_with(&here, "alice", PW).await;
    let phone = client();
    app.login_with(&phone, "alice", PW).await;
    let laptop = client();
    app.login_with(&laptop, "alice", PW).await;
    let mine: Value = app
        .get_with(&here, "/account/api/sessions")
        .await
        .json()
        .await
        .unwrap();
    let rows = mine["data"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows.iter().filter(|r| r["current"] == true).count(), 1);
    let other = rows.iter().find(|r| r["current"] == false).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Root's session id is not alice's to delete.
    let root_id = app
        .get("/admin/api/sessions?user=root")
        .await
        .json::<Value>()
        .await
        .unwrap()["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        here.delete(format!("{}/account/api/sessions/{root_id}", app.url))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        here.delete(format!("{}/account/api/sessions/{other}", app.url))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    let res: Value = here
        .post(format!("{}/account/api/sessions/revoke-others", app.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(res["deleted_count"], 1);
    assert_eq!(app.get_with(&here, "/account/api/me").await.status(), 200);
    assert_eq!(app.get_with(&phone, "/account/api/me").await.status(), 401);
    assert_eq!(app.get_with(&laptop, "/account/api/me").await.status(), 401);
    assert_eq!(
        app.get("/account/api/me").await.status(),
        200,
        "root's session was untouched"
    );
}
