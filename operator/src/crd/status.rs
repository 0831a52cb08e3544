//! `status`: what the operator observed, written only by it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Observed state, written only by the operator.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PipelineDeploymentStatus {
    /// `metadata.generation` of the spec the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Progressing` and `Degraded`, following the Kubernetes API conventions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Worker replicas the operator (or the autoscaler) wants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_replicas: Option<i32>,
    /// Worker replicas ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// Partitions the topic has (may exceed spec.kafka.partitions, never less once ensured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_partitions: Option<i32>,
    /// Consumer lag in records, summed over partitions (set by the autoscaler). Absent while
    /// the lag is unknown (see the `LagKnown` condition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<i64>,
    /// Seconds the oldest record not yet committed has waited: how far behind the pipeline
    /// is in time. Absent while the lag is unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<f64>,
    /// `lagSeconds` for people, e.g. `3m12s` (the `Behind` column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_duration: Option<String>,
    /// The autoscaler's latest reading and sizing, served to the HorizontalPodAutoscaler as
    /// the external metric `sluice_needed_workers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingStatus>,
    /// Service of the primary the workers write to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_service: Option<String>,
}

/// What the autoscaler last measured and decided.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalingStatus {
    /// When the offsets behind these figures were read (RFC 3339).
    pub sampled_at: String,
    /// Workers needed to drain the backlog within catchUpSeconds while keeping up with the
    /// input; absent while the lag is unknown (the HPA then holds its size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub needed_workers: Option<i32>,
    /// Why that number, in words (the rule, its inputs and the cap that bound it).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Records per second arriving on the topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_rate: Option<f64>,
    /// Records per second the group commits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processing_rate: Option<f64>,
    /// Records per second one busy worker commits (measured while there was a backlog).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_worker_rate: Option<f64>,
}
