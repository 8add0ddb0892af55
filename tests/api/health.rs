use crate::helpers::*;

#[actix_web::test]
async fn health_and_ready() {
    let app = spawn_app().await;
    let res = app.get("/health").await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<serde_json::Value>().await.unwrap()["status"],
        "ok"
    );
    let res = app.get("/ready").await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<serde_json::Value>().await.unwrap()["store"],
        "sled"
    );
}

#[actix_web::test]
async fn unknown_route_is_openai_shaped_404() {
    let app = spawn_app().await;
    let (status, code) = error_code(app.get("/no/such/route").await).await;
    assert_eq!((status, code.as_str()), (404, "not_found"));
}

#[actix_web::test]
async fn without_users_everything_but_health_says_how_to_add_one() {
    let app = spawn_app().await;
    assert_eq!(app.get("/health").await.status(), 200);
    assert_eq!(app.get("/ready").await.status(), 200);
    for res in [
        app.get("/account/api/me").await,
        app.login("admin", PW).await,
        app.get("/auth/session").await,
    ] {
        assert_eq!(res.status(), 401);
        assert!(res.headers().contains_key("www-authenticate"));
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "no_users");
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("gatehouse users add"));
    }
    // The first user turns sign-in on at once.
    app.add_user("admin", PW, false).await;
    assert_eq!(app.login("admin", PW).await.status(), 200);
    assert_eq!(app.get("/account/api/me").await.status(), 200);
}

#[actix_web::test]
async fn anonymous_local_admin_only_when_configured_and_only_without_users() {
    let app = spawn_with(|c| c.auth.allow_anonymous_local = true).await;
    let res = app.get("/account/api/me").await;
    assert_eq!(res.status(), 200);
    let me: serde_json::Value = res.json().await.unwrap();
    assert_eq!(me["username"], "local");
    assert_eq!(me["roles"][0], "Admin");
    // A bad credential is refused even here: fail closed.
    let res = app
        .client
        .get(format!("{}/account/api/me", app.url))
        .header("x-session-token", "bogus")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    app.add_user("alice", PW, false).await;
    assert_eq!(app.get("/account/api/me").await.status(), 401);
}

#[actix_web::test]
async fn the_sign_in_page_is_open_and_locked_down_by_headers() {
    let app = spawn_app().await;
    app.add_user("alice", PW, false).await;
    let res = app.get("/").await;
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let csp = res.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    let html = res.text().await.unwrap();
    for id in [
        "login-form",
        "username",
        "password",
        "login-submit",
        "providers",
        "whoami",
        "logout",
    ] {
        assert!(html.contains(&format!("id=\"{id}\"")), "#{id}");
    }
    assert!(
        !html.contains("<script>"),
        "no inline script (the CSP forbids it)"
    );
    let js = app.get("/static/app.js").await;
    assert_eq!(js.status(), 200);
    assert!(js.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    assert_eq!(app.get("/static/app.css").await.status(), 200);
    assert_eq!(app.get("/static/nope.js").await.status(), 404);
}
