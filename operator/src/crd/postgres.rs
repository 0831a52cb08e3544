//! `spec.postgres`: where results go.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sluice_api::WorkerConfig;
use sluice_api::config::bounds;

use super::{SecretKeyRef, worker_default};

/// The database. Set exactly one of `cloudnativepg` and `external`.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[x_kube(validation = Rule::new("has(self.cloudnativepg) != has(self.external)")
    .message("exactly one of spec.postgres.cloudnativepg and spec.postgres.external must be set"))]
#[serde(rename_all = "camelCase")]
pub struct PostgresSpec {
    /// Create a CloudNativePG `Cluster` (1 primary + N read replicas) for this pipeline and use
    /// its `-rw` / `-ro` services. Needs the CloudNativePG operator in the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloudnativepg: Option<CloudNativePgSpec>,
    /// Use an existing database whose connection URLs are in Secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalPostgresSpec>,
    /// Schema holding the pipeline's tables, so pipelines can share a database.
    #[serde(default = "default_schema")]
    #[schemars(
        length(min = 1, max = bounds::MAX_SCHEMA_LEN),
        regex(pattern = r"^[a-z_][a-z0-9_]*$")
    )]
    pub schema: String,
    /// Connections each worker opens to the primary: at least 2 (the writer and partition
    /// maintenance).
    #[serde(default = "default_max_connections")]
    #[schemars(range(min = bounds::MIN_MAX_CONNECTIONS, max = 100))]
    pub max_connections: i32,
    /// Connections of the primary this pipeline's workers may hold in all. The autoscaler
    /// never runs more than `connectionBudget ÷ maxConnections` workers. Unset: no database cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub connection_budget: Option<i32>,
}

/// A CloudNativePG cluster owned by the pipeline.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CloudNativePgSpec {
    /// Read replicas besides the primary (the Cluster gets `1 + readReplicas` instances).
    #[serde(default = "default_read_replicas")]
    #[schemars(range(min = 0, max = 9))]
    pub read_replicas: i32,
    /// Volume size of each instance, e.g. `10Gi`.
    #[serde(default = "default_storage_size")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$"))]
    pub storage_size: String,
    /// StorageClass of the volumes; the cluster default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    /// PostgreSQL image; the CloudNativePG operator's default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_name: Option<String>,
}

/// An existing PostgreSQL reached through URLs kept in Secrets.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExternalPostgresSpec {
    /// Secret key holding the primary's URL (`postgres://user:pass@host:5432/db`); all writes go here.
    pub primary_url: SecretKeyRef,
    /// Secret key holding a read replica's URL for analytics reads; the primary when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_url: Option<SecretKeyRef>,
}

fn default_schema() -> String {
    WorkerConfig::default().postgres.schema
}

fn default_max_connections() -> i32 {
    worker_default(WorkerConfig::default().postgres.max_connections)
}

fn default_read_replicas() -> i32 {
    1
}

fn default_storage_size() -> String {
    "1Gi".into()
}
