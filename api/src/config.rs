//! Worker configuration. The operator renders it as YAML into a ConfigMap; a person writes
//! the same file by hand. Every field has a default so a file may hold only what differs.
//! Secrets (database passwords, Kafka SASL credentials) are never part of this type: they
//! come from the environment, which Kubernetes fills from Secrets.
//!
//! [`WorkerConfig::validate`] holds every bound a setting has: the worker checks it at start
//! and on reload, the operator before it renders a ConfigMap, and the CRD states the same
//! [`bounds`] so the API server refuses what a worker would.

use serde::{Deserialize, Serialize};

mod help;
mod validate;

pub use help::settings_help;
pub use validate::{ConfigError, bounds};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerConfig {
    /// Pipeline name: the `pipeline` label of every metric and the prefix of log lines.
    pub pipeline: String,
    pub kafka: KafkaConfig,
    pub postgres: PostgresConfig,
    pub batch: BatchConfig,
    pub validation: ValidationConfig,
    pub retention: RetentionConfig,
    pub http: HttpConfig,
    pub fraud: FraudConfig,
    pub analytics: AnalyticsConfig,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            pipeline: "default".into(),
            kafka: KafkaConfig::default(),
            postgres: PostgresConfig::default(),
            batch: BatchConfig::default(),
            validation: ValidationConfig::default(),
            retention: RetentionConfig::default(),
            http: HttpConfig::default(),
            fraud: FraudConfig::default(),
            analytics: AnalyticsConfig::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` list of brokers.
    pub bootstrap_servers: String,
    /// Topic of input transactions.
    pub topic: String,
    /// Consumer group shared by all workers of the pipeline.
    pub group_id: String,
    /// Topic for rejected records; empty means `<topic>.dlq`.
    pub dlq_topic: String,
    /// Topic for fraud alerts; empty means `<topic>.alerts`.
    pub alerts_topic: String,
    /// `security.protocol` (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL). SASL username and
    /// password come from `SLUICE_KAFKA_SASL_USERNAME` / `SLUICE_KAFKA_SASL_PASSWORD`.
    pub security_protocol: String,
    /// SASL mechanism when SASL is used (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512).
    pub sasl_mechanism: String,
    /// PEM file of the CA certificates that sign the brokers' certificates (`ssl.ca.location`);
    /// empty means the system's trust store. TLS protocols (SSL, SASL_SSL) only.
    pub ssl_ca_location: String,
    /// PEM file of the client certificate for mutual TLS (`ssl.certificate.location`); set
    /// together with `ssl_key_location`, or neither.
    pub ssl_certificate_location: String,
    /// PEM file of the client certificate's private key (`ssl.key.location`).
    pub ssl_key_location: String,
    /// Consumer session timeout: how long a dead worker keeps its partitions.
    pub session_timeout_ms: u32,
    /// Longest the broker holds a fetch when there is little data; bounds idle latency.
    pub fetch_wait_max_ms: u32,
    /// Where a partition with no stored offset starts: `earliest`, `latest`, or an RFC 3339
    /// timestamp (the first record at or after it). Resolved once per partition, at its first
    /// assignment, and stored: a partition with a stored offset always resumes there.
    pub start_from: String,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            bootstrap_servers: "127.0.0.1:9092".into(),
            topic: "transactions".into(),
            group_id: "sluice".into(),
            dlq_topic: String::new(),
            alerts_topic: String::new(),
            security_protocol: "PLAINTEXT".into(),
            sasl_mechanism: "PLAIN".into(),
            ssl_ca_location: String::new(),
            ssl_certificate_location: String::new(),
            ssl_key_location: String::new(),
            session_timeout_ms: 10_000,
            fetch_wait_max_ms: 10,
            start_from: "earliest".into(),
        }
    }
}

impl KafkaConfig {
    pub fn dlq_topic(&self) -> String {
        if self.dlq_topic.is_empty() {
            format!("{}.dlq", self.topic)
        } else {
            self.dlq_topic.clone()
        }
    }

    pub fn alerts_topic(&self) -> String {
        if self.alerts_topic.is_empty() {
            format!("{}.alerts", self.topic)
        } else {
            self.alerts_topic.clone()
        }
    }

    /// `start_from` parsed; `None` when it is none of the accepted forms (`validate` says so).
    pub fn start_from(&self) -> Option<StartFrom> {
        StartFrom::parse(&self.start_from)
    }
}

/// Where a partition with no stored offset starts (`kafka.start_from`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    /// The oldest record the topic still holds (backfill).
    Earliest,
    /// The end of the partition when it is first assigned: only records produced later.
    Latest,
    /// The first record whose Kafka timestamp is at or after this time (the end if none is).
    Timestamp(chrono::DateTime<chrono::Utc>),
}

impl StartFrom {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "earliest" => Some(Self::Earliest),
            "latest" => Some(Self::Latest),
            _ => chrono::DateTime::parse_from_rfc3339(text)
                .ok()
                .map(|t| Self::Timestamp(t.to_utc())),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PostgresConfig {
    /// Schema holding the pipeline's tables, so pipelines can share a database.
    pub schema: String,
    /// Connections to the primary (the URL comes from `DATABASE_URL`).
    pub max_connections: u32,
    /// First retry delay after a database error; doubles up to `retry_max_ms`.
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    /// Wait for the WAL flush at each batch commit. Off is still exactly-once (rows and
    /// offsets are lost together on a Postgres crash and re-read from Kafka) but can repeat
    /// DLQ and alert messages after such a crash.
    pub synchronous_commit: bool,
    /// Batch transactions written at once, each on its own connection and over its own share
    /// of the batch's partitions. Capped at `max_connections` - 1 (one stays for maintenance
    /// and the consumer's profile reads).
    pub sink_lanes: u32,
}

impl PostgresConfig {
    /// The lanes the sink really runs: `sink_lanes` within the pool.
    pub fn effective_sink_lanes(&self) -> usize {
        self.sink_lanes
            .min(self.max_connections.saturating_sub(1))
            .max(1) as usize
    }
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            schema: "sluice".into(),
            max_connections: 4,
            retry_initial_ms: 100,
            retry_max_ms: 5_000,
            synchronous_commit: false,
            sink_lanes: 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatchConfig {
    /// A batch is written once it holds this many records…
    pub max_records: usize,
    /// …or once its oldest record has waited this long.
    pub max_wait_ms: u64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_records: 5_000,
            max_wait_ms: 20,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ValidationConfig {
    /// Event times further than this in the future are rejected (`future_timestamp`).
    pub max_future_skew_secs: i64,
}

impl Default for ValidationConfig {
    fn default() -> Self {
        Self {
            max_future_skew_secs: 300,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Daily partitions of `transactions` older than this are dropped; events older than
    /// this are rejected (`too_old`), which also bounds the duplicate-detection window.
    pub days: u32,
    /// Daily partitions created ahead of today.
    pub days_ahead: u32,
    /// How often partition maintenance runs.
    pub maintenance_interval_secs: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            days: 30,
            days_ahead: 3,
            maintenance_interval_secs: 3_600,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address of `/metrics`, `/healthz` and `/readyz`.
    pub listen: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:9090".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnalyticsConfig {
    /// A valid event whose event time is this far behind its partition's watermark (the
    /// highest event time seen so far) is still stored, but no longer folded into the
    /// per-minute summaries; it counts as `late` in `quality_summaries`.
    pub allowed_lateness_secs: u64,
}

impl Default for AnalyticsConfig {
    fn default() -> Self {
        Self {
            allowed_lateness_secs: 600,
        }
    }
}

/// Fraud scoring switches (filled by the fraud stage; reloaded without restart).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FraudConfig {
    pub enabled: bool,
    /// Score at or above which a transaction is flagged.
    pub threshold: f64,
    /// Rules switched off by name.
    pub disabled_rules: Vec<String>,
    /// Customer profiles kept in memory (about 350 bytes each); idle ones beyond it are
    /// evicted and reloaded from Postgres when they come back. Read at start only.
    pub profile_capacity: usize,
    /// Changed profiles are written at most this often instead of with every batch; after a
    /// crash the records since the last write are replayed into them (0: every batch). Read
    /// at start only.
    pub profile_checkpoint_ms: u64,
}

impl Default for FraudConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            threshold: 0.5,
            disabled_rules: Vec::new(),
            profile_capacity: 200_000,
            profile_checkpoint_ms: 5_000,
        }
    }
}

impl WorkerConfig {
    /// Checks every bound (see [`bounds`]); the first setting out of bounds is the error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate::worker_config(self)
    }
}

#[cfg(test)]
mod tests;
