//! The web UI: one HTML shell for `/` (sign-in, then the chat playground),
//! `/account`, `/tasks`, `/tokens` and `/admin`, and its static files under
//! `/static/…`, all built into the binary (no build step). Open to everyone,
//! with a strict Content-Security-Policy: the pages load their scripts and
//! styles from here only, and every API call they make is authenticated.

use actix_web::http::header;
use actix_web::{web, HttpResponse};

const INDEX: &str = include_str!("../../web/index.html");

/// The pages served by the shell; the client-side router picks the view.
const PAGES: &[&str] = &["/", "/account", "/tasks", "/tokens", "/admin"];

const JS: &str = "text/javascript; charset=utf-8";

/// `/static/{name}`: content type and body.
const STATIC: &[(&str, &str, &str)] = &[
    ("app.js", JS, include_str!("../../web/app.js")),
    ("core.js", JS, include_str!("../../web/core.js")),
    ("signin.js", JS, include_str!("../../web/signin.js")),
    ("chat.js", JS, include_str!("../../web/chat.js")),
    ("account.js", JS, include_str!("../../web/account.js")),
    ("tasks.js", JS, include_str!("../../web/tasks.js")),
    ("tokens.js", JS, include_str!("../../web/tokens.js")),
    ("admin.js", JS, include_str!("../../web/admin.js")),
    ("usage.js", JS, include_str!("../../web/usage.js")),
    ("providers.js", JS, include_str!("../../web/providers.js")),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../../web/app.css"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_str!("../../web/favicon.svg"),
    ),
];

pub(crate) const CSP: &str =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' https: data:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

fn page(content_type: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(body)
}

/// Every path this module serves with its content type: the pages, then `/static/…`.
pub fn served() -> impl Iterator<Item = (String, &'static str)> {
    PAGES
        .iter()
        .map(|p| ((*p).to_owned(), "text/html; charset=utf-8"))
        .chain(
            STATIC
                .iter()
                .map(|(name, ct, _)| (format!("/static/{name}"), *ct)),
        )
}

/// Mounts the pages (`/`, `/account`, `/tasks`, `/tokens`, `/admin`) and `/static/…`.
/// Separate from [`crate::configure`] so that a product embedding Gatehouse
/// keeps its own `/`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    for path in PAGES {
        cfg.route(
            path,
            web::get().to(|| async { page("text/html; charset=utf-8", INDEX) }),
        );
    }
    for &(name, content_type, body) in STATIC {
        cfg.route(
            &format!("/static/{name}"),
            web::get().to(move || async move { page(content_type, body) }),
        );
    }
}
