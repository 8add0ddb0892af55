//! Test harness: the real app (actors, sled store, HTTP stack) in-process on
//! a random port with a movable clock, or the real binary as a child process.

use actix_web::{web, App, HttpServer};
use gatehouse::config::Config;
use gatehouse::Gatehouse;
use gatehouse_actors::{ManualClock, SharedClock};
use reqwest::Response;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;

pub const PW: &str = "correct-horse-battery";

pub struct TestApp {
    pub url: String,
    pub client: reqwest::Client,
    pub gh: Gatehouse,
    pub clock: ManualClock,
    pub home: TempDir,
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

pub async fn spawn_app() -> TestApp {
    spawn_with(|_| {}).await
}

/// With a config adjusted by `tune`; the supervisor checks every 250 ms.
pub async fn spawn_with(tune: impl FnOnce(&mut Config)) -> TestApp {
    spawn_full(tune, Duration::from_millis(250)).await
}

pub async fn spawn_full(tune: impl FnOnce(&mut Config), supervise_every: Duration) -> TestApp {
    init_tracing();
    let home = tempfile::tempdir().unwrap();
    let mut config = Config::defaults();
    tune(&mut config);
    let clock = ManualClock::new();
    let gh = Gatehouse::builder(config)
        .home(home.path())
        .clock(Arc::new(clock.clone()) as SharedClock)
        .supervise_every(supervise_every)
        .build()
        .await
        .expect("gatehouse starts");
    let data = gh.data();
    let limit = gh.config().server.max_body_bytes;
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .configure(|c| gatehouse::configure_with_limit(c, limit))
            .default_service(web::to(gatehouse::error::not_found))
    })
    .workers(1)
    .bind(("127.0.0.1", 0))
    .unwrap();
    let addr = server.addrs()[0];
    actix_rt::spawn(server.run());
    TestApp {
        url: format!("http://{addr}"),
        client: client(),
        gh,
        clock,
        home,
    }
}

fn init_tracing() {
    if std::env::var("TEST_LOG").is_ok() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("debug")
            .with_test_writer()
            .try_init();
    }
}

impl TestApp {
    pub fn state(&self) -> web::Data<gatehouse::AppState> {
        self.gh.data()
    }

    pub async fn add_user(&self, name: &str, password: &str, admin: bool) -> Value {
        let (u, _) = gatehouse::accounts::add_user(
            &self.state(),
            &gatehouse::accounts::Actor::cli(),
            name,
            password,
            admin,
            true,
        )
        .await
        .expect("user added");
        serde_json::to_value(u.view()).unwrap()
    }

    pub async fn login_with(
        &self,
        client: &reqwest::Client,
        name: &str,
        password: &str,
    ) -> Response {
        client
            .post(format!("{}/auth/login", self.url))
            .json(&json!({"username": name, "password": password}))
            .send()
            .await
            .unwrap()
    }

    pub async fn login(&self, name: &str, password: &str) -> Response {
        self.login_with(&self.client, name, password).await
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap()
    }

    pub async fn get_with(&self, client: &reqwest::Client, path: &str) -> Response {
        client
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap()
    }

    pub async fn post_json(&self, path: &str, body: Value) -> Response {
        self.client
            .post(format!("{}{path}", self.url))
            .json(&body)
            .send()
            .await
            .unwrap()
    }
}

/// The `gatehouse_session` value in a response's `Set-Cookie`.
pub fn session_token(res: &Response) -> Option<String> {
    res.headers().get_all("set-cookie").iter().find_map(|v| {
        let v = v.to_str().ok()?;
        let rest = v.strip_prefix("gatehouse_session=")?;
        Some(rest.split(';').next()?.to_owned()).filter(|t| !t.is_empty())
    })
}

pub fn set_cookie(res: &Response) -> String {
    res.headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

pub async fn error_code(res: Response) -> (u16, String) {
    let status = res.status().as_u16();
    let body: Value = res.json().await.expect("an OpenAI-shaped JSON error");
    let code = body["error"]["code"]
        .as_str()
        .expect("error.code is a string")
        .to_owned();
    assert!(
        body["error"]["message"].is_string() && body["error"]["type"].is_string(),
        "{body}"
    );
    (status, code)
}

// --- the real binary ------------------------------------------------------

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_gatehouse")
}

pub fn cli(home: &Path, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(bin())
        .args(args)
        .env("GATEHOUSE_HOME", home)
        .env_remove("GATEHOUSE_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

pub fn cli_ok(home: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let out = cli(home, args, stdin);
    assert!(
        out.status.success(),
        "gatehouse {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `gatehouse serve` as a child process on a random port.
pub struct Server {
    pub child: Child,
    pub url: String,
    pub stderr: Option<PathBuf>,
}

impl Server {
    pub fn start(home: &Path, extra: &[&str]) -> Server {
        let log = home.with_extension(format!("log{}", rand_suffix()));
        let mut child = Command::new(bin())
            .arg("serve")
            .args(["--port", "0"])
            .args(extra)
            .env("GATEHOUSE_HOME", home)
            .env("GATEHOUSE_LOG", "debug")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| {
                panic!(
                    "server did not start: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            });
        Server {
            url: url.to_owned(),
            child,
            stderr: Some(log),
        }
    }

    pub fn log(&self) -> String {
        self.stderr
            .as_ref()
            .map(|p| std::fs::read_to_string(p).unwrap_or_default())
            .unwrap_or_default()
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub fn stop(mut self) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rand_suffix() -> String {
    hex::encode(gatehouse_actors::ids::random_bytes::<4>())
}

/// Every byte of every file under `dir`.
pub fn all_file_bytes(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.is_file() {
                out.extend(std::fs::read(&p).unwrap_or_default());
            }
        }
    }
    out
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
