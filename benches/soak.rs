//! The soak driver (`benches/soak.sh` runs it): many connections for a long
//! time, each looping over a mix of what real users do, with every answer
//! checked and latencies kept per time window.
//!
//! `soak --url URL --credentials FILE --seconds 600 --conns 256 --window 30 --pid PID`
//!
//! `FILE` has one `username password token` line per user; connection `i`
//! acts as user `i mod users`. The mix, per request:
//! - 0.5 % sign-in (`POST /auth/login`, a fresh session each time; Argon2id
//!   makes each one cost tens of milliseconds of CPU, on purpose),
//! - 39.5 % chat completion (`POST /v1/chat/completions`),
//! - 30 % streaming chat completion, read to `data: [DONE]`,
//! - 2 % durable task (`POST /v1/tasks` with a fresh `Idempotency-Key`),
//! - 28 % model list (`GET /v1/models`, the token check alone).
//!
//! Prints a markdown table: per window the requests, errors, p50 and p99, the
//! gateway's resident memory (from `/proc/PID/status`) and its task backlog
//! (`gatehouse_tasks_backlog` of `/metrics`, open to loopback in the soak's
//! config); then the totals by kind. Exits 1 if any request failed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Kind {
    SignIn,
    Chat,
    Stream,
    Task,
    Models,
}

impl Kind {
    fn pick(roll: u64) -> Kind {
        match roll % 1000 {
            0..=4 => Kind::SignIn,
            5..=399 => Kind::Chat,
            400..=699 => Kind::Stream,
            700..=719 => Kind::Task,
            _ => Kind::Models,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::SignIn => "sign-in",
            Kind::Chat => "chat completion",
            Kind::Stream => "streaming completion",
            Kind::Task => "task creation",
            Kind::Models => "model list",
        }
    }
}

/// One finished request: when (window), what, how long, and whether it failed.
#[derive(Default)]
struct Window {
    latencies_us: Vec<u32>,
    errors: u64,
}

#[derive(Default)]
struct Record {
    windows: BTreeMap<u64, Window>,
    kinds: BTreeMap<Kind, Window>,
    rss_kib: BTreeMap<u64, u64>,
    /// The task backlog at the last sample of each window.
    backlog: BTreeMap<u64, u64>,
    first_errors: Vec<String>,
}

struct User {
    name: String,
    password: String,
    token: String,
}

struct Args {
    url: String,
    credentials: String,
    seconds: u64,
    conns: usize,
    window: u64,
    model: String,
    pid: Option<u32>,
}

fn args() -> Args {
    let mut a = Args {
        url: String::new(),
        credentials: String::new(),
        seconds: 60,
        conns: 64,
        window: 10,
        model: "mock/m".into(),
        pid: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => a.url = value,
            "--credentials" => a.credentials = value,
            "--seconds" => a.seconds = value.parse().expect("--seconds"),
            "--conns" => a.conns = value.parse().expect("--conns"),
            "--window" => a.window = value.parse().expect("--window"),
            "--model" => a.model = value,
            "--pid" => a.pid = Some(value.parse().expect("--pid")),
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(
        !a.url.is_empty() && !a.credentials.is_empty(),
        "--url and --credentials are needed"
    );
    a
}

/// `gatehouse_tasks_backlog` from `/metrics`.
async fn task_backlog(http: &reqwest::Client, url: &str) -> Option<u64> {
    let text = http
        .get(format!("{url}/metrics"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("gatehouse_tasks_backlog "))
        .and_then(|n| n.trim().parse().ok())
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

/// Does one request of `kind`; `Err` says what was wrong with the answer.
async fn one(
    http: &reqwest::Client,
    a: &Args,
    user: &User,
    kind: Kind,
    seq: u64,
) -> Result<(), String> {
    let chat = |stream: bool| {
        serde_json::json!({
            "model": a.model,
            "messages": [{"role": "user", "content": "Say hello."}],
            "stream": stream,
        })
    };
    let res = match kind {
        Kind::SignIn => {
            http.post(format!("{}/auth/login", a.url))
                .json(&serde_json::json!({"username": user.name, "password": user.password}))
                .send()
                .await
        }
        Kind::Chat | Kind::Stream => {
            http.post(format!("{}/v1/chat/completions", a.url))
                .bearer_auth(&user.token)
                .json(&chat(kind == Kind::Stream))
                .send()
                .await
        }
        Kind::Task => {
            http.post(format!("{}/v1/tasks", a.url))
                .bearer_auth(&user.token)
                .header(
                    "idempotency-key",
                    format!("soak-{}-{seq}", std::process::id()),
                )
                .json(&serde_json::json!({"kind": "chat.completion", "input": chat(false)}))
                .send()
                .await
        }
        Kind::Models => {
            http.get(format!("{}/v1/models", a.url))
                .bearer_auth(&user.token)
                .send()
                .await
        }
    }
    .map_err(|e| format!("{}: {e}", kind.name()))?;
    let status = res.status().as_u16();
    let want = if kind == Kind::Task { 202 } else { 200 };
    let mut res = res;
    let mut body = Vec::new();
    while let Some(chunk) = res
        .chunk()
        .await
        .map_err(|e| format!("{}: body: {e}", kind.name()))?
    {
        body.extend_from_slice(&chunk);
    }
    if status != want {
        let text = String::from_utf8_lossy(&body);
        return Err(format!(
            "{}: status {status}: {}",
            kind.name(),
            &text[..text.len().min(200)]
        ));
    }
    let ok = match kind {
        Kind::Stream => body.ends_with(b"data: [DONE]\n\n"),
        Kind::Chat => contains(&body, b"\"choices\""),
        Kind::SignIn => contains(&body, b"\"user\""),
        Kind::Task => contains(&body, b"\"status\""),
        Kind::Models => contains(&body, b"\"data\""),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{}: unexpected body: {}",
            kind.name(),
            String::from_utf8_lossy(&body)
        ))
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::main]
async fn main() {
    let a = Arc::new(args());
    let users: Arc<Vec<User>> = Arc::new(
        std::fs::read_to_string(&a.credentials)
            .expect("credentials file")
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let mut f = l.split_whitespace();
                User {
                    name: f.next().unwrap().into(),
                    password: f.next().unwrap().into(),
                    token: f.next().unwrap().into(),
                }
            })
            .collect(),
    );
    assert!(!users.is_empty(), "no users in {}", a.credentials);
    let record = Arc::new(Mutex::new(Record::default()));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(a.seconds);

    if let Some(pid) = a.pid {
        let (record, a) = (record.clone(), a.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            loop {
                let w = start.elapsed().as_secs() / a.window;
                if let Some(kib) = rss_kib(pid) {
                    record.lock().unwrap().rss_kib.insert(w, kib);
                }
                if let Some(n) = task_backlog(&http, &a.url).await {
                    record.lock().unwrap().backlog.insert(w, n);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }

    let mut conns = Vec::new();
    for i in 0..a.conns {
        let (a, users, record) = (a.clone(), users.clone(), record.clone());
        conns.push(tokio::spawn(async move {
            // Its own client: one connection each, as `conns` clients would.
            let http = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap();
            let user = &users[i % users.len()];
            let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ (i as u64).wrapping_mul(0x2545_F491_4F6C_DD1D);
            let mut seq = 0u64;
            while Instant::now() < deadline {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                seq += 1;
                let kind = Kind::pick(rng);
                let began = Instant::now();
                let outcome = one(&http, &a, user, kind, (i as u64) << 32 | seq).await;
                let us = began.elapsed().as_micros().min(u32::MAX as u128) as u32;
                let w = began.duration_since(start).as_secs() / a.window;
                let mut r = record.lock().unwrap();
                let failed = outcome.is_err();
                if let Err(e) = outcome {
                    if r.first_errors.len() < 10 {
                        r.first_errors.push(e);
                    }
                }
                let win = r.windows.entry(w).or_default();
                win.latencies_us.push(us);
                win.errors += failed as u64;
                let by_kind = r.kinds.entry(kind).or_default();
                by_kind.latencies_us.push(us);
                by_kind.errors += failed as u64;
            }
        }));
    }
    for c in conns {
        c.await.unwrap();
    }

    let mut r = record.lock().unwrap();
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "| window (s) | requests | req/s | errors | p50 (ms) | p99 (ms) | gateway RSS (MiB) | task backlog |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut total = 0u64;
    let mut errors = 0u64;
    let rss = r.rss_kib.clone();
    let backlog = r.backlog.clone();
    for (w, win) in r.windows.iter_mut() {
        win.latencies_us.sort_unstable();
        let n = win.latencies_us.len() as u64;
        total += n;
        errors += win.errors;
        let from = w * a.window;
        let to = ((w + 1) * a.window).min(a.seconds);
        let secs = (to - from).max(1) as f64;
        println!(
            "| {from}–{to} | {n} | {:.0} | {} | {:.2} | {:.2} | {} | {} |",
            n as f64 / secs,
            win.errors,
            percentile(&win.latencies_us, 0.50),
            percentile(&win.latencies_us, 0.99),
            rss.get(w)
                .map(|k| format!("{:.1}", *k as f64 / 1024.0))
                .unwrap_or_else(|| "—".into()),
            backlog.get(w).map_or_else(|| "—".into(), u64::to_string),
        );
    }
    println!();
    println!("| kind | requests | errors | p50 (ms) | p99 (ms) |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for (kind, win) in r.kinds.iter_mut() {
        win.latencies_us.sort_unstable();
        println!(
            "| {} | {} | {} | {:.2} | {:.2} |",
            kind.name(),
            win.latencies_us.len(),
            win.errors,
            percentile(&win.latencies_us, 0.50),
            percentile(&win.latencies_us, 0.99),
        );
    }
    // The windows of the table (a sample taken while the last requests
    // drained, past the end, is left out).
    let shown: Vec<u64> = rss
        .iter()
        .filter(|(w, _)| r.windows.contains_key(w))
        .map(|(_, kib)| *kib)
        .collect();
    let (first, last) = (shown.first(), shown.last());
    println!();
    println!(
        "{total} requests in {elapsed:.0} s over {} connections ({:.0} req/s), {errors} errors",
        a.conns,
        total as f64 / elapsed
    );
    if let (Some(first), Some(last)) = (first, last) {
        println!(
            "gateway RSS: {:.1} MiB in the first window, {:.1} MiB in the last ({:+.1} MiB)",
            *first as f64 / 1024.0,
            *last as f64 / 1024.0,
            (*last as f64 - *first as f64) / 1024.0
        );
        let high = shown.iter().max().copied().unwrap_or_default();
        println!("gateway RSS at most {:.1} MiB", high as f64 / 1024.0);
    }
    if errors > 0 {
        for e in &r.first_errors {
            eprintln!("error: {e}");
        }
        std::process::exit(1);
    }
}
