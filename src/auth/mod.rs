//! Authentication: credentials are resolved once per request by
//! [`Authenticate`] and the [`Principal`] goes into the request extensions;
//! handlers take it with the extractor. Fail closed: a request without a
//! valid credential has no principal, whatever it sent.

pub mod bearer;
pub mod cache;
mod client;
pub mod external;
pub(crate) mod middleware;
pub mod oidc;
pub(crate) mod principal;

pub use client::{client_ip, cookie, find_cookie, forwarded_client};
pub use middleware::{Authenticate, RequestStart, RequireScope, SESSION_COOKIE, SESSION_HEADER};
pub use principal::{no_users_error, Principal, Scope, Scopes, Unauthenticated, Via};
