//! Partitions coming and going. On assignment each partition starts at its stored offset
//! and its customers' profiles are warmed before any record is taken; on revocation the
//! batches already handed on may finish (within half the session timeout), so the next
//! owner starts from their commit instead of being fenced by it.

use crate::batcher::{Batcher, OwnedPartition};
use crate::db::{self, StoredOffset};
use crate::error_events::ErrorKind;
use crate::metrics::Metrics;
use crate::score::ProfileRow;
use chrono::Utc;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaResult;
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
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
}

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

    /// Warm the scoring stage with the persisted state of `partitions`.
    pub(super) fn warm_scorer(&self, partitions: &[i32]) {
        if !self.batcher().scorer.stateful() {
            return;
        }
        let rows = self.retry_db("loading customer profiles", || {
            db::load_profiles(&self.pool, partitions)
        });
        tracing::info!(
            ?partitions,
            profiles = rows.len(),
            "warmed customer profiles"
        );
        self.batcher().scorer.warm(rows);
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
        let stored = self.stored_offsets(&partitions);
        self.warm_scorer(&partitions);
        let mut b = self.batcher();
        for s in stored {
            if let Some(next) = s.next {
                let _ = tpl.set_partition_offset(&self.topic, s.partition, Offset::Offset(next));
            }
            b.owned.insert(s.partition, OwnedPartition::at(&s));
        }
        let owned = b.owned.len();
        drop(b);
        tracing::info!(?partitions, "partitions assigned");
        if let Err(e) = consumer.incremental_assign(tpl)
            && let Some(suppressed) = self.metrics.errors.occurred(ErrorKind::Assignment)
        {
            tracing::error!(error = %e, suppressed, "incremental assign failed");
        }
        // After the assign: a record produced from now on is fetched without waiting.
        self.metrics.partitions_assigned.set(owned as i64);
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
