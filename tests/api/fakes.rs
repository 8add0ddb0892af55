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
