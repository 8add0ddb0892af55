use crate::helpers::*;
use gatehouse_actors::oauth::{pkce_pair, ConsumeState, CreateState, Sweep};
use gatehouse_actors::{GatehouseError, TokenHash};
use time::Duration;

fn create(browser: &str, now: time::OffsetDateTime) -> CreateState {
    let (verifier, _) = pkce_pair();
    CreateState {
        provider: "github".into(),
        browser: TokenHash::of(browser),
        pkce_verifier: verifier,
        nonce: None,
        next: Some("/account".into()),
        now,
    }
}

fn consume(state: &str, browser: &str, now: time::OffsetDateTime) -> ConsumeState {
    ConsumeState {
        state: state.into(),
        provider: "github".into(),
        browser: Some(TokenHash::of(browser)),
        now,
    }
}

fn is_invalid_state<T>(r: Result<T, GatehouseError>) -> bool {
    matches!(r, Err(GatehouseError::Invalid(m)) if m == "invalid_state")
}

#[actix_web::test]
async fn a_state_is_bound_to_its_browser_and_used_once() {
    let app = spawn_app().await;
    let h = app.state().handles.clone();
    let s = h
        .oauth()
        .send(create("browser-a", h.now()))
        .await
        .unwrap()
        .unwrap();
    assert!(s.state.len() >= 43);
    // A foreign browser burns it: the right one cannot use it afterwards.
    assert!(is_invalid_state(
        h.oauth()
            .send(consume(&s.state, "browser-b", h.now()))
            .await
            .unwrap()
    ));
    assert!(is_invalid_state(
        h.oauth()
            .send(consume(&s.state, "browser-a", h.now()))
            .await
            .unwrap()
    ));

    let s = h
        .oauth()
        .send(create("browser-a", h.now()))
        .await
        .unwrap()
        .unwrap();
    let got = h
        .oauth()
        .send(consume(&s.state, "browser-a", h.now()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.next.as_deref(), Some("/account"));
    assert_eq!(got.pkce_verifier, s.pkce_verifier);
    assert!(is_invalid_state(
        h.oauth()
            .send(consume(&s.state, "browser-a", h.now()))
            .await
            .unwrap()
    ));
    assert!(is_invalid_state(
        h.oauth()
            .send(consume("made-up", "browser-a", h.now()))
            .await
            .unwrap()
    ));
    let no_cookie = ConsumeState {
        state: s.state.clone(),
        provider: "github".into(),
        browser: None,
        now: h.now(),
    };
    assert!(is_invalid_state(h.oauth().send(no_cookie).await.unwrap()));
}

#[actix_web::test]
async fn states_expire_after_ten_minutes_and_are_swept() {
    let app = spawn_app().await;
    let h = app.state().handles.clone();
    let t0 = h.now();
    let fresh = h.oauth().send(create("b", t0)).await.unwrap().unwrap();
    let old = h.oauth().send(create("b", t0)).await.unwrap().unwrap();
    assert_eq!(old.expires_at - old.created_at, Duration::minutes(10));
    assert!(is_invalid_state(
        h.oauth()
            .send(consume(&old.state, "b", t0 + Duration::minutes(11)))
            .await
            .unwrap()
    ));
    let later = h
        .oauth()
        .send(create("b", t0 + Duration::minutes(9)))
        .await
        .unwrap()
        .unwrap();
    let swept = h
        .oauth()
        .send(Sweep {
            now: t0 + Duration::minutes(11),
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        swept, 1,
        "only `fresh` had expired by then (`old` was consumed)"
    );
    assert!(is_invalid_state(
        h.oauth()
            .send(consume(&fresh.state, "b", t0))
            .await
            .unwrap()
    ));
    assert!(h
        .oauth()
        .send(consume(&later.state, "b", t0 + Duration::minutes(11)))
        .await
        .unwrap()
        .is_ok());
}

#[test]
fn pkce_challenge_is_s256_of_the_verifier() {
    use base64::Engine;
    let (v, c) = pkce_pair();
    assert!((43..=128).contains(&v.len()));
    let d = ring::digest::digest(&ring::digest::SHA256, v.as_bytes());
    assert_eq!(
        c,
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d)
    );
}
