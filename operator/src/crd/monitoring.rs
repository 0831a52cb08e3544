//! `spec.monitoring`: the Prometheus Operator objects, the dashboard and alert thresholds.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Monitoring objects. ServiceMonitor and PrometheusRule are created only when the Prometheus
/// Operator CRDs exist in the cluster; when one is wanted but its CRD is missing, the
/// `MonitoringReady` condition is False (reason `PrometheusOperatorMissing`) and a Warning
/// Event names the missing CRD. CRDs installed later are picked up within a minute.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MonitoringSpec {
    /// Create a ServiceMonitor scraping the workers' /metrics.
    #[serde(default = "super::default_true")]
    pub service_monitor: bool,
    /// Create a PrometheusRule with the pipeline's recording rules and alerts (lag, time lag,
    /// no progress, workers down or restarting, fraud spike, quality, database and DLQ errors,
    /// autoscaler at its maximum, replica lag).
    #[serde(default = "super::default_true")]
    pub prometheus_rule: bool,
    /// Extra labels on the ServiceMonitor and the PrometheusRule, so a Prometheus selects them;
    /// e.g. `release: kube-prometheus-stack` for kube-prometheus-stack's default selectors. The
    /// operator's own `app.kubernetes.io/*` and `sluice.dev/pipeline` labels cannot be set here.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "monitoring_labels_schema")]
    pub labels: BTreeMap<String, String>,
    /// Thresholds of the PrometheusRule's alerts.
    #[serde(default)]
    pub alerts: AlertThresholds,
    /// Create a ConfigMap labelled `grafana_dashboard: "1"` holding the pipeline's dashboard.
    #[serde(default = "super::default_true")]
    pub grafana_dashboard: bool,
    /// Scrape interval of the ServiceMonitor, e.g. `30s`.
    #[serde(default = "default_scrape_interval")]
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h)$"))]
    pub scrape_interval: String,
    /// Consumer lag (records) above which the `SluiceConsumerLagHigh` alert fires (and a tenth
    /// of which `SluiceConsumerLagGrowing` needs).
    #[serde(default = "default_alert_lag")]
    #[schemars(range(min = 1))]
    pub alert_lag_threshold: i64,
}

impl Default for MonitoringSpec {
    fn default() -> Self {
        Self {
            service_monitor: true,
            prometheus_rule: true,
            grafana_dashboard: true,
            scrape_interval: default_scrape_interval(),
            alert_lag_threshold: default_alert_lag(),
            labels: BTreeMap::new(),
            alerts: AlertThresholds::default(),
        }
    }
}

/// Thresholds of the pipeline's alerts, for the people who run it to tune.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AlertThresholds {
    /// Time lag (age of the oldest record not yet committed), in seconds, above which
    /// `SluiceTimeLagHigh` fires.
    #[serde(default = "default_time_lag_alert")]
    #[schemars(range(min = 1, max = 86400))]
    pub time_lag_seconds: i64,
    /// `SluiceFraudRateSpike` fires when the share of transactions flagged as fraud over the
    /// last 15 minutes exceeds this many times its own average over the last 6 hours.
    #[serde(default = "default_fraud_spike_factor")]
    #[schemars(range(min = 1.1, max = 1000.0))]
    pub fraud_spike_factor: f64,
    /// `SluiceQualityScoreLow` fires when accepted ÷ all records over 10 minutes stays below this.
    #[serde(default = "default_min_quality_score")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub min_quality_score: f64,
    /// `SluiceDLQRateHigh` fires when more than this share of the records consumed goes to the DLQ.
    #[serde(default = "default_max_dlq_ratio")]
    #[schemars(range(min = 0.0001, max = 1.0))]
    pub max_dlq_ratio: f64,
    /// Replication lag of a CloudNativePG read replica, in seconds, above which
    /// `SluiceReplicaLagHigh` fires (pipelines with `spec.postgres.cloudnativepg` only).
    #[serde(default = "default_replica_lag_alert")]
    #[schemars(range(min = 1, max = 86400))]
    pub replica_lag_seconds: i64,
}

impl Default for AlertThresholds {
    fn default() -> Self {
        Self {
            time_lag_seconds: default_time_lag_alert(),
            fraud_spike_factor: default_fraud_spike_factor(),
            min_quality_score: default_min_quality_score(),
            max_dlq_ratio: default_max_dlq_ratio(),
            replica_lag_seconds: default_replica_lag_alert(),
        }
    }
}

fn default_time_lag_alert() -> i64 {
    300
}

fn default_fraud_spike_factor() -> f64 {
    3.0
}

fn default_min_quality_score() -> f64 {
    0.9
}

fn default_max_dlq_ratio() -> f64 {
    0.05
}

fn default_replica_lag_alert() -> i64 {
    30
}

/// `spec.monitoring.labels`: at most 32 labels with Kubernetes label syntax, none of the
/// operator's own.
fn monitoring_labels_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "maxProperties": 32,
        "additionalProperties": {
            "type": "string",
            "maxLength": 63,
            "pattern": "^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$",
        },
        "x-kubernetes-validations": [
            {
                "rule": "self.all(k, k.size() <= 317 && k.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$'))",
                "message": "spec.monitoring.labels keys must be Kubernetes label keys ([prefix/]name, name at most 63 characters)",
            },
            {
                "rule": "self.all(k, !k.startsWith('app.kubernetes.io/') && k != 'sluice.dev/pipeline')",
                "message": "spec.monitoring.labels cannot set the operator's own labels (app.kubernetes.io/*, sluice.dev/pipeline)",
            },
        ],
    })
}

fn default_scrape_interval() -> String {
    "30s".into()
}

fn default_alert_lag() -> i64 {
    100_000
}
