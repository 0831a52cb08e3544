//! The external metrics API (`external.metrics.k8s.io/v1beta1`) that the HorizontalPodAutoscaler
//! of each autoscaled pipeline reads, served over TLS behind the apiserver's aggregation layer.
//!
//! Every operator replica serves it, leader or not: the values come from the pipelines' status
//! (written by the leader's autoscaler) through a watch, so whichever replica the aggregator
//! picks gives the same answer. A value that is unknown (lag unreadable, no sample yet, or a
//! sample older than [`STALE_AFTER`]) is an error, never an empty list or a zero: the HPA then
//! keeps its current size instead of scaling to the minimum.
//!
//! Authentication: the apiserver authorises the request (RBAC on `external.metrics.k8s.io`)
//! before it proxies it here, and proxies with its front-proxy client certificate. With a
//! client CA (the `requestheader-client-ca-file` of `kube-system/extension-apiserver-authentication`)
//! the server accepts only clients that certificate authority signed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use serde_json::{Value, json};
use tracing::debug;

mod selector;
mod tls;

pub use selector::Selector;
pub use tls::{TlsSettings, serve, tls_config};

use crate::children::PIPELINE_LABEL;
use crate::crd::{AutoscalingStatus, PipelineDeployment};

pub const GROUP: &str = "external.metrics.k8s.io";
pub const VERSION: &str = "v1beta1";
/// Workers the pipeline needs (the HPA's target: `AverageValue` 1 per worker).
pub const NEEDED_WORKERS: &str = "sluice_needed_workers";
/// Records not yet committed by the pipeline's consumer group.
pub const LAG_RECORDS: &str = "sluice_lag_records";
/// Age in seconds of the oldest record not yet committed.
pub const LAG_SECONDS: &str = "sluice_lag_seconds";
const METRICS: [&str; 3] = [NEEDED_WORKERS, LAG_RECORDS, LAG_SECONDS];
/// A reading older than this is not served: the autoscaler has stopped sampling.
pub const STALE_AFTER: Duration = Duration::from_secs(120);

/// One value of an external metric.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricValue {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
    /// RFC 3339 time of the reading.
    pub timestamp: String,
}

/// Why no value can be served.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    BadRequest(String),
}

impl MetricError {
    fn status(&self) -> (StatusCode, &'static str) {
        match self {
            MetricError::NotFound(_) => (StatusCode::NOT_FOUND, "NotFound"),
            MetricError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable"),
            MetricError::BadRequest(_) => (StatusCode::BAD_REQUEST, "BadRequest"),
        }
    }
}

impl IntoResponse for MetricError {
    fn into_response(self) -> Response {
        let (code, reason) = self.status();
        let body = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": self.to_string(), "reason": reason,
            "code": code.as_u16(),
        });
        (code, axum::Json(body)).into_response()
    }
}

/// Where the values come from.
pub trait MetricSource: Send + Sync + 'static {
    fn values(
        &self,
        namespace: &str,
        metric: &str,
        selector: &Selector,
    ) -> Result<Vec<MetricValue>, MetricError>;
}

/// A Kubernetes quantity: whole numbers as they are, others in thousandths (`1500m`).
fn quantity(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{}m", (v * 1000.0).round() as i64)
    }
}

/// The pipelines' status, as the watch last saw it.
pub struct PipelineStatusSource {
    pub store: Store<PipelineDeployment>,
}

/// The autoscaler's last reading of `pd` if there is one and it is at most [`STALE_AFTER`]
/// old at `now`; otherwise why it cannot be used.
pub fn fresh_reading(
    pd: &PipelineDeployment,
    now: k8s_openapi::jiff::Timestamp,
) -> Result<AutoscalingStatus, MetricError> {
    let (namespace, name) = (pd.namespace().unwrap_or_default(), pd.name_any());
    let Some(reading) = pd.status.as_ref().and_then(|s| s.autoscaling.clone()) else {
        return Err(MetricError::Unavailable(format!(
            "pipeline {namespace}/{name}: no autoscaler reading yet"
        )));
    };
    let sampled: k8s_openapi::jiff::Timestamp = reading.sampled_at.parse().map_err(|_| {
        MetricError::Unavailable(format!("pipeline {namespace}/{name}: bad sampledAt"))
    })?;
    let age = now.duration_since(sampled).as_secs();
    if age > STALE_AFTER.as_secs() as i64 {
        return Err(MetricError::Unavailable(format!(
            "pipeline {namespace}/{name}: last reading is {age}s old"
        )));
    }
    Ok(reading)
}

impl PipelineStatusSource {
    /// The workers pipeline `namespace/name` needs, with when and why, under the same rule as
    /// [`NEEDED_WORKERS`]: a pipeline without a fresh, known reading is an error, never 0.
    pub fn sizing(&self, namespace: &str, name: &str) -> Result<Value, MetricError> {
        let pd = self
            .store
            .get(&ObjectRef::new(name).within(namespace))
            .ok_or_else(|| MetricError::NotFound(format!("no pipeline {namespace}/{name}")))?;
        let reading = fresh_reading(&pd, k8s_openapi::jiff::Timestamp::now())?;
        let Some(needed) = reading.needed_workers else {
            let why = if reading.reason.is_empty() {
                "lag unknown"
            } else {
                reading.reason.as_str()
            };
            return Err(MetricError::Unavailable(format!(
                "pipeline {namespace}/{name}: {why}"
            )));
        };
        Ok(json!({
            "neededWorkers": needed,
            "sampledAt": reading.sampled_at,
            "reason": reading.reason,
        }))
    }
}

impl MetricSource for PipelineStatusSource {
    fn values(
        &self,
        namespace: &str,
        metric: &str,
        selector: &Selector,
    ) -> Result<Vec<MetricValue>, MetricError> {
        let now = k8s_openapi::jiff::Timestamp::now();
        let mut out = Vec::new();
        for pd in self.store.state() {
            if pd.namespace().as_deref() != Some(namespace) {
                continue;
            }
            let mut labels = pd.labels().clone();
            labels.insert(PIPELINE_LABEL.into(), pd.name_any());
            if !selector.matches(&labels) {
                continue;
            }
            let name = pd.name_any();
            let status = pd.status.clone().unwrap_or_default();
            let reading = fresh_reading(&pd, now)?;
            let unknown = || {
                let why = if reading.reason.is_empty() {
                    "lag unknown".to_string()
                } else {
                    reading.reason.clone()
                };
                MetricError::Unavailable(format!("pipeline {namespace}/{name}: {why}"))
            };
            let value = match metric {
                NEEDED_WORKERS => f64::from(reading.needed_workers.ok_or_else(unknown)?),
                LAG_RECORDS => status.lag.ok_or_else(unknown)? as f64,
                LAG_SECONDS => status.lag_seconds.ok_or_else(unknown)?,
                other => return Err(MetricError::NotFound(format!("no metric {other:?}"))),
            };
            out.push(MetricValue {
                labels: BTreeMap::from([(PIPELINE_LABEL.into(), name)]),
                value,
                timestamp: reading.sampled_at.clone(),
            });
        }
        if out.is_empty() {
            return Err(MetricError::NotFound(format!(
                "no pipeline in namespace {namespace} matches the selector"
            )));
        }
        Ok(out)
    }
}

#[derive(serde::Deserialize)]
struct ListQuery {
    #[serde(default, rename = "labelSelector")]
    label_selector: String,
}

async fn resources() -> axum::Json<Value> {
    let resources: Vec<Value> = METRICS
        .iter()
        .map(|m| {
            json!({"name": m, "singularName": "", "namespaced": true,
                   "kind": "ExternalMetricValueList", "verbs": ["get"]})
        })
        .collect();
    axum::Json(json!({
        "kind": "APIResourceList", "apiVersion": "v1",
        "groupVersion": format!("{GROUP}/{VERSION}"), "resources": resources,
    }))
}

async fn group() -> axum::Json<Value> {
    let gv = json!({"groupVersion": format!("{GROUP}/{VERSION}"), "version": VERSION});
    axum::Json(json!({
        "kind": "APIGroup", "apiVersion": "v1", "name": GROUP,
        "versions": [gv.clone()], "preferredVersion": gv,
    }))
}

async fn list(
    State(source): State<Arc<dyn MetricSource>>,
    Path((namespace, metric)): Path<(String, String)>,
    Query(q): Query<ListQuery>,
) -> Result<axum::Json<Value>, MetricError> {
    if !METRICS.contains(&metric.as_str()) {
        return Err(MetricError::NotFound(format!(
            "no external metric {metric:?}; served: {}",
            METRICS.join(", ")
        )));
    }
    let selector = Selector::parse(&q.label_selector)?;
    let values = source
        .values(&namespace, &metric, &selector)
        .inspect_err(|e| {
            debug!(%namespace, %metric, error = %e, "external metric not served");
        })?;
    let items: Vec<Value> = values
        .into_iter()
        .map(|v| {
            json!({"metricName": metric, "metricLabels": v.labels,
                   "timestamp": v.timestamp, "value": quantity(v.value)})
        })
        .collect();
    Ok(axum::Json(json!({
        "kind": "ExternalMetricValueList", "apiVersion": format!("{GROUP}/{VERSION}"),
        "metadata": {}, "items": items,
    })))
}

pub fn router(source: Arc<dyn MetricSource>) -> Router {
    let base = format!("/apis/{GROUP}/{VERSION}");
    Router::new()
        .route(&format!("/apis/{GROUP}"), get(group))
        .route(&base, get(resources))
        .route(
            &format!("{base}/namespaces/{{namespace}}/{{metric}}"),
            get(list),
        )
        .route("/healthz", get(|| async { "ok" }))
        .with_state(source)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_are_whole_or_milli() {
        assert_eq!(quantity(3.0), "3");
        assert_eq!(quantity(12.3456), "12346m");
        assert_eq!(quantity(0.0), "0");
    }
}
