use crate::helpers::*;
use serde_json::{json, Value};
use time::Duration;

#[actix_web::test]
async fn login_sets_a_safe_cookie_and_never_returns_the_token() {
    let app = spawn_app().await;
    app.add_user("alice", PW, false).await;
    let res = app.login("alice", PW).await;
    assert_eq!(res.status(), 200);
    let cookie = set_cookie(&res);
    assert!(cookie.starts_with("gatehouse_session="), "{cookie}");
    for flag in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(flag), "{cookie} lacks {flag}");
    }
    assert!(
        !cookie.contains("Secure"),
        "no Secure without secure_cookies: {cookie}"
    );
    let token = session_token(&res).unwrap();
    let text = res.text().await.unwrap();
    assert!(!text.contains(&token));
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["user"]["username"], "alice");
    assert_eq!(body["user"]["auth"], "credentials");
    assert_eq!(body["user"]["last_login"]["ip"], "127.0.0.1");
    assert!(body["user"].get("password").is_none());
    let session: Value = app.get("/auth/session").await.json().await.unwrap();
    assert_eq!(session["user"]["username"], "alice");
    assert!(session["expires_at"].as_str().unwrap().ends_with('Z'));
}

#[actix_web::test]
async fn secure_cookies_when_configured() {
    let app = spawn_with(|c| c.server.secure_cookies = true).await;
    app.add_user("alice", PW, false).await;
    let res = app.login("alice", PW).await;
    assert!(set_cookie(&res).contains("Secure"));
}

#[actix_web::test]
async fn unknown_user_and_wrong_password_get_identical_401s() {
    let app = spawn_app().await;
    app.add_user("alice", PW, false).await;
    let a = app.login("alice", "wrong-password-here").await;
    let b = app.login("nobody", "wrong-password-here").await;
    assert_eq!(a.status(), 401);
    assert_eq!(b.status(), 401);
    assert_eq!(
        a.headers().get("www-authenticate"),
        b.headers().get("www-authenticate")
    );
    assert!(a.headers().get("set-cookie").is_none());
    assert_eq!(a.text().await.unwrap(), b.text().await.unwrap());
}

#[actix_web::test]
async fn session_header_works_like_the_cookie() {
    let app = spawn_app().await;
    app.add_user("alice", PW, false).await;
    let token = session_token(&app.login("alice", PW).await).unwrap();
    let bare = client();
    assert_eq!(app.get_with(&bare, "/account/api/me").await.status(), 401);
    let res = bare
        .get(format!("{}/account/api/me", app.url))
        .header("X-Session-Token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // A forged or truncated token is refused.
    for bad in [&token[..20], "x", &"a".repeat(9000)] {
        let res = bare
            .get(format!("{}/account/api/me", app.url))
            .header("X-Session-Token", bad)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401, "{bad}");
    }
}

#[actix_web::test]
async fn throttles_a_username_even_with_the_right_password_then_recovers() {
    let app = spawn_app().await;
    app.add_user("alice", PW, false).await;
    for _ in 0..5 {
        assert_eq!(
            app.login("alice", "wrong-password-here").await.status(),
            401
        );
    }
    let res = app.login("alice", PW).await;
    assert_eq!(res.status(), 429);
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 0 && retry <= 15 * 60, "{retry}");
    let (_, code) = error_code(res).await;
    assert_eq!(code, "too_many_attempts");
    // Refused attempts do not extend the window.
    for _ in 0..3 {
        assert_eq!(app.login("alice", PW).await.status(), 429);
    }
    app.clock
        .advance(Duration::minutes(15) + Duration::seconds(1));
    assert_eq!(app.login("alice", PW).await.status(), 200);
}

#[actix_web::test]
async fn throttles_one_address_guessing_many_usernames() {
    let app = spawn_app().await;
    app.add_user("alice", PW, false).await;
    for i in 0..5 {
        assert_eq!(
            app.login(&format!("user{i}"), "wrong-password-here")
                .await
                .status(),
            401
        );
    }
    assert_eq!(app.login("alice", PW).await.status(), 429);
}

#[actix_web::test]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    // Untrusted peer: a spoofed X-Forwarded-For changes nothing.
    let app = spawn_app().await;
    app.add_user("alice", PW, false).await;
    for i in 0..5 {
        let res = app
            .client
            .post(format!("{}/auth/login", app.url))
            .header("x-forwarded-for", format!("203.0.113.{i}"))
            .json(&json!({"username": format!("u{i}"), "password": "wrong-password-here"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401);
    }
    assert_eq!(app.login("alice", PW).await.status(), 429);

    // Trusted loopback proxy: each forwarded client is counted on its own.
    let app = spawn_with(|c| c.server.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()]).await;
    app.add_user("alice", PW, false).await;
    for i in 0..5 {
        let res = app
            .client
            .post(format!("{}/auth/login", app.url))
            .header("x-forwarded-for", format!("203.0.113.{i}"))
            .json(&json!({"username": format!("u{i}"), "password": "wrong-password-here"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401);
    }
    let res = app
        .client
        .post(format!("{}/auth/login", app.url))
        .header("x-forwarded-for", "198.51.100.7")
        .json(&json!({"username": "alice", "password": PW}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["user"]["last_login"]["ip"], "198.51.100.7");
}

#[actix_web::test]
async fn locked_account_is_403_only_after_the_right_password() {
    let app = spawn_app().await;
    app.add_user("bob", PW, false).await;
    gatehouse::accounts::lock_user(
        &app.state(),
        &gatehouse::accounts::Actor::cli(),
        "bob",
        Some("left".into()),
    )
    .await
    .unwrap();
    let (status, code) = error_code(app.login("bob", "wrong-password-here").await).await;
    assert_eq!((status, code.as_str()), (401, "invalid_credentials"));
    let (status, code) = error_code(app.login("bob", PW).await).await;
    assert_eq!((status, code.as_str()), (403, "account_locked"));
}

#[actix_web::test]
async fn malformed_and_oversized_bodies_are_clean_errors() {
    let app = spawn_app().await;
    app.add_user("alice", PW, false).await;
    let url = format!("{}/auth/login", app.url);
    let send = |body: String| {
        let c = app.client.clone();
        let url = url.clone();
        async move {
            c.post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap()
        }
    };
    let (s, code) = error_code(send("{\"username\":".into()).await).await;
    assert_eq!((s, code.as_str()), (400, "invalid_json"));
    let (s, code) = error_code(send("{\"username\":\"alice\"}".into()).await).await;
    assert_eq!((s, code.as_str()), (400, "invalid_request"));
    // A type error must not echo the (password) value back.
    let res = send(r#"{"username":"alice","password":12345678901234}"#.into()).await;
    assert_eq!(res.status(), 400);
    let res = send(r#"{"username":"alice","password":["my-secret-value"]}"#.into()).await;
    assert_eq!(res.status(), 400);
    assert!(!res.text().await.unwrap().contains("my-secret-value"));
    let huge = format!(
        r#"{{"username":"alice","password":"{}"}}"#,
        "x".repeat(2 * 1024 * 1024)
    );
    let (s, code) = error_code(send(huge).await).await;
    assert_eq!((s, code.as_str()), (413, "payload_too_large"));
    let res = app
        .client
        .post(&url)
        .header("content-type", "text/plain")
        .body("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 415);
    // None of it signed anyone in or broke anything.
    assert_eq!(app.login("alice", PW).await.status(), 200);
}
