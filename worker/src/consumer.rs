//! The consumer: one thread polls Kafka, validates and scores each record, and builds
//! batches for the sink. Partition ownership follows the group (cooperative-sticky); the
//! offsets that count are the ones stored in Postgres, so on assignment each partition
//! starts at its stored offset, and records below what was already handed on are skipped.

use crate::batch::{Accepted, Batch, Rejected, duplicate};
use crate::metrics::Metrics;
use crate::score::{Scorer, Verdict};
use crate::sink::Ack;
use crate::validate::{TimeBounds, mask_pans, validate};
use chrono::{DateTime, Utc};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaResult;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use sluice_api::WorkerConfig;
use sqlx::PgPool;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use tokio::sync::mpsc;

/// A batch may grow to this many times `batch.max_records` while the sink is busy.
const BATCH_HARD_CAP: usize = 2;

/// How long a full batch waits for the sink before the partitions are paused.
const SINK_WAIT_WITHOUT_POLLING: Duration = Duration::from_secs(2);

/// Per-partition progress known to the batch builder.
#[derive(Debug, Clone, Copy)]
struct Progress {
    /// What the database will hold once every batch handed on so far commits.
    basis: i64,
    /// Next offset expected from Kafka; anything lower was already taken.
    seen: i64,
    /// Highest event time taken so far (capped at each record's Kafka time): the reference
    /// for late events. Starts from the stored value, so replays classify as before.
    watermark: Option<DateTime<Utc>>,
}

impl Progress {
    fn stored(next: i64, watermark: Option<DateTime<Utc>>) -> Self {
        Self {
            basis: next,
            seen: next,
            watermark,
        }
    }

    /// Whether an event at `event_time` is too late for the summaries; moves the watermark.
    fn observe(
        &mut self,
        event_time: DateTime<Utc>,
        kafka_time: DateTime<Utc>,
        lateness: chrono::Duration,
    ) -> bool {
        let late = self.watermark.is_some_and(|w| event_time < w - lateness);
        self.watermark = self.watermark.max(Some(event_time.min(kafka_time)));
        late
    }
}

/// Records of one partition taken but not yet committed, for its time lag: the offset and
/// Kafka timestamp of the first record of each batch not yet committed (batches are
/// contiguous per partition, so the front is the oldest uncommitted record).
#[derive(Debug, Default)]
struct Pending {
    firsts: VecDeque<(i64, DateTime<Utc>)>,
    /// The current (not yet handed on) batch already has an entry for this partition.
    open: bool,
}

impl Pending {
    fn take(&mut self, offset: i64, kafka_time: DateTime<Utc>) {
        if !self.open {
            self.firsts.push_back((offset, kafka_time));
            self.open = true;
        }
    }

    /// Everything below `next` is committed.
    fn committed(&mut self, next: i64) {
        while self.firsts.front().is_some_and(|(o, _)| *o < next) {
            self.firsts.pop_front();
        }
    }

    /// Seconds since the oldest uncommitted record's Kafka timestamp; 0 when none is held.
    fn time_lag(&self, now: DateTime<Utc>) -> f64 {
        self.firsts.front().map_or(0.0, |(_, t)| {
            ((now - *t).num_milliseconds().max(0) as f64) / 1000.0
        })
    }
}

/// State shared between the poll loop and the rebalance callback (both on the poll thread;
/// the mutex is never contended, it only makes the context `Sync`).
struct Builder {
    batch: Batch,
    generation: u64,
    progress: HashMap<i32, Progress>,
    /// Uncommitted records per owned partition (`sluice_consumer_lag_seconds`).
    pending: HashMap<i32, Pending>,
    scorer: Box<dyn Scorer>,
}

pub struct Context {
    pool: PgPool,
    runtime: Handle,
    group: String,
    topic: String,
    builder: Mutex<Builder>,
    inflight: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
    revoke_deadline: Duration,
}

impl Context {
    fn builder(&self) -> MutexGuard<'_, Builder> {
        self.builder.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Run a database read until it succeeds, backing off: without its answer the assigned
    /// partitions cannot be processed at all.
    fn retry_db<T, F>(&self, what: &str, read: impl Fn() -> F) -> T
    where
        F: std::future::Future<Output = anyhow::Result<T>>,
    {
        let mut delay = Duration::from_millis(100);
        loop {
            match self.runtime.block_on(read()) {
                Ok(value) => return value,
                Err(e) => {
                    tracing::warn!(error = %e, "{what} failed; retrying");
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Stored offsets (and watermarks) for `partitions`.
    fn stored_offsets(&self, partitions: &[i32]) -> Vec<crate::db::StoredOffset> {
        self.retry_db("reading stored offsets", || {
            crate::db::load_offsets(&self.pool, &self.group, &self.topic, partitions)
        })
    }

    /// Warm the scorer with the persisted state of `partitions`.
    fn warm_scorer(&self, partitions: &[i32]) {
        if !self.builder().scorer.stateful() {
            return;
        }
        let rows = self.retry_db("loading customer profiles", || {
            crate::db::load_profiles(&self.pool, partitions)
        });
        tracing::info!(
            ?partitions,
            profiles = rows.len(),
            "warmed customer profiles"
        );
        self.builder().scorer.warm(rows);
    }

    /// Score the batch's records not scored yet, in order, after reading back in one query
    /// the profiles of customers that were evicted from memory. Scoring here rather than as
    /// records arrive is what lets that read be one per batch.
    fn score_pending(&self, b: &mut Builder) {
        let reload = {
            let mut pending = b
                .batch
                .accepted
                .iter()
                .filter(|r| !r.scored)
                .map(|r| r.valid.tx.customer_id.as_str());
            b.scorer.to_reload(&mut pending)
        };
        if !reload.is_empty() {
            let rows = self.retry_db("reloading evicted customer profiles", || {
                crate::db::load_customer_profiles(&self.pool, &reload)
            });
            self.metrics.profiles_reloaded.inc_by(rows.len() as u64);
            b.scorer.warm(rows);
        }
        let Builder { batch, scorer, .. } = b;
        for r in batch.accepted.iter_mut().filter(|r| !r.scored) {
            r.verdict = scorer.score(&r.valid, r.partition);
            r.scored = true;
        }
    }

    fn on_assign(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) {
        let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
        let stored = self.stored_offsets(&partitions);
        self.warm_scorer(&partitions);
        let mut b = self.builder();
        for s in stored {
            if s.next >= 0 {
                let _ = tpl.set_partition_offset(&self.topic, s.partition, Offset::Offset(s.next));
            }
            b.progress
                .insert(s.partition, Progress::stored(s.next, s.watermark));
            b.pending.insert(s.partition, Pending::default());
        }
        let owned = b.progress.len();
        drop(b);
        tracing::info!(?partitions, "partitions assigned");
        if let Err(e) = consumer.incremental_assign(tpl) {
            tracing::error!(error = %e, "incremental assign failed");
        }
        // After the assign: a record produced from now on is fetched without waiting.
        self.metrics.partitions_assigned.set(owned as i64);
    }

    fn on_revoke(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
        {
            let mut b = self.builder();
            b.batch.retain_partitions(|p| !partitions.contains(&p));
            for p in &partitions {
                b.progress.remove(p);
                b.pending.remove(p);
            }
            b.scorer.forget_partitions(&partitions);
            self.metrics
                .partitions_assigned
                .set(b.progress.len() as i64);
        }
        // Let batches already handed on finish, so the next owner starts from their commit
        // instead of being fenced by it.
        let deadline = Instant::now() + self.revoke_deadline;
        while self.inflight.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        for p in &partitions {
            let _ = self
                .metrics
                .consumer_lag
                .remove_label_values(&[&p.to_string()]);
            let _ = self
                .metrics
                .consumer_lag_seconds
                .remove_label_values(&[&p.to_string()]);
        }
        tracing::info!(?partitions, "partitions revoked");
        if let Err(e) = consumer.incremental_unassign(tpl) {
            tracing::error!(error = %e, "incremental unassign failed");
        }
    }
}

impl ClientContext for Context {
    fn stats(&self, stats: Statistics) {
        let Some(topic) = stats.topics.get(&self.topic) else {
            return;
        };
        let now = Utc::now();
        let (owned, time_lags): (Vec<i32>, Vec<(i32, f64)>) = {
            let b = self.builder();
            (
                b.progress.keys().copied().collect(),
                b.pending
                    .iter()
                    .map(|(p, pending)| (*p, pending.time_lag(now)))
                    .collect(),
            )
        };
        for (p, seconds) in time_lags {
            self.metrics
                .consumer_lag_seconds
                .with_label_values(&[&p.to_string()])
                .set(seconds);
        }
        for (id, p) in &topic.partitions {
            if owned.contains(id) && p.consumer_lag >= 0 {
                self.metrics
                    .consumer_lag
                    .with_label_values(&[&id.to_string()])
                    .set(p.consumer_lag);
            }
        }
    }
}

impl ConsumerContext for Context {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => self.on_assign(consumer, tpl),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => self.on_revoke(consumer, tpl),
            other => {
                tracing::error!(error = ?other, "rebalance error; dropping assignment");
                self.on_revoke(consumer, tpl);
            }
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(e) = result {
            tracing::debug!(error = %e, "mirroring offsets to Kafka failed (Postgres holds the truth)");
        }
    }
}

pub struct ConsumerLoop {
    consumer: BaseConsumer<Context>,
    topic: String,
    max_records: usize,
    max_wait: Duration,
    retention_days: u32,
    max_future_skew_secs: i64,
    allowed_lateness: chrono::Duration,
    batches: mpsc::Sender<Batch>,
    acks: std::sync::mpsc::Receiver<Ack>,
    shutdown: Arc<AtomicBool>,
    /// Unix seconds of the last loop turn (`/healthz`).
    pub heartbeat: Arc<AtomicU64>,
    reload: Option<ConfigReload>,
}

/// Watches the config file (a mounted ConfigMap) and applies changes that need no restart:
/// the fraud switches.
struct ConfigReload {
    path: std::path::PathBuf,
    modified: Option<std::time::SystemTime>,
    checked: Instant,
}

impl ConfigReload {
    const EVERY: Duration = Duration::from_secs(5);

    fn changed_config(&mut self) -> Option<WorkerConfig> {
        if self.checked.elapsed() < Self::EVERY {
            return None;
        }
        self.checked = Instant::now();
        let modified = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        if modified == self.modified {
            return None;
        }
        self.modified = modified;
        match crate::config::load(Some(&self.path)) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(error = %e, "ignoring an invalid configuration update");
                None
            }
        }
    }
}

pub struct ConsumerParts {
    pub pool: PgPool,
    pub runtime: Handle,
    pub metrics: Arc<Metrics>,
    pub scorer: Box<dyn Scorer>,
    pub inflight: Arc<AtomicUsize>,
    pub batches: mpsc::Sender<Batch>,
    pub acks: std::sync::mpsc::Receiver<Ack>,
    pub shutdown: Arc<AtomicBool>,
    pub heartbeat: Arc<AtomicU64>,
    /// The config file to watch for hot-reloadable changes.
    pub config_path: Option<std::path::PathBuf>,
}

impl ConsumerLoop {
    pub fn new(
        config: &WorkerConfig,
        kafka: rdkafka::ClientConfig,
        parts: ConsumerParts,
    ) -> anyhow::Result<Self> {
        let context = Context {
            pool: parts.pool,
            runtime: parts.runtime,
            group: config.kafka.group_id.clone(),
            topic: config.kafka.topic.clone(),
            builder: Mutex::new(Builder {
                batch: Batch::new(0),
                generation: 0,
                progress: HashMap::new(),
                pending: HashMap::new(),
                scorer: parts.scorer,
            }),
            inflight: parts.inflight,
            metrics: parts.metrics,
            revoke_deadline: Duration::from_millis(u64::from(config.kafka.session_timeout_ms) / 2),
        };
        let consumer: BaseConsumer<Context> = kafka.create_with_context(context)?;
        consumer.subscribe(&[&config.kafka.topic])?;
        Ok(Self {
            consumer,
            topic: config.kafka.topic.clone(),
            max_records: config.batch.max_records,
            max_wait: Duration::from_millis(config.batch.max_wait_ms),
            retention_days: config.retention.days,
            max_future_skew_secs: config.validation.max_future_skew_secs,
            allowed_lateness: chrono::Duration::seconds(
                config.analytics.allowed_lateness_secs.min(i64::MAX as u64) as i64,
            ),
            batches: parts.batches,
            acks: parts.acks,
            shutdown: parts.shutdown,
            heartbeat: parts.heartbeat,
            reload: parts.config_path.map(|path| ConfigReload {
                modified: std::fs::metadata(&path).and_then(|m| m.modified()).ok(),
                path,
                checked: Instant::now(),
            }),
        })
    }

    /// Poll until shutdown is requested, then hand on the last batch, wait for the sink,
    /// mirror the final offsets to Kafka and leave the group.
    pub fn run(mut self) {
        while !self.shutdown.load(Ordering::Relaxed) {
            self.heartbeat
                .store(Utc::now().timestamp() as u64, Ordering::Relaxed);
            self.handle_acks();
            if let Some(config) = self.reload.as_mut().and_then(ConfigReload::changed_config) {
                tracing::info!(fraud = ?config.fraud, "applied reloaded fraud settings");
                let fresh = self.builder().scorer.reconfigure(&config.fraud);
                if fresh {
                    let owned: Vec<i32> = self.builder().progress.keys().copied().collect();
                    self.consumer.context().warm_scorer(&owned);
                }
            }
            // While the sink is busy the batch keeps growing (a bigger insert is cheaper per
            // row); only past the hard cap does fetching pause, since pausing drops
            // librdkafka's prefetched data.
            if self.batch_due()
                && !self.try_hand_on()
                && self.batch_len() >= self.max_records * BATCH_HARD_CAP
            {
                self.wait_for_sink();
                continue;
            }
            let timeout = self.poll_timeout();
            if let Some(result) = self.consumer.poll(timeout) {
                match result {
                    Ok(msg) => self.take(&msg),
                    Err(e) => tracing::warn!(error = %e, "Kafka poll error"),
                }
            }
        }
        self.shut_down();
    }

    fn builder(&self) -> MutexGuard<'_, Builder> {
        self.consumer.context().builder()
    }

    fn batch_len(&self) -> usize {
        self.builder().batch.len()
    }

    fn batch_due(&self) -> bool {
        let b = self.builder();
        !b.batch.is_empty()
            && (b.batch.len() >= self.max_records || b.batch.opened_at.elapsed() >= self.max_wait)
    }

    fn poll_timeout(&self) -> Duration {
        let b = self.builder();
        if b.batch.is_empty() {
            Duration::from_millis(100)
        } else {
            // At least a little: with an overdue batch and a busy sink, don't spin.
            self.max_wait
                .saturating_sub(b.batch.opened_at.elapsed())
                .max(Duration::from_millis(2))
        }
    }

    fn take(&self, msg: &BorrowedMessage<'_>) {
        let partition = msg.partition();
        let offset = msg.offset();
        let mut b = self.builder();
        let Some(mut progress) = b.progress.get(&partition).copied() else {
            return;
        };
        if offset < progress.seen {
            return; // already handed on (a re-fetch after seek or rebalance)
        }
        let payload = msg.payload().unwrap_or_default();
        let kafka_timestamp = msg
            .timestamp()
            .to_millis()
            .and_then(DateTime::<Utc>::from_timestamp_millis)
            .unwrap_or_else(Utc::now);
        let bounds = TimeBounds::around(Utc::now(), self.retention_days, self.max_future_skew_secs);
        match validate(payload, bounds) {
            Ok(valid) if b.batch.holds(&valid.tx.transaction_id) => {
                // A repeat within the batch: rejected without touching the customer's profile.
                let repeat = duplicate(
                    partition,
                    offset,
                    kafka_timestamp,
                    &valid.tx.transaction_id,
                    payload,
                );
                b.batch.push_rejected(repeat);
            }
            Ok(valid) => {
                let late =
                    progress.observe(valid.event_time, kafka_timestamp, self.allowed_lateness);
                b.batch.push_accepted(Accepted {
                    valid,
                    partition,
                    offset,
                    kafka_timestamp,
                    received_at: Instant::now(),
                    raw: payload.to_vec(),
                    verdict: Verdict::default(),
                    scored: false,
                    late,
                });
            }
            Err(rejection) => b.batch.push_rejected(Rejected {
                partition,
                offset,
                kafka_timestamp,
                reason: rejection.reason,
                detail: rejection.detail,
                transaction_id: None,
                raw_masked: mask_pans(payload),
            }),
        }
        progress.seen = offset + 1;
        b.pending
            .entry(partition)
            .or_default()
            .take(offset, kafka_timestamp);
        b.batch
            .advance(partition, offset, progress.basis, progress.watermark);
        b.progress.insert(partition, progress);
    }

    /// Hand the current batch to the sink if it has room; the partitions' basis moves to
    /// what the batch will store.
    fn try_hand_on(&self) -> bool {
        if self.batches.capacity() == 0 {
            return false; // the sink has a batch waiting already
        }
        let mut b = self.builder();
        self.consumer.context().score_pending(&mut b);
        let dirty = b.scorer.take_dirty();
        b.batch.add_profiles(dirty);
        let next = Batch::new(b.generation);
        let batch = std::mem::replace(&mut b.batch, next);
        let moves: Vec<(i32, i64)> = batch.offsets.iter().map(|(p, m)| (*p, m.next)).collect();
        self.consumer
            .context()
            .inflight
            .fetch_add(1, Ordering::SeqCst);
        match self.batches.try_send(batch) {
            Ok(()) => {
                b.scorer.handed_on();
                for (p, next) in moves {
                    if let Some(progress) = b.progress.get_mut(&p) {
                        progress.basis = next;
                    }
                    if let Some(pending) = b.pending.get_mut(&p) {
                        pending.open = false;
                    }
                }
                true
            }
            Err(e) => {
                self.consumer
                    .context()
                    .inflight
                    .fetch_sub(1, Ordering::SeqCst);
                let batch = match e {
                    mpsc::error::TrySendError::Full(batch)
                    | mpsc::error::TrySendError::Closed(batch) => batch,
                };
                b.batch = batch;
                false
            }
        }
    }

    /// The sink is behind. First just stop polling: librdkafka keeps at most
    /// `queued.max.messages.kbytes` prefetched and then stops fetching by itself, so memory
    /// stays bounded and nothing is dropped. (Pausing instead discards the prefetched data,
    /// and after a resume the fetcher idles for most of a second: that stall halved the
    /// throughput of a fast consumer.) Only if the sink stays busy longer, e.g. Postgres is
    /// down, pause the partitions and keep polling so the group and rebalances are served.
    fn wait_for_sink(&mut self) {
        let patience = Instant::now() + SINK_WAIT_WITHOUT_POLLING;
        while !self.shutdown.load(Ordering::Relaxed) && Instant::now() < patience {
            self.heartbeat
                .store(Utc::now().timestamp() as u64, Ordering::Relaxed);
            if let Ok(ack) = self.acks.recv_timeout(Duration::from_millis(2)) {
                self.handle_ack(ack);
            }
            self.handle_acks();
            if self.batch_len() < self.max_records * BATCH_HARD_CAP || self.try_hand_on() {
                return;
            }
        }
        let assignment = self.consumer.assignment().unwrap_or_default();
        let _ = self.consumer.pause(&assignment);
        while !self.shutdown.load(Ordering::Relaxed) {
            self.heartbeat
                .store(Utc::now().timestamp() as u64, Ordering::Relaxed);
            self.handle_acks();
            if self.batch_len() < self.max_records * BATCH_HARD_CAP || self.try_hand_on() {
                break;
            }
            // Paused partitions deliver nothing new, but poll runs rebalance callbacks.
            if let Some(Ok(msg)) = self.consumer.poll(Duration::from_millis(20)) {
                self.take(&msg);
            }
        }
        let assignment = self.consumer.assignment().unwrap_or_default();
        let _ = self.consumer.resume(&assignment);
    }

    fn handle_acks(&self) {
        while let Ok(ack) = self.acks.try_recv() {
            self.handle_ack(ack);
        }
    }

    fn handle_ack(&self, ack: Ack) {
        match ack {
            Ack::Committed { offsets } => {
                {
                    let mut b = self.builder();
                    for (p, next) in &offsets {
                        if let Some(pending) = b.pending.get_mut(p) {
                            pending.committed(*next);
                        }
                    }
                }
                self.mirror_to_kafka(&offsets, CommitMode::Async)
            }
            Ack::Fenced { generation } => self.resync(generation),
        }
    }

    fn mirror_to_kafka(&self, offsets: &[(i32, i64)], mode: CommitMode) {
        let owned: Vec<i32> = self.builder().progress.keys().copied().collect();
        let mut tpl = TopicPartitionList::new();
        for (p, next) in offsets.iter().filter(|(p, _)| owned.contains(p)) {
            let _ = tpl.add_partition_offset(&self.topic, *p, Offset::Offset(*next));
        }
        if tpl.count() > 0
            && let Err(e) = self.consumer.commit(&tpl, mode)
        {
            tracing::debug!(error = %e, "offset mirror to Kafka failed");
        }
    }

    /// A batch of `generation` was fenced: drop all buffered work, re-read the stored
    /// offsets of every owned partition and seek there.
    fn resync(&self, generation: u64) {
        let partitions: Vec<i32> = {
            let mut b = self.builder();
            if generation < b.generation {
                return; // already resynced past it
            }
            b.generation = generation + 1;
            b.batch = Batch::new(b.generation);
            let partitions: Vec<i32> = b.progress.keys().copied().collect();
            // In-memory scoring state may be ahead of what committed: start from the store.
            b.scorer.forget_partitions(&partitions);
            for pending in b.pending.values_mut() {
                *pending = Pending::default();
            }
            partitions
        };
        self.consumer.context().warm_scorer(&partitions);
        let stored = self.consumer.context().stored_offsets(&partitions);
        for s in stored {
            if let Some(p) = self.builder().progress.get_mut(&s.partition) {
                *p = Progress::stored(s.next, s.watermark);
            }
            if s.next >= 0
                && let Err(e) = self.consumer.seek(
                    &self.topic,
                    s.partition,
                    Offset::Offset(s.next),
                    Duration::from_secs(5),
                )
            {
                tracing::warn!(partition = s.partition, error = %e, "seek after resync failed");
            }
        }
        tracing::info!(?partitions, "resynced from stored offsets");
    }

    fn shut_down(self) {
        tracing::info!("shutting down: flushing the last batch");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.builder().batch.is_empty() && !self.try_hand_on() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
            self.handle_acks();
        }
        let inflight = self.consumer.context().inflight.clone();
        while inflight.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut last: HashMap<i32, i64> = HashMap::new();
        while let Ok(ack) = self.acks.try_recv() {
            if let Ack::Committed { offsets } = ack {
                last.extend(offsets);
            }
        }
        self.mirror_to_kafka(&last.into_iter().collect::<Vec<_>>(), CommitMode::Sync);
        // Dropping the consumer closes it: revoke (nothing in flight now), leave the group.
        drop(self.consumer);
        tracing::info!("left the consumer group");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_lag_is_the_age_of_the_oldest_uncommitted_record() {
        let t = |s: i64| DateTime::<Utc>::from_timestamp(1_700_000_000 + s, 0).unwrap();
        let mut p = Pending::default();
        assert_eq!(p.time_lag(t(100)), 0.0, "nothing held: caught up");
        // Batch 1 takes offsets 10..=12 (first at t=0), batch 2 takes 13.. (first at t=5).
        p.take(10, t(0));
        p.take(11, t(1));
        p.take(12, t(2));
        p.open = false; // handed on
        p.take(13, t(5));
        p.take(14, t(6));
        assert_eq!(p.time_lag(t(30)), 30.0);
        p.committed(13); // batch 1 committed
        assert_eq!(p.time_lag(t(30)), 25.0);
        p.open = false;
        p.committed(15); // batch 2 committed
        assert_eq!(p.time_lag(t(30)), 0.0);
        // A clock behind the record's timestamp never reads negative.
        p.take(15, t(40));
        assert_eq!(p.time_lag(t(30)), 0.0);
    }
}
