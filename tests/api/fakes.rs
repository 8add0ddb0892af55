//! Stand-ins for third parties we cannot reach in tests (GitHub, a custom
//! token validator, an issuer whose keys we hold), on loopback.

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Starts `app` on a random loopback port; answers its base URL.
pub fn serve<F, T>(factory: F) -> String
where
    F: Fn() -> App<T> + Send + Clone + 'static,
    T: actix_web::dev::ServiceFactory<
            actix_web::dev::ServiceRequest,
            Config = (),
            Response = actix_web::dev::ServiceResponse,
            Error = actix_web::Error,
            InitError = (),
        > + 'static,
{
    let server = HttpServer::new(factory)
        .workers(1)
        .bind(("127.0.0.1", 0))
        .unwrap();
    let url = format!("http://{}", server.addrs()[0]);
    actix_rt::spawn(server.run());
    url
}

/// An issuer whose P-256 key the test holds: it serves `/jwks` and signs what it is told.
pub struct FakeIssuer {
    pub url: String,
    pub kid: String,
    key: EncodingKey,
    pub jwks: Value,
    pub fetches: Arc<AtomicUsize>,
}

impl FakeIssuer {
    pub fn start() -> FakeIssuer {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let point = pair.public_key().as_ref(); // 0x04 || X || Y
        let kid = "fake-ec-1".to_owned();
        let jwks = json!({"keys": [{
            "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        }]});
        let fetches = Arc::new(AtomicUsize::new(0));
        let (body, count) = (jwks.clone(), fetches.clone());
        let url = serve(move || {
            let (body, count) = (body.clone(), count.clone());
            App::new().route(
                "/jwks",
                web::get().to(move || {
                    count.fetch_add(1, Ordering::SeqCst);
                    let body = body.clone();
                    async move { HttpResponse::Ok().json(body) }
                }),
            )
        });
        FakeIssuer {
            url,
            kid,
            key: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwks,
            fetches,
        }
    }

    pub fn claims(&self) -> Value {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        json!({"iss": self.url, "aud": "gatehouse", "sub": "robot-7", "client_id": "robot", "scope": "read", "exp": now + 600, "iat": now, "groups": ["ml"]})
    }

    pub fn sign(&self, claims: &Value) -> String {
        self.sign_as(claims, Some(&self.kid))
    }

    pub fn sign_as(&self, claims: &Value, kid: Option<&str>) -> String {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&h, claims, &self.key).unwrap()
    }
}

/// A fake GitHub API: `/user` and `/user/orgs` for the tokens it knows.
pub fn fake_github() -> (String, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let url = serve(move || {
        let c = c.clone();
        App::new()
            .route(
                "/user",
                web::get().to(move |req: HttpRequest| {
                    c.fetch_add(1, Ordering::SeqCst);
                    let ok = req.headers().get("authorization").and_then(|v| v.to_str().ok()) == Some("Bearer ghp_octocat");
                    async move {
                        if ok {
                            HttpResponse::Ok().json(json!({"login": "octocat", "id": 583231, "name": "The Octocat", "company": "@github"}))
                        } else {
                            HttpResponse::Unauthorized().json(json!({"message": "Bad credentials"}))
                        }
                    }
                }),
            )
            .route(
                "/user/orgs",
                web::get().to(|req: HttpRequest| async move {
                    if req.headers().get("authorization").and_then(|v| v.to_str().ok()) == Some("Bearer ghp_octocat") {
                        HttpResponse::Ok().json(json!([{"login": "acme"}, {"login": "ml-team"}]))
                    } else {
                        HttpResponse::Unauthorized().finish()
                    }
                }),
            )
    });
    (url, calls)
}

/// A custom validator in the llama-stack shape; records every body it gets.
pub fn fake_custom() -> (String, Arc<Mutex<Vec<Value>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let url = serve(move || {
        let s = s.clone();
        App::new().route(
            "/validate",
            web::post().to(move |body: web::Json<Value>| {
                s.lock().unwrap().push(body.0.clone());
                async move {
                    if body["api_key"] == "let-me-in" {
                        HttpResponse::Ok().json(json!({"principal": "svc-bot", "attributes": {"roles": ["ops"], "teams": ["ml"]}, "message": "ok"}))
                    } else {
                        HttpResponse::Unauthorized().json(json!({"message": "unknown key"}))
                    }
                }
            }),
        )
    });
    (format!("{url}/validate"), seen)
}

/// GitHub's OAuth web flow and API, as far as Gatehouse uses them. It
/// checks the client secret, the PKCE verifier against the S256 challenge,
/// single-use codes and the redirect URI, as GitHub does.
#[derive(Clone, Default)]
pub struct FakeGithubOauth {
    pub url: String,
    /// The login `/user` reports (change it to simulate a rename).
    pub login: Arc<Mutex<String>>,
    /// When set, the token endpoint answers 500.
    pub broken: Arc<std::sync::atomic::AtomicBool>,
    /// The `scope` of every authorize request.
    pub scopes: Arc<Mutex<Vec<String>>>,
    codes: Arc<Mutex<std::collections::HashMap<String, (String, String)>>>,
}

pub const GH_CLIENT: &str = "gh-client";
pub const GH_SECRET: &str = "gh-client-secret-value";

impl FakeGithubOauth {
    pub fn start() -> FakeGithubOauth {
        let mut fake = FakeGithubOauth {
            login: Arc::new(Mutex::new("octocat".into())),
            ..Default::default()
        };
        let f = fake.clone();
        fake.url = serve(move || {
            let (a, t, u, o) = (f.clone(), f.clone(), f.clone(), f.clone());
            App::new()
                .route("/login/oauth/authorize", web::get().to(move |q: web::Query<std::collections::HashMap<String, String>>| {
                    let f = a.clone();
                    async move {
                        f.scopes.lock().unwrap().push(q.get("scope").cloned().unwrap_or_default());
                        if q.get("client_id").map(String::as_str) != Some(GH_CLIENT) || q.get("code_challenge_method").map(String::as_str) != Some("S256") {
                            return HttpResponse::BadRequest().finish();
                        }
                        let code = gatehouse_actors::ids::random_id();
                        let redirect = q.get("redirect_uri").cloned().unwrap_or_default();
                        f.codes.lock().unwrap().insert(code.clone(), (q.get("code_challenge").cloned().unwrap_or_default(), redirect.clone()));
                        let state = urlencoding::encode(q.get("state").map(String::as_str).unwrap_or("")).into_owned();
                        HttpResponse::Found().insert_header(("location", format!("{redirect}?code={code}&state={state}"))).finish()
                    }
                }))
                .route("/login/oauth/access_token", web::post().to(move |form: web::Form<std::collections::HashMap<String, String>>| {
                    let f = t.clone();
                    async move {
                        if f.broken.load(Ordering::SeqCst) {
                            return HttpResponse::InternalServerError().body("upstream exploded at 10.1.2.3");
                        }
                        let get = |k: &str| form.get(k).cloned().unwrap_or_default();
                        let Some((challenge, redirect)) = f.codes.lock().unwrap().remove(&get("code")) else {
                            return HttpResponse::Ok().json(json!({"error": "bad_verification_code"}));
                        };
                        let digest = ring::digest::digest(&ring::digest::SHA256, get("code_verifier").as_bytes());
                        let pkce_ok = URL_SAFE_NO_PAD.encode(digest) == challenge;
                        if get("client_id") != GH_CLIENT || get("client_secret") != GH_SECRET || !pkce_ok || get("redirect_uri") != redirect {
                            return HttpResponse::Ok().json(json!({"error": "incorrect_client_credentials"}));
                        }
                        HttpResponse::Ok().json(json!({"access_token": format!("gho_{}", get("code")), "token_type": "bearer", "scope": "read:user"}))
                    }
                }))
                .route("/user", web::get().to(move |req: HttpRequest| {
                    let f = u.clone();
                    async move {
                        if !req.headers().get("authorization").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("Bearer gho_")) {
                            return HttpResponse::Unauthorized().finish();
                        }
                        let login = f.login.lock().unwrap().clone();
                        HttpResponse::Ok().json(json!({"login": login, "id": 583231, "name": "The Octocat", "avatar_url": "https://avatars.example/u/583231"}))
                    }
                }))
                .route("/user/orgs", web::get().to(move |req: HttpRequest| {
                    let _ = &o;
                    async move {
                        if !req.headers().get("authorization").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("Bearer gho_")) {
                            return HttpResponse::Unauthorized().finish();
                        }
                        HttpResponse::Ok().json(json!([{"login": "Acme"}]))
                    }
                }))
        });
        fake
    }

    /// The `[auth.github]` section for a gateway whose callback is
    /// `http://gateway.invalid/…` (the test rewrites the host when it follows it).
    pub fn config(&self, extra: &str) -> String {
        format!(
            "[auth.github]\nclient_id = \"{GH_CLIENT}\"\nclient_secret = \"{GH_SECRET}\"\nredirect_uri = \"http://gateway.invalid/auth/github/callback\"\nauthorize_url = \"{0}/login/oauth/authorize\"\ntoken_url = \"{0}/login/oauth/access_token\"\napi_base_url = \"{0}\"\nallowed_users = \"\"\n{extra}\n",
            self.url
        )
    }
}
