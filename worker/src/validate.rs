//! Contract rules for one Kafka record (contract §1): decode, check, normalise. Anything that
//! fails becomes a [`Rejection`] with a machine-readable reason; nothing here can stall a
//! partition. Card numbers are masked here too, before any byte is stored or published.

use chrono::{DateTime, Utc};
use sluice_api::Transaction;
use sluice_api::event::{MAX_AMOUNT, MAX_RECORD_BYTES, is_known_currency};

/// Why a record was rejected. The string form is stored in `rejected_transactions.reason`,
/// sent as the `sluice-reason` DLQ header and used as a metric label, so it never changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    TooLarge,
    InvalidUtf8,
    MalformedJson,
    MissingField,
    WrongType,
    InvalidField,
    InvalidAmount,
    UnknownCurrency,
    InvalidTimestamp,
    FutureTimestamp,
    TooOld,
    Duplicate,
}

impl Reason {
    pub const ALL: [Reason; 12] = [
        Self::TooLarge,
        Self::InvalidUtf8,
        Self::MalformedJson,
        Self::MissingField,
        Self::WrongType,
        Self::InvalidField,
        Self::InvalidAmount,
        Self::UnknownCurrency,
        Self::InvalidTimestamp,
        Self::FutureTimestamp,
        Self::TooOld,
        Self::Duplicate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::TooLarge => "too_large",
            Self::InvalidUtf8 => "invalid_utf8",
            Self::MalformedJson => "malformed_json",
            Self::MissingField => "missing_field",
            Self::WrongType => "wrong_type",
            Self::InvalidField => "invalid_field",
            Self::InvalidAmount => "invalid_amount",
            Self::UnknownCurrency => "unknown_currency",
            Self::InvalidTimestamp => "invalid_timestamp",
            Self::FutureTimestamp => "future_timestamp",
            Self::TooOld => "too_old",
            Self::Duplicate => "duplicate",
        }
    }
}

/// A rejected record: the reason and a short detail that never quotes the payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub reason: Reason,
    pub detail: String,
}

impl Rejection {
    fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}

/// A record that passed every rule, with card numbers masked in its text fields.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidTransaction {
    pub tx: Transaction,
    pub event_time: DateTime<Utc>,
    pub amount_cents: i64,
}

/// The time window an event time must fall in.
#[derive(Debug, Clone, Copy)]
pub struct TimeBounds {
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
}

impl TimeBounds {
    pub fn around(now: DateTime<Utc>, retention_days: u32, max_future_skew_secs: i64) -> Self {
        Self {
            not_before: now - chrono::Duration::days(i64::from(retention_days)),
            not_after: now + chrono::Duration::seconds(max_future_skew_secs),
        }
    }
}

/// Decode and check one record value.
pub fn validate(payload: &[u8], bounds: TimeBounds) -> Result<ValidTransaction, Rejection> {
    if payload.len() > MAX_RECORD_BYTES {
        return Err(Rejection::new(
            Reason::TooLarge,
            format!("{} bytes > {MAX_RECORD_BYTES}", payload.len()),
        ));
    }
    let text = std::str::from_utf8(payload).map_err(|e| {
        Rejection::new(
            Reason::InvalidUtf8,
            format!("invalid UTF-8 at byte {}", e.valid_up_to()),
        )
    })?;
    let mut tx: Transaction = serde_json::from_str(text).map_err(classify_json_error)?;

    check_len("transaction_id", &tx.transaction_id, 1, 64)?;
    check_len("customer_id", &tx.customer_id, 1, 64)?;
    check_len("merchant_id", &tx.merchant_id, 1, 64)?;
    check_opt_len("merchant_category", &tx.merchant_category, 64)?;
    check_opt_len("card_fingerprint", &tx.card_fingerprint, 128)?;
    check_opt_len("device_id", &tx.device_id, 128)?;

    let amount_cents = amount_to_cents(tx.amount)?;

    if !is_upper_alpha(&tx.currency, 3) {
        return Err(Rejection::new(
            Reason::InvalidField,
            "currency must match ^[A-Z]{3}$",
        ));
    }
    if !is_known_currency(&tx.currency) {
        return Err(Rejection::new(
            Reason::UnknownCurrency,
            "currency is not an ISO 4217 code",
        ));
    }
    if !is_upper_alpha(&tx.country, 2) {
        return Err(Rejection::new(
            Reason::InvalidField,
            "country must match ^[A-Z]{2}$",
        ));
    }
    if let Some(c) = &tx.shipping_country
        && !is_upper_alpha(c, 2)
    {
        return Err(Rejection::new(
            Reason::InvalidField,
            "shipping_country must match ^[A-Z]{2}$",
        ));
    }
    if let Some(l4) = &tx.card_last4
        && !(l4.len() == 4 && l4.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(Rejection::new(
            Reason::InvalidField,
            "card_last4 must be 4 digits",
        ));
    }
    if let Some(ip) = &tx.ip_address
        && ip.parse::<std::net::IpAddr>().is_err()
    {
        return Err(Rejection::new(
            Reason::InvalidField,
            "ip_address is not an IPv4 or IPv6 literal",
        ));
    }
    if let Some(lat) = tx.latitude
        && !(-90.0..=90.0).contains(&lat)
    {
        return Err(Rejection::new(
            Reason::InvalidField,
            "latitude outside [-90, 90]",
        ));
    }
    if let Some(lon) = tx.longitude
        && !(-180.0..=180.0).contains(&lon)
    {
        return Err(Rejection::new(
            Reason::InvalidField,
            "longitude outside [-180, 180]",
        ));
    }
    if let Some(items) = tx.items
        && !(1..=10_000).contains(&items)
    {
        return Err(Rejection::new(
            Reason::InvalidField,
            "items outside [1, 10000]",
        ));
    }

    let event_time = DateTime::parse_from_rfc3339(&tx.timestamp)
        .map_err(|e| {
            Rejection::new(
                Reason::InvalidTimestamp,
                format!("timestamp is not RFC 3339: {e}"),
            )
        })?
        .with_timezone(&Utc);
    if event_time > bounds.not_after {
        return Err(Rejection::new(
            Reason::FutureTimestamp,
            "timestamp is too far in the future",
        ));
    }
    if event_time < bounds.not_before {
        return Err(Rejection::new(
            Reason::TooOld,
            "timestamp is older than the retention window",
        ));
    }

    // Postgres text cannot hold NUL; a string carrying one is not a usable value.
    for (field, value) in text_fields(&tx) {
        if value.contains('\0') {
            return Err(Rejection::new(
                Reason::InvalidField,
                format!("{field} contains NUL"),
            ));
        }
    }
    mask_text_fields(&mut tx);
    Ok(ValidTransaction {
        tx,
        event_time,
        amount_cents,
    })
}

fn classify_json_error(e: serde_json::Error) -> Rejection {
    use serde_json::error::Category;
    let msg = e.to_string();
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            Rejection::new(Reason::MalformedJson, msg)
        }
        // A required field sent as null is as absent as a missing one (quality: null rate).
        Category::Data
            if msg.starts_with("missing field") || msg.starts_with("invalid type: null") =>
        {
            Rejection::new(Reason::MissingField, msg)
        }
        Category::Data if msg.starts_with("unknown variant") => {
            Rejection::new(Reason::InvalidField, msg)
        }
        Category::Data if msg.starts_with("invalid value") && msg.contains("expected u32") => {
            Rejection::new(Reason::InvalidField, msg)
        }
        // Out-of-range numbers for integer fields report as "invalid value".
        Category::Data if msg.starts_with("invalid value") => {
            Rejection::new(Reason::InvalidField, msg)
        }
        Category::Data => Rejection::new(Reason::WrongType, msg),
    }
}

/// Exact cents of a JSON amount: positive, at most [`MAX_AMOUNT`], at most two decimals.
fn amount_to_cents(amount: f64) -> Result<i64, Rejection> {
    if !amount.is_finite() || amount <= 0.0 {
        return Err(Rejection::new(
            Reason::InvalidAmount,
            "amount must be a positive number",
        ));
    }
    if amount > MAX_AMOUNT {
        return Err(Rejection::new(
            Reason::InvalidAmount,
            "amount exceeds 1000000",
        ));
    }
    let scaled = amount * 100.0;
    let cents = scaled.round();
    if (scaled - cents).abs() > 1e-6 * scaled.max(1.0) {
        return Err(Rejection::new(
            Reason::InvalidAmount,
            "amount has more than 2 decimals",
        ));
    }
    if cents < 1.0 {
        return Err(Rejection::new(
            Reason::InvalidAmount,
            "amount rounds to zero",
        ));
    }
    Ok(cents as i64)
}

fn check_len(field: &str, value: &str, min: usize, max: usize) -> Result<(), Rejection> {
    let n = value.chars().count();
    if n < min || n > max {
        return Err(Rejection::new(
            Reason::InvalidField,
            format!("{field} length {n} outside [{min}, {max}]"),
        ));
    }
    Ok(())
}

fn check_opt_len(field: &str, value: &Option<String>, max: usize) -> Result<(), Rejection> {
    value
        .as_deref()
        .map_or(Ok(()), |v| check_len(field, v, 0, max))
}

fn is_upper_alpha(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_uppercase())
}

fn text_fields(tx: &Transaction) -> impl Iterator<Item = (&'static str, &str)> {
    [
        ("transaction_id", Some(tx.transaction_id.as_str())),
        ("customer_id", Some(tx.customer_id.as_str())),
        ("merchant_id", Some(tx.merchant_id.as_str())),
        ("merchant_category", tx.merchant_category.as_deref()),
        ("card_fingerprint", tx.card_fingerprint.as_deref()),
        ("device_id", tx.device_id.as_deref()),
    ]
    .into_iter()
    .filter_map(|(name, v)| v.map(|v| (name, v)))
}

/// Free-text fields are stored and published: mask any card number a producer put there.
fn mask_text_fields(tx: &mut Transaction) {
    for field in [
        Some(&mut tx.transaction_id),
        Some(&mut tx.customer_id),
        Some(&mut tx.merchant_id),
        tx.merchant_category.as_mut(),
        tx.card_fingerprint.as_mut(),
        tx.device_id.as_mut(),
    ]
    .into_iter()
    .flatten()
    {
        if let Some(masked) = mask_pans_str(field) {
            *field = masked;
        }
    }
}

fn mask_pans_str(s: &str) -> Option<String> {
    if s.bytes().filter(u8::is_ascii_digit).count() < 13 {
        return None;
    }
    let masked = mask_pans(s.as_bytes());
    // Masking only swaps ASCII digits for '*', so UTF-8 stays valid.
    (masked != s.as_bytes()).then(|| String::from_utf8(masked).unwrap_or_default())
}

/// Mask every card number in `bytes`: a run of 13–19 digits that passes the Luhn check, or
/// the same written in the usual groups (4-4-4-4[-1..3], 4-6-5, 4-6-4) with single spaces or
/// dashes. All but the last four digits become `*`. Works on raw bytes, so it also covers
/// payloads that are not valid UTF-8.
pub fn mask_pans(bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        // Digit groups separated by exactly one space or dash.
        let mut groups: Vec<Vec<usize>> = vec![Vec::new()];
        let mut j = i;
        while j < bytes.len() {
            if bytes[j].is_ascii_digit() {
                groups.last_mut().expect("non-empty").push(j);
                j += 1;
            } else if (bytes[j] == b' ' || bytes[j] == b'-')
                && bytes.get(j + 1).is_some_and(u8::is_ascii_digit)
            {
                groups.push(Vec::new());
                j += 1;
            } else {
                break;
            }
        }
        let lens: Vec<usize> = groups.iter().map(Vec::len).collect();
        if groups.len() > 1 && is_card_grouping(&lens) {
            mask_run(&groups.concat(), bytes, &mut out);
        } else {
            for g in &groups {
                mask_run(g, bytes, &mut out);
            }
        }
        i = j;
    }
    out
}

fn is_card_grouping(lens: &[usize]) -> bool {
    match lens {
        [4, 6, 5] | [4, 6, 4] => true,
        [4, 4, 4, 4] => true,
        [4, 4, 4, 4, last] => (1..=3).contains(last),
        _ => false,
    }
}

/// Within one run, mask every window of 13–19 consecutive digits that passes Luhn, so a
/// card number glued to other digits is caught too.
fn mask_run(digits: &[usize], bytes: &[u8], out: &mut [u8]) {
    if digits.len() < 13 {
        return;
    }
    let value = |k: usize| u32::from(bytes[digits[k]] - b'0');
    let mut start = 0;
    while start + 13 <= digits.len() {
        let mut matched = None;
        for len in (13..=19.min(digits.len() - start)).rev() {
            if luhn_ok((start..start + len).map(value)) {
                matched = Some(len);
                break;
            }
        }
        match matched {
            Some(len) => {
                for &pos in &digits[start..start + len - 4] {
                    out[pos] = b'*';
                }
                start += len;
            }
            None => start += 1,
        }
    }
}

fn luhn_ok(digits: impl DoubleEndedIterator<Item = u32>) -> bool {
    let sum: u32 = digits
        .rev()
        .enumerate()
        .map(|(i, d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds() -> TimeBounds {
        TimeBounds::around("2026-11-25T12:00:00Z".parse().unwrap(), 30, 300)
    }

    fn event(over: &str) -> String {
        let mut v: serde_json::Value = serde_json::json!({
            "transaction_id": "t1", "customer_id": "c1", "merchant_id": "m1",
            "amount": 12.34, "currency": "EUR", "timestamp": "2026-11-25T11:59:00Z",
            "payment_method": "credit_card", "country": "DE"
        });
        let patch: serde_json::Value = serde_json::from_str(over).unwrap();
        for (k, val) in patch.as_object().unwrap() {
            if val.is_null() {
                v.as_object_mut().unwrap().remove(k);
            } else {
                v[k] = val.clone();
            }
        }
        v.to_string()
    }

    fn reason(over: &str) -> Option<Reason> {
        validate(event(over).as_bytes(), bounds())
            .err()
            .map(|r| r.reason)
    }

    #[test]
    fn accepts_a_valid_event() {
        let v = validate(event("{}").as_bytes(), bounds()).unwrap();
        assert_eq!(v.amount_cents, 1234);
    }

    #[test]
    fn each_rule_has_its_reason() {
        assert_eq!(reason(r#"{"amount": 0}"#), Some(Reason::InvalidAmount));
        assert_eq!(reason(r#"{"amount": -5}"#), Some(Reason::InvalidAmount));
        assert_eq!(reason(r#"{"amount": 1e12}"#), Some(Reason::InvalidAmount));
        assert_eq!(reason(r#"{"amount": 1.005}"#), Some(Reason::InvalidAmount));
        assert_eq!(reason(r#"{"amount": "NaN"}"#), Some(Reason::WrongType));
        assert_eq!(
            reason(r#"{"currency": "XYZ"}"#),
            Some(Reason::UnknownCurrency)
        );
        assert_eq!(reason(r#"{"currency": "eur"}"#), Some(Reason::InvalidField));
        assert_eq!(
            reason(r#"{"customer_id": null}"#),
            Some(Reason::MissingField)
        );
        let explicit_null = r#"{"transaction_id": "t1", "customer_id": null}"#;
        assert_eq!(
            validate(explicit_null.as_bytes(), bounds())
                .err()
                .map(|r| r.reason),
            Some(Reason::MissingField)
        );
        assert_eq!(reason(r#"{"customer_id": 7}"#), Some(Reason::WrongType));
        assert_eq!(
            reason(r#"{"payment_method": "cash"}"#),
            Some(Reason::InvalidField)
        );
        assert_eq!(
            reason(r#"{"timestamp": "2030-01-01T00:00:00Z"}"#),
            Some(Reason::FutureTimestamp)
        );
        assert_eq!(
            reason(r#"{"timestamp": "2020-01-01T00:00:00Z"}"#),
            Some(Reason::TooOld)
        );
        assert_eq!(
            reason(r#"{"timestamp": "yesterday"}"#),
            Some(Reason::InvalidTimestamp)
        );
        assert_eq!(
            reason(r#"{"device_id": "a\u0000b"}"#),
            Some(Reason::InvalidField)
        );
        assert_eq!(
            reason(r#"{"transaction_id": ""}"#),
            Some(Reason::InvalidField)
        );
        assert_eq!(reason(r#"{"items": 0}"#), Some(Reason::InvalidField));
        assert_eq!(
            reason(r#"{"account_age_days": -1}"#),
            Some(Reason::InvalidField)
        );
        assert_eq!(
            reason(r#"{"ip_address": "999.1.1.1"}"#),
            Some(Reason::InvalidField)
        );
        let bad = |b: &[u8]| validate(b, bounds()).unwrap_err().reason;
        assert_eq!(bad(b"{not json"), Reason::MalformedJson);
        assert_eq!(bad(b"\xff\xfe"), Reason::InvalidUtf8);
        assert_eq!(bad(&vec![b' '; MAX_RECORD_BYTES + 1]), Reason::TooLarge);
    }

    #[test]
    fn masks_card_numbers_but_not_other_numbers() {
        let masked =
            mask_pans(b"pan 4111111111111111, grouped 4111-1111-1111-1111, id 1234567890123");
        let s = String::from_utf8(masked).unwrap();
        assert_eq!(
            s,
            "pan ************1111, grouped ****-****-****-1111, id 1234567890123"
        );
        // ids with dash-separated numbers are not card numbers
        assert_eq!(mask_pans(b"run-4-11-0000001365"), b"run-4-11-0000001365");
        // a PAN glued inside a longer digit run is still caught
        let s = String::from_utf8(mask_pans(b"x9994111111111111111y")).unwrap();
        assert!(!s.contains("4111111111111111"), "{s}");
    }

    #[test]
    fn masks_pans_in_stored_text_fields() {
        let v = validate(
            event(r#"{"device_id": "dev-4111111111111111"}"#).as_bytes(),
            bounds(),
        )
        .unwrap();
        assert_eq!(v.tx.device_id.as_deref(), Some("dev-************1111"));
    }
}
