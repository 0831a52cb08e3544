//! Partitions coming and going. On assignment each partition starts at its stored offset
//! (a new pipeline's first owner stores one for every partition from `kafka.start_from`, so
//! the choice is made once; a partition added to the topic later starts at its beginning)
//! and its customers' profiles are warmed before any record is taken, then brought up to the
//! stored offset by replaying the records since they were persisted; on revocation the
//! batches already handed on may finish (within half the session timeout), so the next
//! owner starts from their commit instead of being fenced by it.

use crate::batcher::{Batcher, OwnedPartition};
use crate::db::{self, StoredOffset};
use crate::error_events::ErrorKind;
use crate::metrics::Metrics;
use crate::score::ProfileRow;
use chrono::Utc;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaResult;
use rdkafka::statistics::Statistics;
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use sluice_api::config::StartFrom;
use sqlx::PgPool;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::runtime::Handle;

/// The consumer's context: what the rebalance and statistics callbacks of librdkafka need,
/// and the batcher they share with the poll loop (all on the poll thread; the mutex is never
/// contended, it only makes the context `Sync`).
pub struct Context {
    pub(super) pool: PgPool,
    pub(super) runtime: Handle,
    pub(super) group: String,
    pub(super) topic: String,
    pub(super) batcher: Mutex<Batcher>,
    pub(super) inflight: Arc<AtomicUsize>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) revoke_deadline: Duration,
    /// Where a partition with nothing stored starts (`kafka.start_from`).
    pub(super) start_from: StartFrom,
}

/// Bound on each broker query made while resolving start offsets.
const START_QUERY_TIMEOUT: Duration = Duration::from_secs(10);

impl Context {
    pub(super) fn batcher(&self) -> MutexGuard<'_, Batcher> {
        self.batcher.lock().unwrap_or_else(|e| e.into_inner())
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
                    if let Some(suppressed) = self.metrics.errors.occurred(ErrorKind::Database) {
                        tracing::warn!(error = %e, suppressed, "{what} failed; retrying");
                    }
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// The stored offsets (and watermarks) of `partitions`.
    pub(super) fn stored_offsets(&self, partitions: &[i32]) -> Vec<StoredOffset> {
        self.retry_db("reading stored offsets", || {
            db::load_stored_offsets(&self.pool, &self.group, &self.topic, partitions)
        })
    }

    /// The stored offsets of `partitions`, after storing a start offset for each that had
    /// none: every returned offset is `Some`. Also returns the offsets of the partitions that
    /// started now.
    ///
    /// `start_from` is for a new pipeline: its first owner resolves it for every partition of
    /// the topic at once, so workers joining later find their partitions' starts stored. Once
    /// the pipeline has started, a partition with nothing stored was added to the topic since
    /// and starts at its beginning (with `latest` it would skip what producers wrote to it
    /// before this worker learnt of it).
    fn stored_or_started(
        &self,
        consumer: &BaseConsumer<Self>,
        partitions: &[i32],
    ) -> (Vec<StoredOffset>, Vec<(i32, i64)>) {
        let stored = self.stored_offsets(partitions);
        let fresh: Vec<i32> = stored
            .iter()
            .filter(|s| s.next.is_none())
            .map(|s| s.partition)
            .collect();
        if fresh.is_empty() {
            return (stored, Vec::new());
        }
        let started = self.retry_db("reading whether the pipeline started", || {
            db::pipeline_started(&self.pool, &self.group, &self.topic)
        });
        let (start_from, targets) = if started {
            (StartFrom::Earliest, fresh.clone())
        } else {
            let all = self.retry_kafka("reading the topic's partitions", || {
                topic_partitions(consumer, &self.topic)
            });
            (self.start_from, all)
        };
        let starts = self.retry_kafka("resolving start offsets", || {
            start_offsets(consumer, &self.topic, &targets, start_from)
        });
        tracing::info!(
            ?start_from,
            pipeline_started = started,
            ?starts,
            "partitions start (nothing stored yet)"
        );
        self.retry_db("storing start offsets", || {
            db::store_start_offsets(&self.pool, &self.group, &self.topic, &starts)
        });
        // Read back: another worker may have stored its choice first, and that one stands.
        let stored = self.stored_offsets(partitions);
        let started = stored
            .iter()
            .filter(|s| fresh.contains(&s.partition))
            .filter_map(|s| Some((s.partition, s.next?)))
            .collect();
        (stored, started)
    }

    /// Run a broker query until it succeeds, backing off, like [`Self::retry_db`].
    fn retry_kafka<T>(&self, what: &str, query: impl Fn() -> KafkaResult<T>) -> T {
        let mut delay = Duration::from_millis(100);
        loop {
            match query() {
                Ok(value) => return value,
                Err(e) => {
                    if let Some(suppressed) = self.metrics.errors.occurred(ErrorKind::Assignment) {
                        tracing::warn!(error = %e, suppressed, "{what} failed; retrying");
                    }
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// The stored offsets of `partitions`, with the scoring stage warmed by their customers'
    /// profiles read in the same snapshot (see [`db::load_partition_state`]).
    pub(super) fn load_partitions(&self, partitions: &[i32]) -> Vec<StoredOffset> {
        let stateful = self.batcher().scorer.stateful();
        let (stored, profiles) = self.retry_db("loading partitions and profiles", || {
            db::load_partition_state(&self.pool, &self.group, &self.topic, partitions, stateful)
        });
        if stateful {
            tracing::info!(
                ?partitions,
                profiles = profiles.len(),
                "warmed customer profiles"
            );
            self.batcher().scorer.warm(profiles);
        }
        stored
    }

    /// Profiles of customers evicted from memory and seen again, read back before scoring.
    pub(super) fn reload_profiles(&self, customers: &[String]) -> Vec<ProfileRow> {
        let rows = self.retry_db("reloading evicted customer profiles", || {
            db::load_customer_profiles(&self.pool, customers)
        });
        self.metrics.profiles_reloaded.inc_by(rows.len() as u64);
        rows
    }

    fn on_assign(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) {
        let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
        let (_, started) = self.stored_or_started(consumer, &partitions);
        let stored = self.load_partitions(&partitions);
        let mut b = self.batcher();
        let replay = b.scorer.stateful();
        let mut replaying = Vec::new();
        for s in stored {
            let owned = OwnedPartition::at(&s, replay);
            if let Some(from) = owned.fetch_from() {
                let _ = tpl.set_partition_offset(&self.topic, s.partition, Offset::Offset(from));
            }
            if owned.replay_left() > 0 {
                replaying.push((s.partition, owned.replay_left()));
            }
            b.owned.insert(s.partition, owned);
        }
        let owned = b.owned.len();
        drop(b);
        tracing::info!(
            ?partitions,
            ?replaying,
            "partitions assigned (replaying records since the profiles were persisted: partition, records)"
        );
        if let Err(e) = consumer.incremental_assign(tpl)
            && let Some(suppressed) = self.metrics.errors.occurred(ErrorKind::Assignment)
        {
            tracing::error!(error = %e, suppressed, "incremental assign failed");
        }
        // After the assign: a record produced from now on is fetched without waiting.
        self.metrics.partitions_assigned.set(owned as i64);
        // Kafka's copy of a start no record has moved yet: without it, tools and the operator's
        // lag reading count an uncommitted partition from its log start, i.e. also what
        // `latest` or a timestamp skipped. Best effort, like every mirror.
        if !started.is_empty() {
            let mut mirror = TopicPartitionList::new();
            for (p, next) in started {
                let _ = mirror.add_partition_offset(&self.topic, p, Offset::Offset(next));
            }
            if let Err(e) = consumer.commit(&mirror, CommitMode::Async) {
                tracing::debug!(error = %e, "mirroring start offsets to Kafka failed (Postgres holds the truth)");
            }
        }
    }

    fn on_revoke(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
        {
            let mut b = self.batcher();
            b.revoke(&partitions);
            self.metrics.partitions_assigned.set(b.owned.len() as i64);
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
        if let Err(e) = consumer.incremental_unassign(tpl)
            && let Some(suppressed) = self.metrics.errors.occurred(ErrorKind::Assignment)
        {
            tracing::error!(error = %e, suppressed, "incremental unassign failed");
        }
    }
}

/// Every partition of `topic`, from the brokers' metadata.
fn topic_partitions<C: Consumer<Context>>(consumer: &C, topic: &str) -> KafkaResult<Vec<i32>> {
    let md = consumer.fetch_metadata(Some(topic), START_QUERY_TIMEOUT)?;
    let t = md.topics().iter().find(|t| t.name() == topic).ok_or(
        rdkafka::error::KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownTopicOrPartition),
    )?;
    if let Some(e) = t.error() {
        return Err(rdkafka::error::KafkaError::MetadataFetch(e.into()));
    }
    Ok(t.partitions().iter().map(|p| p.id()).collect())
}

/// The offset each of `partitions` starts at when nothing is stored: the low or high
/// watermark, or the first offset at or after a timestamp (the high watermark when no record
/// is that recent).
fn start_offsets<C: Consumer<Context>>(
    consumer: &C,
    topic: &str,
    partitions: &[i32],
    start_from: StartFrom,
) -> KafkaResult<Vec<(i32, i64)>> {
    let end = |p: i32| -> KafkaResult<i64> {
        Ok(consumer.fetch_watermarks(topic, p, START_QUERY_TIMEOUT)?.1)
    };
    match start_from {
        StartFrom::Earliest => partitions
            .iter()
            .map(|&p| {
                Ok((
                    p,
                    consumer.fetch_watermarks(topic, p, START_QUERY_TIMEOUT)?.0,
                ))
            })
            .collect(),
        StartFrom::Latest => partitions.iter().map(|&p| Ok((p, end(p)?))).collect(),
        StartFrom::Timestamp(at) => {
            let mut query = TopicPartitionList::new();
            for &p in partitions {
                query.add_partition_offset(topic, p, Offset::Offset(at.timestamp_millis()))?;
            }
            let found = consumer.offsets_for_times(query, START_QUERY_TIMEOUT)?;
            found
                .elements()
                .iter()
                .map(|e| {
                    e.error()?;
                    match e.offset() {
                        Offset::Offset(o) => Ok((e.partition(), o)),
                        _ => Ok((e.partition(), end(e.partition())?)),
                    }
                })
                .collect()
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
            let b = self.batcher();
            (
                b.owned_partitions(),
                b.owned
                    .iter()
                    .map(|(p, owned)| (*p, owned.uncommitted.time_lag(now)))
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
                if let Some(suppressed) = self.metrics.errors.occurred(ErrorKind::Assignment) {
                    tracing::error!(error = ?other, suppressed, "rebalance error; dropping assignment");
                }
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
