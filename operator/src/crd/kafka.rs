//! `spec.kafka`: the topic the pipeline consumes and how to reach its brokers.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sluice_api::config::bounds;

use super::topic_settings::TopicSettingsSpec;

/// Kafka source of the pipeline.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[x_kube(validation = Rule::new("!self.securityProtocol.startsWith('SASL') || has(self.sasl)")
    .message("spec.kafka.sasl is required when spec.kafka.securityProtocol is SASL_PLAINTEXT or SASL_SSL")
    .field_path(".sasl"))]
#[x_kube(validation = Rule::new("!has(self.tls) || self.securityProtocol == 'SSL' || self.securityProtocol == 'SASL_SSL'")
    .message("spec.kafka.tls needs spec.kafka.securityProtocol SSL or SASL_SSL")
    .field_path(".tls"))]
#[x_kube(validation = Rule::new("self.topic != '.' && self.topic != '..'")
    .message("spec.kafka.topic cannot be . or .. (Kafka refuses those names)")
    .field_path(".topic"))]
#[x_kube(validation = Rule::new("!has(self.topicSettings) || !has(self.topicSettings.input) || !has(self.topicSettings.input.minInsyncReplicas) || self.topicSettings.input.minInsyncReplicas <= self.replicationFactor")
    .message("spec.kafka.topicSettings.input.minInsyncReplicas cannot exceed spec.kafka.replicationFactor (no write could ever be acknowledged)")
    .field_path(".topicSettings.input.minInsyncReplicas"))]
#[x_kube(validation = Rule::new("!has(self.topicSettings) || !has(self.topicSettings.dlq) || !has(self.topicSettings.dlq.minInsyncReplicas) || self.topicSettings.dlq.minInsyncReplicas <= self.replicationFactor")
    .message("spec.kafka.topicSettings.dlq.minInsyncReplicas cannot exceed spec.kafka.replicationFactor (no write could ever be acknowledged)")
    .field_path(".topicSettings.dlq.minInsyncReplicas"))]
#[x_kube(validation = Rule::new("!has(self.topicSettings) || !has(self.topicSettings.alerts) || !has(self.topicSettings.alerts.minInsyncReplicas) || self.topicSettings.alerts.minInsyncReplicas <= self.replicationFactor")
    .message("spec.kafka.topicSettings.alerts.minInsyncReplicas cannot exceed spec.kafka.replicationFactor (no write could ever be acknowledged)")
    .field_path(".topicSettings.alerts.minInsyncReplicas"))]
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
    /// TLS to the brokers (securityProtocol SSL or SASL_SSL): the CA to trust and, for mutual
    /// TLS, the client certificate, each from a Secret. Unset: the system trust store, no client
    /// certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<KafkaTls>,
    /// Where a new pipeline starts reading: `earliest` (the whole topic, a backfill),
    /// `latest` (only records produced from now on) or an RFC 3339 timestamp such as
    /// `2026-01-31T00:00:00Z` (records at or after it). The position is chosen once, when the
    /// pipeline first starts, and stored per partition: changing this on a running pipeline
    /// moves nothing (exactly-once holds), and partitions added to the topic later are read
    /// from their beginning.
    #[serde(default = "default_start_from")]
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = Rule::new(START_FROM_RULE).message("spec.kafka.startFrom must be earliest, latest or an RFC 3339 timestamp such as 2026-01-31T00:00:00Z"))]
    pub start_from: String,
    /// Broker settings (`min.insync.replicas`, retention) of the input, DLQ and alerts topics,
    /// set when the operator creates them; on existing topics differences are reported in the
    /// `TopicSettingsInSync` condition, never applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_settings: Option<TopicSettingsSpec>,
}

/// TLS material from Secrets in the pipeline's namespace. The workers get the keys mounted as
/// files; the operator reads them for its own topic and lag clients.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[x_kube(validation = Rule::new("has(self.clientCertificate) == has(self.clientKey)")
    .message("spec.kafka.tls.clientCertificate and clientKey go together (mutual TLS needs both)")
    .field_path(".clientKey"))]
#[serde(rename_all = "camelCase")]
pub struct KafkaTls {
    /// PEM bundle of the CA certificates that sign the brokers' certificates, e.g.
    /// `{name: kafka-ca, key: ca.crt}`. Unset: the system trust store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<SecretKeyRef>,
    /// PEM client certificate for mutual TLS, e.g. `{name: kafka-client, key: tls.crt}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<SecretKeyRef>,
    /// PEM private key of the client certificate (unencrypted), e.g.
    /// `{name: kafka-client, key: tls.key}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<SecretKeyRef>,
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

/// A key of a Secret in the PipelineDeployment's namespace. The worker pods receive it as an
/// environment variable or a mounted file; the operator reads it (`get` on that Secret only)
/// for its own Kafka clients when it manages the topic or reads lag.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Secret name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key within the Secret.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

/// `earliest`, `latest`, or an RFC 3339 date-time (the worker parses it; this catches typos).
const START_FROM_RULE: &str = r"self == 'earliest' || self == 'latest' || self.matches('^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]+)?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$')";

fn default_start_from() -> String {
    sluice_api::config::KafkaConfig::default().start_from
}

fn default_partitions() -> i32 {
    12
}

fn default_replication_factor() -> i32 {
    1
}
