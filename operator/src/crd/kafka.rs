//! `spec.kafka`: the topic the pipeline consumes and how to reach its brokers.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sluice_api::config::bounds;

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
    #[serde(default = "super::default_true")]
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

fn default_partitions() -> i32 {
    12
}

fn default_replication_factor() -> i32 {
    1
}
