//! `spec.postgres`: where results go.

use kube::KubeSchema;
use schemars::JsonSchema;
use std::collections::BTreeMap;

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
    /// Schema holding the pipeline's tables, so pipelines can share a database. Unset: a
    /// schema of this pipeline's own, `sluice_<namespace>_<name>` (lower case, other
    /// characters as `_`, at most 63 characters). Two pipelines of one namespace on the same
    /// database never share a schema: the later one is Degraded with `SchemaInUse`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = bounds::MAX_SCHEMA_LEN),
        regex(pattern = r"^[a-z_][a-z0-9_]*$")
    )]
    pub schema: Option<String>,
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
    /// PostgreSQL settings (`postgresql.conf`), passed to the Cluster's
    /// `spec.postgresql.parameters`, e.g. `max_connections: "200"`. CloudNativePG refuses the
    /// settings it manages itself. `max_connections` (default 100) is also the budget the
    /// workers' pools are checked against (`ConnectionsOverBudget`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "parameters_schema")]
    pub parameters: BTreeMap<String, String>,
    /// Backups, passed unchanged to the Cluster's `spec.backup` (CloudNativePG's
    /// `BackupConfiguration`: `barmanObjectStore` for an object store, `volumeSnapshot`,
    /// `retentionPolicy`, …); CloudNativePG validates it. Scheduled backups are CloudNativePG
    /// `ScheduledBackup` objects, made by you.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "backup_schema")]
    pub backup: Option<serde_json::Value>,
    /// Have CloudNativePG create a Prometheus Operator `PodMonitor` for the instances
    /// (`spec.monitoring.enablePodMonitor`; needs the Prometheus Operator CRDs).
    #[serde(default)]
    pub enable_pod_monitor: bool,
}

/// `max_connections` of a PostgreSQL left at its default.
pub const POSTGRES_DEFAULT_MAX_CONNECTIONS: i64 = 100;

impl CloudNativePgSpec {
    /// The server's `max_connections`: the parameter when set (and a number), else
    /// PostgreSQL's default.
    pub fn server_max_connections(&self) -> i64 {
        self.parameters
            .get("max_connections")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(POSTGRES_DEFAULT_MAX_CONNECTIONS)
    }
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

impl PostgresSpec {
    /// The schema the pipeline `namespace/name` uses: `spec.postgres.schema`, or its own.
    pub fn schema_of(&self, namespace: &str, name: &str) -> String {
        self.schema
            .clone()
            .unwrap_or_else(|| pipeline_schema(namespace, name))
    }
}

/// `sluice_<namespace>_<name>` as a plain Postgres identifier: lower case, every other
/// character `_`, at most 63 characters (longer names end in a hash of the whole, so two
/// long names sharing a prefix still differ).
pub fn pipeline_schema(namespace: &str, name: &str) -> String {
    let full: String = format!("sluice_{namespace}_{name}")
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '_') => c,
            _ => '_',
        })
        .collect();
    if full.len() <= bounds::MAX_SCHEMA_LEN {
        return full;
    }
    // FNV-1a: stable across releases and platforms, unlike the std hasher.
    let hash = full.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let suffix = format!("_{:08x}", hash as u32);
    format!("{}{suffix}", &full[..bounds::MAX_SCHEMA_LEN - suffix.len()])
}

/// `spec.postgres.cloudnativepg.parameters`: PostgreSQL setting names, string values.
fn parameters_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "maxProperties": 64,
        "additionalProperties": { "type": "string", "maxLength": 1024 },
        "x-kubernetes-validations": [
            {
                "rule": "self.all(k, k.matches('^[a-z_][a-z0-9_.]*$') && k.size() <= 63)",
                "message": "spec.postgres.cloudnativepg.parameters keys must be PostgreSQL setting names (lower case letters, digits, _ and .)",
            },
            {
                "rule": "!('max_connections' in self) || self['max_connections'].matches('^[0-9]+$')",
                "message": "spec.postgres.cloudnativepg.parameters.max_connections must be a whole number",
            },
        ],
    })
}

/// `spec.postgres.cloudnativepg.backup`: CloudNativePG's own schema applies to it there.
fn backup_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
        // Declared so CEL can see them (it cannot see preserved unknown fields).
        "properties": {
            "barmanObjectStore": { "type": "object", "x-kubernetes-preserve-unknown-fields": true },
            "volumeSnapshot": { "type": "object", "x-kubernetes-preserve-unknown-fields": true },
        },
        "x-kubernetes-validations": [
            {
                "rule": "has(self.barmanObjectStore) || has(self.volumeSnapshot)",
                "message": "spec.postgres.cloudnativepg.backup needs barmanObjectStore (object store) or volumeSnapshot",
            },
        ],
    })
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
