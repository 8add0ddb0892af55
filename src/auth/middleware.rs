//! The middleware that resolves credentials, and the one that requires a
//! scope on a whole scope of routes.

use super::client::cookie;
use super::principal::{no_users_error, Principal, Scope, Unauthenticated};
use crate::error::ApiError;
use crate::AppState;
use actix_web::body::EitherBody;
use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::{web, Error, HttpMessage, ResponseError};
use futures_util::future::LocalBoxFuture;
use gatehouse_actors::TokenHash;
use std::future::{ready, Ready};
use std::rc::Rc;

pub const SESSION_COOKIE: &str = "gatehouse_session";
pub const SESSION_HEADER: &str = "x-session-token";
/// Longer credentials are refused without hashing them.
const MAX_CREDENTIAL_LEN: usize = 8192;

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
        ready(Ok(AuthenticateService { service: Rc::new(service) }))
    }
}

pub struct AuthenticateService<S> {
    service: Rc<S>,
}

/// What the credentials of a request amount to.
enum Resolved {
    Principal(Principal),
    /// A credential was sent and is not valid (fail closed).
    Invalid,
    None,
}

fn resolve(req: &ServiceRequest, state: &AppState) -> Resolved {
    let headers = req.headers();
    let token = headers
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .or_else(|| cookie(req.request(), SESSION_COOKIE));
    let Some(token) = token else { return Resolved::None };
    if token.is_empty() || token.len() > MAX_CREDENTIAL_LEN {
        return Resolved::Invalid;
    }
    let now = state.handles.now();
    let hash = TokenHash::of(token);
    let Some(session) = state.handles.session_view().validate(&hash, now) else {
        return Resolved::Invalid;
    };
    match state.handles.user_view().get(&session.record.user_id) {
        Some(user) if user.locked.is_none() => {
            session.touch(now);
            Resolved::Principal(Principal::from_session(user, session.record.id.clone(), hash))
        }
        _ => Resolved::Invalid,
    }
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
        let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
            tracing::error!("Authenticate is mounted without gatehouse's AppState in app_data");
            let res = req.error_response(ApiError::internal()).map_into_right_body();
            return Box::pin(async move { Ok(res) });
        };
        match resolve(&req, &state) {
            Resolved::Principal(p) => {
                req.extensions_mut().insert(p);
            }
            Resolved::Invalid => {}
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
        ready(Ok(RequireScopeService { service: Rc::new(service), scope: self.0 }))
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
            None => Err(ApiError::unauthenticated()),
        };
        if let Err(e) = verdict {
            let res = ServiceResponse::new(req.request().clone(), e.error_response());
            return Box::pin(async move { Ok(res.map_into_right_body()) });
        }
        let svc = self.service.clone();
        Box::pin(async move { Ok(svc.call(req).await?.map_into_left_body()) })
    }
}
