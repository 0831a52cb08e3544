//! The sink: one Postgres transaction per batch holding the rows, the rejections, the
//! summary deltas and the consumed offsets (the checkpoint). Rejected records also go to
//! the DLQ topic before the commit, so none is lost (a crash between the two can repeat a
//! DLQ message; the tables stay exact).

use crate::batch::{Accepted, Batch, Rejected, duplicate_of};
use crate::metrics::{Metrics, Outcome};
use crate::validate::Reason;
use chrono::{DateTime, Utc};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::PgPool;
use std::collections::{BTreeMap, HashMap, HashSet};
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
    Dlq(#[from] rdkafka::error::KafkaError),
}

/// Every `kind` label of `sluice_db_errors_total` ([`WriteError`] other than a fence).
pub const WRITE_ERROR_KINDS: [&str; 3] = ["database", "connection", "dlq"];

impl WriteError {
    fn kind(&self) -> &'static str {
        match self {
            Self::Fenced { .. } => "fenced",
            Self::Db(sqlx::Error::Database(_)) => "database",
            Self::Db(_) => "connection",
            Self::Dlq(_) => "dlq",
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
    /// Batches handed over and not yet finished; the consumer waits on it before giving up
    /// partitions.
    pub inflight: Arc<AtomicUsize>,
    /// Whether the last database round trip succeeded (`/readyz`).
    pub db_ok: Arc<AtomicBool>,
}

struct Written {
    inserted: u64,
    duplicates: u64,
    rejected: u64,
    flagged: u64,
    late: u64,
}

/// Claims the ids of a batch; returns those that were new. The primary key makes a second
/// copy of an id, in this batch or any earlier one, a duplicate.
const CLAIM_IDS: &str = "INSERT INTO transaction_ids (transaction_id, event_time)
    SELECT * FROM unnest($1::text[], $2::timestamptz[])
    ON CONFLICT DO NOTHING
    RETURNING transaction_id";

/// Adds per-minute deltas. Rows are sorted so concurrent writers lock them in one order.
const ADD_SUMMARIES: &str = "INSERT INTO analytics_summaries AS a (period_start, period_end, dimension,
        dimension_value, transaction_count, total_amount, fraud_count)
    SELECT to_timestamp(m * 60), to_timestamp(m * 60 + 60), d, v, n, cents::numeric / 100, f
    FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[]) AS u(m, d, v, n, cents, f)
    ORDER BY m, d, v
    ON CONFLICT (period_start, dimension, dimension_value) DO UPDATE SET
        transaction_count = a.transaction_count + EXCLUDED.transaction_count,
        total_amount = a.total_amount + EXCLUDED.total_amount,
        fraud_count = a.fraud_count + EXCLUDED.fraud_count";

/// Sorted by customer so concurrent writers lock rows in one order.
const UPSERT_PROFILES: &str = "INSERT INTO customer_profiles (customer_id, partition, profile)
    SELECT * FROM unnest($1::text[], $2::int[], $3::bytea[]) AS u(c, p, b) ORDER BY c
    ON CONFLICT (customer_id) DO UPDATE SET
        partition = EXCLUDED.partition, profile = EXCLUDED.profile, updated_at = now()";

/// Adds per-minute data quality deltas (minute of the Kafka record time).
const ADD_QUALITY: &str = "INSERT INTO quality_summaries AS q (period_start, period_end, received_count,
        accepted_count, null_count, invalid_count, duplicate_count, late_count)
    SELECT to_timestamp(m * 60), to_timestamp(m * 60 + 60), r, a, n, i, d, l
    FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[])
        AS u(m, r, a, n, i, d, l)
    ORDER BY m
    ON CONFLICT (period_start) DO UPDATE SET
        received_count = q.received_count + EXCLUDED.received_count,
        accepted_count = q.accepted_count + EXCLUDED.accepted_count,
        null_count = q.null_count + EXCLUDED.null_count,
        invalid_count = q.invalid_count + EXCLUDED.invalid_count,
        duplicate_count = q.duplicate_count + EXCLUDED.duplicate_count,
        late_count = q.late_count + EXCLUDED.late_count";

const INSERT_ALERTS: &str = "INSERT INTO fraud_alerts (transaction_id, customer_id, event_time, score, reasons)
    SELECT id, customer, t, score, string_to_array(reasons, ',')
    FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::float8[], $5::text[]) AS u(id, customer, t, score, reasons)";

impl Sink {
    /// Write batches in order until the channel closes. A failed batch is retried with
    /// backoff until it commits; a fenced one is dropped together with everything of its
    /// generation, and the consumer resyncs.
    pub async fn run(self, mut batches: mpsc::Receiver<Batch>, acks: std::sync::mpsc::Sender<Ack>) {
        let mut min_generation = 0;
        while let Some(batch) = batches.recv().await {
            if batch.generation < min_generation {
                self.inflight.fetch_sub(1, Ordering::SeqCst);
                continue;
            }
            let mut delay = self.retry_initial;
            loop {
                let started = Instant::now();
                match self.write(&batch).await {
                    Ok(w) => {
                        self.db_ok.store(true, Ordering::Relaxed);
                        self.record_success(&batch, &w, started);
                        let offsets = batch.offsets.iter().map(|(p, m)| (*p, m.next)).collect();
                        let _ = acks.send(Ack::Committed { offsets });
                        break;
                    }
                    Err(WriteError::Fenced { partition }) => {
                        self.metrics.fenced_batches.inc();
                        tracing::warn!(
                            partition,
                            generation = batch.generation,
                            "batch fenced: offsets moved by another worker; resyncing"
                        );
                        min_generation = batch.generation + 1;
                        let _ = acks.send(Ack::Fenced {
                            generation: batch.generation,
                        });
                        break;
                    }
                    Err(e) => {
                        self.metrics.db_errors.with_label_values(&[e.kind()]).inc();
                        if matches!(e, WriteError::Db(_)) {
                            self.db_ok.store(false, Ordering::Relaxed);
                        }
                        tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, records = batch.len(), "batch write failed; retrying");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(self.retry_max);
                    }
                }
            }
            self.inflight.fetch_sub(1, Ordering::SeqCst);
        }
    }

    fn record_success(&self, batch: &Batch, w: &Written, started: Instant) {
        let m = &self.metrics;
        let now = Instant::now();
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

    async fn write(&self, batch: &Batch) -> Result<Written, WriteError> {
        let mut tx = self.pool.begin().await?;

        // Claim the ids first, then insert only the new rows: each row is written once.
        let new_ids: HashSet<String> = if batch.accepted.is_empty() {
            HashSet::new()
        } else {
            let ids: Vec<&str> = batch
                .accepted
                .iter()
                .map(|r| r.valid.tx.transaction_id.as_str())
                .collect();
            let times: Vec<_> = batch.accepted.iter().map(|r| r.valid.event_time).collect();
            sqlx::query_scalar(CLAIM_IDS)
                .bind(ids)
                .bind(times)
                .fetch_all(&mut *tx)
                .await?
                .into_iter()
                .collect()
        };
        let (fresh, repeated): (Vec<&Accepted>, Vec<&Accepted>) = batch
            .accepted
            .iter()
            .partition(|r| new_ids.contains(&r.valid.tx.transaction_id));
        if !fresh.is_empty() {
            insert_rows(&mut tx, &fresh).await?;
            add_summaries(&mut tx, &fresh).await?;
            insert_alerts(&mut tx, &fresh).await?;
        }
        let duplicates: Vec<Rejected> = repeated.iter().map(|r| duplicate_of(r)).collect();
        let rejected: Vec<&Rejected> = batch.rejected.iter().chain(duplicates.iter()).collect();
        if !rejected.is_empty() {
            self.insert_rejected(&mut tx, &rejected).await?;
        }
        if !batch.is_empty() {
            add_quality(&mut tx, &fresh, &rejected).await?;
        }

        if !batch.profiles.is_empty() {
            sqlx::query(UPSERT_PROFILES)
                .bind(
                    batch
                        .profiles
                        .keys()
                        .map(String::as_str)
                        .collect::<Vec<_>>(),
                )
                .bind(
                    batch
                        .profiles
                        .values()
                        .map(|r| r.partition)
                        .collect::<Vec<_>>(),
                )
                .bind(
                    batch
                        .profiles
                        .values()
                        .map(|r| r.profile.as_slice())
                        .collect::<Vec<_>>(),
                )
                .execute(&mut *tx)
                .await?;
        }

        self.move_offsets(&mut tx, batch).await?;
        self.publish_dlq(&rejected).await?;
        self.publish_alerts(&fresh).await?;
        tx.commit().await?;

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
        Ok(Written {
            inserted: fresh.len() as u64,
            duplicates: duplicates_total,
            rejected: rejected.len() as u64 - duplicates_total,
            flagged: fresh.iter().filter(|r| r.verdict.flagged).count() as u64,
            late: fresh.iter().filter(|r| r.late).count() as u64,
        })
    }

    async fn insert_rejected(
        &self,
        tx: &mut sqlx::PgConnection,
        rejected: &[&Rejected],
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO rejected_transactions
                (source_topic, source_partition, source_offset, reason, detail, transaction_id, raw_payload)
             SELECT $1, * FROM unnest($2::int[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::bytea[])",
        )
        .bind(&self.topic)
        .bind(rejected.iter().map(|r| r.partition).collect::<Vec<_>>())
        .bind(rejected.iter().map(|r| r.offset).collect::<Vec<_>>())
        .bind(rejected.iter().map(|r| r.reason.as_str()).collect::<Vec<_>>())
        .bind(rejected.iter().map(|r| r.detail.as_str()).collect::<Vec<_>>())
        .bind(rejected.iter().map(|r| r.transaction_id.as_deref()).collect::<Vec<_>>())
        .bind(rejected.iter().map(|r| r.raw_masked.as_slice()).collect::<Vec<_>>())
        .execute(tx)
        .await?;
        Ok(())
    }

    /// Compare-and-set every partition's stored offset. The row lock serialises two writers
    /// of one partition; the loser sees a value it did not expect and is fenced.
    async fn move_offsets(
        &self,
        tx: &mut sqlx::PgConnection,
        batch: &Batch,
    ) -> Result<(), WriteError> {
        let partitions: Vec<i32> = batch.offsets.keys().copied().collect();
        let expected: Vec<i64> = batch.offsets.values().map(|m| m.expected).collect();
        let next: Vec<i64> = batch.offsets.values().map(|m| m.next).collect();
        let watermarks: Vec<Option<DateTime<Utc>>> =
            batch.offsets.values().map(|m| m.watermark).collect();
        let moved: Vec<i32> = sqlx::query_scalar(
            "UPDATE consumer_offsets o SET next_offset = v.next, watermark = v.watermark, updated_at = now()
             FROM unnest($3::int[], $4::bigint[], $5::bigint[], $6::timestamptz[]) AS v(partition, expected, next, watermark)
             WHERE o.group_id = $1 AND o.topic = $2 AND o.partition = v.partition
               AND o.next_offset = v.expected
             RETURNING o.partition",
        )
        .bind(&self.group)
        .bind(&self.topic)
        .bind(&partitions)
        .bind(&expected)
        .bind(&next)
        .bind(&watermarks)
        .fetch_all(&mut *tx)
        .await?;
        if moved.len() != partitions.len() {
            let partition = partitions
                .iter()
                .copied()
                .find(|p| !moved.contains(p))
                .unwrap_or(-1);
            return Err(WriteError::Fenced { partition });
        }
        Ok(())
    }

    /// One JSON alert per newly stored flagged transaction (contract §2), delivered before
    /// the commit like the DLQ.
    async fn publish_alerts(&self, rows: &[&Accepted]) -> Result<(), WriteError> {
        let detected_at = Utc::now().to_rfc3339();
        let mut deliveries = Vec::new();
        for r in rows.iter().filter(|r| r.verdict.flagged) {
            let alert = serde_json::json!({
                "transaction_id": r.valid.tx.transaction_id,
                "customer_id": r.valid.tx.customer_id,
                "score": r.verdict.score,
                "reasons": r.verdict.reasons,
                "detected_at": detected_at,
            })
            .to_string();
            let record = FutureRecord::to(&self.alerts_topic)
                .key(&r.valid.tx.customer_id)
                .payload(&alert);
            deliveries.push(self.producer.send_result(record).map_err(|(e, _)| e)?);
        }
        await_deliveries(deliveries).await
    }

    async fn publish_dlq(&self, rejected: &[&Rejected]) -> Result<(), WriteError> {
        let mut deliveries = Vec::with_capacity(rejected.len());
        for r in rejected {
            let partition = r.partition.to_string();
            let offset = r.offset.to_string();
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "sluice-reason",
                    value: Some(r.reason.as_str()),
                })
                .insert(Header {
                    key: "sluice-source-partition",
                    value: Some(&partition),
                })
                .insert(Header {
                    key: "sluice-source-offset",
                    value: Some(&offset),
                });
            let mut record = FutureRecord::<[u8], [u8]>::to(&self.dlq_topic)
                .payload(&r.raw_masked)
                .headers(headers);
            if let Some(id) = &r.transaction_id {
                record = record.key(id.as_bytes());
            }
            match self.producer.send_result(record) {
                Ok(delivery) => deliveries.push(delivery),
                Err((e, _)) => return Err(e.into()),
            }
        }
        await_deliveries(deliveries).await?;
        self.metrics.dlq_records.inc_by(rejected.len() as u64);
        Ok(())
    }
}

/// The rows, as one prepared INSERT over arrays. Same speed class as COPY, one round trip,
/// and no COPY sub-protocol: sqlx leaves Nagle on, and COPY's small trailing CopyDone then
/// waits out the peer's delayed ACK (~40 ms per batch, measured).
const INSERT_ROWS: &str = "INSERT INTO transactions (transaction_id, customer_id, merchant_id,
        merchant_category, amount, currency, event_time, payment_method, channel, country,
        shipping_country, card_last4, card_fingerprint, device_id, ip_address, latitude, longitude,
        account_age_days, items, kafka_partition, kafka_offset, kafka_timestamp, fraud_score, is_fraud)
    SELECT id, customer, merchant, category, cents::numeric / 100, currency, event_time, method,
        channel, country, shipping, last4, fingerprint, device, ip, lat, lon, age, items, kp, ko, kts,
        score, fraud
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[],
        $7::timestamptz[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[],
        $14::text[], $15::text[], $16::float8[], $17::float8[], $18::int[], $19::int[], $20::int[],
        $21::bigint[], $22::timestamptz[], $23::float8[], $24::bool[])
    AS u(id, customer, merchant, category, cents, currency, event_time, method, channel, country,
        shipping, last4, fingerprint, device, ip, lat, lon, age, items, kp, ko, kts, score, fraud)";

async fn insert_rows(tx: &mut sqlx::PgConnection, rows: &[&Accepted]) -> Result<(), sqlx::Error> {
    fn col<'a, T>(rows: &[&'a Accepted], f: impl Fn(&'a Accepted) -> T) -> Vec<T> {
        rows.iter().map(|r| f(r)).collect()
    }
    let to_i32 = |v: Option<u32>| v.map(|x| i32::try_from(x).unwrap_or(i32::MAX));
    sqlx::query(INSERT_ROWS)
        .bind(col(rows, |r| r.valid.tx.transaction_id.as_str()))
        .bind(col(rows, |r| r.valid.tx.customer_id.as_str()))
        .bind(col(rows, |r| r.valid.tx.merchant_id.as_str()))
        .bind(col(rows, |r| r.valid.tx.merchant_category.as_deref()))
        .bind(col(rows, |r| r.valid.amount_cents))
        .bind(col(rows, |r| r.valid.tx.currency.as_str()))
        .bind(col(rows, |r| r.valid.event_time))
        .bind(col(rows, |r| r.valid.tx.payment_method.as_str()))
        .bind(col(rows, |r| r.valid.tx.channel.map(|c| c.as_str())))
        .bind(col(rows, |r| r.valid.tx.country.as_str()))
        .bind(col(rows, |r| r.valid.tx.shipping_country.as_deref()))
        .bind(col(rows, |r| r.valid.tx.card_last4.as_deref()))
        .bind(col(rows, |r| r.valid.tx.card_fingerprint.as_deref()))
        .bind(col(rows, |r| r.valid.tx.device_id.as_deref()))
        .bind(col(rows, |r| r.valid.tx.ip_address.as_deref()))
        .bind(col(rows, |r| r.valid.tx.latitude))
        .bind(col(rows, |r| r.valid.tx.longitude))
        .bind(col(rows, |r| to_i32(r.valid.tx.account_age_days)))
        .bind(col(rows, |r| to_i32(r.valid.tx.items)))
        .bind(col(rows, |r| r.partition))
        .bind(col(rows, |r| r.offset))
        .bind(col(rows, |r| r.kafka_timestamp))
        .bind(col(rows, |r| r.verdict.score))
        .bind(col(rows, |r| r.verdict.flagged))
        .execute(tx)
        .await?;
    Ok(())
}

/// Per-minute (event time) deltas overall and by merchant category and payment method. Late
/// rows (past the allowed lateness) are stored but not counted here.
async fn add_summaries(tx: &mut sqlx::PgConnection, rows: &[&Accepted]) -> Result<(), sqlx::Error> {
    let mut deltas: HashMap<(i64, &'static str, &str), (i64, i64, i64)> = HashMap::new();
    for r in rows.iter().filter(|r| !r.late) {
        let minute = r.valid.event_time.timestamp().div_euclid(60);
        let category = r.valid.tx.merchant_category.as_deref().unwrap_or("unknown");
        for key in [
            (minute, "all", ""),
            (minute, "merchant_category", category),
            (minute, "payment_method", r.valid.tx.payment_method.as_str()),
        ] {
            let d = deltas.entry(key).or_default();
            d.0 += 1;
            d.1 += r.valid.amount_cents;
            d.2 += i64::from(r.verdict.flagged);
        }
    }
    if deltas.is_empty() {
        return Ok(());
    }
    let (keys, values): (Vec<_>, Vec<_>) = deltas.into_iter().unzip();
    sqlx::query(ADD_SUMMARIES)
        .bind(keys.iter().map(|k| k.0).collect::<Vec<_>>())
        .bind(keys.iter().map(|k| k.1).collect::<Vec<_>>())
        .bind(keys.iter().map(|k| k.2).collect::<Vec<_>>())
        .bind(values.iter().map(|v| v.0).collect::<Vec<_>>())
        .bind(values.iter().map(|v| v.1).collect::<Vec<_>>())
        .bind(values.iter().map(|v| v.2).collect::<Vec<_>>())
        .execute(tx)
        .await?;
    Ok(())
}

async fn insert_alerts(tx: &mut sqlx::PgConnection, rows: &[&Accepted]) -> Result<(), sqlx::Error> {
    let flagged: Vec<&&Accepted> = rows.iter().filter(|r| r.verdict.flagged).collect();
    if flagged.is_empty() {
        return Ok(());
    }
    sqlx::query(INSERT_ALERTS)
        .bind(
            flagged
                .iter()
                .map(|r| r.valid.tx.transaction_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            flagged
                .iter()
                .map(|r| r.valid.tx.customer_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            flagged
                .iter()
                .map(|r| r.valid.event_time)
                .collect::<Vec<_>>(),
        )
        .bind(
            flagged
                .iter()
                .map(|r| r.verdict.score.unwrap_or(1.0))
                .collect::<Vec<_>>(),
        )
        .bind(
            flagged
                .iter()
                .map(|r| r.verdict.reasons.join(","))
                .collect::<Vec<_>>(),
        )
        .execute(tx)
        .await?;
    Ok(())
}

/// Per-minute (Kafka record time) counts of what was received and what became of it.
async fn add_quality(
    tx: &mut sqlx::PgConnection,
    fresh: &[&Accepted],
    rejected: &[&Rejected],
) -> Result<(), sqlx::Error> {
    #[derive(Default)]
    struct Counts {
        received: i64,
        accepted: i64,
        null: i64,
        invalid: i64,
        duplicate: i64,
        late: i64,
    }
    let minute = |t: DateTime<Utc>| t.timestamp().div_euclid(60);
    let mut by_minute: BTreeMap<i64, Counts> = BTreeMap::new();
    for r in fresh {
        let c = by_minute.entry(minute(r.kafka_timestamp)).or_default();
        c.received += 1;
        c.accepted += 1;
        c.late += i64::from(r.late);
    }
    for r in rejected {
        let c = by_minute.entry(minute(r.kafka_timestamp)).or_default();
        c.received += 1;
        match r.reason {
            Reason::MissingField => c.null += 1,
            Reason::Duplicate => c.duplicate += 1,
            _ => c.invalid += 1,
        }
    }
    let column = |f: fn(&Counts) -> i64| by_minute.values().map(f).collect::<Vec<_>>();
    sqlx::query(ADD_QUALITY)
        .bind(by_minute.keys().copied().collect::<Vec<_>>())
        .bind(column(|c| c.received))
        .bind(column(|c| c.accepted))
        .bind(column(|c| c.null))
        .bind(column(|c| c.invalid))
        .bind(column(|c| c.duplicate))
        .bind(column(|c| c.late))
        .execute(tx)
        .await?;
    Ok(())
}

async fn await_deliveries(
    deliveries: Vec<rdkafka::producer::DeliveryFuture>,
) -> Result<(), WriteError> {
    for d in deliveries {
        match d.await {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => return Err(e.into()),
            Err(_) => return Err(rdkafka::error::KafkaError::Canceled.into()),
        }
    }
    Ok(())
}
