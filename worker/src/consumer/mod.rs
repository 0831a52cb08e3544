//! The consumer: one thread polls Kafka and feeds the [`Batcher`]. Partition ownership
//! follows the group (cooperative-sticky, see [`rebalance`]); the offsets that count are the
//! ones stored in Postgres, so each partition starts at its stored offset, and the sink's
//! acks say when a batch committed (mirrored to Kafka for tools) or was fenced (another
//! worker moved a stored offset: resync from Postgres).

mod rebalance;

use crate::batch::Batch;
use crate::batcher::{Batcher, OwnedPartition};
use crate::config::reload::ConfigReload;
use crate::error_events::ErrorKind;
use crate::metrics::Metrics;
use crate::score::ScoringStage;
use crate::sink::Ack;
use chrono::{DateTime, Utc};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use rebalance::Context;
use sluice_api::WorkerConfig;
use sluice_api::config::StartFrom;
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use tokio::sync::mpsc;

/// How long a full batch waits for the sink before the partitions are paused.
const SINK_WAIT_WITHOUT_POLLING: Duration = Duration::from_secs(2);

/// How often Kafka's copy of the stored offsets is written again, whether or not a batch
/// moved them. The copy is written asynchronously after each commit and nothing retries a
/// write that failed (broker down, a rebalance in flight); on a pipeline with nothing left
/// to consume no later commit would replace it, and the lag read from Kafka (the operator's
/// autoscaling and alerts) would stay above 0 for good.
const MIRROR_REFRESH: Duration = Duration::from_secs(5);

/// Records replayed into the profiles at once (one read-back of evicted customers each):
/// bounds the memory a long replay takes.
const REPLAY_CHUNK: usize = 2_000;

pub struct ConsumerLoop {
    consumer: BaseConsumer<Context>,
    topic: String,
    batches: mpsc::Sender<Batch>,
    acks: std::sync::mpsc::Receiver<Ack>,
    shutdown: Arc<AtomicBool>,
    /// Unix seconds of the last loop turn (`/healthz`).
    pub heartbeat: Arc<AtomicU64>,
    reload: Option<ConfigReload>,
    /// When Kafka's copy of the stored offsets was last written again ([`MIRROR_REFRESH`]).
    mirror_refreshed: Instant,
}

pub struct ConsumerParts {
    pub pool: PgPool,
    pub runtime: Handle,
    pub metrics: Arc<Metrics>,
    pub scorer: Box<dyn ScoringStage>,
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
            batcher: Mutex::new(Batcher::new(
                config,
                parts.scorer,
                parts.metrics.profiles_replayed.clone(),
                parts.metrics.profile_checkpoints.clone(),
            )),
            inflight: parts.inflight,
            metrics: parts.metrics,
            revoke_deadline: Duration::from_millis(u64::from(config.kafka.session_timeout_ms) / 2),
            // Validated at start: an unparsable value never gets here.
            start_from: config.kafka.start_from().unwrap_or(StartFrom::Earliest),
        };
        let consumer: BaseConsumer<Context> = kafka.create_with_context(context)?;
        consumer.subscribe(&[&config.kafka.topic])?;
        Ok(Self {
            consumer,
            topic: config.kafka.topic.clone(),
            batches: parts.batches,
            acks: parts.acks,
            shutdown: parts.shutdown,
            heartbeat: parts.heartbeat,
            reload: parts.config_path.map(ConfigReload::watch),
            mirror_refreshed: Instant::now(),
        })
    }

    /// Apply a changed config file's hot-reloadable settings (the fraud switches), or keep
    /// the running ones when it was refused.
    fn apply_reloaded(&mut self, changed: anyhow::Result<sluice_api::WorkerConfig>) {
        let reloads = &self.consumer.context().metrics.config_reloads;
        let config = match changed {
            Ok(config) => config,
            Err(e) => {
                reloads.with_label_values(&["refused"]).inc();
                tracing::warn!(error = %format!("{e:#}"), "ignoring an invalid configuration update; keeping the running one");
                return;
            }
        };
        reloads.with_label_values(&["applied"]).inc();
        tracing::info!(fraud = ?config.fraud, "applied reloaded fraud settings");
        let fresh = self.batcher().scorer.reconfigure(&config.fraud);
        if fresh {
            // Warmed from what Postgres holds; the offsets read with the profiles stay as
            // they are (the partitions keep their positions).
            let owned = self.batcher().owned_partitions();
            self.consumer.context().load_partitions(&owned);
        }
    }

    /// Poll until shutdown is requested, then hand on the last batch, wait for the sink,
    /// mirror the final offsets to Kafka and leave the group.
    pub fn run(mut self) {
        while !self.shutdown.load(Ordering::Relaxed) {
            self.beat();
            self.handle_acks();
            self.refresh_mirror();
            if let Some(changed) = self.reload.as_mut().and_then(ConfigReload::changed_config) {
                self.apply_reloaded(changed);
            }
            // Only a full batch holds fetching back, and only after a while does it pause the
            // partitions, since pausing drops librdkafka's prefetched data.
            let due = self.batcher().due();
            if due && !self.try_hand_on() && self.batcher().full() {
                self.wait_for_sink();
                continue;
            }
            let timeout = self.batcher().poll_timeout();
            if let Some(result) = self.consumer.poll(timeout) {
                match result {
                    Ok(msg) => self.take(&msg),
                    Err(e) => self.poll_failed(&e),
                }
            }
        }
        self.shut_down();
    }

    fn beat(&self) {
        self.heartbeat
            .store(Utc::now().timestamp() as u64, Ordering::Relaxed);
    }

    fn batcher(&self) -> MutexGuard<'_, Batcher> {
        self.consumer.context().batcher()
    }

    fn poll_failed(&self, e: &rdkafka::error::KafkaError) {
        let errors = &self.consumer.context().metrics.errors;
        if let Some(suppressed) = errors.occurred(ErrorKind::Poll) {
            tracing::warn!(error = %e, suppressed, "Kafka poll error");
        }
    }

    fn take(&self, msg: &BorrowedMessage<'_>) {
        let kafka_timestamp = msg
            .timestamp()
            .to_millis()
            .and_then(DateTime::<Utc>::from_timestamp_millis)
            .unwrap_or_else(Utc::now);
        let context = self.consumer.context();
        let mut b = context.batcher();
        b.take(
            msg.partition(),
            msg.offset(),
            msg.payload().unwrap_or_default(),
            kafka_timestamp,
        );
        if b.replay_buffered() >= REPLAY_CHUNK {
            b.score_replay(&|customers| context.reload_profiles(customers));
        }
    }

    fn try_hand_on(&self) -> bool {
        let context = self.consumer.context();
        context
            .batcher()
            .try_hand_on(&self.batches, &context.inflight, &|customers| {
                context.reload_profiles(customers)
            })
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
            self.beat();
            if let Ok(ack) = self.acks.recv_timeout(Duration::from_millis(2)) {
                self.handle_ack(ack);
            }
            self.handle_acks();
            if !self.batcher().full() || self.try_hand_on() {
                return;
            }
        }
        let assignment = self.consumer.assignment().unwrap_or_default();
        let _ = self.consumer.pause(&assignment);
        while !self.shutdown.load(Ordering::Relaxed) {
            self.beat();
            self.handle_acks();
            if !self.batcher().full() || self.try_hand_on() {
                break;
            }
            // Paused partitions deliver nothing new, but poll runs rebalance callbacks.
            match self.consumer.poll(Duration::from_millis(20)) {
                Some(Ok(msg)) => self.take(&msg),
                Some(Err(e)) => self.poll_failed(&e),
                None => {}
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
                    let mut b = self.batcher();
                    for (p, next) in &offsets {
                        if let Some(owned) = b.owned.get_mut(p) {
                            owned.uncommitted.committed(*next);
                            owned.committed = owned.committed.max(Some(*next));
                        }
                    }
                }
                self.mirror_to_kafka(&offsets, CommitMode::Async)
            }
            Ack::Fenced { generation } => self.resync(generation),
        }
    }

    /// Every [`MIRROR_REFRESH`], write Kafka's copy of every owned partition's stored offset
    /// again: a copy left behind by a failed write, or by the broker being down, catches up
    /// even when no batch comes to move it. Writing an unchanged offset again is harmless.
    fn refresh_mirror(&mut self) {
        if self.mirror_refreshed.elapsed() < MIRROR_REFRESH {
            return;
        }
        self.mirror_refreshed = Instant::now();
        let offsets: Vec<(i32, i64)> = self
            .batcher()
            .owned
            .iter()
            .filter_map(|(p, owned)| Some((*p, owned.committed?)))
            .collect();
        self.mirror_to_kafka(&offsets, CommitMode::Async);
    }

    fn mirror_to_kafka(&self, offsets: &[(i32, i64)], mode: CommitMode) {
        let owned = self.batcher().owned_partitions();
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
        let Some(partitions) = self.batcher().restart(generation) else {
            return;
        };
        let context = self.consumer.context();
        let replay = self.batcher().scorer.stateful();
        for s in context.load_partitions(&partitions) {
            let owned = OwnedPartition::at(&s, replay);
            let from = owned.fetch_from();
            if let Some(o) = self.batcher().owned.get_mut(&s.partition) {
                *o = owned;
            }
            if let Some(from) = from
                && let Err(e) = self.consumer.seek(
                    &self.topic,
                    s.partition,
                    Offset::Offset(from),
                    Duration::from_secs(5),
                )
                && let Some(suppressed) = context.metrics.errors.occurred(ErrorKind::Assignment)
            {
                tracing::warn!(partition = s.partition, error = %e, suppressed, "seek after resync failed");
            }
        }
        tracing::info!(?partitions, "resynced from stored offsets");
    }

    fn shut_down(self) {
        tracing::info!("shutting down: flushing the last batch and the profiles");
        let deadline = Instant::now() + Duration::from_secs(30);
        // A checkpoint with the last batch: whoever takes the partitions over replays nothing.
        self.batcher().request_checkpoint();
        let pending = |b: &Batcher| !b.batch.is_empty() || b.due();
        while pending(&self.batcher()) && !self.try_hand_on() && Instant::now() < deadline {
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
