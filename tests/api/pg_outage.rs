//! Losing the database: with a TCP proxy between the gateway and PostgreSQL,
//! cut (refused, connections dropped) or stalled (bytes go nowhere, as on a
//! dead network), the gateway answers `503` within seconds instead of
//! hanging, `/ready` says why, and everything recovers by itself once the
//! proxy is back on the same port.

use crate::helpers::*;
use crate::postgres::{eventually, pg_url, schema, serve_config};
use gatehouse::accounts::{add_user, Actor};
use gatehouse::config::Config;
use gatehouse_actors::store::{PgOptions, PgStore};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Open,
    /// Bytes are neither forwarded nor refused; connections stay open.
    Stalled,
    /// The listener is gone and every connection closed.
    Cut,
}

/// A TCP proxy to PostgreSQL on a fixed loopback port, on a runtime thread
/// of its own.
struct Proxy {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
    rt: tokio::runtime::Handle,
    /// Connections held open, unserved, while stalled.
    parked: Arc<Mutex<Vec<TcpStream>>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Proxy {
    fn start(upstream: SocketAddr) -> Proxy {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let handle = rt.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let _ = rt.block_on(stopped);
        });
        let listener = on(&handle, bind("127.0.0.1:0".parse().unwrap()));
        let proxy = Proxy {
            addr: listener.local_addr().unwrap(),
            mode: watch::channel(Mode::Open).0,
            rt: handle,
            parked: Default::default(),
            _stop: stop,
        };
        proxy.serve(listener, upstream);
        proxy
    }

    /// Accepts until cut; each connection is forwarded until stalled or cut.
    fn serve(&self, listener: TcpListener, upstream: SocketAddr) {
        let (mode, parked) = (self.mode.subscribe(), self.parked.clone());
        self.rt.spawn(async move {
            let mut cut = mode.clone();
            loop {
                let (mut client, _) = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok(c) => c,
                        Err(_) => continue,
                    },
                    _ = cut.wait_for(|m| *m == Mode::Cut) => return,
                };
                if *mode.borrow() != Mode::Open {
                    parked.lock().unwrap().push(client);
                    continue;
                }
                let (mut mode, parked) = (mode.clone(), parked.clone());
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => return,
                        _ = mode.wait_for(|m| *m != Mode::Open) => {}
                    }
                    if *mode.borrow() == Mode::Stalled {
                        parked.lock().unwrap().extend([client, server]);
                    }
                });
            }
        });
    }

    fn url(&self) -> String {
        pg_url().replace("127.0.0.1:5432", &self.addr.to_string())
    }

    /// The database is gone: connections refused, open ones closed.
    fn cut(&self) {
        self.mode.send_replace(Mode::Cut);
        self.parked.lock().unwrap().clear();
    }

    /// The network is gone: nothing answers, nothing is refused.
    fn stall(&self) {
        self.mode.send_replace(Mode::Stalled);
    }

    /// Back on the same port; stalled connections end (as a network that
    /// comes back finds them reset).
    fn restore(&self) {
        let was = self.mode.send_replace(Mode::Open);
        self.parked.lock().unwrap().clear();
        if was == Mode::Cut {
            let listener = on(&self.rt, bind(self.addr));
            self.serve(listener, upstream_addr());
        }
    }
}

/// Runs `job` on the proxy's runtime and waits for it (from any thread).
fn on<T: Send + 'static>(
    rt: &tokio::runtime::Handle,
    job: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    rt.spawn(async move {
        let _ = tx.send(job.await);
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("the proxy's runtime answers")
}

/// A listener on `addr` (`SO_REUSEADDR`, so the port of one just closed can
/// be taken again at once), retried while the old one is still closing.
async fn bind(addr: SocketAddr) -> TcpListener {
    let mut tries = 0;
    loop {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        match socket.bind(addr).and_then(|()| socket.listen(128)) {
            Ok(listener) => return listener,
            Err(_) if tries < 100 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the proxy cannot listen on {addr}: {e}"),
        }
    }
}

fn upstream_addr() -> SocketAddr {
    let url = pg_url();
    let host = url
        .split('@')
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("GATEHOUSE_TEST_PG is postgres://user@host:port/db");
    host.parse().expect("a numeric host:port")
}

/// A gateway whose store goes through `proxy`, with tight store timeouts.
async fn gateway_behind(proxy: &Proxy, schema: &str) -> (gatehouse::Gatehouse, String) {
    let options = PgOptions {
        connect_timeout: Duration::from_secs(2),
        query_timeout: Duration::from_secs(3),
        ..PgOptions::in_schema(schema)
    };
    let store = Arc::new(PgStore::open(&proxy.url(), &options).await.unwrap());
    serve_config(Config::defaults(), store).await
}

/// `request` answers (no hang) within a generous bound; its status and body.
async fn answered(what: &str, request: reqwest::RequestBuilder) -> (u16, Option<String>, Value) {
    let start = Instant::now();
    let res = request
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{what}: no answer: {e}"));
    let elapsed = start.elapsed();
    assert!(elapsed < Duration::from_secs(20), "{what} took {elapsed:?}");
    let status = res.status().as_u16();
    let retry_after = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = res.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{what}: not JSON: {text}"));
    (status, retry_after, body)
}

/// What a client may see of an outage: a plain 503, OpenAI-shaped, with
/// nothing of the database's address, URL or driver messages.
fn assert_plain_503(what: &str, proxy: &Proxy, status: u16, body: &Value) {
    assert_eq!(status, 503, "{what}: {body}");
    let error = &body["error"];
    assert!(
        error["message"].is_string() && error["type"].is_string() && error["code"].is_string(),
        "{what}: {body}"
    );
    let text = body.to_string();
    for leak in [
        proxy.addr.to_string(),
        proxy.addr.port().to_string(),
        "postgres://".into(),
        "PostgreSQL".into(),
        "5432".into(),
        "os error".into(),
    ] {
        assert!(!text.contains(&leak), "{what} leaks {leak:?}: {text}");
    }
}

async fn login(url: &str, c: &reqwest::Client) -> (u16, Option<String>, Value) {
    answered(
        "sign-in",
        c.post(format!("{url}/auth/login"))
            .json(&json!({"username": "alice", "password": PW})),
    )
    .await
}

async fn new_token(url: &str, c: &reqwest::Client) -> (u16, Option<String>, Value) {
    answered(
        "token creation",
        c.post(format!("{url}/api/tokens"))
            .json(&json!({"name": "during"})),
    )
    .await
}

async fn ready(url: &str) -> (u16, Value) {
    let (status, _, body) = answered("/ready", client().get(format!("{url}/ready"))).await;
    (status, body)
}

/// While the database is out of reach: `/ready` and every request that needs
/// the store answer 503 in seconds, saying nothing of the database; what
/// the gateway holds in memory (a signed-in session) still works.
async fn outage_is_a_fast_503(proxy: &Proxy, url: &str, signed_in: &reqwest::Client, why: &str) {
    let (status, body) = ready(url).await;
    assert_plain_503("/ready", proxy, status, &body);
    assert_eq!(body["error"]["code"], "not_ready");
    assert_eq!(body["store"], "postgres");
    assert!(
        body["failing"]
            .as_array()
            .unwrap()
            .contains(&json!("store")),
        "{body}"
    );
    assert_eq!(body["reasons"]["store"], why, "{body}");

    // Twice each: the second meets connections the first found dead.
    for _ in 0..2 {
        let (status, retry_after, body) = login(url, &client()).await;
        assert_plain_503("sign-in", proxy, status, &body);
        assert_eq!(body["error"]["code"], "service_unavailable");
        assert!(retry_after.is_some(), "503 says when to retry");
        let (status, _, body) = new_token(url, signed_in).await;
        assert_plain_503("token creation", proxy, status, &body);
    }
    let (status, _, body) = answered(
        "a signed-in read",
        signed_in.get(format!("{url}/account/api/me")),
    )
    .await;
    assert_eq!((status, body["username"].as_str()), (200, Some("alice")));
}

/// Once the database is back, the same gateway (no restart) is ready and
/// signs in, issues tokens and honours them.
async fn recovers(url: &str) {
    eventually("/ready is 200 again", || async move {
        ready(url).await.0 == 200
    })
    .await;
    let browser = client();
    let (status, _, body) = login(url, &browser).await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = new_token(url, &browser).await;
    assert_eq!(status, 201, "{body}");
    let res = client()
        .get(format!("{url}/account/api/me"))
        .bearer_auth(body["token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

async fn signed_in_gateway(
    proxy: &Proxy,
    schema: &str,
) -> (gatehouse::Gatehouse, String, reqwest::Client) {
    let (gh, url) = gateway_behind(proxy, schema).await;
    add_user(&gh.data(), &Actor::cli(), "alice", PW, false, false)
        .await
        .unwrap();
    let browser = client();
    assert_eq!(login(&url, &browser).await.0, 200);
    assert_eq!(new_token(&url, &browser).await.0, 201);
    assert_eq!(
        ready(&url).await,
        (200, json!({"status": "ready", "store": "postgres"}))
    );
    (gh, url, browser)
}

#[actix_web::test]
async fn a_lost_database_gives_a_fast_503_and_recovers_by_itself() {
    let proxy = Proxy::start(upstream_addr());
    let schema = schema("gh_cut");
    let (_gh, url, browser) = signed_in_gateway(&proxy, &schema).await;
    // Another instance, not behind the proxy, keeps the database company.
    let other = Arc::new(PgStore::connect(&pg_url(), Some(&schema)).await.unwrap());
    let (other_gh, other_url) = serve_config(Config::defaults(), other.clone()).await;

    proxy.cut();
    outage_is_a_fast_503(&proxy, &url, &browser, "the database is unreachable").await;
    // Meanwhile alice is locked on the other instance: the cut-off one
    // cannot hear it now, and must not miss it once it is back.
    eventually("the other instance knows alice", || {
        let data = other_gh.data();
        async move { data.handles.user_view().len() == 1 }
    })
    .await;
    gatehouse::accounts::lock_user(&other_gh.data(), &Actor::cli(), "alice", None)
        .await
        .unwrap();

    proxy.restore();
    eventually("/ready is 200 again", || async {
        ready(&url).await.0 == 200
    })
    .await;
    eventually("the lock made during the outage holds here", || {
        let (c, url) = (browser.clone(), url.clone());
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
    let (status, _, body) = login(&url, &client()).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("account_locked"))
    );
    gatehouse::accounts::unlock_user(&other_gh.data(), &Actor::cli(), "alice")
        .await
        .unwrap();
    eventually("the unlock holds here", || async {
        login(&url, &client()).await.0 == 200
    })
    .await;
    recovers(&url).await;
    assert_eq!(ready(&other_url).await.0, 200);
    other.drop_schema().await.unwrap();
}

#[actix_web::test]
async fn a_silent_network_gives_a_fast_503_not_a_hang_and_recovers() {
    let proxy = Proxy::start(upstream_addr());
    let schema = schema("gh_stall");
    let (_gh, url, browser) = signed_in_gateway(&proxy, &schema).await;

    proxy.stall();
    outage_is_a_fast_503(
        &proxy,
        &url,
        &browser,
        "the store did not answer within 2 s",
    )
    .await;

    proxy.restore();
    recovers(&url).await;
    PgStore::connect(&pg_url(), Some(&schema))
        .await
        .unwrap()
        .drop_schema()
        .await
        .unwrap();
}

/// A log line sink for one thread's subscriber.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Store operations over the slow-query threshold are logged with their
/// name and duration, never with the data they carried.
#[actix_web::test]
async fn slow_store_operations_are_logged_with_their_duration_and_no_data() {
    use gatehouse_actors::store::Store;
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("warn")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let schema = schema("gh_slow");
    let options = PgOptions {
        slow: Duration::from_nanos(1),
        ..PgOptions::in_schema(&schema)
    };
    let store = PgStore::open(&pg_url(), &options).await.unwrap();
    let secret = "hash-SECRET-in-a-record";
    let alice = gatehouse_actors::model::UserRecord {
        id: "u-slow".into(),
        username: "alice".into(),
        display_name: Some(secret.into()),
        avatar_url: None,
        roles: vec![],
        auth: "credentials".into(),
        created_at: time::OffsetDateTime::now_utc(),
        last_login: None,
        locked: None,
        password: Some(gatehouse_actors::model::PasswordHash::Argon2 { phc: secret.into() }),
        external_id: None,
        version: 0,
    };
    store.insert_user(alice).await.unwrap();
    store.check_writable().await.unwrap();
    store.drop_schema().await.unwrap();
    drop(_guard);

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let slow: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("slow PostgreSQL store operation"))
        .collect();
    for op in ["insert_user", "check_writable"] {
        let line = slow
            .iter()
            .find(|l| l.contains(&format!("op=\"{op}\"")))
            .unwrap_or_else(|| panic!("no slow-operation line for {op}: {text}"));
        assert!(line.contains("elapsed_ms="), "{line}");
        assert!(line.contains("WARN"), "{line}");
    }
    assert!(!text.contains(secret), "a record's data in the log: {text}");
}
