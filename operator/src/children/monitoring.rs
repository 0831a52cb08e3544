//! Prometheus Operator objects: a ServiceMonitor that scrapes the workers through the metrics
//! Service, and a PrometheusRule with the pipeline's alerts. Built as dynamic objects and
//! applied only when the monitoring.coreos.com CRDs exist in the cluster.

use kube::ResourceExt;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::json;

use super::{Names, meta, selector_labels};
use crate::crd::PipelineDeployment;

pub fn service_monitor_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("monitoring.coreos.com", "v1", "ServiceMonitor"),
        "servicemonitors",
    )
}

pub fn prometheus_rule_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("monitoring.coreos.com", "v1", "PrometheusRule"),
        "prometheusrules",
    )
}

pub fn build_service_monitor(pd: &PipelineDeployment) -> DynamicObject {
    let name = pd.name_any();
    let mut obj = DynamicObject::new(&name, &service_monitor_resource()).data(json!({
        "spec": {
            "selector": { "matchLabels": selector_labels(pd) },
            "endpoints": [{
                "port": "metrics",
                "path": "/metrics",
                "interval": pd.spec.monitoring.scrape_interval,
            }],
        }
    }));
    obj.metadata = meta(pd, &name, "monitoring");
    obj
}

pub fn build_prometheus_rule(pd: &PipelineDeployment) -> DynamicObject {
    let name = pd.name_any();
    let ns = pd.namespace().unwrap_or_default();
    let sel = format!(r#"pipeline="{name}",namespace="{ns}""#);
    let job = Names::of(pd).metrics;
    let lag = pd.spec.monitoring.alert_lag_threshold;
    let mut obj = DynamicObject::new(&name, &prometheus_rule_resource()).data(json!({
        "spec": { "groups": [{
            "name": format!("sluice.{ns}.{name}"),
            "rules": [
                {
                    "alert": "SluiceConsumerLagHigh",
                    "expr": format!("sum(sluice_consumer_lag{{{sel}}}) > {lag}"),
                    "for": "10m",
                    "labels": { "severity": "warning" },
                    "annotations": { "summary": format!("Pipeline {ns}/{name} is more than {lag} records behind") },
                },
                {
                    "alert": "SluiceRejectRateHigh",
                    "expr": format!(
                        "sum(rate(sluice_transactions_total{{{sel},outcome=\"rejected\"}}[5m])) / sum(rate(sluice_transactions_total{{{sel}}}[5m])) > 0.05"
                    ),
                    "for": "10m",
                    "labels": { "severity": "warning" },
                    "annotations": { "summary": format!("Pipeline {ns}/{name} rejects more than 5% of transactions") },
                },
                {
                    "alert": "SluiceWorkersDown",
                    "expr": format!("sum(up{{job=\"{job}\",namespace=\"{ns}\"}}) == 0 or absent(up{{job=\"{job}\",namespace=\"{ns}\"}})"),
                    "for": "5m",
                    "labels": { "severity": "critical" },
                    "annotations": { "summary": format!("No worker of pipeline {ns}/{name} is being scraped") },
                },
            ],
        }]}
    }));
    obj.metadata = meta(pd, &name, "monitoring");
    obj
}
