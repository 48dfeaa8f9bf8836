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
/// With `KEYWARD_METRICS_TOKEN` set it asks for `Authorization: Bearer <token>` (401 otherwise).
pub async fn metrics(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if let Some(expected) = state.settings.metrics_token.as_deref() {
        use subtle::ConstantTimeEq;
        let given = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        let (a, b) = (
            crate::vault::crypto::token_hash(given),
            crate::vault::crypto::token_hash(expected.trim()),
        );
        if !bool::from(a.as_bytes().ct_eq(b.as_bytes())) {
            return (
                StatusCode::UNAUTHORIZED,
                [(axum::http::header::WWW_AUTHENTICATE, "Bearer")],
                "metrics need the operator's bearer token\n",
            )
                .into_response();
        }
    }
    metrics_text(&state).into_response()
}

fn metrics_text(state: &AppState) -> impl axum::response::IntoResponse {
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
