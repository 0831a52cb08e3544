//! Prometheus Operator objects: a ServiceMonitor that scrapes the workers through the metrics
//! Service, and a PrometheusRule with the pipeline's recording rules and alerts. Built as
//! dynamic objects and applied only when the monitoring.coreos.com CRDs exist in the cluster
//! (when they do not, the controller reports it in the `MonitoringReady` condition).
//!
//! Every rule selects this pipeline only (`namespace` and `pipeline` labels). Two sources:
//! - the workers' metrics, scraped through the ServiceMonitor: the worker sets a constant
//!   `pipeline` label, Prometheus adds `namespace`, `pod`, `job`;
//! - the operator's own `sluice_operator_pipeline_*` gauges (labels `namespace`, `pipeline`;
//!   the operator's ServiceMonitor must keep them, `honorLabels: true`). They are read by the
//!   operator from Kafka and the API server, so they exist while every worker is down: the
//!   lag, no-progress and workers-down alerts use them. The operator reads the lag of every
//!   pipeline; until its first reading the recording rules fall back to the workers' lag
//!   gauges.
//!
//! `charts/sluice/files/rules/operator.yaml` holds the operator's own alerts; both are unit
//! tested with `promtool test rules` (operator/tests/promtool.rs).

use kube::ResourceExt;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::{Value, json};

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

/// Name of the CRD serving `ar` (`<plural>.<group>`), for messages.
pub fn crd_name(ar: &ApiResource) -> String {
    format!("{}.{}", ar.plural, ar.group)
}

/// The child's metadata with `spec.monitoring.labels` added (ours win on a clash, which the
/// CRD's validation forbids anyway).
fn monitoring_meta(
    pd: &PipelineDeployment,
    name: &str,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
    let mut m = meta(pd, name, "monitoring");
    let ours = m.labels.take().unwrap_or_default();
    let mut labels = pd.spec.monitoring.labels.clone();
    labels.extend(ours);
    m.labels = Some(labels);
    m
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
    obj.metadata = monitoring_meta(pd, &name);
    obj
}

pub fn build_prometheus_rule(pd: &PipelineDeployment) -> DynamicObject {
    let name = pd.name_any();
    let mut obj = DynamicObject::new(&name, &prometheus_rule_resource())
        .data(json!({ "spec": { "groups": rule_groups(pd) } }));
    obj.metadata = monitoring_meta(pd, &name);
    obj
}

fn record(name: &str, expr: String) -> Value {
    json!({ "record": name, "expr": expr })
}

fn alert(
    name: &str,
    expr: String,
    for_: &str,
    severity: &str,
    summary: &str,
    description: String,
) -> Value {
    json!({
        "alert": name,
        "expr": expr,
        "for": for_,
        "labels": { "severity": severity },
        "annotations": { "summary": summary, "description": description },
    })
}

/// The rule groups of the pipeline's PrometheusRule (`spec.groups`): one group of recording
/// rules and alerts. Rules that only make sense for some pipelines (autoscaler at its maximum
/// for autoscaled ones, fraud spike with fraud scoring, replica lag with
/// CloudNativePG) are left out of the others.
pub fn rule_groups(pd: &PipelineDeployment) -> Value {
    let name = pd.name_any();
    let ns = pd.namespace().unwrap_or_default();
    let sel = format!(r#"namespace="{ns}",pipeline="{name}""#);
    let by = "by (namespace, pipeline)";
    let mon = &pd.spec.monitoring;
    let th = &mon.alerts;
    let lag = mon.alert_lag_threshold;
    let who = "{{ $labels.namespace }}/{{ $labels.pipeline }}";
    let inspect = format!(
        "Inspect: kubectl -n {ns} get pipelinedeployment {name} (conditions, lag), kubectl -n {ns} get pods -l sluice.dev/pipeline={name}, kubectl -n {ns} logs deploy/{}.",
        Names::of(pd).worker
    );

    let mut rules = vec![
        record(
            "sluice:pipeline_lag_records",
            format!(
                "max {by} (sluice_operator_pipeline_lag_records{{{sel}}}) or sum {by} (sluice_consumer_lag{{{sel}}})"
            ),
        ),
        record(
            "sluice:pipeline_lag_seconds",
            format!(
                "max {by} (sluice_operator_pipeline_lag_seconds{{{sel}}}) or max {by} (sluice_consumer_lag_seconds{{{sel}}})"
            ),
        ),
        record(
            "sluice:pipeline_transactions:rate5m",
            format!(
                "sum by (namespace, pipeline, outcome) (rate(sluice_transactions_total{{{sel}}}[5m]))"
            ),
        ),
        record(
            "sluice:pipeline_quality_ratio:rate10m",
            format!(
                "sum {by} (rate(sluice_transactions_total{{{sel},outcome=\"accepted\"}}[10m])) / sum {by} (rate(sluice_transactions_total{{{sel}}}[10m]))"
            ),
        ),
        record(
            "sluice:pipeline_dlq_ratio:rate15m",
            format!(
                "sum {by} (rate(sluice_dlq_records_total{{{sel}}}[15m])) / sum {by} (rate(sluice_transactions_total{{{sel}}}[15m]))"
            ),
        ),
    ];
    if pd.spec.fraud.enabled {
        rules.push(record(
            "sluice:pipeline_fraud_ratio:rate15m",
            format!(
                "sum {by} (rate(sluice_fraud_detected_total{{{sel}}}[15m])) / sum {by} (rate(sluice_transactions_total{{{sel},outcome=\"accepted\"}}[15m]))"
            ),
        ));
        // The baseline: the last 6 hours (a spike of a quarter hour moves it by a 24th of its
        // height). No offset, so a Prometheus that started minutes ago has a baseline too.
        rules.push(record(
            "sluice:pipeline_fraud_ratio:avg6h",
            format!("avg_over_time(sluice:pipeline_fraud_ratio:rate15m{{{sel}}}[6h])"),
        ));
    }

    rules.push(alert(
        "SluiceNoProgress",
        format!(
            "sluice:pipeline_lag_seconds{{{sel}}} > 120 and delta(sluice:pipeline_lag_seconds{{{sel}}}[10m]) > 480"
        ),
        "5m",
        "critical",
        "Pipeline is not committing: the oldest waiting record keeps ageing",
        format!(
            "The oldest record of {who} not yet in Postgres is {{{{ $value | humanizeDuration }}}} old and aged by more than 8 minutes in the last 10: nothing is being committed. Usual causes: no worker running (see SluiceWorkersDown), Postgres unreachable (SluiceDatabaseWriteErrors), workers crash-looping (SluiceWorkerRestarting). {inspect}"
        ),
    ));
    rules.push(alert(
        "SluiceConsumerLagHigh",
        format!("sluice:pipeline_lag_records{{{sel}}} > {lag}"),
        "10m",
        "warning",
        "Pipeline is far behind its topic",
        format!(
            "{who} has {{{{ $value | humanize }}}} records not yet committed (threshold {lag}, spec.monitoring.alertLagThreshold). Check the processing rate against the input rate in the pipeline's status.autoscaling; add workers (spec.workers) or look for a slow database. {inspect}"
        ),
    ));
    rules.push(alert(
        "SluiceConsumerLagGrowing",
        format!(
            "sluice:pipeline_lag_records{{{sel}}} > {} and deriv(sluice:pipeline_lag_records{{{sel}}}[15m]) > 0",
            (lag / 10).max(1)
        ),
        "15m",
        "warning",
        "Pipeline lag keeps growing",
        format!(
            "The lag of {who} ({{{{ $value | humanize }}}} records) has grown for the last half hour: input arrives faster than the workers commit. {inspect}"
        ),
    ));
    rules.push(alert(
        "SluiceTimeLagHigh",
        format!("sluice:pipeline_lag_seconds{{{sel}}} > {}", th.time_lag_seconds),
        "5m",
        "warning",
        "Pipeline results are late",
        format!(
            "The oldest record of {who} not yet in Postgres is {{{{ $value | humanizeDuration }}}} old (threshold {}s, spec.monitoring.alerts.timeLagSeconds): fraud alerts and analytics are that late. {inspect}",
            th.time_lag_seconds
        ),
    ));
    rules.push(alert(
        "SluiceLagUnknown",
        format!("max {by} (sluice_operator_pipeline_lag_known{{{sel}}}) == 0"),
        "10m",
        "warning",
        "The operator cannot read the pipeline's lag",
        format!(
            "sluice-operator has not been able to read the offsets of {who} from Kafka for 10 minutes: the lag alerts are blind (and an autoscaled pipeline holds its current size). The LagKnown condition says why (kubectl -n {ns} get pipelinedeployment {name} -o jsonpath='{{.status.conditions}}'); check the brokers and spec.kafka."
        ),
    ));
    if pd.autoscaled() {
        rules.push(alert(
            "SluiceAutoscalerAtMax",
            format!(
                "max {by} (sluice_operator_pipeline_workers_desired{{{sel}}}) >= max {by} (sluice_operator_pipeline_workers_max{{{sel}}}) and deriv(sluice:pipeline_lag_records{{{sel}}}[15m]) > 0 and sluice:pipeline_lag_records{{{sel}}} > 0"
            ),
            "15m",
            "warning",
            "Pipeline runs its most workers and still falls behind",
            format!(
                "{who} runs {{{{ $value }}}} workers, the most the autoscaler may use (spec.workers.maxReplicas, capped by the topic's partitions), and its lag still grows. Raise spec.workers.maxReplicas and spec.kafka.partitions, or spec.postgres.connectionBudget if it binds (see status.autoscaling.reason)."
            ),
        ));
    }
    if pd.spec.fraud.enabled {
        rules.push(alert(
            "SluiceFraudRateSpike",
            format!(
                "sluice:pipeline_fraud_ratio:rate15m{{{sel}}} > {} * sluice:pipeline_fraud_ratio:avg6h{{{sel}}} and sum {by} (increase(sluice_fraud_detected_total{{{sel}}}[15m])) >= 20",
                th.fraud_spike_factor
            ),
            "10m",
            "warning",
            "Fraud flags spike above the pipeline's own baseline",
            format!(
                "{{{{ $value | humanizePercentage }}}} of the transactions of {who} were flagged as fraud in the last 15 minutes, more than {} times its average over the last 6 hours (spec.monitoring.alerts.fraudSpikeFactor). Either an attack (look at the newest rows of fraud_alerts: reasons, merchants, devices) or a scoring change (spec.fraud, recent rollouts).",
                th.fraud_spike_factor
            ),
        ));
    }
    rules.push(alert(
        "SluiceQualityScoreLow",
        format!(
            "sluice:pipeline_quality_ratio:rate10m{{{sel}}} < {}",
            th.min_quality_score
        ),
        "10m",
        "warning",
        "Pipeline rejects an unusual share of its input",
        format!(
            "Only {{{{ $value | humanizePercentage }}}} of the records {who} consumed in the last 10 minutes were accepted (threshold {}, spec.monitoring.alerts.minQualityScore). sluice_rejections_total by reason, or rejected_transactions.reason in Postgres, names what is wrong; usually a producer change.",
            th.min_quality_score
        ),
    ));
    rules.push(alert(
        "SluiceDatabaseWriteErrors",
        format!(
            "sum by (namespace, pipeline, kind) (increase(sluice_db_errors_total{{{sel}}}[5m])) > 0"
        ),
        "10m",
        "warning",
        "Pipeline batch writes keep failing",
        format!(
            "Workers of {who} failed {{{{ $value | humanize }}}} batch writes ({{{{ $labels.kind }}}}) in the last 5 minutes, for 10 minutes now; each batch is retried, so records wait. connection: Postgres unreachable or out of connections; database: an error inside Postgres (disk, permissions). {inspect}"
        ),
    ));
    // Produce failures are Kafka's, not the database's: their own alert, so the runbook
    // points at the brokers and the topic ACLs instead of Postgres.
    rules.push(alert(
        "SluiceProduceErrors",
        format!(
            "sum by (namespace, pipeline, error) (increase(sluice_errors_total{{{sel}, error=~\"dlq_produce|alert_produce\"}}[5m])) > 0"
        ),
        "10m",
        "warning",
        "Pipeline cannot write its DLQ or alerts topic",
        format!(
            "Workers of {who} failed {{{{ $value | humanize }}}} deliveries to Kafka ({{{{ $labels.error }}}}) in the last 5 minutes, for 10 minutes now; the batch is retried, so records wait. dlq_produce: the DLQ topic; alert_produce: the alerts topic. Check that the topics exist, the brokers are reachable and the workers may write them. {inspect}"
        ),
    ));
    rules.push(alert(
        "SluiceDLQRateHigh",
        format!(
            "sluice:pipeline_dlq_ratio:rate15m{{{sel}}} > {}",
            th.max_dlq_ratio
        ),
        "15m",
        "warning",
        "Pipeline sends many records to its DLQ",
        format!(
            "{{{{ $value | humanizePercentage }}}} of the records of {who} went to the DLQ topic over 15 minutes (threshold {}, spec.monitoring.alerts.maxDlqRatio). The sluice-reason header of the DLQ records, or sluice_rejections_total by reason, says why.",
            th.max_dlq_ratio
        ),
    ));
    rules.push(alert(
        "SluiceWorkerRestarting",
        format!(
            "sum by (namespace, pipeline, pod) (changes(process_start_time_seconds{{{sel}}}[30m])) >= 2"
        ),
        "5m",
        "warning",
        "A worker keeps restarting",
        format!(
            "Worker {{{{ $labels.pod }}}} of {who} restarted {{{{ $value }}}} times in 30 minutes. kubectl -n {ns} describe pod {{{{ $labels.pod }}}} (OOMKilled: raise spec.workers.resources; failed probes: database or Kafka unreachable) and kubectl -n {ns} logs --previous {{{{ $labels.pod }}}}."
        ),
    ));
    rules.push(alert(
        "SluiceWorkersDown",
        format!(
            "max {by} (sluice_operator_pipeline_workers_ready{{{sel}}}) == 0 and max {by} (sluice_operator_pipeline_workers_desired{{{sel}}}) > 0"
        ),
        "5m",
        "critical",
        "No worker of the pipeline is ready",
        format!(
            "{who} wants workers but none has been ready for 5 minutes: nothing is consumed. kubectl -n {ns} get deploy {w} and its pods' events (image, scheduling, probes). {inspect}",
            w = Names::of(pd).worker
        ),
    ));
    rules.push(alert(
        "SluiceWorkersUnavailable",
        format!(
            "max {by} (sluice_operator_pipeline_workers_ready{{{sel}}}) < max {by} (sluice_operator_pipeline_workers_desired{{{sel}}})"
        ),
        "15m",
        "warning",
        "Some workers of the pipeline are not ready",
        format!(
            "Only {{{{ $value }}}} workers of {who} have been ready for 15 minutes, fewer than wanted. {inspect}"
        ),
    ));
    if pd.spec.postgres.cloudnativepg.is_some() {
        let db = Names::of(pd).database;
        let mut r = alert(
            "SluiceReplicaLagHigh",
            format!(
                "max by (namespace, pod) (cnpg_pg_replication_lag{{namespace=\"{ns}\",pod=~\"{db}-[0-9]+\"}}) > {}",
                th.replica_lag_seconds
            ),
            "5m",
            "warning",
            "A read replica of the pipeline's database lags",
            format!(
                "Replica {{{{ $labels.pod }}}} of the CloudNativePG cluster {ns}/{db} is {{{{ $value | humanizeDuration }}}} behind the primary (threshold {}s, spec.monitoring.alerts.replicaLagSeconds): dashboards and analytics read stale data. kubectl -n {ns} get cluster {db}; look at the replica's disk and network.",
                th.replica_lag_seconds
            ),
        );
        r["labels"]["pipeline"] = json!(name);
        rules.push(r);
    }
    json!([{ "name": format!("sluice.{ns}.{name}"), "rules": rules }])
}

#[cfg(test)]
mod tests;
