//! Does a burst of sign-ins hold up other requests? The real server (actors,
//! sled, HTTP) runs in this process; the p50/p99 of `GET /auth/session` are
//! measured alone, then during a sign-in burst, in the same run, and
//! reported as ratios. Argon2id runs on a bounded blocking pool, so the
//! session check should barely move.
//!
//! `cargo bench --bench signin_burst` (env: BURST_SECS, default 5)

use actix_web::{App, HttpServer};
use gatehouse::config::Config;
use gatehouse::Gatehouse;
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PW: &str = "correct-horse-battery";
const READERS: usize = 8;
const SIGNERS: usize = 16;

fn main() {
    let secs: u64 = std::env::var("BURST_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let home = tempfile::tempdir().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let home_path = home.path().to_owned();
    std::thread::spawn(move || {
        let system = actix_rt::System::new();
        system.block_on(async move {
            let gh = Gatehouse::builder(Config::defaults())
                .home(&home_path)
                .build()
                .await
                .unwrap();
            let actor = gatehouse::accounts::Actor::cli();
            gatehouse::accounts::add_user(&gh.data(), &actor, "reader", PW, false, false)
                .await
                .unwrap();
            for i in 0..SIGNERS {
                gatehouse::accounts::add_user(
                    &gh.data(),
                    &actor,
                    &format!("signer{i}"),
                    PW,
                    false,
                    false,
                )
                .await
                .unwrap();
            }
            let data = gh.data();
            let server = HttpServer::new(move || {
                App::new()
                    .app_data(data.clone())
                    .configure(gatehouse::configure)
            })
            .workers(2)
            .bind(("127.0.0.1", 0))
            .unwrap();
            tx.send(server.addrs()[0]).unwrap();
            server.run().await.unwrap();
            drop(gh);
        });
    });
    let addr = rx.recv().unwrap();
    let url = format!("http://{addr}");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let client = reqwest::Client::new();
        let res = client
            .post(format!("{url}/auth/login"))
            .json(&json!({"username": "reader", "password": PW}))
            .send()
            .await
            .unwrap();
        let cookie = res.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();

        let alone = measure(&url, &cookie, Duration::from_secs(secs), None).await;
        let signins = Arc::new(AtomicU64::new(0));
        let during = measure(
            &url,
            &cookie,
            Duration::from_secs(secs),
            Some(signins.clone()),
        )
        .await;
        let n = signins.load(Ordering::Relaxed);

        println!("GET /auth/session with {READERS} concurrent readers, {secs}s per phase");
        println!(
            "{:<28} {:>10} {:>10} {:>10} {:>10}",
            "phase", "requests", "rps", "p50 µs", "p99 µs"
        );
        for (name, s) in [("alone", &alone), ("during sign-in burst", &during)] {
            println!(
                "{:<28} {:>10} {:>10.0} {:>10} {:>10}",
                name, s.count, s.rps, s.p50, s.p99
            );
        }
        println!(
            "sign-ins completed during the burst: {n} ({:.1}/s, {SIGNERS} concurrent)",
            n as f64 / secs as f64
        );
        println!(
            "ratio during/alone: p50 {:.2}x, p99 {:.2}x, throughput {:.2}x",
            during.p50 as f64 / alone.p50 as f64,
            during.p99 as f64 / alone.p99 as f64,
            during.rps / alone.rps
        );
    });
}

struct Stats {
    count: usize,
    rps: f64,
    p50: u128,
    p99: u128,
}

async fn measure(
    url: &str,
    cookie: &str,
    length: Duration,
    burst: Option<Arc<AtomicU64>>,
) -> Stats {
    let stop = Arc::new(AtomicBool::new(false));
    let mut signers = Vec::new();
    if let Some(done) = &burst {
        for i in 0..SIGNERS {
            let (url, stop, done) = (url.to_owned(), stop.clone(), done.clone());
            signers.push(tokio::spawn(async move {
                let c = reqwest::Client::new();
                while !stop.load(Ordering::Relaxed) {
                    let r = c
                        .post(format!("{url}/auth/login"))
                        .json(&json!({"username": format!("signer{i}"), "password": PW}))
                        .send()
                        .await;
                    if r.is_ok_and(|r| r.status() == 200) {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let start = Instant::now();
    let mut readers = Vec::new();
    for _ in 0..READERS {
        let (url, cookie) = (url.to_owned(), cookie.to_owned());
        readers.push(tokio::spawn(async move {
            let c = reqwest::Client::new();
            let mut lat = Vec::new();
            while start.elapsed() < length {
                let t = Instant::now();
                let r = c
                    .get(format!("{url}/auth/session"))
                    .header("cookie", &cookie)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                let _ = r.bytes().await;
                lat.push(t.elapsed().as_micros());
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for r in readers {
        all.extend(r.await.unwrap());
    }
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    for s in signers {
        let _ = s.await;
    }
    all.sort_unstable();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    Stats {
        count: all.len(),
        rps: all.len() as f64 / elapsed.as_secs_f64(),
        p50: pct(0.50),
        p99: pct(0.99),
    }
}
