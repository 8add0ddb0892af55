use crate::helpers::*;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;

#[actix_web::test]
async fn cli_changes_hold_on_the_running_server_at_once() {
    let home = tempfile::tempdir().unwrap();
    cli_ok(
        home.path(),
        &["users", "add", "admin", "--admin", "--password-stdin"],
        Some(PW),
    );
    let server = Server::start(home.path(), &[]);
    let sock = home.path().join("admin.sock");
    assert_eq!(
        std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(home.path()).unwrap().permissions().mode() & 0o777,
        0o700
    );

    // A user added while the server runs can sign in at once.
    cli_ok(
        home.path(),
        &["users", "add", "bob", "--password-stdin"],
        Some(PW),
    );
    let c = client();
    let login = c
        .post(format!("{}/auth/login", server.url))
        .json(&json!({"username": "bob", "password": PW}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    assert!(login
        .headers()
        .get("x-request-id")
        .is_some_and(|v| v.len() >= 16));
    assert_eq!(
        c.get(format!("{}/account/api/me", server.url))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // A lock ends the live session on its next request.
    let out = cli(
        home.path(),
        &["users", "lock", "bob", "--reason", "on leave"],
        None,
    );
    assert!(out.status.success());
    assert_eq!(
        c.get(format!("{}/account/api/me", server.url))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let listed = cli_ok(home.path(), &["users", "list"], None);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("bob  -  created: ") && l.ends_with("  LOCKED: on leave")),
        "{listed}"
    );
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("admin  Admin  created: ") && !l.contains("LOCKED")),
        "{listed}"
    );
    cli_ok(home.path(), &["users", "unlock", "bob"], None);
    let login = c
        .post(format!("{}/auth/login", server.url))
        .json(&json!({"username": "bob", "password": PW}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);

    // Removal ends sessions too.
    cli_ok(home.path(), &["users", "remove", "bob"], None);
    assert_eq!(
        c.get(format!("{}/account/api/me", server.url))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let out = cli(home.path(), &["users", "remove", "bob"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such user"));

    // Re-adding resets the password and ends the sessions.
    let login = c
        .post(format!("{}/auth/login", server.url))
        .json(&json!({"username": "admin", "password": PW}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    cli_ok(
        home.path(),
        &["users", "add", "admin", "--password-stdin"],
        Some("a-new-admin-password"),
    );
    assert_eq!(
        c.get(format!("{}/account/api/me", server.url))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    // Nothing secret reached the server's log.
    let log = server.log();
    assert!(log.contains("admin socket command"), "the log is captured");
    assert!(!log.contains(PW) && !log.contains("a-new-admin-password"));
    assert!(!log.contains("$argon2id$"), "no hash in the log");
    assert!(
        log.contains("request_id"),
        "requests are logged with their id"
    );
    let token = session_token(&login).unwrap();
    assert!(!log.contains(&token));
}

#[test]
fn cli_refuses_bad_input_clearly() {
    let home = tempfile::tempdir().unwrap();
    let out = cli(
        home.path(),
        &["users", "add", "alice", "--password-stdin"],
        Some("short"),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 12"));
    let out = cli(
        home.path(),
        &["users", "add", "../etc", "--password-stdin"],
        Some(PW),
    );
    assert!(!out.status.success());
    // Without a TTY and without --password-stdin, it says what to do.
    let out = cli(home.path(), &["users", "add", "alice"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--password-stdin"));
    let out = cli(home.path(), &["users", "lock", "nobody"], None);
    assert!(!out.status.success());
    assert_eq!(cli_ok(home.path(), &["users", "list"], None), "");
}

#[test]
fn serve_refuses_a_network_address_without_any_authentication() {
    let home = tempfile::tempdir().unwrap();
    let out = cli(
        home.path(),
        &["serve", "--host", "0.0.0.0", "--port", "0"],
        None,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no authentication is configured") && err.contains("gatehouse users add"),
        "{err}"
    );
}

#[test]
fn home_flag_and_env_are_equivalent_and_global() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("nested/home");
    let out = std::process::Command::new(bin())
        .args(["users", "add", "zed", "--password-stdin", "--home"])
        .arg(&dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(PW.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert!(cli_ok(&dir, &["users", "list"], None).starts_with("zed  -  created: "));
}

#[actix_web::test]
async fn tokens_from_the_cli_hold_on_the_running_server() {
    let home = tempfile::tempdir().unwrap();
    cli_ok(
        home.path(),
        &["users", "add", "admin", "--password-stdin"],
        Some(PW),
    );
    let server = Server::start(home.path(), &[]);
    let out = cli(
        home.path(),
        &[
            "tokens",
            "issue",
            "--user",
            "admin",
            "--name",
            "deploy",
            "--expires-in",
            "24h",
            "--scope",
            "read",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap();
    let token = token.trim();
    assert!(
        token.starts_with("gh_") && !token.contains(' '),
        "the token alone on stdout: {token}"
    );
    let details = String::from_utf8_lossy(&out.stderr);
    assert!(
        details.contains("issued token") && details.contains("read"),
        "{details}"
    );
    let me = |t: String| {
        let url = server.url.clone();
        async move {
            client()
                .get(format!("{url}/account/api/me"))
                .bearer_auth(t)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(me(token.to_owned()).await, 200);
    let listed = cli_ok(home.path(), &["tokens", "list", "--user", "admin"], None);
    let line = listed.lines().next().unwrap();
    let id = line.split("  ").next().unwrap().to_owned();
    assert!(
        line.contains("  admin  deploy  read  active  expires: "),
        "{line}"
    );
    let rotated = cli_ok(
        home.path(),
        &["tokens", "rotate", &id, "--grace", "0"],
        None,
    );
    assert!(rotated.trim().starts_with("gh_"));
    assert_eq!(
        me(token.to_owned()).await,
        401,
        "grace 0: the old token ends at once"
    );
    assert_eq!(me(rotated.trim().to_owned()).await, 200);
    let new_id = cli_ok(home.path(), &["tokens", "list"], None)
        .lines()
        .find(|l| l.contains("active"))
        .unwrap()
        .split("  ")
        .next()
        .unwrap()
        .to_owned();
    cli_ok(home.path(), &["tokens", "revoke", &new_id], None);
    assert_eq!(me(rotated.trim().to_owned()).await, 401);
    cli_ok(home.path(), &["keys", "rotate"], None);
    let out = cli(
        home.path(),
        &["tokens", "issue", "--user", "nobody", "--name", "x"],
        None,
    );
    assert!(!out.status.success());
    let out = cli(
        home.path(),
        &[
            "tokens",
            "issue",
            "--user",
            "admin",
            "--name",
            "x",
            "--expires-in",
            "91d",
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(!server.log().contains(token), "no token in the log");
}

/// On a terminal, `users add` prompts twice (through a real pseudo-terminal, `script`).
#[test]
fn on_a_terminal_the_password_is_asked_twice() {
    let home = tempfile::tempdir().unwrap();
    let run = |name: &str, input: &str| {
        use std::io::Write;
        let mut child = std::process::Command::new("script")
            .args(["-qec", &format!("{} users add {name}", bin()), "/dev/null"])
            .env("GATEHOUSE_HOME", home.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("script(1) from util-linux");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let out = run("tty-user", &format!("{PW}\n{PW}\n"));
    let screen = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{screen}");
    assert!(
        screen.contains("Password: ") && screen.contains("Password (again): "),
        "{screen}"
    );
    let out = run("tty-user2", &format!("{PW}\nsomething-else-entirely\n"));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("do not match"));
    let listed = cli_ok(home.path(), &["users", "list"], None);
    assert!(
        listed.contains("tty-user  ") && !listed.contains("tty-user2"),
        "{listed}"
    );
}
