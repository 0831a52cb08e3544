//! The `PipelineDeployment` custom resource (`sluice.dev/v1alpha1`).
//!
//! Doc comments here become the CRD's OpenAPI descriptions, so they are what
//! `kubectl explain pipelinedeployment.spec…` prints: write them for the person applying
//! the object. Rules that span fields are CEL `x-kubernetes-validations`, so the API server
//! itself rejects a bad object and names the field.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sluice_api::WorkerConfig;
use sluice_api::config::bounds;

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
}

/// Kafka source of the pipeline.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[x_kube(validation = Rule::new("!self.securityProtocol.startsWith('SASL') || has(self.sasl)")
    .message("spec.kafka.sasl is required when spec.kafka.securityProtocol is SASL_PLAINTEXT or SASL_SSL")
    .field_path(".sasl"))]
#[x_kube(validation = Rule::new("self.topic != '.' && self.topic != '..'")
    .message("spec.kafka.topic cannot be . or .. (Kafka refuses those names)")
    .field_path(".topic"))]
#[serde(rename_all = "camelCase")]
pub struct KafkaSpec {
    /// Comma-separated `host:port` list of brokers, e.g. `kafka-0.kafka:9092,kafka-1.kafka:9092`.
    #[schemars(length(min = 1), regex(pattern = r"\S"))]
    pub bootstrap_servers: String,
    /// Topic of input transactions (keyed by customer id). Immutable: a new topic is a new pipeline.
    /// At most 242 characters, so that the workers' `<topic>.alerts` and `<topic>.dlq` fit
    /// Kafka's 249.
    #[schemars(
        length(min = 1, max = bounds::MAX_INPUT_TOPIC_LEN),
        regex(pattern = r"^[a-zA-Z0-9._-]+$")
    )]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.kafka.topic is immutable"))]
    pub topic: String,
    /// Partitions of the topic: the most workers that can share the load. The operator creates
    /// the topic with this many partitions, or adds partitions; it can never remove them.
    #[serde(default = "default_partitions")]
    #[schemars(range(min = 1, max = 10000))]
    #[x_kube(validation = Rule::new("self >= oldSelf").message("spec.kafka.partitions cannot be decreased (Kafka cannot remove partitions)"))]
    pub partitions: i32,
    /// Replication factor used when the operator creates the topic.
    #[serde(default = "default_replication_factor")]
    #[schemars(range(min = 1, max = 7))]
    pub replication_factor: i32,
    /// Whether the operator creates the topic and grows its partitions through the Kafka admin
    /// API. Turn off when topics are managed elsewhere (e.g. Strimzi KafkaTopic).
    #[serde(default = "default_true")]
    pub manage_topic: bool,
    /// Consumer group shared by the workers. Defaults to `sluice-<namespace>-<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 249), regex(pattern = r"\S"))]
    pub consumer_group: Option<String>,
    /// Kafka `security.protocol`.
    #[serde(default)]
    pub security_protocol: SecurityProtocol,
    /// SASL credentials, read by the workers from a Secret; required for SASL_* protocols.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl: Option<SaslSpec>,
}

/// Kafka `security.protocol`.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SecurityProtocol {
    #[default]
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plaintext => "PLAINTEXT",
            Self::Ssl => "SSL",
            Self::SaslPlaintext => "SASL_PLAINTEXT",
            Self::SaslSsl => "SASL_SSL",
        }
    }
}

/// SASL authentication for Kafka.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SaslSpec {
    /// SASL mechanism.
    #[serde(default)]
    pub mechanism: SaslMechanism,
    /// Secret (same namespace) holding the SASL username.
    pub username: SecretKeyRef,
    /// Secret (same namespace) holding the SASL password.
    pub password: SecretKeyRef,
}

/// SASL mechanism.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SaslMechanism {
    #[default]
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// A key of a Secret in the PipelineDeployment's namespace. The operator never reads it: the
/// worker pods receive it as an environment variable.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Secret name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key within the Secret.
    #[schemars(length(min = 1))]
    pub key: String,
}

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

/// Lag-driven autoscaling. The operator sizes the workers so the backlog drains within
/// `catchUpSeconds` at the measured per-worker rate, never below `lagPerReplica` records each.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalingSpec {
    /// Turns autoscaling on. While on, the operator leaves the worker Deployment's
    /// `spec.replicas` to the HorizontalPodAutoscaler.
    #[serde(default)]
    pub enabled: bool,
    /// Target lag (records) per worker.
    #[serde(default = "default_lag_per_replica")]
    #[schemars(range(min = 1))]
    pub lag_per_replica: i64,
    /// Time in which a backlog should be worked off, in seconds.
    #[serde(default = "default_catch_up_seconds")]
    #[schemars(range(min = 1, max = 86400))]
    pub catch_up_seconds: i32,
    /// Seconds a higher recommendation must persist before scaling up.
    #[serde(default)]
    #[schemars(range(min = 0, max = 3600))]
    pub scale_up_stabilization_seconds: i32,
    /// Seconds a lower recommendation must persist before scaling down (avoids rebalance churn).
    #[serde(default = "default_scale_down_stabilization")]
    #[schemars(range(min = 0, max = 3600))]
    pub scale_down_stabilization_seconds: i32,
    /// Share of a worker's measured capacity the steady input may use; the rest drains
    /// backlogs and absorbs bursts (the Flink autoscaler's target utilisation).
    #[serde(default = "default_target_utilization")]
    #[schemars(range(min = 0.1, max = 1.0))]
    pub target_utilization: f64,
    /// What scales the workers on the operator's sizing. `HPA`: a HorizontalPodAutoscaler
    /// reading the external metric `sluice_needed_workers`, which needs the operator's
    /// external metrics API registered (manifests/external-metrics.yaml). `KEDA`: a KEDA
    /// `ScaledObject` whose `metrics-api` trigger reads the same number over plain HTTP from
    /// the operator's metrics Service, for clusters where KEDA owns the external metrics API
    /// (needs the keda.sh/v1alpha1 CRDs; without them the pipeline is Degraded, `KEDAMissing`).
    #[serde(default)]
    pub provider: AutoscalingProvider,
}

/// What scales an autoscaled pipeline's workers.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AutoscalingProvider {
    #[default]
    #[serde(rename = "HPA")]
    Hpa,
    #[serde(rename = "KEDA")]
    Keda,
}

impl Default for AutoscalingSpec {
    fn default() -> Self {
        Self {
            enabled: false,
            lag_per_replica: default_lag_per_replica(),
            catch_up_seconds: default_catch_up_seconds(),
            scale_up_stabilization_seconds: 0,
            scale_down_stabilization_seconds: default_scale_down_stabilization(),
            provider: AutoscalingProvider::Hpa,
            target_utilization: default_target_utilization(),
        }
    }
}

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

/// Fraud scoring.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FraudSpec {
    /// Score transactions and raise alerts.
    #[serde(default = "default_fraud_enabled")]
    pub enabled: bool,
    /// Score (0–1) at or above which a transaction is flagged.
    #[serde(default = "default_threshold")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub threshold: f64,
    /// Rules switched off by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disabled_rules: Vec<String>,
}

impl Default for FraudSpec {
    fn default() -> Self {
        Self {
            enabled: default_fraud_enabled(),
            threshold: default_threshold(),
            disabled_rules: Vec::new(),
        }
    }
}

/// Data-quality rules.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct QualitySpec {
    /// Event times further than this many seconds in the future are rejected.
    #[serde(default = "default_future_skew")]
    #[schemars(range(min = 0, max = 86400))]
    pub max_future_skew_seconds: i64,
    /// Days of transactions kept; older events are rejected and older partitions dropped.
    #[serde(default = "default_retention_days")]
    #[schemars(range(min = bounds::MIN_RETENTION_DAYS, max = 3650))]
    pub retention_days: i32,
    /// Events up to this many seconds behind the newest event time of their partition are
    /// still folded into the per-minute analytics; later ones are stored but counted as late.
    #[serde(default = "default_allowed_lateness")]
    #[schemars(range(min = 0, max = 86400))]
    pub allowed_lateness_seconds: i64,
}

impl Default for QualitySpec {
    fn default() -> Self {
        Self {
            max_future_skew_seconds: default_future_skew(),
            retention_days: default_retention_days(),
            allowed_lateness_seconds: default_allowed_lateness(),
        }
    }
}

/// Monitoring objects. ServiceMonitor and PrometheusRule are created only when the Prometheus
/// Operator CRDs exist in the cluster; when one is wanted but its CRD is missing, the
/// `MonitoringReady` condition is False (reason `PrometheusOperatorMissing`) and a Warning
/// Event names the missing CRD. CRDs installed later are picked up within a minute.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MonitoringSpec {
    /// Create a ServiceMonitor scraping the workers' /metrics.
    #[serde(default = "default_true")]
    pub service_monitor: bool,
    /// Create a PrometheusRule with the pipeline's recording rules and alerts (lag, time lag,
    /// no progress, workers down or restarting, fraud spike, quality, database and DLQ errors,
    /// autoscaler at its maximum, replica lag).
    #[serde(default = "default_true")]
    pub prometheus_rule: bool,
    /// Extra labels on the ServiceMonitor and the PrometheusRule, so a Prometheus selects them;
    /// e.g. `release: kube-prometheus-stack` for kube-prometheus-stack's default selectors. The
    /// operator's own `app.kubernetes.io/*` and `sluice.dev/pipeline` labels cannot be set here.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "monitoring_labels_schema")]
    pub labels: BTreeMap<String, String>,
    /// Thresholds of the PrometheusRule's alerts.
    #[serde(default)]
    pub alerts: AlertThresholds,
    /// Create a ConfigMap labelled `grafana_dashboard: "1"` holding the pipeline's dashboard.
    #[serde(default = "default_true")]
    pub grafana_dashboard: bool,
    /// Scrape interval of the ServiceMonitor, e.g. `30s`.
    #[serde(default = "default_scrape_interval")]
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h)$"))]
    pub scrape_interval: String,
    /// Consumer lag (records) above which the `SluiceConsumerLagHigh` alert fires (and a tenth
    /// of which `SluiceConsumerLagGrowing` needs).
    #[serde(default = "default_alert_lag")]
    #[schemars(range(min = 1))]
    pub alert_lag_threshold: i64,
}

impl Default for MonitoringSpec {
    fn default() -> Self {
        Self {
            service_monitor: true,
            prometheus_rule: true,
            grafana_dashboard: true,
            scrape_interval: default_scrape_interval(),
            alert_lag_threshold: default_alert_lag(),
            labels: BTreeMap::new(),
            alerts: AlertThresholds::default(),
        }
    }
}

/// Thresholds of the pipeline's alerts, for the people who run it to tune.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AlertThresholds {
    /// Time lag (age of the oldest record not yet committed), in seconds, above which
    /// `SluiceTimeLagHigh` fires.
    #[serde(default = "default_time_lag_alert")]
    #[schemars(range(min = 1, max = 86400))]
    pub time_lag_seconds: i64,
    /// `SluiceFraudRateSpike` fires when the share of transactions flagged as fraud over the
    /// last 15 minutes exceeds this many times its own average over the last 6 hours.
    #[serde(default = "default_fraud_spike_factor")]
    #[schemars(range(min = 1.1, max = 1000.0))]
    pub fraud_spike_factor: f64,
    /// `SluiceQualityScoreLow` fires when accepted ÷ all records over 10 minutes stays below this.
    #[serde(default = "default_min_quality_score")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub min_quality_score: f64,
    /// `SluiceDLQRateHigh` fires when more than this share of the records consumed goes to the DLQ.
    #[serde(default = "default_max_dlq_ratio")]
    #[schemars(range(min = 0.0001, max = 1.0))]
    pub max_dlq_ratio: f64,
    /// Replication lag of a CloudNativePG read replica, in seconds, above which
    /// `SluiceReplicaLagHigh` fires (pipelines with `spec.postgres.cloudnativepg` only).
    #[serde(default = "default_replica_lag_alert")]
    #[schemars(range(min = 1, max = 86400))]
    pub replica_lag_seconds: i64,
}

impl Default for AlertThresholds {
    fn default() -> Self {
        Self {
            time_lag_seconds: default_time_lag_alert(),
            fraud_spike_factor: default_fraud_spike_factor(),
            min_quality_score: default_min_quality_score(),
            max_dlq_ratio: default_max_dlq_ratio(),
            replica_lag_seconds: default_replica_lag_alert(),
        }
    }
}

fn default_time_lag_alert() -> i64 {
    300
}
fn default_fraud_spike_factor() -> f64 {
    3.0
}
fn default_min_quality_score() -> f64 {
    0.9
}
fn default_max_dlq_ratio() -> f64 {
    0.05
}
fn default_replica_lag_alert() -> i64 {
    30
}

/// `spec.monitoring.labels`: at most 32 labels with Kubernetes label syntax, none of the
/// operator's own.
fn monitoring_labels_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "maxProperties": 32,
        "additionalProperties": {
            "type": "string",
            "maxLength": 63,
            "pattern": "^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$",
        },
        "x-kubernetes-validations": [
            {
                "rule": "self.all(k, k.size() <= 317 && k.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$'))",
                "message": "spec.monitoring.labels keys must be Kubernetes label keys ([prefix/]name, name at most 63 characters)",
            },
            {
                "rule": "self.all(k, !k.startsWith('app.kubernetes.io/') && k != 'sluice.dev/pipeline')",
                "message": "spec.monitoring.labels cannot set the operator's own labels (app.kubernetes.io/*, sluice.dev/pipeline)",
            },
        ],
    })
}

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

fn default_target_utilization() -> f64 {
    0.7
}
fn default_true() -> bool {
    true
}
fn default_partitions() -> i32 {
    12
}
fn default_replication_factor() -> i32 {
    1
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
// Defaults of fields that become worker settings are the worker's own (`sluice_api`).
fn default_batch_records() -> i32 {
    worker_default(WorkerConfig::default().batch.max_records)
}
fn default_batch_wait_ms() -> i32 {
    worker_default(WorkerConfig::default().batch.max_wait_ms)
}
fn default_lag_per_replica() -> i64 {
    10_000
}
fn default_catch_up_seconds() -> i32 {
    60
}
fn default_scale_down_stabilization() -> i32 {
    300
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
fn default_fraud_enabled() -> bool {
    WorkerConfig::default().fraud.enabled
}
fn default_threshold() -> f64 {
    WorkerConfig::default().fraud.threshold
}
fn default_future_skew() -> i64 {
    WorkerConfig::default().validation.max_future_skew_secs
}
fn default_allowed_lateness() -> i64 {
    worker_default(WorkerConfig::default().analytics.allowed_lateness_secs)
}
fn default_retention_days() -> i32 {
    worker_default(WorkerConfig::default().retention.days)
}
/// A worker default in the CRD's integer type.
fn worker_default<T: TryInto<U>, U>(value: T) -> U {
    value
        .try_into()
        .unwrap_or_else(|_| panic!("a worker default fits its CRD field"))
}
fn default_scrape_interval() -> String {
    "30s".into()
}
fn default_alert_lag() -> i64 {
    100_000
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
