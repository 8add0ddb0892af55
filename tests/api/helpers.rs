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
    let mut config = Config::defaults();
    tune(&mut config);
    spawn_config(config, Default::default(), supervise_every).await
}

/// A TOML config (over the defaults) and the environment provider keys are read from.
pub async fn spawn_toml(toml: &str, env: &[(&str, &str)]) -> TestApp {
    let config = config_from_toml(toml).expect("valid test config");
    let env = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    spawn_config(config, env, Duration::from_millis(250)).await
}

/// Loads `toml` as a config file would be (no process environment).
pub fn config_from_toml(toml: &str) -> Result<Config, gatehouse::config::ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gatehouse.toml");
    std::fs::write(&file, toml).unwrap();
    Config::load_with_env(Some(&file), dir.path(), &Default::default())
}

pub async fn spawn_config(
    config: Config,
    env: std::collections::HashMap<String, String>,
    supervise_every: Duration,
) -> TestApp {
    init_tracing();
    let home = tempfile::tempdir().unwrap();
    let clock = ManualClock::new();
    let gh = Gatehouse::builder(config)
        .home(home.path())
        .clock(Arc::new(clock.clone()) as SharedClock)
        .supervise_every(supervise_every)
        .env(env)
        .build()
        .await
        .expect("gatehouse starts");
    let data = gh.data();
    let limit = gh.config().server.max_body_bytes;
    let edge = gatehouse::edge::EdgeGuard::new(&gh.config().server);
    let header_timeout = gh.config().server.client_header_timeout;
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .wrap(edge)
            .configure(|c| gatehouse::configure_with_limit(c, limit))
            .configure(gatehouse::http::pages::configure)
            .default_service(web::to(gatehouse::error::not_found))
    })
    .workers(1)
    .client_request_timeout(header_timeout)
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
        .unwrap_or_else(|| panic!("error.code is a string ({status}): {body}"))
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

// --- a real OpenID provider (tests/oidc/provider.mjs, npm oidc-provider) ----

/// A real OpenID provider (npm oidc-provider) on a random loopback port.
///
/// Clients: `gatehouse-test` / `test-client-secret` (client_secret_basic;
/// `gatehouse-test-post` for client_secret_post), `introspector` /
/// `introspector-secret` (basic; `introspector-post` for post). Resources:
/// `urn:gatehouse` (JWT access tokens, the default) and `urn:opaque` (opaque,
/// for introspection), both with audience `gatehouse`. Signing keys are fresh
/// at each start, kids `{seed}-ec` (ES256) and `{seed}-rsa` (RS256).
///
/// Started with [`OidcProvider::start_for_rp`], it also signs users in to the
/// gateway at `rp_url` (authorization code + PKCE S256, client `gatehouse-web` /
/// `web-client-secret`, client_secret_basic; redirect URIs
/// `{rp}/auth/oidc/corp/callback` and `{rp}/auth/oidc/other/callback`) and
/// POSTs back-channel logout tokens to `{rp}/auth/oidc/corp/backchannel-logout`
/// when a browser's provider session ends ([`OidcProvider::logout`]). Any login
/// works (any password); see tests/oidc/provider.mjs for the claims.
pub struct OidcProvider {
    pub issuer: String,
    child: std::process::Child,
    pub port: u16,
    pub seed: String,
    token_url: String,
    jwks_uri: String,
    introspection_url: String,
    authorization_url: String,
    end_session_url: String,
    stderr: tempfile::NamedTempFile,
}

impl OidcProvider {
    pub const CLIENT_ID: &'static str = "gatehouse-test";
    pub const CLIENT_SECRET: &'static str = "test-client-secret";
    pub const INTROSPECTOR_ID: &'static str = "introspector";
    pub const INTROSPECTOR_SECRET: &'static str = "introspector-secret";
    pub const AUDIENCE: &'static str = "gatehouse";
    /// The web client of `start_for_rp` (the gateway's sign-in).
    pub const WEB_CLIENT_ID: &'static str = "gatehouse-web";
    pub const WEB_CLIENT_SECRET: &'static str = "web-client-secret";

    /// On a free port chosen by the provider itself, JWTs signed ES256.
    pub fn start(seed: &str) -> OidcProvider {
        Self::spawn(0, seed, "ES256", None)
    }

    /// On `port`; the same port after a `stop` is a key rotation at the
    /// provider when `seed` differs. `jwt_alg`: "ES256" or "RS256".
    pub fn start_on(port: u16, seed: &str, jwt_alg: &str) -> OidcProvider {
        Self::spawn(port, seed, jwt_alg, None)
    }

    /// On `port` (0 = a free one), with the web client `gatehouse-web` for
    /// the gateway at `rp_url` (e.g. `http://127.0.0.1:4567`): sign-in with
    /// [`OidcProvider::login`], logout with [`OidcProvider::logout`].
    pub fn start_for_rp(port: u16, seed: &str, rp_url: &str) -> OidcProvider {
        Self::spawn(port, seed, "ES256", Some(rp_url))
    }

    fn spawn(port: u16, seed: &str, jwt_alg: &str, rp_url: Option<&str>) -> OidcProvider {
        use std::sync::mpsc;
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        if !root.join("tests/oidc/node_modules/oidc-provider").is_dir() {
            panic!("run `npm ci --prefix tests/oidc` first (.ci/run does)");
        }
        let stderr = tempfile::NamedTempFile::new().unwrap();
        let mut command = Command::new("node");
        command
            .current_dir(root)
            .arg("tests/oidc/provider.mjs")
            .args(["--port", &port.to_string()])
            .args(["--keys-seed", seed])
            .args(["--jwt-alg", jwt_alg]);
        if let Some(rp_url) = rp_url {
            command.args(["--rp-url", rp_url]);
        }
        let mut child = command
            // The provider exits when this pipe closes: no orphan if the
            // test process dies without running `Drop`.
            .arg("--exit-with-stdin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr.reopen().unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run `node` (Node 20+ is needed): {e}"));
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            while let Some(Ok(line)) = lines.next() {
                if let Some(issuer) = line.trim().strip_prefix("ready ") {
                    let _ = tx.send(issuer.to_owned());
                    break;
                }
            }
            // Keep draining so the provider can never block on a full pipe.
            for _ in lines {}
        });
        let log = |stderr: &tempfile::NamedTempFile| {
            std::fs::read_to_string(stderr.path()).unwrap_or_default()
        };
        // Generous: on two busy cores (browsers and other providers starting
        // in parallel tests) node can take long to load oidc-provider.
        let issuer = match rx.recv_timeout(Duration::from_secs(180)) {
            Ok(issuer) => issuer,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the OpenID provider (port {port}) was not ready within 180 s: {}",
                    log(&stderr)
                );
            }
        };
        let bound: u16 = issuer
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("bad ready line: {issuer}"));
        let mut provider = OidcProvider {
            issuer,
            child,
            port: bound,
            seed: seed.to_owned(),
            token_url: String::new(),
            jwks_uri: String::new(),
            introspection_url: String::new(),
            authorization_url: String::new(),
            end_session_url: String::new(),
            stderr,
        };
        let discovery = provider.discovery();
        let field = |name: &str| {
            discovery[name]
                .as_str()
                .unwrap_or_else(|| panic!("discovery has no {name}: {discovery}"))
                .to_owned()
        };
        assert_eq!(field("issuer"), provider.issuer, "issuer in discovery");
        provider.token_url = field("token_endpoint");
        provider.jwks_uri = field("jwks_uri");
        provider.introspection_url = field("introspection_endpoint");
        provider.authorization_url = field("authorization_endpoint");
        // Only served with a web client (start_for_rp).
        provider.end_session_url = discovery["end_session_endpoint"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        provider
    }

    /// `/.well-known/openid-configuration`, read with a blocking HTTP/1.0 GET.
    pub fn discovery(&self) -> Value {
        use std::io::{Read, Write};
        let path = "/.well-known/openid-configuration";
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\nAccept: application/json\r\n\r\n",
            self.port
        )
        .unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).unwrap();
        let raw = String::from_utf8_lossy(&raw);
        let (head, body) = raw
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("bad HTTP response from the provider: {raw}"));
        assert!(
            head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"),
            "GET {path}: {head}\n{}",
            self.log()
        );
        serde_json::from_str(body).unwrap_or_else(|e| panic!("discovery JSON: {e}: {body}"))
    }

    /// What the provider wrote on stderr (quiet unless something broke;
    /// `OIDC_PROVIDER_LOG=1` makes it log request errors).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.stderr.path()).unwrap_or_default()
    }

    /// SIGTERM, then wait (bounded; SIGKILL after 5 s) so the port is free.
    pub fn stop(mut self) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A client_credentials access token of `gatehouse-test` (Basic auth):
    /// `scope` e.g. "read write", `resource` e.g. "urn:gatehouse" (JWT) or
    /// "urn:opaque" (opaque); an empty `resource` uses the default
    /// (urn:gatehouse).
    pub async fn client_token(&self, scope: &str, resource: &str) -> String {
        let mut form = vec![("grant_type", "client_credentials"), ("scope", scope)];
        if !resource.is_empty() {
            form.push(("resource", resource));
        }
        let res = self
            .post_form(&self.token_url, Self::CLIENT_ID, Self::CLIENT_SECRET, &form)
            .await;
        let status = res.status();
        let body: Value = res.json().await.expect("token response is JSON");
        assert_eq!(status, 200, "token request failed: {body}\n{}", self.log());
        body["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no access_token: {body}"))
            .to_owned()
    }

    /// The introspection response for `token`, asked as `introspector`.
    pub async fn introspect(&self, token: &str) -> Value {
        let res = self
            .post_form(
                &self.introspection_url,
                Self::INTROSPECTOR_ID,
                Self::INTROSPECTOR_SECRET,
                &[("token", token)],
            )
            .await;
        let status = res.status();
        let body: Value = res.json().await.expect("introspection response is JSON");
        assert_eq!(status, 200, "introspection failed: {body}\n{}", self.log());
        body
    }

    /// POST an `application/x-www-form-urlencoded` body with Basic auth.
    /// A fresh client each time: no pooled connection outlives a restart.
    pub async fn post_form(
        &self,
        url: &str,
        id: &str,
        secret: &str,
        form: &[(&str, &str)],
    ) -> Response {
        let body = form
            .iter()
            .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        reqwest::Client::new()
            .post(url)
            .basic_auth(id, Some(secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .unwrap()
    }

    pub fn token_url(&self) -> String {
        self.token_url.clone()
    }

    pub fn jwks_uri(&self) -> String {
        self.jwks_uri.clone()
    }

    pub fn introspection_url(&self) -> String {
        self.introspection_url.clone()
    }

    /// The kids this provider signs with: `[{seed}-ec, {seed}-rsa]`.
    pub fn kids(&self) -> [String; 2] {
        [format!("{}-ec", self.seed), format!("{}-rsa", self.seed)]
    }

    /// `authorization_endpoint` (`{issuer}/auth`).
    pub fn authorization_url(&self) -> String {
        self.authorization_url.clone()
    }

    /// `end_session_endpoint` (`{issuer}/session/end`; only with `start_for_rp`).
    pub fn end_session_url(&self) -> String {
        self.end_session_url.clone()
    }

    /// Plays the browser `browser` (made with [`client()`]: its cookie jar is
    /// this browser's provider session) at the provider: GET `authorize_url`
    /// (the full URL the gateway redirected to), fill in the dev login form
    /// with `login` (any password), confirm consent if asked, and follow the
    /// provider's own redirects. Answers the first URL outside the provider
    /// (normally `{rp}/auth/oidc/…/callback?code=…&state=…&iss=…`, or the
    /// redirect_uri with `error=…`) without requesting it. A browser that is
    /// already signed in at the provider gets there without a login form
    /// (`login` is then unused; add `prompt=login` to force the form).
    pub async fn login(
        &self,
        browser: &reqwest::Client,
        authorize_url: &str,
        login: &str,
    ) -> String {
        self.browse(browser, authorize_url, |prompt, fields| match prompt {
            "login" => {
                fields.push(("login".into(), login.into()));
                fields.push(("password".into(), "any-password".into()));
            }
            "consent" => {}
            other => panic!("unexpected interaction prompt {other:?}"),
        })
        .await
        .unwrap_or_else(|page| {
            panic!(
                "sign-in at the provider did not go back to the RP: {page}\n{}",
                self.log()
            )
        })
    }

    /// RP-initiated logout of `browser`'s provider session: GET the
    /// end_session endpoint, confirm ("Yes, sign me out": `logout=yes`). The
    /// provider POSTs a back-channel logout token to the RP (every client of
    /// the session that has a `backchannel_logout_uri`) and waits for the RP's
    /// answer before it answers the browser, so the RP has been told when
    /// this returns.
    pub async fn logout(&self, browser: &reqwest::Client) {
        assert!(
            !self.end_session_url.is_empty(),
            "no end_session_endpoint: start the provider with start_for_rp"
        );
        let url = self.end_session_url.clone();
        self.logout_at(browser, &url).await;
    }

    /// Like [`OidcProvider::logout`] from any end_session URL (e.g. the one
    /// the gateway redirected to, with `id_token_hint`, `client_id`,
    /// `post_logout_redirect_uri`, `state`). Answers where the provider sent
    /// the browser in the end: a URL outside the provider (the
    /// post_logout_redirect_uri, not requested) or, without one, the
    /// provider's own "Sign-out Success" page URL.
    pub async fn logout_at(&self, browser: &reqwest::Client, end_session_url: &str) -> String {
        match self
            .browse(browser, end_session_url, |prompt, fields| {
                assert_eq!(prompt, "", "unexpected form at end_session");
                fields.push(("logout".into(), "yes".into()));
            })
            .await
        {
            Ok(rp) => rp,
            Err(page) => {
                assert!(
                    page.contains("Sign-out Success"),
                    "logout at the provider failed: {page}\n{}",
                    self.log()
                );
                page.lines().next().unwrap_or_default().to_owned()
            }
        }
    }

    /// Follows the provider's redirects from `url` with `browser`, submitting
    /// each HTML form it meets (hidden inputs, plus what `fill` adds given the
    /// form's `prompt` input, "" if none) — at most 20 steps. `Ok(url)`: the
    /// first URL outside the provider (not requested). `Err(page)`: a page
    /// without a form, as "{url}\n{status}\n{body}".
    async fn browse(
        &self,
        browser: &reqwest::Client,
        url: &str,
        mut fill: impl FnMut(&str, &mut Vec<(String, String)>),
    ) -> Result<String, String> {
        let inside = |u: &str| u == self.issuer || u.starts_with(&format!("{}/", self.issuer));
        let mut url = url.to_owned();
        let mut post: Option<String> = None;
        for _ in 0..20 {
            if !inside(&url) {
                return Ok(url);
            }
            let req = match post.take() {
                Some(body) => browser
                    .post(&url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body),
                None => browser.get(&url),
            };
            let res = req
                .header("accept", "text/html")
                .send()
                .await
                .unwrap_or_else(|e| panic!("{url}: {e}\n{}", self.log()));
            let status = res.status();
            if status.is_redirection() {
                let location = res
                    .headers()
                    .get("location")
                    .and_then(|l| l.to_str().ok())
                    .unwrap_or_else(|| panic!("{status} without Location from {url}"));
                url = resolve_url(&url, location);
                continue;
            }
            let body = res.text().await.unwrap_or_default();
            let Some(form) = html_form(&body) else {
                return Err(format!("{url}\n{status}\n{body}"));
            };
            let mut fields = form.fields;
            let prompt = fields
                .iter()
                .find(|(k, _)| k == "prompt")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            fill(&prompt, &mut fields);
            post = Some(
                fields
                    .iter()
                    .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
                    .collect::<Vec<_>>()
                    .join("&"),
            );
            url = resolve_url(&url, &form.action);
        }
        panic!(
            "more than 20 steps at the provider, last at {url}\n{}",
            self.log()
        )
    }
}

/// The first `<form>` of an HTML page: its action and hidden inputs.
struct HtmlForm {
    action: String,
    fields: Vec<(String, String)>,
}

fn html_form(html: &str) -> Option<HtmlForm> {
    let start = html.find("<form")?;
    let end = html[start..]
        .find("</form>")
        .map_or(html.len(), |e| start + e);
    let form = &html[start..end];
    let tag_end = form.find('>')?;
    let action = html_attr(&form[..tag_end], "action").unwrap_or_default();
    let fields = form
        .split("<input")
        .skip(1)
        .filter_map(|rest| {
            let tag = &rest[..rest.find('>').unwrap_or(rest.len())];
            if html_attr(tag, "type").as_deref() != Some("hidden") {
                return None;
            }
            Some((
                html_attr(tag, "name")?,
                html_attr(tag, "value").unwrap_or_default(),
            ))
        })
        .collect();
    Some(HtmlForm { action, fields })
}

/// The value of attribute `name="…"` (or `'…'`) in a tag, HTML-unescaped.
fn html_attr(tag: &str, name: &str) -> Option<String> {
    let mut from = 0;
    while let Some(i) = tag[from..].find(name).map(|i| from + i) {
        from = i + name.len();
        let before_ok = i == 0 || tag.as_bytes()[i - 1].is_ascii_whitespace();
        let rest = tag[from..].trim_start();
        if !before_ok || !rest.starts_with('=') {
            continue;
        }
        let rest = rest[1..].trim_start();
        let quote = rest.chars().next()?;
        if quote != '"' && quote != '\'' {
            continue;
        }
        let value = &rest[1..];
        let value = &value[..value.find(quote)?];
        return Some(
            value
                .replace("&quot;", "\"")
                .replace("&#39;", "'")
                .replace("&#x27;", "'")
                .replace("&#x2F;", "/")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&amp;", "&"),
        );
    }
    None
}

/// `location` (absolute, or relative to `base`) as an absolute URL.
fn resolve_url(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_owned();
    }
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let origin_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    if location.starts_with('/') {
        return format!("{}{location}", &base[..origin_end]);
    }
    let path = base[origin_end..].split(['?', '#']).next().unwrap_or("");
    let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
    let dir = if dir.is_empty() { "/" } else { dir };
    format!("{}{dir}{location}", &base[..origin_end])
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `application/x-www-form-urlencoded` encoding of one key or value.
pub fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
