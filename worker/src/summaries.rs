//! Summaries, the write side of analytics: which events are too late to count (the
//! per-partition event-time watermark), and the per-minute deltas of `analytics_summaries`
//! (event time) and `quality_summaries` (Kafka record time) that each batch adds in its own
//! transaction. The HTTP reads of these tables are [`crate::analytics`].

use crate::batch::{Accepted, Rejected};
use crate::validate::Reason;
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap};

/// The highest event time a partition has reached, capped at each record's Kafka time (a
/// producer clock running ahead cannot make everyone else late). Stored with the partition's
/// offset, so a replay after a crash classifies every record exactly as before.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Watermark(Option<DateTime<Utc>>);

impl Watermark {
    pub fn stored(at: Option<DateTime<Utc>>) -> Self {
        Self(at)
    }

    pub fn get(self) -> Option<DateTime<Utc>> {
        self.0
    }

    /// Whether an event at `event_time` is too late for the summaries (behind the watermark
    /// by more than `lateness`); moves the watermark.
    pub fn observe(
        &mut self,
        event_time: DateTime<Utc>,
        kafka_time: DateTime<Utc>,
        lateness: chrono::Duration,
    ) -> bool {
        let late = self.0.is_some_and(|w| event_time < w - lateness);
        self.0 = self.0.max(Some(event_time.min(kafka_time)));
        late
    }
}

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

/// Per-minute (event time) deltas overall and by merchant category and payment method. Late
/// rows (past the allowed lateness) are stored but not counted here.
pub async fn add_summaries(
    tx: &mut sqlx::PgConnection,
    rows: &[&Accepted],
) -> Result<(), sqlx::Error> {
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
            d.2 += i64::from(r.flagged());
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

/// Per-minute (Kafka record time) counts of what was received and what became of it.
pub async fn add_quality(
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
