use crate::helpers::*;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use time::Duration;

impl TestApp {
    /// Signs in `name` on the app's client and makes a token with `body`.
    pub async fn token(&self, body: Value) -> Value {
        let res = self.post_json("/api/tokens", body).await;
        assert_eq!(res.status(), 201);
        res.json().await.unwrap()
    }

    pub async fn with_bearer(&self, token: &str, path: &str) -> reqwest::Response {
        client()
            .get(format!("{}{path}", self.url))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }
}

async fn signed_in(admin: bool) -> TestApp {
    let app = spawn_app().await;
    app.add_user("alice", PW, admin).await;
    assert_eq!(app.login("alice", PW).await.status(), 200);
    app
}

#[actix_web::test]
async fn a_token_is_shown_once_and_works_as_bearer_and_x_api_key() {
    let app = signed_in(false).await;
    let t = app.token(json!({"name": "ci"})).await;
    let secret = t["token"].as_str().unwrap();
    assert!(secret.starts_with("gh_"));
    assert_eq!(t["scopes"], json!(["read", "write"]));
    assert_eq!(t["status"], "active");
    let lifetime = time::OffsetDateTime::parse(
        t["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
        - time::OffsetDateTime::parse(
            t["created_at"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
    assert_eq!(lifetime, Duration::days(30));
    // The JWT: EdDSA with a kid; sub is the user id.
    let jwt = &secret[3..];
    let header = jsonwebtoken::decode_header(jwt).unwrap();
    assert_eq!(header.alg, Algorithm::EdDSA);
    assert!(header.kid.is_some());
    let payload: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(jwt.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(payload["jti"], t["id"]);
    for k in ["sub", "jti", "name", "scopes", "iat", "exp", "iss"] {
        assert!(payload.get(k).is_some(), "claim {k}");
    }

    let res = app.with_bearer(secret, "/account/api/me").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["username"], "alice");
    let res = client()
        .get(format!("{}/account/api/me", app.url))
        .header("x-api-key", secret)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    let list: Value = app.get("/api/tokens").await.json().await.unwrap();
    assert_eq!(list["object"], "list");
    assert_eq!(list["data"][0]["id"], t["id"]);
    assert!(list["data"][0].get("token").is_none());
    assert!(!list.to_string().contains(secret));
    let one: Value = app
        .get(&format!("/api/tokens/{}", t["id"].as_str().unwrap()))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(one["name"], "ci");
    assert_eq!(one["user"], "alice");
    // The secret is not in the data files either.
    assert!(!contains(
        &all_file_bytes(app.home.path()),
        &secret.as_bytes()[3..]
    ));
}

#[actix_web::test]
async fn token_requests_are_validated() {
    let app = signed_in(false).await;
    let cases = [
        (json!({"name": "x", "expires_in": 0}), 422),
        (json!({"name": "x", "expires_in": 90 * 86400 + 1}), 422),
        (json!({"name": "x", "scopes": ["admin"]}), 403),
        (json!({"name": "x", "scopes": ["root"]}), 422),
        (json!({"name": "x", "scopes": []}), 422),
        (json!({"name": "x", "allowed_ips": ["10.0.0.0/33"]}), 422),
        (json!({"name": "x", "allowed_ips": ["not-an-ip"]}), 422),
        (json!({"name": "x", "max_idle": 0}), 422),
        (json!({"name": ""}), 422),
        (json!({"expires_in": 60}), 400),
        (json!({"name": "x", "expires_in": "soon"}), 400),
    ];
    for (body, status) in cases {
        let res = app.post_json("/api/tokens", body.clone()).await;
        assert_eq!(res.status().as_u16(), status, "{body}");
        error_code(res).await;
    }
    let t = app
        .token(json!({"name": "x", "expires_in": 90 * 86400, "allowed_ips": ["10.1.2.3"]}))
        .await;
    assert_eq!(t["allowed_ips"], json!(["10.1.2.3/32"]));
    let id = t["id"].as_str().unwrap();
    let res = app
        .post_json(
            &format!("/api/tokens/{id}/rotate"),
            json!({"grace": 7 * 86400 + 1}),
        )
        .await;
    assert_eq!(res.status(), 422);
    // Nothing was created by the refused requests.
    let list: Value = app.get("/api/tokens").await.json().await.unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
}

#[actix_web::test]
async fn admins_may_grant_admin_and_lose_it_with_the_role() {
    let app = signed_in(true).await;
    let t = app.token(json!({"name": "ops", "scopes": ["admin"]})).await;
    let secret = t["token"].as_str().unwrap();
    let res = client()
        .post(format!("{}/api/tokens", app.url))
        .bearer_auth(secret)
        .json(&json!({"name": "child", "scopes": ["admin"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    // A read-only token may neither mint write tokens nor mutate.
    let ro = app.token(json!({"name": "ro", "scopes": ["read"]})).await;
    let res = client()
        .post(format!("{}/api/tokens", app.url))
        .bearer_auth(ro["token"].as_str().unwrap())
        .json(&json!({"name": "w", "scopes": ["read"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(
        app.with_bearer(ro["token"].as_str().unwrap(), "/api/tokens")
            .await
            .status(),
        200
    );
}

#[actix_web::test]
async fn revoking_refuses_the_token_from_that_moment() {
    let app = signed_in(false).await;
    let t = app.token(json!({"name": "ci"})).await;
    let (id, secret) = (t["id"].as_str().unwrap(), t["token"].as_str().unwrap());
    assert_eq!(
        app.with_bearer(secret, "/account/api/me").await.status(),
        200
    );
    let res = app
        .client
        .delete(format!("{}/api/tokens/{id}", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let res = app.with_bearer(secret, "/account/api/me").await;
    assert_eq!(res.status(), 401);
    assert!(res.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    let (_, code) = error_code(res).await;
    assert_eq!(code, "invalid_api_key");
    let one: Value = app
        .get(&format!("/api/tokens/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(one["status"], "revoked");
    // Someone else's token is not found, not forbidden.
    app.add_user("mallory", PW, false).await;
    let m = client();
    app.login_with(&m, "mallory", PW).await;
    assert_eq!(
        m.get(format!("{}/api/tokens/{id}", app.url))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        m.delete(format!("{}/api/tokens/{id}", app.url))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

#[actix_web::test]
async fn rotation_keeps_the_old_token_for_the_grace_window() {
    let app = signed_in(false).await;
    let t = app.token(json!({"name": "deploy", "scopes": ["read"], "models": ["openai/gpt-4o-mini"], "max_idle": 86400})).await;
    let (id, old) = (
        t["id"].as_str().unwrap(),
        t["token"].as_str().unwrap().to_owned(),
    );
    let res = app
        .post_json(&format!("/api/tokens/{id}/rotate"), json!({"grace": 600}))
        .await;
    assert_eq!(res.status(), 201);
    let new: Value = res.json().await.unwrap();
    assert_eq!(new["rotated_from"], t["id"]);
    for k in ["name", "scopes", "models", "max_idle"] {
        assert_eq!(new[k], t[k], "{k}");
    }
    let fresh = new["token"].as_str().unwrap();
    assert_eq!(app.with_bearer(&old, "/account/api/me").await.status(), 200);
    assert_eq!(
        app.with_bearer(fresh, "/account/api/me").await.status(),
        200
    );
    app.clock.advance(Duration::seconds(601));
    assert_eq!(app.with_bearer(&old, "/account/api/me").await.status(), 401);
    assert_eq!(
        app.with_bearer(fresh, "/account/api/me").await.status(),
        200
    );
    // Rotating a token that is no longer active is refused; an empty body takes the default grace.
    let res = app
        .client
        .post(format!("{}/api/tokens/{id}/rotate", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 409);
    let res = app
        .client
        .post(format!(
            "{}/api/tokens/{}/rotate",
            app.url,
            new["id"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
}

#[actix_web::test]
async fn idle_tokens_expire_and_expired_tokens_are_refused() {
    let app = signed_in(false).await;
    let idle = app.token(json!({"name": "idle", "max_idle": 60})).await;
    let short = app.token(json!({"name": "short", "expires_in": 120})).await;
    app.clock.advance(Duration::seconds(50));
    assert_eq!(
        app.with_bearer(idle["token"].as_str().unwrap(), "/account/api/me")
            .await
            .status(),
        200
    );
    app.clock.advance(Duration::seconds(50));
    assert_eq!(
        app.with_bearer(idle["token"].as_str().unwrap(), "/account/api/me")
            .await
            .status(),
        200,
        "use resets the idle clock"
    );
    app.clock.advance(Duration::seconds(61));
    assert_eq!(
        app.with_bearer(idle["token"].as_str().unwrap(), "/account/api/me")
            .await
            .status(),
        401
    );
    assert_eq!(
        app.with_bearer(short["token"].as_str().unwrap(), "/account/api/me")
            .await
            .status(),
        401
    );
    let list: Value = app.get("/api/tokens").await.json().await.unwrap();
    for t in list["data"].as_array().unwrap() {
        assert_eq!(t["status"], "expired", "{t}");
    }
}

#[actix_web::test]
async fn allowed_ips_restrict_where_a_token_works() {
    let app = signed_in(false).await;
    let far = app
        .token(json!({"name": "far", "allowed_ips": ["10.0.0.0/8"]}))
        .await;
    let near = app
        .token(json!({"name": "near", "allowed_ips": ["127.0.0.1/32", "::1"]}))
        .await;
    let (s, code) = error_code(
        app.with_bearer(far["token"].as_str().unwrap(), "/account/api/me")
            .await,
    )
    .await;
    assert_eq!((s, code.as_str()), (403, "ip_not_allowed"));
    assert_eq!(
        app.with_bearer(near["token"].as_str().unwrap(), "/account/api/me")
            .await
            .status(),
        200
    );
    // A spoofed X-Forwarded-For from an untrusted peer changes nothing.
    let res = client()
        .get(format!("{}/account/api/me", app.url))
        .bearer_auth(far["token"].as_str().unwrap())
        .header("x-forwarded-for", "10.1.1.1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
}

#[actix_web::test]
async fn locking_or_removing_the_user_refuses_their_tokens() {
    let app = signed_in(false).await;
    let secret = app.token(json!({"name": "x"})).await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let actor = gatehouse::accounts::Actor::cli();
    gatehouse::accounts::lock_user(&app.state(), &actor, "alice", None)
        .await
        .unwrap();
    assert_eq!(
        app.with_bearer(&secret, "/account/api/me").await.status(),
        401
    );
    gatehouse::accounts::unlock_user(&app.state(), &actor, "alice")
        .await
        .unwrap();
    assert_eq!(
        app.with_bearer(&secret, "/account/api/me").await.status(),
        200
    );
    gatehouse::accounts::remove_user(&app.state(), &actor, "alice")
        .await
        .unwrap();
    assert_eq!(
        app.with_bearer(&secret, "/account/api/me").await.status(),
        401
    );
    assert!(app
        .state()
        .handles
        .store()
        .load_tokens()
        .await
        .unwrap()
        .is_empty());
}

/// Tokens forged or damaged every way we know: each is a 401 with the
/// same body and a `WWW-Authenticate: Bearer` header.
#[actix_web::test]
async fn bad_tokens_of_every_kind_are_401_without_detail() {
    let app = signed_in(false).await;
    let good = app.token(json!({"name": "good"})).await;
    let secret = good["token"].as_str().unwrap().to_owned();
    let jwt = secret[3..].to_owned();
    let parts: Vec<&str> = jwt.split('.').collect();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    let kid = jsonwebtoken::decode_header(&jwt).unwrap().kid.unwrap();
    let key = app
        .state()
        .handles
        .store()
        .load_signing_keys()
        .await
        .unwrap()
        .pop()
        .unwrap();
    let real = EncodingKey::from_ed_der(&STANDARD.decode(&key.pkcs8).unwrap());
    let sign = |c: &Value, k: &EncodingKey, kid: Option<&str>| {
        let mut h = Header::new(Algorithm::EdDSA);
        h.kid = kid.map(str::to_owned);
        format!("gh_{}", jsonwebtoken::encode(&h, c, k).unwrap())
    };
    let with = |k: &str, v: Value| {
        let mut c = claims.clone();
        c[k] = v;
        c
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let other =
        ring::signature::Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
    let other = EncodingKey::from_ed_der(other.as_ref());
    let public_x = URL_SAFE_NO_PAD.decode(&key.public).unwrap();
    let hs256 = format!(
        "gh_{}",
        jsonwebtoken::encode(
            &Header {
                kid: Some(kid.clone()),
                ..Header::new(Algorithm::HS256)
            },
            &claims,
            &EncodingKey::from_secret(&public_x)
        )
        .unwrap()
    );
    let mut tampered_claims = claims.clone();
    tampered_claims["scopes"] = json!(["read", "write", "admin"]);
    let bad = vec![
        (
            "expired",
            sign(&with("exp", json!(now - 10)), &real, Some(&kid)),
        ),
        (
            "wrong issuer",
            sign(&with("iss", json!("someone-else")), &real, Some(&kid)),
        ),
        (
            "unknown jti",
            sign(&with("jti", json!("0".repeat(32))), &real, Some(&kid)),
        ),
        (
            "other user",
            sign(&with("sub", json!("0".repeat(32))), &real, Some(&kid)),
        ),
        ("unknown kid", sign(&claims, &other, Some("nosuchkid"))),
        ("no kid", sign(&claims, &real, None)),
        ("foreign key, right kid", sign(&claims, &other, Some(&kid))),
        (
            "alg none",
            format!(
                "gh_{}.{}.",
                b64(&json!({"alg": "none", "kid": kid})),
                parts[1]
            ),
        ),
        ("hs256 with the public key", hs256),
        (
            "tampered payload",
            format!("gh_{}.{}.{}", parts[0], b64(&tampered_claims), parts[2]),
        ),
        ("truncated", secret[..secret.len() - 10].to_owned()),
        ("no prefix", jwt.clone()),
        ("huge", format!("gh_{}", "A".repeat(9000))),
        ("garbage", "gh_..".to_owned()),
        ("empty", String::new()),
    ];
    let mut bodies = std::collections::HashSet::new();
    for (what, token) in bad {
        let res = client()
            .get(format!("{}/account/api/me", app.url))
            .header("authorization", format!("Bearer {token}"))
            .send()
            .await
            .unwrap();
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
    assert_eq!(
        bodies.len(),
        1,
        "every refusal says the same thing: {bodies:?}"
    );
    let body = bodies.into_iter().next().unwrap();
    assert!(
        !body.contains("expired") && !body.contains("signature") && !body.contains("kid"),
        "{body}"
    );
    // A wrong scheme is refused too; the good token still works.
    let res = client()
        .get(format!("{}/account/api/me", app.url))
        .header("authorization", format!("Basic {secret}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(
        app.with_bearer(&secret, "/account/api/me").await.status(),
        200
    );
}

#[actix_web::test]
async fn key_rotation_keeps_old_tokens_valid_and_publishes_both_keys() {
    let app = signed_in(false).await;
    let before = app.token(json!({"name": "before"})).await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let jwks: Value = app
        .get("/.well-known/jwks.json")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
    let out = gatehouse::admin_socket::execute(
        &app.state(),
        gatehouse::admin_socket::AdminRequest::KeysRotate,
    )
    .await;
    assert!(out.ok, "{}", out.stderr);
    let after = app.token(json!({"name": "after"})).await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let kid = |t: &str| jsonwebtoken::decode_header(&t[3..]).unwrap().kid.unwrap();
    assert_ne!(kid(&before), kid(&after));
    let jwks: Value = app
        .get("/.well-known/jwks.json")
        .await
        .json()
        .await
        .unwrap();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, vec![kid(&after), kid(&before)]);
    for k in jwks["keys"].as_array().unwrap() {
        assert_eq!(
            (k["kty"].as_str(), k["crv"].as_str(), k["alg"].as_str()),
            (Some("OKP"), Some("Ed25519"), Some("EdDSA"))
        );
        assert!(k.get("d").is_none(), "no private part");
    }
    assert_eq!(
        app.with_bearer(&before, "/account/api/me").await.status(),
        200
    );
    assert_eq!(
        app.with_bearer(&after, "/account/api/me").await.status(),
        200
    );
}

/// An independent library (PyJWT) verifies a gateway token with the JWKS.
#[actix_web::test]
async fn pyjwt_verifies_a_gateway_token_with_the_published_jwks() {
    let app = signed_in(false).await;
    let t = app.token(json!({"name": "py"})).await;
    let script = r#"
import json, sys, urllib.request, jwt
url, token, user_id = sys.argv[1], sys.argv[2], sys.argv[3]
jwks = json.load(urllib.request.urlopen(url + "/.well-known/jwks.json"))
kid = jwt.get_unverified_header(token)["kid"]
key = next(jwt.PyJWK(k) for k in jwks["keys"] if k["kid"] == kid)
claims = jwt.decode(token, key.key, algorithms=["EdDSA"], issuer="gatehouse")
assert claims["sub"] == user_id, claims
try:
    jwt.decode(token[:-4] + "AAAA", key.key, algorithms=["EdDSA"], issuer="gatehouse")
    sys.exit("a tampered token verified")
except jwt.InvalidSignatureError:
    pass
print("verified", claims["jti"])
"#;
    let me: Value = app.get("/account/api/me").await.json().await.unwrap();
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            script,
            &app.url,
            &t["token"].as_str().unwrap()[3..],
            me["id"].as_str().unwrap(),
        ])
        .output()
        .expect("python3 runs (.ci/run installs PyJWT and cryptography)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("verified {}", t["id"].as_str().unwrap())
    );
}

#[actix_web::test]
async fn last_used_is_batched_to_the_store_at_the_sweep() {
    let app = signed_in(false).await;
    let t = app.token(json!({"name": "x"})).await;
    assert_eq!(
        app.with_bearer(t["token"].as_str().unwrap(), "/account/api/me")
            .await
            .status(),
        200
    );
    let h = &app.state().handles;
    assert!(
        h.store().load_tokens().await.unwrap()[0]
            .last_used_at
            .is_none(),
        "no write per request"
    );
    let listed: Value = app.get("/api/tokens").await.json().await.unwrap();
    assert!(
        listed["data"][0]["last_used_at"].is_string(),
        "but the API shows it at once"
    );
    h.users()
        .send(gatehouse_actors::users::Sweep { now: h.now() })
        .await
        .unwrap()
        .unwrap();
    assert!(h.store().load_tokens().await.unwrap()[0]
        .last_used_at
        .is_some());
}
