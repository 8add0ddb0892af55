//! The test OpenID provider itself (tests/oidc/provider.mjs): JWT and opaque
//! client_credentials tokens, introspection, and key rotation on restart.

use crate::helpers::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;

fn jwt_part(token: &str, i: usize) -> Value {
    let part = token.split('.').nth(i).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

async fn jwks_kids(url: &str) -> Vec<String> {
    let jwks: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
    let mut kids: Vec<String> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    kids.sort();
    kids
}

#[actix_web::test]
async fn provider_issues_jwt_and_opaque_tokens_and_rotates_keys() {
    let op = OidcProvider::start("seed-a");
    assert!(op.issuer.starts_with("http://127.0.0.1:"), "{}", op.issuer);
    assert!(!op.issuer.ends_with('/'));
    assert_eq!(op.jwks_uri(), format!("{}/jwks", op.issuer));
    assert_eq!(op.token_url(), format!("{}/token", op.issuer));
    assert_eq!(
        op.introspection_url(),
        format!("{}/token/introspection", op.issuer)
    );

    // A JWT access token for urn:gatehouse.
    let jwt = op.client_token("read write", "urn:gatehouse").await;
    assert_eq!(jwt.split('.').count(), 3, "{jwt}");
    let header = jwt_part(&jwt, 0);
    assert_eq!(header["alg"], "ES256", "{header}");
    assert_eq!(header["typ"], "at+jwt", "{header}");
    let kid = header["kid"].as_str().unwrap();
    assert!(op.kids().iter().any(|k| k == kid), "{header}");
    let claims = jwt_part(&jwt, 1);
    assert_eq!(claims["aud"], OidcProvider::AUDIENCE, "{claims}");
    assert_eq!(claims["iss"], op.issuer.as_str(), "{claims}");
    assert_eq!(claims["sub"], "gatehouse-test", "{claims}");
    assert_eq!(claims["client_id"], "gatehouse-test", "{claims}");
    let scope = claims["scope"].as_str().unwrap();
    assert!(scope.split(' ').any(|s| s == "read"), "{claims}");
    assert_eq!(
        claims["groups"],
        serde_json::json!(["ml", "eng"]),
        "{claims}"
    );
    assert_eq!(claims["team"], "ml", "{claims}");
    let ttl = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert_eq!(ttl, 600, "{claims}");

    // An opaque one for urn:opaque, checked at the introspection endpoint.
    let opaque = op.client_token("read write", "urn:opaque").await;
    assert!(!opaque.contains('.'), "{opaque}");
    let res = op
        .post_form(
            &op.introspection_url(),
            "introspector",
            "introspector-secret",
            &[("token", &opaque)],
        )
        .await;
    assert_eq!(res.status(), 200);
    let info: Value = res.json().await.unwrap();
    assert_eq!(info["active"], true, "{info}");
    assert_eq!(info["aud"], "gatehouse", "{info}");
    assert_eq!(info["client_id"], "gatehouse-test", "{info}");
    assert_eq!(info["scope"], "read write", "{info}");
    assert_eq!(info["groups"], serde_json::json!(["ml", "eng"]), "{info}");
    assert_eq!(op.introspect("not-a-token").await["active"], false);

    // Restart on the same port with another seed: new keys, new kids.
    let before = jwks_kids(&op.jwks_uri()).await;
    assert_eq!(before, ["seed-a-ec", "seed-a-rsa"]);
    let (port, issuer) = (op.port, op.issuer.clone());
    op.stop();
    let op = OidcProvider::start_on(port, "seed-b", "RS256");
    assert_eq!(op.issuer, issuer);
    let after = jwks_kids(&op.jwks_uri()).await;
    assert_eq!(after, ["seed-b-ec", "seed-b-rsa"]);
    let jwt = op.client_token("admin", "").await;
    assert_eq!(jwt_part(&jwt, 0)["kid"], "seed-b-rsa");
    assert_eq!(jwt_part(&jwt, 1)["scope"], "admin");
}

/// A stand-in RP on a reserved loopback port: answers exactly one request
/// with `200 OK` and hands over its request line and body.
fn one_shot_rp() -> (String, std::sync::mpsc::Receiver<(String, String)>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let rp = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        let (head_len, content_length) = loop {
            let n = stream.read(&mut buf).unwrap();
            assert!(n > 0, "connection closed mid-request");
            raw.extend_from_slice(&buf[..n]);
            if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&raw[..i]).to_string();
                let length = head
                    .lines()
                    .filter_map(|l| l.split_once(':'))
                    .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
                    .map_or(0, |(_, v)| v.trim().parse::<usize>().unwrap());
                break (i + 4, length);
            }
        };
        while raw.len() < head_len + content_length {
            let n = stream.read(&mut buf).unwrap();
            assert!(n > 0, "connection closed mid-body");
            raw.extend_from_slice(&buf[..n]);
        }
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .unwrap();
        let head = String::from_utf8_lossy(&raw[..head_len]);
        let request_line = head.lines().next().unwrap_or_default().to_owned();
        let body = String::from_utf8_lossy(&raw[head_len..head_len + content_length]).to_string();
        let _ = tx.send((request_line, body));
    });
    (rp, rx)
}

/// The value of `name` in a query string or form body (percent-decoded).
fn param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| {
            urlencoding::decode(&v.replace('+', " "))
                .unwrap()
                .into_owned()
        })
    })
}

#[actix_web::test]
async fn provider_signs_in_with_code_and_pkce_and_logs_out_over_the_back_channel() {
    let (rp, logout_rx) = one_shot_rp();
    let op = OidcProvider::start_for_rp(0, "seed-web", &rp);
    assert_eq!(op.authorization_url(), format!("{}/auth", op.issuer));
    assert_eq!(op.end_session_url(), format!("{}/session/end", op.issuer));
    // The client_credentials clients still work alongside.
    let jwt = op.client_token("read", "urn:gatehouse").await;
    assert_eq!(jwt_part(&jwt, 1)["aud"], "gatehouse");

    let redirect_uri = format!("{rp}/auth/oidc/corp/callback");
    let verifier = "a-very-long-code-verifier-of-at-least-43-characters-0123456789";
    let challenge = URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        verifier.as_bytes(),
    ));
    let authorize = format!(
        "{}?client_id={}&response_type=code&scope={}&redirect_uri={}&state=s1&nonce=n1\
         &code_challenge={challenge}&code_challenge_method=S256",
        op.authorization_url(),
        OidcProvider::WEB_CLIENT_ID,
        form_encode("openid email profile groups"),
        form_encode(&redirect_uri),
    );
    let browser = client();
    let back = op.login(&browser, &authorize, "alice-ml").await;
    assert!(back.starts_with(&format!("{redirect_uri}?")), "{back}");
    let query = back.split_once('?').unwrap().1;
    assert_eq!(param(query, "state").as_deref(), Some("s1"), "{back}");
    assert_eq!(
        param(query, "iss").as_deref(),
        Some(op.issuer.as_str()),
        "{back}"
    );
    let code = param(query, "code").unwrap_or_else(|| panic!("no code: {back}"));

    // Without the verifier the code is refused (PKCE is required)…
    let res = op
        .post_form(
            &op.token_url(),
            OidcProvider::WEB_CLIENT_ID,
            OidcProvider::WEB_CLIENT_SECRET,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", &redirect_uri),
                (
                    "code_verifier",
                    "a-wrong-code-verifier-of-at-least-43-characters-0123456789",
                ),
            ],
        )
        .await;
    assert_eq!(res.status(), 400);
    // …and a code is single-use, so sign in again (the provider session
    // skips the login form) for a fresh one.
    let back = op.login(&browser, &authorize, "ignored").await;
    let code = param(back.split_once('?').unwrap().1, "code").unwrap();
    let res = op
        .post_form(
            &op.token_url(),
            OidcProvider::WEB_CLIENT_ID,
            OidcProvider::WEB_CLIENT_SECRET,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", &redirect_uri),
                ("code_verifier", verifier),
            ],
        )
        .await;
    let status = res.status();
    let tokens: Value = res.json().await.unwrap();
    assert_eq!(status, 200, "{tokens}\n{}", op.log());
    let id_token = tokens["id_token"].as_str().unwrap();
    assert_eq!(jwt_part(id_token, 0)["alg"], "RS256");
    assert_eq!(jwt_part(id_token, 0)["kid"], "seed-web-rsa");
    let claims = jwt_part(id_token, 1);
    assert_eq!(claims["iss"], op.issuer.as_str(), "{claims}");
    assert_eq!(claims["aud"], "gatehouse-web", "{claims}");
    assert_eq!(claims["nonce"], "n1", "{claims}");
    assert_eq!(claims["sub"], "alice-ml", "{claims}");
    assert_eq!(claims["email"], "alice-ml@example.com", "{claims}");
    assert_eq!(claims["email_verified"], true, "{claims}");
    assert_eq!(claims["name"], "Name of alice-ml", "{claims}");
    assert_eq!(claims["preferred_username"], "alice-ml", "{claims}");
    assert_eq!(claims["groups"], serde_json::json!(["ml"]), "{claims}");
    let sid = claims["sid"]
        .as_str()
        .unwrap_or_else(|| panic!("no sid: {claims}"));

    // Another browser, another account: only the granted scopes' claims.
    let other = client();
    let authorize_email = authorize.replace(
        &form_encode("openid email profile groups"),
        &form_encode("openid email"),
    );
    let back = op
        .login(&other, &authorize_email, "unverified@corp.example")
        .await;
    let code = param(back.split_once('?').unwrap().1, "code").unwrap();
    let res = op
        .post_form(
            &op.token_url(),
            OidcProvider::WEB_CLIENT_ID,
            OidcProvider::WEB_CLIENT_SECRET,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", &redirect_uri),
                ("code_verifier", verifier),
            ],
        )
        .await;
    let tokens: Value = res.json().await.unwrap();
    let claims2 = jwt_part(tokens["id_token"].as_str().unwrap(), 1);
    assert_eq!(claims2["email"], "unverified@corp.example", "{claims2}");
    assert_eq!(claims2["email_verified"], false, "{claims2}");
    assert!(claims2.get("groups").is_none(), "{claims2}");
    assert!(claims2.get("name").is_none(), "{claims2}");
    assert_ne!(claims2["sid"], sid, "{claims2}");

    // Logout of the first browser: the provider POSTs a logout token to the RP.
    op.logout(&browser).await;
    let (request_line, body) = logout_rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .unwrap_or_else(|_| panic!("no back-channel logout\n{}", op.log()));
    assert_eq!(
        request_line,
        "POST /auth/oidc/corp/backchannel-logout HTTP/1.1"
    );
    assert!(body.contains("logout_token="), "{body}");
    let logout_token = param(&body, "logout_token").unwrap();
    let lt = jwt_part(&logout_token, 1);
    assert!(
        lt["events"]
            .get("http://schemas.openid.net/event/backchannel-logout")
            .is_some(),
        "{lt}"
    );
    assert_eq!(lt["iss"], op.issuer.as_str(), "{lt}");
    assert_eq!(lt["aud"], "gatehouse-web", "{lt}");
    assert_eq!(lt["sub"], "alice-ml", "{lt}");
    assert_eq!(lt["sid"], sid, "{lt}");
    assert!(lt.get("nonce").is_none(), "{lt}");

    // Signed out: the next authorize asks for a login again.
    let back = op.login(&browser, &authorize, "bob").await;
    let code = param(back.split_once('?').unwrap().1, "code").unwrap();
    let res = op
        .post_form(
            &op.token_url(),
            OidcProvider::WEB_CLIENT_ID,
            OidcProvider::WEB_CLIENT_SECRET,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", &redirect_uri),
                ("code_verifier", verifier),
            ],
        )
        .await;
    let tokens: Value = res.json().await.unwrap();
    let claims3 = jwt_part(tokens["id_token"].as_str().unwrap(), 1);
    assert_eq!(claims3["sub"], "bob", "{claims3}");
    assert_eq!(claims3["groups"], serde_json::json!(["web"]), "{claims3}");
}
