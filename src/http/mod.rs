//! Route table. Handlers are thin: parse, one message, map the answer.

pub mod account;
pub mod auth;
pub mod github;
pub mod health;
pub mod oidc;
pub mod pages;
pub mod tokens;

use crate::auth::Authenticate;
use crate::error::json_error;
use actix_web::web;

/// JSON limits for the auth, account and admin routes.
pub fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .error_handler(json_error)
}

pub fn routes(cfg: &mut web::ServiceConfig, body_limit: usize) {
    cfg.route("/health", web::get().to(health::health))
        .route("/ready", web::get().to(health::ready))
        .service(
            web::scope("/auth")
                .app_data(json_config(body_limit))
                .app_data(web::PayloadConfig::new(body_limit))
                .wrap(Authenticate)
                .route("/login", web::post().to(auth::login))
                .route("/logout", web::post().to(auth::logout))
                .route("/session", web::get().to(auth::session))
                .route("/providers", web::get().to(auth::providers))
                .route("/github", web::get().to(github::start))
                .route("/github/callback", web::get().to(github::callback))
                .route("/oidc/{name}", web::get().to(oidc::start))
                .route("/oidc/{name}/callback", web::get().to(oidc::callback))
                .route(
                    "/oidc/{name}/backchannel-logout",
                    web::post().to(oidc::backchannel_logout),
                ),
        )
        .service(
            web::scope("/account/api")
                .app_data(json_config(body_limit))
                .app_data(web::PayloadConfig::new(body_limit))
                .wrap(Authenticate)
                .route("/me", web::get().to(account::me))
                .route("/password", web::post().to(account::change_password)),
        )
        .route("/.well-known/jwks.json", web::get().to(tokens::jwks))
        .service(
            web::scope("/api/tokens")
                .app_data(json_config(body_limit))
                .app_data(web::PayloadConfig::new(body_limit))
                .wrap(Authenticate)
                .route("", web::post().to(tokens::create))
                .route("", web::get().to(tokens::list))
                .route("/{id}", web::get().to(tokens::get))
                .route("/{id}", web::delete().to(tokens::revoke))
                .route("/{id}/rotate", web::post().to(tokens::rotate)),
        );
}
