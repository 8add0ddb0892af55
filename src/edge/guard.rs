//! The edge middleware: a request head larger than `max_header_bytes` is
//! answered `431` at once, and a request body that has not arrived whole
//! within `client_body_timeout` ends with `408` and a closed connection
//! (slow-loris on the body; the head's own timeout is actix's
//! `client_request_timeout`, set from `client_header_timeout`).

use crate::error::ApiError;
use actix_web::body::EitherBody;
use actix_web::dev::{forward_ready, Payload, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::error::PayloadError;
use actix_web::http::{header, ConnectionType, StatusCode};
use actix_web::web::Bytes;
use actix_web::{Error, HttpMessage, ResponseError};
use futures_util::future::LocalBoxFuture;
use futures_util::Stream;
use std::cell::Cell;
use std::future::{ready, Future, Ready};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Sleep;

/// Mount it on the whole app: `App::new().wrap(EdgeGuard::new(&config.server))`.
#[derive(Clone, Copy)]
pub struct EdgeGuard {
    max_header_bytes: usize,
    body_timeout: Duration,
}

impl EdgeGuard {
    pub fn new(server: &crate::config::ServerConfig) -> Self {
        EdgeGuard {
            max_header_bytes: server.max_header_bytes,
            body_timeout: server.client_body_timeout,
        }
    }
}

impl<S, B> Transform<S, ServiceRequest> for EdgeGuard
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Transform = EdgeGuardService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(EdgeGuardService {
            service,
            config: *self,
        }))
    }
}

pub struct EdgeGuardService<S> {
    service: S,
    config: EdgeGuard,
}

/// The request line and headers as they came, roughly (`NAME: VALUE\r\n`).
fn head_size(req: &ServiceRequest) -> usize {
    let line = req.method().as_str().len()
        + req.uri().path_and_query().map_or(1, |p| p.as_str().len())
        + 12;
    req.headers()
        .iter()
        .fold(line, |n, (k, v)| n + k.as_str().len() + v.len() + 4)
}

fn has_body(req: &ServiceRequest) -> bool {
    let h = req.headers();
    h.contains_key(header::TRANSFER_ENCODING)
        || h.get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0")
}

fn closing<B>(mut res: ServiceResponse<B>) -> ServiceResponse<B> {
    res.response_mut()
        .head_mut()
        .set_connection_type(ConnectionType::Close);
    res
}

impl<S, B> Service<ServiceRequest> for EdgeGuardService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, mut req: ServiceRequest) -> Self::Future {
        let max = self.config.max_header_bytes;
        if head_size(&req) > max {
            let err = ApiError::new(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "invalid_request_error",
                "headers_too_large",
                format!("the request line and headers are larger than {max} bytes"),
            );
            let res = req.into_response(err.error_response());
            return Box::pin(ready(Ok(closing(res).map_into_right_body())));
        }
        let expired = Rc::new(Cell::new(false));
        if has_body(&req) {
            let inner = req.take_payload();
            let deadline = BodyDeadline {
                inner,
                deadline: tokio::time::Instant::now() + self.config.body_timeout,
                sleep: None,
                expired: expired.clone(),
            };
            let boxed: Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> =
                Box::pin(deadline);
            req.set_payload(Payload::from(boxed));
        }
        let fut = self.service.call(req);
        Box::pin(async move {
            let res = fut.await?;
            if !expired.get() {
                return Ok(res.map_into_left_body());
            }
            // Whatever the handler made of the cut body, the client sees 408.
            let err = ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "invalid_request_error",
                "request_timeout",
                "the request body did not arrive in time",
            );
            let res = res.into_response(err.error_response());
            Ok(closing(res).map_into_right_body())
        })
    }
}

/// The request body, cut off with an error once the deadline passes.
struct BodyDeadline {
    inner: Payload,
    deadline: tokio::time::Instant,
    /// Armed the first time the body is not all there yet (a body that came
    /// with its headers never needs a timer).
    sleep: Option<Pin<Box<Sleep>>>,
    expired: Rc<Cell<bool>>,
}

impl Stream for BodyDeadline {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.expired.get() {
            return Poll::Ready(None);
        }
        if let Poll::Ready(item) = Pin::new(&mut self.inner).poll_next(cx) {
            return Poll::Ready(item);
        }
        let deadline = self.deadline;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.as_mut().poll(cx).is_ready() {
            self.expired.set(true);
            let e = std::io::Error::new(std::io::ErrorKind::TimedOut, "request body timeout");
            return Poll::Ready(Some(Err(PayloadError::Io(e))));
        }
        Poll::Pending
    }
}
