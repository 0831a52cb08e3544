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
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};
use tracing::{debug, info};

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

/// A parsed label selector: the equality- and set-based forms of the Kubernetes API
/// (`a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Selector(Vec<Requirement>);

#[derive(Debug, Clone, PartialEq)]
enum Requirement {
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

impl Selector {
    pub fn parse(s: &str) -> Result<Self, MetricError> {
        let bad = || MetricError::BadRequest(format!("invalid labelSelector {s:?}"));
        let mut out = Vec::new();
        for part in split_top_level(s) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let words: Vec<&str> = part.splitn(2, char::is_whitespace).collect();
            if let [key, rest] = words.as_slice() {
                let rest = rest.trim();
                let (op, set) = if let Some(set) = rest.strip_prefix("notin") {
                    ("notin", set)
                } else if let Some(set) = rest.strip_prefix("in") {
                    ("in", set)
                } else {
                    ("", rest)
                };
                if !op.is_empty() {
                    let set = set
                        .trim()
                        .strip_prefix('(')
                        .and_then(|x| x.strip_suffix(')'))
                        .ok_or_else(bad)?;
                    let values = set.split(',').map(|v| v.trim().to_string()).collect();
                    out.push(if op == "in" {
                        Requirement::In(key.to_string(), values)
                    } else {
                        Requirement::NotIn(key.to_string(), values)
                    });
                    continue;
                }
            }
            if let Some((k, v)) = part.split_once("!=") {
                out.push(Requirement::NotIn(k.trim().into(), vec![v.trim().into()]));
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                out.push(Requirement::In(k.trim().into(), vec![v.trim().into()]));
            } else if let Some(k) = part.strip_prefix('!') {
                out.push(Requirement::DoesNotExist(k.trim().into()));
            } else if part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
            {
                out.push(Requirement::Exists(part.into()));
            } else {
                return Err(bad());
            }
        }
        Ok(Self(out))
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
        })
    }
}

/// Split on commas outside parentheses (`a in (x,y),b=c` → two requirements).
fn split_top_level(s: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
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

/// TLS for the server: a certificate (PEM files, e.g. from a Secret) or a self-signed one
/// made at start for `dns_names`, and optionally the CA that must have signed the client's.
pub struct TlsSettings {
    pub cert_and_key: Option<(Vec<u8>, Vec<u8>)>,
    pub dns_names: Vec<String>,
    pub client_ca_pem: Option<Vec<u8>>,
}

pub fn tls_config(s: &TlsSettings) -> anyhow::Result<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let (certs, key): (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) = match &s.cert_and_key
    {
        Some((cert, key)) => (
            CertificateDer::pem_slice_iter(cert).collect::<Result<_, _>>()?,
            PrivateKeyDer::from_pem_slice(key)?,
        ),
        None => {
            let ck = rcgen::generate_simple_self_signed(s.dns_names.clone())?;
            (
                vec![ck.cert.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.key_pair.serialize_der())),
            )
        }
    };
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match &s.client_ca_pem {
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(pem) {
                roots.add(c?)?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Serve the API on `addr` until the process ends.
pub async fn serve(
    addr: SocketAddr,
    tls: rustls::ServerConfig,
    source: Arc<dyn MetricSource>,
) -> anyhow::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let app = router(source);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    info!(%addr, "serving {GROUP}/{VERSION}");
    loop {
        let (tcp, peer) = listener.accept().await?;
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(tls) => tls,
                Err(e) => return debug!(%peer, error = %e, "TLS handshake refused"),
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            if let Err(e) = builder
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await
            {
                debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn selectors_of_every_form() {
        let l = labels(&[("sluice.dev/pipeline", "payments"), ("team", "risk")]);
        for (s, want) in [
            ("", true),
            ("sluice.dev/pipeline=payments", true),
            ("sluice.dev/pipeline==payments,team=risk", true),
            ("sluice.dev/pipeline=refunds", false),
            ("team!=risk", false),
            ("sluice.dev/pipeline in (refunds, payments)", true),
            ("sluice.dev/pipeline notin (payments),team=risk", false),
            ("team", true),
            ("!team", false),
            ("!owner", true),
        ] {
            assert_eq!(Selector::parse(s).unwrap().matches(&l), want, "{s}");
        }
        assert!(Selector::parse("a in x").is_err());
    }

    #[test]
    fn quantities_are_whole_or_milli() {
        assert_eq!(quantity(3.0), "3");
        assert_eq!(quantity(12.3456), "12346m");
        assert_eq!(quantity(0.0), "0");
    }

    #[test]
    fn self_signed_tls_config_builds() {
        let s = TlsSettings {
            cert_and_key: None,
            dns_names: vec!["sluice-operator.sluice-system.svc".into()],
            client_ca_pem: None,
        };
        let c = tls_config(&s).unwrap();
        assert_eq!(c.alpn_protocols[0], b"h2");
    }
}
