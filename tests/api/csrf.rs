//! Cross-site request forgery: a state-changing request that a browser
//! marks as coming from another site is refused when it would ride on the
//! session cookie (or sign someone in); tokens and the session header are
//! not at risk and pass.

use crate::helpers::*;
use serde_json::json;

#[actix_rt::test]
async fn cross_site_requests_on_the_cookie_are_refused_and_same_origin_ones_pass() {
    let app = spawn_app().await;
    app.add_user("alice", PW, false).await;
    assert_eq!(app.login("alice", PW).await.status(), 200);
    let host = app.url.trim_start_matches("http://").to_owned();
    let post = |origin: Option<&str>, site: Option<&str>| {
        let mut req = app
            .client
            .post(format!("{}/account/api/sessions/revoke-others", app.url));
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        if let Some(s) = site {
            req = req.header("sec-fetch-site", s);
        }
        req.send()
    };
    for (origin, site) in [
        (Some("http://evil.example"), None),
        (Some("null"), None),
        (Some(format!("http://{host}.evil.example")).as_deref(), None),
        (None, Some("cross-site")),
        (None, Some("same-site")),
    ] {
        let res = post(origin, site).await.unwrap();
        assert_eq!(
            error_code(res).await,
            (403, "cross_site_request".into()),
            "{origin:?} {site:?}"
        );
    }
    let same = format!("http://{host}");
    for (origin, site) in [
        (Some(same.as_str()), None),
        (None, Some("same-origin")),
        (None, None),
    ] {
        let res = post(origin, site).await.unwrap();
        assert!(
            res.status().is_success(),
            "{origin:?} {site:?}: {}",
            res.status()
        );
    }
    // GET is not state-changing.
    let res = app
        .client
        .get(format!("{}/account/api/me", app.url))
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // A sign-in from another site (login CSRF) is refused too.
    let res = client()
        .post(format!("{}/auth/login", app.url))
        .header("origin", "http://evil.example")
        .json(&json!({"username": "alice", "password": PW}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(res).await, (403, "cross_site_request".into()));

    // The session header and bearer tokens cannot be forged by a page.
    let api = app.token(json!({"name": "t"})).await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let token = session_token(&app.login_with(&client(), "alice", PW).await).unwrap();
    let res = reqwest::Client::new()
        .post(format!("{}/account/api/sessions/revoke-others", app.url))
        .header("x-session-token", &token)
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    let res = reqwest::Client::new()
        .post(format!("{}/api/tokens", app.url))
        .bearer_auth(&api)
        .header("origin", "http://evil.example")
        .json(&json!({"name": "from-a-script"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
}
