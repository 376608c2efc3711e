//! The admin server, plain HTTP on its own port: `/livez`, `/readyz`, `/metrics`. Kept apart
//! from the webhook port so that probes and scrapes need no TLS and never compete with reviews.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::metrics::Metrics;
use crate::state::{Readiness, SharedState};

#[derive(Clone)]
pub struct AdminState {
    pub engine: Arc<SharedState>,
    pub metrics: Arc<Metrics>,
    pub readiness: Arc<Readiness>,
}

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(state): State<AdminState>) -> Response {
    match state.readiness.not_ready_reason(&state.engine) {
        None => (StatusCode::OK, "ok\n").into_response(),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<AdminState>) -> Response {
    if let Some(engine) = state.engine.load() {
        let m = &state.metrics;
        m.snapshot_generation.set(engine.snapshot.generation as i64);
        m.snapshot_age.set(engine.published.elapsed().as_secs_f64());
        m.policies.set(engine.policies.len() as i64);
        m.ai_workloads.set(engine.snapshot.declared_count() as i64);
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}
