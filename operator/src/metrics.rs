//! Operator metrics and the HTTP endpoint serving them with /healthz and the pipelines'
//! sizing (for KEDA's `metrics-api` trigger). Errors are counted by a
//! bounded `error` label (the step that failed), never by message: `<step>_<kind>` for a
//! child (`apply_deployment`, `read_cluster`, `prune_servicemonitor`, … — steps and kinds are
//! fixed in the code, see `controller::Error::kind`), `status`, `invalid_object`, and `topic`
//! (a failed topic step, which degrades the pipeline but does not fail the reconcile).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use kube::ResourceExt;
use kube::runtime::reflector::Store;
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

use crate::crd::PipelineDeployment;
use crate::external_metrics::PipelineStatusSource;
use crate::status::AutoscaleObserved;

pub struct Metrics {
    pub registry: Registry,
    pub reconciliations: IntCounterVec,
    pub failures: IntCounterVec,
    pub duration: HistogramVec,
    /// Child applies sent vs. skipped as unchanged (see `child_cache`).
    pub applies: IntCounterVec,
    pub leader: IntGauge,
    /// Per autoscaled pipeline: lag (records, seconds), needed workers, and whether the lag
    /// could be read. Read by the operator itself from Kafka, so they exist (and alert) when
    /// no worker runs; the lag gauges are removed, not zeroed, while the lag is unknown.
    pub pipeline_lag: GaugeVec,
    pub pipeline_lag_seconds: GaugeVec,
    pub pipeline_needed_workers: GaugeVec,
    pub pipeline_lag_known: GaugeVec,
    /// Per pipeline: worker replicas wanted (the Deployment's `spec.replicas`, the HPA's
    /// choice when autoscaled), ready, and the most it may run. From the API server, so
    /// they exist while every worker is down.
    pub pipeline_workers_desired: GaugeVec,
    pub pipeline_workers_ready: GaugeVec,
    pub pipeline_workers_max: GaugeVec,
    /// Set once the controller runs (or waits as a healthy standby).
    pub healthy: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        let registry = Registry::new();
        let reconciliations = IntCounterVec::new(
            Opts::new(
                "sluice_operator_reconciliations_total",
                "Reconciles by outcome (ok / error).",
            ),
            &["outcome"],
        )
        .expect("metric");
        let failures = IntCounterVec::new(
            Opts::new(
                "sluice_operator_reconcile_errors_total",
                "Reconcile failures by the step that failed (e.g. apply_deployment, prune_servicemonitor, topic, status).",
            ),
            &["error"],
        )
        .expect("metric");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "sluice_operator_reconcile_duration_seconds",
                "Time of one reconcile.",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &[],
        )
        .expect("metric");
        let applies = IntCounterVec::new(
            Opts::new(
                "sluice_operator_child_applies_total",
                "Child server-side applies by outcome (applied / skipped as unchanged).",
            ),
            &["outcome"],
        )
        .expect("metric");
        let leader = IntGauge::new(
            "sluice_operator_leader",
            "1 while this replica holds the leader Lease.",
        )
        .expect("metric");
        let gauge = |name: &str, help: &str| {
            let g =
                GaugeVec::new(Opts::new(name, help), &["namespace", "pipeline"]).expect("metric");
            registry.register(Box::new(g.clone())).expect("register");
            g
        };
        let pipeline_lag = gauge(
            "sluice_operator_pipeline_lag_records",
            "Records not yet committed by the pipeline's consumer group (absent while unknown).",
        );
        let pipeline_lag_seconds = gauge(
            "sluice_operator_pipeline_lag_seconds",
            "Age of the oldest record not yet committed (absent while unknown).",
        );
        let pipeline_needed_workers = gauge(
            "sluice_operator_pipeline_needed_workers",
            "Workers the autoscaler sizes the pipeline to (absent while unknown).",
        );
        let pipeline_lag_known = gauge(
            "sluice_operator_pipeline_lag_known",
            "1 when the pipeline's offsets could be read from Kafka, 0 when the lag is unknown.",
        );
        let pipeline_workers_desired = gauge(
            "sluice_operator_pipeline_workers_desired",
            "Worker replicas the pipeline's Deployment wants (spec.replicas; set by the HPA when autoscaled).",
        );
        let pipeline_workers_ready = gauge(
            "sluice_operator_pipeline_workers_ready",
            "Worker replicas of the pipeline that are ready.",
        );
        let pipeline_workers_max = gauge(
            "sluice_operator_pipeline_workers_max",
            "Most workers the pipeline may run: the autoscaler's maximum as applied, or the fixed replica count when not autoscaled.",
        );
        registry
            .register(Box::new(reconciliations.clone()))
            .expect("register");
        registry
            .register(Box::new(failures.clone()))
            .expect("register");
        registry
            .register(Box::new(duration.clone()))
            .expect("register");
        registry
            .register(Box::new(applies.clone()))
            .expect("register");
        registry
            .register(Box::new(leader.clone()))
            .expect("register");
        Self {
            registry,
            reconciliations,
            failures,
            duration,
            applies,
            leader,
            pipeline_lag,
            pipeline_lag_seconds,
            pipeline_needed_workers,
            pipeline_lag_known,
            pipeline_workers_desired,
            pipeline_workers_ready,
            pipeline_workers_max,
            healthy: AtomicBool::new(false),
        }
    }
}

impl Metrics {
    /// Starts timing a reconcile; the duration is recorded when the guard drops.
    pub fn timer(&self) -> impl Drop + '_ {
        struct Guard<'a>(&'a HistogramVec, Instant);
        impl Drop for Guard<'_> {
            fn drop(&mut self) {
                self.0
                    .with_label_values::<&str>(&[])
                    .observe(self.1.elapsed().as_secs_f64());
            }
        }
        Guard(&self.duration, Instant::now())
    }

    /// Records an autoscaler reading of `pd`.
    pub fn observe_autoscaling(&self, pd: &PipelineDeployment, r: &AutoscaleObserved) {
        let ns = pd.namespace().unwrap_or_default();
        let labels = [ns.as_str(), &pd.name_any()];
        let set = |g: &GaugeVec, v: Option<f64>| match v {
            Some(v) => g.with_label_values(&labels).set(v),
            None => {
                let _ = g.remove_label_values(&labels);
            }
        };
        set(&self.pipeline_lag, r.lag.map(|l| l as f64));
        set(&self.pipeline_lag_seconds, r.lag_seconds);
        set(
            &self.pipeline_needed_workers,
            r.status
                .as_ref()
                .and_then(|s| s.needed_workers)
                .map(f64::from),
        );
        self.pipeline_lag_known
            .with_label_values(&labels)
            .set(if r.unknown.is_none() { 1.0 } else { 0.0 });
    }

    /// Records the worker counts of `pd`: `desired` and `ready` as the Deployment reports them,
    /// `max` the most it may run.
    pub fn observe_workers(&self, pd: &PipelineDeployment, desired: i32, ready: i32, max: i32) {
        let ns = pd.namespace().unwrap_or_default();
        let labels = [ns.as_str(), &pd.name_any()];
        self.pipeline_workers_desired
            .with_label_values(&labels)
            .set(f64::from(desired));
        self.pipeline_workers_ready
            .with_label_values(&labels)
            .set(f64::from(ready));
        self.pipeline_workers_max
            .with_label_values(&labels)
            .set(f64::from(max));
    }

    /// Removes the lag gauges of a pipeline that is no longer autoscaled.
    pub fn forget_autoscaling(&self, namespace: &str, name: &str) {
        for g in [
            &self.pipeline_lag,
            &self.pipeline_lag_seconds,
            &self.pipeline_needed_workers,
            &self.pipeline_lag_known,
        ] {
            let _ = g.remove_label_values(&[namespace, name]);
        }
    }

    /// Removes every per-pipeline gauge of a pipeline that is gone.
    pub fn forget_pipeline(&self, namespace: &str, name: &str) {
        self.forget_autoscaling(namespace, name);
        for g in self.worker_gauges() {
            let _ = g.remove_label_values(&[namespace, name]);
        }
    }

    fn worker_gauges(&self) -> [&GaugeVec; 3] {
        [
            &self.pipeline_workers_desired,
            &self.pipeline_workers_ready,
            &self.pipeline_workers_max,
        ]
    }

    /// The (namespace, pipeline) pairs any per-pipeline gauge has a series for.
    pub fn pipelines(&self) -> std::collections::BTreeSet<(String, String)> {
        use prometheus::core::Collector;
        let mut out = std::collections::BTreeSet::new();
        for g in [
            &self.pipeline_lag,
            &self.pipeline_lag_seconds,
            &self.pipeline_needed_workers,
            &self.pipeline_lag_known,
        ]
        .into_iter()
        .chain(self.worker_gauges())
        {
            for family in g.collect() {
                for m in family.get_metric() {
                    let label = |n: &str| {
                        m.get_label()
                            .iter()
                            .find(|l| l.name() == n)
                            .map(|l| l.value().to_string())
                            .unwrap_or_default()
                    };
                    out.insert((label("namespace"), label("pipeline")));
                }
            }
        }
        out
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("encode metrics");
        String::from_utf8(buf).expect("utf8 metrics")
    }
}

/// Path of the sizing endpoint: `GET /api/v1/sizing/{namespace}/{name}`.
pub const SIZING_PATH: &str = "/api/v1/sizing";

/// The router of /metrics, /healthz and the sizing endpoint. `GET {SIZING_PATH}/{namespace}/{name}`
/// answers `{"neededWorkers": N, "sampledAt": "...", "reason": "..."}` from the pipeline's
/// status as `store` last saw it (what a KEDA `metrics-api` trigger reads); an unknown or stale
/// reading is a 503 and an unknown pipeline a 404, each with a JSON `Status` body, never a 0.
pub fn router(metrics: Arc<Metrics>, store: Store<PipelineDeployment>) -> Router {
    let sizing = Router::new()
        .route(
            &format!("{SIZING_PATH}/{{namespace}}/{{name}}"),
            get(
                |State(source): State<Arc<PipelineStatusSource>>,
                 Path((namespace, name)): Path<(String, String)>| async move {
                    source.sizing(&namespace, &name).map(axum::Json)
                },
            ),
        )
        .with_state(Arc::new(PipelineStatusSource { store }));
    Router::new()
        .route(
            "/metrics",
            get(|State(m): State<Arc<Metrics>>| async move { m.render() }),
        )
        .route(
            "/healthz",
            get(|State(m): State<Arc<Metrics>>| async move {
                if m.healthy.load(Ordering::Relaxed) {
                    (StatusCode::OK, "ok")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "starting")
                }
            }),
        )
        .with_state(metrics)
        .merge(sizing)
}

/// Serves [`router`] until the process ends.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    store: Store<PipelineDeployment>,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, router(metrics, store)).await?;
    Ok(())
}

#[cfg(test)]
mod tests;
