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
    a_folded_usage_record_counts_all_its_calls,
    usage_filters_by_user_model_and_time,
    usage_buckets_group_by_aligned_time,
    an_empty_usage_batch_is_a_no_op,
    usage_outlives_its_user,
    huge_usage_counts_saturate,
    tasks_are_saved_with_their_events_and_key,
    an_idempotency_key_is_taken_once,
    task_versions_refuse_stale_writes,
    concurrent_saves_with_one_key_save_one_task,
    claims_take_runnable_tasks_oldest_first,
    concurrent_claims_never_share_a_task,
    the_backlog_counts_queued_and_running_tasks_up_to_a_cap,
    idempotency_sweeps_and_reads_skip_expired,
    reservations_are_all_or_none_and_stop_at_the_limit,
    concurrent_reservations_never_pass_the_limit,
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
        requests: 1,
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

fn task(id: &str, status: TaskStatus, created_at: OffsetDateTime) -> TaskRecord {
    TaskRecord {
        id: id.into(),
        kind: "chat.completion".into(),
        status,
        owner: "u1".into(),
        owner_name: "ann".into(),
        token_id: Some("tok1".into()),
        input: serde_json::json!({"model": "openai/gpt", "messages": [{"role": "user", "content": "hi"}]}),
        requires_approval: false,
        created_at,
        updated_at: created_at,
        result: None,
        error: None,
        attempts: 0,
        external_id: None,
        claimed_by: None,
        claim_until: None,
        events: 0,
        version: 1,
    }
}

fn event(task_id: &str, seq: u64, kind: &str) -> TaskEvent {
    TaskEvent {
        task_id: task_id.into(),
        seq,
        at: T0 + Duration::seconds(seq as i64),
        kind: kind.into(),
        data: serde_json::json!({"seq": seq, "text": "x"}),
    }
}

fn idem(
    principal: &str,
    key: &str,
    task_id: &str,
    created_at: OffsetDateTime,
) -> IdempotencyRecord {
    IdempotencyRecord {
        principal: principal.into(),
        key: key.into(),
        fingerprint: "ab".repeat(32),
        status: 202,
        body: serde_json::json!({"id": task_id, "status": "queued"}),
        task_id: Some(task_id.into()),
        created_at,
        expires_at: created_at + Duration::hours(24),
    }
}

fn ids(tasks: &[TaskRecord]) -> Vec<&str> {
    tasks.iter().map(|t| t.id.as_str()).collect()
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

    pub async fn a_folded_usage_record_counts_all_its_calls(s: &dyn Store) {
        let u = user("folded");
        let mut many = usage(&u, GPT, 0, 30, 15, 0.0);
        many.requests = 3;
        s.record_usage(vec![many, usage(&u, GPT, 10, 10, 5, 0.0)])
            .await
            .unwrap();
        let rows = s.usage_summary(UsageQuery::default()).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].requests, rows[0].total_tokens), (4, 60));
        let buckets = s.usage_buckets(UsageQuery::default(), 60).await.unwrap();
        assert_eq!(buckets.iter().map(|b| b.requests).sum::<u64>(), 4);
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

    pub async fn tasks_are_saved_with_their_events_and_key(s: &dyn Store) {
        let mut t = task("t1", TaskStatus::Queued, T0);
        t.events = 2;
        let evs = vec![event("t1", 1, "status"), event("t1", 2, "output")];
        let key = idem("user:u1", "k1", "t1", T0);
        let saved = s.save_task(t.clone(), evs.clone(), Some(key.clone()));
        assert_eq!(saved.await.unwrap(), SaveTask::Saved);
        assert_eq!(s.get_task("t1").await.unwrap(), Some(t.clone()));
        assert_eq!(s.get_task("nope").await.unwrap(), None);
        assert_eq!(s.task_events("t1", 0).await.unwrap(), evs);
        assert_eq!(s.task_events("t1", 1).await.unwrap(), evs[1..]);
        assert!(s.task_events("t1", 2).await.unwrap().is_empty());
        assert!(s.task_events("t1", u64::MAX).await.unwrap().is_empty());
        assert!(s.task_events("nope", 0).await.unwrap().is_empty());
        assert_eq!(
            s.get_idempotency("user:u1", "k1", T0).await.unwrap(),
            Some(key)
        );

        // Oldest first, then by id; a task whose id extends another's keeps
        // its events apart.
        let mut t10 = task("t10", TaskStatus::Running, T0 + Duration::seconds(1));
        t10.events = 1;
        for (x, evs) in [
            (
                task("t0", TaskStatus::Queued, T0 - Duration::minutes(1)),
                vec![],
            ),
            (task("a1", TaskStatus::Succeeded, T0), vec![]),
            (t10, vec![event("t10", 1, "status")]),
        ] {
            assert_eq!(s.save_task(x, evs, None).await.unwrap(), SaveTask::Saved);
        }
        let all = s.load_tasks().await.unwrap();
        assert_eq!(ids(&all), vec!["t0", "a1", "t1", "t10"]);
        assert_eq!(all[2], t);
        assert_eq!(s.task_events("t1", 0).await.unwrap(), evs);
        assert_eq!(s.task_events("t10", 0).await.unwrap().len(), 1);

        // An event of another task is refused, and nothing is written.
        let x = task("x", TaskStatus::Queued, T0);
        let k = idem("user:u1", "kx", "x", T0);
        assert!(s
            .save_task(x, vec![event("t1", 3, "status")], Some(k))
            .await
            .is_err());
        assert_eq!(s.get_task("x").await.unwrap(), None);
        assert_eq!(s.get_idempotency("user:u1", "kx", T0).await.unwrap(), None);
        assert_eq!(s.task_events("t1", 0).await.unwrap(), evs);
    }

    pub async fn an_idempotency_key_is_taken_once(s: &dyn Store) {
        let first = idem("user:u1", "k", "a", T0);
        let saved = s.save_task(
            task("a", TaskStatus::Queued, T0),
            vec![event("a", 1, "status")],
            Some(first.clone()),
        );
        assert_eq!(saved.await.unwrap(), SaveTask::Saved);

        // The same principal and key: refused with the first record, nothing written.
        let again = s.save_task(
            task("b", TaskStatus::Queued, T0),
            vec![event("b", 1, "status")],
            Some(idem("user:u1", "k", "b", T0 + Duration::minutes(1))),
        );
        assert_eq!(again.await.unwrap(), SaveTask::KeyTaken(first.clone()));
        assert_eq!(s.get_task("b").await.unwrap(), None);
        assert!(s.task_events("b", 0).await.unwrap().is_empty());
        assert_eq!(s.task_events("a", 0).await.unwrap().len(), 1);
        assert_eq!(ids(&s.load_tasks().await.unwrap()), vec!["a"]);
        assert_eq!(
            s.get_idempotency("user:u1", "k", T0).await.unwrap(),
            Some(first.clone())
        );

        // Keys are per principal.
        let other = idem("user:u2", "k", "c", T0);
        let saved = s.save_task(
            task("c", TaskStatus::Queued, T0),
            vec![],
            Some(other.clone()),
        );
        assert_eq!(saved.await.unwrap(), SaveTask::Saved);
        assert_eq!(
            s.get_idempotency("user:u2", "k", T0).await.unwrap(),
            Some(other)
        );

        // A record still live a microsecond before it expires is taken; one
        // that expired (`expires_at <= created_at` of the new one) is replaced.
        let almost = first.expires_at - Duration::microseconds(1);
        let early = s.save_task(
            task("d", TaskStatus::Queued, almost),
            vec![],
            Some(idem("user:u1", "k", "d", almost)),
        );
        assert_eq!(early.await.unwrap(), SaveTask::KeyTaken(first.clone()));
        let later = idem("user:u1", "k", "e", first.expires_at);
        let replaced = s.save_task(
            task("e", TaskStatus::Queued, first.expires_at),
            vec![],
            Some(later.clone()),
        );
        assert_eq!(replaced.await.unwrap(), SaveTask::Saved);
        assert_eq!(
            s.get_idempotency("user:u1", "k", first.expires_at)
                .await
                .unwrap(),
            Some(later)
        );
        assert_eq!(ids(&s.load_tasks().await.unwrap()), vec!["a", "c", "e"]);
    }

    pub async fn task_versions_refuse_stale_writes(s: &dyn Store) {
        let mut v1 = task("v", TaskStatus::Queued, T0);
        v1.events = 1;
        let saved = s.save_task(v1.clone(), vec![event("v", 1, "status")], None);
        assert_eq!(saved.await.unwrap(), SaveTask::Saved);

        let mut v2 = v1.clone();
        v2.version = 2;
        v2.status = TaskStatus::Running;
        v2.attempts = 1;
        v2.claimed_by = Some("i1".into());
        v2.claim_until = Some(T0 + Duration::minutes(1));
        v2.updated_at = T0 + Duration::seconds(5);
        v2.events = 2;
        let saved = s.save_task(v2.clone(), vec![event("v", 2, "status")], None);
        assert_eq!(saved.await.unwrap(), SaveTask::Saved);
        assert_eq!(s.get_task("v").await.unwrap(), Some(v2.clone()));

        // Based on version 1, which is no longer stored: refused, nothing
        // written (not its events, not its idempotency key).
        let mut stale = v1.clone();
        stale.version = 2;
        stale.status = TaskStatus::Cancelled;
        stale.events = 3;
        let refused = s.save_task(
            stale.clone(),
            vec![event("v", 3, "status")],
            Some(idem("user:u1", "kv", "v", T0)),
        );
        assert_eq!(refused.await.unwrap(), SaveTask::Stale);
        assert_eq!(s.get_task("v").await.unwrap(), Some(v2.clone()));
        assert_eq!(s.task_events("v", 0).await.unwrap().len(), 2);
        assert_eq!(s.get_idempotency("user:u1", "kv", T0).await.unwrap(), None);
        for version in [0, 4] {
            let mut x = v2.clone();
            x.version = version;
            let r = s.save_task(x, vec![], None).await.unwrap();
            assert_eq!(r, SaveTask::Stale, "version {version}");
        }

        // A new task whose id exists, or an update of a task that does not.
        let mut dup = task("v", TaskStatus::Queued, T0 + Duration::hours(1));
        dup.owner = "u2".into();
        assert_eq!(
            s.save_task(dup, vec![], None).await.unwrap(),
            SaveTask::Stale
        );
        let mut ghost = task("ghost", TaskStatus::Queued, T0);
        ghost.version = 2;
        assert_eq!(
            s.save_task(ghost, vec![], None).await.unwrap(),
            SaveTask::Stale
        );
        assert_eq!(s.get_task("ghost").await.unwrap(), None);
        assert_eq!(s.get_task("v").await.unwrap(), Some(v2.clone()));

        // Based on the stored version it goes through, with the key.
        let mut v3 = v2.clone();
        v3.version = 3;
        v3.status = TaskStatus::Succeeded;
        v3.result = Some(serde_json::json!({"text": "done", "n": 1.5}));
        v3.events = 3;
        let key = idem("user:u1", "kv", "v", T0);
        let saved = s.save_task(v3.clone(), vec![event("v", 3, "status")], Some(key.clone()));
        assert_eq!(saved.await.unwrap(), SaveTask::Saved);
        assert_eq!(s.get_task("v").await.unwrap(), Some(v3));
        assert_eq!(s.task_events("v", 0).await.unwrap().len(), 3);
        assert_eq!(
            s.get_idempotency("user:u1", "kv", T0).await.unwrap(),
            Some(key)
        );
    }

    pub async fn concurrent_saves_with_one_key_save_one_task(s: &dyn Store) {
        let results = futures_util::future::join_all((0..20).map(|i| {
            let id = format!("c{i:02}");
            let t = task(&id, TaskStatus::Queued, T0);
            let evs = vec![event(&id, 1, "status")];
            s.save_task(t, evs, Some(idem("user:u1", "same", &id, T0)))
        }))
        .await;
        let results: Vec<SaveTask> = results.into_iter().map(Result::unwrap).collect();
        assert_eq!(
            results.iter().filter(|r| **r == SaveTask::Saved).count(),
            1,
            "{results:?}"
        );
        let stored = s.load_tasks().await.unwrap();
        assert_eq!(stored.len(), 1, "exactly one task is stored");
        let winner = &stored[0].id;
        let key = s
            .get_idempotency("user:u1", "same", T0)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(key.task_id.as_ref(), Some(winner));
        for r in &results {
            if *r != SaveTask::Saved {
                assert_eq!(*r, SaveTask::KeyTaken(key.clone()));
            }
        }
        for i in 0..20 {
            let id = format!("c{i:02}");
            let n = s.task_events(&id, 0).await.unwrap().len();
            assert_eq!(n, usize::from(id == *winner), "{id}");
        }
    }

    pub async fn claims_take_runnable_tasks_oldest_first(s: &dyn Store) {
        let at = |m: i64| T0 + Duration::minutes(m);
        let mut dead = task("r_dead", TaskStatus::Running, at(1));
        dead.claimed_by = Some("gone".into());
        dead.claim_until = Some(at(9));
        let mut busy = task("r_busy", TaskStatus::Running, at(3));
        busy.claimed_by = Some("other".into());
        busy.claim_until = Some(at(60));
        let mut all = vec![
            task("q1", TaskStatus::Queued, at(0)),
            dead,
            task("q2", TaskStatus::Queued, at(2)),
            busy,
            task("q3", TaskStatus::Queued, at(4)),
        ];
        for (i, st) in [
            TaskStatus::PendingApproval,
            TaskStatus::Succeeded,
            TaskStatus::Failed,
            TaskStatus::Cancelled,
        ]
        .into_iter()
        .enumerate()
        {
            // Older than all the rest, never claimed.
            all.push(task(&format!("n{i}"), st, at(-10)));
        }
        for t in &all {
            assert_eq!(
                s.save_task(t.clone(), vec![], None).await.unwrap(),
                SaveTask::Saved
            );
        }
        let now = at(10);
        let until = now + Duration::seconds(30);

        let a = s.claim_tasks("a", now, until, 2).await.unwrap();
        assert_eq!(ids(&a), vec!["q1", "r_dead"]);
        for t in &a {
            assert_eq!(t.claimed_by.as_deref(), Some("a"));
            assert_eq!(t.claim_until, Some(until));
            assert_eq!(t.version, 2);
            assert_eq!(
                s.get_task(&t.id).await.unwrap().as_ref(),
                Some(t),
                "as stored"
            );
        }
        assert_eq!(a[0].status, TaskStatus::Queued, "a claim changes no status");
        assert!(s.claim_tasks("a", now, until, 0).await.unwrap().is_empty());

        // Fresh claims are not taken again.
        let b = s.claim_tasks("b", now, until, 10).await.unwrap();
        assert_eq!(ids(&b), vec!["q2", "q3"]);
        assert!(s.claim_tasks("c", now, until, 10).await.unwrap().is_empty());

        // At `claim_until` the claims of a and b have run out; other's has not.
        let later = until + Duration::seconds(30);
        let c = s.claim_tasks("c", until, later, 10).await.unwrap();
        assert_eq!(ids(&c), vec!["q1", "r_dead", "q2", "q3"]);
        assert!(c.iter().all(|t| t.claimed_by.as_deref() == Some("c")));
        assert_eq!(c[0].version, 3);

        let d = s.claim_tasks("d", at(120), at(121), 100).await.unwrap();
        assert_eq!(ids(&d), vec!["q1", "r_dead", "q2", "r_busy", "q3"]);
        for i in 0..4 {
            let n = s.get_task(&format!("n{i}")).await.unwrap().unwrap();
            assert_eq!((n.claimed_by, n.version), (None, 1));
        }
    }

    pub async fn the_backlog_counts_queued_and_running_tasks_up_to_a_cap(s: &dyn Store) {
        let at = |m: i64| T0 + Duration::minutes(m);
        assert_eq!(s.open_tasks(100).await.unwrap(), 0, "an empty store");
        let statuses = [
            TaskStatus::PendingApproval,
            TaskStatus::Queued,
            TaskStatus::Running,
            TaskStatus::Succeeded,
            TaskStatus::Failed,
            TaskStatus::Cancelled,
            TaskStatus::Queued,
        ];
        for (i, st) in statuses.into_iter().enumerate() {
            let t = task(&format!("t{i}"), st, at(i as i64));
            assert_eq!(s.save_task(t, vec![], None).await.unwrap(), SaveTask::Saved);
        }
        assert_eq!(s.open_tasks(100).await.unwrap(), 3, "t1, t2 and t6");
        assert_eq!(s.open_tasks(2).await.unwrap(), 2, "no further than the cap");
        assert_eq!(s.open_tasks(0).await.unwrap(), 0);

        // Finishing leaves the backlog and the claims; a retry comes back.
        let mut t1 = s.get_task("t1").await.unwrap().unwrap();
        t1.status = TaskStatus::Succeeded;
        t1.version += 1;
        assert_eq!(
            s.save_task(t1.clone(), vec![], None).await.unwrap(),
            SaveTask::Saved
        );
        assert_eq!(s.open_tasks(100).await.unwrap(), 2);
        let now = at(100);
        let claimed = s
            .claim_tasks("a", now, now + Duration::seconds(30), 10)
            .await
            .unwrap();
        assert_eq!(
            ids(&claimed),
            vec!["t2", "t6"],
            "a finished task is not claimed"
        );
        t1.status = TaskStatus::Queued;
        t1.version += 1;
        assert_eq!(
            s.save_task(t1, vec![], None).await.unwrap(),
            SaveTask::Saved
        );
        assert_eq!(s.open_tasks(100).await.unwrap(), 3);
        let claimed = s
            .claim_tasks("b", now, now + Duration::seconds(30), 10)
            .await
            .unwrap();
        assert_eq!(
            ids(&claimed),
            vec!["t1"],
            "the retried task, not the claimed ones"
        );
        // A refused (stale) write changes nothing.
        let mut stale = s.get_task("t6").await.unwrap().unwrap();
        stale.status = TaskStatus::Cancelled;
        assert_eq!(
            s.save_task(stale, vec![], None).await.unwrap(),
            SaveTask::Stale
        );
        assert_eq!(s.open_tasks(100).await.unwrap(), 3);
    }

    pub async fn concurrent_claims_never_share_a_task(s: &dyn Store) {
        let now = T0 + Duration::hours(1);
        let until = now + Duration::hours(1);
        for round in 0..5 {
            let mut want = Vec::new();
            for i in 0..8 {
                let id = format!("r{round}t{i}");
                let t = task(&id, TaskStatus::Queued, T0 + Duration::seconds(i));
                assert_eq!(s.save_task(t, vec![], None).await.unwrap(), SaveTask::Saved);
                want.push(id);
            }
            let (a, b) = futures_util::join!(
                s.claim_tasks("a", now, until, 8),
                s.claim_tasks("b", now, until, 8)
            );
            let (a, b) = (a.unwrap(), b.unwrap());
            let mut got: Vec<String> = ids(&a)
                .into_iter()
                .chain(ids(&b))
                .map(String::from)
                .collect();
            got.sort();
            assert_eq!(got, want, "each task claimed exactly once: {a:?} {b:?}");
            for t in &a {
                assert_eq!(
                    s.get_task(&t.id)
                        .await
                        .unwrap()
                        .unwrap()
                        .claimed_by
                        .as_deref(),
                    Some("a")
                );
            }
            for t in &b {
                assert_eq!(
                    s.get_task(&t.id)
                        .await
                        .unwrap()
                        .unwrap()
                        .claimed_by
                        .as_deref(),
                    Some("b")
                );
            }
        }
    }

    pub async fn idempotency_sweeps_and_reads_skip_expired(s: &dyn Store) {
        let mut keys = Vec::new();
        for (name, hours) in [("old", 1), ("edge", 2), ("live", 3)] {
            let mut k = idem("user:u1", name, name, T0);
            k.expires_at = T0 + Duration::hours(hours);
            let t = task(name, TaskStatus::Queued, T0);
            assert_eq!(
                s.save_task(t, vec![], Some(k.clone())).await.unwrap(),
                SaveTask::Saved
            );
            keys.push(k);
        }
        let get = |key: &'static str, at: OffsetDateTime| s.get_idempotency("user:u1", key, at);
        let just_before = keys[0].expires_at - Duration::microseconds(1);
        assert_eq!(
            get("old", just_before).await.unwrap(),
            Some(keys[0].clone())
        );
        assert_eq!(get("old", keys[0].expires_at).await.unwrap(), None);
        assert_eq!(get("nope", T0).await.unwrap(), None);

        assert_eq!(s.sweep_idempotency(T0).await.unwrap(), 0);
        assert_eq!(s.sweep_idempotency(keys[1].expires_at).await.unwrap(), 2);
        assert_eq!(get("old", T0).await.unwrap(), None, "swept");
        assert_eq!(get("edge", T0).await.unwrap(), None, "swept at expires_at");
        assert_eq!(get("live", T0).await.unwrap(), Some(keys[2].clone()));
        assert_eq!(s.sweep_idempotency(keys[1].expires_at).await.unwrap(), 0);
        assert_eq!(
            s.sweep_idempotency(T0 + Duration::days(1)).await.unwrap(),
            1
        );
        assert_eq!(get("live", T0).await.unwrap(), None);
        assert_eq!(s.load_tasks().await.unwrap().len(), 3, "tasks stay");
    }

    fn draw(subject: &str, metric: &str, amount: f64, limit: f64) -> Draw {
        Draw {
            subject: subject.into(),
            metric: metric.into(),
            start: 1_000,
            end: 1_060,
            amount,
            limit,
        }
    }

    fn value(counters: &[Counter], metric: &str) -> f64 {
        counters
            .iter()
            .find(|c| c.metric == metric)
            .map_or(0.0, |c| c.value)
    }

    pub async fn reservations_are_all_or_none_and_stop_at_the_limit(s: &dyn Store) {
        let both = |tpm: f64| {
            vec![
                draw("user:u", "rpm", 1.0, 3.0),
                draw("token:t", "tpm", tpm, 100.0),
            ]
        };
        assert_eq!(s.reserve(both(40.0)).await.unwrap(), Reserve::Granted);
        assert_eq!(s.reserve(both(40.0)).await.unwrap(), Reserve::Granted);
        // The token's tpm would pass 100: nothing is added, not even the rpm.
        assert_eq!(s.reserve(both(40.0)).await.unwrap(), Reserve::Refused(1));
        let u = s.counters("user:u", 1_000).await.unwrap();
        assert_eq!(value(&u, "rpm"), 2.0);
        assert_eq!(
            value(&s.counters("token:t", 1_000).await.unwrap(), "tpm"),
            80.0
        );
        assert_eq!(
            s.reserve(both(20.0)).await.unwrap(),
            Reserve::Granted,
            "exactly the limit is allowed"
        );
        assert_eq!(
            s.reserve(both(0.0)).await.unwrap(),
            Reserve::Refused(0),
            "the fourth request of three"
        );
        assert_eq!(
            s.reserve(vec![draw("user:v", "tpm", 101.0, 100.0)])
                .await
                .unwrap(),
            Reserve::Refused(0),
            "a draw larger than its limit never fits"
        );
        // Settling gives back what was not used, never below zero.
        s.adjust(vec![draw("token:t", "tpm", -30.0, 0.0)])
            .await
            .unwrap();
        assert_eq!(
            value(&s.counters("token:t", 1_000).await.unwrap(), "tpm"),
            70.0
        );
        s.adjust(vec![draw("token:t", "tpm", -500.0, 0.0)])
            .await
            .unwrap();
        assert_eq!(
            value(&s.counters("token:t", 1_000).await.unwrap(), "tpm"),
            0.0
        );
        s.adjust(vec![draw("token:new", "spend", 0.25, 0.0)])
            .await
            .unwrap();
        assert_eq!(
            value(&s.counters("token:new", 1_000).await.unwrap(), "spend"),
            0.25
        );
        // Windows end: counters of an ended window are not shown, and are swept.
        assert!(s.counters("user:u", 1_060).await.unwrap().is_empty());
        assert_eq!(s.sweep_counters(1_059).await.unwrap(), 0);
        assert!(s.sweep_counters(1_060).await.unwrap() >= 3);
        assert!(s.counters("user:u", 1_000).await.unwrap().is_empty());
    }

    pub async fn concurrent_reservations_never_pass_the_limit(s: &dyn Store) {
        let calls = (0..40).map(|_| {
            s.reserve(vec![
                draw("user:c", "rpm", 1.0, 25.0),
                draw("user:c", "spend", 0.5, 100.0),
            ])
        });
        let results = futures_util::future::join_all(calls).await;
        let granted = results
            .into_iter()
            .filter(|r| *r.as_ref().unwrap() == Reserve::Granted)
            .count();
        assert_eq!(
            granted, 25,
            "exactly the limit, however the calls interleave"
        );
        let c = s.counters("user:c", 1_000).await.unwrap();
        assert_eq!(value(&c, "rpm"), 25.0);
        assert_eq!(value(&c, "spend"), 12.5);
    }
}

/// Usage records, tasks and their events are durable: a store opened again
/// on the same data sees them.
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

    /// Saves a task with two events and a key, then a second version with a
    /// third event.
    async fn write_tasks(s: &dyn Store) -> TaskRecord {
        let mut t = task("durable", TaskStatus::Queued, T0);
        t.events = 2;
        let evs = vec![event("durable", 1, "status"), event("durable", 2, "output")];
        let k = idem("user:u1", "k", "durable", T0);
        assert_eq!(
            s.save_task(t.clone(), evs, Some(k)).await.unwrap(),
            SaveTask::Saved
        );
        t.version = 2;
        t.events = 3;
        t.status = TaskStatus::Succeeded;
        let ev = vec![event("durable", 3, "status")];
        assert_eq!(
            s.save_task(t.clone(), ev, None).await.unwrap(),
            SaveTask::Saved
        );
        t
    }

    /// After reopening: everything is there, and the next version saves.
    async fn check_tasks(s: &dyn Store, t: &TaskRecord) {
        assert_eq!(s.load_tasks().await.unwrap(), vec![t.clone()]);
        let evs = s.task_events(&t.id, 0).await.unwrap();
        assert_eq!(evs.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(evs[2], event("durable", 3, "status"));
        assert_eq!(
            s.get_idempotency("user:u1", "k", T0).await.unwrap(),
            Some(idem("user:u1", "k", "durable", T0))
        );
        let mut next = t.clone();
        next.version = 3;
        assert_eq!(
            s.save_task(t.clone(), vec![], None).await.unwrap(),
            SaveTask::Stale
        );
        assert_eq!(
            s.save_task(next, vec![], None).await.unwrap(),
            SaveTask::Saved
        );
    }

    #[actix_rt::test]
    async fn sled_tasks_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let t = {
            let s = SledStore::open(dir.path()).unwrap();
            write_tasks(&s).await
        };
        let s = open_again(dir.path()).await;
        check_tasks(&s, &t).await;
    }

    /// A home written before the queue index existed gets it built on open:
    /// its queued tasks are claimed and counted, its finished ones are not.
    #[actix_rt::test]
    async fn sled_builds_the_task_queue_index_for_an_older_home() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = SledStore::open(dir.path()).unwrap();
            for (id, st, m) in [
                ("done", TaskStatus::Succeeded, 0),
                ("q1", TaskStatus::Queued, 1),
                ("wait", TaskStatus::PendingApproval, 2),
                ("q2", TaskStatus::Queued, 3),
            ] {
                let t = task(id, st, T0 + Duration::minutes(m));
                assert_eq!(s.save_task(t, vec![], None).await.unwrap(), SaveTask::Saved);
            }
        }
        // As an older version left it: no index and no marker.
        let db = loop {
            match ::sled::open(dir.path()) {
                Ok(db) => break db,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        };
        db.drop_tree("task_queue").unwrap();
        db.open_tree("meta")
            .unwrap()
            .remove("task_queue_indexed")
            .unwrap();
        db.flush().unwrap();
        drop(db);

        let s = open_again(dir.path()).await;
        assert_eq!(s.open_tasks(100).await.unwrap(), 2);
        let claimed = s
            .claim_tasks("a", T0, T0 + Duration::hours(1), 10)
            .await
            .unwrap();
        assert_eq!(ids(&claimed), vec!["q1", "q2"]);
    }

    #[actix_rt::test]
    async fn postgres_tasks_survive_reconnecting() {
        let schema = format!("gh_t_{}", &random_id()[..12]);
        let t = {
            let s = PgStore::connect(&pg_url(), Some(&schema)).await.unwrap();
            write_tasks(&s).await
        };
        let s = PgStore::connect(&pg_url(), Some(&schema)).await.unwrap();
        check_tasks(&s, &t).await;
        s.drop_schema().await.unwrap();
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
