//! Sign in with any OpenID Connect provider: authorization code with PKCE,
//! `state` and `nonce`; the ID token is checked by the provider's JWKS,
//! `iss`, `aud`, `exp` and `nonce`, then `allowed_domains` and
//! `allowed_groups`. Back-channel logout (OpenID Connect Back-Channel Logout
//! 1.0) ends the sessions of a provider session or user.

use crate::accounts::{audit, Actor};
use crate::auth::client_ip;
use crate::auth::oidc::OidcProvider;
use crate::error::{ApiError, ErrorBody};
use crate::http::github::{failure, local_next, read_json, to_provider, Callback, OAUTH_COOKIE};
use crate::AppState;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine;
use gatehouse_actors::ids::{new_secret_token, TokenHash};
use gatehouse_actors::oauth::{pkce_pair, ConsumeState, CreateState};
use gatehouse_actors::session::EndExternalSessions;
use gatehouse_actors::users::UpsertExternalUser;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

const BACKCHANNEL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

fn provider(state: &AppState, name: &str) -> Result<Arc<OidcProvider>, ApiError> {
    state
        .oidc
        .get(name)
        .ok_or_else(|| ApiError::not_found("no such sign-in provider"))
}

fn upstream() -> ApiError {
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        "upstream_error",
        "upstream_error",
        "the identity provider could not complete the sign-in; try again",
    )
}

/// The configured redirect URI, else this gateway's own callback URL.
fn redirect_uri(req: &HttpRequest, state: &AppState, p: &OidcProvider) -> String {
    if !p.config.redirect_uri.is_empty() {
        return p.config.redirect_uri.clone();
    }
    let scheme = if state.config.server.secure_cookies {
        "https"
    } else {
        "http"
    };
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("{scheme}://{host}/auth/oidc/{}/callback", p.name)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Start {
    /// A local path to return to after sign-in (anything else is ignored).
    next: Option<String>,
}

/// `GET /auth/oidc/{name}[?next=/path]`: 302 to the provider.
#[utoipa::path(get, path = "/auth/oidc/{name}", tag = "auth",
    params(("name" = String, Path, description = "The `[auth.oidc.NAME]` provider"), Start),
    responses(
        (status = 302, description = "To the provider's authorization endpoint (with `state`, `nonce` and PKCE S256); sets the `gatehouse_oauth` cookie",
            headers(("location" = String), ("set-cookie" = String))),
        (status = 404, description = "No such sign-in provider", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody, headers(("retry-after" = String))),
        (status = 502, description = "`upstream_error`: the provider's discovery failed", body = ErrorBody),
    ))]
pub async fn start(
    req: HttpRequest,
    name: web::Path<String>,
    query: web::Query<Start>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    crate::edge::auth_rate(&req, &state)?;
    let p = provider(&state, &name)?;
    let http = state.validators.http_client();
    let now = state.handles.now();
    let d = p.discovery(&http, now).await.map_err(|why| {
        tracing::warn!(provider = %p.name, why, "OpenID discovery failed");
        upstream()
    })?;
    let browser = new_secret_token();
    let (verifier, challenge) = pkce_pair();
    let nonce = new_secret_token();
    let created = CreateState {
        provider: p.via(),
        browser: TokenHash::of(&browser),
        pkce_verifier: verifier,
        nonce: Some(nonce.clone()),
        next: local_next(query.next.as_deref()),
        now,
    };
    let s = state.handles.oauth().send(created).await??;
    let enc = |v: &str| urlencoding::encode(v).into_owned();
    let sep = if d.authorization_endpoint.contains('?') {
        '&'
    } else {
        '?'
    };
    let location = format!(
        "{}{sep}response_type=code&client_id={}&redirect_uri={}&scope={}&state={}&nonce={}&code_challenge={}&code_challenge_method=S256",
        d.authorization_endpoint,
        enc(&p.config.client_id),
        enc(&redirect_uri(&req, &state, &p)),
        enc(&p.config.scopes.join(" ")),
        enc(&s.state),
        enc(&nonce),
        enc(&challenge),
    );
    Ok(to_provider(&state, location, &browser))
}

/// `GET /auth/oidc/{name}/callback?code&state`: errors are an HTML page
/// when the client accepts `text/html`.
#[utoipa::path(get, path = "/auth/oidc/{name}/callback", tag = "auth",
    params(("name" = String, Path, description = "The `[auth.oidc.NAME]` provider"), Callback),
    responses(
        (status = 302, description = "Signed in: the session cookie is set and the browser sent to `next` or `/`",
            headers(("location" = String), ("set-cookie" = String))),
        (status = 400, description = "`invalid_state`, `invalid_request` (no code), or the provider's `error` code",
            content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 403, description = "`not_allowed` or `account_locked`",
            content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 404, description = "This sign-in method is not configured",
            content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 502, description = "`upstream_error`: the provider could not complete the sign-in",
            content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 503, description = "`service_unavailable`",
            content((ErrorBody = "application/json"), (String = "text/html"))),
    ))]
pub async fn callback(
    req: HttpRequest,
    name: web::Path<String>,
    query: web::Query<Callback>,
    state: web::Data<AppState>,
) -> HttpResponse {
    match finish(&req, &name, query.into_inner(), &state).await {
        Ok(res) => res,
        Err(e) => failure(&req, e),
    }
}

async fn finish(
    req: &HttpRequest,
    name: &str,
    q: Callback,
    state: &AppState,
) -> Result<HttpResponse, ApiError> {
    let p = provider(state, name)?;
    if let Some(err) = q.error {
        let code: String = err.chars().take(64).collect();
        let code = if !code.is_empty() && code.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            code
        } else {
            "oauth_error".into()
        };
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            code,
            "the identity provider refused the sign-in",
        ));
    }
    let now = state.handles.now();
    let browser = crate::auth::cookie(req, OAUTH_COOKIE).map(TokenHash::of);
    let consume = ConsumeState {
        state: q.state.unwrap_or_default(),
        provider: p.via(),
        browser,
        now,
    };
    let flow = state.handles.oauth().send(consume).await??;
    let code = q
        .code
        .filter(|c| !c.is_empty() && c.len() <= 2048)
        .ok_or_else(|| ApiError::bad_request("invalid_request", "the callback has no code"))?;

    let http = state.validators.http_client();
    let d = p.discovery(&http, now).await.map_err(|_| upstream())?;
    let enc = |v: &str| urlencoding::encode(v).into_owned();
    let basic = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        enc(&p.config.client_id),
        enc(p.config.client_secret.expose())
    ));
    let redirect = redirect_uri(req, state, &p);
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", redirect.as_str()),
        ("code_verifier", flow.pkce_verifier.as_str()),
    ];
    let sent = http
        .post(&d.token_endpoint)
        .insert_header((header::AUTHORIZATION, format!("Basic {basic}")))
        .insert_header((header::ACCEPT, "application/json"))
        .send_form(&form)
        .await;
    let id_token = match read_json(sent).await {
        Ok((200, v)) => v.get("id_token").and_then(Value::as_str).map(str::to_owned),
        other => {
            tracing::warn!(provider = %p.name, status = ?other.map(|(s, _)| s), "OpenID code exchange failed");
            None
        }
    }
    .ok_or_else(upstream)?;
    let claims = d
        .keys
        .verify_claims(&http, &id_token, now)
        .await
        .map_err(|why| {
            tracing::warn!(provider = %p.name, why, "ID token refused");
            ApiError::bad_request(
                "invalid_id_token",
                "the identity provider's ID token is not valid",
            )
        })?;
    let nonce_ok = match (
        claims.get("nonce").and_then(Value::as_str),
        flow.nonce.as_deref(),
    ) {
        (Some(got), Some(sent)) => gatehouse_actors::ids::ct_eq(got.as_bytes(), sent.as_bytes()),
        _ => false,
    };
    if !nonce_ok {
        tracing::warn!(provider = %p.name, "ID token nonce mismatch");
        return Err(ApiError::bad_request(
            "invalid_id_token",
            "the identity provider's ID token is not valid",
        ));
    }
    let ip = client_ip(req, &state.config.server.trusted_proxies);
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && s.len() <= 255)
        .ok_or_else(upstream)?;
    if let Err(why) = allowed(&p, &claims) {
        let actor = Actor {
            id: None,
            name: sub.chars().take(64).collect(),
            ip,
        };
        audit(
            state,
            &actor,
            "policy.deny",
            Some(actor.name.clone()),
            json!({"via": p.via(), "why": why}),
        )
        .await;
        return Err(ApiError::forbidden(
            "not_allowed",
            "this account may not sign in here",
        ));
    }
    let text = |k: &str| {
        claims
            .get(k)
            .and_then(Value::as_str)
            .map(|s| s.chars().take(256).collect::<String>())
    };
    let upsert = UpsertExternalUser {
        external_id: format!("{}:{sub}", p.via()),
        login: login_name(&claims, sub),
        display_name: text("name"),
        avatar_url: text("picture")
            .filter(|u| u.starts_with("https://") || u.starts_with("http://")),
        auth: p.via(),
        admin: false,
        ip,
        now,
    };
    crate::http::github::sign_in_external(req, state, upsert, text("sid"), flow.next).await
}

/// `allowed_domains` (a verified email's domain) and `allowed_groups` (the
/// configured claim), each when set.
fn allowed(p: &OidcProvider, claims: &Map<String, Value>) -> Result<(), &'static str> {
    if !p.config.allowed_domains.is_empty() {
        let email = claims
            .get("email")
            .and_then(Value::as_str)
            .ok_or("no email")?;
        if claims.get("email_verified") == Some(&Value::Bool(false)) {
            return Err("email not verified");
        }
        let domain = email
            .rsplit_once('@')
            .map(|(_, d)| d.to_ascii_lowercase())
            .ok_or("bad email")?;
        if !p.config.allowed_domains.contains(&domain) {
            return Err("email domain not allowed");
        }
    }
    if !p.config.allowed_groups.is_empty() {
        let groups: Vec<&str> = match claims.get(&p.config.groups_claim) {
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            Some(Value::String(s)) => vec![s.as_str()],
            _ => Vec::new(),
        };
        if !groups
            .iter()
            .any(|g| p.config.allowed_groups.iter().any(|a| a == g))
        {
            return Err("not in an allowed group");
        }
    }
    Ok(())
}

/// A username from `preferred_username`, the email's local part, or `sub`,
/// reduced to the characters usernames allow.
fn login_name(claims: &Map<String, Value>, sub: &str) -> String {
    let raw = claims
        .get("preferred_username")
        .and_then(Value::as_str)
        .or_else(|| {
            claims
                .get("email")
                .and_then(Value::as_str)
                .and_then(|e| e.split('@').next())
        })
        .unwrap_or(sub);
    let name: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    let name = name.trim_matches('-').to_owned();
    if name.is_empty() {
        "user".into()
    } else {
        name
    }
}

/// A back-channel logout request (OpenID Connect Back-Channel Logout 1.0).
#[derive(ToSchema)]
#[allow(dead_code)] // documents the form; the handler reads it by hand
pub struct LogoutForm {
    /// A logout token (a JWT signed by the provider).
    logout_token: String,
}

/// The refusal of a back-channel logout, in OAuth's error shape.
#[derive(Serialize, ToSchema)]
pub struct OAuthError {
    /// `invalid_request`.
    pub error: &'static str,
    pub error_description: &'static str,
}

/// `POST /auth/oidc/{name}/backchannel-logout` with a form `logout_token`.
#[utoipa::path(post, path = "/auth/oidc/{name}/backchannel-logout", tag = "auth",
    params(("name" = String, Path, description = "The `[auth.oidc.NAME]` provider")),
    request_body(content = LogoutForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The sessions of that provider session (`sid`) or user (`sub`) ended"),
        (status = 400, description = "Not a valid logout token (or no such provider)", body = OAuthError),
        (status = 401, description = "`no_users`: no user exists yet", body = ErrorBody),
        (status = 403, description = "A credential sent with it may not be used here", body = ErrorBody),
        (status = 503, description = "The sessions could not be ended now"),
    ))]
pub async fn backchannel_logout(
    name: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> HttpResponse {
    let refuse = |why: &'static str| {
        tracing::warn!(why, "back-channel logout refused");
        HttpResponse::BadRequest()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(OAuthError {
                error: "invalid_request",
                error_description: "invalid logout token",
            })
    };
    let Some(p) = state.oidc.get(&name) else {
        return refuse("unknown provider");
    };
    let token = String::from_utf8_lossy(&body)
        .split('&')
        .find_map(|kv| kv.strip_prefix("logout_token="))
        .and_then(|v| {
            urlencoding::decode(&v.replace('+', " "))
                .ok()
                .map(|t| t.into_owned())
        });
    let Some(token) = token else {
        return refuse("no logout_token");
    };
    let http = state.validators.http_client();
    let now = state.handles.now();
    let Ok(d) = p.discovery(&http, now).await else {
        return refuse("discovery failed");
    };
    let claims = match d.keys.verify_claims(&http, &token, now).await {
        Ok(c) => c,
        Err(why) => return refuse(why),
    };
    let is_logout = claims
        .get("events")
        .and_then(Value::as_object)
        .is_some_and(|e| e.contains_key(BACKCHANNEL_EVENT));
    if !is_logout || claims.contains_key("nonce") || !claims.contains_key("iat") {
        return refuse("not a logout token");
    }
    let sid = claims.get("sid").and_then(Value::as_str).map(str::to_owned);
    let sub = claims.get("sub").and_then(Value::as_str);
    if sid.is_none() && sub.is_none() {
        return refuse("neither sid nor sub");
    }
    let external = sub.map(|s| format!("{}:{s}", p.via()));
    let user_id = external.and_then(|ext| {
        state
            .handles
            .user_view()
            .find(|u| u.external_id.as_deref() == Some(ext.as_str()))
            .map(|u| u.id.clone())
    });
    // With a sid, only that provider session ends; with a sub alone, all of the user's.
    let msg = EndExternalSessions {
        via: p.via(),
        user_id: if sid.is_some() { None } else { user_id },
        sid,
    };
    match state.handles.sessions().send(msg).await {
        Ok(Ok(n)) => {
            tracing::info!(provider = %p.name, sessions = n, "back-channel logout");
            HttpResponse::Ok()
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .finish()
        }
        _ => HttpResponse::ServiceUnavailable()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .finish(),
    }
}
