//! The Grafana dashboard ConfigMap. Grafana's sidecar loads every ConfigMap labelled
//! `grafana_dashboard: "1"`, so the pipeline's dashboard appears without touching Grafana.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use serde_json::json;

use super::{Names, meta};
use crate::crd::PipelineDeployment;

pub fn build_dashboard(pd: &PipelineDeployment) -> ConfigMap {
    let name = pd.name_any();
    let ns = pd.namespace().unwrap_or_default();
    let sel = format!(r#"pipeline="{name}",namespace="{ns}""#);
    let panel = |id: u32, title: &str, expr: String, unit: &str, x: u32, y: u32| {
        json!({
            "id": id, "type": "timeseries", "title": title,
            "gridPos": { "h": 8, "w": 12, "x": x, "y": y },
            "fieldConfig": { "defaults": { "unit": unit } },
            "targets": [{ "expr": expr, "refId": "A" }],
        })
    };
    let dashboard = json!({
        "title": format!("sluice {ns}/{name}"),
        "uid": format!("sluice-{}", &pd.uid().unwrap_or_default().chars().take(8).collect::<String>()),
        "schemaVersion": 39,
        "time": { "from": "now-1h", "to": "now" },
        "panels": [
            panel(1, "Transactions / s by outcome", format!("sum by (outcome) (rate(sluice_transactions_total{{{sel}}}[1m]))"), "ops", 0, 0),
            panel(2, "Consumer lag (records)", format!("sum(sluice_consumer_lag{{{sel}}})"), "short", 12, 0),
            panel(3, "End-to-end latency p99", format!("histogram_quantile(0.99, sum by (le) (rate(sluice_end_to_end_latency_seconds_bucket{{{sel}}}[1m])))"), "s", 0, 8),
            panel(4, "Fraud detected / s", format!("sum(rate(sluice_fraud_detected_total{{{sel}}}[1m]))"), "ops", 12, 8),
            panel(5, "Quality score", format!("min(sluice_quality_score{{{sel}}})"), "percentunit", 0, 16),
            panel(6, "DB connections", format!("sum(sluice_db_connections_active{{{sel}}})"), "short", 12, 16),
        ],
    });
    let mut metadata = meta(pd, &Names::of(pd).dashboard, "dashboard");
    metadata
        .labels
        .get_or_insert_default()
        .insert("grafana_dashboard".into(), "1".into());
    ConfigMap {
        metadata,
        data: Some(BTreeMap::from([(
            format!("sluice-{ns}-{name}.json"),
            serde_json::to_string_pretty(&dashboard).expect("json"),
        )])),
        ..ConfigMap::default()
    }
}
