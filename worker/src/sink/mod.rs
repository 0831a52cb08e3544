//! The sink: a batch is split into lanes over disjoint sets of its partitions, each written
//! in its own Postgres transaction on its own connection, all at once: the rows ([`rows`]),
//! the rejections, the customer profiles when the batch checkpoints them, the stored offsets
//! it moves and the summary deltas ([`crate::summaries`]). Its Kafka outputs ([`publish`])
//! are delivered before the commit. A lane that fails is retried until it commits; one that
//! was fenced is dropped. When the pool has the connections, the next batch starts on its
//! own while this one finishes, and waits for it before the statements that must follow it
//! ([`order`]); batches commit in order whichever lane they take.

mod order;
mod publish;
mod rows;

use crate::batch::{Accepted, Batch, Rejected, duplicate_of};
use crate::batch_timing::{Laps, Stage, StageTimes};
use crate::copy::{self, EncodedRows};
use crate::error_events::ErrorKind;
use crate::metrics::{Metrics, Outcome};
use crate::summaries::{add_quality, add_summaries};
use crate::validate::Reason;
use chrono::{DateTime, Utc};
use order::{Follow, Order, Turn};
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureProducer;
use sluice_api::event::CompactString;
use sqlx::PgPool;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// What the sink tells the consumer after each batch.
#[derive(Debug)]
pub enum Ack {
    /// Committed: the partitions' stored offsets are now these.
    Committed { offsets: Vec<(i32, i64)> },
    /// Another worker had moved one of these partitions' offsets: re-read and re-seek.
    Fenced { generation: u64 },
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("stored offset moved by another worker (partition {partition})")]
    Fenced { partition: i32 },
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("DLQ produce: {0}")]
    DlqProduce(KafkaError),
    #[error("alert produce: {0}")]
    AlertProduce(KafkaError),
    /// An attempt of the batch before failed; this one rolls back and waits for it.
    #[error("overtaken by the retry of the batch before")]
    Overtaken,
    /// The batch before was fenced, and this one goes with its generation.
    #[error("dropped with the fenced batch before")]
    Dropped,
}

/// Every `kind` label of `sluice_db_errors_total`: failed batch writes in Postgres only.
pub const DB_ERROR_KINDS: [&str; 2] = ["database", "connection"];

impl WriteError {
    /// The `kind` of `sluice_db_errors_total`, for errors of Postgres.
    fn db_error_kind(&self) -> Option<&'static str> {
        match self {
            Self::Db(sqlx::Error::Database(_)) => Some("database"),
            Self::Db(_) => Some("connection"),
            Self::Fenced { .. }
            | Self::DlqProduce(_)
            | Self::AlertProduce(_)
            | Self::Overtaken
            | Self::Dropped => None,
        }
    }

    /// The `error` of `sluice_errors_total` (a fence is no error: it is how ownership moves;
    /// nor is waiting for the batch before).
    fn error_kind(&self) -> Option<ErrorKind> {
        match self {
            Self::Fenced { .. } | Self::Overtaken | Self::Dropped => None,
            Self::Db(_) => Some(ErrorKind::Database),
            Self::DlqProduce(_) => Some(ErrorKind::DlqProduce),
            Self::AlertProduce(_) => Some(ErrorKind::AlertProduce),
        }
    }
}

pub struct Sink {
    pub pool: PgPool,
    pub producer: FutureProducer,
    pub group: String,
    pub topic: String,
    pub dlq_topic: String,
    pub alerts_topic: String,
    pub metrics: Arc<Metrics>,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// Transactions written at once per batch (`postgres.sink_lanes` within the pool).
    pub lanes: usize,
    /// Whether the next batch starts while this one finishes ([`order`]): the pool has
    /// connections for two batches' lanes and one more.
    pub overlap: bool,
    /// Batches handed over and not yet finished; the consumer waits on it before giving up
    /// partitions.
    pub inflight: Arc<AtomicUsize>,
    /// Whether the last database round trip succeeded (`/readyz`).
    pub db_ok: Arc<AtomicBool>,
    /// When ids are claimed by COPY (see [`rows::claim_ids`]).
    pub fast_claims: FastClaims,
}

/// Backs off from claiming ids by COPY while it keeps failing. A repeat older than the
/// scorer remembers fails a batch's COPY now and then, and the next batch tries again; but a
/// stream whose repeats this worker never scored (a producer resending old events, or
/// another worker's records) would otherwise pay for a rolled-back COPY in every batch.
#[derive(Debug, Default)]
pub struct FastClaims {
    /// Batches still to claim the slow way.
    skip: AtomicUsize,
    /// How many batches the next fall-back skips: none after a success, then doubling.
    penalty: AtomicUsize,
}

impl FastClaims {
    const MAX_PENALTY: usize = 256;

    /// Whether this batch may try the COPY.
    fn allowed(&self) -> bool {
        self.skip
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_err()
    }

    /// The COPY was tried: `fell_back` if a stored id made it roll back.
    fn tried(&self, fell_back: bool) {
        if fell_back {
            let p = self.penalty.load(Ordering::Relaxed);
            self.skip.store(p, Ordering::Relaxed);
            self.penalty
                .store((p * 2).clamp(1, Self::MAX_PENALTY), Ordering::Relaxed);
        } else {
            self.penalty.store(0, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod fast_claims_tests {
    use super::FastClaims;

    #[test]
    fn one_fall_back_costs_nothing_and_repeated_ones_back_off() {
        let f = FastClaims::default();
        assert!(f.allowed());
        f.tried(true);
        assert!(f.allowed(), "an isolated fall-back skips no batch");
        f.tried(true);
        assert!(!f.allowed());
        assert!(f.allowed());
        f.tried(true);
        assert!(!f.allowed() && !f.allowed());
        assert!(f.allowed());
        f.tried(false);
        f.tried(true);
        assert!(f.allowed(), "a success resets the back-off");
    }
}

/// A batch's rows and its alerts as COPY data, one entry per record of the batch.
struct CopyData {
    rows: EncodedRows,
    alerts: EncodedRows,
}

/// What is made of a batch on another thread while its ids are claimed.
struct Prepared {
    /// Its COPY data, when the sink COPYs.
    copy: Option<CopyData>,
    /// The alert message of each flagged record, by index.
    alert_messages: Vec<(usize, String)>,
}

/// A batch's records whose ids were new.
struct Fresh<'a> {
    rows: &'a [&'a Accepted],
    /// One per record of the batch: whether it is among `rows`.
    of_batch: &'a [bool],
    /// The batch's COPY data, when the sink COPYs.
    encoded: Option<&'a CopyData>,
}

struct Written {
    inserted: u64,
    duplicates: u64,
    rejected: u64,
    flagged: u64,
    late: u64,
    /// The sink's stages of the attempt that committed.
    times: StageTimes,
}

/// How a lane ended.
enum Settled {
    /// Committed: the partitions' new stored offsets.
    Committed(Vec<(i32, i64)>),
    Fenced,
    /// Dropped with the fenced batch before it.
    Dropped,
}

/// A batch handed to its task and not yet acknowledged.
struct InFlight {
    generation: u64,
    lanes: tokio::task::JoinHandle<Vec<Settled>>,
    follow: Follow,
    /// Its transaction ids, for the batch after it.
    ids: Arc<HashSet<CompactString>>,
}

impl Sink {
    /// Write batches in order until the channel closes, each batch's lanes at once, and with
    /// `overlap` the next batch beside this one ([`order`]). A lane that fails is retried
    /// with backoff until it commits; a fenced one is dropped together with everything of
    /// its generation, and the consumer resyncs. At most two batches are in the sink.
    pub async fn run(self, mut batches: mpsc::Receiver<Batch>, acks: std::sync::mpsc::Sender<Ack>) {
        let sink = Arc::new(self);
        let mut min_generation = 0;
        let mut previous: Option<InFlight> = None;
        loop {
            // The batch in flight is acknowledged as soon as it settles, not when the next
            // one comes: the consumer waits for it before it gives partitions up.
            let next = match &mut previous {
                Some(p) => tokio::select! {
                    biased;
                    settled = &mut p.lanes => {
                        let generation = p.generation;
                        previous = None;
                        sink.acknowledge(generation, settled, &acks, &mut min_generation);
                        continue;
                    }
                    next = batches.recv() => next,
                },
                None => batches.recv().await,
            };
            let Some(batch) = next else { break };
            if batch.generation < min_generation {
                sink.inflight.fetch_sub(1, Ordering::SeqCst);
                continue;
            }
            let generation = batch.generation;
            let lanes: Vec<Arc<Batch>> =
                batch.split(sink.lanes).into_iter().map(Arc::new).collect();
            let ids: Arc<HashSet<CompactString>> = Arc::new(if sink.overlap {
                lanes
                    .iter()
                    .flat_map(|b| &b.accepted)
                    .map(|r| r.valid.tx.transaction_id.clone())
                    .collect()
            } else {
                HashSet::new()
            });
            let (order, follow) = Order::new(
                generation,
                lanes.len(),
                previous
                    .as_ref()
                    .map(|p| (p.follow.clone(), Arc::clone(&p.ids))),
            );
            let task = tokio::spawn({
                let sink = Arc::clone(&sink);
                async move {
                    let settling = lanes.iter().map(|b| sink.settle(b, &order));
                    futures::future::join_all(settling).await
                }
            });
            if let Some(p) = previous.take() {
                sink.finish(p, &acks, &mut min_generation).await;
            }
            let current = InFlight {
                generation,
                lanes: task,
                follow,
                ids,
            };
            if sink.overlap {
                // The batch after this one may start once this one holds its id claims.
                let _ = current.follow.clone().wait_for(|p| p.passable()).await;
                previous = Some(current);
            } else {
                sink.finish(current, &acks, &mut min_generation).await;
            }
        }
        if let Some(p) = previous {
            sink.finish(p, &acks, &mut min_generation).await;
        }
    }

    /// Wait until a batch is settled and acknowledge it.
    async fn finish(
        &self,
        mut batch: InFlight,
        acks: &std::sync::mpsc::Sender<Ack>,
        min_generation: &mut u64,
    ) {
        let settled = (&mut batch.lanes).await;
        self.acknowledge(batch.generation, settled, acks, min_generation);
    }

    /// Tell the consumer how a batch's lanes settled.
    fn acknowledge(
        &self,
        generation: u64,
        settled: Result<Vec<Settled>, tokio::task::JoinError>,
        acks: &std::sync::mpsc::Sender<Ack>,
        min_generation: &mut u64,
    ) {
        let settled = match settled {
            Ok(settled) => settled,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        let offsets: Vec<(i32, i64)> = settled
            .iter()
            .flat_map(|s| match s {
                Settled::Committed(offsets) => offsets.as_slice(),
                Settled::Fenced | Settled::Dropped => &[],
            })
            .copied()
            .collect();
        if !offsets.is_empty() {
            let _ = acks.send(Ack::Committed { offsets });
        }
        if settled.iter().any(|s| matches!(s, Settled::Fenced)) {
            *min_generation = generation + 1;
            let _ = acks.send(Ack::Fenced { generation });
        }
        self.inflight.fetch_sub(1, Ordering::SeqCst);
    }

    /// Write one lane until it commits, is fenced, or is dropped with the batch before it.
    async fn settle(&self, batch: &Arc<Batch>, order: &Order) -> Settled {
        let settled = self.settle_in_order(batch, order).await;
        order.settled(matches!(settled, Settled::Committed(_)));
        settled
    }

    async fn settle_in_order(&self, batch: &Arc<Batch>, order: &Order) -> Settled {
        let mut delay = self.retry_initial;
        let mut retry = false;
        let mut first_attempt = None;
        loop {
            if order.start(retry).await == Turn::Drop {
                return Settled::Dropped;
            }
            let started = Instant::now();
            let first_attempt = *first_attempt.get_or_insert(started);
            let attempt = self.write(batch, order, retry).await;
            if attempt.is_err() {
                order.failed();
                retry = true;
            }
            match attempt {
                Ok(w) => {
                    self.db_ok.store(true, Ordering::Relaxed);
                    self.record_success(batch, &w, first_attempt, started);
                    return Settled::Committed(
                        batch.offsets.iter().map(|(p, m)| (*p, m.next)).collect(),
                    );
                }
                Err(WriteError::Fenced { partition }) => {
                    self.metrics.fenced_batches.inc();
                    tracing::warn!(
                        partition,
                        generation = batch.generation,
                        "batch fenced: offsets moved by another worker; resyncing"
                    );
                    return Settled::Fenced;
                }
                Err(WriteError::Dropped) => return Settled::Dropped,
                Err(WriteError::Overtaken) => {
                    tracing::debug!(
                        generation = batch.generation,
                        "the batch before failed an attempt; writing this one again after it"
                    );
                }
                Err(e) => {
                    if let Some(kind) = e.db_error_kind() {
                        self.metrics.db_errors.with_label_values(&[kind]).inc();
                        self.db_ok.store(false, Ordering::Relaxed);
                    }
                    if let Some(suppressed) =
                        e.error_kind().and_then(|k| self.metrics.errors.occurred(k))
                    {
                        tracing::warn!(error = %e, suppressed, retry_in_ms = delay.as_millis() as u64, records = batch.len(), "batch write failed; retrying");
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(self.retry_max);
                }
            }
        }
    }

    fn record_success(&self, batch: &Batch, w: &Written, first_attempt: Instant, started: Instant) {
        let m = &self.metrics;
        let now = Instant::now();
        let mut times = batch.times.clone();
        times.merge(&w.times);
        if let Some(handed_on) = batch.handed_on_at {
            times.add(
                Stage::Queue,
                first_attempt.saturating_duration_since(handed_on),
            );
        }
        times.add(Stage::Retry, started.duration_since(first_attempt));
        let first = batch.first_taken.unwrap_or(batch.opened_at);
        let batch_wall = now.duration_since(first);
        m.observe_batch(&times, batch_wall);
        // One line per batch at debug: matches a latency tail to the stage it sat in.
        tracing::debug!(
            target: "sluice_worker::batch_timing",
            records = batch.len(),
            profiles = batch.profiles.len(),
            wall_ms = batch_wall.as_secs_f64() * 1e3,
            stages = %times.nonzero_ms(),
            "batch committed"
        );
        let wall = Utc::now();
        m.count(Outcome::Accepted, w.inserted);
        m.count(Outcome::Duplicate, w.duplicates);
        m.count(Outcome::Rejected, w.rejected);
        m.fraud_detected.inc_by(w.flagged);
        m.late_events.inc_by(w.late);
        m.observe_quality(w.inserted, w.inserted + w.duplicates + w.rejected);
        m.batch_size.observe(batch.len() as f64);
        m.batch_write_seconds
            .observe(now.duration_since(started).as_secs_f64());
        for r in &batch.accepted {
            m.processing_latency
                .observe(now.duration_since(r.received_at).as_secs_f64());
            let e2e = (wall - r.kafka_timestamp)
                .num_microseconds()
                .unwrap_or(0)
                .max(0);
            m.end_to_end_latency.observe(e2e as f64 / 1e6);
        }
        m.db_connections_active.set(i64::from(self.pool.size()));
    }

    /// One attempt at a lane; `retry` after a failed one.
    async fn write(
        &self,
        batch: &Arc<Batch>,
        order: &Order,
        retry: bool,
    ) -> Result<Written, WriteError> {
        // Each lap charges the time since the previous one to the stage just finished.
        let mut laps = Laps::start();
        // The rows and alerts are encoded for COPY, and the alert messages built, on another
        // thread while the ids are claimed.
        let by_copy = crate::tcp_nodelay::on_every_connection();
        let preparing = {
            let batch = Arc::clone(batch);
            tokio::task::spawn_blocking(move || Prepared {
                copy: by_copy.then(|| CopyData {
                    rows: copy::encode_rows(&batch.accepted),
                    alerts: copy::encode_alerts(&batch.accepted),
                }),
                alert_messages: publish::alert_messages(&batch.accepted),
            })
        };
        let mut tx = self.pool.begin().await?;
        laps.lap(Stage::Begin);

        // Claim the ids first, then insert only the new rows: each row is written once.
        let fast = by_copy && self.fast_claims.allowed();
        let held: Vec<bool> = batch
            .accepted
            .iter()
            .map(|r| order.held_before(&r.valid.tx.transaction_id))
            .collect();
        let claimed = rows::claim_ids(&mut tx, &batch.accepted, fast, &held).await?;
        if fast {
            self.fast_claims.tried(claimed.fell_back);
        }
        if !retry {
            order.claimed();
        }
        laps.lap(Stage::ClaimIds);
        let mut fresh = Vec::with_capacity(batch.accepted.len());
        let mut repeated = Vec::new();
        for (r, new) in batch.accepted.iter().zip(&claimed.fresh) {
            if *new {
                fresh.push(r)
            } else {
                repeated.push(r)
            }
        }
        let duplicates: Vec<Rejected> = repeated.iter().map(|r| duplicate_of(r)).collect();
        let rejected: Vec<&Rejected> = batch.rejected.iter().chain(duplicates.iter()).collect();
        let prepared = preparing
            .await
            .expect("preparing a batch's COPY and alerts panicked");
        laps.lap(Stage::Encode);

        // The Kafka outputs go out now and are delivered while the statements run; only what
        // is still undelivered after the last statement holds the commit back.
        let alerts: Vec<(CompactString, String)> = prepared
            .alert_messages
            .into_iter()
            .filter(|(i, _)| claimed.fresh[*i])
            .map(|(i, message)| (batch.accepted[i].valid.tx.customer_id.clone(), message))
            .collect();
        let alerts_sent = tokio::spawn(publish::send_alerts(
            self.producer.clone(),
            self.alerts_topic.clone(),
            alerts,
        ));
        let publish = async {
            tokio::try_join!(
                async {
                    self.publish_dlq(&rejected)
                        .await
                        .map_err(WriteError::DlqProduce)?;
                    Ok::<_, WriteError>(Instant::now())
                },
                async {
                    alerts_sent
                        .await
                        .map_err(|_| WriteError::AlertProduce(KafkaError::Canceled))?
                        .map_err(WriteError::AlertProduce)?;
                    Ok(Instant::now())
                },
            )
        };
        let fresh = Fresh {
            rows: &fresh,
            of_batch: &claimed.fresh,
            encoded: prepared.copy.as_ref(),
        };
        let statements = self.statements(&mut tx, batch, order, &fresh, &rejected, laps);
        let (statements_done, (dlq_delivered, alerts_delivered)) =
            tokio::try_join!(statements, publish)?;
        laps = statements_done;
        laps.lap_until(Stage::ProduceDlq, dlq_delivered);
        laps.lap_until(Stage::ProduceAlerts, alerts_delivered);
        tx.commit().await?;
        laps.lap(Stage::Commit);

        let duplicates_total = rejected
            .iter()
            .filter(|r| r.reason == Reason::Duplicate)
            .count() as u64;
        for r in &rejected {
            self.metrics
                .rejections
                .with_label_values(&[r.reason.as_str()])
                .inc();
        }
        let fresh = fresh.rows;
        Ok(Written {
            inserted: fresh.len() as u64,
            duplicates: duplicates_total,
            rejected: rejected.len() as u64 - duplicates_total,
            flagged: fresh.iter().filter(|r| r.flagged()).count() as u64,
            late: fresh.iter().filter(|r| r.late).count() as u64,
            times: laps.times,
        })
    }

    /// The batch's statements after the id claim, timed on `laps`: the inserts, then, once
    /// the batch before is settled, those that must follow it.
    async fn statements(
        &self,
        tx: &mut sqlx::PgConnection,
        batch: &Batch,
        order: &Order,
        fresh: &Fresh<'_>,
        rejected: &[&Rejected],
        mut laps: Laps,
    ) -> Result<Laps, WriteError> {
        if !fresh.rows.is_empty() {
            let encoded = fresh.encoded;
            rows::store_rows(
                &mut *tx,
                fresh.rows,
                encoded.map(|e| &e.rows),
                fresh.of_batch,
            )
            .await?;
            laps.lap(Stage::InsertRows);
            rows::insert_alerts(
                &mut *tx,
                fresh.rows,
                encoded.map(|e| &e.alerts),
                fresh.of_batch,
            )
            .await?;
            laps.lap(Stage::InsertAlerts);
        }
        if !rejected.is_empty() {
            rows::insert_rejected(&mut *tx, &self.topic, rejected).await?;
        }
        laps.lap(Stage::InsertRejected);
        match order.gate().await {
            Turn::Go => {}
            Turn::Drop => return Err(WriteError::Dropped),
            Turn::Overtaken => return Err(WriteError::Overtaken),
        }
        laps.lap(Stage::Queue);
        rows::upsert_profiles(&mut *tx, &batch.profiles).await?;
        laps.lap(Stage::UpsertProfiles);
        self.move_offsets(&mut *tx, batch).await?;
        laps.lap(Stage::MoveOffsets);
        // Last: every lane adds to the same per-minute rows, and a row's lock is held from
        // here to the commit, so the lanes wait on each other only this long.
        if !fresh.rows.is_empty() {
            add_summaries(&mut *tx, fresh.rows).await?;
        }
        laps.lap(Stage::Summaries);
        if !batch.is_empty() {
            add_quality(&mut *tx, fresh.rows, rejected).await?;
        }
        laps.lap(Stage::Quality);
        Ok(laps)
    }

    /// Compare-and-set every partition's stored offset (NULL: nothing stored yet), and where
    /// the batch checkpoints the profiles, the offset they are current to. The row lock
    /// serialises two writers of one partition; the loser sees a value it did not expect and
    /// is fenced.
    async fn move_offsets(
        &self,
        tx: &mut sqlx::PgConnection,
        batch: &Batch,
    ) -> Result<(), WriteError> {
        let partitions: Vec<i32> = batch.offsets.keys().copied().collect();
        let expected: Vec<Option<i64>> = batch.offsets.values().map(|m| m.expected).collect();
        let next: Vec<i64> = batch.offsets.values().map(|m| m.next).collect();
        let watermarks: Vec<Option<DateTime<Utc>>> =
            batch.offsets.values().map(|m| m.watermark).collect();
        let profiles_at: Vec<Option<i64>> = batch.offsets.values().map(|m| m.profiles_at).collect();
        let moved: Vec<i32> = sqlx::query_scalar(
            "UPDATE consumer_offsets o SET next_offset = v.next,
                 watermark = coalesce(v.watermark, o.watermark),
                 profiles_offset = coalesce(v.profiles_at, o.profiles_offset), updated_at = now()
             FROM unnest($3::int[], $4::bigint[], $5::bigint[], $6::timestamptz[], $7::bigint[])
               AS v(partition, expected, next, watermark, profiles_at)
             WHERE o.group_id = $1 AND o.topic = $2 AND o.partition = v.partition
               AND o.next_offset IS NOT DISTINCT FROM v.expected
             RETURNING o.partition",
        )
        .bind(&self.group)
        .bind(&self.topic)
        .bind(&partitions)
        .bind(&expected)
        .bind(&next)
        .bind(&watermarks)
        .bind(&profiles_at)
        .fetch_all(&mut *tx)
        .await?;
        match partitions.iter().copied().find(|p| !moved.contains(p)) {
            Some(partition) => Err(WriteError::Fenced { partition }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_produce_failures_are_not_database_errors() {
        for (e, kind) in [
            (
                WriteError::DlqProduce(KafkaError::Canceled),
                ErrorKind::DlqProduce,
            ),
            (
                WriteError::AlertProduce(KafkaError::Canceled),
                ErrorKind::AlertProduce,
            ),
        ] {
            assert_eq!(e.db_error_kind(), None, "{e}");
            assert_eq!(e.error_kind(), Some(kind));
        }
        let db = WriteError::Db(sqlx::Error::PoolTimedOut);
        assert_eq!(db.db_error_kind(), Some("connection"));
        assert_eq!(db.error_kind(), Some(ErrorKind::Database));
        assert_eq!(WriteError::Fenced { partition: 0 }.error_kind(), None);
    }
}
