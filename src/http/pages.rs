//! The sign-in page: static files built into the binary, no build step.
//! Open to everyone, with a strict Content-Security-Policy.

use actix_web::http::header;
use actix_web::{web, HttpResponse};

const INDEX: &str = include_str!("../../web/index.html");
const APP_JS: &str = include_str!("../../web/app.js");
const APP_CSS: &str = include_str!("../../web/app.css");
pub(crate) const CSP: &str =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' https: data:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

fn page(content_type: &str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(body)
}

/// Mounts `/` and `/static/…`. Separate from [`crate::configure`] so that a
/// product embedding Gatehouse keeps its own `/`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/",
        web::get().to(|| async { page("text/html; charset=utf-8", INDEX) }),
    )
    .route(
        "/static/app.js",
        web::get().to(|| async { page("text/javascript; charset=utf-8", APP_JS) }),
    )
    .route(
        "/static/app.css",
        web::get().to(|| async { page("text/css; charset=utf-8", APP_CSS) }),
    );
}
