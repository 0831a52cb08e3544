//! Contract rules for one Kafka record (contract §1): decode, check, normalise. Anything that
//! fails becomes a [`Rejection`] with a machine-readable reason; nothing here can stall a
//! partition. Card numbers are handled here too, before any byte is stored or published:
//! masked in free text, a rejection in an identifier (see [`crate::pan`] for what counts as a
//! card number).

use crate::pan;
pub use crate::pan::mask_pans;
use chrono::{DateTime, Utc};
use sluice_api::Transaction;
use sluice_api::event::{CompactString, MAX_AMOUNT, MAX_RECORD_BYTES, is_known_currency};

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
    /// An identifier field holds a card number. Identifiers are never rewritten, so the record
    /// cannot be stored; its raw bytes are masked like every rejection's.
    CardNumberInIdentifier,
}

impl Reason {
    pub const ALL: [Reason; 13] = [
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
        Self::CardNumberInIdentifier,
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
            Self::CardNumberInIdentifier => "card_number_in_identifier",
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

/// A record that passed every rule, with card numbers masked in its free-text field
/// (`merchant_category`). Its identifiers are exactly as the producer sent them.
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
    // Identifiers are looked up by value, so they are never rewritten: one that holds a card
    // number rejects the record. The definition is the precise one of `pan` (bounded digit
    // runs in card groupings), so UUIDs, hashes and base64 ids are never taken for one.
    for (field, value) in identifier_fields(&tx) {
        if pan::contains_card_number(value.as_bytes()) {
            return Err(Rejection::new(
                Reason::CardNumberInIdentifier,
                format!("{field} holds a card number"),
            ));
        }
    }
    // Free text is stored and published: mask any card number a producer put there.
    if let Some(category) = tx.merchant_category.as_mut()
        && let Some(masked) = pan::mask_card_numbers(category)
    {
        *category = masked.into();
    }
    Ok(ValidTransaction {
        tx,
        event_time,
        amount_cents,
    })
}

fn classify_json_error(e: serde_json::Error) -> Rejection {
    use serde_json::error::Category;
    // serde quotes the offending value ("unknown variant `…`", "invalid type: string \"…\""),
    // and the detail is stored: mask it like the raw bytes.
    let msg = String::from_utf8(mask_pans(e.to_string().as_bytes()))
        .expect("masking only replaces ASCII digits");
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

fn check_opt_len(field: &str, value: &Option<CompactString>, max: usize) -> Result<(), Rejection> {
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

/// Fields that identify something and are looked up by value: never rewritten.
fn identifier_fields(tx: &Transaction) -> impl Iterator<Item = (&'static str, &str)> {
    text_fields(tx).filter(|(name, _)| *name != "merchant_category")
}

#[cfg(test)]
mod tests;
