//! `/metrics`, `/healthz` (the poll loop is turning) and `/readyz` (schema migrated and the
//! last database round trip succeeded).

use crate::metrics::Metrics;
use axum::{Router, extract::State, http::StatusCode, routing::get};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

#[derive(Clone)]
pub struct Probes {
    pub metrics: Arc<Metrics>,
    pub heartbeat: Arc<AtomicU64>,
    pub db_ok: Arc<AtomicBool>,
}

pub async fn serve(listen: &str, probes: Probes) -> anyhow::Result<()> {
    let app = Router::new()
        .route("/metrics", get(|State(p): State<Probes>| async move { p.metrics.render() }))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(probes);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(addr = %listener.local_addr()?, "serving /metrics, /healthz, /readyz");
    axum::serve(listener, app).await?;
    Ok(())
}

async fn healthz(State(p): State<Probes>) -> (StatusCode, &'static str) {
    let age = chrono::Utc::now().timestamp() as u64 - p.heartbeat.load(Ordering::Relaxed).min(u64::MAX / 2);
    // The loop turns at least every 100 ms; a minute of silence means it is stuck.
    if age <= 60 { (StatusCode::OK, "ok\n") } else { (StatusCode::SERVICE_UNAVAILABLE, "poll loop stalled\n") }
}

async fn readyz(State(p): State<Probes>) -> (StatusCode, &'static str) {
    if p.db_ok.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n")
    }
}
