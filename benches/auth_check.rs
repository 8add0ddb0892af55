//! The session check on the hot path, against baselines measured in the same
//! run: a bare `HashMap` lookup, and the same check sent through the
//! `SessionActor`'s mailbox. Also the password-hash paths.
//!
//! `cargo bench --bench auth_check`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use gatehouse::password::Hasher;
use gatehouse_actors::model::PasswordHash;
use gatehouse_actors::session::{CreateSession, ValidateSession};
use gatehouse_actors::store::{SharedStore, SledStore};
use gatehouse_actors::users::{AddUser, ThrottleConfig};
use gatehouse_actors::{ActorConfig, ActorHandles, Supervisor, SystemClock, TokenHash};
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SESSIONS: usize = 10_000;

struct Fixture {
    _system: actix_rt::SystemRunner,
    handles: ActorHandles,
    tokens: Vec<String>,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let system = actix_rt::System::new();
    let store: SharedStore = Arc::new(SledStore::open(dir.path()).unwrap());
    let config = ActorConfig {
        sweep_interval: Duration::from_secs(3600),
        check_interval: Duration::from_secs(3600),
        oauth_state_ttl: time::Duration::minutes(10),
        throttle: ThrottleConfig {
            max_failures: 5,
            max_failures_per_ip: 5,
            window: time::Duration::minutes(15),
        },
        gateway: Default::default(),
        usage_flush: Duration::from_secs(1),
        tasks: Default::default(),
    };
    let (handles, tokens) = system.block_on(async move {
        let (_sup, handles) = Supervisor::start(store, Arc::new(SystemClock), config)
            .await
            .unwrap();
        let now = handles.now();
        let add = AddUser {
            username: "bench".into(),
            password: None,
            admin: false,
            auth: "credentials".into(),
            reset_if_exists: false,
            now,
        };
        let (user, _) = handles.users().send(add).await.unwrap().unwrap();
        let mut tokens = Vec::with_capacity(SESSIONS);
        for _ in 0..SESSIONS {
            let msg = CreateSession {
                user_id: user.id.clone(),
                via: "password".into(),
                ttl: time::Duration::days(1),
                ip: None,
                user_agent: None,
                external_sid: None,
                now,
            };
            tokens.push(handles.sessions().send(msg).await.unwrap().unwrap().0);
        }
        (handles, tokens)
    });
    Fixture {
        _system: system,
        handles,
        tokens,
        _dir: dir,
    }
}

fn session_check(c: &mut Criterion) {
    let f = fixture();
    let view = f.handles.session_view().clone();
    let users = f.handles.user_view().clone();
    let now = time::OffsetDateTime::now_utc();
    let baseline: HashMap<TokenHash, usize> = f
        .tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (TokenHash::of(t), i))
        .collect();
    let hashes: Vec<TokenHash> = f.tokens.iter().map(|t| TokenHash::of(t)).collect();

    let mut g = c.benchmark_group("session_check");
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    g.bench_function("baseline_hashmap_lookup", |b| {
        b.iter(|| {
            i = (i + 1) % SESSIONS;
            black_box(baseline.get(&hashes[i]))
        })
    });
    g.bench_function("sha256_of_token", |b| {
        b.iter(|| {
            i = (i + 1) % SESSIONS;
            black_box(TokenHash::of(&f.tokens[i]))
        })
    });
    g.bench_function("snapshot_validate_with_hash_and_user", |b| {
        b.iter(|| {
            i = (i + 1) % SESSIONS;
            let h = TokenHash::of(&f.tokens[i]);
            let s = view.validate(&h, now).unwrap();
            s.touch(now);
            black_box(users.get(&s.record.user_id).unwrap())
        })
    });
    g.bench_function("mailbox_validate", |b| {
        let addr = f.handles.sessions();
        b.iter_custom(|iters| {
            f._system.block_on(async {
                let start = Instant::now();
                for k in 0..iters as usize {
                    let h = hashes[k % SESSIONS];
                    black_box(
                        addr.send(ValidateSession { token_hash: h, now })
                            .await
                            .unwrap()
                            .unwrap(),
                    );
                }
                start.elapsed()
            })
        })
    });
    g.finish();

    // Two threads at once: the snapshot scales, one mailbox serialises.
    let mut g = c.benchmark_group("session_check_2_threads");
    g.throughput(Throughput::Elements(1));
    g.bench_function(BenchmarkId::new("snapshot", 2), |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            std::thread::scope(|s| {
                for t in 0..2 {
                    let (view, hashes) = (&view, &hashes);
                    s.spawn(move || {
                        for k in 0..(iters as usize / 2) {
                            black_box(view.validate(&hashes[(k + t) % SESSIONS], now));
                        }
                    });
                }
            });
            start.elapsed()
        })
    });
    g.bench_function(BenchmarkId::new("mailbox", 2), |b| {
        let addr = f.handles.sessions();
        b.iter_custom(|iters| {
            // The actor runs on the system's thread, driven by block_on.
            f._system.block_on(async {
                let start = Instant::now();
                let mut joins = Vec::new();
                for t in 0..2 {
                    let (addr, hashes) = (addr.clone(), hashes.clone());
                    joins.push(std::thread::spawn(move || {
                        tokio::runtime::Builder::new_current_thread()
                            .build()
                            .unwrap()
                            .block_on(async {
                                for k in 0..(iters as usize / 2) {
                                    let h = hashes[(k + t) % SESSIONS];
                                    black_box(
                                        addr.send(ValidateSession { token_hash: h, now })
                                            .await
                                            .unwrap()
                                            .unwrap(),
                                    );
                                }
                            })
                    }));
                }
                while joins.iter().any(|j| !j.is_finished()) {
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
                start.elapsed()
            })
        })
    });
    g.finish();
}

fn password_hashes(c: &mut Criterion) {
    let system = actix_rt::System::new();
    let hasher = Hasher::new(Some(1));
    let argon = system
        .block_on(hasher.hash("correct-horse-battery"))
        .unwrap();
    let salt = "abcd";
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        format!("{salt}correct-horse-battery").as_bytes(),
    );
    let legacy = PasswordHash::LegacySha256 {
        salt: salt.into(),
        hex: hex::encode(digest),
    };
    let mut g = c.benchmark_group("password_verify");
    g.sample_size(10);
    g.bench_function("argon2id_owasp", |b| {
        b.iter(|| system.block_on(hasher.verify("correct-horse-battery", Some(&argon))))
    });
    g.bench_function("unknown_user_dummy", |b| {
        b.iter(|| system.block_on(hasher.verify("correct-horse-battery", None)))
    });
    g.finish();
    let mut g = c.benchmark_group("password_verify_fast");
    g.bench_function("legacy_sha256_wrong", |b| {
        // A wrong password: no Argon2id upgrade is computed.
        b.iter(|| system.block_on(hasher.verify("wrong-horse-battery", Some(&legacy))))
    });
    g.finish();
}

fn gateway_tokens(c: &mut Criterion) {
    use gatehouse::auth::bearer::{verify, GatewayTokens};
    use gatehouse_actors::tokens::{CreateToken, TokenSpec};
    let f = fixture();
    let user_id = f
        .handles
        .session_view()
        .validate(
            &TokenHash::of(&f.tokens[0]),
            time::OffsetDateTime::now_utc(),
        )
        .unwrap()
        .record
        .user_id
        .clone();
    let handles = f.handles.clone();
    let secrets: Vec<String> = f._system.block_on(async move {
        let mut out = Vec::new();
        for i in 0..1000 {
            let spec = TokenSpec {
                name: format!("t{i}"),
                scopes: vec!["read".into()],
                models: None,
                allowed_ips: None,
                max_idle: None,
                ttl: time::Duration::days(1),
            };
            let msg = CreateToken {
                user_id: user_id.clone(),
                spec,
                now: handles.now(),
            };
            out.push(handles.users().send(msg).await.unwrap().unwrap().0);
        }
        out
    });
    let now = time::OffsetDateTime::now_utc();
    let cache = GatewayTokens::default();
    for s in &secrets {
        cache.check(s, &f.handles, now).unwrap();
    }
    let ids: Vec<String> = secrets
        .iter()
        .map(|s| cache.check(s, &f.handles, now).unwrap().0.jti.clone())
        .collect();
    let baseline: HashMap<String, usize> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.clone(), i))
        .collect();
    let table = f.handles.token_table().clone();
    let mut g = c.benchmark_group("gateway_token");
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    g.bench_function("baseline_hashmap_lookup_by_id", |b| {
        b.iter(|| {
            i = (i + 1) % ids.len();
            black_box(baseline.get(&ids[i]))
        })
    });
    g.bench_function("revocation_check_alone", |b| {
        b.iter(|| {
            i = (i + 1) % ids.len();
            let t = table.get(&ids[i]).unwrap();
            black_box(t.record.status(now, t.last_used_at()))
        })
    });
    g.bench_function("seen_before_full_check", |b| {
        b.iter(|| {
            i = (i + 1) % secrets.len();
            black_box(cache.check(&secrets[i], &f.handles, now).unwrap())
        })
    });
    let ring = f.handles.keyring().load();
    g.bench_function("first_sight_ed25519_verify", |b| {
        b.iter(|| {
            i = (i + 1) % secrets.len();
            black_box(verify(&secrets[i][3..], &ring).unwrap())
        })
    });
    g.finish();
}

/// The verdict cache of `[[auth.bearer]]` validators, for a token seen
/// before. The cache path is the same for every validator kind; the token
/// here is the size of a typical RS256 access token, accepted once by a
/// custom validator served in-process.
fn external_cached(c: &mut Criterion) {
    use actix_web::{web, App, HttpResponse, HttpServer};
    use futures_util::FutureExt;
    let system = actix_rt::System::new();
    let (validators, token, http, req) = system.block_on(async {
        let server = HttpServer::new(|| {
            App::new().route(
                "/v",
                web::post().to(|| async {
                    HttpResponse::Ok().json(serde_json::json!({"principal": "svc"}))
                }),
            )
        })
        .workers(1)
        .bind(("127.0.0.1", 0))
        .unwrap();
        let url = format!("http://{}/v", server.addrs()[0]);
        actix_rt::spawn(server.run());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("g.toml");
        std::fs::write(
            &file,
            format!(
                "[[auth.bearer]]\ntype = \"custom\"\nendpoint = \"{url}\"\ncache_ttl = \"1h\"\n"
            ),
        )
        .unwrap();
        let config =
            gatehouse::config::Config::load_with_env(Some(&file), dir.path(), &Default::default())
                .unwrap();
        let validators = gatehouse::auth::external::Validators::new(&config.auth.bearer).unwrap();
        let token = format!(
            "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ.{}.{}",
            "x".repeat(420),
            "y".repeat(342)
        );
        let http = validators.http_client();
        let req = actix_web::test::TestRequest::default().to_http_request();
        let now = time::OffsetDateTime::now_utc();
        assert!(validators
            .validate(&http, &token, &req, now)
            .await
            .is_some());
        (validators, token, http, req)
    });
    let now = time::OffsetDateTime::now_utc();
    let baseline: HashMap<String, usize> = [(token.clone(), 1)].into_iter().collect();
    let mut g = c.benchmark_group("external_bearer");
    g.throughput(Throughput::Elements(1));
    g.bench_function("baseline_hashmap_lookup_of_the_token", |b| {
        b.iter(|| black_box(baseline.get(token.as_str())))
    });
    g.bench_function("cached_verdict", |b| {
        b.iter(|| {
            black_box(
                validators
                    .validate(&http, &token, &req, now)
                    .now_or_never()
                    .flatten()
                    .unwrap(),
            )
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    session_check,
    gateway_tokens,
    external_cached,
    password_hashes
);
criterion_main!(benches);
