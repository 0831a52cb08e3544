//! The optional children (CloudNativePG `Cluster`, `ServiceMonitor`, `PrometheusRule`, KEDA
//! `ScaledObject`) as the builders make them pass strict server-side validation against those
//! projects' real CRDs, taken from their published Go modules.

mod common;

use common::*;
use kube::ResourceExt;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use sluice_operator::children::{cnpg, keda, monitoring};

#[tokio::test]
async fn optional_children_validate_against_upstream_crds() {
    let ns = TestNs::new("op-upstream").await;
    let mut pd = example("cloudnativepg.yaml");
    pd.metadata.namespace = Some(ns.name.clone());
    pd.metadata.uid = Some("00000000-0000-0000-0000-00000000beef".into());
    pd.spec.autoscaling = Some(
        serde_json::from_value(serde_json::json!({
            "enabled": true, "provider": "KEDA", "scaleUpStabilizationSeconds": 30,
        }))
        .unwrap(),
    );
    let objects: Vec<(ApiResource, DynamicObject)> = vec![
        (cnpg::api_resource(), cnpg::build_cnpg_cluster(&pd).unwrap()),
        (
            monitoring::service_monitor_resource(),
            monitoring::build_service_monitor(&pd),
        ),
        (
            monitoring::prometheus_rule_resource(),
            monitoring::build_prometheus_rule(&pd),
        ),
        (
            keda::api_resource(),
            keda::build_scaled_object(&pd, 3, "sluice-system"),
        ),
    ];
    // Dry run, strict: unknown or mistyped fields are errors, not silently pruned.
    let pp = PatchParams::apply("sluice-e2e")
        .dry_run()
        .validation_strict();
    for (ar, mut obj) in objects {
        obj.metadata.owner_references = None; // the fake owner does not exist
        let mut body = serde_json::to_value(&obj).unwrap();
        body["apiVersion"] = ar.api_version.clone().into();
        body["kind"] = ar.kind.clone().into();
        let api = Api::<DynamicObject>::namespaced_with(ns.client.clone(), &ns.name, &ar);
        let stored = api
            .patch(&obj.name_any(), &pp, &Patch::Apply(body))
            .await
            .unwrap_or_else(|e| panic!("{} rejected by the upstream CRD: {e}", ar.kind));
        assert_eq!(stored.types.as_ref().unwrap().kind, ar.kind);
    }
}
