use super::*;
use crate::children::testing::{BASIC, pipeline};
use crate::controller::observe::observe_keda;
use crate::status::Observed;

fn kinds<'a>(xs: impl IntoIterator<Item = (&'static str, &'a str)>) -> Vec<String> {
    xs.into_iter().map(|(k, n)| format!("{k}/{n}")).collect()
}

fn applied(c: &Children) -> Vec<String> {
    kinds(c.apply.iter().map(|d| (d.kind(), d.name())))
}

fn pruned(c: &Children) -> Vec<String> {
    kinds(c.prune.iter().map(|u| (u.kind(), u.name())))
}

#[test]
fn every_pipeline_has_the_core_children_in_order() {
    let pd = pipeline(BASIC);
    let c = desired_children(&pd, Caps::default());
    assert_eq!(
        applied(&c),
        [
            "ServiceAccount/payments-worker",
            "ConfigMap/payments-config",
            "Deployment/payments-worker",
            "Service/payments-metrics",
            "PodDisruptionBudget/payments-worker",
            "ConfigMap/payments-dashboard",
        ]
    );
    // Optional kinds without their CRDs: neither applied nor pruned. Not autoscaled: no HPA.
    assert_eq!(pruned(&c), ["HorizontalPodAutoscaler/payments-worker"]);
    let observed: Vec<_> = c.apply.iter().filter(|d| d.observe).collect();
    assert_eq!(observed.len(), 1);
    assert_eq!(observed[0].kind(), "Deployment");
    let dep = &c.apply[2];
    assert_eq!(
        (&dep.body["apiVersion"], &dep.body["kind"]),
        (&json!("apps/v1"), &json!("Deployment"))
    );
    assert_eq!(dep.resource.plural, "deployments");
}

#[test]
fn optional_children_follow_the_spec_when_their_crds_exist() {
    let mut pd = pipeline(BASIC);
    pd.spec.postgres.external = None;
    pd.spec.postgres.cloudnativepg = Some(serde_json::from_value(json!({})).unwrap());
    let c = desired_children(&pd, Caps::ALL);
    assert_eq!(
        applied(&c)[5..],
        [
            "ConfigMap/payments-dashboard",
            "ServiceMonitor/payments",
            "PrometheusRule/payments",
            "Cluster/payments-db",
        ]
    );
    assert_eq!(
        pruned(&c),
        [
            "HorizontalPodAutoscaler/payments-worker",
            "ScaledObject/payments-worker"
        ]
    );
    let cluster = c.apply.last().unwrap();
    assert!(cluster.observe);
    assert_eq!(cluster.body["apiVersion"], "postgresql.cnpg.io/v1");
    assert_eq!(cluster.body["spec"]["instances"], 2);
    assert_eq!(c.apply[6].body["kind"], "ServiceMonitor");

    let mut off = pipeline(BASIC);
    off.spec.monitoring.grafana_dashboard = false;
    off.spec.monitoring.service_monitor = false;
    off.spec.monitoring.prometheus_rule = false;
    let c = desired_children(&off, Caps::ALL);
    assert_eq!(applied(&c).len(), 5);
    assert_eq!(
        pruned(&c),
        [
            "HorizontalPodAutoscaler/payments-worker",
            "ConfigMap/payments-dashboard",
            "ServiceMonitor/payments",
            "PrometheusRule/payments",
            "ScaledObject/payments-worker",
            "Cluster/payments-db",
        ]
    );
    assert_eq!(c.prune[1].resource.plural, "configmaps");
    // Without the CRDs only the HPA and the dashboard (a ConfigMap) are pruned.
    assert_eq!(
        pruned(&desired_children(&off, Caps::default())),
        [
            "HorizontalPodAutoscaler/payments-worker",
            "ConfigMap/payments-dashboard"
        ]
    );
    // Autoscaled: the HPA comes right after the PodDisruptionBudget.
    let mut auto = pipeline(BASIC);
    auto.spec.workers.max_replicas = 4;
    auto.spec.autoscaling = Some(crate::crd::AutoscalingSpec {
        enabled: true,
        ..Default::default()
    });
    assert_eq!(
        applied(&desired_children(&auto, Caps::default()))[5],
        "HorizontalPodAutoscaler/payments-worker"
    );
}

#[test]
fn provider_keda_swaps_the_hpa_for_a_scaled_object_or_degrades_without_keda() {
    let mut pd = pipeline(BASIC);
    pd.spec.monitoring.grafana_dashboard = false;
    pd.spec.autoscaling = Some(crate::crd::AutoscalingSpec {
        enabled: true,
        provider: AutoscalingProvider::Keda,
        ..Default::default()
    });
    let only_keda = Caps {
        keda: true,
        ..Caps::default()
    };
    let c = desired_children(&pd, only_keda);
    assert_eq!(applied(&c)[5..], ["ScaledObject/payments-worker"]);
    assert_eq!(
        pruned(&c),
        [
            "HorizontalPodAutoscaler/payments-worker",
            "ConfigMap/payments-dashboard"
        ]
    );
    let so = c.apply.last().unwrap();
    assert_eq!(so.body["apiVersion"], "keda.sh/v1alpha1");
    assert_eq!(so.resource.plural, "scaledobjects");
    assert_eq!(so.body["spec"]["scaleTargetRef"]["name"], "payments-worker");
    let mut o = Observed::default();
    observe_keda(&pd, only_keda, &mut o);
    assert_eq!(o.degraded, None);

    // KEDA not installed: no autoscaler at all, and the pipeline says why.
    let c = desired_children(&pd, Caps::default());
    assert_eq!(applied(&c).len(), 5);
    assert_eq!(pruned(&c)[0], "HorizontalPodAutoscaler/payments-worker");
    let mut o = Observed::default();
    observe_keda(&pd, Caps::default(), &mut o);
    assert_eq!(o.degraded.unwrap().0, "KEDAMissing");

    // Back to the HPA (the default provider): the ScaledObject is pruned.
    pd.spec.autoscaling.as_mut().unwrap().provider = AutoscalingProvider::Hpa;
    let c = desired_children(&pd, only_keda);
    assert_eq!(
        applied(&c)[5..],
        ["HorizontalPodAutoscaler/payments-worker"]
    );
    assert!(pruned(&c).contains(&"ScaledObject/payments-worker".to_string()));
    let mut o = Observed::default();
    observe_keda(&pd, Caps::default(), &mut o);
    assert_eq!(o.degraded, None);
}

#[test]
fn an_invalid_worker_config_leaves_the_config_and_the_workers_alone() {
    let mut pd = pipeline(BASIC);
    pd.spec.postgres.max_connections = 1;
    let c = desired_children(&pd, Caps::default());
    assert_eq!(
        c.invalid_config.as_ref().map(|e| e.field),
        Some("postgres.max_connections")
    );
    // Neither applied nor pruned: running workers keep their last good config.
    assert_eq!(
        applied(&c),
        [
            "ServiceAccount/payments-worker",
            "Service/payments-metrics",
            "PodDisruptionBudget/payments-worker",
            "ConfigMap/payments-dashboard",
        ]
    );
    assert_eq!(pruned(&c), ["HorizontalPodAutoscaler/payments-worker"]);
    assert!(
        desired_children(&pipeline(BASIC), Caps::default())
            .invalid_config
            .is_none()
    );
}
