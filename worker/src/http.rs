//! `/metrics`, `/healthz` (the poll loop is turning), `/readyz` (schema migrated and the
//! last database round trip succeeded), and the analytics reads under `/api/v1/` (served by
//! the read endpoint, see [`crate::analytics`]).

use crate::analytics::{self, AlertQuery, Range};
use crate::metrics::Metrics;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router, http::StatusCode, routing::get};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

#[derive(Clone)]
pub struct Probes {
    pub metrics: Arc<Metrics>,
    pub heartbeat: Arc<AtomicU64>,
    pub db_ok: Arc<AtomicBool>,
    /// Pool on the read endpoint.
    pub reader: sqlx::PgPool,
}

pub async fn serve(listen: &str, probes: Probes) -> anyhow::Result<()> {
    let app = Router::new()
        .route(
            "/metrics",
            get(|State(p): State<Probes>| async move { p.metrics.render() }),
        )
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/v1/summaries", get(summaries))
        .route("/api/v1/quality", get(quality))
        .route("/api/v1/alerts", get(alerts))
        .with_state(probes);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(addr = %listener.local_addr()?, "serving /metrics, /healthz, /readyz and /api/v1/ analytics");
    axum::serve(listener, app).await?;
    Ok(())
}

async fn healthz(State(p): State<Probes>) -> (StatusCode, &'static str) {
    let age = chrono::Utc::now().timestamp() as u64
        - p.heartbeat.load(Ordering::Relaxed).min(u64::MAX / 2);
    // The loop turns at least every 100 ms; a minute of silence means it is stuck.
    if age <= 60 {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "poll loop stalled\n")
    }
}

async fn readyz(State(p): State<Probes>) -> (StatusCode, &'static str) {
    if p.db_ok.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n")
    }
}

async fn summaries(State(p): State<Probes>, Query(range): Query<Range>) -> Response {
    answer(analytics::summaries(&p.reader, &range).await)
}

async fn quality(State(p): State<Probes>, Query(range): Query<Range>) -> Response {
    answer(analytics::quality(&p.reader, &range).await)
}

async fn alerts(State(p): State<Probes>, Query(query): Query<AlertQuery>) -> Response {
    answer(analytics::alerts(&p.reader, &query).await)
}

/// Rows as JSON, or 503 when the read endpoint cannot answer (down, or still starting).
fn answer<T: serde::Serialize>(rows: Result<Vec<T>, sqlx::Error>) -> Response {
    match rows {
        Ok(rows) => Json(rows).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "analytics read failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("read endpoint unavailable: {e}\n"),
            )
                .into_response()
        }
    }
}
