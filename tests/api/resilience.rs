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

/// Under steady load (12 clients signing in, reading their account and
/// signing out in a loop), the users actor and then the sessions actor
/// panic. Every request is answered; the only errors are 503s, and only for
/// requests sent between a crash and the supervisor's replacement of the
/// actor; every request sent after it succeeds.
#[actix_web::test]
async fn actors_panicking_under_load_cost_only_503s_until_replaced() {
    use std::cell::RefCell;
    use std::rc::Rc;

    // One address signs in many times a second: lift the per-address rate.
    let app = spawn_full(
        |c| c.server.auth_rate_per_minute = 0,
        Duration::from_millis(200),
    )
    .await;
    for i in 0..12 {
        app.add_user(&format!("user{i}"), PW, false).await;
    }
    let handles = app.state().handles.clone();
    // (sent at, answered at, what, status or transport error)
    type Seen = Vec<(Instant, Instant, &'static str, Result<u16, String>)>;
    let seen: Rc<RefCell<Seen>> = Default::default();
    let stop = Rc::new(std::cell::Cell::new(false));
    let mut loops = Vec::new();
    for i in 0..12 {
        let (url, seen, stop) = (app.url.clone(), seen.clone(), stop.clone());
        loops.push(actix_rt::spawn(async move {
            let c = client();
            let name = format!("user{i}");
            while !stop.get() {
                let at = Instant::now();
                let res = c
                    .post(format!("{url}/auth/login"))
                    .json(&serde_json::json!({"username": name, "password": PW}))
                    .send()
                    .await;
                let status = res.map(|r| r.status().as_u16()).map_err(|e| e.to_string());
                seen.borrow_mut()
                    .push((at, Instant::now(), "login", status.clone()));
                if status != Ok(200) {
                    continue;
                }
                for (what, method) in [("me", "GET"), ("logout", "POST")] {
                    let at = Instant::now();
                    let path = if what == "me" {
                        "/account/api/me"
                    } else {
                        "/auth/logout"
                    };
                    let req = if method == "GET" {
                        c.get(format!("{url}{path}"))
                    } else {
                        c.post(format!("{url}{path}"))
                    };
                    let status = req
                        .send()
                        .await
                        .map(|r| r.status().as_u16())
                        .map_err(|e| e.to_string());
                    seen.borrow_mut().push((at, Instant::now(), what, status));
                }
            }
        }));
    }
    let replaced = |n: u64| {
        let handles = handles.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            while handles.restarts() < n {
                assert!(Instant::now() < deadline, "actor {n} was not replaced");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Instant::now()
        }
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    let crash1 = Instant::now();
    handles.users().do_send(Crash);
    let back1 = replaced(1).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let crash2 = Instant::now();
    handles.sessions().do_send(Crash);
    let back2 = replaced(2).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    stop.set(true);
    for l in loops {
        l.await.unwrap();
    }

    let seen = seen.take();
    let ok = |what: &str, s: u16| match what {
        "logout" => s == 204,
        _ => s == 200,
    };
    let mut errors = 0;
    for (at, done, what, status) in seen.iter() {
        let status = status
            .as_ref()
            .unwrap_or_else(|e| panic!("{what} not answered: {e}"));
        if ok(what, *status) {
            continue;
        }
        errors += 1;
        assert_eq!(*status, 503, "{what}: only 503s are allowed");
        // Affected: answered after a crash, sent before that actor was back.
        let in_window = (*done >= crash1 && *at <= back1) || (*done >= crash2 && *at <= back2);
        let ms = |t: Instant| {
            t.saturating_duration_since(crash1).as_millis() as i64
                - crash1.saturating_duration_since(t).as_millis() as i64
        };
        assert!(
            in_window,
            "{what} sent at {} ms got 503 outside the restart windows \
             ({} to {} ms, {} to {} ms)",
            ms(*at),
            ms(crash1),
            ms(back1),
            ms(crash2),
            ms(back2)
        );
    }
    let after = seen.iter().filter(|(at, ..)| *at > back2).count();
    assert!(after > 12, "too few requests after the restarts ({after})");
    eprintln!(
        "{} requests, {errors} answered 503 during the restarts",
        seen.len()
    );
    assert_eq!(app.get("/ready").await.status(), 200);
}
