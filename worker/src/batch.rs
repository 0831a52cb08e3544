//! A batch: the records of one Postgres transaction (and the COPY encoding of its rows that
//! `sluice-bench` uses for the raw COPY baseline).

use crate::score::{ProfileRow, Verdict};
use crate::validate::{Reason, ValidTransaction};
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

/// A valid record, scored, waiting to be written.
pub struct Accepted {
    pub valid: ValidTransaction,
    pub partition: i32,
    pub offset: i64,
    pub kafka_timestamp: DateTime<Utc>,
    pub received_at: Instant,
    /// Original bytes, kept in case the row turns out to be a duplicate (DLQ needs them).
    pub raw: Vec<u8>,
    /// Filled when the batch is handed on (see `consumer`), in partition order.
    pub verdict: Verdict,
    pub scored: bool,
    /// Behind its partition's watermark by more than the allowed lateness: stored, but left
    /// out of the per-minute summaries.
    pub late: bool,
}

/// A record that will not be a row of `transactions`.
pub struct Rejected {
    pub partition: i32,
    pub offset: i64,
    pub kafka_timestamp: DateTime<Utc>,
    pub reason: Reason,
    pub detail: String,
    pub transaction_id: Option<String>,
    /// Original bytes with card numbers masked.
    pub raw_masked: Vec<u8>,
}

/// How one partition's stored offset moves if this batch commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetMove {
    /// The stored value this batch was built on (-1: nothing stored). A mismatch at write
    /// time means another worker moved the partition on: this batch is stale.
    pub expected: i64,
    pub next: i64,
    /// The partition's watermark once this batch's records are counted.
    pub watermark: Option<DateTime<Utc>>,
}

pub struct Batch {
    /// Bumped by the consumer on every resync; the sink discards older generations.
    pub generation: u64,
    pub accepted: Vec<Accepted>,
    pub rejected: Vec<Rejected>,
    pub offsets: BTreeMap<i32, OffsetMove>,
    /// Scoring state changed by this batch's records (latest per customer), committed with them.
    pub profiles: BTreeMap<String, ProfileRow>,
    pub opened_at: Instant,
    ids: HashSet<String>,
}

impl Batch {
    pub fn new(generation: u64) -> Self {
        Self {
            generation,
            accepted: Vec::new(),
            rejected: Vec::new(),
            offsets: BTreeMap::new(),
            profiles: BTreeMap::new(),
            opened_at: Instant::now(),
            ids: HashSet::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.accepted.len() + self.rejected.len()
    }

    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// Note that `offset` of `partition` is consumed by this batch; `stored` is the next
    /// offset the database holds for it when the batch opens that partition.
    pub fn advance(
        &mut self,
        partition: i32,
        offset: i64,
        stored: i64,
        watermark: Option<DateTime<Utc>>,
    ) {
        self.offsets
            .entry(partition)
            .and_modify(|m| {
                m.next = offset + 1;
                m.watermark = watermark;
            })
            .or_insert(OffsetMove {
                expected: stored,
                next: offset + 1,
                watermark,
            });
    }

    /// Whether a valid record with this id is already in the batch: a second copy is a
    /// duplicate at once (the database only sees one copy per statement), and is not scored.
    pub fn holds(&self, transaction_id: &str) -> bool {
        self.ids.contains(transaction_id)
    }

    /// Add a valid record whose id is not in the batch yet (see [`Batch::holds`]).
    pub fn push_accepted(&mut self, record: Accepted) {
        debug_assert!(!self.holds(&record.valid.tx.transaction_id));
        self.ids.insert(record.valid.tx.transaction_id.clone());
        self.accepted.push(record);
    }

    /// Attach changed scoring state; a later copy of a customer's profile replaces the earlier.
    pub fn add_profiles(&mut self, rows: Vec<ProfileRow>) {
        for row in rows {
            self.profiles.insert(row.customer_id.clone(), row);
        }
    }

    pub fn push_rejected(&mut self, record: Rejected) {
        self.rejected.push(record);
    }

    /// Drop everything of `partitions` (revoked before the batch was handed on).
    pub fn retain_partitions(&mut self, keep: impl Fn(i32) -> bool) {
        self.accepted.retain(|r| keep(r.partition));
        self.rejected.retain(|r| keep(r.partition));
        self.offsets.retain(|p, _| keep(*p));
        self.profiles.retain(|_, r| keep(r.partition));
        self.ids = self
            .accepted
            .iter()
            .map(|r| r.valid.tx.transaction_id.clone())
            .collect();
    }
}

pub fn duplicate_of(record: &Accepted) -> Rejected {
    duplicate(
        record.partition,
        record.offset,
        record.kafka_timestamp,
        &record.valid.tx.transaction_id,
        &record.raw,
    )
}

/// A rejection for a record repeating an already stored (or batched) `transaction_id`.
pub fn duplicate(
    partition: i32,
    offset: i64,
    kafka_timestamp: DateTime<Utc>,
    transaction_id: &str,
    raw: &[u8],
) -> Rejected {
    Rejected {
        partition,
        offset,
        kafka_timestamp,
        reason: Reason::Duplicate,
        detail: "transaction_id already stored".into(),
        transaction_id: Some(transaction_id.to_owned()),
        raw_masked: crate::validate::mask_pans(raw),
    }
}

/// COPY of rows into `transactions`; [`encode_copy`] writes exactly these columns. The sink
/// uses a prepared INSERT over arrays instead (see `sink`); `sluice-bench` uses this raw COPY
/// to measure the limit of the same rows into the same schema.
pub const COPY_TRANSACTIONS: &str = "COPY transactions (transaction_id, customer_id, merchant_id, \
    merchant_category, amount, currency, event_time, payment_method, channel, country, shipping_country, \
    card_last4, card_fingerprint, device_id, ip_address, latitude, longitude, account_age_days, items, \
    kafka_partition, kafka_offset, kafka_timestamp, fraud_score, is_fraud) FROM STDIN";

/// Encode records in COPY text format for [`COPY_TRANSACTIONS`].
pub fn encode_copy<'a>(records: impl IntoIterator<Item = &'a Accepted>, out: &mut Vec<u8>) {
    use std::io::Write;
    for r in records {
        let tx = &r.valid.tx;
        text(out, &tx.transaction_id);
        text(out, &tx.customer_id);
        text(out, &tx.merchant_id);
        opt_text(out, tx.merchant_category.as_deref());
        let cents = r.valid.amount_cents;
        let _ = write!(out, "{}.{:02}\t", cents / 100, cents % 100);
        text(out, &tx.currency);
        timestamp(out, r.valid.event_time);
        text(out, tx.payment_method.as_str());
        opt_text(out, tx.channel.map(|c| c.as_str()));
        text(out, &tx.country);
        opt_text(out, tx.shipping_country.as_deref());
        opt_text(out, tx.card_last4.as_deref());
        opt_text(out, tx.card_fingerprint.as_deref());
        opt_text(out, tx.device_id.as_deref());
        opt_text(out, tx.ip_address.as_deref());
        opt_num(out, tx.latitude);
        opt_num(out, tx.longitude);
        opt_num(out, tx.account_age_days);
        opt_num(out, tx.items);
        let _ = write!(out, "{}\t{}\t", r.partition, r.offset);
        timestamp(out, r.kafka_timestamp);
        opt_num(out, r.verdict.score);
        out.extend_from_slice(if r.verdict.flagged { b"t\n" } else { b"f\n" });
    }
}

fn text(out: &mut Vec<u8>, s: &str) {
    for &b in s.as_bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(b),
        }
    }
    out.push(b'\t');
}

fn opt_text(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => text(out, s),
        None => out.extend_from_slice(b"\\N\t"),
    }
}

fn opt_num<T: std::fmt::Display>(out: &mut Vec<u8>, v: Option<T>) {
    use std::io::Write;
    match v {
        Some(v) => {
            let _ = write!(out, "{v}\t");
        }
        None => out.extend_from_slice(b"\\N\t"),
    }
}

fn timestamp(out: &mut Vec<u8>, t: DateTime<Utc>) {
    use std::io::Write;
    let _ = write!(out, "{}\t", t.format("%Y-%m-%d %H:%M:%S%.6f+00"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_text_escapes_control_characters() {
        let mut out = Vec::new();
        text(&mut out, "a\tb\\c\nd");
        assert_eq!(out, b"a\\tb\\\\c\\nd\t");
    }

    #[test]
    fn offsets_remember_the_value_they_were_built_on() {
        let mut b = Batch::new(0);
        let t = Utc::now();
        b.advance(3, 10, 10, None);
        b.advance(3, 11, 10, Some(t));
        assert_eq!(
            b.offsets[&3],
            OffsetMove {
                expected: 10,
                next: 12,
                watermark: Some(t)
            }
        );
    }
}
