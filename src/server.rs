//! `gatehouse serve`: the HTTP server, the admin socket, and the start-up checks.

use crate::config::Config;
use crate::error::not_found;
use crate::{admin_socket, configure_with_limit, Gatehouse};
use actix_web::dev::Service;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{web, App, HttpMessage, HttpServer};
use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use tracing_actix_web::{DefaultRootSpanBuilder, RequestId, RootSpanBuilder, TracingLogger};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Start(#[from] crate::StartError),
    #[error("refusing to listen on {0}: no authentication is configured. Add a user first (`gatehouse users add admin`) or listen on 127.0.0.1")]
    OpenOnNetwork(String),
    #[error("admin socket: {0}")]
    Socket(std::io::Error),
    #[error("http server on {addr}: {source}")]
    Http {
        addr: String,
        source: std::io::Error,
    },
}

/// `x-request-id`: the request's id, formatted without `fmt`.
fn request_id_value(id: &RequestId) -> HeaderValue {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let text = id.hyphenated().encode_lower(&mut buf);
    HeaderValue::from_str(text).expect("a hyphenated uuid is a valid header value")
}

/// The request span of `tracing-actix-web`, built only when something will
/// record it. Its fields (connection info, user agent, a formatted name)
/// are computed before the span is, and cost more than all the rest of the
/// middleware; with `info` spans off (`GATEHOUSE_LOG=warn`) nothing would
/// see them. The request id is made (and sent back) either way.
pub struct RequestSpan;

impl RootSpanBuilder for RequestSpan {
    fn on_request_start(request: &actix_web::dev::ServiceRequest) -> tracing::Span {
        if !tracing::span_enabled!(tracing::Level::INFO) {
            return tracing::Span::none();
        }
        tracing_actix_web::root_span!(request)
    }

    fn on_request_end<B: actix_web::body::MessageBody>(
        span: tracing::Span,
        outcome: &Result<actix_web::dev::ServiceResponse<B>, actix_web::Error>,
    ) {
        DefaultRootSpanBuilder::on_request_end(span, outcome);
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Runs until the process is stopped. Prints `listening on http://ADDR` once bound.
pub async fn serve(config: Config, home: &Path) -> Result<(), ServeError> {
    let gh = Gatehouse::builder(config).home(home).build().await?;
    let cfg = gh.config().clone();
    let host = cfg.server.host.clone();
    if gh.handles().user_view().is_empty() && !cfg.has_external_auth() && !is_loopback(&host) {
        return Err(ServeError::OpenOnNetwork(host));
    }
    if gh.handles().user_view().is_empty() && !cfg.has_external_auth() {
        if cfg.auth.allow_anonymous_local {
            tracing::warn!(
                "no users: running as a single local admin (auth.allow_anonymous_local)"
            );
        } else {
            tracing::warn!("no users yet: add one with `gatehouse users add admin`");
        }
    }
    admin_socket::serve(gh.data(), home).map_err(ServeError::Socket)?;
    let data = gh.data();
    let limit = cfg.server.max_body_bytes;
    let edge = crate::edge::EdgeGuard::new(&cfg.server);
    let addr = format!("{}:{}", host, cfg.server.port);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .wrap_fn(|req, srv| {
                let id = req.extensions().get::<RequestId>().map(request_id_value);
                let fut = srv.call(req);
                async move {
                    let mut res = fut.await?;
                    crate::metrics::count_response(&res);
                    // Inside the request's span, so the line carries its id.
                    tracing::debug!(status = res.status().as_u16(), "request done");
                    if let Some(v) = id {
                        res.headers_mut()
                            .insert(HeaderName::from_static("x-request-id"), v);
                    }
                    Ok(res)
                }
            })
            .wrap(edge)
            .wrap(TracingLogger::<RequestSpan>::new())
            .configure(|c| configure_with_limit(c, limit))
            .configure(crate::http::pages::configure)
            .default_service(web::to(not_found))
    })
    // SIGTERM/SIGINT: stop accepting, let requests and streams in flight
    // finish for up to `shutdown_timeout`, then write the usage still held.
    .shutdown_timeout(cfg.server.shutdown_timeout.as_secs())
    .client_request_timeout(cfg.server.client_header_timeout)
    .client_disconnect_timeout(std::time::Duration::from_secs(5))
    .bind((host.as_str(), cfg.server.port))
    .map_err(|source| ServeError::Http {
        addr: addr.clone(),
        source,
    })?;
    for a in server.addrs() {
        println!("listening on http://{a}");
    }
    let server = server.run();
    let metrics = match cfg.server.metrics_port {
        0 => None,
        port => {
            let m =
                crate::http::metrics::open_listener(gh.data(), &host, port).map_err(|source| {
                    ServeError::Http {
                        addr: format!("{host}:{port}"),
                        source,
                    }
                })?;
            let handle = m.handle();
            actix_rt::spawn(m);
            Some(handle)
        }
    };
    let _ = std::io::stdout().flush();
    let result = server.await;
    tracing::info!("stopped accepting; requests in flight are done");
    if let Some(m) = metrics {
        m.stop(true).await;
    }
    // Usage still in memory goes to the store before the process ends.
    if let Err(e) = gh
        .handles()
        .usage()
        .send(gatehouse_actors::gateway::usage::FlushUsage)
        .await
    {
        tracing::warn!(error = %e, "could not write the last usage records");
    }
    let _ = std::fs::remove_file(admin_socket::socket_path(home));
    result.map_err(|source| ServeError::Http { addr, source })
}
