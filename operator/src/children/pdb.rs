//! The PodDisruptionBudget: node drains evict at most one worker at a time, so a drain costs
//! one consumer-group rebalance per pod instead of a stop of the whole pipeline.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Names, meta, selector_labels};
use crate::crd::PipelineDeployment;

pub fn build_pdb(pd: &PipelineDeployment) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: meta(pd, &Names::of(pd).worker, "worker"),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(pd)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    }
}
