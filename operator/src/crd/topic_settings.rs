//! `spec.kafka.topicSettings`: broker settings of the input, DLQ and alerts topics. The
//! operator sets them when it creates a topic; on a topic that already exists it only reports
//! where the topic differs (the `TopicSettingsInSync` condition), never alters it: changing
//! retention or durability of a live topic is a decision for the topic's owner.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// Shortest `retention.ms` accepted: a topic that forgets records within the hour loses them
/// whenever the workers are down for longer (a rollout, a node drain, an outage).
pub const MIN_RETENTION_MS: i64 = 3_600_000;
/// Smallest `retention.bytes` accepted (per partition): below a megabyte a topic keeps
/// almost nothing.
pub const MIN_RETENTION_BYTES: i64 = 1_048_576;

/// Settings of the pipeline's three topics. Unset values are left to the broker's defaults.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TopicSettingsSpec {
    /// The input topic (`spec.kafka.topic`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<TopicSettings>,
    /// The dead-letter topic `<topic>.dlq` (rejected records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dlq: Option<TopicSettings>,
    /// The fraud alerts topic `<topic>.alerts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerts: Option<TopicSettings>,
}

/// Broker settings of one topic. The replication factor is `spec.kafka.replicationFactor`.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TopicSettings {
    /// `min.insync.replicas`: replicas that must have a record before a producer using
    /// `acks=all` is told it is written. At most `spec.kafka.replicationFactor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 7))]
    pub min_insync_replicas: Option<i32>,
    /// `retention.ms`: how long records are kept; -1 keeps them forever. At least one hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(format!("self == -1 || self >= {MIN_RETENTION_MS}"))
        .message(format!("retentionMs must be -1 (keep forever) or at least {MIN_RETENTION_MS} (one hour)").as_str()))]
    pub retention_ms: Option<i64>,
    /// `retention.bytes`: most bytes kept per partition; -1 means no size limit. At least
    /// 1048576 (1 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(format!("self == -1 || self >= {MIN_RETENTION_BYTES}"))
        .message(format!("retentionBytes must be -1 (no limit) or at least {MIN_RETENTION_BYTES} (1 MiB per partition)").as_str()))]
    pub retention_bytes: Option<i64>,
}

impl TopicSettings {
    /// The topic configs these settings ask for, as Kafka names them (unset ones left out).
    pub fn configs(&self) -> Vec<(&'static str, String)> {
        [
            (
                "min.insync.replicas",
                self.min_insync_replicas.map(i64::from),
            ),
            ("retention.ms", self.retention_ms),
            ("retention.bytes", self.retention_bytes),
        ]
        .into_iter()
        .filter_map(|(key, value)| value.map(|v| (key, v.to_string())))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_name_only_what_is_set() {
        assert!(TopicSettings::default().configs().is_empty());
        let s = TopicSettings {
            min_insync_replicas: Some(2),
            retention_ms: Some(-1),
            retention_bytes: None,
        };
        assert_eq!(
            s.configs(),
            vec![
                ("min.insync.replicas", "2".to_string()),
                ("retention.ms", "-1".to_string())
            ]
        );
    }
}
