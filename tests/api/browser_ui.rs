//! The web UI in a real headless browser (tests/browser/ui.mjs, run by
//! `browse` of browser.rs): admin and user pages against the gateway with
//! its fake model providers (part three: the Tasks page; part four: Admin ›
//! Providers against one more fake upstream), checked both on the JSON report of every step
//! and over HTTP. Screenshots land in `target/browser-shots/ui-*.png`.

use crate::browser::browse;
use crate::helpers::*;
use crate::upstream::FakeLlm;
use serde_json::{json, Value};

const NEW_PW: &str = "a-brand-new-passphrase";
const ALICE_PW: &str = "alice-set-by-the-admin";

/// A step of the report, which must have gone well.
fn step<'a>(report: &'a Value, name: &str) -> &'a Value {
    let s = &report["steps"][name];
    assert_eq!(s["ok"], true, "step {name}: {report:#}");
    s
}

/// Console errors other than the browser's own line for a 4xx answer (the
/// page asks /auth/session while signed out, and the flows provoke 401,
/// 403, 409 and 422 on purpose): no CSP violation, no uncaught exception.
fn assert_no_console_errors(report: &Value, key: &str) {
    let bad: Vec<&str> = report[key]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter(|e| !e.starts_with("Failed to load resource"))
        .collect();
    assert!(bad.is_empty(), "{key}: {bad:#?}");
}

async fn admin_get(app: &TestApp, admin: &reqwest::Client, path: &str) -> Value {
    let res = app.get_with(admin, path).await;
    assert_eq!(res.status(), 200, "{path}");
    res.json().await.unwrap()
}

#[actix_web::test]
async fn the_web_ui_in_a_browser() {
    let gw = crate::gateway::gateway("").await;
    let app = &gw.app;
    let admin_user = app.add_user("admin", PW, true).await;
    let admin_id = admin_user["id"].as_str().unwrap();

    // Part one: users, locking, sessions, tokens.
    let a = browse(
        "ui.mjs",
        json!({"base": app.url, "part": "admin", "password": PW, "alice_password": ALICE_PW,
               "shot": "target/browser-shots/ui-admin-final.png"}),
    )
    .await;
    let s = step(&a, "signin");
    assert_eq!(s["whoami"], "admin", "{s}");
    assert_eq!(s["admin_nav"], true, "{s}");
    assert_eq!(
        (&s["header_initial"], &s["header_img"]),
        (&json!("A"), &json!(0)),
        "no avatar yet: the initial"
    );
    assert_eq!(step(&a, "create_bob")["status"], "Active");
    let s = step(&a, "bob_signs_in");
    assert_eq!(
        (&s["whoami"], &s["admin_nav"]),
        (&json!("bob"), &json!(false))
    );
    assert_eq!(
        s["admin_page"], "Admins only",
        "a 403 on the admin page: {s}"
    );
    let s = step(&a, "lock_self_refused");
    assert_eq!(s["submit_disabled_until_confirmed"], true, "{s}");
    assert_eq!(s["error"], "You cannot lock yourself.", "the API's 409");
    let s = step(&a, "lock_bob");
    assert_eq!(
        (&s["status"], &s["reason"]),
        (&json!("Locked"), &json!("left the team"))
    );
    let s = step(&a, "bob_sent_to_signin");
    assert_eq!(s["url"], format!("{}/?next=%2Ftokens", app.url), "{s}");
    assert_eq!(s["topbar_hidden"], true, "{s}");
    assert_eq!(s["signin_error"], "This account is locked.", "{s}");
    let s = step(&a, "sessions_tab");
    assert_eq!(s["url"], format!("{}/admin?tab=sessions", app.url));
    let groups: Vec<&str> = s["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(groups.contains(&"admin") && !groups.contains(&"bob"), "{s}");
    assert_eq!(s["users"], groups.len().to_string(), "{s}");
    assert_eq!(s["revoke_user_buttons"], groups.len(), "{s}");
    let s = step(&a, "manage_users");
    assert_eq!(
        s["too_short"], "Password must be at least 12 characters.",
        "{s}"
    );
    assert_eq!(s["taken"], "That username is taken.", "the API's 409: {s}");
    assert_eq!(s["delete_question"], "Delete carol?", "{s}");
    let s = step(&a, "create_token");
    assert_eq!(s["token_prefix"], "gh_", "{s}");
    assert_eq!(s["admin_scope_offered"], true, "{s}");
    assert_eq!(s["status"], "active", "{s}");
    assert!(
        s["empty_state"].as_str().unwrap().contains("No tokens yet"),
        "{s}"
    );
    assert!(
        s["warning"]
            .as_str()
            .unwrap()
            .contains("not be shown again"),
        "{s}"
    );
    assert_eq!(s["copied"], true, "{s}");
    let token_id = s["id"].as_str().unwrap().to_owned();
    assert_eq!(step(&a, "use_token")["status"], 200);
    let s = step(&a, "revoke_token");
    assert_eq!(
        (&s["status"], &s["then"]),
        (&json!("revoked"), &json!(401)),
        "{s}"
    );
    assert_no_console_errors(&a, "console_errors");
    assert_no_console_errors(&a, "bob_console_errors");

    // What the server holds now.
    let admin = client();
    assert_eq!(app.login_with(&admin, "admin", PW).await.status(), 200);
    let users = admin_get(app, &admin, "/admin/api/users").await;
    let bob = users["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "bob")
        .expect("bob was created");
    assert_eq!(bob["locked"]["reason"], "left the team", "{bob}");
    assert_eq!(bob["roles"], json!([]), "{bob}");
    assert!(
        users["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u["username"] != "carol"),
        "carol was deleted: {users}"
    );
    assert_eq!(
        app.login_with(&client(), "alice", ALICE_PW).await.status(),
        200,
        "the password the admin set for alice"
    );
    let bob_sessions = admin_get(app, &admin, "/admin/api/sessions?user=bob").await;
    assert_eq!(
        bob_sessions["data"],
        json!([]),
        "a lock ends bob's sessions"
    );
    let tokens = admin_get(app, &admin, "/admin/api/tokens?user=admin").await;
    let token = tokens["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == token_id.as_str())
        .expect("the token made in the page");
    assert_eq!(token["status"], "revoked", "{token}");
    assert_eq!(token["name"], "ci-script", "{token}");
    assert_eq!(token["scopes"], json!(["read", "write"]), "{token}");

    // Part two: account, avatar, chat, usage, sign-out. Two more sessions
    // of admin (with `admin`'s) for the page to end.
    let others = [client(), client()];
    for c in &others {
        assert_eq!(app.login_with(c, "admin", PW).await.status(), 200);
    }
    let b = browse(
        "ui.mjs",
        json!({"base": app.url, "part": "account", "password": PW, "new_password": NEW_PW,
               "shot": "target/browser-shots/ui-account-final.png"}),
    )
    .await;
    let s = step(&b, "signin");
    assert_eq!(s["whoami"], "admin", "{s}");
    assert_eq!(s["url"], format!("{}/account", app.url), "?next= kept: {s}");
    let s = step(&b, "my_sessions");
    // This one, part one's, `admin`'s and the two others.
    assert_eq!(
        (&s["before"], &s["after_one"], &s["after_all"]),
        (&json!(5), &json!(4), &json!(1)),
        "{s}"
    );
    assert_eq!(s["left_is_this_device"], true, "{s}");
    assert_eq!(s["revoke_others_disabled"], true, "{s}");
    for c in others.iter().chain([&admin]) {
        let res = app.get_with(c, "/auth/session").await;
        assert_eq!(res.status(), 401, "the page ended the other sessions");
    }
    let s = step(&b, "change_password");
    assert_eq!(s["mismatch"], "The new passwords do not match.", "{s}");
    assert_eq!(
        s["wrong_current"], "The current password is not correct.",
        "{s}"
    );
    assert_eq!(
        s["too_short"], "Password must be at least 12 characters.",
        "{s}"
    );
    assert_eq!(s["still_signed_in"], "admin", "{s}");
    let s = step(&b, "avatar");
    assert!(
        s["bad_file_error"]
            .as_str()
            .unwrap()
            .contains("PNG, JPEG or WebP"),
        "the API's 422: {s}"
    );
    assert_eq!(s["error_after"], "", "{s}");
    let src = s["header"]["src"].as_str().unwrap();
    assert!(src.starts_with(&format!("/avatars/{admin_id}")), "{s}");
    assert_eq!(s["header"]["natural_width"], 64, "{s}");
    assert_eq!(s["header"]["visible"], true, "{s}");
    let s = step(&b, "chat_stream");
    let seen: Vec<&str> = s["texts_seen"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(seen.len() >= 4 && seen[0].starts_with("echo: "), "{s}");
    assert!(
        seen.windows(2)
            .all(|w| w[1].len() > w[0].len() && w[1].starts_with(w[0])),
        "the reply is drawn as it grows: {s}"
    );
    assert_eq!(s["stop_visible_while_streaming"], true, "{s}");
    assert_eq!(s["stop_hidden_after"], true, "{s}");
    assert_eq!(s["note"], "Stopped.", "{s}");
    let error = s["error"].as_str().unwrap();
    assert!(
        !error.is_empty() && !error.contains("sk-upstream") && !error.contains("10.1.2.3"),
        "an upstream failure, sanitized: {s}"
    );
    assert_eq!(s["messages_after_new_chat"], 0, "{s}");
    // Stop in the page cancels the request upstream.
    for _ in 0..100 {
        if gw.oa.cancelled() > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(gw.oa.cancelled(), 1, "Stop ends the upstream stream");
    let s = step(&b, "chat");
    assert_eq!(s["reply"], "echo: hello gatehouse", "{s}");
    assert_eq!(s["prompt"], "hello gatehouse", "{s}");
    assert_eq!(s["second_reply"], "echo: and a second turn", "{s}");
    assert_eq!(s["input_cleared"], true, "{s}");
    let s = step(&b, "usage");
    assert_eq!(s["url"], format!("{}/admin?tab=usage", app.url), "{s}");
    let cells: Vec<&str> = s["cells"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(&cells[..3], ["admin", "oa/m1", "2"], "{s}");
    // (The stopped oa/endless call may count too.)
    let total: u64 = s["totals"][0].as_str().unwrap().parse().unwrap();
    assert!(total >= 2, "{s}");
    assert_eq!(s["requests_in_chart"], total, "{s}");
    assert_eq!(s["bars"], 25, "24 h by the hour: {s}");
    assert_eq!(s["bars_30d"], 31, "30 days by the day: {s}");
    assert!(
        s["busy_bar_title"].as_str().unwrap().contains(" request"),
        "{s}"
    );
    let widths = &step(&b, "narrow")["scroll_widths"];
    for page in ["admin-users", "tokens", "account"] {
        assert_eq!(widths[page], 400, "{page} fits 400 px: {widths}");
    }
    let s = step(&b, "sign_out");
    assert_eq!(s["topbar_hidden"], true, "{s}");
    assert_eq!(s["session_status"], 401, "{s}");
    assert_no_console_errors(&b, "console_errors");

    // The new password signs in, the old one no longer does.
    assert_eq!(
        app.login_with(&client(), "admin", NEW_PW).await.status(),
        200
    );
    assert_eq!(app.login_with(&client(), "admin", PW).await.status(), 401);
    // The avatar is served to anyone.
    let res = app
        .get_with(&client(), &format!("/avatars/{admin_id}"))
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "image/png");
    // The usage the page showed is the server's.
    let fresh = client();
    assert_eq!(app.login_with(&fresh, "admin", NEW_PW).await.status(), 200);
    let usage = admin_get(app, &fresh, "/admin/api/usage?user=admin&model=oa/m1").await;
    assert_eq!(usage["totals"]["requests"], 2, "{usage}");

    // Part three: the Tasks page (after the usage check: tasks call oa/m1).
    let c = browse(
        "ui.mjs",
        json!({"base": app.url, "part": "tasks", "password": NEW_PW,
               "shot": "target/browser-shots/ui-tasks-final.png"}),
    )
    .await;
    let s = step(&c, "signin");
    assert_eq!(s["url"], format!("{}/tasks", app.url), "{s}");
    assert_eq!(s["nav_current"], "page", "{s}");
    assert_eq!(s["all_toggle"], true, "admins may see every task: {s}");
    assert!(
        s["empty_state"].as_str().unwrap().contains("No tasks yet"),
        "{s}"
    );
    let s = step(&c, "create_task");
    let task_id = s["id"].as_str().unwrap().to_owned();
    assert!(task_id.starts_with("task_"), "{s}");
    assert_eq!(s["status"], "pending_approval", "{s}");
    assert_eq!(s["badge"], "pending approval", "{s}");
    assert_eq!(
        (&s["kind"], &s["model"]),
        (&json!("chat.completion"), &json!("oa/m1")),
        "{s}"
    );
    assert_eq!(s["detail_id"], task_id.as_str(), "{s}");
    assert_eq!(s["detail_status"], "pending_approval", "{s}");
    assert_eq!(s["buttons"], json!(["approve", "cancel"]), "{s}");
    let s = step(&c, "approve_task");
    assert_eq!(s["output"], "echo: summarise the quarter", "streamed: {s}");
    assert_eq!(s["result"], "echo: summarise the quarter", "{s}");
    let events: Vec<&str> = s["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        events.iter().any(|e| e.contains("pending_approval"))
            && events.last().unwrap().contains("succeeded"),
        "the status changes, in the panel: {s}"
    );
    assert_eq!(s["row_status"], "succeeded", "{s}");
    assert_eq!(
        s["row_buttons"], 0,
        "nothing to do with a succeeded task: {s}"
    );
    assert_eq!(s["error_hidden"], true, "{s}");
    let s = step(&c, "cancel_and_retry");
    assert_eq!(
        s["question"],
        format!("Cancel task {}…?", &s["id"].as_str().unwrap()[..13]),
        "{s}"
    );
    assert_eq!(s["output"], "echo: second thoughts", "{s}");
    let second = s["id"].as_str().unwrap().to_owned();
    assert_no_console_errors(&c, "console_errors");
    assert!(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("docs/ui-tasks.png")
            .is_file(),
        "the screenshot for the docs"
    );

    // The tasks the page made, as the server has them.
    let task = admin_get(app, &fresh, &format!("/v1/tasks/{task_id}")).await;
    assert_eq!(task["status"], "succeeded", "{task}");
    assert_eq!(task["kind"], "chat.completion", "{task}");
    assert_eq!(task["requires_approval"], true, "{task}");
    assert_eq!(task["owner_name"], "admin", "{task}");
    assert_eq!(
        task["result"]["choices"][0]["message"]["content"], "echo: summarise the quarter",
        "{task}"
    );
    let task = admin_get(app, &fresh, &format!("/v1/tasks/{second}")).await;
    assert_eq!(
        task["status"], "succeeded",
        "cancelled, then retried: {task}"
    );
    let list = admin_get(app, &fresh, "/v1/tasks").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 2, "{list}");

    // Part four: Admin › Providers, with a provider added in the page that
    // points at one more fake upstream.
    let lab = FakeLlm::openai(&["m1"]);
    let key = "sk-lab-typed-in-the-browser";
    let d = browse(
        "ui.mjs",
        json!({"base": app.url, "part": "providers", "password": NEW_PW,
               "upstream": lab.url, "key": key,
               "shot": "target/browser-shots/ui-providers-final.png"}),
    )
    .await;
    let s = step(&d, "signin");
    assert_eq!(s["url"], format!("{}/admin?tab=providers", app.url), "{s}");
    assert_eq!(s["tab_selected"], "true", "{s}");
    assert_eq!(s["names"], json!(["an", "oa"]), "{s}");
    assert_eq!(s["oa_source"], "config", "{s}");
    assert_eq!(s["oa_profiles"], json!(["ok"]), "{s}");
    let s = step(&d, "add_provider");
    let refused = s["refused"].as_str().unwrap();
    assert!(
        refused.starts_with("Refused by the egress policy") && refused.contains("local"),
        "the API's 422 egress_denied message: {s}"
    );
    assert_eq!(s["cells"], json!(["lab", "OpenAI", lab.url]), "{s}");
    assert_eq!(s["local_label"], "local", "{s}");
    assert_eq!(s["source"], "API", "{s}");
    assert_eq!(s["models"], "1", "{s}");
    assert_eq!(s["profiles"], "No keys", "{s}");
    assert_eq!(s["remove_enabled"], true, "{s}");
    let s = step(&d, "edit_provider");
    assert_eq!(s["title"], "Edit lab", "{s}");
    assert_eq!(s["name_readonly"], true, "{s}");
    assert_eq!(
        (&s["url"], &s["local"]),
        (&json!(lab.url), &json!(true)),
        "{s}"
    );
    assert_eq!(
        (&s["models"], &s["models_title"]),
        (&json!("2"), &json!("m1, m2")),
        "{s}"
    );
    let s = step(&d, "add_profile");
    assert_eq!(s["key_input_type"], "password", "{s}");
    assert_eq!(s["key_after"], "", "the key field is emptied: {s}");
    assert_eq!(s["state"], "ok", "{s}");
    assert_eq!(s["offered"], "offered", "{s}");
    assert_eq!(s["key_in_page"], false, "{s}");
    let s = step(&d, "test_provider");
    assert_eq!(s["models"], json!(["m1"]), "the upstream's own list: {s}");
    assert!(s["ms"].as_str().unwrap().ends_with(" ms"), "{s}");
    let s = step(&d, "config_provider");
    assert_eq!(s["remove_disabled"], true, "{s}");
    assert_eq!(s["edit_disabled"], true, "{s}");
    assert!(
        s["remove_title"]
            .as_str()
            .unwrap()
            .contains("configuration file"),
        "{s}"
    );
    assert_eq!(
        (&s["api_status"], &s["api_code"]),
        (&json!(409), &json!("config_provider")),
        "{s}"
    );
    assert_eq!(s["still_listed"], 1, "{s}");
    let s = step(&d, "remove_provider");
    assert_eq!(s["question"], "Remove provider lab?", "{s}");
    assert_eq!(s["names"], json!(["an", "oa"]), "{s}");
    assert_eq!(s["test_row"], 0, "{s}");
    assert_eq!(s["error_hidden"], true, "{s}");
    assert_no_console_errors(&d, "console_errors");
    assert!(
        !d.to_string().contains(key),
        "no key in anything the page showed"
    );
    assert!(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("docs/ui-providers.png")
            .is_file(),
        "the screenshot for the docs"
    );
    // The test button asked the upstream with the key typed in the page.
    let listed: Vec<_> = lab
        .seen()
        .into_iter()
        .filter(|r| r.path.ends_with("/models"))
        .collect();
    assert!(!listed.is_empty(), "the upstream was asked for its models");
    assert!(
        listed
            .iter()
            .any(|r| r.header("authorization") == Some(format!("Bearer {key}").as_str())),
        "with the profile's key"
    );
    // The server agrees: lab is gone, oa and an are still there.
    let list = admin_get(app, &fresh, "/admin/api/providers").await;
    let names: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names.len(), 2, "{list}");
    assert!(names.contains(&"oa") && names.contains(&"an"), "{list}");
    assert!(!list.to_string().contains(key), "{list}");
}
