//! `GET /metrics`: Prometheus text, to whom `[server] metrics` allows.

use crate::auth::{Authenticate, Principal, Scope};
use crate::config::MetricsAccess;
use crate::error::{ApiError, ErrorBody};
use crate::AppState;
use actix_web::http::header::{self, HeaderMap};
use actix_web::{guard, web, HttpResponse};
use std::net::IpAddr;

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Headers a reverse proxy adds: a request carrying one came through a
/// proxy, so a loopback peer says nothing about the real client.
const FORWARDED: [&str; 3] = ["forwarded", "x-forwarded-for", "x-real-ip"];

/// `/metrics` twice: open to a local scrape in `loopback` mode (before any
/// credential is looked at, so it works before the first user too), else
/// behind [`Authenticate`] for admins.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/metrics")
            .guard(guard::fn_guard(local_scrape))
            .route(web::get().to(open_metrics)),
    )
    .service(
        web::resource("/metrics")
            .wrap(Authenticate)
            .route(web::get().to(metrics)),
    );
}

fn local_scrape(ctx: &guard::GuardContext<'_>) -> bool {
    let loopback_mode = ctx
        .app_data::<web::Data<AppState>>()
        .is_some_and(|s| s.config.server.metrics == MetricsAccess::Loopback);
    let head = ctx.head();
    loopback_mode && local_unproxied(head.peer_addr.map(|a| a.ip()), &head.headers)
}

/// A scrape with credentials (or from elsewhere): admins only. Open to a
/// local scrape when `[server] metrics = "loopback"`.
#[utoipa::path(get, path = "/metrics", tag = "health",
    security((), ("bearer" = []), ("api_key" = []), ("session_cookie" = []), ("session_token" = [])),
    responses(
        (status = 200, description = "Prometheus text exposition", content_type = "text/plain; version=0.0.4; charset=utf-8", body = String),
        (status = 404, description = "Metrics are off (`[server] metrics = \"off\"`)", body = ErrorBody),
    ))]
pub async fn metrics(
    principal: Result<Principal, ApiError>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if state.config.server.metrics == MetricsAccess::Off {
        return Err(ApiError::not_found("no such route"));
    }
    principal?.require(Scope::Admin)?;
    Ok(exposition(&state))
}

/// A local scrape, or the open listener of `[server] metrics_port`: no
/// credentials asked.
pub async fn open_metrics(state: web::Data<AppState>) -> HttpResponse {
    exposition(&state)
}

/// The `[server] metrics_port` listener: `/metrics` only, no credentials.
/// Anyone who reaches the port reads it: firewall it, or bind a private host.
pub fn open_listener(
    data: web::Data<AppState>,
    host: &str,
    port: u16,
) -> std::io::Result<actix_web::dev::Server> {
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(data.clone())
            .route("/metrics", web::get().to(open_metrics))
            .default_service(web::to(crate::error::not_found))
    })
    .workers(1)
    .shutdown_timeout(1)
    .bind((host, port))?;
    for a in server.addrs() {
        tracing::info!("metrics on http://{a}/metrics");
    }
    Ok(server.run())
}

fn exposition(state: &AppState) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(CONTENT_TYPE)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(state.metrics.render(&state.handles))
}

/// The client is this machine: a loopback peer, and no proxy headers (a
/// reverse proxy on this machine would otherwise make every client local).
fn local_unproxied(peer: Option<IpAddr>, headers: &HeaderMap) -> bool {
    let loopback = match peer {
        Some(IpAddr::V6(v6)) => v6
            .to_ipv4_mapped()
            .map_or(v6.is_loopback(), |v4| v4.is_loopback()),
        Some(ip) => ip.is_loopback(),
        None => false,
    };
    loopback && !FORWARDED.iter().any(|h| headers.contains_key(*h))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;

    #[test]
    fn only_a_loopback_peer_without_proxy_headers_is_local() {
        let none = HeaderMap::new();
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert!(local_unproxied(ip("127.0.0.1"), &none));
        assert!(local_unproxied(ip("::1"), &none));
        assert!(local_unproxied(ip("::ffff:127.0.0.1"), &none));
        assert!(!local_unproxied(ip("10.1.2.3"), &none));
        assert!(!local_unproxied(ip("::ffff:10.1.2.3"), &none));
        assert!(!local_unproxied(None, &none));
        for h in FORWARDED {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::HeaderName::from_static(h),
                HeaderValue::from_static("127.0.0.1"),
            );
            assert!(!local_unproxied(ip("127.0.0.1"), &headers), "{h}");
        }
    }
}
