//! The KEDA `ScaledObject` of a pipeline autoscaled with `provider: KEDA`, for clusters where
//! KEDA owns the external metrics API. Its one `metrics-api` trigger reads the same sizing as
//! the HPA's external metric, over plain HTTP from the operator's metrics Service
//! (`GET /api/v1/sizing/{namespace}/{name}` → `neededWorkers`), with an `AverageValue` target
//! of 1: the answer is that number of workers. Bounds and scaling behavior are the HPA's
//! ([`hpa::max_replicas`], [`hpa::behavior`]). Built as a dynamic object and applied only
//! when the keda.sh/v1alpha1 CRDs exist in the cluster.

use kube::ResourceExt;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::json;

use super::{Names, hpa, meta};
use crate::crd::PipelineDeployment;
use crate::metrics::SIZING_PATH;

/// Name of the operator's metrics Service (charts/sluice/templates/deployment.yaml).
pub const OPERATOR_METRICS_SERVICE: &str = "sluice-operator-metrics";
/// Port of that Service (the operator's `--metrics-addr`).
pub const OPERATOR_METRICS_PORT: u16 = 8080;

pub fn api_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("keda.sh", "v1alpha1", "ScaledObject"),
        "scaledobjects",
    )
}

/// The namespace the operator runs in (`POD_NAMESPACE`, else `sluice-system`), where its
/// metrics Service is.
pub fn operator_namespace() -> String {
    std::env::var("POD_NAMESPACE")
        .ok()
        .filter(|ns| !ns.is_empty())
        .unwrap_or_else(|| "sluice-system".into())
}

/// The URL the trigger reads `pd`'s sizing from.
pub fn sizing_url(pd: &PipelineDeployment, operator_namespace: &str) -> String {
    format!(
        "http://{OPERATOR_METRICS_SERVICE}.{operator_namespace}.svc:{OPERATOR_METRICS_PORT}{SIZING_PATH}/{}/{}",
        pd.namespace().unwrap_or_default(),
        pd.name_any()
    )
}

/// `partitions`: what the topic has now (see [`hpa::max_replicas`]).
pub fn build_scaled_object(
    pd: &PipelineDeployment,
    partitions: i32,
    operator_namespace: &str,
) -> DynamicObject {
    let names = Names::of(pd);
    let max = hpa::max_replicas(pd, partitions);
    let behavior = serde_json::to_value(hpa::behavior(pd, max)).expect("HPA behavior serializes");
    let mut obj = DynamicObject::new(&names.worker, &api_resource()).data(json!({
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": names.worker,
            },
            "minReplicaCount": pd.spec.workers.min_replicas,
            "maxReplicaCount": max,
            "advanced": {
                "horizontalPodAutoscalerConfig": { "behavior": behavior },
            },
            "triggers": [{
                "type": "metrics-api",
                "metricType": "AverageValue",
                "metadata": {
                    "url": sizing_url(pd, operator_namespace),
                    "format": "json",
                    "valueLocation": "neededWorkers",
                    "targetValue": "1",
                },
            }],
        }
    }));
    obj.metadata = meta(pd, &names.worker, "autoscaler");
    obj
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::children::testing::pipeline;

    const PD: &str = r#"
apiVersion: sluice.dev/v1alpha1
kind: PipelineDeployment
metadata: {name: payments, namespace: shop}
spec:
  kafka: {bootstrapServers: "k:9092", topic: payments, partitions: 8}
  workers: {image: "w:1", minReplicas: 2, maxReplicas: 8}
  autoscaling: {enabled: true, provider: KEDA, scaleDownStabilizationSeconds: 120}
  postgres: {external: {primaryUrl: {name: db, key: url}}}
"#;

    #[test]
    fn reads_the_operators_sizing_of_its_pipeline() {
        let so = build_scaled_object(&pipeline(PD), 8, "ops");
        assert_eq!(so.name_any(), "payments-worker");
        assert_eq!(so.namespace().as_deref(), Some("shop"));
        assert_eq!(so.owner_references().len(), 1);
        let spec = &so.data["spec"];
        assert_eq!(spec["scaleTargetRef"]["name"], "payments-worker");
        assert_eq!(spec["scaleTargetRef"]["kind"], "Deployment");
        assert_eq!(
            (&spec["minReplicaCount"], &spec["maxReplicaCount"]),
            (&json!(2), &json!(8))
        );
        let triggers = spec["triggers"].as_array().unwrap();
        assert_eq!(triggers.len(), 1);
        let t = &triggers[0];
        assert_eq!(t["type"], "metrics-api");
        assert_eq!(t["metricType"], "AverageValue");
        assert_eq!(
            t["metadata"],
            json!({
                "url": "http://sluice-operator-metrics.ops.svc:8080/api/v1/sizing/shop/payments",
                "format": "json",
                "valueLocation": "neededWorkers",
                "targetValue": "1",
            })
        );
    }

    #[test]
    fn bounds_and_behavior_are_the_hpas() {
        let pd = pipeline(PD);
        for partitions in [4, 8, 16] {
            let so = build_scaled_object(&pd, partitions, "ops");
            let hpa = hpa::build_hpa(&pd, partitions).spec;
            assert_eq!(so.data["spec"]["maxReplicaCount"], json!(hpa.max_replicas));
            assert_eq!(so.data["spec"]["minReplicaCount"], json!(hpa.min_replicas));
            assert_eq!(
                so.data["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"],
                serde_json::to_value(hpa.behavior.unwrap()).unwrap()
            );
        }
        let so = build_scaled_object(&pd, 4, "ops");
        let b = &so.data["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"];
        assert_eq!(b["scaleUp"]["policies"][0]["value"], 4);
        assert_eq!(b["scaleDown"]["stabilizationWindowSeconds"], 120);
    }
}
