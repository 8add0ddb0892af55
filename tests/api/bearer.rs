//! `[[auth.bearer]]` validators against fakes we control (an issuer whose key
//! we hold, GitHub, a custom endpoint). The real OpenID provider is in `oidc.rs`.

use crate::fakes::*;
use crate::helpers::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use time::Duration;

/// An app whose configuration is this TOML (through the real loader).
pub async fn spawn_toml(toml: &str) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gatehouse.toml");
    std::fs::write(&file, toml).unwrap();
    let config =
        gatehouse::config::Config::load_with_env(Some(&file), dir.path(), &Default::default())
            .expect("valid config");
    spawn_with(move |c| *c = config).await
}

async fn me(app: &TestApp, token: &str) -> reqwest::Response {
    client()
        .get(format!("{}/account/api/me", app.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

#[actix_web::test]
async fn jwks_tokens_are_checked_and_mapped() {
    let issuer = FakeIssuer::start();
    let app = spawn_toml(&format!(
        r#"
[[auth.bearer]]
type = "jwks"
issuer = "{0}"
audience = "gatehouse"
jwks_uri = "{0}/jwks"
claims_mapping = {{ groups = "roles" }}
"#,
        issuer.url
    ))
    .await;
    let res = me(&app, &issuer.sign(&issuer.claims())).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["username"], "robot");
    assert_eq!(body["id"], "jwks:robot-7");
    assert_eq!(body["roles"], json!(["ml"]));
    assert_eq!(body["auth"], "jwks");
    // A read-only token may read but not write.
    let res = client()
        .post(format!("{}/api/tokens", app.url))
        .bearer_auth(issuer.sign(&issuer.claims()))
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
}

#[actix_web::test]
async fn bad_jwts_of_every_kind_are_401_with_the_method_named() {
    let issuer = FakeIssuer::start();
    let app = spawn_toml(&format!(
        "[[auth.bearer]]\ntype = \"jwks\"\nissuer = \"{0}\"\naudience = \"gatehouse\"\njwks_uri = \"{0}/jwks\"\n",
        issuer.url
    ))
    .await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let with = |k: &str, v: Value| {
        let mut c = issuer.claims();
        c[k] = v;
        c
    };
    let good = issuer.sign(&issuer.claims());
    let parts: Vec<&str> = good.split('.').collect();
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let x = issuer.jwks["keys"][0]["x"].as_str().unwrap().to_owned();
    let hs256 = jsonwebtoken::encode(
        &jsonwebtoken::Header {
            kid: Some(issuer.kid.clone()),
            ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256)
        },
        &issuer.claims(),
        &jsonwebtoken::EncodingKey::from_secret(x.as_bytes()),
    )
    .unwrap();
    let other = FakeIssuer::start();
    let cases = vec![
        ("expired", issuer.sign(&with("exp", json!(now - 120)))),
        (
            "not yet valid",
            issuer.sign(&with("nbf", json!(now + 3600))),
        ),
        (
            "wrong issuer",
            issuer.sign(&with("iss", json!("https://evil.example"))),
        ),
        (
            "wrong audience",
            issuer.sign(&with("aud", json!("someone-else"))),
        ),
        ("no exp", {
            let mut c = issuer.claims();
            c.as_object_mut().unwrap().remove("exp");
            issuer.sign(&c)
        }),
        // Found by fuzzing (fuzz/regressions/external_jwt): a configured
        // issuer and audience must be there, and extreme numbers are judged.
        ("no issuer", {
            let mut c = issuer.claims();
            c.as_object_mut().unwrap().remove("iss");
            issuer.sign(&c)
        }),
        ("no audience", {
            let mut c = issuer.claims();
            c.as_object_mut().unwrap().remove("aud");
            issuer.sign(&c)
        }),
        ("a numeric audience", issuer.sign(&with("aud", json!(7)))),
        (
            "nbf at the end of time",
            issuer.sign(&with("nbf", json!(i64::MAX))),
        ),
        (
            "exp before the start of time",
            issuer.sign(&with("exp", json!(i64::MIN))),
        ),
        (
            "unknown kid",
            issuer.sign_as(&issuer.claims(), Some("nope")),
        ),
        (
            "another issuer's key with our kid",
            other.sign_as(&issuer.claims(), Some(&issuer.kid)),
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(&json!({"alg": "none", "kid": issuer.kid})),
                parts[1]
            ),
        ),
        ("hs256 keyed with the public key", hs256),
        (
            "tampered payload",
            format!(
                "{}.{}.{}",
                parts[0],
                b64(&with("scope", json!("read write admin"))),
                parts[2]
            ),
        ),
        ("truncated", good[..good.len() - 12].to_owned()),
        (
            "huge",
            format!("{}.{}.{}", parts[0], "A".repeat(9000), parts[2]),
        ),
        ("not a jwt", "opaque-token".to_owned()),
    ];
    let mut bodies = std::collections::HashSet::new();
    for (what, token) in cases {
        let res = me(&app, &token).await;
        assert_eq!(res.status(), 401, "{what}");
        assert!(
            res.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer"),
            "{what}"
        );
        bodies.insert(res.text().await.unwrap());
    }
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    let body = bodies.into_iter().next().unwrap();
    assert!(
        body.contains(&format!("a JWT access token issued by {}", issuer.url)),
        "the method is named: {body}"
    );
    assert_eq!(me(&app, &good).await.status(), 200);
    for (k, v) in [("exp", i64::MAX), ("nbf", i64::MIN)] {
        let res = me(&app, &issuer.sign(&with(k, json!(v)))).await;
        assert_eq!(res.status(), 200, "{k} = {v}");
    }
}

#[actix_web::test]
async fn unknown_kids_refetch_the_jwks_at_most_every_30_seconds() {
    let issuer = FakeIssuer::start();
    let app = spawn_toml(&format!(
        "[[auth.bearer]]\ntype = \"jwks\"\njwks_uri = \"{0}/jwks\"\n",
        issuer.url
    ))
    .await;
    assert_eq!(me(&app, &issuer.sign(&issuer.claims())).await.status(), 200);
    assert_eq!(issuer.fetches.load(Ordering::SeqCst), 1);
    for i in 0..20 {
        let t = issuer.sign_as(&issuer.claims(), Some(&format!("flood-{i}")));
        assert_eq!(me(&app, &t).await.status(), 401);
    }
    assert_eq!(
        issuer.fetches.load(Ordering::SeqCst),
        1,
        "a flood of unknown kids does not hammer the issuer"
    );
    app.clock.advance(Duration::seconds(31));
    assert_eq!(
        me(&app, &issuer.sign_as(&issuer.claims(), Some("flood-x")))
            .await
            .status(),
        401
    );
    assert_eq!(issuer.fetches.load(Ordering::SeqCst), 2);
    // A verified token is cached: no fetch, no verify.
    assert_eq!(me(&app, &issuer.sign(&issuer.claims())).await.status(), 200);
    assert_eq!(issuer.fetches.load(Ordering::SeqCst), 2);
}

#[actix_web::test]
async fn github_tokens_are_checked_with_orgs_and_cached() {
    let (gh, calls) = fake_github();
    let app = spawn_toml(&format!(
        "[[auth.bearer]]\ntype = \"github\"\napi_base_url = \"{gh}\"\ncache_ttl = \"60s\"\nclaims_mapping = {{ orgs = \"orgs\" }}\n"
    ))
    .await;
    let res = me(&app, "ghp_octocat").await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["username"], "octocat");
    assert_eq!(body["id"], "github:583231");
    assert_eq!(body["attributes"]["orgs"], json!(["acme", "ml-team"]));
    let after_first = calls.load(Ordering::SeqCst);
    assert_eq!(me(&app, "ghp_octocat").await.status(), 200);
    assert_eq!(calls.load(Ordering::SeqCst), after_first, "cached");
    app.clock.advance(Duration::seconds(61));
    assert_eq!(me(&app, "ghp_octocat").await.status(), 200);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        after_first + 1,
        "the cache entry expired"
    );
    let res = me(&app, "ghp_wrong").await;
    assert_eq!(res.status(), 401);
    let body = res.text().await.unwrap();
    assert!(
        body.contains("a GitHub token") && !body.contains("Bad credentials"),
        "{body}"
    );
}

#[actix_web::test]
async fn custom_validator_gets_the_request_but_never_its_credentials() {
    let (endpoint, seen) = fake_custom();
    let (gh, gh_calls) = fake_github();
    let app = spawn_toml(&format!(
        "[[auth.bearer]]\ntype = \"github\"\napi_base_url = \"{gh}\"\n\n[[auth.bearer]]\ntype = \"custom\"\nendpoint = \"{endpoint}\"\n"
    ))
    .await;
    let res = client()
        .get(format!("{}/account/api/me?x=1&y=two", app.url))
        .bearer_auth("let-me-in")
        .header("cookie", "gatehouse_session=abc")
        .header("x-trace", "t-1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["username"], "svc-bot");
    assert_eq!(body["roles"], json!(["ops"]));
    assert_eq!(body["attributes"]["teams"], json!(["ml"]));
    let got = seen.lock().unwrap()[0].clone();
    assert_eq!(got["api_key"], "let-me-in");
    assert_eq!(got["request"]["path"], "/account/api/me");
    assert_eq!(got["request"]["params"], json!({"x": "1", "y": "two"}));
    assert_eq!(got["request"]["headers"]["x-trace"], "t-1");
    let headers = got["request"]["headers"].as_object().unwrap();
    for secret in ["authorization", "cookie", "x-api-key", "x-session-token"] {
        assert!(
            !headers.contains_key(secret),
            "{secret} was sent to the validator"
        );
    }
    // Tried in order: GitHub first (refused), then custom.
    assert!(gh_calls.load(Ordering::SeqCst) >= 1);
    // A gateway token is never sent to any validator, valid or not.
    let before = (seen.lock().unwrap().len(), gh_calls.load(Ordering::SeqCst));
    assert_eq!(
        me(&app, "gh_eyJhbGciOiJFZERTQSJ9.e30.sig").await.status(),
        401
    );
    assert_eq!(
        me(&app, &format!("x{}", "y".repeat(9000))).await.status(),
        401
    );
    assert_eq!(
        (seen.lock().unwrap().len(), gh_calls.load(Ordering::SeqCst)),
        before
    );
    assert_eq!(me(&app, "nope").await.status(), 401);
}

#[actix_web::test]
async fn access_rules_grant_and_deny_scopes_by_mapped_attributes() {
    let issuer = FakeIssuer::start();
    let app = spawn_toml(&format!(
        r#"
[[auth.bearer]]
type = "jwks"
jwks_uri = "{0}/jwks"
claims_mapping = {{ groups = "teams" }}

[[access.rules]]
match = {{ attributes = {{ teams = ["ml"] }}, methods = ["jwks"] }}
scopes = ["admin"]

[[access.rules]]
effect = "deny"
match = {{ users = ["alice"] }}
scopes = ["write"]
"#,
        issuer.url
    ))
    .await;
    let body: Value = me(&app, &issuer.sign(&issuer.claims()))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        body["scopes"],
        json!(["read", "admin"]),
        "admin granted by the team rule"
    );
    let mut other = issuer.claims();
    other["groups"] = json!(["web"]);
    let body: Value = me(&app, &issuer.sign(&other)).await.json().await.unwrap();
    assert_eq!(
        body["scopes"],
        json!(["read"]),
        "the token's own scope only"
    );
    // A denial reaches a signed-in user too.
    app.add_user("alice", PW, false).await;
    app.login("alice", PW).await;
    let res = app.post_json("/api/tokens", json!({"name": "x"})).await;
    assert_eq!(res.status(), 403, "write was denied to alice");
}
