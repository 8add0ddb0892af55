use crate::helpers::*;
use serde_json::json;

#[actix_web::test]
async fn me_needs_a_session() {
    let app = spawn_app().await;
    let user = app.add_user("alice", PW, false).await;
    assert_eq!(app.get("/account/api/me").await.status(), 401);
    app.login("alice", PW).await;
    let me: serde_json::Value = app.get("/account/api/me").await.json().await.unwrap();
    assert_eq!(me["id"], user["id"]);
    for key in [
        "id",
        "username",
        "display_name",
        "avatar_url",
        "roles",
        "auth",
        "created_at",
        "last_login",
        "locked",
    ] {
        assert!(me.get(key).is_some(), "User lacks {key}");
    }
}

#[actix_web::test]
async fn own_password_change_keeps_this_session_and_ends_the_others() {
    let app = spawn_app().await;
    app.add_user("alice", PW, false).await;
    app.login("alice", PW).await;
    let other = client();
    app.login_with(&other, "alice", PW).await;
    let res = app
        .post_json(
            "/account/api/password",
            json!({"current": "not-the-password", "new": "a-brand-new-password"}),
        )
        .await;
    assert_eq!(res.status(), 403);
    let (s, code) = error_code(
        app.post_json(
            "/account/api/password",
            json!({"current": PW, "new": "short"}),
        )
        .await,
    )
    .await;
    assert_eq!((s, code.as_str()), (422, "weak_password"));
    let (s, _) = error_code(
        app.post_json("/account/api/password", json!({"current": PW}))
            .await,
    )
    .await;
    assert_eq!(s, 400);
    let res = app
        .post_json(
            "/account/api/password",
            json!({"current": PW, "new": "a-brand-new-password"}),
        )
        .await;
    assert_eq!(res.status(), 204);
    assert_eq!(app.get("/account/api/me").await.status(), 200);
    assert_eq!(app.get_with(&other, "/account/api/me").await.status(), 401);
    assert_eq!(app.login_with(&client(), "alice", PW).await.status(), 401);
    assert_eq!(
        app.login_with(&client(), "alice", "a-brand-new-password")
            .await
            .status(),
        200
    );
}

#[actix_web::test]
async fn guessing_the_current_password_is_throttled() {
    let app = spawn_app().await;
    app.add_user("alice", PW, false).await;
    app.login("alice", PW).await;
    for _ in 0..5 {
        let res = app
            .post_json(
                "/account/api/password",
                json!({"current": "guess-guess-guess", "new": "a-brand-new-password"}),
            )
            .await;
        assert_eq!(res.status(), 403);
    }
    let res = app
        .post_json(
            "/account/api/password",
            json!({"current": PW, "new": "a-brand-new-password"}),
        )
        .await;
    assert_eq!(res.status(), 429);
}

#[actix_web::test]
async fn admin_reset_ends_every_session() {
    let app = spawn_app().await;
    app.add_user("alice", PW, false).await;
    app.login("alice", PW).await;
    app.add_user("alice", "reset-by-the-admin", false).await;
    assert_eq!(app.get("/account/api/me").await.status(), 401);
    assert_eq!(app.login("alice", "reset-by-the-admin").await.status(), 200);
}
