//! `spec.workers`: the worker pods, where they may run, and how they batch their writes.
//!
//! The scheduling knobs (`tolerations`, `affinity`, `topologySpreadConstraints`, …) are
//! Kubernetes' own types, so the CRD carries the upstream OpenAPI schema. That schema types
//! fields but bounds little (an operator is any string, a skew any integer), and a bad value
//! would only surface when the Deployment is applied. `pod_schema` adds the enums, minimums
//! and CEL rules the API server applies to a Pod, so it refuses the PipelineDeployment itself
//! and names the field.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, LocalObjectReference, ResourceRequirements, Toleration, TopologySpreadConstraint,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sluice_api::WorkerConfig;

use super::worker_default;

mod pod_schema;

/// The worker pods.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WorkersSpec {
    /// Container image of `sluice-worker`, e.g. `ghcr.io/example/sluice-worker:0.1.0`.
    #[schemars(length(min = 1))]
    pub image: String,
    /// Image pull policy (Always, IfNotPresent, Never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,
    /// Fewest workers. Without autoscaling this is the replica count.
    #[serde(default = "default_min_replicas")]
    #[schemars(range(min = 0, max = 1000))]
    pub min_replicas: i32,
    /// Most workers autoscaling may run; at most spec.kafka.partitions.
    #[serde(default = "default_max_replicas")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: i32,
    /// CPU and memory of each worker container. Defaults: requests 250m / 256Mi, limits 1 CPU / 512Mi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "pod_schema::resources")]
    pub resources: Option<ResourceRequirements>,
    /// Secrets (same namespace) holding registry credentials for pulling `image`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "pod_schema::image_pull_secrets")]
    pub image_pull_secrets: Vec<LocalObjectReference>,
    /// Node labels a node must carry to run a worker, e.g. `kubernetes.io/arch: amd64`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "pod_schema::node_selector")]
    pub node_selector: BTreeMap<String, String>,
    /// Taints the workers tolerate, e.g. of nodes dedicated to streaming.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "pod_schema::tolerations")]
    pub tolerations: Vec<Toleration>,
    /// Node affinity and pod (anti-)affinity of the workers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "pod_schema::affinity")]
    pub affinity: Option<Affinity>,
    /// How the workers spread over the cluster. Unset: across nodes (`kubernetes.io/hostname`,
    /// maxSkew 1, ScheduleAnyway, selecting this pipeline's workers), so losing a node loses as
    /// few workers as possible. An empty list sets no constraint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "pod_schema::topology_spread_constraints")]
    pub topology_spread_constraints: Option<Vec<TopologySpreadConstraint>>,
    /// Extra annotations on the worker pods (e.g. for a service mesh or log shipper).
    /// `sluice.dev/*` keys are the operator's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "pod_schema::pod_annotations")]
    pub pod_annotations: BTreeMap<String, String>,
    /// Extra labels on the worker pods. The operator's own (`app.kubernetes.io/name`,
    /// `instance`, `component`, `part-of`, `managed-by`, `sluice.dev/*`) cannot be set: the
    /// Deployment, Service and PodDisruptionBudget select the workers by them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "pod_schema::pod_labels")]
    pub pod_labels: BTreeMap<String, String>,
    /// PriorityClass of the worker pods, e.g. to keep them ahead of batch jobs under pressure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub priority_class_name: Option<String>,
    /// How the workers batch their database writes.
    #[serde(default)]
    pub batch: BatchSpec,
    /// Log filter of the workers (`RUST_LOG` syntax), e.g. `info` or `sluice_worker=debug`.
    #[serde(default = "default_log_level")]
    pub log_level: String,
}

/// Image pull policy.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

/// Batching of database writes: a batch is written when either bound is reached.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BatchSpec {
    /// Records per batch (one Postgres transaction).
    #[serde(default = "default_batch_records")]
    #[schemars(range(min = 1, max = 100000))]
    pub max_records: i32,
    /// Longest a record waits for its batch, in milliseconds: bounds latency at low rates.
    #[serde(default = "default_batch_wait_ms")]
    #[schemars(range(min = 1, max = 60000))]
    pub max_wait_ms: i32,
}

impl Default for BatchSpec {
    fn default() -> Self {
        Self {
            max_records: default_batch_records(),
            max_wait_ms: default_batch_wait_ms(),
        }
    }
}

fn default_min_replicas() -> i32 {
    1
}

fn default_max_replicas() -> i32 {
    4
}

fn default_log_level() -> String {
    "info".into()
}

fn default_batch_records() -> i32 {
    worker_default(WorkerConfig::default().batch.max_records)
}

fn default_batch_wait_ms() -> i32 {
    worker_default(WorkerConfig::default().batch.max_wait_ms)
}
