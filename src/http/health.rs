use crate::AppState;
use actix_web::{http::header, web, HttpResponse};
use serde_json::{json, Value};

pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// 200 when every actor answers and the store takes a write; else 503 naming
/// the parts and why (`reasons`), e.g. `{"store": "the database is unreachable"}`.
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let failing = state.handles.readiness().await;
    let store = state.handles.store().backend();
    if failing.is_empty() {
        return HttpResponse::Ok().json(json!({"status": "ready", "store": store}));
    }
    let parts: Vec<&str> = failing.iter().map(|f| f.part).collect();
    let reasons: serde_json::Map<String, Value> = failing
        .iter()
        .map(|f| (f.part.to_owned(), Value::from(f.reason)))
        .collect();
    let message = failing
        .iter()
        .map(|f| format!("{} ({})", f.part, f.reason))
        .collect::<Vec<_>>()
        .join(", ");
    HttpResponse::ServiceUnavailable()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({
            "status": "unavailable",
            "store": store,
            "failing": parts,
            "reasons": reasons,
            "error": {"message": format!("not ready: {message}"), "type": "service_unavailable", "code": "not_ready"}
        }))
}
