//! Sign-in in a real headless browser: Debian's Chromium (`/usr/bin/chromium`)
//! driven by npm `playwright-core` (tests/browser/*.mjs), against the gateway,
//! the fake GitHub and the real OpenID provider set up here. Each test runs one
//! script as a child process and checks the JSON report it prints; the final
//! page is saved as `target/browser-shots/<test>.png`.

use crate::bearer::spawn_toml;
use crate::fakes::*;
use crate::helpers::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The longest a browser script may run (it gives up on its own after 45 s).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);
const CHROMIUM: &str = "/usr/bin/chromium";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn shot(test: &str) -> String {
    format!("target/browser-shots/{test}.png")
}

/// Runs `node tests/browser/{script} '{args}'` (in its own process group, so
/// that it can be stopped as a whole) and answers its JSON report,
/// which must say `ok`. Never blocks the test's runtime: the gateway's actors
/// run on it.
pub(crate) async fn browse(script: &str, args: Value) -> Value {
    assert!(
        root()
            .join("tests/browser/node_modules/playwright-core")
            .is_dir(),
        "run `npm ci --prefix tests/browser` first (.ci/run does)"
    );
    assert!(
        Path::new(CHROMIUM).exists(),
        "no {CHROMIUM}: `apt-get install -y chromium` (.ci/run does)"
    );
    use std::os::unix::process::CommandExt;
    let mut child = Command::new("node")
        .current_dir(root())
        .arg(format!("tests/browser/{script}"))
        .arg(args.to_string())
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run `node` (Node 20+ is needed): {e}"));
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + SCRIPT_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            kill_group(&mut child);
            panic!(
                "{script} ran over {SCRIPT_TIMEOUT:?}: {}",
                stderr.join().unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (out, err) = (stdout.join().unwrap(), stderr.join().unwrap());
    assert!(
        status.success(),
        "{script} {args} failed ({status}): {err}\n{out}"
    );
    let report: Value = out
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("{script} printed no JSON report: {out}\n{err}"));
    println!(
        "{script}: {} ms, ended at {} ({})",
        report["elapsed_ms"], report["final_url"], report["final_status"]
    );
    assert_eq!(
        report["ok"],
        true,
        "{script} {args}: {}\n{err}\nreport: {report:#}",
        report["error"].as_str().unwrap_or_default()
    );
    report
}

/// SIGTERM to the script's process group (playwright then closes Chromium,
/// which is in a group of its own and also exits when its pipe to node
/// closes), SIGKILL after 3 s.
fn kill_group(child: &mut Child) {
    let group = -(child.id() as i32);
    unsafe {
        libc::kill(group, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    unsafe {
        libc::kill(group, libc::SIGKILL);
    }
    let _ = child.wait();
}

/// Every URL the browser requested or was redirected to.
fn urls(report: &Value) -> Vec<&str> {
    report["urls"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect()
}

/// The session token the browser holds must be a working session of `username`.
async fn assert_session_of(app: &TestApp, report: &Value, username: &str) {
    let cookie = &report["session"]["cookie"];
    let token = cookie["value"]
        .as_str()
        .unwrap_or_else(|| panic!("no session cookie: {report:#}"));
    assert_eq!(cookie["httpOnly"], true, "{cookie}");
    assert_eq!(cookie["sameSite"], "Lax", "{cookie}");
    assert_eq!(cookie["path"], "/", "{cookie}");
    assert_eq!(
        report["session"]["visible_to_js"], false,
        "document.cookie = {}",
        report["session"]["document_cookie"]
    );
    let session: Value = client()
        .get(format!("{}/auth/session", app.url))
        .header("x-session-token", token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(session["user"]["username"], username, "{session}");
    // No URL the browser ever saw carries the session token.
    let leaked: Vec<&str> = urls(report)
        .into_iter()
        .filter(|u| u.contains(token))
        .collect();
    assert!(leaked.is_empty(), "the session token is in {leaked:?}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The gateway configured for provider `corp` at a free port, and that port.
async fn oidc_gateway(extra: &str) -> (TestApp, u16) {
    let port = free_port();
    let app = spawn_toml(&format!(
        "[auth.oidc.corp]\nissuer = \"http://127.0.0.1:{port}\"\nclient_id = \"gatehouse-web\"\nclient_secret = \"web-client-secret\"\nscopes = [\"openid\", \"email\", \"profile\", \"groups\"]\n{extra}\n"
    ))
    .await;
    (app, port)
}

/// As in oidc_signin.rs: the gateway, then the provider (it needs the gateway's URL).
async fn setup(extra: &str) -> (TestApp, OidcProvider) {
    let (app, port) = oidc_gateway(extra).await;
    let op = OidcProvider::start_for_rp(port, "web1", &app.url);
    (app, op)
}

/// tests/oidc/provider.mjs with `--rp-url` and `--tamper-id-token`: the
/// provider of `start_for_rp`, whose token endpoint alters the ID token's
/// payload (keeping the signature).
struct TamperingProvider {
    issuer: String,
    child: Child,
    stderr: tempfile::NamedTempFile,
}

impl TamperingProvider {
    fn start_for_rp(port: u16, seed: &str, rp_url: &str) -> TamperingProvider {
        assert!(
            root()
                .join("tests/oidc/node_modules/oidc-provider")
                .is_dir(),
            "run `npm ci --prefix tests/oidc` first (.ci/run does)"
        );
        let stderr = tempfile::NamedTempFile::new().unwrap();
        let mut child = Command::new("node")
            .current_dir(root())
            .arg("tests/oidc/provider.mjs")
            .args(["--port", &port.to_string(), "--keys-seed", seed])
            .args(["--rp-url", rp_url, "--tamper-id-token", "--exit-with-stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr.reopen().unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run `node` (Node 20+ is needed): {e}"));
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            while let Some(Ok(line)) = lines.next() {
                if let Some(issuer) = line.trim().strip_prefix("ready ") {
                    let _ = tx.send(issuer.to_owned());
                }
            }
        });
        let Ok(issuer) = rx.recv_timeout(Duration::from_secs(20)) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the tampering OpenID provider was not ready within 20 s: {}",
                std::fs::read_to_string(stderr.path()).unwrap_or_default()
            );
        };
        TamperingProvider {
            issuer,
            child,
            stderr,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.stderr.path()).unwrap_or_default()
    }
}

impl Drop for TamperingProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[actix_web::test]
async fn github_sign_in_in_a_browser() {
    let gh = FakeGithubOauth::start();
    // An empty redirect_uri: the callback is derived from the request's Host.
    let app = spawn_toml(&gh.config("").replace(
        "redirect_uri = \"http://gateway.invalid/auth/github/callback\"",
        "redirect_uri = \"\"",
    ))
    .await;
    let report = browse(
        "github.mjs",
        json!({"base": app.url, "shot": shot("github_sign_in")}),
    )
    .await;
    assert_eq!(report["whoami"], "octocat", "{report:#}");
    assert_eq!(report["final_url"], format!("{}/", app.url));
    let seen = urls(&report);
    for hop in [
        format!("{}/login/oauth/authorize?", gh.url),
        format!("{}/auth/github/callback?code=", app.url),
    ] {
        assert!(
            seen.iter().any(|u| u.starts_with(&hop)),
            "never went to {hop}: {seen:#?}"
        );
    }
    assert_session_of(&app, &report, "octocat").await;
}

#[actix_web::test]
async fn oidc_sign_in_in_a_browser() {
    let (app, op) = setup("allowed_domains = [\"example.com\"]").await;
    let report = browse(
        "oidc.mjs",
        json!({"base": app.url, "provider": "corp", "issuer": op.issuer,
               "login": "alice@example.com", "shot": shot("oidc_sign_in")}),
    )
    .await;
    assert_eq!(report["whoami"], "alice", "{report:#}\n{}", op.log());
    assert_eq!(report["final_url"], format!("{}/", app.url));
    assert!(report["login_form_url"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{}/interaction/", op.issuer)));
    assert_session_of(&app, &report, "alice").await;
}

/// A flow that must end on the gateway's "Sign-in failed" page.
fn assert_failed(report: &Value, status: u16, code: &str) {
    assert_eq!(report["failed"], true, "{report:#}");
    assert_eq!(report["error_code"], code, "{report:#}");
    assert_eq!(report["final_status"], status, "{report:#}");
    assert!(
        report["final_url"]
            .as_str()
            .unwrap()
            .contains("/auth/oidc/corp/callback?"),
        "{report:#}"
    );
    assert!(
        report["session"]["cookie"].is_null(),
        "no session: {report:#}"
    );
}

#[actix_web::test]
async fn oidc_refused_domain_in_a_browser() {
    let (app, op) = setup("allowed_domains = [\"example.com\"]").await;
    let report = browse(
        "oidc.mjs",
        json!({"base": app.url, "provider": "corp", "issuer": op.issuer,
               "login": "mallory@evil.example", "shot": shot("oidc_refused_domain")}),
    )
    .await;
    assert_failed(&report, 403, "not_allowed");
    assert_eq!(app.state().handles.user_view().len(), 0);
}

#[actix_web::test]
async fn oidc_wrong_nonce_in_a_browser() {
    let (app, op) = setup("").await;
    let report = browse(
        "oidc.mjs",
        json!({"base": app.url, "provider": "corp", "issuer": op.issuer,
               "login": "alice@example.com", "nonce": "attacker-chosen",
               "shot": shot("oidc_wrong_nonce")}),
    )
    .await;
    assert!(report["nonce_rewritten"].as_u64() >= Some(1), "{report:#}");
    assert_failed(&report, 400, "invalid_id_token");
    assert_eq!(app.state().handles.user_view().len(), 0);
}

#[actix_web::test]
async fn oidc_tampered_id_token_in_a_browser() {
    let (app, port) = oidc_gateway("").await;
    let op = TamperingProvider::start_for_rp(port, "web1", &app.url);
    let report = browse(
        "oidc.mjs",
        json!({"base": app.url, "provider": "corp", "issuer": op.issuer,
               "login": "alice@example.com", "shot": shot("oidc_tampered_id_token")}),
    )
    .await;
    assert!(
        op.log().contains("tamper-id-token: altered"),
        "the provider altered no ID token: {}",
        op.log()
    );
    assert_failed(&report, 400, "invalid_id_token");
    assert_eq!(app.state().handles.user_view().len(), 0);
}
