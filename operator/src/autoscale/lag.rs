//! True consumer lag of one pipeline, read from Kafka itself.
//!
//! Per partition, [`LagReader`] reads the log start (low watermark), the log end (high
//! watermark) and the consumer group's committed offset, and counts
//!
//! ```text
//! lag = end − max(committed, log start)      (never below 0)
//! ```
//!
//! so only records Kafka still retains count: records deleted by retention (or
//! `DeleteRecords`) before the group reached them are gone, no worker will ever process them,
//! and they must not make the autoscaler add workers. A partition the group has never
//! committed counts from its log start — the workers start there (`auto.offset.reset =
//! earliest`), so every retained record is still to do.
//!
//! The committed offsets are Kafka's copy, which the worker writes asynchronously after its
//! Postgres transaction: they trail the truth by about one commit round (well under a second
//! at normal rates). The lag read here is therefore a slight over-estimate, never an
//! under-estimate.
//!
//! **Time lag** is the age of the oldest unconsumed record: for each partition with lag, the
//! timestamp of the first retained record at or after the group's position, against the wall
//! clock; the pipeline's time lag is the maximum over partitions.
//! [`reader`] reads it from Kafka.
//!
//! Anything that fails or is missing — broker unreachable, timeout, topic or partition
//! missing, group coordinator unavailable, a partition's offset fetch failing — makes the
//! whole reading [`LagReading::Unknown`] with the reason. It is never reported as 0: a lag of
//! 0 would tell the autoscaler to shrink the group exactly when Kafka is in trouble.

mod reader;

pub use reader::{LagReader, PROBE_GROUP};

use std::time::{Duration, SystemTime};

use crate::crd::PipelineDeployment;

/// Where one pipeline's lag is read: the brokers, the topic and the consumer group.
#[derive(Clone, PartialEq, Eq)]
pub struct LagTarget {
    /// `bootstrap.servers`.
    pub bootstrap: String,
    /// `security.protocol` (`PLAINTEXT`, `SSL`, …).
    pub security_protocol: String,
    pub topic: String,
    /// The workers' consumer group ([`PipelineDeployment::consumer_group`]).
    pub group: String,
    /// Further librdkafka properties: SASL credentials and TLS PEMs from the pipeline's
    /// Secrets (`kafka_auth`). Secret values: never logged (the `Debug` of a target is not).
    pub extra: Vec<(String, String)>,
}

impl std::fmt::Debug for LagTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let extra: Vec<&str> = self.extra.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("LagTarget")
            .field("bootstrap", &self.bootstrap)
            .field("security_protocol", &self.security_protocol)
            .field("topic", &self.topic)
            .field("group", &self.group)
            .field("extra", &extra)
            .finish()
    }
}

impl LagTarget {
    /// The pipeline's brokers, topic and group, with no extra properties.
    pub fn of(pd: &PipelineDeployment) -> Self {
        Self {
            bootstrap: pd.spec.kafka.bootstrap_servers.clone(),
            security_protocol: pd.spec.kafka.security_protocol.as_str().to_string(),
            topic: pd.spec.kafka.topic.clone(),
            group: pd.consumer_group(),
            extra: Vec::new(),
        }
    }
}

/// Offsets of one partition and its lag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionLag {
    pub partition: i32,
    /// Low watermark: the first offset still retained.
    pub log_start: i64,
    /// High watermark: the offset the next record will get.
    pub log_end: i64,
    /// The group's committed offset (the next record to consume); `None` if it never committed.
    pub committed: Option<i64>,
    /// `log_end − position`, at least 0.
    pub lag: i64,
}

impl PartitionLag {
    /// Computes the lag from the three offsets (see the module docs).
    pub fn new(partition: i32, log_start: i64, log_end: i64, committed: Option<i64>) -> Self {
        let mut p = Self {
            partition,
            log_start,
            log_end,
            committed,
            lag: 0,
        };
        p.lag = (log_end - p.position()).max(0);
        p
    }

    /// Where the group resumes among retained records: `max(committed, log start)`, the log
    /// start if it never committed.
    pub fn position(&self) -> i64 {
        self.committed.unwrap_or(self.log_start).max(self.log_start)
    }
}

/// Age of the oldest unconsumed record.
#[derive(Debug, Clone, PartialEq)]
pub enum TimeLag {
    /// No partition has lag.
    CaughtUp,
    /// The oldest unconsumed record (the maximum over partitions).
    Behind {
        seconds: f64,
        partition: i32,
        offset: i64,
    },
    /// The record count is known but the records' timestamps could not all be read.
    Unknown { reason: String },
}

impl TimeLag {
    /// Seconds behind: `Some(0.0)` when caught up, `None` when unknown.
    pub fn seconds(&self) -> Option<f64> {
        match self {
            Self::CaughtUp => Some(0.0),
            Self::Behind { seconds, .. } => Some(*seconds),
            Self::Unknown { .. } => None,
        }
    }
}

/// The consumer group's state as the coordinator describes it (classic protocol names:
/// `Stable`, `PreparingRebalance`, `CompletingRebalance`, `Empty`, `Dead`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupState {
    pub state: String,
    pub members: usize,
}

impl GroupState {
    /// Whether the group is between generations: partitions are being moved and nothing (or
    /// less) is processed, so throughput measured now says little.
    pub fn rebalancing(&self) -> bool {
        matches!(
            self.state.as_str(),
            "PreparingRebalance" | "CompletingRebalance" | "Reconciling" | "Assigning"
        )
    }
}

/// A complete lag reading of one pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct LagSnapshot {
    pub topic: String,
    pub group: String,
    /// Every partition of the topic, by partition id.
    pub partitions: Vec<PartitionLag>,
    pub time_lag: TimeLag,
    /// `None` if the group could not be described (not an error of the reading: the offsets
    /// are what count).
    pub group_state: Option<GroupState>,
    /// Wall-clock time of the reading (the time lag's "now").
    pub read_at: SystemTime,
    /// How long the reading took.
    pub took: Duration,
}

impl LagSnapshot {
    /// Total lag in records.
    pub fn total(&self) -> i64 {
        self.partitions.iter().map(|p| p.lag).sum()
    }
    /// Σ log end offsets: grows with every record produced (input counter).
    pub fn sum_end(&self) -> i64 {
        self.partitions.iter().map(|p| p.log_end).sum()
    }
    /// Σ positions (`max(committed, log start)`): grows with every record the group commits
    /// (processing counter). `sum_end() − sum_position() == total()`.
    pub fn sum_position(&self) -> i64 {
        self.partitions.iter().map(|p| p.position()).sum()
    }
    /// Partitions the topic has.
    pub fn partition_count(&self) -> i32 {
        self.partitions.len() as i32
    }
    /// Whether the coordinator says the group is rebalancing.
    pub fn rebalancing(&self) -> bool {
        self.group_state
            .as_ref()
            .is_some_and(GroupState::rebalancing)
    }
}

/// A lag reading: complete, or unknown with the reason. Never a made-up 0.
#[derive(Debug, Clone, PartialEq)]
pub enum LagReading {
    Known(LagSnapshot),
    Unknown { reason: String },
}

impl LagReading {
    /// Total lag in records, if known.
    pub fn total(&self) -> Option<i64> {
        self.snapshot().map(LagSnapshot::total)
    }
    pub fn snapshot(&self) -> Option<&LagSnapshot> {
        match self {
            Self::Known(s) => Some(s),
            Self::Unknown { .. } => None,
        }
    }
    /// `Ok(total)` or `Err(reason)`.
    pub fn as_result(&self) -> Result<i64, &str> {
        match self {
            Self::Known(s) => Ok(s.total()),
            Self::Unknown { reason } => Err(reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_counts_only_retained_records() {
        // Committed at 40, retention deleted up to 100, end 250: 150 retained records to do,
        // not 210.
        let p = PartitionLag::new(0, 100, 250, Some(40));
        assert_eq!((p.position(), p.lag), (100, 150));
        // Committed inside the retained log: end − committed.
        assert_eq!(PartitionLag::new(1, 100, 250, Some(200)).lag, 50);
        // Never committed: from the log start.
        assert_eq!(PartitionLag::new(2, 100, 250, None).lag, 150);
        // Committed beyond the end (topic recreated): 0, not negative.
        assert_eq!(PartitionLag::new(3, 0, 10, Some(25)).lag, 0);
    }

    #[test]
    fn snapshot_counters_add_up() {
        let s = LagSnapshot {
            topic: "t".into(),
            group: "g".into(),
            partitions: vec![
                PartitionLag::new(0, 100, 250, Some(40)),
                PartitionLag::new(1, 0, 80, Some(80)),
            ],
            time_lag: TimeLag::CaughtUp,
            group_state: Some(GroupState {
                state: "PreparingRebalance".into(),
                members: 2,
            }),
            read_at: SystemTime::now(),
            took: Duration::ZERO,
        };
        assert_eq!(s.total(), 150);
        assert_eq!(s.sum_end() - s.sum_position(), s.total());
        assert!(s.rebalancing());
    }
}
