//! Rows for COPY, in binary format ([`binary`]): how the sink stores a batch's new rows,
//! claims their ids and stores their alerts (see `sink::rows`), and what `sluice-bench` COPYs
//! straight into `transactions` to measure what Postgres takes on the box (the report's
//! `copy_baseline_tps` and `copy_same_rows_tps`).

pub mod binary;

use crate::batch::Accepted;
use std::borrow::Cow;

pub use binary::{encode_alerts, encode_claims, encode_rows};

/// COPY of rows into `transactions`; [`encode_rows`] writes exactly these columns.
pub const COPY_TRANSACTIONS: &str = "COPY transactions (transaction_id, customer_id, merchant_id, \
    merchant_category, amount, currency, event_time, payment_method, channel, country, shipping_country, \
    card_last4, card_fingerprint, device_id, ip_address, latitude, longitude, account_age_days, items, \
    kafka_partition, kafka_offset, kafka_timestamp, fraud_score, is_fraud) FROM STDIN (FORMAT binary)";

/// COPY of claimed ids into `transaction_ids`, from [`encode_claims`].
pub const COPY_CLAIMS: &str =
    "COPY transaction_ids (transaction_id, event_time) FROM STDIN (FORMAT binary)";

/// COPY of alerts into `fraud_alerts`, from [`encode_alerts`].
pub const COPY_ALERTS: &str = "COPY fraud_alerts (transaction_id, customer_id, event_time, score, reasons) \
    FROM STDIN (FORMAT binary)";

/// COPY `records` into `transactions` on `conn` (in its transaction, if one is open).
pub async fn copy_transactions(
    conn: &mut sqlx::PgConnection,
    records: &[Accepted],
) -> Result<u64, sqlx::Error> {
    copy_in(conn, COPY_TRANSACTIONS, encode_rows(records).buf).await
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

/// COPY data of one row per record, each row found again by its index: a batch's rows are
/// encoded before its ids are claimed, and only the new ones are sent.
#[derive(Debug, Default)]
pub struct EncodedRows {
    /// The format's header, the rows, the format's trailer.
    buf: Vec<u8>,
    /// Where the header ends and the first row starts.
    rows_start: usize,
    /// Where each record's row ends in `buf` (a record without a row ends where the one
    /// before it did); the trailer follows the last.
    ends: Vec<usize>,
}

impl EncodedRows {
    /// One row per record by `encode` (which may write nothing for a record), between the
    /// format's `header` and `trailer`.
    fn of<'a>(
        records: impl ExactSizeIterator<Item = &'a Accepted>,
        row_bytes: usize,
        (header, trailer): (&[u8], &[u8]),
        mut encode: impl FnMut(&'a Accepted, &mut Vec<u8>),
    ) -> Self {
        let mut buf = Vec::with_capacity(header.len() + records.len() * row_bytes + trailer.len());
        buf.extend_from_slice(header);
        let mut ends = Vec::with_capacity(records.len());
        for r in records {
            encode(r, &mut buf);
            ends.push(buf.len());
        }
        buf.extend_from_slice(trailer);
        Self {
            buf,
            rows_start: header.len(),
            ends,
        }
    }

    /// The rows of the records whose `keep` is true, in order, between header and trailer;
    /// borrowed when that is all, `None` when no kept record has a row (nothing to COPY).
    pub fn select(&self, keep: &[bool]) -> Option<Cow<'_, [u8]>> {
        debug_assert_eq!(keep.len(), self.ends.len());
        let starts = std::iter::once(self.rows_start).chain(self.ends.iter().copied());
        let mut kept = self
            .ends
            .iter()
            .zip(starts)
            .zip(keep)
            .filter_map(|((&end, start), &keep)| (keep && end > start).then_some(start..end))
            .peekable();
        kept.peek()?;
        if keep.iter().all(|k| *k) {
            return Some(Cow::Borrowed(&self.buf));
        }
        let rows_end = self.ends.last().copied().unwrap_or(self.rows_start);
        let mut out = Vec::with_capacity(self.buf.len());
        out.extend_from_slice(&self.buf[..self.rows_start]);
        for row in kept {
            out.extend_from_slice(&self.buf[row]);
        }
        out.extend_from_slice(&self.buf[rows_end..]);
        Some(Cow::Owned(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_keeps_the_chosen_rows_in_order_between_header_and_trailer() {
        let rows = EncodedRows {
            buf: b"H|a\nbb\nccc\n|T".to_vec(),
            rows_start: 2,
            ends: vec![4, 4, 7, 11],
        };
        let select = |keep: &[bool]| rows.select(keep).map(|rows| rows.into_owned());
        assert_eq!(
            select(&[true, true, true, true]).unwrap(),
            b"H|a\nbb\nccc\n|T"
        );
        assert_eq!(select(&[false, true, true, false]).unwrap(), b"H|bb\n|T");
        assert_eq!(
            select(&[true, false, false, true]).unwrap(),
            b"H|a\nccc\n|T"
        );
        // Nothing kept, or only records without a row: no COPY at all.
        assert_eq!(select(&[false, false, false, false]), None);
        assert_eq!(select(&[false, true, false, false]), None);
    }
}
