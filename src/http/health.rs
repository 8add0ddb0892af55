use crate::AppState;
use actix_web::{http::header, web, HttpResponse};
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// `GET /health`: the process runs.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    #[schema(inline)]
    pub status: HealthStatus,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    Ok,
}

/// `GET /ready` when every part answers.
#[derive(Serialize, ToSchema)]
pub struct Ready {
    /// Always `ready`.
    #[schema(inline)]
    pub status: ReadyStatus,
    /// The store backend: `sled` or `postgres`.
    pub store: &'static str,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReadyStatus {
    Ready,
}

/// `GET /ready` when a part fails: which, and why, with the error too.
#[derive(Serialize, ToSchema)]
pub struct NotReady {
    /// Always `unavailable`.
    #[schema(inline)]
    pub status: NotReadyStatus,
    pub store: &'static str,
    /// The failing parts.
    pub failing: Vec<&'static str>,
    /// Why each part fails, by part.
    pub reasons: BTreeMap<&'static str, &'static str>,
    pub error: crate::error::ErrorDetail,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NotReadyStatus {
    Unavailable,
}

#[utoipa::path(get, path = "/health", tag = "health",
    responses((status = 200, description = "The process runs", body = Health)))]
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(Health {
        status: HealthStatus::Ok,
    })
}

/// 200 when every actor answers and the store takes a write; else 503 naming
/// the parts and why (`reasons`), e.g. `{"store": "the database is unreachable"}`.
#[utoipa::path(get, path = "/ready", tag = "health",
    responses(
        (status = 200, description = "Every actor answers and the store is writable", body = Ready),
        (status = 503, description = "A part fails; the parts are named", body = NotReady),
    ))]
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let failing = state.handles.readiness().await;
    let store = state.handles.store().backend();
    if failing.is_empty() {
        return HttpResponse::Ok().json(Ready {
            status: ReadyStatus::Ready,
            store,
        });
    }
    let message = failing
        .iter()
        .map(|f| format!("{} ({})", f.part, f.reason))
        .collect::<Vec<_>>()
        .join(", ");
    HttpResponse::ServiceUnavailable()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(NotReady {
            status: NotReadyStatus::Unavailable,
            store,
            failing: failing.iter().map(|f| f.part).collect(),
            reasons: failing.iter().map(|f| (f.part, f.reason)).collect(),
            error: crate::error::ErrorDetail {
                message: format!("not ready: {message}").into(),
                kind: "service_unavailable",
                code: "not_ready".into(),
            },
        })
}
