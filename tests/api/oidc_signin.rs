//! Sign in with OpenID Connect against a real provider (npm `oidc-provider`
//! with its development login form), the browser played by an HTTP client
//! with a cookie jar; and back-channel logout from that provider.

use crate::bearer::spawn_toml;
use crate::helpers::*;
use serde_json::Value;

fn location(res: &reqwest::Response) -> String {
    res.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A gateway configured for provider `corp` at `port`, and the provider, started after it.
async fn setup(extra: &str) -> (TestApp, OidcProvider) {
    let port = free_port();
    let app = spawn_toml(&format!(
        "[auth.oidc.corp]\nissuer = \"http://127.0.0.1:{port}\"\nclient_id = \"gatehouse-web\"\nclient_secret = \"web-client-secret\"\nscopes = [\"openid\", \"email\", \"profile\", \"groups\"]\n{extra}\n"
    ))
    .await;
    let op = OidcProvider::start_for_rp(port, "web1", &app.url);
    (app, op)
}

/// Starts the flow, logs in at the provider as `login`; answers the callback URL.
async fn to_callback(
    app: &TestApp,
    op: &OidcProvider,
    browser: &reqwest::Client,
    login: &str,
    next: &str,
) -> String {
    let res = browser
        .get(format!("{}/auth/oidc/corp{next}", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        302,
        "{}",
        res.text().await.unwrap_or_default()
    );
    let authorize = location(&res);
    for part in [
        "response_type=code",
        "client_id=gatehouse-web",
        "state=",
        "nonce=",
        "code_challenge=",
        "code_challenge_method=S256",
    ] {
        assert!(authorize.contains(part), "{authorize} lacks {part}");
    }
    op.login(browser, &authorize, login).await
}

async fn sign_in(
    app: &TestApp,
    op: &OidcProvider,
    browser: &reqwest::Client,
    login: &str,
) -> reqwest::Response {
    let callback = to_callback(app, op, browser, login, "?next=/welcome").await;
    browser.get(callback).send().await.unwrap()
}

#[actix_web::test]
async fn sign_in_creates_the_user_from_the_id_token() {
    let (app, op) = setup("").await;
    let providers: Value = app.get("/auth/providers").await.json().await.unwrap();
    assert!(providers.to_string().contains("oidc:corp"));
    let browser = client();
    let res = sign_in(&app, &op, &browser, "alice@example.com").await;
    assert_eq!(res.status(), 302);
    assert_eq!(location(&res), "/welcome");
    let token = session_token(&res).unwrap();
    assert!(!location(&res).contains(&token));
    let me: Value = app
        .get_with(&browser, "/account/api/me")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["username"], "alice");
    assert_eq!(me["auth"], "oidc:corp");
    assert_eq!(me["display_name"], "Name of alice@example.com");
    // The same provider user again is the same gateway user.
    let again = client();
    assert_eq!(
        sign_in(&app, &op, &again, "alice@example.com")
            .await
            .status(),
        302
    );
    let me2: Value = app
        .get_with(&again, "/account/api/me")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me2["id"], me["id"]);
    // A foreign browser cannot finish someone else's flow.
    let callback = to_callback(&app, &op, &client(), "carol@example.com", "").await;
    let (s, code) = error_code(client().get(&callback).send().await.unwrap()).await;
    assert_eq!((s, code.as_str()), (400, "invalid_state"));
}

#[actix_web::test]
async fn allowed_domains_need_a_verified_email_in_them() {
    let (app, op) = setup("allowed_domains = [\"example.com\"]").await;
    assert_eq!(
        sign_in(&app, &op, &client(), "alice@example.com")
            .await
            .status(),
        302
    );
    for refused in ["mallory@evil.example", "unverified-bob@example.com"] {
        let (s, code) = error_code(sign_in(&app, &op, &client(), refused).await).await;
        assert_eq!((s, code.as_str()), (403, "not_allowed"), "{refused}");
    }
    assert_eq!(
        app.state().handles.user_view().len(),
        1,
        "nobody refused was created"
    );
}

#[actix_web::test]
async fn allowed_groups_are_read_from_the_configured_claim() {
    let (app, op) = setup("allowed_groups = [\"ml\"]\ngroups_claim = \"groups\"").await;
    assert_eq!(
        sign_in(&app, &op, &client(), "ml-person").await.status(),
        302
    );
    let (s, code) = error_code(sign_in(&app, &op, &client(), "web-person").await).await;
    assert_eq!((s, code.as_str()), (403, "not_allowed"));
}

#[actix_web::test]
async fn an_id_token_for_another_nonce_is_refused() {
    let (app, op) = setup("").await;
    let browser = client();
    let res = browser
        .get(format!("{}/auth/oidc/corp", app.url))
        .send()
        .await
        .unwrap();
    let authorize = location(&res);
    // Someone swaps the nonce on the way to the provider: its ID token no longer matches.
    let nonce = authorize
        .split("nonce=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_owned();
    let swapped = authorize.replace(&format!("nonce={nonce}"), "nonce=attacker-chosen");
    let callback = op.login(&browser, &swapped, "alice@example.com").await;
    let (s, code) = error_code(browser.get(callback).send().await.unwrap()).await;
    assert_eq!((s, code.as_str()), (400, "invalid_id_token"));
    assert_eq!(app.state().handles.user_view().len(), 0);
}

#[actix_web::test]
async fn back_channel_logout_ends_the_sessions_of_that_provider_session() {
    let (app, op) = setup("").await;
    let alice = client();
    assert_eq!(
        sign_in(&app, &op, &alice, "alice@example.com")
            .await
            .status(),
        302
    );
    let bob = client();
    assert_eq!(
        sign_in(&app, &op, &bob, "bob@example.com").await.status(),
        302
    );
    assert_eq!(app.get_with(&alice, "/account/api/me").await.status(), 200);
    op.logout(&alice).await;
    // The provider POSTed a logout token for alice's provider session.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while app.get_with(&alice, "/account/api/me").await.status() == 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "alice's session did not end"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        app.get_with(&bob, "/account/api/me").await.status(),
        200,
        "bob's session is another provider session"
    );
}

#[actix_web::test]
async fn bad_logout_tokens_are_refused() {
    let (app, op) = setup("").await;
    let url = format!("{}/auth/oidc/corp/backchannel-logout", app.url);
    let post = |body: String| {
        let url = url.clone();
        async move {
            client()
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(post(String::new()).await.status(), 400);
    assert_eq!(post("logout_token=not.a.jwt".into()).await.status(), 400);
    // A genuine token from the provider, but an access token, not a logout token.
    let access = op.client_token("read", "urn:gatehouse").await;
    assert_eq!(post(format!("logout_token={access}")).await.status(), 400);
    assert_eq!(
        client()
            .post(format!("{}/auth/oidc/nope/backchannel-logout", app.url))
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(app.get("/auth/oidc/nope").await.status(), 404);
}
