//! The whole gateway on the PostgreSQL store (a throwaway schema of the real
//! server): what the sled tests show about restarts holds here too.

use crate::helpers::*;
use actix_web::{App, HttpServer};
use gatehouse::config::Config;
use gatehouse::Gatehouse;
use gatehouse_actors::store::{PgStore, SharedStore};
use serde_json::{json, Value};
use std::sync::Arc;

pub fn pg_url() -> String {
    std::env::var("GATEHOUSE_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A fresh schema name for one test (`prefix` says which).
pub fn schema(prefix: &str) -> String {
    format!("{prefix}_{}", &gatehouse_actors::ids::random_id()[..10]).to_lowercase()
}

/// A gateway on `store`, served on a random port; answers its URL.
async fn serve_on(store: SharedStore) -> (Gatehouse, String) {
    serve_config(Config::defaults(), store).await
}

/// A gateway with `config` on `store`, served on a random port; answers its URL.
pub async fn serve_config(config: Config, store: SharedStore) -> (Gatehouse, String) {
    let gh = Gatehouse::builder(config)
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

/// Polls `check` until it holds (bounded, no timing threshold on the result).
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !check().await {
        assert!(std::time::Instant::now() < deadline, "{what} never held");
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

/// Two instances on one database: what happens on one holds on the other.
#[actix_web::test]
async fn two_instances_share_sessions_tokens_and_locks() {
    let schema = format!("gh_two_{}", &gatehouse_actors::ids::random_id()[..10]);
    let a_store = Arc::new(PgStore::connect(&pg_url(), Some(&schema)).await.unwrap());
    let b_store = Arc::new(PgStore::connect(&pg_url(), Some(&schema)).await.unwrap());
    let (a, a_url) = serve_on(a_store.clone()).await;
    let (_b, b_url) = serve_on(b_store).await;
    let cli = gatehouse::accounts::Actor::cli();
    gatehouse::accounts::add_user(&a.data(), &cli, "alice", PW, false, false)
        .await
        .unwrap();

    // A user added on A signs in on B; the session made on B works on A.
    let browser = client();
    eventually("alice can sign in on B", || {
        let (c, url) = (browser.clone(), b_url.clone());
        async move {
            c.post(format!("{url}/auth/login"))
                .json(&json!({"username": "alice", "password": PW}))
                .send()
                .await
                .unwrap()
                .status()
                == 200
        }
    })
    .await;
    eventually("B's session is valid on A", || {
        let (c, url) = (browser.clone(), a_url.clone());
        async move {
            c.get(format!("{url}/account/api/me"))
                .send()
                .await
                .unwrap()
                .status()
                == 200
        }
    })
    .await;

    // A token made on A works on B, and a revocation on A is refused on B.
    let token: Value = browser
        .post(format!("{a_url}/api/tokens"))
        .json(&json!({"name": "ci"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = token["token"].as_str().unwrap().to_owned();
    let me_with = |url: String, t: String| async move {
        client()
            .get(format!("{url}/account/api/me"))
            .bearer_auth(t)
            .send()
            .await
            .unwrap()
            .status()
    };
    eventually("A's token works on B", || {
        let (url, t) = (b_url.clone(), secret.clone());
        async move { me_with(url, t).await == 200 }
    })
    .await;
    let id = token["id"].as_str().unwrap();
    assert_eq!(
        browser
            .delete(format!("{a_url}/api/tokens/{id}"))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    eventually("the revocation on A holds on B", || {
        let (url, t) = (b_url.clone(), secret.clone());
        async move { me_with(url, t).await == 401 }
    })
    .await;

    // A lock on B ends the session on A.
    let b_data = _b.data();
    gatehouse::accounts::lock_user(&b_data, &cli, "alice", None)
        .await
        .unwrap();
    eventually("the lock on B ends the session on A", || {
        let (c, url) = (browser.clone(), a_url.clone());
        async move {
            c.get(format!("{url}/account/api/me"))
                .send()
                .await
                .unwrap()
                .status()
                == 401
        }
    })
    .await;
    a_store.drop_schema().await.unwrap();
}

/// `gatehouse migrate` applies the embedded migrations (once) and says
/// where the schema stands; on sled there is nothing to migrate.
#[actix_web::test]
async fn the_migrate_command_applies_the_embedded_migrations_once() {
    let dir = tempfile::tempdir().unwrap();
    let schema = schema("gh_mig");
    let file = dir.path().join("pg.toml");
    std::fs::write(
        &file,
        format!(
            "[store]\nbackend = \"postgres\"\nurl = \"{}\"\nschema = \"{schema}\"\n",
            pg_url()
        ),
    )
    .unwrap();
    let home = dir.path().join("home");
    let args = ["migrate", "--config", file.to_str().unwrap()];
    let first = cli_ok(&home, &args, None);
    let second = cli_ok(&home, &args, None);
    assert!(first.starts_with("schema at version "), "{first}");
    assert_eq!(first, second, "applying again changes nothing");
    let store = PgStore::connect(&pg_url(), Some(&schema)).await.unwrap();
    let applied = store.applied_migrations().await.unwrap();
    assert_eq!(
        first.trim(),
        format!(
            "schema at version {} ({} migrations applied)",
            applied.last().unwrap(),
            applied.len()
        )
    );
    store.drop_schema().await.unwrap();
    let sled = cli(&dir.path().join("other"), &["migrate"], None);
    assert!(sled.status.success());
    assert!(String::from_utf8_lossy(&sled.stderr).contains("needs no migrations"));
}
