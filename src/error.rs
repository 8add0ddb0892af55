//! How a client sees a failure: `{"error":{"message","type","code"}}` with the
//! right status, `WWW-Authenticate` on 401 and `Retry-After` on 429 (and on
//! a 503 while the database is out of reach). A 5xx
//! says only "internal error"; the cause is logged once, here.

use actix::MailboxError;
use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use gatehouse_actors::{GatehouseError, StoreError};
use std::borrow::Cow;
use std::time::Duration;

/// Every error body: `{"error": {"message", "type", "code"}}`.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What failed: a message for people, a `type` and a `code` for programs.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    #[schema(value_type = String)]
    pub message: Cow<'static, str>,
    /// The class of error (`invalid_request_error`, `authentication_error`, …).
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The specific error (`invalid_credentials`, `model_not_found`, …); always a string.
    #[schema(value_type = String)]
    pub code: Cow<'static, str>,
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub code: Cow<'static, str>,
    pub message: Cow<'static, str>,
    pub retry_after: Option<Duration>,
    pub www_authenticate: Option<&'static str>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            status,
            kind,
            code: code.into(),
            message: message.into(),
            retry_after: None,
            www_authenticate: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            code,
            message,
        )
    }

    pub fn unprocessable(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request_error",
            code,
            message,
        )
    }

    pub fn unauthenticated() -> Self {
        Self::unauthorized(
            "authentication_required",
            "authentication required: sign in or send a bearer token",
        )
    }

    pub fn unauthorized(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        let mut e = Self::new(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            code,
            message,
        );
        e.www_authenticate = Some("Bearer realm=\"gatehouse\"");
        e
    }

    pub fn forbidden(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "permission_error", code, message)
    }

    pub fn not_found(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found_error",
            "not_found",
            message,
        )
    }

    pub fn conflict(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::CONFLICT, "invalid_request_error", code, message)
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            "payload_too_large",
            format!("request body is larger than {limit} bytes"),
        )
    }

    pub fn too_many(
        code: &'static str,
        message: impl Into<Cow<'static, str>>,
        retry_after: Duration,
    ) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            code,
            message,
        );
        e.retry_after = Some(retry_after);
        e
    }

    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            "service_unavailable",
            "service temporarily unavailable, retry shortly",
        )
    }

    /// The disk of the data directory is full: nothing was saved. (The
    /// embedded store takes no writes again until the gateway restarts.)
    pub fn storage_full() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            "storage_full",
            "the gateway's data directory is full, so nothing was saved; \
             an operator must free disk space and restart the gateway",
        )
    }

    /// A provider failed; the details are in the log, never in the answer.
    pub fn upstream() -> Self {
        Self::new(
            StatusCode::BAD_GATEWAY,
            "upstream_error",
            "upstream_error",
            "upstream error: the model provider could not answer",
        )
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "internal_error",
            "internal error",
        )
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status);
        if let Some(w) = self.www_authenticate {
            res.insert_header((header::WWW_AUTHENTICATE, w));
        }
        if let Some(r) = self.retry_after {
            let secs = r.as_secs() + u64::from(r.subsec_nanos() > 0);
            res.insert_header((header::RETRY_AFTER, secs.max(1).to_string()));
        }
        res.insert_header((header::CACHE_CONTROL, "no-store"));
        res.json(ErrorBody {
            error: ErrorDetail {
                message: self.message.clone(),
                kind: self.kind,
                code: self.code.clone(),
            },
        })
    }
}

impl From<MailboxError> for ApiError {
    fn from(e: MailboxError) -> Self {
        tracing::error!(error = %e, "actor unavailable");
        ApiError::unavailable()
    }
}

impl From<GatehouseError> for ApiError {
    fn from(e: GatehouseError) -> Self {
        match e {
            GatehouseError::InvalidCredentials => {
                ApiError::unauthorized("invalid_credentials", "invalid username or password")
            }
            GatehouseError::AccountLocked => {
                ApiError::forbidden("account_locked", "this account is locked")
            }
            GatehouseError::Throttled { retry_after } => ApiError::too_many(
                "too_many_attempts",
                "too many failed sign-in attempts; try again later",
                Duration::from_secs(retry_after.whole_seconds().max(1) as u64),
            ),
            GatehouseError::NotFound => ApiError::not_found("not found"),
            GatehouseError::Conflict(what) => {
                ApiError::conflict("conflict", format!("{what} already exists"))
            }
            GatehouseError::Invalid(msg) if msg == "invalid_state" => ApiError::bad_request(
                "invalid_state",
                "the sign-in state is invalid or expired; start again",
            ),
            GatehouseError::Invalid(msg) => ApiError::unprocessable("invalid_value", msg),
            GatehouseError::Forbidden(msg) => ApiError::forbidden("forbidden", msg),
            GatehouseError::IdempotencyKeyReused => ApiError::unprocessable(
                "idempotency_key_reused",
                "this Idempotency-Key was used with a different request",
            ),
            GatehouseError::InvalidTransition(msg) => ApiError::conflict("invalid_transition", msg),
            GatehouseError::ConfigOwned(msg) => ApiError::conflict("config_provider", msg),
            GatehouseError::EgressDenied(msg) => ApiError::unprocessable(
                "egress_denied",
                format!("refused by the egress policy: {msg}"),
            ),
            GatehouseError::QueueFull { limit } => ApiError::too_many(
                "task_queue_full",
                format!("{limit} tasks are already waiting to run; try again later"),
                Duration::from_secs(5),
            ),
            GatehouseError::Unauthenticated => ApiError::unauthenticated(),
            GatehouseError::Unavailable(why) => {
                tracing::warn!(why, "unavailable");
                ApiError::unavailable()
            }
            GatehouseError::Store(s @ StoreError::Unavailable(_)) => {
                // The database is gone for now: each request says so once,
                // as a warning; the client is told to come back shortly.
                tracing::warn!(error = %s, "store unavailable");
                let mut e = ApiError::unavailable();
                e.retry_after = Some(Duration::from_secs(2));
                e
            }
            GatehouseError::Store(s) if s.is_storage_full() => {
                tracing::error!(error = %s, "store failure: the disk is full");
                ApiError::storage_full()
            }
            GatehouseError::Store(s) => {
                tracing::error!(error = %s, "store failure");
                ApiError::unavailable()
            }
        }
    }
}

/// Maps actix-web's JSON extractor errors to our shape: 413 for a body over
/// the limit, 415 for the wrong content type, else 400 (never plain text).
pub fn json_error(
    err: actix_web::error::JsonPayloadError,
    _: &actix_web::HttpRequest,
) -> actix_web::Error {
    use actix_web::error::JsonPayloadError as J;
    let api = match &err {
        J::OverflowKnownLength { limit, .. } | J::Overflow { limit } => {
            ApiError::payload_too_large(*limit)
        }
        J::ContentType => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request_error",
            "unsupported_media_type",
            "expected Content-Type: application/json",
        ),
        J::Deserialize(e) if e.is_data() => ApiError::bad_request(
            "invalid_request",
            format!("invalid request body: {}", sanitize(&e.to_string())),
        ),
        J::Deserialize(_) => {
            ApiError::bad_request("invalid_json", "request body is not valid JSON")
        }
        J::Payload(actix_web::error::PayloadError::Overflow) => ApiError::payload_too_large(0),
        _ => ApiError::bad_request("invalid_request", "could not read request body"),
    };
    api.into()
}

/// A query string that does not parse (a number or boolean that is not
/// one): 400 in our shape, never actix's plain text.
pub fn query_error(
    err: actix_web::error::QueryPayloadError,
    _: &actix_web::HttpRequest,
) -> actix_web::Error {
    let api = ApiError::bad_request(
        "invalid_request",
        format!("invalid query string: {}", sanitize(&err.to_string())),
    );
    api.into()
}

/// Serde's messages can quote input; keep only the structural part.
fn sanitize(msg: &str) -> String {
    // "missing field `password` at line 1 column 20" is safe; an "invalid type: string \"…\""
    // quotes the value, which may be a password, so cut quoted parts.
    let mut out = String::with_capacity(msg.len());
    let mut in_quote = false;
    for c in msg.chars() {
        if c == '"' {
            in_quote = !in_quote;
            if in_quote {
                out.push_str("\"…");
            } else {
                out.push('"');
            }
        } else if !in_quote {
            out.push(c);
        }
    }
    out.chars().take(200).collect()
}

/// The default for unknown routes.
pub async fn not_found() -> HttpResponse {
    ApiError::not_found("no such route").error_response()
}
