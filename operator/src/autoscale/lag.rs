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
//! clock; the pipeline's time lag is the maximum over partitions. It is read by fetching that
//! one record per lagging partition with a throw-away consumer that is `assign()`ed explicit
//! offsets, never subscribes and never commits, with tiny fetch sizes. librdkafka refuses
//! `assign()` without a `group.id` ("Local: Unknown group"), so the probe carries its own
//! [`PROBE_GROUP`] — never the workers' group, so even a bug could not move their offsets;
//! since it neither joins (`assign` sends no JoinGroup) nor commits, the broker keeps no state
//! for it. Offsets-for-times answers the opposite question (the first offset at or after a
//! time), so it would need a search of several round trips per partition; one fetch is cheaper
//! and exact. Timestamps are the records' own (`CreateTime`, set by the producer, or
//! `LogAppendTime` if the topic says so); a record stamped in the future counts as age 0.
//!
//! Anything that fails or is missing — broker unreachable, timeout, topic or partition
//! missing, group coordinator unavailable, a partition's offset fetch failing — makes the
//! whole reading [`LagReading::Unknown`] with the reason. It is never reported as 0: a lag of
//! 0 would tell the autoscaler to shrink the group exactly when Kafka is in trouble.
//!
//! Reading the committed offsets uses a consumer configured with the group's `group.id` that
//! never subscribes: librdkafka only sends JoinGroup after `subscribe()`, so it asks the group
//! coordinator for the offsets (OffsetFetch) without becoming a member — the workers' group is
//! not rebalanced (the integration test `tests/lag.rs` checks this against a live member).
//! Auto-commit is off and nothing is ever committed through it.
//!
//! Clients are created per reading and dropped after it: two librdkafka clients for a few
//! milliseconds each 15 s, instead of a handful of long-lived threads per pipeline (which a
//! cache keyed by group would need, since `group.id` is per client).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::crd::PipelineDeployment;

/// `group.id` of the timestamp probe: librdkafka needs one for `assign()`; it is never joined
/// and never committed to.
pub const PROBE_GROUP: &str = "sluice-operator-lag-probe";

/// Where one pipeline's lag is read: the brokers, the topic and the consumer group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LagTarget {
    /// `bootstrap.servers`.
    pub bootstrap: String,
    /// `security.protocol` (`PLAINTEXT`, `SSL`, …).
    pub security_protocol: String,
    pub topic: String,
    /// The workers' consumer group ([`PipelineDeployment::consumer_group`]).
    pub group: String,
    /// Further librdkafka properties, e.g. SASL credentials the caller resolved (the operator
    /// itself reads no Secrets, so SASL pipelines need the caller to supply them).
    pub extra: Vec<(String, String)>,
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

/// Reads lag from Kafka; every reading is bounded by one overall timeout.
#[derive(Debug, Clone)]
pub struct LagReader {
    timeout: Duration,
}

impl Default for LagReader {
    fn default() -> Self {
        Self::new(Duration::from_secs(5))
    }
}

impl LagReader {
    /// `timeout` bounds a whole reading (metadata, watermarks, committed offsets, timestamps).
    pub fn new(timeout: Duration) -> Self {
        Self { timeout }
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Reads the lag of `target` on a blocking thread (librdkafka's calls block).
    pub async fn read(&self, target: &LagTarget) -> LagReading {
        let reader = self.clone();
        let target = target.clone();
        match tokio::task::spawn_blocking(move || reader.read_blocking(&target)).await {
            Ok(r) => r,
            Err(e) => LagReading::Unknown {
                reason: format!("lag reader task failed: {e}"),
            },
        }
    }

    /// Reads the lag of `target`, blocking the calling thread for at most about the timeout.
    pub fn read_blocking(&self, target: &LagTarget) -> LagReading {
        let started = Instant::now();
        let deadline = started + self.timeout;
        match self.read_offsets(target, deadline) {
            Err(reason) => LagReading::Unknown { reason },
            Ok((partitions, group_state)) => {
                let time_lag = time_lag(target, &partitions, deadline, self.timeout);
                LagReading::Known(LagSnapshot {
                    topic: target.topic.clone(),
                    group: target.group.clone(),
                    partitions,
                    time_lag,
                    group_state,
                    read_at: SystemTime::now(),
                    took: started.elapsed(),
                })
            }
        }
    }

    fn read_offsets(
        &self,
        target: &LagTarget,
        deadline: Instant,
    ) -> Result<(Vec<PartitionLag>, Option<GroupState>), String> {
        let topic = &target.topic;
        let mut config = base_config(target, self.timeout);
        config
            .set("group.id", &target.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false");
        let consumer: BaseConsumer = config
            .create()
            .map_err(|e| format!("kafka client for {}: {e}", target.bootstrap))?;

        // One topic only; a consumer has allow.auto.create.topics=false, so asking for a topic
        // that does not exist does not create it.
        let md = consumer
            .fetch_metadata(Some(topic), remaining(deadline)?)
            .map_err(|e| format!("metadata from {}: {e}", target.bootstrap))?;
        let t = md
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .ok_or_else(|| format!("topic {topic} missing from the metadata"))?;
        if let Some(err) = t.error() {
            return Err(format!(
                "topic {topic}: {:?}",
                rdkafka::types::RDKafkaErrorCode::from(err)
            ));
        }
        let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
        ids.sort_unstable();
        if ids.is_empty() {
            return Err(format!("topic {topic} has no partitions"));
        }
        // Partition ids are 0..n; a gap means the metadata is incomplete.
        if ids.iter().enumerate().any(|(i, &p)| p != i as i32) {
            return Err(format!("topic {topic}: incomplete partition list {ids:?}"));
        }

        let mut watermarks = Vec::with_capacity(ids.len());
        for &p in &ids {
            let (low, high) = consumer
                .fetch_watermarks(topic, p, remaining(deadline)?)
                .map_err(|e| format!("watermarks of {topic}/{p}: {e}"))?;
            watermarks.push((p, low, high));
        }

        let mut tpl = TopicPartitionList::with_capacity(ids.len());
        for &p in &ids {
            tpl.add_partition(topic, p);
        }
        let committed = consumer
            .committed_offsets(tpl, remaining(deadline)?)
            .map_err(|e| format!("committed offsets of group {}: {e}", target.group))?;
        let mut partitions = Vec::with_capacity(ids.len());
        for (p, low, high) in watermarks {
            let elem = committed.find_partition(topic, p).ok_or_else(|| {
                format!(
                    "committed offsets of group {}: {topic}/{p} missing",
                    target.group
                )
            })?;
            elem.error().map_err(|e| {
                format!(
                    "committed offset of group {} on {topic}/{p}: {e}",
                    target.group
                )
            })?;
            let committed = match elem.offset() {
                Offset::Offset(o) if o >= 0 => Some(o),
                _ => None,
            };
            partitions.push(PartitionLag::new(p, low, high, committed));
        }

        // Best effort: a description that fails or times out leaves the state unknown.
        let group_state = remaining(deadline)
            .ok()
            .and_then(|left| {
                consumer
                    .client()
                    .fetch_group_list(Some(&target.group), left)
                    .ok()
            })
            .and_then(|list| {
                list.groups()
                    .iter()
                    .find(|g| g.name() == target.group)
                    .map(|g| GroupState {
                        state: g.state().to_string(),
                        members: g.members().len(),
                    })
            });
        Ok((partitions, group_state))
    }
}

/// Client properties shared by both consumers, in `topic.rs`'s style.
fn base_config(target: &LagTarget, timeout: Duration) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &target.bootstrap)
        .set("security.protocol", &target.security_protocol)
        .set("socket.timeout.ms", timeout.as_millis().max(10).to_string())
        .set("client.id", "sluice-operator-lag")
        .set("allow.auto.create.topics", "false");
    for (k, v) in &target.extra {
        c.set(k, v);
    }
    c
}

/// Time left before `deadline`, or the reason it has passed.
fn remaining(deadline: Instant) -> Result<Duration, String> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err("timed out".into())
    } else {
        Ok(left)
    }
}

/// Reads the timestamp of the record at each lagging partition's position (see module docs).
fn time_lag(
    target: &LagTarget,
    partitions: &[PartitionLag],
    deadline: Instant,
    timeout: Duration,
) -> TimeLag {
    let lagging: Vec<&PartitionLag> = partitions.iter().filter(|p| p.lag > 0).collect();
    if lagging.is_empty() {
        return TimeLag::CaughtUp;
    }
    let mut config = base_config(target, timeout);
    // Not the workers' group: it cannot disturb or move their offsets (and it never joins or
    // commits its own). Only the first record of each partition matters, so fetch as little
    // as the broker allows (it still returns a whole first batch). A position deleted by
    // retention meanwhile: the new log start, which is then the oldest unconsumed record.
    config
        .set(
            "group.id",
            if target.group == PROBE_GROUP {
                format!("{PROBE_GROUP}-2")
            } else {
                PROBE_GROUP.to_string()
            },
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest")
        .set("max.partition.fetch.bytes", "1024")
        .set("queued.min.messages", "1")
        .set("fetch.wait.max.ms", "100");
    let consumer: BaseConsumer = match config.create() {
        Ok(c) => c,
        Err(e) => {
            return TimeLag::Unknown {
                reason: format!("kafka client: {e}"),
            };
        }
    };
    let mut tpl = TopicPartitionList::with_capacity(lagging.len());
    for p in &lagging {
        if let Err(e) =
            tpl.add_partition_offset(&target.topic, p.partition, Offset::Offset(p.position()))
        {
            return TimeLag::Unknown {
                reason: format!("assign {}/{}: {e}", target.topic, p.partition),
            };
        }
    }
    if let Err(e) = consumer.assign(&tpl) {
        return TimeLag::Unknown {
            reason: format!("assign: {e}"),
        };
    }
    // partition → (offset, timestamp ms) of the first record at or after its position.
    let mut first: Vec<Option<(i64, Option<i64>)>> = vec![None; lagging.len()];
    let mut missing = lagging.len();
    let mut last_error = None;
    while missing > 0 {
        let Ok(left) = remaining(deadline) else { break };
        match consumer.poll(left) {
            None => {}
            Some(Err(e)) => last_error = Some(e.to_string()),
            Some(Ok(m)) => {
                if let Some(i) = lagging.iter().position(|p| p.partition == m.partition())
                    && first[i].is_none()
                    && m.offset() >= lagging[i].position()
                {
                    first[i] = Some((m.offset(), m.timestamp().to_millis()));
                    missing -= 1;
                }
            }
        }
    }
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut oldest: Option<(f64, i32, i64)> = None;
    let mut unread = Vec::new();
    let mut unstamped = Vec::new();
    for (p, f) in lagging.iter().zip(&first) {
        match f {
            None => unread.push(p.partition),
            Some((_, None)) => unstamped.push(p.partition),
            Some((offset, Some(ts))) => {
                let age = (now_ms - ts).max(0) as f64 / 1000.0;
                if oldest.is_none_or(|(a, _, _)| age > a) {
                    oldest = Some((age, p.partition, *offset));
                }
            }
        }
    }
    if !unread.is_empty() || !unstamped.is_empty() {
        let mut reason = String::new();
        if !unread.is_empty() {
            reason = format!(
                "no record read from partitions {unread:?} of {} in time",
                target.topic
            );
            if let Some(e) = last_error {
                reason.push_str(&format!(" (last error: {e})"));
            }
        }
        if !unstamped.is_empty() {
            if !reason.is_empty() {
                reason.push_str("; ");
            }
            reason.push_str(&format!("records without timestamp on {unstamped:?}"));
        }
        if let Some((age, _, _)) = oldest {
            reason.push_str(&format!("; at least {age:.1} s behind"));
        }
        return TimeLag::Unknown { reason };
    }
    match oldest {
        Some((seconds, partition, offset)) => TimeLag::Behind {
            seconds,
            partition,
            offset,
        },
        None => TimeLag::CaughtUp,
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
