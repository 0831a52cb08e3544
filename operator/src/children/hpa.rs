//! The HorizontalPodAutoscaler of an autoscaled pipeline. It reads one External metric, the
//! workers the pipeline needs (`sluice_needed_workers`, served by the operator from its lag
//! readings), with an `AverageValue` target of 1: the HPA's answer is then that number, reached
//! in one step. Scale-up is immediate; scale-down waits for the spec's window, since every
//! change of the worker count costs the consumer group a rebalance.

use std::collections::BTreeMap;

use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, ExternalMetricSource, HPAScalingPolicy, HPAScalingRules,
    HorizontalPodAutoscaler, HorizontalPodAutoscalerBehavior, HorizontalPodAutoscalerSpec,
    MetricIdentifier, MetricSpec, MetricTarget,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::ResourceExt;

use super::{Names, PIPELINE_LABEL, meta};
use crate::crd::PipelineDeployment;
use crate::external_metrics::NEEDED_WORKERS;

/// The autoscaler's ceiling: the spec's `maxReplicas`, but never above `partitions` (what the
/// topic has now, the status' reading, so the ceiling follows a topic that grew; a worker
/// beyond the partition count would idle) and never below `minReplicas`. Shared with the KEDA
/// ScaledObject.
pub fn max_replicas(pd: &PipelineDeployment, partitions: i32) -> i32 {
    let w = &pd.spec.workers;
    w.max_replicas.min(partitions.max(1)).max(w.min_replicas)
}

/// How fast the HPA may move: up to `max` in one step after the spec's scale-up window, down
/// to any size after its scale-down window, with no tolerance band (the metric is already the
/// answer). Shared with the KEDA ScaledObject, whose HPA gets the same behavior.
pub fn behavior(pd: &PipelineDeployment, max: i32) -> HorizontalPodAutoscalerBehavior {
    let a = pd.spec.autoscaling.clone().unwrap_or_default();
    let rules = |window: i32, policy: HPAScalingPolicy| HPAScalingRules {
        stabilization_window_seconds: Some(window),
        select_policy: Some("Max".into()),
        policies: Some(vec![policy]),
        // The metric is already the answer: no 10% dead band around it.
        tolerance: Some(Quantity("0".into())),
    };
    HorizontalPodAutoscalerBehavior {
        // Up to the full size in one step.
        scale_up: Some(rules(
            a.scale_up_stabilization_seconds,
            HPAScalingPolicy {
                type_: "Pods".into(),
                value: max,
                period_seconds: 15,
            },
        )),
        scale_down: Some(rules(
            a.scale_down_stabilization_seconds,
            HPAScalingPolicy {
                type_: "Percent".into(),
                value: 100,
                period_seconds: 15,
            },
        )),
    }
}

/// `partitions`: what the topic has now (see [`max_replicas`]).
pub fn build_hpa(pd: &PipelineDeployment, partitions: i32) -> HorizontalPodAutoscaler {
    let names = Names::of(pd);
    let w = &pd.spec.workers;
    let max = max_replicas(pd, partitions);
    HorizontalPodAutoscaler {
        metadata: meta(pd, &names.worker, "autoscaler"),
        spec: HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: "Deployment".into(),
                name: names.worker.clone(),
            },
            min_replicas: Some(w.min_replicas),
            max_replicas: max,
            metrics: Some(vec![MetricSpec {
                type_: "External".into(),
                external: Some(ExternalMetricSource {
                    metric: MetricIdentifier {
                        name: NEEDED_WORKERS.into(),
                        selector: Some(LabelSelector {
                            match_labels: Some(BTreeMap::from([(
                                PIPELINE_LABEL.into(),
                                pd.name_any(),
                            )])),
                            ..LabelSelector::default()
                        }),
                    },
                    target: MetricTarget {
                        type_: "AverageValue".into(),
                        average_value: Some(Quantity("1".into())),
                        ..MetricTarget::default()
                    },
                }),
                ..MetricSpec::default()
            }]),
            behavior: Some(behavior(pd, max)),
        },
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pd(yaml: &str) -> PipelineDeployment {
        serde_yaml::from_str(yaml).unwrap()
    }

    const PD: &str = r#"
apiVersion: sluice.dev/v1alpha1
kind: PipelineDeployment
metadata: {name: payments, namespace: shop, uid: u1}
spec:
  kafka: {bootstrapServers: "k:9092", topic: payments, partitions: 8}
  workers: {image: "w:1", minReplicas: 1, maxReplicas: 8}
  autoscaling: {enabled: true, scaleDownStabilizationSeconds: 120}
  postgres: {external: {primaryUrl: {name: db, key: url}}}
"#;

    #[test]
    fn targets_the_needed_workers_of_its_pipeline_in_one_step() {
        let hpa = build_hpa(&pd(PD), 8);
        let spec = hpa.spec;
        assert_eq!(spec.scale_target_ref.name, "payments-worker");
        assert_eq!((spec.min_replicas, spec.max_replicas), (Some(1), 8));
        let m = spec.metrics.unwrap()[0].external.clone().unwrap();
        assert_eq!(m.metric.name, NEEDED_WORKERS);
        assert_eq!(m.target.average_value, Some(Quantity("1".into())));
        let b = spec.behavior.unwrap();
        let up = b.scale_up.unwrap();
        assert_eq!(up.stabilization_window_seconds, Some(0));
        assert_eq!(up.policies.unwrap()[0].value, 8);
        assert_eq!(
            b.scale_down.unwrap().stabilization_window_seconds,
            Some(120)
        );
    }

    #[test]
    fn never_above_the_partitions_the_topic_has() {
        assert_eq!(build_hpa(&pd(PD), 4).spec.max_replicas, 4);
        // A topic that grew beyond the spec: the spec's maxReplicas still bounds it.
        assert_eq!(build_hpa(&pd(PD), 16).spec.max_replicas, 8);
    }
}
