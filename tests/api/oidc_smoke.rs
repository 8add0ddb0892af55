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
