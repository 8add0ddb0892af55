//! `[[auth.bearer]]` against a real OpenID provider (npm `oidc-provider`):
//! JWT access tokens by the client-credentials grant, key rotation at the
//! provider, and RFC 7662 introspection.

use crate::bearer::spawn_toml;
use crate::helpers::*;
use serde_json::{json, Value};
use time::Duration;

async fn me(app: &TestApp, token: &str) -> reqwest::Response {
    client()
        .get(format!("{}/account/api/me", app.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

fn jwks_config(op: &OidcProvider) -> String {
    format!(
        "[[auth.bearer]]\ntype = \"jwks\"\nissuer = \"{}\"\naudience = \"gatehouse\"\njwks_uri = \"{}\"\nclaims_mapping = {{ groups = \"roles\", team = \"teams\" }}\n",
        op.issuer,
        op.jwks_uri()
    )
}

#[actix_web::test]
async fn client_credentials_jwts_from_a_real_provider_are_accepted_and_mapped() {
    let op = OidcProvider::start("k1");
    let app = spawn_toml(&jwks_config(&op)).await;
    let token = op.client_token("read write", "urn:gatehouse").await;
    let res = me(&app, &token).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["id"], "jwks:gatehouse-test");
    assert_eq!(body["auth"], "jwks");
    assert_eq!(body["roles"], json!(["ml", "eng"]));
    assert_eq!(body["attributes"]["teams"], json!(["ml"]));
    assert_eq!(body["scopes"], json!(["read", "write"]));
    // The provider's read-only token reads; the default scopes do not apply.
    let ro = op.client_token("read", "urn:gatehouse").await;
    let body: Value = me(&app, &ro).await.json().await.unwrap();
    assert_eq!(body["scopes"], json!(["read"]));
    // An opaque token is not a JWT: refused by a jwks-only gateway.
    let opaque = op.client_token("read", "urn:opaque").await;
    assert_eq!(me(&app, &opaque).await.status(), 401);
    // Expired by the gateway's clock (600 s tokens, 30 s leeway).
    app.clock.advance(Duration::seconds(700));
    let fresh_app_view = me(&app, &op.client_token("read", "urn:gatehouse").await)
        .await
        .status();
    assert_eq!(
        fresh_app_view, 401,
        "iat/exp are in the provider's time; the gateway's clock is 700 s ahead"
    );
}

#[actix_web::test]
async fn rs256_tokens_and_a_wrong_audience_or_issuer() {
    let op = OidcProvider::start_on(0, "rsa1", "RS256");
    let app = spawn_toml(&jwks_config(&op)).await;
    let token = op.client_token("read", "urn:gatehouse").await;
    assert_eq!(
        jsonwebtoken::decode_header(&token).unwrap().alg,
        jsonwebtoken::Algorithm::RS256
    );
    assert_eq!(me(&app, &token).await.status(), 200);
    let strict = spawn_toml(
        &jwks_config(&op).replace("audience = \"gatehouse\"", "audience = \"another-api\""),
    )
    .await;
    assert_eq!(me(&strict, &token).await.status(), 401);
    let other_issuer = spawn_toml(&jwks_config(&op).replace(
        &format!("issuer = \"{}\"", op.issuer),
        "issuer = \"http://127.0.0.1:1\"",
    ))
    .await;
    assert_eq!(me(&other_issuer, &token).await.status(), 401);
}

#[actix_web::test]
async fn key_rotation_at_the_provider_is_picked_up() {
    let op = OidcProvider::start("gen1");
    let port = op.port;
    let app = spawn_toml(&jwks_config(&op)).await;
    let old = op.client_token("read", "urn:gatehouse").await;
    assert_eq!(me(&app, &old).await.status(), 200);
    op.stop();
    let op = OidcProvider::start_on(port, "gen2", "ES256");
    let new = op.client_token("read", "urn:gatehouse").await;
    assert_ne!(
        jsonwebtoken::decode_header(&old).unwrap().kid,
        jsonwebtoken::decode_header(&new).unwrap().kid
    );
    // The unknown kid triggers a refetch, but at most once per 30 s.
    app.clock.advance(Duration::seconds(31));
    assert_eq!(me(&app, &new).await.status(), 200);
    // The old token's verified claims stay cached until it expires.
    assert_eq!(me(&app, &old).await.status(), 200);
}

#[actix_web::test]
async fn introspection_accepts_active_tokens_and_caches_within_bounds() {
    let mut op = OidcProvider::start("i1");
    for (client, in_body) in [("introspector", false), ("introspector-post", true)] {
        let app = spawn_toml(&format!(
            "[[auth.bearer]]\ntype = \"introspection\"\nurl = \"{}\"\nclient_id = \"{client}\"\nclient_secret = \"introspector-secret\"\nsend_secret_in_body = {in_body}\naudience = \"gatehouse\"\ncache_ttl = \"60s\"\nclaims_mapping = {{ team = \"teams\" }}\n",
            op.introspection_url()
        ))
        .await;
        let token = op.client_token("read write", "urn:opaque").await;
        let res = me(&app, &token).await;
        assert_eq!(res.status(), 200, "{client}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["auth"], "introspection");
        assert_eq!(body["username"], "gatehouse-test");
        assert_eq!(body["attributes"]["teams"], json!(["ml"]));
        assert_eq!(
            me(&app, "not-a-token-the-provider-knows").await.status(),
            401
        );
        // Cached: still accepted while the provider is down, until cache_ttl.
        let port = op.port;
        op.stop();
        assert_eq!(
            me(&app, &token).await.status(),
            200,
            "served from the cache"
        );
        app.clock.advance(Duration::seconds(61));
        assert_eq!(
            me(&app, &token).await.status(),
            401,
            "cache expired and the provider is down: fail closed"
        );
        op = OidcProvider::start_on(port, "i1", "ES256");
    }
    // A wrong introspection secret refuses every token.
    let app = spawn_toml(&format!(
        "[[auth.bearer]]\ntype = \"introspection\"\nurl = \"{}\"\nclient_id = \"introspector\"\nclient_secret = \"wrong\"\n",
        op.introspection_url()
    ))
    .await;
    assert_eq!(
        me(&app, &op.client_token("read", "urn:opaque").await)
            .await
            .status(),
        401
    );
}
