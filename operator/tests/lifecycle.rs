//! A pipeline over its life: spec changes flow to the children (a config change rolls the
//! workers), deleted or hand-edited children are put back, unwanted children are pruned, and
//! deleting the pipeline lets the real garbage collector remove everything it owned.

mod common;

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::json;
use sluice_operator::children::{CONFIG_HASH_ANNOTATION, monitoring};
use sluice_operator::crd::PipelineDeployment;

fn config_hash(d: &Deployment) -> Option<String> {
    d.spec
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(CONFIG_HASH_ANNOTATION)
        .cloned()
}

#[tokio::test]
async fn children_follow_the_pipeline_and_are_repaired() {
    let ns = TestNs::new("op-lifecycle").await;
    let _op = Operator::start(&ns.name, "lifecycle");
    let pds: Api<PipelineDeployment> = ns.api();
    let deps: Api<Deployment> = ns.api();
    let cms: Api<ConfigMap> = ns.api();
    let svcs: Api<Service> = ns.api();
    let mut pd = example("external-postgres.yaml");
    unique_topic(&mut pd, &ns.name);
    pds.create(&PostParams::default(), &pd).await.unwrap();
    wait_ready(&pds, "payments", "True", None).await;
    let before = deps.get("payments-worker").await.unwrap();
    let hash0 = config_hash(&before).expect("config hash annotation");

    // Change the CR: config (→ new ConfigMap content and a rollout) and the worker count.
    let user = PatchParams::default();
    pds.patch(
        "payments",
        &user,
        &Patch::Merge(
            json!({"spec": {"fraud": {"threshold": 0.9}, "workers": {"minReplicas": 3}}}),
        ),
    )
    .await
    .unwrap();
    let after = wait_for("Deployment follows the CR", TIMEOUT, || async {
        let d = deps.get("payments-worker").await.ok()?;
        (d.spec.replicas == Some(3) && config_hash(&d).is_some_and(|h| h != hash0)).then_some(d)
    })
    .await;
    assert_ne!(
        before.spec.template, after.spec.template,
        "pod template changed: the workers roll"
    );
    let cm = cms.get("payments-config").await.unwrap();
    assert!(cm.data.unwrap()["config.yaml"].contains("threshold: 0.9"));
    wait_ready(&pds, "payments", "True", None).await;

    // Delete a child → recreated.
    let old_uid = svcs.get("payments-metrics").await.unwrap().uid();
    svcs.delete("payments-metrics", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("Service recreated", TIMEOUT, || async {
        let s = svcs.get_opt("payments-metrics").await.ok()??;
        (s.uid() != old_uid).then_some(())
    })
    .await;

    // Hand-edit children (as another manager) → repaired.
    let hand = PatchParams {
        field_manager: Some("kubectl-edit".into()),
        ..PatchParams::default()
    };
    deps.patch(
        "payments-worker",
        &hand,
        &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "worker", "image": "evil:latest"}]}}}})),
    )
    .await
    .unwrap();
    cms.patch(
        "payments-config",
        &hand,
        &Patch::Merge(json!({"data": {"config.yaml": "pipeline: hacked\n"}})),
    )
    .await
    .unwrap();
    wait_for("hand edits repaired", TIMEOUT, || async {
        let d = deps.get("payments-worker").await.ok()?;
        let cm = cms.get("payments-config").await.ok()?;
        let image = d.spec.template.spec.as_ref()?.containers[0].image.clone()?;
        (image == pd.spec.workers.image && cm.data?["config.yaml"].contains("pipeline: payments"))
            .then_some(())
    })
    .await;

    // A child no longer wanted is pruned: turn the dashboard and ServiceMonitor off.
    pds.patch(
        "payments",
        &user,
        &Patch::Merge(
            json!({"spec": {"monitoring": {"grafanaDashboard": false, "serviceMonitor": false}}}),
        ),
    )
    .await
    .unwrap();
    let sms = Api::<DynamicObject>::namespaced_with(
        ns.client.clone(),
        &ns.name,
        &monitoring::service_monitor_resource(),
    );
    wait_for("dashboard and ServiceMonitor pruned", TIMEOUT, || async {
        let gone = cms.get_opt("payments-dashboard").await.ok()?.is_none()
            && sms.get_opt("payments").await.ok()?.is_none();
        gone.then_some(())
    })
    .await;

    // Delete the CR → the garbage collector (kube-controller-manager) removes the children.
    pds.delete("payments", &DeleteParams::background())
        .await
        .unwrap();
    wait_for(
        "children garbage-collected",
        Duration::from_secs(90),
        || async {
            let gone = deps.get_opt("payments-worker").await.ok()?.is_none()
                && cms.get_opt("payments-config").await.ok()?.is_none()
                && svcs.get_opt("payments-metrics").await.ok()?.is_none();
            gone.then_some(())
        },
    )
    .await;
}

use std::time::Duration;
