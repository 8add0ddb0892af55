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

#[actix_web::test]
async fn avatars_are_checked_by_content_and_served_to_anyone() {
    let app = spawn_app().await;
    let user = app.add_user("alice", PW, false).await;
    let id = user["id"].as_str().unwrap();
    let put = |ct: &'static str, body: Vec<u8>| {
        let c = app.client.clone();
        let url = format!("{}/account/api/avatar", app.url);
        async move {
            c.put(url)
                .header("content-type", ct)
                .body(body)
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(
        put("image/png", vec![1]).await.status(),
        401,
        "needs a session"
    );
    app.login("alice", PW).await;
    let png = [
        &[0x89u8, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A][..],
        &[7u8; 64][..],
    ]
    .concat();
    assert_eq!(put("image/png", png.clone()).await.status(), 204);
    let res = client()
        .get(format!("{}/avatars/{id}", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "image/png");
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    assert_eq!(res.bytes().await.unwrap().to_vec(), png);
    let me: serde_json::Value = app.get("/account/api/me").await.json().await.unwrap();
    assert_eq!(me["avatar_url"], format!("/avatars/{id}"));

    // Not an image, or not the image it claims to be.
    let (s, code) = error_code(put("image/png", b"<svg onload=alert(1)>".to_vec()).await).await;
    assert_eq!((s, code.as_str()), (422, "invalid_image"));
    assert_eq!(put("image/jpeg", png.clone()).await.status(), 422);
    let webp = [&b"RIFF"[..], &[0, 0, 0, 0], &b"WEBP"[..], &[1u8; 32][..]].concat();
    assert_eq!(put("image/webp", webp.clone()).await.status(), 204);
    assert_eq!(
        put(
            "image/jpeg",
            [&[0xFFu8, 0xD8, 0xFF][..], &[0u8; 16][..]].concat()
        )
        .await
        .status(),
        204
    );
    let (s, code) = error_code(put("image/png", vec![0x89; 1024 * 1024 + 1]).await).await;
    assert_eq!((s, code.as_str()), (413, "payload_too_large"));
    let served = client()
        .get(format!("{}/avatars/{id}", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        served.headers()["content-type"],
        "image/jpeg",
        "the refused uploads changed nothing"
    );

    assert_eq!(
        client()
            .get(format!("{}/avatars/nobody", app.url))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    gatehouse::accounts::remove_user(&app.state(), &gatehouse::accounts::Actor::cli(), "alice")
        .await
        .unwrap();
    assert_eq!(
        client()
            .get(format!("{}/avatars/{id}", app.url))
            .send()
            .await
            .unwrap()
            .status(),
        404,
        "the avatar goes with its user"
    );
}
