//! Sign in with GitHub (API.md "Sign-in and sessions"): the web flow with a
//! single-use, browser-bound state and PKCE (S256). The session token goes
//! only into the HttpOnly cookie, never into a URL.

use crate::accounts::{audit, Actor};
use crate::auth::client_ip;
use crate::config::GithubConfig;
use crate::error::{ApiError, ErrorBody};
use crate::http::auth::session_cookie;
use crate::AppState;
use actix_web::cookie::{time::Duration as CookieDuration, Cookie, SameSite};
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use gatehouse_actors::ids::{new_secret_token, TokenHash};
use gatehouse_actors::oauth::{pkce_pair, ConsumeState, CreateState};
use gatehouse_actors::users::UpsertExternalUser;
use gatehouse_actors::GatehouseError;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::IntoParams;

pub const OAUTH_COOKIE: &str = "gatehouse_oauth";

/// The configured callback URL, else this gateway's own (from the request).
fn redirect_uri(req: &HttpRequest, state: &AppState, gh: &GithubConfig) -> String {
    if !gh.redirect_uri.is_empty() {
        return gh.redirect_uri.clone();
    }
    own_url(req, state, "/auth/github/callback")
}

/// `scheme://host{path}` of this gateway as the client reached it.
pub(crate) fn own_url(req: &HttpRequest, state: &AppState, path: &str) -> String {
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
    format!("{scheme}://{host}{path}")
}
const MAX_ANSWER: usize = 1024 * 1024;

fn github(state: &AppState) -> Result<&GithubConfig, ApiError> {
    state
        .config
        .auth
        .github
        .as_ref()
        .ok_or_else(|| ApiError::not_found("GitHub sign-in is not configured"))
}

/// `next` when it is a local path (`/x`), else nothing: never `//host`,
/// `/\host`, a scheme, or control characters.
pub fn local_next(next: Option<&str>) -> Option<String> {
    let n = next?;
    let ok = n.starts_with('/')
        && !n.starts_with("//")
        && !n.contains('\\')
        && n.len() <= 512
        && !n.chars().any(|c| c.is_control() || c.is_whitespace());
    ok.then(|| n.to_owned())
}

pub(crate) fn oauth_cookie(
    state: &AppState,
    value: &str,
    max_age: time::Duration,
) -> Cookie<'static> {
    Cookie::build(OAUTH_COOKIE, value.to_owned())
        .path("/auth")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(state.config.server.secure_cookies)
        .max_age(CookieDuration::seconds(max_age.whole_seconds()))
        .finish()
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Start {
    /// A local path to return to after sign-in (anything else is ignored).
    next: Option<String>,
}

/// `GET /auth/github[?next=/path]`: 302 to GitHub with state and PKCE.
#[utoipa::path(get, path = "/auth/github", tag = "auth",
    params(Start),
    responses(
        (status = 302, description = "To GitHub's authorize URL (with `state`, PKCE S256 and `scope`); sets the `gatehouse_oauth` cookie",
            headers(("location" = String), ("set-cookie" = String))),
        (status = 404, description = "GitHub sign-in is not configured", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody, headers(("retry-after" = String))),
    ))]
pub async fn start(
    req: HttpRequest,
    query: web::Query<Start>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    crate::edge::auth_rate(&req, &state)?;
    let gh = github(&state)?;
    let browser = new_secret_token();
    let (verifier, challenge) = pkce_pair();
    let created = CreateState {
        provider: "github".into(),
        browser: TokenHash::of(&browser),
        pkce_verifier: verifier,
        nonce: None,
        next: local_next(query.next.as_deref()),
        now: state.handles.now(),
    };
    let s = state.handles.oauth().send(created).await??;
    let scope = if gh.allowed_orgs.is_empty() {
        "read:user"
    } else {
        "read:user read:org"
    };
    let enc = |v: &str| urlencoding::encode(v).into_owned();
    let sep = if gh.authorize_url.contains('?') {
        '&'
    } else {
        '?'
    };
    let location = format!(
        "{}{sep}client_id={}&redirect_uri={}&state={}&code_challenge={}&code_challenge_method=S256&scope={}&allow_signup=false",
        gh.authorize_url,
        enc(&gh.client_id),
        enc(&redirect_uri(&req, &state, gh)),
        enc(&s.state),
        enc(&challenge),
        enc(scope)
    );
    Ok(to_provider(&state, location, &browser))
}

/// Sends the browser to the provider, binding the flow to it with the
/// short-lived `gatehouse_oauth` cookie.
pub(crate) fn to_provider(state: &AppState, location: String, browser: &str) -> HttpResponse {
    HttpResponse::Found()
        .insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .cookie(oauth_cookie(
            state,
            browser,
            state.config.auth.oauth_state_ttl,
        ))
        .finish()
}

/// What a provider sends the browser back with.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Callback {
    pub(crate) code: Option<String>,
    pub(crate) state: Option<String>,
    /// The provider's error code (`access_denied`, …).
    pub(crate) error: Option<String>,
}

/// A failure the browser shows: HTML for a browser, JSON otherwise.
pub(crate) fn failure(req: &HttpRequest, e: ApiError) -> HttpResponse {
    let wants_html = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    if !wants_html {
        return actix_web::ResponseError::error_response(&e);
    }
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Sign-in failed</title>\
         <link rel=\"stylesheet\" href=\"/static/app.css\"></head><body><main><h1>Sign-in failed</h1>\
         <p>{}</p><p><code>{}</code></p><p><a href=\"/\">Back to sign-in</a></p></main></body></html>",
        esc(&e.message),
        esc(&e.code)
    );
    HttpResponse::build(e.status)
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CONTENT_SECURITY_POLICY, crate::http::pages::CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body)
}

/// `GET /auth/github/callback?code&state`: errors are an HTML page when
/// the client accepts `text/html`.
#[utoipa::path(get, path = "/auth/github/callback", tag = "auth",
    params(Callback),
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
    query: web::Query<Callback>,
    state: web::Data<AppState>,
) -> HttpResponse {
    match finish(&req, query.into_inner(), &state).await {
        Ok(res) => res,
        Err(e) => failure(&req, e),
    }
}

async fn finish(
    req: &HttpRequest,
    q: Callback,
    state: &AppState,
) -> Result<HttpResponse, ApiError> {
    let gh = github(state)?;
    if let Some(err) = q.error {
        // The provider's code, kept only if it looks like one.
        let code: String = err.chars().take(64).collect();
        let code = if !code.is_empty() && code.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            code
        } else {
            "oauth_error".into()
        };
        let message = if code == "access_denied" {
            "sign-in was cancelled at GitHub"
        } else {
            "GitHub refused the sign-in"
        };
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            code,
            message,
        ));
    }
    let now = state.handles.now();
    let browser = crate::auth::cookie(req, OAUTH_COOKIE).map(TokenHash::of);
    let consume = ConsumeState {
        state: q.state.unwrap_or_default(),
        provider: "github".into(),
        browser,
        now,
    };
    let flow = state.handles.oauth().send(consume).await??;
    let code = q
        .code
        .filter(|c| !c.is_empty() && c.len() <= 512)
        .ok_or_else(|| ApiError::bad_request("invalid_request", "the callback has no code"))?;

    let http = state.validators.http_client();
    let redirect = redirect_uri(req, state, gh);
    let upstream = || {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "upstream_error",
            "upstream_error",
            "GitHub sign-in failed; try again",
        )
    };
    let form = [
        ("client_id", gh.client_id.as_str()),
        ("client_secret", gh.client_secret.expose()),
        ("code", code.as_str()),
        ("redirect_uri", redirect.as_str()),
        ("code_verifier", flow.pkce_verifier.as_str()),
    ];
    let exchanged = read_json(
        http.post(&gh.token_url)
            .insert_header((header::ACCEPT, "application/json"))
            .send_form(&form)
            .await,
    )
    .await;
    let access = match exchanged {
        Ok((200, v)) => v
            .get("access_token")
            .and_then(Value::as_str)
            .map(str::to_owned),
        Ok((status, _)) => {
            tracing::warn!(status, "GitHub code exchange refused");
            None
        }
        Err(why) => {
            tracing::warn!(why, "GitHub code exchange failed");
            None
        }
    }
    .ok_or_else(upstream)?;
    let api = gh.api_base_url.trim_end_matches('/');
    let get = |path: &str| {
        http.get(format!("{api}{path}"))
            .insert_header((header::AUTHORIZATION, format!("Bearer {access}")))
            .insert_header((header::ACCEPT, "application/vnd.github+json"))
            .send()
    };
    let user = match read_json(get("/user").await).await {
        Ok((200, v)) => v,
        _ => return Err(upstream()),
    };
    let login = user
        .get("login")
        .and_then(Value::as_str)
        .filter(|l| crate::accounts::check_username(l).is_ok())
        .ok_or_else(upstream)?
        .to_owned();
    let id = user
        .get("id")
        .and_then(Value::as_u64)
        .ok_or_else(upstream)?;
    let orgs: Vec<String> = if gh.allowed_orgs.is_empty() {
        Vec::new()
    } else {
        match read_json(get("/user/orgs").await).await {
            Ok((200, Value::Array(list))) => list
                .iter()
                .filter_map(|o| o.get("login")?.as_str().map(str::to_lowercase))
                .collect(),
            _ => return Err(upstream()),
        }
    };
    let lower = login.to_lowercase();
    let open = gh.allowed_users.is_empty() && gh.allowed_orgs.is_empty();
    if !open
        && !gh.allowed_users.contains(&lower)
        && !orgs.iter().any(|o| gh.allowed_orgs.contains(o))
    {
        let actor = Actor {
            id: None,
            name: login.clone(),
            ip: client_ip(req, &state.config.server.trusted_proxies),
        };
        audit(
            state,
            &actor,
            "policy.deny",
            Some(login.clone()),
            json!({"via": "github"}),
        )
        .await;
        return Err(ApiError::forbidden(
            "not_allowed",
            "this GitHub account may not sign in here",
        ));
    }
    let ip = client_ip(req, &state.config.server.trusted_proxies);
    let text = |k: &str| {
        user.get(k)
            .and_then(Value::as_str)
            .map(|s| s.chars().take(256).collect::<String>())
    };
    let upsert = UpsertExternalUser {
        external_id: format!("github:{id}"),
        login: login.clone(),
        display_name: text("name"),
        avatar_url: text("avatar_url")
            .filter(|u| u.starts_with("https://") || u.starts_with("http://")),
        auth: "github".into(),
        admin: gh.admin_users.contains(&lower),
        ip,
        now,
    };
    sign_in_external(req, state, upsert, None, flow.next).await
}

/// The end of every external sign-in: find or create the user (a locked
/// one is refused), open the session (cookie only) and send the browser to
/// `next` or `/`.
pub(crate) async fn sign_in_external(
    req: &HttpRequest,
    state: &AppState,
    upsert: UpsertExternalUser,
    external_sid: Option<String>,
    next: Option<String>,
) -> Result<HttpResponse, ApiError> {
    let via = upsert.auth.clone();
    let account = state
        .handles
        .users()
        .send(upsert)
        .await?
        .map_err(|e| match e {
            GatehouseError::AccountLocked => {
                ApiError::forbidden("account_locked", "this account is locked")
            }
            other => other.into(),
        })?;
    let ttl = state.config.auth.oauth_session_ttl;
    let token =
        crate::http::auth::open_session(req, state, &account, via, ttl, external_sid).await?;
    let mut clear = oauth_cookie(state, "", time::Duration::ZERO);
    clear.make_removal();
    Ok(HttpResponse::Found()
        .insert_header((header::LOCATION, next.unwrap_or_else(|| "/".into())))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .cookie(session_cookie(state, &token, ttl))
        .cookie(clear)
        .finish())
}

pub(crate) async fn read_json<S>(
    res: Result<awc::ClientResponse<S>, awc::error::SendRequestError>,
) -> Result<(u16, Value), &'static str>
where
    S: futures_util::Stream<Item = Result<actix_web::web::Bytes, awc::error::PayloadError>> + Unpin,
{
    let mut res = res.map_err(|_| "unreachable")?;
    let status = res.status().as_u16();
    let body = res
        .body()
        .limit(MAX_ANSWER)
        .await
        .map_err(|_| "unreadable answer")?;
    Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
}

#[cfg(test)]
mod tests {
    use super::local_next;

    #[test]
    fn next_must_be_a_local_path() {
        assert_eq!(
            local_next(Some("/account?tab=1")).as_deref(),
            Some("/account?tab=1")
        );
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "https://evil.example",
            "evil",
            "",
            "/a b",
            "/x\r\nSet-Cookie: a=b",
        ] {
            assert_eq!(local_next(Some(bad)), None, "{bad:?}");
        }
    }
}
