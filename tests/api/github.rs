//! Sign in with GitHub against a fake GitHub (OAuth web flow, PKCE, API),
//! driven by an HTTP client with a cookie jar, one redirect at a time.

use crate::bearer::spawn_toml;
use crate::fakes::*;
use crate::helpers::*;
use serde_json::Value;
use time::Duration;

fn location(res: &reqwest::Response) -> String {
    res.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Starts the flow on `client`: answers the callback URL GitHub sends the browser back to.
async fn to_callback(app: &TestApp, client: &reqwest::Client, next: &str) -> String {
    let res = client
        .get(format!("{}/auth/github{next}", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 302);
    let cookie = set_cookie(&res);
    assert!(
        cookie.starts_with("gatehouse_oauth=")
            && cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    let authorize = location(&res);
    for part in [
        "client_id=gh-client",
        "state=",
        "code_challenge=",
        "code_challenge_method=S256",
        "scope=read%3Auser",
    ] {
        assert!(authorize.contains(part), "{authorize} lacks {part}");
    }
    let res = client.get(&authorize).send().await.unwrap();
    assert_eq!(res.status(), 302);
    location(&res).replace("http://gateway.invalid", &app.url)
}

async fn sign_in(app: &TestApp, client: &reqwest::Client, next: &str) -> reqwest::Response {
    let callback = to_callback(app, client, next).await;
    client.get(callback).send().await.unwrap()
}

#[actix_web::test]
async fn the_whole_flow_signs_in_and_creates_the_user_once() {
    let gh = FakeGithubOauth::start();
    let app = spawn_toml(&gh.config("")).await;
    let providers: Value = app.get("/auth/providers").await.json().await.unwrap();
    assert!(providers.to_string().contains("\"github\""));

    let c = client();
    let res = sign_in(&app, &c, "?next=/account").await;
    assert_eq!(res.status(), 302);
    assert_eq!(location(&res), "/account");
    let token = session_token(&res).unwrap();
    assert!(!location(&res).contains(&token), "no token in any URL");
    assert!(set_cookie(&res).contains("HttpOnly"));
    let me: Value = app
        .get_with(&c, "/account/api/me")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["username"], "octocat");
    assert_eq!(me["auth"], "github");
    assert_eq!(me["display_name"], "The Octocat");
    assert_eq!(me["avatar_url"], "https://avatars.example/u/583231");
    assert_eq!(me["roles"], serde_json::json!([]));
    assert_eq!(me["last_login"]["ip"], "127.0.0.1");
    // The OAuth session lasts oauth_session_ttl (24 h).
    let session: Value = app
        .get_with(&c, "/auth/session")
        .await
        .json()
        .await
        .unwrap();
    let expires = time::OffsetDateTime::parse(
        session["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let left = expires - app.state().handles.now();
    assert!(
        left > Duration::hours(23) && left <= Duration::hours(24),
        "{left}"
    );

    // A renamed GitHub login is the same user (the GitHub id is the key).
    *gh.login.lock().unwrap() = "octocat-renamed".into();
    let c2 = client();
    assert_eq!(sign_in(&app, &c2, "").await.status(), 302);
    let again: Value = app
        .get_with(&c2, "/account/api/me")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["id"], me["id"]);
    assert_eq!(app.state().handles.user_view().len(), 1);
}

#[actix_web::test]
async fn state_must_be_fresh_unused_and_from_this_browser() {
    let gh = FakeGithubOauth::start();
    let app = spawn_toml(&gh.config("")).await;
    let c = client();
    let callback = to_callback(&app, &c, "").await;
    // Another browser (no gatehouse_oauth cookie) cannot use it, and burns it.
    let (s, code) = error_code(client().get(&callback).send().await.unwrap()).await;
    assert_eq!((s, code.as_str()), (400, "invalid_state"));
    let (s, code) = error_code(c.get(&callback).send().await.unwrap()).await;
    assert_eq!((s, code.as_str()), (400, "invalid_state"));

    let callback = to_callback(&app, &c, "").await;
    assert_eq!(c.get(&callback).send().await.unwrap().status(), 302);
    let (s, code) = error_code(c.get(&callback).send().await.unwrap()).await;
    assert_eq!(
        (s, code.as_str()),
        (400, "invalid_state"),
        "a state is single use"
    );

    let callback = to_callback(&app, &c, "").await;
    app.clock.advance(Duration::minutes(11));
    let (s, code) = error_code(c.get(&callback).send().await.unwrap()).await;
    assert_eq!(
        (s, code.as_str()),
        (400, "invalid_state"),
        "expired after 10 minutes"
    );
    let (s, code) = error_code(
        c.get(format!(
            "{}/auth/github/callback?code=x&state=made-up",
            app.url
        ))
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!((s, code.as_str()), (400, "invalid_state"));
}

#[actix_web::test]
async fn provider_errors_and_upstream_failures_are_clear_and_sanitized() {
    let gh = FakeGithubOauth::start();
    let app = spawn_toml(&gh.config("")).await;
    let url = format!(
        "{}/auth/github/callback?error=access_denied&error_description=nope",
        app.url
    );
    let (s, code) = error_code(client().get(&url).send().await.unwrap()).await;
    assert_eq!((s, code.as_str()), (400, "access_denied"));
    let res = client()
        .get(&url)
        .header("accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let page = res.text().await.unwrap();
    assert!(page.contains("Sign-in failed") && page.contains("access_denied"));
    let res = client()
        .get(format!(
            "{}/auth/github/callback?error=<script>alert(1)</script>",
            app.url
        ))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert!(
        !res.text().await.unwrap().contains("<script>"),
        "no markup from the query reaches the page"
    );

    gh.broken.store(true, std::sync::atomic::Ordering::SeqCst);
    let c = client();
    let res = sign_in(&app, &c, "").await;
    let (s, code) = error_code(res).await;
    assert_eq!((s, code.as_str()), (502, "upstream_error"));
    let res = sign_in(&app, &c, "").await;
    let body = res.text().await.unwrap();
    assert!(
        !body.contains("10.1.2.3") && !body.contains(&gh.url) && !body.contains(GH_SECRET),
        "{body}"
    );
}

#[actix_web::test]
async fn allowed_users_and_orgs_admin_users_and_next() {
    let gh = FakeGithubOauth::start();
    let app = spawn_toml(
        &gh.config("")
            .replace("allowed_users = \"\"", "allowed_users = \"someone, else\""),
    )
    .await;
    let (s, code) = error_code(sign_in(&app, &client(), "").await).await;
    assert_eq!((s, code.as_str()), (403, "not_allowed"));
    assert_eq!(
        app.state().handles.user_view().len(),
        0,
        "nobody was created"
    );

    // Members of an allowed org may (the org scope is asked for); admin_users get Admin.
    let app = spawn_toml(
        &gh.config("allowed_orgs = [\"acme\"]\nadmin_users = [\"OctoCat\"]")
            .replace("allowed_users = \"\"", "allowed_users = \"someone\""),
    )
    .await;
    let c = client();
    let res = sign_in(&app, &c, "?next=//evil.example/x").await;
    assert_eq!(res.status(), 302);
    assert_eq!(
        location(&res),
        "/",
        "a next that is not a local path is ignored"
    );
    assert!(gh
        .scopes
        .lock()
        .unwrap()
        .last()
        .unwrap()
        .contains("read:org"));
    let me: Value = app
        .get_with(&c, "/account/api/me")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["roles"], serde_json::json!(["Admin"]));
}

#[actix_web::test]
async fn github_users_never_take_over_a_password_user_and_can_be_locked() {
    let gh = FakeGithubOauth::start();
    let app = spawn_toml(&gh.config("")).await;
    let password_user = app.add_user("octocat", PW, false).await;
    let c = client();
    assert_eq!(sign_in(&app, &c, "").await.status(), 302);
    let me: Value = app
        .get_with(&c, "/account/api/me")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["username"], "octocat@github");
    assert_ne!(me["id"], password_user["id"]);
    assert_eq!(
        app.login("octocat@github", "").await.status(),
        401,
        "a GitHub user has no password"
    );
    gatehouse::accounts::lock_user(
        &app.state(),
        &gatehouse::accounts::Actor::cli(),
        "octocat@github",
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        app.get_with(&c, "/account/api/me").await.status(),
        401,
        "the lock ended the session"
    );
    let (s, code) = error_code(sign_in(&app, &client(), "").await).await;
    assert_eq!((s, code.as_str()), (403, "account_locked"));
}

#[actix_web::test]
async fn without_github_configured_the_routes_are_404() {
    let app = spawn_app().await;
    app.add_user("admin", PW, false).await;
    assert_eq!(app.get("/auth/github").await.status(), 404);
}

#[actix_web::test]
async fn an_admin_grants_and_takes_the_admin_role_of_a_github_user() {
    let gh = FakeGithubOauth::start();
    let app = spawn_toml(&gh.config("")).await;
    app.add_user("root", PW, true).await;
    let c = client();
    assert_eq!(sign_in(&app, &c, "").await.status(), 302);
    let run = |req| {
        let state = app.state();
        async move { gatehouse::admin_socket::execute(&state, req).await }
    };
    use gatehouse::admin_socket::AdminRequest::UsersAdmin;
    let out = run(UsersAdmin {
        name: "octocat".into(),
        admin: true,
    })
    .await;
    assert!(
        out.ok && out.stderr.contains("roles: Admin"),
        "{}",
        out.stderr
    );
    let me: Value = app
        .get_with(&c, "/account/api/me")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        me["roles"],
        serde_json::json!(["Admin"]),
        "holds on the next request of the same session"
    );
    assert!(
        run(UsersAdmin {
            name: "octocat".into(),
            admin: false
        })
        .await
        .ok
    );
    let me: Value = app
        .get_with(&c, "/account/api/me")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["roles"], serde_json::json!([]));
    let out = run(UsersAdmin {
        name: "root".into(),
        admin: false,
    })
    .await;
    assert!(
        !out.ok && out.stderr.contains("only admin"),
        "the last admin keeps the role: {}",
        out.stderr
    );
    assert!(
        !run(UsersAdmin {
            name: "nobody".into(),
            admin: true
        })
        .await
        .ok
    );
    let audit = app.state().handles.store().list_audit(50).await.unwrap();
    assert!(audit
        .iter()
        .any(|e| e.action == "user.roles" && e.actor_name == "cli"));
}
