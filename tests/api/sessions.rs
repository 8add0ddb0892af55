use crate::helpers::*;
use gatehouse::accounts::{self, Actor};
use gatehouse_actors::session::Sweep;
use serde_json::Value;
use time::Duration;

#[actix_web::test]
async fn logout_ends_the_session_and_clears_the_cookie() {
    let app = spawn_app().await;
    app.add_user("alice", PW, false).await;
    let token = session_token(&app.login("alice", PW).await).unwrap();
    let res = app
        .client
        .post(format!("{}/auth/logout", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let cookie = set_cookie(&res);
    assert!(
        cookie.starts_with("gatehouse_session=;") && cookie.contains("Max-Age=0"),
        "{cookie}"
    );
    let res = client()
        .get(format!("{}/auth/session", app.url))
        .header("x-session-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(app
        .state()
        .handles
        .store()
        .load_sessions()
        .await
        .unwrap()
        .is_empty());
}

#[actix_web::test]
async fn lock_ends_a_live_session_on_its_next_request() {
    let app = spawn_app().await;
    app.add_user("bob", PW, false).await;
    app.login("bob", PW).await;
    assert_eq!(app.get("/account/api/me").await.status(), 200);
    accounts::lock_user(&app.state(), &Actor::cli(), "bob", None)
        .await
        .unwrap();
    assert_eq!(app.get("/account/api/me").await.status(), 401);
    assert!(app
        .state()
        .handles
        .store()
        .load_sessions()
        .await
        .unwrap()
        .is_empty());
    // Unlocking does not bring the old session back.
    accounts::unlock_user(&app.state(), &Actor::cli(), "bob")
        .await
        .unwrap();
    assert_eq!(app.get("/account/api/me").await.status(), 401);
    assert_eq!(app.login("bob", PW).await.status(), 200);
}

#[actix_web::test]
async fn removed_user_is_gone_and_a_new_one_with_the_name_is_someone_else() {
    let app = spawn_app().await;
    let old = app.add_user("carol", PW, false).await;
    let token = session_token(&app.login("carol", PW).await).unwrap();
    accounts::remove_user(&app.state(), &Actor::cli(), "carol")
        .await
        .unwrap();
    assert_eq!(app.get("/account/api/me").await.status(), 401);
    let new = app.add_user("carol", PW, false).await;
    assert_ne!(old["id"], new["id"]);
    let res = client()
        .get(format!("{}/account/api/me", app.url))
        .header("x-session-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

#[actix_web::test]
async fn role_change_holds_on_the_next_request_of_the_same_session() {
    let app = spawn_app().await;
    app.add_user("dave", PW, false).await;
    app.login("dave", PW).await;
    let me: Value = app.get("/account/api/me").await.json().await.unwrap();
    assert_eq!(me["roles"], serde_json::json!([]));
    let msg = gatehouse_actors::users::ChangeUser {
        user: gatehouse_actors::users::UserRef::Name("dave".into()),
        change: gatehouse_actors::model::UserChange::Roles(vec!["Admin".into()]),
        end: None,
    };
    app.state()
        .handles
        .users()
        .send(msg)
        .await
        .unwrap()
        .unwrap();
    let me: Value = app.get("/account/api/me").await.json().await.unwrap();
    assert_eq!(me["roles"], serde_json::json!(["Admin"]));
}

#[actix_web::test]
async fn expired_sessions_are_refused_then_swept_from_memory_and_store() {
    let app = spawn_with(|c| c.auth.session_ttl = Duration::hours(1)).await;
    app.add_user("erin", PW, false).await;
    app.login("erin", PW).await;
    let other = client();
    app.clock.advance(Duration::minutes(30));
    app.login_with(&other, "erin", PW).await;
    assert_eq!(app.get("/auth/session").await.status(), 200);
    app.clock.advance(Duration::minutes(31));
    assert_eq!(app.get("/auth/session").await.status(), 401);
    assert_eq!(app.get_with(&other, "/auth/session").await.status(), 200);
    let handles = &app.state().handles;
    let swept = handles
        .sessions()
        .send(Sweep { now: handles.now() })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(swept, 1);
    assert_eq!(handles.session_view().len(), 1);
    assert_eq!(handles.store().load_sessions().await.unwrap().len(), 1);
}

#[actix_web::test]
async fn last_seen_is_batched_to_the_store_at_the_sweep() {
    let app = spawn_app().await;
    app.add_user("fay", PW, false).await;
    app.login("fay", PW).await;
    let handles = &app.state().handles;
    let before = handles.store().load_sessions().await.unwrap()[0].last_seen_at;
    app.clock.advance(Duration::minutes(5));
    assert_eq!(app.get("/account/api/me").await.status(), 200);
    // Not written per request…
    assert_eq!(
        handles.store().load_sessions().await.unwrap()[0].last_seen_at,
        before
    );
    // …but at the sweep.
    handles
        .sessions()
        .send(Sweep { now: handles.now() })
        .await
        .unwrap()
        .unwrap();
    let after = handles.store().load_sessions().await.unwrap()[0].last_seen_at;
    assert!(
        after >= before + Duration::minutes(5) - Duration::seconds(1),
        "{before} {after}"
    );
}

#[actix_web::test]
async fn session_tokens_and_passwords_never_reach_the_data_files() {
    let app = spawn_app().await;
    app.add_user("gus", PW, false).await;
    let mut tokens = Vec::new();
    for _ in 0..3 {
        tokens.push(session_token(&app.login_with(&client(), "gus", PW).await).unwrap());
    }
    let handles = &app.state().handles;
    handles
        .sessions()
        .send(Sweep { now: handles.now() })
        .await
        .unwrap()
        .unwrap();
    let bytes = all_file_bytes(app.home.path());
    assert!(!bytes.is_empty());
    for t in &tokens {
        assert!(
            !contains(&bytes, t.as_bytes()),
            "a raw session token is on disk"
        );
    }
    assert!(!contains(&bytes, PW.as_bytes()), "a password is on disk");
    // The digests are what is stored.
    let digest = hex::encode(gatehouse_actors::TokenHash::of(&tokens[0]).0);
    assert!(contains(&bytes, digest.as_bytes()));
}

#[actix_web::test]
async fn the_sweep_timer_runs_by_itself() {
    let app = spawn_with(|c| {
        c.store.sweep_interval = std::time::Duration::from_millis(100);
        c.auth.session_ttl = Duration::hours(1);
    })
    .await;
    app.add_user("hal", PW, false).await;
    app.login("hal", PW).await;
    let h = app.state().handles.clone();
    let state = h
        .oauth()
        .send(gatehouse_actors::oauth::CreateState {
            provider: "github".into(),
            browser: gatehouse_actors::TokenHash::of("b"),
            pkce_verifier: "v".into(),
            nonce: None,
            next: None,
            now: h.now(),
        })
        .await
        .unwrap()
        .unwrap();
    app.clock.advance(Duration::hours(2));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let sessions = h.store().load_sessions().await.unwrap();
        let taken = h.store().take_oauth_state(&state.state).await.unwrap();
        if sessions.is_empty() && taken.is_none() && h.session_view().is_empty() {
            break;
        }
        if let Some(s) = taken {
            // Put it back: only the sweep may remove it.
            h.store().insert_oauth_state(s).await.unwrap();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the sweep timer never ran"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
