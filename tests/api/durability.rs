//! The real binary, restarted and killed.

use crate::helpers::*;
use serde_json::json;

#[actix_web::test]
async fn sessions_survive_a_restart() {
    let home = tempfile::tempdir().unwrap();
    cli_ok(
        home.path(),
        &["users", "add", "alice", "--password-stdin"],
        Some(PW),
    );
    let server = Server::start(home.path(), &[]);
    let c = client();
    let res = c
        .post(format!("{}/auth/login", server.url))
        .json(&json!({"username": "alice", "password": PW}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let token = session_token(&res).unwrap();
    server.stop();
    let server = Server::start(home.path(), &[]);
    let res = client()
        .get(format!("{}/auth/session", server.url))
        .header("x-session-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["user"]["username"], "alice");
}

/// Every acknowledged user add and sign-in survives `kill -9` right after.
#[actix_web::test]
async fn kill9_after_a_burst_loses_nothing_acknowledged() {
    let home = tempfile::tempdir().unwrap();
    cli_ok(
        home.path(),
        &["users", "add", "admin", "--password-stdin"],
        Some(PW),
    );
    let server = Server::start(home.path(), &[]);
    let n = 12;
    // Users added over the admin socket, concurrently.
    let adds: Vec<_> = (0..n)
        .map(|i| {
            let home = home.path().to_owned();
            std::thread::spawn(move || {
                let name = format!("user{i}");
                cli_ok(
                    &home,
                    &["users", "add", &name, "--password-stdin"],
                    Some(&format!("{PW}-{i}")),
                );
                name
            })
        })
        .collect();
    let names: Vec<String> = adds.into_iter().map(|t| t.join().unwrap()).collect();
    // Sign-ins, concurrently; each acknowledged token is recorded.
    let mut logins = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let (url, name) = (server.url.clone(), name.clone());
        logins.push(actix_rt::spawn(async move {
            let res = client()
                .post(format!("{url}/auth/login"))
                .json(&json!({"username": name, "password": format!("{PW}-{i}")}))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
            session_token(&res).unwrap()
        }));
    }
    let mut tokens = Vec::new();
    for l in logins {
        tokens.push(l.await.unwrap());
    }
    server.kill9();

    let listed = cli_ok(home.path(), &["users", "list"], None);
    for name in &names {
        assert!(
            listed.lines().any(|l| l.starts_with(&format!("{name}  "))),
            "{name} lost:\n{listed}"
        );
    }
    let server = Server::start(home.path(), &[]);
    for t in &tokens {
        let res = client()
            .get(format!("{}/auth/session", server.url))
            .header("x-session-token", t)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "an acknowledged session was lost");
    }
}

#[actix_web::test]
async fn llms_import_then_sign_in_with_the_old_password_upgrades_the_hash() {
    let home = tempfile::tempdir().unwrap();
    let salt = "9f2c";
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        format!("{salt}legacy-password-1").as_bytes(),
    );
    let users = json!([
        {"username": "admin", "password_hash": format!("{salt}:{}", hex::encode(digest)), "roles": ["Admin"], "created": "2025-01-02T03:04:05Z"},
        {"username": "gone", "password_hash": format!("{salt}:{}", hex::encode(digest)), "locked": true, "lock_reason": "left"}
    ]);
    let file = home.path().join("users.json");
    std::fs::write(&file, users.to_string()).unwrap();
    let out = cli(
        home.path(),
        &["users", "import-llms", file.to_str().unwrap()],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("imported 2 users"));
    let listed = cli_ok(home.path(), &["users", "list"], None);
    assert!(
        listed.contains("admin  Admin  created: 2025-01-02T03:04:05Z"),
        "{listed}"
    );
    assert!(
        listed.contains("gone  -  created:") && listed.contains("LOCKED: left"),
        "{listed}"
    );

    let server = Server::start(home.path(), &[]);
    let login = |pw: &'static str| {
        let url = server.url.clone();
        async move {
            client()
                .post(format!("{url}/auth/login"))
                .json(&json!({"username": "admin", "password": pw}))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(login("wrong-password-1").await, 401);
    assert_eq!(login("legacy-password-1").await, 200);
    let res = client()
        .post(format!("{}/auth/login", server.url))
        .json(&json!({"username": "gone", "password": "legacy-password-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    server.stop();
    // The stored hash is Argon2id now (read through the store itself).
    {
        use gatehouse_actors::model::PasswordHash;
        use gatehouse_actors::store::{SledStore, Store};
        let store = SledStore::open(&home.path().join("db")).unwrap();
        let users = store.load_users().await.unwrap();
        let hash_of = |n: &str| {
            users
                .iter()
                .find(|u| u.username == n)
                .unwrap()
                .password
                .clone()
                .unwrap()
        };
        assert!(
            matches!(hash_of("admin"), PasswordHash::Argon2 { phc } if phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"))
        );
        assert!(
            matches!(hash_of("gone"), PasswordHash::LegacySha256 { .. }),
            "only a sign-in upgrades"
        );
    }
    let server = Server::start(home.path(), &[]);
    let res = client()
        .post(format!("{}/auth/login", server.url))
        .json(&json!({"username": "admin", "password": "legacy-password-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}
