use crate::helpers::*;
use gatehouse_actors::supervisor::CheckNow;
use gatehouse_actors::Crash;
use std::time::{Duration, Instant};

/// The supervisor is held back (1 h interval) so the dead actor stays dead
/// until the test asks for the check; requests meanwhile get a quick 503.
#[actix_web::test]
async fn a_panicking_actor_gives_503s_not_hangs_then_is_replaced_with_its_state() {
    let app = spawn_full(|_| {}, Duration::from_secs(3600)).await;
    app.add_user("alice", PW, false).await;
    assert_eq!(app.login("alice", PW).await.status(), 200);
    let handles = app.state().handles.clone();

    handles.users().do_send(Crash);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    let (status, code) = error_code(app.login_with(&client(), "alice", PW).await).await;
    assert_eq!((status, code.as_str()), (503, "service_unavailable"));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a dead actor must not hang requests"
    );
    let ready = app.get("/ready").await;
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["failing"], serde_json::json!(["users"]));
    // The existing session still validates: the hot path reads the snapshot.
    assert_eq!(app.get("/account/api/me").await.status(), 200);

    app.gh.supervisor().send(CheckNow).await.unwrap();
    assert_eq!(handles.restarts(), 1);
    assert_eq!(app.get("/ready").await.status(), 200);
    // The fresh actor reloaded alice from the store.
    assert_eq!(app.login_with(&client(), "alice", PW).await.status(), 200);

    handles.sessions().do_send(Crash);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let res = app
        .client
        .post(format!("{}/auth/logout", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    app.gh.supervisor().send(CheckNow).await.unwrap();
    // Sessions were reloaded from the store: the cookie still works.
    assert_eq!(app.get("/account/api/me").await.status(), 200);
    assert_eq!(handles.restarts(), 2);
}

#[actix_web::test]
async fn the_supervisor_replaces_a_dead_actor_by_itself() {
    let app = spawn_app().await; // checks every 250 ms
    app.add_user("alice", PW, false).await;
    let handles = app.state().handles.clone();
    handles.oauth().do_send(Crash);
    handles.sessions().do_send(Crash);
    let deadline = Instant::now() + Duration::from_secs(10);
    while handles.restarts() < 2 {
        assert!(
            Instant::now() < deadline,
            "the supervisor did not replace the actors"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.get("/ready").await.status(), 200);
    assert_eq!(app.login("alice", PW).await.status(), 200);
}

#[actix_web::test]
async fn a_burst_of_requests_during_a_crash_all_get_answers() {
    let app = spawn_full(|_| {}, Duration::from_millis(300)).await;
    app.add_user("alice", PW, false).await;
    let handles = app.state().handles.clone();
    let mut tasks = Vec::new();
    for i in 0..20 {
        if i == 5 {
            handles.users().do_send(Crash);
        }
        let (c, url) = (client(), app.url.clone());
        tasks.push(actix_rt::spawn(async move {
            c.post(format!("{url}/auth/login"))
                .json(&serde_json::json!({"username": "alice", "password": PW}))
                .send()
                .await
                .map(|r| r.status().as_u16())
        }));
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap().expect("every request is answered"));
    }
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 503),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&503) || handles.restarts() == 1,
        "{statuses:?}"
    );
    assert_eq!(*statuses.last().unwrap(), 200, "{statuses:?}");
}
