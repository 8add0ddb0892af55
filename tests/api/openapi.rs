//! `GET /openapi.json`: the OpenAPI 3.1 document generated from the handlers
//! covers every route of API.md, with its security, and names no route that
//! the app does not serve.

use crate::helpers::*;
use serde_json::Value;

/// Every route of API.md (and the admin routes the README adds), as
/// `(method, path template)`.
const ROUTES: &[(&str, &str)] = &[
    ("get", "/health"),
    ("get", "/ready"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("post", "/auth/login"),
    ("post", "/auth/logout"),
    ("get", "/auth/session"),
    ("get", "/auth/providers"),
    ("get", "/auth/github"),
    ("get", "/auth/github/callback"),
    ("get", "/auth/oidc/{name}"),
    ("get", "/auth/oidc/{name}/callback"),
    ("post", "/auth/oidc/{name}/backchannel-logout"),
    ("post", "/api/tokens"),
    ("get", "/api/tokens"),
    ("get", "/api/tokens/{id}"),
    ("delete", "/api/tokens/{id}"),
    ("post", "/api/tokens/{id}/rotate"),
    ("get", "/.well-known/jwks.json"),
    ("get", "/v1/models"),
    ("post", "/v1/chat/completions"),
    ("post", "/v1/embeddings"),
    ("post", "/v1/messages"),
    ("post", "/v1/tasks"),
    ("get", "/v1/tasks"),
    ("get", "/v1/tasks/{id}"),
    ("post", "/v1/tasks/{id}/approve"),
    ("post", "/v1/tasks/{id}/cancel"),
    ("post", "/v1/tasks/{id}/retry"),
    ("get", "/v1/tasks/{id}/events"),
    ("post", "/v1/tasks/{id}/wait"),
    ("get", "/account/api/me"),
    ("get", "/account/api/sessions"),
    ("delete", "/account/api/sessions/{id}"),
    ("post", "/account/api/sessions/revoke-others"),
    ("post", "/account/api/password"),
    ("put", "/account/api/avatar"),
    ("get", "/avatars/{user_id}"),
    ("get", "/admin/api/users"),
    ("post", "/admin/api/users"),
    ("put", "/admin/api/users/{name}/password"),
    ("post", "/admin/api/users/{name}/lock"),
    ("post", "/admin/api/users/{name}/unlock"),
    ("delete", "/admin/api/users/{name}"),
    ("get", "/admin/api/sessions"),
    ("delete", "/admin/api/sessions/{id}"),
    ("post", "/admin/api/sessions/revoke-user"),
    ("get", "/admin/api/sessions/stats"),
    ("get", "/admin/api/tokens"),
    ("get", "/admin/api/tokens/stats"),
    ("get", "/admin/api/usage"),
    ("get", "/admin/api/audit"),
    ("get", "/admin/api/config"),
    ("get", "/admin/api/providers"),
    ("get", "/admin/api/providers/{name}"),
    ("put", "/admin/api/providers/{name}"),
    ("delete", "/admin/api/providers/{name}"),
    ("get", "/admin/api/providers/{name}/models"),
    ("put", "/admin/api/providers/{name}/profiles/{profile}"),
    ("delete", "/admin/api/providers/{name}/profiles/{profile}"),
    ("put", "/admin/api/models/aliases/{alias}"),
    ("put", "/admin/api/models/default"),
    ("get", "/admin/api/limits"),
    ("get", "/admin/api/limits/{kind}/{id}"),
    ("put", "/admin/api/limits/{kind}/{id}"),
    ("delete", "/admin/api/limits/{kind}/{id}"),
    ("get", "/"),
    ("get", "/account"),
    ("get", "/tokens"),
    ("get", "/admin"),
];

const SCHEMES: [&str; 4] = ["bearer", "api_key", "session_cookie", "session_token"];

async fn document(app: &TestApp) -> Value {
    let res = app.get("/openapi.json").await;
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    res.json().await.unwrap()
}

fn operation<'a>(doc: &'a Value, method: &str, path: &str) -> &'a Value {
    let op = &doc["paths"][path][method];
    assert!(
        op.is_object(),
        "{} {path} is not documented",
        method.to_uppercase()
    );
    op
}

/// The names of the schemes an operation accepts (`""` for "none needed").
fn schemes_of(op: &Value) -> Vec<String> {
    op["security"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|req| {
            let names: Vec<String> = req.as_object().unwrap().keys().cloned().collect();
            if names.is_empty() {
                vec![String::new()]
            } else {
                names
            }
        })
        .collect()
}

#[actix_web::test]
async fn the_document_is_openapi_3_1_served_without_a_credential() {
    let app = spawn_app().await;
    // Sign-in is on: the document stays open, like /health.
    app.add_user("alice", PW, false).await;
    let doc = document(&app).await;
    let version = doc["openapi"].as_str().unwrap();
    assert!(version.starts_with("3.1"), "{version}");
    assert_eq!(doc["info"]["title"], "Gatehouse");

    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["type"], "http");
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    for (name, place, key) in [
        ("api_key", "header", "x-api-key"),
        ("session_cookie", "cookie", "gatehouse_session"),
        ("session_token", "header", "X-Session-Token"),
    ] {
        assert_eq!(schemes[name]["type"], "apiKey", "{name}");
        assert_eq!(schemes[name]["in"], place, "{name}");
        assert_eq!(schemes[name]["name"], key, "{name}");
    }

    // The shared error shape.
    let error = &doc["components"]["schemas"]["Error"];
    assert_eq!(error["required"], serde_json::json!(["error"]));
    let detail = &doc["components"]["schemas"]["ErrorDetail"];
    for field in ["message", "type", "code"] {
        assert_eq!(detail["properties"][field]["type"], "string", "{field}");
        assert!(detail["required"]
            .as_array()
            .unwrap()
            .contains(&field.into()));
    }
}

#[actix_web::test]
async fn every_route_of_the_contract_is_documented() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    for (method, path) in ROUTES {
        let op = operation(&doc, method, path);
        assert!(
            op["responses"].as_object().is_some_and(|r| !r.is_empty()),
            "{method} {path} has no responses"
        );
    }
}

#[actix_web::test]
async fn routes_name_their_credentials_and_open_routes_none() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    for path in [
        "/health",
        "/ready",
        "/openapi.json",
        "/auth/providers",
        "/.well-known/jwks.json",
        "/avatars/{user_id}",
    ] {
        let op = operation(&doc, "get", path);
        assert!(schemes_of(op).is_empty(), "{path} asks for a credential");
    }
    // Outside the authenticated scopes, nothing answers 401 either.
    for path in [
        "/health",
        "/openapi.json",
        "/.well-known/jwks.json",
        "/avatars/{user_id}",
    ] {
        let op = operation(&doc, "get", path);
        assert!(op["responses"].get("401").is_none(), "{path} documents 401");
    }
    for (method, path) in [
        ("get", "/admin/api/users"),
        ("post", "/api/tokens"),
        ("post", "/v1/chat/completions"),
        ("get", "/account/api/me"),
    ] {
        let op = operation(&doc, method, path);
        let schemes = schemes_of(op);
        for s in SCHEMES {
            assert!(schemes.contains(&s.to_owned()), "{method} {path}: {s}");
        }
        assert!(
            !schemes.contains(&String::new()),
            "{method} {path} is documented as open"
        );
        assert!(op["responses"]["401"].is_object(), "{method} {path}: 401");
        assert!(op["responses"]["403"].is_object(), "{method} {path}: 403");
    }
    // A session-only route, and one where a credential is optional.
    let session = schemes_of(operation(&doc, "get", "/auth/session"));
    assert_eq!(session, ["session_cookie", "session_token"]);
    assert!(schemes_of(operation(&doc, "post", "/auth/logout")).contains(&String::new()));
}

/// Each documented operation is served: without a credential, none is the
/// app's "no such route" `404` or a `405`.
#[actix_web::test]
async fn every_documented_route_is_served() {
    let app = spawn_app().await;
    app.add_user("alice", PW, false).await;
    let doc = document(&app).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let concrete = path.replace('{', "x").replace('}', "");
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let res = client
                .request(method.clone(), format!("{}{concrete}", app.url))
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            assert_ne!(status, 405, "{method} {path}");
            if status == 404 {
                let body: Value = res.json().await.unwrap_or_default();
                assert_ne!(
                    body["error"]["message"], "no such route",
                    "{method} {path} is documented but not served"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= ROUTES.len(), "{checked} operations");
}

// --- what the schemathesis pass found (tests/schemathesis/run.sh) ----------

/// A query parameter that does not parse (`all=maybe`, `limit=-1`) was
/// answered by actix in plain text; it is a `400` in the API's shape.
#[actix_web::test]
async fn a_query_string_that_does_not_parse_is_an_openai_shaped_400() {
    let app = spawn_app().await;
    app.add_user("admin", PW, true).await;
    assert_eq!(app.login("admin", PW).await.status(), 200);
    for path in [
        "/v1/tasks?all=maybe",
        "/admin/api/audit?limit=-1",
        "/admin/api/usage?bucket=soon",
    ] {
        let res = app.get(path).await;
        assert!(
            res.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json"),
            "{path}"
        );
        let (status, code) = error_code(res).await;
        assert_eq!((status, code.as_str()), (400, "invalid_request"), "{path}");
    }
}

/// A budget period past what a time can show made the limits view answer
/// `"resets_at": ""`, which is not a date-time: it is refused (`422`), and
/// the longest one allowed shows a real time.
#[actix_web::test]
async fn a_budget_period_is_at_most_ten_years_so_that_its_window_end_is_a_time() {
    let app = spawn_app().await;
    app.add_user("admin", PW, true).await;
    assert_eq!(app.login("admin", PW).await.status(), 200);
    let put = |period: Value| {
        app.client
            .put(format!("{}/admin/api/limits/users/admin", app.url))
            .json(&serde_json::json!({"budget": 5, "budget_period": period}))
            .send()
    };
    for too_long in [
        serde_json::json!(18_446_744_073_709_551_615u64),
        serde_json::json!("100000000d"),
        serde_json::json!("3651d"),
    ] {
        let (status, code) = error_code(put(too_long.clone()).await.unwrap()).await;
        assert_eq!(
            (status, code.as_str()),
            (422, "invalid_value"),
            "{too_long}"
        );
    }
    let res = put("3650d".into()).await.unwrap();
    assert_eq!(res.status(), 200);
    let view: Value = res.json().await.unwrap();
    let resets = view["current"]["spend"]["resets_at"].as_str().unwrap();
    assert!(
        time::OffsetDateTime::parse(resets, &time::format_description::well_known::Rfc3339).is_ok(),
        "{resets:?}"
    );
    // And the config file may not set one either.
    let err = config_from_toml("[limits.user]\nbudget_period = \"3651d\"").unwrap_err();
    assert!(err.to_string().contains("budget_period"), "{err}");
}
