//! A Prometheus Operator CRD that is missing is reported, not skipped silently, and one
//! installed later is picked up by the running operator.
//!
//! This deletes the cluster-wide `prometheusrules.monitoring.coreos.com` CRD for a while, so it
//! is the only test of its binary (cargo runs test binaries one after another, and every
//! binary's setup applies the upstream CRDs again); the CRD is re-applied when the test ends,
//! whatever happens.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use sluice_operator::children::monitoring;
use sluice_operator::crd::PipelineDeployment;

const CRD: &str = "prometheusrules.monitoring.coreos.com";

/// Puts the PrometheusRule CRD back when dropped.
struct Restore(PathBuf);

impl Restore {
    fn apply(&self) {
        run(kubectl(setup())
            .args(["apply", "--server-side", "--force-conflicts", "-f"])
            .arg(&self.0));
        run(kubectl(setup()).args([
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            &format!("crd/{CRD}"),
        ]));
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        self.apply();
    }
}

fn monitoring_condition(pd: &PipelineDeployment) -> Option<(String, String, String)> {
    let st = pd.status.as_ref()?;
    if st.observed_generation != pd.metadata.generation {
        return None;
    }
    st.conditions
        .iter()
        .find(|c| c.type_ == "MonitoringReady")
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Events about the pipeline with `reason`.
async fn events(ns: &TestNs, reason: &str) -> Vec<Event> {
    let api: Api<Event> = ns.api();
    api.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("payments"))
        .collect()
}

fn counter(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn missing_prometheus_rule_crd_is_reported_once_and_picked_up_later() {
    let ns = TestNs::new("op-moncrd").await;
    let crd_file = upstream_crds()
        .into_iter()
        .find(|p| p.ends_with("monitoring.coreos.com_prometheusrules.yaml"))
        .expect("the PrometheusRule CRD among the upstream CRDs");
    let restore = Restore(crd_file);
    run(kubectl(setup()).args(["delete", "crd", CRD, "--wait=true", "--ignore-not-found"]));

    let mut op = Operator::start(&ns.name, "moncrd");
    let pds: Api<PipelineDeployment> = ns.api();
    let mut pd = example("external-postgres.yaml");
    unique_topic(&mut pd, &ns.name);
    pds.create(&PostParams::default(), &pd).await.unwrap();

    // Reported: a False condition naming the missing CRD. The pipeline itself still runs.
    let (_, reason, message) = wait_for("MonitoringReady=False", TIMEOUT, || async {
        let pd = pds.get("payments").await.ok()?;
        monitoring_condition(&pd).filter(|(s, _, _)| s == "False")
    })
    .await;
    assert_eq!(reason, "PrometheusOperatorMissing");
    assert!(message.contains(CRD), "{message}");
    wait_ready(&pds, "payments", "True", Some("PipelineReady")).await;
    // The ServiceMonitor, whose CRD is there, is applied regardless.
    let sms = Api::<DynamicObject>::namespaced_with(
        ns.client.clone(),
        &ns.name,
        &monitoring::service_monitor_resource(),
    );
    wait_for("ServiceMonitor applied", TIMEOUT, || async {
        sms.get_opt("payments").await.ok().flatten()
    })
    .await;

    // Once, not on every reconcile: three more reconciles (each annotation change triggers
    // one) leave exactly one Warning Event, never repeated as a series.
    let reconciles = || {
        counter(
            &op.metrics().unwrap_or_default(),
            "sluice_operator_reconciliations_total",
        )
    };
    for i in 0..3 {
        let before = reconciles();
        pds.patch(
            "payments",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"test/poke": i.to_string()}}})),
        )
        .await
        .unwrap();
        wait_for("a reconcile after the poke", TIMEOUT, || async {
            (reconciles() > before).then_some(())
        })
        .await;
    }
    let warnings = wait_for("the Warning Event", TIMEOUT, || async {
        let e = events(&ns, "PrometheusOperatorMissing").await;
        (!e.is_empty()).then_some(e)
    })
    .await;
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    let warning = &warnings[0];
    assert_eq!(warning.type_.as_deref(), Some("Warning"));
    assert!(warning.note.as_deref().unwrap_or_default().contains(CRD));
    assert!(
        warning.series.is_none() && warning.deprecated_count.unwrap_or(1) <= 1,
        "published more than once: {warning:#?}"
    );

    // The per-pipeline gauges of the operator, for the alerts and dashboards.
    let metrics = op.metrics().unwrap();
    let selector = format!(r#"{{namespace="{}",pipeline="payments"}}"#, ns.name);
    for gauge in [
        "sluice_operator_pipeline_workers_desired",
        "sluice_operator_pipeline_workers_ready",
        "sluice_operator_pipeline_workers_max",
    ] {
        assert!(
            metrics.contains(&format!("{gauge}{selector} 2")),
            "{gauge}{selector} 2 not in\n{metrics}"
        );
    }

    // Installed later: picked up by the same operator process, without a restart.
    restore.apply();
    let (_, reason, _) = wait_for(
        "MonitoringReady=True after the CRD is installed",
        Duration::from_secs(150),
        || async {
            let pd = pds.get("payments").await.ok()?;
            monitoring_condition(&pd).filter(|(s, _, _)| s == "True")
        },
    )
    .await;
    assert_eq!(reason, "MonitoringApplied");
    let rules = Api::<DynamicObject>::namespaced_with(
        ns.client.clone(),
        &ns.name,
        &monitoring::prometheus_rule_resource(),
    );
    let rule = rules.get("payments").await.expect("PrometheusRule applied");
    let groups = &rule.data["spec"]["groups"];
    assert_eq!(groups[0]["name"], format!("sluice.{}.payments", ns.name));
    assert!(
        op.process.exited().unwrap().is_none(),
        "the operator was not restarted"
    );
    wait_for(
        "a Normal Event when monitoring is ready",
        TIMEOUT,
        || async {
            let e = events(&ns, "MonitoringApplied").await;
            e.iter()
                .any(|e| e.type_.as_deref() == Some("Normal"))
                .then_some(())
        },
    )
    .await;

    // Deleting the pipeline removes its gauges.
    pds.delete("payments", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(
        "the pipeline's gauges removed",
        Duration::from_secs(120),
        || async {
            let m = op.metrics()?;
            (!m.contains(&selector)).then_some(())
        },
    )
    .await;
    op.kill();
}
