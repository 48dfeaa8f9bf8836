//! Liveness and readiness for load balancers and orchestrators.

use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

/// `GET /healthz`: the process is up and serving. Never touches dependencies.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: ready for traffic when the database answers.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let database = crate::services::system::backend_of(&state.db);
    match state.db.ping().await {
        Ok(()) => (
            StatusCode::OK,
            Json(json!({ "status": "ready", "database": database })),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check: database not answering");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "unavailable", "database": database })),
            )
        }
    }
}

/// `GET /metrics`: Prometheus text format. The usage writer's counters (records handed over,
/// written, backpressure waits, dropped, failed flushes) and the key cache's loads.
pub async fn metrics(State(state): State<AppState>) -> impl axum::response::IntoResponse {
    use std::fmt::Write;
    use std::sync::atomic::Ordering::Relaxed;
    let u = state.usage.stats();
    let mut out = String::new();
    for (name, help, value) in [
        (
            "keyward_usage_records_total",
            "Usage records handed to the writer.",
            u.recorded.load(Relaxed),
        ),
        (
            "keyward_usage_records_written_total",
            "Usage records written to the database.",
            u.written.load(Relaxed),
        ),
        (
            "keyward_usage_backpressure_waits_total",
            "Requests that waited for room in a full usage buffer.",
            u.backpressure_waits.load(Relaxed),
        ),
        (
            "keyward_usage_records_dropped_total",
            "Usage records lost (offered after shutdown, or refused by the database at shutdown).",
            u.dropped.load(Relaxed),
        ),
        (
            "keyward_usage_flush_failures_total",
            "Usage flushes that failed and were retried.",
            u.failed_flushes.load(Relaxed),
        ),
        (
            "keyward_key_cache_loads_total",
            "Key cache snapshots loaded from the database.",
            state.keys.loads(),
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
}
