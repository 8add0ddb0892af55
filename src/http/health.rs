use crate::AppState;
use actix_web::{web, HttpResponse};
use serde_json::json;

pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// 200 when every actor answers and the store takes a write; else 503 naming the parts.
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let failing = state.handles.readiness().await;
    if failing.is_empty() {
        HttpResponse::Ok()
            .json(json!({"status": "ready", "store": state.handles.store().backend()}))
    } else {
        HttpResponse::ServiceUnavailable().json(json!({
            "status": "unavailable",
            "failing": failing,
            "error": {"message": format!("not ready: {}", failing.join(", ")), "type": "service_unavailable", "code": "not_ready"}
        }))
    }
}
