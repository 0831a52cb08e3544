//! The worker pod knobs (`spec.workers` imagePullSecrets, nodeSelector, tolerations, affinity,
//! topologySpreadConstraints, podLabels, podAnnotations, priorityClassName, resources) reach
//! the worker Deployment's pod template and, through the real scheduler and admission, the
//! pods themselves; the default spread and "an empty list means none" hold after a real
//! round trip through the API server.

mod common;

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use sluice_operator::crd::PipelineDeployment;

/// A cluster-scoped PriorityClass for one test, deleted when dropped.
struct TempPriorityClass(String);

impl Drop for TempPriorityClass {
    fn drop(&mut self) {
        let _ = kubectl(setup())
            .args(["delete", "priorityclass", &self.0, "--wait=false"])
            .output();
    }
}

#[tokio::test]
async fn pod_knobs_reach_the_worker_pods() {
    let ns = TestNs::new("op-worker-pods").await;
    let _op = Operator::start(&ns.name, "worker-pods");
    let pds: Api<PipelineDeployment> = ns.api();
    let deps: Api<Deployment> = ns.api();
    let pods: Api<Pod> = ns.api();

    let class = TempPriorityClass(format!("{}-streaming", ns.name));
    let pc: PriorityClass = serde_json::from_value(json!({
        "metadata": {"name": class.0}, "value": 1000,
        "description": "sluice operator test (worker_pods.rs)"
    }))
    .unwrap();
    Api::<PriorityClass>::all(ns.client.clone())
        .create(&PostParams::default(), &pc)
        .await
        .expect("create PriorityClass");

    let mut pd = example("worker-pods.yaml");
    unique_topic(&mut pd, &ns.name);
    let w = &mut pd.spec.workers;
    w.priority_class_name = Some(class.0.clone());
    // Required node affinity on top of the example's preference: only kwok-node-1 is in
    // zone-1 (hack/cluster.sh), so the scheduler must put every worker there.
    w.affinity
        .as_mut()
        .unwrap()
        .node_affinity
        .as_mut()
        .unwrap()
        .required_during_scheduling_ignored_during_execution = Some(
        serde_json::from_value(json!({"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["zone-1"]}]}]}))
        .unwrap(),
    );
    let want = pd.spec.workers.clone();
    let name = pd.metadata.name.clone().unwrap();
    pds.create(&PostParams::default(), &pd).await.unwrap();
    wait_ready(&pds, &name, "True", Some("PipelineReady")).await;

    let dep = deps.get(&format!("{name}-worker")).await.unwrap();
    let template = &dep.spec.template;
    let meta = template.metadata.as_ref().unwrap();
    let spec = template.spec.as_ref().unwrap();
    assert_eq!(
        spec.image_pull_secrets.as_ref(),
        Some(&want.image_pull_secrets)
    );
    assert_eq!(spec.node_selector.as_ref(), Some(&want.node_selector));
    assert_eq!(spec.tolerations.as_ref(), Some(&want.tolerations));
    assert_eq!(spec.affinity, want.affinity);
    assert_eq!(
        spec.topology_spread_constraints,
        want.topology_spread_constraints
    );
    assert_eq!(spec.priority_class_name, want.priority_class_name);
    assert_eq!(
        spec.containers[0].resources, want.resources,
        "the spec's resources replace the defaults"
    );
    let labels = meta.labels.as_ref().unwrap();
    for (k, v) in &want.pod_labels {
        assert_eq!(labels.get(k), Some(v), "pod label {k}");
    }
    assert_eq!(labels["sluice.dev/pipeline"], name, "selector labels kept");
    let annotations = meta.annotations.as_ref().unwrap();
    for (k, v) in &want.pod_annotations {
        assert_eq!(annotations.get(k), Some(v), "pod annotation {k}");
    }

    // The pods themselves: placed by the required affinity, prioritised by admission.
    let selector = format!("sluice.dev/pipeline={name}");
    let placed = wait_for("every worker pod scheduled", TIMEOUT, || async {
        let list = pods
            .list(&ListParams::default().labels(&selector))
            .await
            .ok()?;
        let scheduled: Vec<Pod> = list
            .items
            .into_iter()
            .filter(|p| p.spec.as_ref().is_some_and(|s| s.node_name.is_some()))
            .collect();
        (scheduled.len() == want.min_replicas as usize).then_some(scheduled)
    })
    .await;
    for pod in &placed {
        let s = pod.spec.as_ref().unwrap();
        assert_eq!(s.node_name.as_deref(), Some("kwok-node-1"), "zone-1 only");
        assert_eq!(s.priority, Some(1000), "priority from {}", class.0);
        assert_eq!(
            pod.metadata.labels.as_ref().unwrap().get("team"),
            Some(&"payments".to_string())
        );
    }

    // An empty list: no constraint at all. Unset again: the default spread over nodes.
    let spread = || async {
        let d = deps.get(&format!("{name}-worker")).await.ok()?;
        Some(d.spec.template.spec?.topology_spread_constraints)
    };
    pds.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"workers": {"topologySpreadConstraints": []}}})),
    )
    .await
    .unwrap();
    wait_for("no spread constraint", TIMEOUT, || async {
        spread().await?.is_none().then_some(())
    })
    .await;
    pds.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"workers": {"topologySpreadConstraints": null}}})),
    )
    .await
    .unwrap();
    let default = wait_for("the default spread", TIMEOUT, || async {
        spread().await?.filter(|c| c.len() == 1)
    })
    .await;
    let c = &default[0];
    assert_eq!(c.topology_key, "kubernetes.io/hostname");
    assert_eq!(c.max_skew, 1);
    assert_eq!(c.when_unsatisfiable, "ScheduleAnyway");
    let match_labels = c
        .label_selector
        .as_ref()
        .and_then(|s| s.match_labels.as_ref())
        .unwrap();
    assert_eq!(match_labels["sluice.dev/pipeline"], name);
    assert_eq!(match_labels["app.kubernetes.io/name"], "sluice-worker");
}
