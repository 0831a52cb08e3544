//! Rows of `transactions` in COPY text format: how the sink stores a batch's new rows (see
//! `sink::rows`), and what `sluice-bench` COPYs straight into `transactions` to measure what
//! Postgres takes on the box (the report's `copy_baseline_tps`).

use crate::batch::Accepted;
use chrono::{DateTime, Utc};

/// COPY of rows into `transactions`; [`encode_copy`] writes exactly these columns.
pub const COPY_TRANSACTIONS: &str = "COPY transactions (transaction_id, customer_id, merchant_id, \
    merchant_category, amount, currency, event_time, payment_method, channel, country, shipping_country, \
    card_last4, card_fingerprint, device_id, ip_address, latitude, longitude, account_age_days, items, \
    kafka_partition, kafka_offset, kafka_timestamp, fraud_score, is_fraud) FROM STDIN";

/// COPY `records` into `transactions` on `conn` (in its transaction, if one is open).
pub async fn copy_transactions<'a>(
    conn: &mut sqlx::PgConnection,
    records: impl ExactSizeIterator<Item = &'a Accepted>,
) -> Result<u64, sqlx::Error> {
    let mut buf = Vec::with_capacity(records.len() * 320);
    encode_copy(records, &mut buf);
    let mut copy = conn.copy_in_raw(COPY_TRANSACTIONS).await?;
    copy.send(buf).await?;
    copy.finish().await
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
}
