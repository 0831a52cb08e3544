//! Reading a pipeline's [lag](super) from Kafka.
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
//!
//! The time lag is read by fetching one record per lagging partition with a throw-away consumer that is `assign()`ed explicit
//! offsets, never subscribes and never commits, with tiny fetch sizes. librdkafka refuses
//! `assign()` without a `group.id` ("Local: Unknown group"), so the probe carries its own
//! [`PROBE_GROUP`] — never the workers' group, so even a bug could not move their offsets;
//! since it neither joins (`assign` sends no JoinGroup) nor commits, the broker keeps no state
//! for it. Offsets-for-times answers the opposite question (the first offset at or after a
//! time), so it would need a search of several round trips per partition; one fetch is cheaper
//! and exact. Timestamps are the records' own (`CreateTime`, set by the producer, or
//! `LogAppendTime` if the topic says so); a record stamped in the future counts as age 0.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::{GroupState, LagReading, LagSnapshot, LagTarget, PartitionLag, TimeLag};
use crate::kafka_auth::ErrorCapture;

/// `group.id` of the timestamp probe: librdkafka needs one for `assign()`; it is never joined
/// and never committed to.
pub const PROBE_GROUP: &str = "sluice-operator-lag-probe";

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
        let mut config = base_config(target, self.timeout);
        config
            .set("group.id", &target.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false");
        let consumer: BaseConsumer<ErrorCapture> = config
            .create_with_context(ErrorCapture::default())
            .map_err(|e| format!("kafka client for {}: {e}", target.bootstrap))?;
        read_offsets_with(&consumer, target, deadline).map_err(|e| why_failed(&consumer, e))
    }
}

/// `message` with the reason Kafka refused the client, if it did: the failed call only says it
/// timed out, the cause waits in the client's event queue.
fn why_failed(consumer: &BaseConsumer<ErrorCapture>, message: String) -> String {
    for _ in 0..20 {
        if consumer.context().refused() {
            break;
        }
        let _ = consumer.poll(Duration::from_millis(50));
    }
    consumer.context().annotate(message)
}

/// Offsets and lag of every partition of the target topic, and the group's state.
fn read_offsets_with(
    consumer: &BaseConsumer<ErrorCapture>,
    target: &LagTarget,
    deadline: Instant,
) -> Result<(Vec<PartitionLag>, Option<GroupState>), String> {
    let topic = &target.topic;

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

/// Client properties shared by both consumers, in `topic.rs`'s style.
fn base_config(target: &LagTarget, timeout: Duration) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &target.bootstrap)
        .set("security.protocol", &target.security_protocol)
        .set("socket.timeout.ms", timeout.as_millis().max(10).to_string())
        .set("client.id", "sluice-operator-lag")
        .set("allow.auto.create.topics", "false");
    for (k, v) in &target.extra {
        c.set(k.as_str(), v);
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
    let consumer: BaseConsumer<ErrorCapture> =
        match config.create_with_context(ErrorCapture::default()) {
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
        // librdkafka waits whole milliseconds: under 1 ms left, poll(left) would return at
        // once, again and again, until the deadline passed.
        match consumer.poll(left.max(Duration::from_millis(1))) {
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
