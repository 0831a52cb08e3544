//! Rows in COPY text format: how the sink stores a batch's new rows, claims their ids and
//! stores their alerts (see `sink::rows`), and what `sluice-bench` COPYs straight into
//! `transactions` to measure what Postgres takes on the box (the report's `copy_baseline_tps`).

use crate::batch::Accepted;
use chrono::{DateTime, Datelike, Timelike, Utc};
use std::borrow::Cow;

/// COPY of rows into `transactions`; [`encode_copy`] writes exactly these columns.
pub const COPY_TRANSACTIONS: &str = "COPY transactions (transaction_id, customer_id, merchant_id, \
    merchant_category, amount, currency, event_time, payment_method, channel, country, shipping_country, \
    card_last4, card_fingerprint, device_id, ip_address, latitude, longitude, account_age_days, items, \
    kafka_partition, kafka_offset, kafka_timestamp, fraud_score, is_fraud) FROM STDIN";

/// COPY of claimed ids into `transaction_ids`; [`encode_claims`] writes these columns.
pub const COPY_CLAIMS: &str = "COPY transaction_ids (transaction_id, event_time) FROM STDIN";

/// COPY of alerts into `fraud_alerts`; [`encode_alerts`] writes these columns.
pub const COPY_ALERTS: &str =
    "COPY fraud_alerts (transaction_id, customer_id, event_time, score, reasons) FROM STDIN";

/// COPY `records` into `transactions` on `conn` (in its transaction, if one is open).
pub async fn copy_transactions<'a>(
    conn: &mut sqlx::PgConnection,
    records: impl ExactSizeIterator<Item = &'a Accepted>,
) -> Result<u64, sqlx::Error> {
    let mut buf = Vec::with_capacity(records.len() * 320);
    encode_copy(records, &mut buf);
    copy_in(conn, COPY_TRANSACTIONS, buf).await
}

/// Run `statement` (a `COPY … FROM STDIN`) with `payload` as its data.
pub async fn copy_in(
    conn: &mut sqlx::PgConnection,
    statement: &str,
    payload: impl std::ops::Deref<Target = [u8]>,
) -> Result<u64, sqlx::Error> {
    let mut copy = conn.copy_in_raw(statement).await?;
    copy.send(payload).await?;
    copy.finish().await
}

/// COPY text of one row per record, each row found again by its index: a batch's rows are
/// encoded before its ids are claimed, and only the new ones are sent.
#[derive(Debug, Default)]
pub struct EncodedRows {
    buf: Vec<u8>,
    /// Where each record's row ends in `buf` (a record without a row ends where the one
    /// before it did).
    ends: Vec<usize>,
}

impl EncodedRows {
    /// One row per record by `encode` (which may write nothing for a record).
    fn of<'a>(
        records: impl ExactSizeIterator<Item = &'a Accepted>,
        row_bytes: usize,
        mut encode: impl FnMut(&'a Accepted, &mut Vec<u8>),
    ) -> Self {
        let mut out = Self {
            buf: Vec::with_capacity(records.len() * row_bytes),
            ends: Vec::with_capacity(records.len()),
        };
        for r in records {
            encode(r, &mut out.buf);
            out.ends.push(out.buf.len());
        }
        out
    }

    /// The rows of the records whose `keep` is true, in order; borrowed when that is all.
    pub fn select(&self, keep: &[bool]) -> Cow<'_, [u8]> {
        debug_assert_eq!(keep.len(), self.ends.len());
        if keep.iter().all(|k| *k) {
            return Cow::Borrowed(&self.buf);
        }
        let mut out = Vec::with_capacity(self.buf.len());
        let mut start = 0;
        for (end, keep) in self.ends.iter().zip(keep) {
            if *keep {
                out.extend_from_slice(&self.buf[start..*end]);
            }
            start = *end;
        }
        Cow::Owned(out)
    }
}

/// The `transactions` rows of `records`, for [`COPY_TRANSACTIONS`].
pub fn encode_rows(records: &[Accepted]) -> EncodedRows {
    EncodedRows::of(records.iter(), 320, |r, out| {
        encode_copy(std::iter::once(r), out)
    })
}

/// The `fraud_alerts` rows of the flagged `records`, for [`COPY_ALERTS`].
pub fn encode_alerts(records: &[Accepted]) -> EncodedRows {
    use std::io::Write;
    EncodedRows::of(records.iter(), 40, |r, out| {
        let Some(v) = r.verdict.as_ref().filter(|v| v.flagged) else {
            return;
        };
        text(out, &r.valid.tx.transaction_id);
        text(out, &r.valid.tx.customer_id);
        timestamp(out, r.valid.event_time);
        let _ = write!(out, "{}\t", v.score);
        // An array literal, every element quoted; COPY's own escaping then applies to it.
        let mut array = String::from("{");
        for (i, reason) in v.reasons.iter().enumerate() {
            if i > 0 {
                array.push(',');
            }
            array.push('"');
            for c in reason.chars() {
                if c == '"' || c == '\\' {
                    array.push('\\');
                }
                array.push(c);
            }
            array.push('"');
        }
        array.push('}');
        text(out, &array);
        *out.last_mut().expect("text wrote a tab") = b'\n';
    })
}

/// `transaction_ids` rows of the records whose `keep` is true, for [`COPY_CLAIMS`].
pub fn encode_claims(records: &[Accepted], keep: &[bool]) -> Vec<u8> {
    let mut out = Vec::with_capacity(records.len() * 64);
    for (r, _) in records.iter().zip(keep).filter(|(_, k)| **k) {
        text(&mut out, &r.valid.tx.transaction_id);
        timestamp(&mut out, r.valid.event_time);
        *out.last_mut().expect("timestamp wrote a tab") = b'\n';
    }
    out
}

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
        // Clamped into the integer columns as the array INSERT does.
        let to_i32 = |v: Option<u32>| v.map(|x| i32::try_from(x).unwrap_or(i32::MAX));
        opt_num(out, to_i32(tx.account_age_days));
        opt_num(out, to_i32(tx.items));
        let _ = write!(out, "{}\t{}\t", r.partition, r.offset);
        timestamp(out, r.kafka_timestamp);
        opt_num(out, r.score());
        out.extend_from_slice(if r.flagged() { b"t\n" } else { b"f\n" });
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

/// `2026-12-01 09:21:48.000123+00` and a tab; written digit by digit, since formatting
/// through chrono's strftime items was the sink's largest cost of its own.
fn timestamp(out: &mut Vec<u8>, t: DateTime<Utc>) {
    let n = t.naive_utc();
    let (year, nanos) = (n.year(), n.nanosecond());
    if !(1..=9999).contains(&year) || nanos >= 1_000_000_000 {
        // Outside four-digit years, or a leap second: chrono's general formatting.
        use std::io::Write;
        let _ = write!(out, "{}\t", t.format("%Y-%m-%d %H:%M:%S%.6f+00"));
        return;
    }
    let mut digits = |v: u32, width: u32, sep: u8| {
        for i in (0..width).rev() {
            out.push(b'0' + (v / 10u32.pow(i) % 10) as u8);
        }
        out.push(sep);
    };
    digits(year as u32, 4, b'-');
    digits(n.month(), 2, b'-');
    digits(n.day(), 2, b' ');
    digits(n.hour(), 2, b':');
    digits(n.minute(), 2, b':');
    digits(n.second(), 2, b'.');
    digits(nanos / 1000, 6, b'+');
    out.extend_from_slice(b"00\t");
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
    fn timestamps_match_chrono_formatting() {
        use chrono::TimeZone;
        let times = [
            Utc.with_ymd_and_hms(2026, 12, 1, 9, 21, 48).unwrap(),
            Utc.with_ymd_and_hms(1, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap()
                + chrono::Duration::nanoseconds(999_999_999),
            Utc.with_ymd_and_hms(2024, 2, 29, 12, 5, 7).unwrap()
                + chrono::Duration::microseconds(40_321),
            Utc.with_ymd_and_hms(10_000, 1, 1, 0, 0, 0).unwrap(),
        ];
        for t in times {
            let mut fast = Vec::new();
            timestamp(&mut fast, t);
            let general = format!("{}\t", t.format("%Y-%m-%d %H:%M:%S%.6f+00"));
            assert_eq!(String::from_utf8(fast).unwrap(), general, "{t:?}");
        }
    }

    #[test]
    fn select_keeps_the_chosen_rows_in_order() {
        let rows = EncodedRows {
            buf: b"a\nbb\nccc\n".to_vec(),
            ends: vec![2, 2, 5, 9],
        };
        assert_eq!(&*rows.select(&[true, true, true, true]), b"a\nbb\nccc\n");
        assert_eq!(&*rows.select(&[false, true, true, false]), b"bb\n");
        assert_eq!(&*rows.select(&[true, false, false, true]), b"a\nccc\n");
    }
}
