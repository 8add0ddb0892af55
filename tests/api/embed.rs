//! The `embed` example, built by `cargo test`, run as a process.

use crate::helpers::*;
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn example_path() -> std::path::PathBuf {
    // target/debug/deps/api-… → target/debug/examples/embed
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join("embed")
}

#[actix_web::test]
async fn a_product_mounts_gatehouse_and_guards_its_own_routes() {
    let home = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(example_path())
        .arg(port.to_string())
        .env("GATEHOUSE_HOME", home.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the embed example is built by cargo test");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .expect("example started")
        .to_owned();

    // Users are added through the example's admin socket, by the real CLI.
    cli_ok(
        home.path(),
        &["users", "add", "ann", "--password-stdin"],
        Some(PW),
    );
    cli_ok(
        home.path(),
        &["users", "add", "root", "--admin", "--password-stdin"],
        Some(PW),
    );

    let c = client();
    assert_eq!(c.get(format!("{url}/")).send().await.unwrap().status(), 200);
    let res = c.get(format!("{url}/product/hello")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert!(res.headers().contains_key("www-authenticate"));
    let res = c
        .post(format!("{url}/auth/login"))
        .json(&json!({"username": "ann", "password": PW}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let hello: serde_json::Value = c
        .get(format!("{url}/product/hello"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(hello["hello"], "ann");
    let (status, code) =
        error_code(c.get(format!("{url}/product/admin")).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (403, "insufficient_scope"));

    let admin = client();
    admin
        .post(format!("{url}/auth/login"))
        .json(&json!({"username": "root", "password": PW}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        admin
            .get(format!("{url}/product/admin"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// A product that builds a Gatehouse and lets it go gets its store back:
/// nothing it built keeps the state (and so the store, or a PostgreSQL
/// pool) alive once the Gatehouse and its runtime are gone. The task
/// runner's factory, which the state holds, once held the state itself.
#[test]
fn a_dropped_gatehouse_lets_go_of_its_store() {
    let dir = tempfile::tempdir().unwrap();
    let store: gatehouse_actors::store::SharedStore = std::sync::Arc::new(
        gatehouse_actors::store::SledStore::open(&dir.path().join("db")).unwrap(),
    );
    let weak = std::sync::Arc::downgrade(&store);
    let config = gatehouse::config::Config::defaults();
    std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let gh = gatehouse::Gatehouse::builder(config)
                .home(dir.path())
                .store(store)
                .build()
                .await
                .unwrap();
            // Let the actors start and the task runner be asked for.
            actix_rt::time::sleep(std::time::Duration::from_millis(300)).await;
            drop(gh);
        });
    })
    .join()
    .unwrap();
    assert!(
        weak.upgrade().is_none(),
        "something still holds the store after the Gatehouse and its runtime are gone"
    );
}
