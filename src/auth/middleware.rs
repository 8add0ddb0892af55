//! The middleware that resolves credentials, and the one that requires a
//! scope on a whole scope of routes.

use super::bearer::is_gateway_token;
use super::client::{client_ip, cookie};
use super::principal::{no_users_error, Principal, Scope, Unauthenticated};
use crate::error::ApiError;
use crate::AppState;
use actix_web::body::EitherBody;
use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header;
use actix_web::{web, Error, HttpMessage, ResponseError};
use futures_util::future::LocalBoxFuture;
use gatehouse_actors::TokenHash;
use std::future::{ready, Ready};
use std::rc::Rc;

pub const SESSION_COOKIE: &str = "gatehouse_session";
pub const SESSION_HEADER: &str = "x-session-token";
/// Longer credentials are refused without hashing them.
const MAX_CREDENTIAL_LEN: usize = 8192;

/// When the request reached the gateway (before authentication), so the
/// model API can report its own overhead.
#[derive(Debug, Clone, Copy)]
pub struct RequestStart(pub std::time::Instant);

/// Resolves the request's credentials into a [`Principal`] (or a reason why
/// there is none). Mount it on every scope whose handlers take a `Principal`.
#[derive(Clone, Copy, Default)]
pub struct Authenticate;

impl<S, B> Transform<S, ServiceRequest> for Authenticate
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Transform = AuthenticateService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(AuthenticateService {
            service: Rc::new(service),
            http: Rc::default(),
        }))
    }
}

pub struct AuthenticateService<S> {
    service: Rc<S>,
    /// This worker's client for external validators (`awc` is per thread).
    http: Rc<std::cell::OnceCell<awc::Client>>,
}

/// What the credentials of a request amount to.
enum Resolved {
    Principal(Principal),
    /// A credential was sent and is not valid (fail closed).
    Invalid(Unauthenticated),
    /// A valid credential used where it may not be (403).
    Denied(ApiError),
    /// A bearer token for the `[[auth.bearer]]` validators.
    External(String),
    None,
}

const BAD_SESSION: Unauthenticated = Unauthenticated::Refused {
    code: "invalid_session",
    message: std::borrow::Cow::Borrowed("the session is invalid or has ended; sign in again"),
};

fn bad_token(state: &AppState) -> Unauthenticated {
    Unauthenticated::Refused {
        code: "invalid_api_key",
        message: std::borrow::Cow::Owned(state.validators.message().to_string()),
    }
}

/// The bearer credential: `Authorization: Bearer X` or `x-api-key: X`.
pub fn bearer(req: &ServiceRequest) -> Option<&str> {
    let headers = req.headers();
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        let v = v.to_str().ok()?;
        let (scheme, rest) = v.split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim());
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

fn resolve(req: &ServiceRequest, state: &AppState) -> Resolved {
    let headers = req.headers();
    if headers.contains_key(header::AUTHORIZATION) || headers.contains_key("x-api-key") {
        return match bearer(req) {
            Some(token) => resolve_bearer(req, state, token),
            None => Resolved::Invalid(bad_token(state)),
        };
    }
    let header_token = headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok());
    // A browser sends cookies on cross-site requests too: a state-changing
    // one that is not provably same-origin is refused (CSRF), whether it
    // carries the session cookie or is a sign-in.
    if header_token.is_none() && !req.method().is_safe() && cross_site(req) {
        return Resolved::Denied(ApiError::forbidden(
            "cross_site_request",
            "cross-site request refused: send it from the gateway's own pages or with a token",
        ));
    }
    let token = header_token.or_else(|| cookie(req.request(), SESSION_COOKIE));
    let Some(token) = token else {
        return Resolved::None;
    };
    if token.is_empty() || token.len() > MAX_CREDENTIAL_LEN {
        return Resolved::Invalid(BAD_SESSION);
    }
    let now = state.handles.now();
    let hash = TokenHash::of(token);
    let Some(session) = state.handles.session_view().validate(&hash, now) else {
        return Resolved::Invalid(BAD_SESSION);
    };
    match state.handles.user_view().get(&session.record.user_id) {
        Some(user) if user.locked.is_none() => {
            session.touch(now);
            Resolved::Principal(Principal::from_session(
                user,
                session.record.id.clone(),
                hash,
            ))
        }
        _ => Resolved::Invalid(BAD_SESSION),
    }
}

/// Whether a browser says this request comes from another site: its
/// `Origin` is not this host, or `Sec-Fetch-Site` is `cross-site` or
/// `same-site`. Clients that send neither (curl, SDKs) are not browsers.
pub fn cross_site(req: &ServiceRequest) -> bool {
    let headers = req.headers();
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()));
        let origin_host = origin
            .to_str()
            .ok()
            .and_then(|o| o.split_once("://"))
            .map(|(_, h)| h);
        return match (origin_host, host) {
            (Some(o), Some(h)) => !o.eq_ignore_ascii_case(h),
            _ => true,
        };
    }
    match headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        Some(site) => !matches!(site, "same-origin" | "none"),
        None => false,
    }
}

fn resolve_bearer(req: &ServiceRequest, state: &AppState, token: &str) -> Resolved {
    if token.is_empty() || token.len() > super::bearer::MAX_TOKEN_LEN {
        return Resolved::Invalid(bad_token(state));
    }
    if !is_gateway_token(token) {
        return match state.validators.is_empty() {
            true => Resolved::Invalid(bad_token(state)),
            false => Resolved::External(token.to_owned()),
        };
    }
    let now = state.handles.now();
    let (_claims, live) = match state.gateway_tokens.check(token, &state.handles, now) {
        Ok(ok) => ok,
        Err(why) => {
            tracing::debug!(?why, "gateway token refused");
            return Resolved::Invalid(bad_token(state));
        }
    };
    let user = match state.handles.user_view().get(&live.record.user_id) {
        Some(u) if u.locked.is_none() => u,
        _ => return Resolved::Invalid(bad_token(state)),
    };
    if let Some(nets) = &live.record.allowed_ips {
        let ip = client_ip(req.request(), &state.config.server.trusted_proxies);
        if !ip.is_some_and(|ip| ip_allowed(ip, nets)) {
            tracing::info!(token = %live.record.id, "token used from outside its allowed_ips");
            return Resolved::Denied(ApiError::forbidden(
                "ip_not_allowed",
                "this token may not be used from this address",
            ));
        }
    }
    live.touch(now);
    Resolved::Principal(Principal::from_token(user, &live.record))
}

/// Whether `ip` is in one of the CIDRs (stored validated; a bad one matches nothing).
pub fn ip_allowed(ip: std::net::IpAddr, nets: &[String]) -> bool {
    let ip = match ip {
        std::net::IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(std::net::IpAddr::V4)
            .unwrap_or(std::net::IpAddr::V6(v6)),
        v4 => v4,
    };
    nets.iter()
        .any(|n| n.parse::<ipnet::IpNet>().is_ok_and(|net| net.contains(&ip)))
}

/// `[[access.rules]]` scope grants and denials. A gateway token can only
/// lose scopes this way: it never holds more than it was issued with.
fn apply_policy(state: &AppState, mut p: Principal) -> Principal {
    let policy = &state.config.access;
    if !policy.is_empty() {
        let scopes = policy.scopes_for(&p);
        p.scopes = match p.via {
            super::Via::Token { .. } => scopes.and(p.scopes),
            _ => scopes,
        };
    }
    p
}

/// Authentication is on as soon as one user exists or any other method is configured.
pub fn auth_enabled(state: &AppState) -> bool {
    !state.handles.user_view().is_empty() || state.config.has_external_auth()
}

impl<S, B> Service<ServiceRequest> for AuthenticateService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        req.extensions_mut()
            .insert(RequestStart(std::time::Instant::now()));
        let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
            tracing::error!("Authenticate is mounted without gatehouse's AppState in app_data");
            let res = req
                .error_response(ApiError::internal())
                .map_into_right_body();
            return Box::pin(async move { Ok(res) });
        };
        match resolve(&req, &state) {
            Resolved::Principal(p) => {
                req.extensions_mut().insert(apply_policy(&state, p));
            }
            Resolved::Invalid(why) => {
                req.extensions_mut().insert(why);
            }
            Resolved::Denied(e) => {
                let res = req.error_response(e).map_into_right_body();
                return Box::pin(async move { Ok(res) });
            }
            Resolved::External(token) => {
                let svc = self.service.clone();
                let http = self.http.clone();
                return Box::pin(async move {
                    let client = http.get_or_init(|| state.validators.http_client());
                    let now = state.handles.now();
                    match state
                        .validators
                        .validate(client, &token, req.request(), now)
                        .await
                    {
                        Some(p) => {
                            req.extensions_mut()
                                .insert(apply_policy(&state, (*p).clone()));
                        }
                        None => {
                            req.extensions_mut().insert(bad_token(&state));
                        }
                    }
                    Ok(svc.call(req).await?.map_into_left_body())
                });
            }
            Resolved::None if auth_enabled(&state) => {}
            Resolved::None if state.config.auth.allow_anonymous_local => {
                req.extensions_mut().insert(Principal::local_admin());
            }
            Resolved::None => {
                req.extensions_mut().insert(Unauthenticated::NoUsersYet);
                let res = req.error_response(no_users_error()).map_into_right_body();
                return Box::pin(async move { Ok(res) });
            }
        }
        let svc = self.service.clone();
        Box::pin(async move { Ok(svc.call(req).await?.map_into_left_body()) })
    }
}

/// Refuses (401 without a principal, 403 without the scope) before any
/// handler of the wrapped scope runs. Mount it inside [`Authenticate`].
#[derive(Clone, Copy)]
pub struct RequireScope(pub Scope);

impl<S, B> Transform<S, ServiceRequest> for RequireScope
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Transform = RequireScopeService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(RequireScopeService {
            service: Rc::new(service),
            scope: self.0,
        }))
    }
}

pub struct RequireScopeService<S> {
    service: Rc<S>,
    scope: Scope,
}

impl<S, B> Service<ServiceRequest> for RequireScopeService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let verdict = match req.extensions().get::<Principal>() {
            Some(p) => p.require(self.scope),
            None => Err(req
                .extensions()
                .get::<Unauthenticated>()
                .map_or_else(ApiError::unauthenticated, Unauthenticated::error)),
        };
        if let Err(e) = verdict {
            let res = ServiceResponse::new(req.request().clone(), e.error_response());
            return Box::pin(async move { Ok(res.map_into_right_body()) });
        }
        let svc = self.service.clone();
        Box::pin(async move { Ok(svc.call(req).await?.map_into_left_body()) })
    }
}
