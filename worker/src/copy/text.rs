//! COPY text format: the alerts (their reasons are an array, simplest written as text).

use super::EncodedRows;
use crate::batch::Accepted;
use chrono::{DateTime, Datelike, Timelike, Utc};

/// The `fraud_alerts` rows of the flagged `records`, for [`super::COPY_ALERTS`].
pub fn encode_alerts(records: &[Accepted]) -> EncodedRows {
    use std::io::Write;
    EncodedRows::of(records.iter(), 40, (b"", b""), |r, out| {
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
}
