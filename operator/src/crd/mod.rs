//! The `PipelineDeployment` custom resource (`sluice.dev/v1alpha1`).
//!
//! Doc comments here become the CRD's OpenAPI descriptions, so they are what
//! `kubectl explain pipelinedeployment.spec…` prints: write them for the person applying
//! the object. Rules that span fields are CEL `x-kubernetes-validations`, so the API server
//! itself rejects a bad object and names the field.
//!
//! One file per section of the spec (`kafka`, `workers`, `autoscaling`, `postgres`,
//! `records` for fraud and quality, `monitoring`) and `status`. Fields that become worker
//! settings take their defaults and bounds from `sluice_api`, so the API server refuses
//! what a worker would (`WorkerConfig::validate`).

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod autoscaling;
mod kafka;
mod monitoring;
mod postgres;
mod records;
mod status;
mod topic_settings;
mod workers;

pub use autoscaling::{AutoscalingProvider, AutoscalingSpec};
pub use kafka::{KafkaSpec, KafkaTls, SaslMechanism, SaslSpec, SecretKeyRef, SecurityProtocol};
pub use monitoring::{AlertThresholds, MonitoringSpec};
pub use postgres::{
    CloudNativePgSpec, ExternalPostgresSpec, POSTGRES_DEFAULT_MAX_CONNECTIONS, PostgresSpec,
    pipeline_schema,
};
pub use records::{FraudSpec, QualitySpec};
pub use status::{AutoscalingStatus, PipelineDeploymentStatus};
pub use topic_settings::{TopicSettings, TopicSettingsSpec};
pub use workers::{BatchSpec, PullPolicy, WorkersSpec};

/// Desired state of one sluice pipeline: a Kafka topic consumed by a group of workers that
/// land validated, fraud-scored transactions in Postgres.
// The printcolumn(...) entries repeat `type_ = …` by design; clippy reads them as duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    kind = "PipelineDeployment",
    plural = "pipelinedeployments",
    shortname = "pd",
    category = "sluice",
    namespaced,
    status = "PipelineDeploymentStatus",
    derive = "PartialEq",
    doc = "A sluice pipeline: Kafka topic → worker Deployment → Postgres, reconciled by sluice-operator.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Workers",
        type_ = "integer",
        json_path = ".status.readyReplicas",
        description = "Worker pods ready"
    ),
    printcolumn(
        name = "Desired",
        type_ = "integer",
        json_path = ".status.desiredReplicas",
        description = "Worker pods wanted (by the operator or, when autoscaled, the HPA)"
    ),
    printcolumn(
        name = "Partitions",
        type_ = "integer",
        json_path = ".status.topicPartitions",
        priority = 1
    ),
    printcolumn(
        name = "Lag",
        type_ = "integer",
        json_path = ".status.lag",
        description = "Records not yet committed by the consumer group"
    ),
    printcolumn(
        name = "Behind",
        type_ = "string",
        json_path = ".status.lagDuration",
        description = "Age of the oldest record not yet committed (time lag)"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("self.workers.minReplicas <= self.workers.maxReplicas")
    .message("spec.workers.minReplicas must be less than or equal to spec.workers.maxReplicas")
    .field_path(".workers.minReplicas"))]
#[x_kube(validation = Rule::new("self.workers.maxReplicas <= self.kafka.partitions")
    .message("spec.workers.maxReplicas must not exceed spec.kafka.partitions: a partition is consumed by one worker, extra workers would idle")
    .field_path(".workers.maxReplicas"))]
#[x_kube(validation = Rule::new("!has(self.autoscaling) || !self.autoscaling.enabled || self.workers.minReplicas < self.workers.maxReplicas")
    .message("spec.autoscaling.enabled needs spec.workers.minReplicas < spec.workers.maxReplicas")
    .field_path(".autoscaling.enabled"))]
#[serde(rename_all = "camelCase")]
pub struct PipelineDeploymentSpec {
    /// Where transactions come from.
    pub kafka: KafkaSpec,
    /// The worker pods that consume the topic.
    pub workers: WorkersSpec,
    /// Lag-driven autoscaling of the workers (between minReplicas and maxReplicas).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingSpec>,
    /// Where results go: a CloudNativePG cluster created for this pipeline, or an existing
    /// database.
    pub postgres: PostgresSpec,
    /// Fraud scoring.
    #[serde(default)]
    pub fraud: FraudSpec,
    /// Data-quality rules applied before anything is stored.
    #[serde(default)]
    pub quality: QualitySpec,
    /// Prometheus Operator objects and the Grafana dashboard.
    #[serde(default)]
    pub monitoring: MonitoringSpec,
    /// What deleting this pipeline does to its data. `Retain` (default): the CloudNativePG
    /// Cluster (it has no owner reference, so garbage collection never takes it), the Kafka
    /// topics and the consumer group stay; re-creating the pipeline with the same name picks
    /// them up again. `Delete`: the operator removes what sluice made (the CloudNativePG
    /// Cluster, the DLQ and alerts topics, the input topic if the operator created it, the
    /// consumer group) before the pipeline goes, through a finalizer that gives up after 5
    /// minutes with a Warning Event naming what is left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,
}

/// What deleting a pipeline does to its data.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeletionPolicy {
    /// Keep the database, the topics and the consumer group.
    #[default]
    Retain,
    /// Remove what sluice made.
    Delete,
}

fn default_true() -> bool {
    true
}

/// A worker default (`sluice_api::WorkerConfig::default()`) in the CRD's integer type: the
/// defaults of fields that become worker settings are the worker's own, written once.
fn worker_default<T: TryInto<U>, U>(value: T) -> U {
    value
        .try_into()
        .unwrap_or_else(|_| panic!("a worker default fits its CRD field"))
}

impl PipelineDeployment {
    /// Consumer group of the workers.
    pub fn consumer_group(&self) -> String {
        self.spec.kafka.consumer_group.clone().unwrap_or_else(|| {
            format!(
                "sluice-{}-{}",
                self.metadata.namespace.as_deref().unwrap_or("default"),
                self.metadata.name.as_deref().unwrap_or_default()
            )
        })
    }

    /// The Postgres schema of the pipeline's tables (`spec.postgres.schema` or its own).
    pub fn schema(&self) -> String {
        self.spec.postgres.schema_of(
            self.metadata.namespace.as_deref().unwrap_or("default"),
            self.metadata.name.as_deref().unwrap_or_default(),
        )
    }

    /// `spec.deletionPolicy`, `Retain` when unset.
    pub fn deletion_policy(&self) -> DeletionPolicy {
        self.spec.deletion_policy.unwrap_or_default()
    }

    /// Whether an autoscaler, not the operator, owns the worker count.
    pub fn autoscaled(&self) -> bool {
        self.spec.autoscaling.as_ref().is_some_and(|a| a.enabled)
    }
}

/// The CRD, with doc-comment line breaks joined so `kubectl explain` wraps text itself
/// (paragraph breaks are kept).
pub fn crd()
-> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    use kube::CustomResourceExt;
    let mut value = serde_json::to_value(PipelineDeployment::crd()).expect("CRD serializes");
    join_description_lines(&mut value);
    serde_json::from_value(value).expect("CRD deserializes")
}

fn join_description_lines(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                match child {
                    serde_json::Value::String(s) if k == "description" => {
                        *s = s
                            .split("\n\n")
                            .map(|p| p.split('\n').collect::<Vec<_>>().join(" "))
                            .collect::<Vec<_>>()
                            .join("\n\n");
                    }
                    _ => join_description_lines(child),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(join_description_lines),
        _ => {}
    }
}

/// The CRD as YAML, exactly as `crdgen` prints it and `crds/` stores it.
pub fn crd_yaml() -> String {
    serde_yaml::to_string(&crd()).expect("CRD serializes")
}
