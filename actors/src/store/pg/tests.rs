use super::migrate::valid_identifier;
use super::sql::query;
use super::{EndSessions, PgStore, Store};
use crate::error::{GatehouseError, StoreError};
use crate::ids::{random_id, TokenHash};
use crate::model::{
    Lock as UserLock, OAuthState, PasswordHash, SessionRecord, TokenRecord, UserChange, UserRecord,
};
use time::OffsetDateTime;

fn url() -> String {
    std::env::var("GATEHOUSE_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn schema() -> String {
    format!("gh_t_{}", &random_id()[..16])
}

async fn store(schema: &str) -> PgStore {
    PgStore::connect(&url(), Some(schema))
        .await
        .expect("PostgreSQL at 127.0.0.1:5432 (or GATEHOUSE_TEST_PG)")
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
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

fn session(user_id: &str) -> SessionRecord {
    let t = now();
    SessionRecord {
        id: random_id(),
        token_hash: TokenHash::of(&random_id()),
        user_id: user_id.into(),
        via: "password".into(),
        created_at: t,
        expires_at: t + time::Duration::hours(1),
        last_seen_at: t,
        ip: None,
        user_agent: None,
        external_sid: None,
    }
}

#[test]
fn schema_names_are_checked() {
    assert!(valid_identifier("gh_t_0af3"));
    assert!(valid_identifier("_x"));
    assert!(valid_identifier(&"a".repeat(63)));
    for bad in ["", "1abc", "Gh", "a-b", "a\"b", "a b", &"a".repeat(64)] {
        assert!(!valid_identifier(bad), "{bad:?}");
    }
}

#[actix_rt::test]
async fn pg_store_bad_schema_and_url_fail_cleanly() {
    let e = PgStore::connect(&url(), Some("x\"; DROP"))
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Backend(_)));
    // Nothing listens there: unavailable (a 503, retried later), quickly,
    // and the error keeps the password and the URL to itself.
    let started = std::time::Instant::now();
    let e = PgStore::connect("postgres://u:s3cret-pw@127.0.0.1:1/test", None)
        .await
        .unwrap_err();
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    let msg = format!("{e} {e:?}");
    assert!(matches!(e, StoreError::Unavailable(_)), "{msg}");
    assert!(
        !msg.contains("s3cret-pw") && !msg.contains("127.0.0.1:1/"),
        "{msg}"
    );
}

#[actix_rt::test]
async fn pg_store_users_conflict_and_lock() {
    let name = schema();
    let s = store(&name).await;
    assert_eq!(s.backend(), "postgres");
    let u = user("Alice");
    s.insert_user(u.clone()).await.unwrap();
    match s.insert_user(user("aLICE")).await {
        Err(GatehouseError::Conflict(m)) => assert_eq!(m, "user aLICE"),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.load_users().await.unwrap(), vec![u.clone()]);

    s.insert_session(session(&u.id)).await.unwrap();
    let lock = UserLock {
        reason: "left".into(),
        at: now(),
    };
    let (after, ended) = s
        .update_user(&u.id, UserChange::Lock(Some(lock)), Some(EndSessions::All))
        .await
        .unwrap();
    assert_eq!((after.version, ended), (1, 1));
    assert!(matches!(
        s.insert_session(session(&u.id)).await,
        Err(GatehouseError::AccountLocked)
    ));
    assert!(matches!(
        s.insert_session(session("nobody")).await,
        Err(GatehouseError::NotFound)
    ));
    assert!(s.load_sessions().await.unwrap().is_empty());
    s.check_writable().await.unwrap();
    s.drop_schema().await.unwrap();
}

#[actix_rt::test]
async fn pg_store_end_sessions_all_but_one() {
    let name = schema();
    let s = store(&name).await;
    let u = user("bob");
    s.insert_user(u.clone()).await.unwrap();
    let sessions: Vec<_> = (0..3).map(|_| session(&u.id)).collect();
    for x in &sessions {
        s.insert_session(x.clone()).await.unwrap();
    }
    let keep = sessions[1].token_hash;
    let (after, ended) = s
        .update_user(
            &u.id,
            UserChange::Roles(vec!["Admin".into()]),
            Some(EndSessions::AllBut(keep)),
        )
        .await
        .unwrap();
    assert_eq!((after.version, ended), (1, 2));
    assert_eq!(s.load_sessions().await.unwrap(), vec![sessions[1].clone()]);
    // last_seen only moves forward, to the nanosecond.
    let later = sessions[1].last_seen_at + time::Duration::nanoseconds(1);
    s.touch_sessions(vec![(keep, later), (keep, sessions[1].last_seen_at)])
        .await
        .unwrap();
    assert_eq!(s.load_sessions().await.unwrap()[0].last_seen_at, later);
    assert_eq!(s.delete_user(&u.id).await.unwrap(), 1);
    assert!(matches!(
        s.delete_user(&u.id).await,
        Err(GatehouseError::NotFound)
    ));
    s.drop_schema().await.unwrap();
}

#[actix_rt::test]
async fn pg_store_oauth_state_once_and_migrations_twice() {
    let name = schema();
    let s = store(&name).await;
    let t = now();
    let state = OAuthState {
        state: random_id(),
        provider: "github".into(),
        browser: TokenHash::of("cookie"),
        pkce_verifier: "v".into(),
        nonce: None,
        next: Some("/".into()),
        created_at: t,
        expires_at: t + time::Duration::minutes(10),
    };
    s.insert_oauth_state(state.clone()).await.unwrap();
    assert!(s.take_oauth_state(&state.state).await.unwrap() == Some(state.clone()));
    assert!(s.take_oauth_state(&state.state).await.unwrap().is_none());

    // Sweeps delete exactly `expires_at < now`, to the nanosecond.
    s.insert_oauth_state(state.clone()).await.unwrap();
    assert_eq!(s.sweep_oauth_states(state.expires_at).await.unwrap(), 0);
    let just_after = state.expires_at + time::Duration::nanoseconds(1);
    assert_eq!(s.sweep_oauth_states(just_after).await.unwrap(), 1);

    // Two instances starting together on one schema, then a third.
    let (a, b) = tokio::join!(store(&name), store(&name));
    a.check_writable().await.unwrap();
    b.check_writable().await.unwrap();
    let c = store(&name).await;
    let versions = c
        .one("versions", &(), |c, _| {
            Box::pin(async move {
                let rows = query(
                    c,
                    "SELECT version FROM schema_migrations ORDER BY version",
                    &[],
                )
                .await?;
                Ok(rows.iter().map(|r| r.get::<_, i32>(0)).collect::<Vec<_>>())
            })
        })
        .await
        .unwrap();
    assert_eq!(
        versions,
        vec![1, 2, 3, 4, 5, 6, 7],
        "each migration applied exactly once"
    );
    s.drop_schema().await.unwrap();
}

/// Operations that lock the same user, its sessions and tokens in
/// different statements, run together: each ends in a domain answer
/// (never a deadlock error), and nothing outlives the removed user.
#[actix_rt::test]
async fn pg_store_racing_operations_settle() {
    let name = schema();
    let s = store(&name).await;
    for i in 0..20 {
        let u = user(&format!("racer{i}"));
        s.insert_user(u.clone()).await.unwrap();
        let sessions: Vec<_> = (0..3).map(|_| session(&u.id)).collect();
        for x in &sessions {
            s.insert_session(x.clone()).await.unwrap();
        }
        let t = now();
        let tok = TokenRecord {
            id: random_id(),
            user_id: u.id.clone(),
            name: "t".into(),
            scopes: vec![],
            models: None,
            allowed_ips: None,
            max_idle: None,
            created_at: t,
            expires_at: t + time::Duration::days(1),
            revoked_at: None,
            grace_until: None,
            rotated_from: None,
            last_used_at: None,
        };
        s.insert_token(tok.clone()).await.unwrap();
        let new = TokenRecord {
            id: random_id(),
            rotated_from: Some(tok.id.clone()),
            ..tok.clone()
        };
        let seen: Vec<_> = sessions.iter().map(|x| (x.token_hash, now())).collect();
        let lock = UserLock {
            reason: "r".into(),
            at: now(),
        };
        let (rot, touch, touch_t, upd, ins, del) = tokio::join!(
            s.rotate_token(&tok.id, now(), new),
            s.touch_sessions(seen),
            s.touch_tokens(vec![(tok.id.clone(), now())]),
            s.update_user(&u.id, UserChange::Lock(Some(lock)), Some(EndSessions::All)),
            s.insert_session(session(&u.id)),
            s.delete_user(&u.id),
        );
        let domain = |r: Result<(), GatehouseError>| match r {
            Ok(()) | Err(GatehouseError::NotFound) | Err(GatehouseError::AccountLocked) => {}
            Err(e) => panic!("{e:?}"),
        };
        domain(rot.map(drop));
        domain(upd.map(drop));
        domain(ins);
        touch.unwrap();
        touch_t.unwrap();
        del.unwrap();
        assert!(s.load_sessions().await.unwrap().is_empty());
        assert!(s.load_tokens().await.unwrap().is_empty());
    }
    s.drop_schema().await.unwrap();
}

/// An operation that overruns the query timeout fails as `Unavailable` in
/// bounded time, and its connection is closed, not handed to the next caller.
#[actix_rt::test]
async fn an_overrun_operation_fails_fast_and_its_connection_is_not_reused() {
    let schema = schema();
    let options = super::PgOptions {
        pool_size: 1,
        query_timeout: std::time::Duration::from_secs(1),
        ..super::PgOptions::in_schema(&schema)
    };
    let s = PgStore::open(&url(), &options).await.unwrap();
    let started = std::time::Instant::now();
    let slept = s
        .one("sleep", &(), |c, _| {
            Box::pin(async move {
                c.batch_execute("SELECT pg_sleep(30)").await?;
                Ok(())
            })
        })
        .await;
    assert!(
        matches!(
            slept,
            Err(GatehouseError::Store(StoreError::Unavailable(_)))
        ),
        "{slept:?}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    // The one pooled connection was replaced: the next operation works at
    // once, on a connection that has the statement timeout too.
    s.check_writable().await.unwrap();
    let timeout: String = s
        .one("show", &(), |c, _| {
            Box::pin(async move {
                let row = c.query_one("SHOW statement_timeout", &[]).await?;
                Ok(row.try_get(0)?)
            })
        })
        .await
        .unwrap();
    assert_eq!(timeout, "1s");
    // A statement the server cancels at statement_timeout is the same failure.
    let cancelled = s
        .tx("sleep", &(), |t, _| {
            Box::pin(async move {
                t.batch_execute("SET LOCAL statement_timeout = 100; SELECT pg_sleep(5)")
                    .await?;
                Ok(())
            })
        })
        .await;
    assert!(
        matches!(
            cancelled,
            Err(GatehouseError::Store(StoreError::Unavailable(_)))
        ),
        "{cancelled:?}"
    );
    s.drop_schema().await.unwrap();
}
