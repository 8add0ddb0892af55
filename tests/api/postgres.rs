//! The whole gateway on the PostgreSQL store (a throwaway schema of the real
//! server): what the sled tests show about restarts holds here too.

use crate::helpers::*;
use actix_web::{App, HttpServer};
use gatehouse::config::Config;
use gatehouse::Gatehouse;
use gatehouse_actors::store::{PgStore, SharedStore};
use serde_json::{json, Value};
use std::sync::Arc;

fn pg_url() -> String {
    std::env::var("GATEHOUSE_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A gateway on `store`, served on a random port; answers its URL.
async fn serve_on(store: SharedStore) -> (Gatehouse, String) {
    let gh = Gatehouse::builder(Config::defaults())
        .store(store)
        .build()
        .await
        .expect("gatehouse starts on PostgreSQL");
    let data = gh.data();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .configure(gatehouse::configure)
    })
    .workers(1)
    .bind(("127.0.0.1", 0))
    .unwrap();
    let url = format!("http://{}", server.addrs()[0]);
    actix_rt::spawn(server.run());
    (gh, url)
}

#[actix_web::test]
async fn sessions_tokens_and_locks_hold_across_a_restart_on_postgres() {
    let schema = format!("gh_api_{}", &gatehouse_actors::ids::random_id()[..10]);
    let store = Arc::new(
        PgStore::connect(&pg_url(), Some(&schema))
            .await
            .expect("PostgreSQL at 127.0.0.1:5432"),
    );
    let (first, url) = serve_on(store.clone()).await;
    let ready: Value = client()
        .get(format!("{url}/ready"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["store"], "postgres");
    gatehouse::accounts::add_user(
        &first.data(),
        &gatehouse::accounts::Actor::cli(),
        "alice",
        PW,
        false,
        false,
    )
    .await
    .unwrap();
    gatehouse::accounts::add_user(
        &first.data(),
        &gatehouse::accounts::Actor::cli(),
        "bob",
        PW,
        false,
        false,
    )
    .await
    .unwrap();
    let c = client();
    let res = c
        .post(format!("{url}/auth/login"))
        .json(&json!({"username": "alice", "password": PW}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let session = session_token(&res).unwrap();
    let token: Value = c
        .post(format!("{url}/api/tokens"))
        .json(&json!({"name": "ci"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["token"].as_str().unwrap().to_owned();
    let bob = client();
    bob.post(format!("{url}/auth/login"))
        .json(&json!({"username": "bob", "password": PW}))
        .send()
        .await
        .unwrap();
    gatehouse::accounts::lock_user(
        &first.data(),
        &gatehouse::accounts::Actor::cli(),
        "bob",
        None,
    )
    .await
    .unwrap();
    drop(first);

    // A fresh set of actors on the same database: everything reloads from it.
    let reopened = Arc::new(PgStore::connect(&pg_url(), Some(&schema)).await.unwrap());
    let (_second, url2) = serve_on(reopened).await;
    let me = |h: (&'static str, String)| {
        let url2 = url2.clone();
        async move {
            client()
                .get(format!("{url2}/account/api/me"))
                .header(h.0, h.1)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(me(("x-session-token", session.clone())).await, 200);
    assert_eq!(me(("authorization", format!("Bearer {token}"))).await, 200);
    let res = client()
        .post(format!("{url2}/auth/login"))
        .json(&json!({"username": "bob", "password": PW}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403, "bob is still locked");
    // A token signed before the restart verifies with the key from the database.
    let jwks: Value = client()
        .get(format!("{url2}/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
    store.drop_schema().await.unwrap();
}
