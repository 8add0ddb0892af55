//! The `Store` contract, one set of cases run against both backends: sled in
//! a temporary directory and PostgreSQL in a throwaway schema of the real
//! server (127.0.0.1:5432, or `GATEHOUSE_TEST_PG`).

use gatehouse_actors::ids::random_id;
use gatehouse_actors::model::*;
use gatehouse_actors::store::{EndSessions, PgStore, SledStore, Store};
use gatehouse_actors::{GatehouseError, TokenHash};
use std::sync::Arc;
use time::{Duration, OffsetDateTime};

fn pg_url() -> String {
    std::env::var("GATEHOUSE_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A backend for one test, cleaned up afterwards.
enum Backend {
    /// The directory lives as long as the store.
    Sled(Arc<SledStore>, #[allow(dead_code)] tempfile::TempDir),
    Pg(Arc<PgStore>),
}

impl Backend {
    async fn sled() -> Backend {
        let dir = tempfile::tempdir().unwrap();
        Backend::Sled(Arc::new(SledStore::open(dir.path()).unwrap()), dir)
    }

    async fn pg() -> Backend {
        let schema = format!("gh_t_{}", &random_id()[..12]);
        Backend::Pg(Arc::new(
            PgStore::connect(&pg_url(), Some(&schema))
                .await
                .expect("PostgreSQL at 127.0.0.1:5432 (.ci/run starts it)"),
        ))
    }

    fn store(&self) -> &dyn Store {
        match self {
            Backend::Sled(s, _) => &**s,
            Backend::Pg(s) => &**s,
        }
    }

    async fn done(self) {
        if let Backend::Pg(s) = self {
            s.drop_schema().await.unwrap();
        }
    }
}

macro_rules! both {
    ($($case:ident),* $(,)?) => {
        mod sled {
            $(#[actix_rt::test] async fn $case() { let b = super::Backend::sled().await; super::cases::$case(b.store()).await; b.done().await; })*
        }
        mod postgres {
            $(#[actix_rt::test] async fn $case() { let b = super::Backend::pg().await; super::cases::$case(b.store()).await; b.done().await; })*
        }
    };
}

both!(
    usernames_are_unique_whatever_the_case,
    a_change_bumps_the_version_and_ends_sessions_as_asked,
    a_lock_ends_every_session_and_refuses_new_ones,
    removing_a_user_takes_sessions_and_tokens_with_it,
    no_session_or_token_for_a_missing_user,
    last_seen_and_last_used_only_move_forward,
    sweeps_delete_only_what_expired,
    an_oauth_state_is_taken_once,
    tokens_revoke_once_and_rotate_with_grace,
    signing_keys_load_oldest_first,
    audit_lists_newest_first,
    the_store_is_writable,
    concurrent_inserts_of_one_name_make_one_user,
    an_avatar_is_kept_replaced_and_removed_with_its_user,
    usage_is_summed_per_user_and_model,
    usage_filters_by_user_model_and_time,
    usage_buckets_group_by_aligned_time,
    an_empty_usage_batch_is_a_no_op,
    usage_outlives_its_user,
    huge_usage_counts_saturate,
);

fn now() -> OffsetDateTime {
    // Whole microseconds: PostgreSQL keeps no finer.
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(t.nanosecond() / 1000 * 1000).unwrap()
}

fn user(name: &str) -> UserRecord {
    UserRecord {
        id: random_id(),
        username: name.into(),
        display_name: None,
        avatar_url: None,
        roles: vec![],
        auth: "credentials".into(),
        created_at: now(),
        last_login: None,
        locked: None,
        password: Some(PasswordHash::Argon2 {
            phc: "$argon2id$x".into(),
        }),
        external_id: None,
        version: 0,
    }
}

fn session(user_id: &str, ttl: Duration) -> SessionRecord {
    let token = random_id();
    let t = now();
    SessionRecord {
        id: random_id(),
        token_hash: TokenHash::of(&token),
        user_id: user_id.into(),
        via: "password".into(),
        created_at: t,
        expires_at: t + ttl,
        last_seen_at: t,
        ip: Some("127.0.0.1".parse().unwrap()),
        user_agent: Some("test".into()),
        external_sid: Some("sid-1".into()),
    }
}

/// A minute boundary (so 60 s buckets start there).
const T0: OffsetDateTime = time::macros::datetime!(2024-05-01 10:00:00 UTC);

fn usage(
    user: &UserRecord,
    model: &str,
    secs: i64,
    prompt: u64,
    completion: u64,
    cost: f64,
) -> UsageRecord {
    UsageRecord {
        at: T0 + Duration::seconds(secs),
        user_id: user.id.clone(),
        username: user.username.clone(),
        token_id: Some(random_id()),
        provider: model.split('/').next().unwrap().into(),
        model: model.into(),
        prompt_tokens: prompt,
        completion_tokens: completion,
        status: 200,
        latency_ms: 120,
        cost,
    }
}

const GPT: &str = "openai/gpt-4o";
const CLAUDE: &str = "anthropic/claude";

/// Two users, two models, three times (T0, T0+30 s, T0+90 s); one record
/// twice and two at the same time, which must not overwrite each other.
/// "Bob" sorts before "alice" (byte order, as both backends sort).
fn usage_fixture() -> (UserRecord, UserRecord, Vec<UsageRecord>) {
    let (a, b) = (user("alice"), user("Bob"));
    let twice = usage(&a, GPT, 0, 10, 5, 0.25);
    let mut no_token = usage(&b, CLAUDE, 90, 7, 3, 0.125);
    no_token.token_id = None;
    no_token.status = 502;
    let batch = vec![
        twice.clone(),
        twice,
        usage(&a, GPT, 30, 20, 10, 0.5),
        usage(&a, CLAUDE, 90, 1, 2, 0.0),
        usage(&b, GPT, 30, 100, 50, 1.0),
        no_token,
    ];
    (a, b, batch)
}

fn row(
    u: &UserRecord,
    model: &str,
    requests: u64,
    prompt: u64,
    completion: u64,
    cost: f64,
) -> UsageRow {
    UsageRow {
        user: u.username.clone(),
        user_id: u.id.clone(),
        model: model.into(),
        requests,
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: prompt + completion,
        cost,
    }
}

fn usage_rows(a: &UserRecord, b: &UserRecord) -> Vec<UsageRow> {
    vec![
        row(b, CLAUDE, 1, 7, 3, 0.125),
        row(b, GPT, 1, 100, 50, 1.0),
        row(a, CLAUDE, 1, 1, 2, 0.0),
        row(a, GPT, 3, 40, 20, 1.0),
    ]
}

fn bucket(secs: i64, requests: u64, total_tokens: u64) -> UsageBucket {
    UsageBucket {
        start: T0 + Duration::seconds(secs),
        requests,
        total_tokens,
    }
}

fn token(user_id: &str) -> TokenRecord {
    let t = now();
    TokenRecord {
        id: random_id(),
        user_id: user_id.into(),
        name: "ci".into(),
        scopes: vec!["read".into()],
        models: Some(vec!["openai/*".into()]),
        allowed_ips: None,
        max_idle: None,
        created_at: t,
        expires_at: t + Duration::days(30),
        revoked_at: None,
        grace_until: None,
        rotated_from: None,
        last_used_at: None,
    }
}

mod cases {
    use super::*;

    pub async fn usage_is_summed_per_user_and_model(s: &dyn Store) {
        let (a, b, batch) = usage_fixture();
        let n = batch.len() as u64;
        s.record_usage(batch).await.unwrap();
        let rows = s.usage_summary(UsageQuery::default()).await.unwrap();
        assert_eq!(rows, usage_rows(&a, &b));
        assert_eq!(rows.iter().map(|r| r.requests).sum::<u64>(), n);
        for r in &rows {
            assert_eq!(r.total_tokens, r.prompt_tokens + r.completion_tokens);
        }
        // A second batch adds to the totals.
        s.record_usage(vec![usage(&b, CLAUDE, 200, 1, 1, 0.5)])
            .await
            .unwrap();
        let rows = s.usage_summary(UsageQuery::default()).await.unwrap();
        assert_eq!(rows[0], row(&b, CLAUDE, 2, 8, 4, 0.625));
    }

    pub async fn usage_filters_by_user_model_and_time(s: &dyn Store) {
        let (a, b, batch) = usage_fixture();
        s.record_usage(batch).await.unwrap();
        let all = usage_rows(&a, &b);
        let by_user = s
            .usage_summary(UsageQuery {
                user: Some("alice".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(by_user, all[2..].to_vec());
        let by_name_case = s
            .usage_summary(UsageQuery {
                user: Some("ALICE".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(by_name_case.is_empty(), "the user filter is exact");
        let by_model = s
            .usage_summary(UsageQuery {
                model: Some(GPT.into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(by_model, vec![all[1].clone(), all[3].clone()]);
        let both = s
            .usage_summary(UsageQuery {
                user: Some("Bob".into()),
                model: Some(CLAUDE.into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(both, vec![all[0].clone()]);

        let at = |secs| Some(T0 + Duration::seconds(secs));
        // `since` includes records at that time.
        let since = s
            .usage_summary(UsageQuery {
                since: at(30),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            since,
            vec![
                row(&b, CLAUDE, 1, 7, 3, 0.125),
                row(&b, GPT, 1, 100, 50, 1.0),
                row(&a, CLAUDE, 1, 1, 2, 0.0),
                row(&a, GPT, 1, 20, 10, 0.5),
            ]
        );
        // `until` excludes them.
        let until = s
            .usage_summary(UsageQuery {
                until: at(30),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(until, vec![row(&a, GPT, 2, 20, 10, 0.5)]);
        let window = s
            .usage_summary(UsageQuery {
                since: at(30),
                until: at(90),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            window,
            vec![row(&b, GPT, 1, 100, 50, 1.0), row(&a, GPT, 1, 20, 10, 0.5)]
        );
        let just_after = s
            .usage_summary(UsageQuery {
                since: Some(T0 + Duration::seconds(90) + Duration::microseconds(1)),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(just_after.is_empty());
        for (since, until) in [(at(30), at(30)), (at(90), at(30))] {
            let q = UsageQuery {
                since,
                until,
                ..Default::default()
            };
            assert!(s.usage_summary(q.clone()).await.unwrap().is_empty());
            assert!(s.usage_buckets(q, 60).await.unwrap().is_empty());
        }
        let long_ago = Some(time::macros::datetime!(1960-01-01 00:00:00 UTC));
        let from_before_1970 = s
            .usage_summary(UsageQuery {
                since: long_ago,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(from_before_1970, all);
    }

    pub async fn usage_buckets_group_by_aligned_time(s: &dyn Store) {
        let (_, _, batch) = usage_fixture();
        s.record_usage(batch).await.unwrap();
        let all = UsageQuery::default();
        assert_eq!(
            s.usage_buckets(all.clone(), 60).await.unwrap(),
            vec![bucket(0, 4, 210), bucket(60, 2, 13)]
        );
        assert_eq!(
            s.usage_buckets(all.clone(), 3600).await.unwrap(),
            vec![bucket(0, 6, 223)]
        );
        // 45 s buckets from the epoch (T0 is 38101280 × 45 s): none at T0+45 s.
        assert_eq!(
            s.usage_buckets(all.clone(), 45).await.unwrap(),
            vec![bucket(0, 4, 210), bucket(90, 2, 13)]
        );
        assert_eq!(
            s.usage_buckets(
                UsageQuery {
                    user: Some("alice".into()),
                    since: Some(T0 + Duration::seconds(1)),
                    ..Default::default()
                },
                60
            )
            .await
            .unwrap(),
            vec![bucket(0, 1, 30), bucket(60, 1, 3)]
        );
        // Before 1970, buckets still start at a multiple of the width (floor).
        let old = user("old");
        let mut r = usage(&old, GPT, 0, 1, 2, 0.0);
        r.at = OffsetDateTime::UNIX_EPOCH - Duration::seconds(30);
        s.record_usage(vec![r]).await.unwrap();
        let before_1970 = UsageQuery {
            since: Some(OffsetDateTime::UNIX_EPOCH - Duration::seconds(31)),
            until: Some(OffsetDateTime::UNIX_EPOCH),
            ..Default::default()
        };
        assert_eq!(
            s.usage_buckets(before_1970, 60).await.unwrap(),
            vec![UsageBucket {
                start: OffsetDateTime::UNIX_EPOCH - Duration::seconds(60),
                requests: 1,
                total_tokens: 3,
            }]
        );
        assert!(
            s.usage_buckets(all, 0).await.is_err(),
            "buckets of 0 s are refused"
        );
    }

    pub async fn an_empty_usage_batch_is_a_no_op(s: &dyn Store) {
        s.record_usage(vec![]).await.unwrap();
        assert!(s
            .usage_summary(UsageQuery::default())
            .await
            .unwrap()
            .is_empty());
        assert!(s
            .usage_buckets(UsageQuery::default(), 60)
            .await
            .unwrap()
            .is_empty());
    }

    pub async fn usage_outlives_its_user(s: &dyn Store) {
        let (a, b, batch) = usage_fixture();
        s.insert_user(a.clone()).await.unwrap();
        s.insert_user(b.clone()).await.unwrap();
        s.record_usage(batch).await.unwrap();
        s.delete_user(&a.id).await.unwrap();
        assert_eq!(
            s.usage_summary(UsageQuery::default()).await.unwrap(),
            usage_rows(&a, &b)
        );
        // A new user of the same name is a different user_id: its own rows.
        let again = user("alice");
        s.insert_user(again.clone()).await.unwrap();
        s.record_usage(vec![usage(&again, GPT, 0, 1, 1, 0.0)])
            .await
            .unwrap();
        let rows = s
            .usage_summary(UsageQuery {
                user: Some("alice".into()),
                model: Some(GPT.into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows.iter().map(|r| r.requests).sum::<u64>(), 4);
    }

    pub async fn huge_usage_counts_saturate(s: &dyn Store) {
        let u = user("big");
        let mut r = usage(&u, GPT, 0, u64::MAX, u64::MAX, f64::NAN);
        r.latency_ms = u64::MAX;
        s.record_usage(vec![r.clone(), r]).await.unwrap();
        let rows = s.usage_summary(UsageQuery::default()).await.unwrap();
        assert_eq!(rows.len(), 1);
        let x = &rows[0];
        assert_eq!(x.requests, 2);
        // sled keeps u64, PostgreSQL bigint: each saturates at its maximum.
        assert!(x.prompt_tokens >= i64::MAX as u64);
        assert!(x.completion_tokens >= i64::MAX as u64);
        assert!(x.total_tokens >= x.prompt_tokens);
        assert_eq!(x.cost, 0.0, "a cost that is not a number is stored as 0");
        let b = s.usage_buckets(UsageQuery::default(), 60).await.unwrap();
        assert_eq!((b.len(), b[0].requests), (1, 2));
        assert!(b[0].total_tokens >= i64::MAX as u64);
    }

    pub async fn an_avatar_is_kept_replaced_and_removed_with_its_user(s: &dyn Store) {
        let u = user("pic");
        s.insert_user(u.clone()).await.unwrap();
        assert_eq!(s.get_avatar(&u.id).await.unwrap(), None);
        s.put_avatar(&u.id, "image/png", vec![0x89, b'P', b'N', b'G', 0, 1, 2])
            .await
            .unwrap();
        s.put_avatar(&u.id, "image/webp", b"RIFF....WEBP".to_vec())
            .await
            .unwrap();
        assert_eq!(
            s.get_avatar(&u.id).await.unwrap(),
            Some(("image/webp".into(), b"RIFF....WEBP".to_vec()))
        );
        assert!(matches!(
            s.put_avatar("ghost", "image/png", vec![1]).await,
            Err(GatehouseError::NotFound)
        ));
        s.delete_user(&u.id).await.unwrap();
        assert_eq!(s.get_avatar(&u.id).await.unwrap(), None);
    }

    pub async fn usernames_are_unique_whatever_the_case(s: &dyn Store) {
        s.insert_user(user("Alice")).await.unwrap();
        assert!(matches!(
            s.insert_user(user("alice")).await,
            Err(GatehouseError::Conflict(_))
        ));
        let all = s.load_users().await.unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].username, "Alice");
    }

    pub async fn a_change_bumps_the_version_and_ends_sessions_as_asked(s: &dyn Store) {
        let u = user("bob");
        s.insert_user(u.clone()).await.unwrap();
        let sessions: Vec<_> = (0..3).map(|_| session(&u.id, Duration::hours(1))).collect();
        for x in &sessions {
            s.insert_session(x.clone()).await.unwrap();
        }
        let other = user("carol");
        s.insert_user(other.clone()).await.unwrap();
        s.insert_session(session(&other.id, Duration::hours(1)))
            .await
            .unwrap();
        let keep = sessions[1].token_hash;
        let hash = PasswordHash::Argon2 {
            phc: "$argon2id$new".into(),
        };
        let (after, ended) = s
            .update_user(
                &u.id,
                UserChange::Password(hash.clone()),
                Some(EndSessions::AllBut(keep)),
            )
            .await
            .unwrap();
        assert_eq!(
            (ended, after.version, after.password.clone()),
            (2, 1, Some(hash))
        );
        let left: Vec<_> = s
            .load_sessions()
            .await
            .unwrap()
            .into_iter()
            .filter(|x| x.user_id == u.id)
            .collect();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].token_hash, keep);
        assert_eq!(left[0], sessions[1], "a session round-trips exactly");
        let (after, ended) = s
            .update_user(&u.id, UserChange::Roles(vec!["Admin".into()]), None)
            .await
            .unwrap();
        assert_eq!((ended, after.version), (0, 2));
        assert_eq!(
            s.load_users()
                .await
                .unwrap()
                .iter()
                .find(|x| x.id == u.id)
                .unwrap(),
            &after
        );
        assert_eq!(
            s.load_sessions().await.unwrap().len(),
            2,
            "carol's session is untouched"
        );
        assert!(matches!(
            s.update_user("nobody", UserChange::Roles(vec![]), None)
                .await,
            Err(GatehouseError::NotFound)
        ));
    }

    pub async fn a_lock_ends_every_session_and_refuses_new_ones(s: &dyn Store) {
        let u = user("dan");
        s.insert_user(u.clone()).await.unwrap();
        s.insert_session(session(&u.id, Duration::hours(1)))
            .await
            .unwrap();
        s.insert_token(token(&u.id)).await.unwrap();
        let lock = Lock {
            reason: "left".into(),
            at: now(),
        };
        let (after, ended) = s
            .update_user(
                &u.id,
                UserChange::Lock(Some(lock.clone())),
                Some(EndSessions::All),
            )
            .await
            .unwrap();
        assert_eq!((ended, after.locked), (1, Some(lock)));
        assert!(s.load_sessions().await.unwrap().is_empty());
        assert!(matches!(
            s.insert_session(session(&u.id, Duration::hours(1))).await,
            Err(GatehouseError::AccountLocked)
        ));
        assert!(matches!(
            s.insert_token(token(&u.id)).await,
            Err(GatehouseError::AccountLocked)
        ));
        assert_eq!(
            s.load_tokens().await.unwrap().len(),
            1,
            "a lock does not delete tokens"
        );
        s.update_user(&u.id, UserChange::Lock(None), None)
            .await
            .unwrap();
        s.insert_session(session(&u.id, Duration::hours(1)))
            .await
            .unwrap();
    }

    pub async fn removing_a_user_takes_sessions_and_tokens_with_it(s: &dyn Store) {
        let (u, v) = (user("erin"), user("frank"));
        s.insert_user(u.clone()).await.unwrap();
        s.insert_user(v.clone()).await.unwrap();
        for _ in 0..2 {
            s.insert_session(session(&u.id, Duration::hours(1)))
                .await
                .unwrap();
        }
        s.insert_session(session(&v.id, Duration::hours(1)))
            .await
            .unwrap();
        s.insert_token(token(&u.id)).await.unwrap();
        s.insert_token(token(&v.id)).await.unwrap();
        assert_eq!(s.delete_user(&u.id).await.unwrap(), 2);
        assert!(matches!(
            s.delete_user(&u.id).await,
            Err(GatehouseError::NotFound)
        ));
        assert_eq!(s.load_sessions().await.unwrap().len(), 1);
        assert_eq!(s.load_tokens().await.unwrap().len(), 1);
        // The name is free again, for a new user with a new id.
        s.insert_user(user("erin")).await.unwrap();
    }

    pub async fn no_session_or_token_for_a_missing_user(s: &dyn Store) {
        assert!(matches!(
            s.insert_session(session("ghost", Duration::hours(1))).await,
            Err(GatehouseError::NotFound)
        ));
        assert!(matches!(
            s.insert_token(token("ghost")).await,
            Err(GatehouseError::NotFound)
        ));
        assert!(s.load_sessions().await.unwrap().is_empty());
    }

    pub async fn last_seen_and_last_used_only_move_forward(s: &dyn Store) {
        let u = user("gail");
        s.insert_user(u.clone()).await.unwrap();
        let x = session(&u.id, Duration::hours(1));
        s.insert_session(x.clone()).await.unwrap();
        let t = token(&u.id);
        s.insert_token(t.clone()).await.unwrap();
        let later = x.last_seen_at + Duration::minutes(5);
        let gone = TokenHash::of("not-a-session");
        s.touch_sessions(vec![(x.token_hash, later), (gone, later)])
            .await
            .unwrap();
        s.touch_sessions(vec![(x.token_hash, x.last_seen_at)])
            .await
            .unwrap();
        assert_eq!(s.load_sessions().await.unwrap()[0].last_seen_at, later);
        s.touch_tokens(vec![(t.id.clone(), later), ("gone".into(), later)])
            .await
            .unwrap();
        s.touch_tokens(vec![(t.id.clone(), later - Duration::minutes(1))])
            .await
            .unwrap();
        assert_eq!(s.load_tokens().await.unwrap()[0].last_used_at, Some(later));
    }

    pub async fn sweeps_delete_only_what_expired(s: &dyn Store) {
        let u = user("hal");
        s.insert_user(u.clone()).await.unwrap();
        let short = session(&u.id, Duration::minutes(1));
        let long = session(&u.id, Duration::hours(1));
        s.insert_session(short.clone()).await.unwrap();
        s.insert_session(long.clone()).await.unwrap();
        assert_eq!(s.sweep_sessions(now()).await.unwrap(), 0);
        assert_eq!(
            s.sweep_sessions(now() + Duration::minutes(2))
                .await
                .unwrap(),
            1
        );
        let left = s.load_sessions().await.unwrap();
        assert_eq!((left.len(), left[0].token_hash), (1, long.token_hash));
        let state = |ttl: Duration| OAuthState {
            state: random_id(),
            provider: "github".into(),
            browser: TokenHash::of("b"),
            pkce_verifier: "v".into(),
            nonce: Some("n".into()),
            next: Some("/x".into()),
            created_at: now(),
            expires_at: now() + ttl,
        };
        let (old, fresh) = (state(Duration::minutes(1)), state(Duration::minutes(10)));
        s.insert_oauth_state(old.clone()).await.unwrap();
        s.insert_oauth_state(fresh.clone()).await.unwrap();
        assert_eq!(
            s.sweep_oauth_states(now() + Duration::minutes(2))
                .await
                .unwrap(),
            1
        );
        assert!(s.take_oauth_state(&old.state).await.unwrap().is_none());
        assert_eq!(s.take_oauth_state(&fresh.state).await.unwrap(), Some(fresh));
    }

    pub async fn an_oauth_state_is_taken_once(s: &dyn Store) {
        let st = OAuthState {
            state: random_id(),
            provider: "oidc:corp".into(),
            browser: TokenHash::of("browser"),
            pkce_verifier: "verifier".into(),
            nonce: None,
            next: None,
            created_at: now(),
            expires_at: now() + Duration::minutes(10),
        };
        s.insert_oauth_state(st.clone()).await.unwrap();
        let (a, b) =
            futures_util::join!(s.take_oauth_state(&st.state), s.take_oauth_state(&st.state));
        let taken: Vec<_> = [a.unwrap(), b.unwrap()].into_iter().flatten().collect();
        assert_eq!(taken, vec![st], "exactly one of two racing takes gets it");
    }

    pub async fn tokens_revoke_once_and_rotate_with_grace(s: &dyn Store) {
        let u = user("ivy");
        s.insert_user(u.clone()).await.unwrap();
        let t = token(&u.id);
        s.insert_token(t.clone()).await.unwrap();
        let at = now();
        let r = s
            .update_token(&t.id, TokenChange::Revoke { at })
            .await
            .unwrap();
        assert_eq!(r.revoked_at, Some(at));
        let again = s
            .update_token(
                &t.id,
                TokenChange::Revoke {
                    at: at + Duration::hours(1),
                },
            )
            .await
            .unwrap();
        assert_eq!(
            again.revoked_at,
            Some(at),
            "the first revocation time stays"
        );
        assert!(matches!(
            s.update_token("nope", TokenChange::Revoke { at }).await,
            Err(GatehouseError::NotFound)
        ));

        let old = token(&u.id);
        s.insert_token(old.clone()).await.unwrap();
        let mut new = token(&u.id);
        new.rotated_from = Some(old.id.clone());
        let until = now() + Duration::hours(1);
        let updated = s.rotate_token(&old.id, until, new.clone()).await.unwrap();
        assert_eq!(updated.grace_until, Some(until));
        let shorter = now() + Duration::minutes(5);
        let updated = s
            .rotate_token(&old.id, shorter, token(&u.id))
            .await
            .unwrap();
        assert_eq!(
            updated.grace_until,
            Some(shorter),
            "a second rotation can only shorten the grace"
        );
        let later = s.rotate_token(&old.id, until, token(&u.id)).await.unwrap();
        assert_eq!(later.grace_until, Some(shorter));
        let all = s.load_tokens().await.unwrap();
        assert_eq!(all.len(), 5);
        assert_eq!(all.iter().find(|x| x.id == new.id).unwrap(), &new);
    }

    pub async fn signing_keys_load_oldest_first(s: &dyn Store) {
        let t = now();
        let key = |kid: &str, at: OffsetDateTime| SigningKeyRecord {
            kid: kid.into(),
            pkcs8: "cGtjczg=".into(),
            public: "cHVi".into(),
            created_at: at,
        };
        s.insert_signing_key(key("second", t + Duration::seconds(1)))
            .await
            .unwrap();
        s.insert_signing_key(key("first", t)).await.unwrap();
        let kids: Vec<String> = s
            .load_signing_keys()
            .await
            .unwrap()
            .into_iter()
            .map(|k| k.kid)
            .collect();
        assert_eq!(kids, vec!["first", "second"]);
    }

    pub async fn audit_lists_newest_first(s: &dyn Store) {
        let t = now();
        for i in 0..3 {
            s.append_audit(AuditEvent {
                id: random_id(),
                at: t + Duration::seconds(i),
                actor: None,
                actor_name: "cli".into(),
                action: format!("a{i}"),
                target: None,
                ip: None,
                details: serde_json::json!({"i": i}),
            })
            .await
            .unwrap();
        }
        let got: Vec<String> = s
            .list_audit(2)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect();
        assert_eq!(got, vec!["a2", "a1"]);
    }

    pub async fn the_store_is_writable(s: &dyn Store) {
        s.check_writable().await.unwrap();
        s.check_writable().await.unwrap();
    }

    pub async fn concurrent_inserts_of_one_name_make_one_user(s: &dyn Store) {
        let results =
            futures_util::future::join_all((0..20).map(|_| s.insert_user(user("zoe")))).await;
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
        assert!(results
            .iter()
            .filter(|r| r.is_err())
            .all(|r| matches!(r, Err(GatehouseError::Conflict(_)))));
        assert_eq!(s.load_users().await.unwrap().len(), 1);
    }
}

/// Usage records are durable: a store opened again on the same data sees them.
mod reopen {
    use super::*;

    /// sled releases its file lock from its flusher thread shortly after the
    /// last handle is dropped: wait for it (at most 10 s).
    async fn open_again(dir: &std::path::Path) -> SledStore {
        for _ in 0..200 {
            match SledStore::open(dir) {
                Ok(s) => return s,
                Err(gatehouse_actors::StoreError::Io(e))
                    if e.to_string().contains("could not acquire lock") =>
                {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(e) => panic!("{e}"),
            }
        }
        panic!("sled kept its lock after the store was dropped");
    }

    #[actix_rt::test]
    async fn sled_usage_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, batch) = usage_fixture();
        {
            let s = SledStore::open(dir.path()).unwrap();
            s.record_usage(batch).await.unwrap();
        }
        let s = open_again(dir.path()).await;
        assert_eq!(
            s.usage_summary(UsageQuery::default()).await.unwrap(),
            usage_rows(&a, &b)
        );
        // New records after reopening never overwrite the old ones.
        let (_, _, again) = usage_fixture();
        s.record_usage(again).await.unwrap();
        let rows = s.usage_summary(UsageQuery::default()).await.unwrap();
        assert_eq!(rows.iter().map(|r| r.requests).sum::<u64>(), 12);
    }

    #[actix_rt::test]
    async fn postgres_usage_survives_reconnecting() {
        let schema = format!("gh_t_{}", &random_id()[..12]);
        let (a, b, batch) = usage_fixture();
        {
            let s = PgStore::connect(&pg_url(), Some(&schema)).await.unwrap();
            s.record_usage(batch).await.unwrap();
        }
        let s = PgStore::connect(&pg_url(), Some(&schema)).await.unwrap();
        assert_eq!(
            s.usage_summary(UsageQuery::default()).await.unwrap(),
            usage_rows(&a, &b)
        );
        s.drop_schema().await.unwrap();
    }
}
