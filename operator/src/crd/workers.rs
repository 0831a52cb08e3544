//! `spec.workers`: the worker pods and how they batch their writes.

use k8s_openapi::api::core::v1::ResourceRequirements;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sluice_api::WorkerConfig;

use super::worker_default;

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
    pub resources: Option<ResourceRequirements>,
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
