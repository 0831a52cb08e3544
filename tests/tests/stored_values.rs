//! Every column is stored as sent: records with edge values (amounts from a cent to the
//! limit, text with tabs, newlines, backslashes, quotes and non-ASCII, absent optional
//! fields, full-precision coordinates, sub-microsecond times in other offsets, counts past
//! `integer`) go through the worker, whose sink writes them in COPY binary format, and each
//! row read back must equal what its record says, column by column.

use chrono::{DateTime, Duration as TimeDelta, SubsecRound, Utc};
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value, json};
use sluice_e2e::Pipeline;
use std::time::Duration;

/// Sent as `"amount"`, stored as this `numeric(12,2)` text.
const AMOUNTS: [(f64, &str); 9] = [
    (0.01, "0.01"),
    (0.5, "0.50"),
    (1.0, "1.00"),
    (99.99, "99.99"),
    (100.0, "100.00"),
    (10_000.0, "10000.00"),
    (12_345.67, "12345.67"),
    (999_999.99, "999999.99"),
    (1_000_000.0, "1000000.00"),
];

fn record(i: usize, now: DateTime<Utc>) -> Value {
    let (amount, _) = AMOUNTS[i % AMOUNTS.len()];
    // Sub-microsecond digits, an offset other than UTC, and a different time each.
    let at = (now - TimeDelta::minutes(30) + TimeDelta::nanoseconds(i as i64 * 1_234_567_891))
        .with_timezone(&chrono::FixedOffset::east_opt(5 * 3600 + 1800).unwrap());
    let mut v = json!({
        "transaction_id": format!("sv-{i}-ü\\\"'"),
        "customer_id": format!("cust\t{i}\nline"),
        "merchant_id": "m\\1 ☃ 中文 🚀",
        "amount": amount,
        "currency": "EUR",
        "timestamp": at.to_rfc3339_opts(chrono::SecondsFormat::Nanos, false),
        "payment_method": (["credit_card", "paypal", "crypto"][i % 3]),
        "country": "DE",
    });
    if i.is_multiple_of(2) {
        // Every optional field present; the odd records leave them all out (NULL).
        let o = v.as_object_mut().unwrap();
        o.insert(
            "merchant_category".into(),
            json!("tab\there, \"quoted\", back\\slash, \r\n"),
        );
        o.insert("channel".into(), json!((["web", "mobile", "pos"][i % 3])));
        o.insert("shipping_country".into(), json!("FR"));
        o.insert("card_last4".into(), json!("0042"));
        o.insert("card_fingerprint".into(), json!("fp-é"));
        o.insert("device_id".into(), json!(format!("dev-{i}")));
        o.insert("ip_address".into(), json!("2001:db8::1"));
        o.insert(
            "latitude".into(),
            json!(-89.123_456_789_012_34 + i as f64 * 1e-9),
        );
        o.insert("longitude".into(), json!(179.999_999_999_999_97));
        o.insert(
            "account_age_days".into(),
            json!(if i.is_multiple_of(4) { u32::MAX } else { 0 }),
        );
        o.insert(
            "items".into(),
            json!(if i.is_multiple_of(4) { 10_000 } else { 1 }),
        );
    }
    v
}

#[derive(sqlx::FromRow, Debug)]
struct Stored {
    transaction_id: String,
    customer_id: String,
    merchant_id: String,
    merchant_category: Option<String>,
    amount: String,
    currency: String,
    event_time: DateTime<Utc>,
    payment_method: String,
    channel: Option<String>,
    country: String,
    shipping_country: Option<String>,
    card_last4: Option<String>,
    card_fingerprint: Option<String>,
    device_id: Option<String>,
    ip_address: Option<String>,
    latitude: Option<f64>,
    longitude: Option<f64>,
    account_age_days: Option<i32>,
    items: Option<i32>,
    kafka_partition: i32,
    kafka_offset: i64,
    kafka_timestamp: DateTime<Utc>,
    fraud_score: Option<f64>,
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key).map(|s| s.as_str().unwrap().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_column_is_stored_exactly_as_sent() -> anyhow::Result<()> {
    let p = Pipeline::new("stored_values", 1).await?;
    let now = Utc::now();
    // Read back from their JSON as the worker reads them, so a float is the one it parses.
    let records: Vec<Value> = (0..40)
        .map(|i| serde_json::from_slice(&serde_json::to_vec(&record(i, now)).unwrap()).unwrap())
        .collect();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &p.brokers)
        .create()?;
    // Kafka timestamps set by the producer: the stored kafka_timestamp is known exactly.
    let kafka_ms = |i: usize| now.timestamp_millis() - 60_000 + i as i64 * 7;
    for (i, r) in records.iter().enumerate() {
        let payload = serde_json::to_vec(r)?;
        producer
            .send(
                FutureRecord::<str, [u8]>::to(&p.topic)
                    .key("k")
                    .payload(&payload)
                    .timestamp(kafka_ms(i)),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)?;
    }
    let _w = p.worker().spawn()?;
    p.wait_handled(records.len() as i64, Duration::from_secs(60))
        .await?;

    let stored: Vec<Stored> = sqlx::query_as(
        "SELECT transaction_id, customer_id, merchant_id, merchant_category, amount::text AS amount,
                currency, event_time, payment_method, channel, country, shipping_country, card_last4,
                card_fingerprint, device_id, ip_address, latitude, longitude, account_age_days, items,
                kafka_partition, kafka_offset, kafka_timestamp, fraud_score
         FROM sluice.transactions ORDER BY kafka_offset",
    )
    .fetch_all(&p.pool)
    .await?;
    assert_eq!(stored.len(), records.len(), "rows stored");
    for (i, (r, s)) in records.iter().zip(&stored).enumerate() {
        let at = DateTime::parse_from_rfc3339(r["timestamp"].as_str().unwrap())?
            .with_timezone(&Utc)
            .trunc_subsecs(6);
        let ctx = format!("record {i}: {s:?}");
        assert_eq!(
            Some(s.transaction_id.clone()),
            text(r, "transaction_id"),
            "{ctx}"
        );
        assert_eq!(Some(s.customer_id.clone()), text(r, "customer_id"), "{ctx}");
        assert_eq!(Some(s.merchant_id.clone()), text(r, "merchant_id"), "{ctx}");
        assert_eq!(s.merchant_category, text(r, "merchant_category"), "{ctx}");
        assert_eq!(s.amount, AMOUNTS[i % AMOUNTS.len()].1, "{ctx}");
        assert_eq!(Some(s.currency.clone()), text(r, "currency"), "{ctx}");
        assert_eq!(s.event_time, at, "{ctx}");
        assert_eq!(
            Some(s.payment_method.clone()),
            text(r, "payment_method"),
            "{ctx}"
        );
        assert_eq!(s.channel, text(r, "channel"), "{ctx}");
        assert_eq!(Some(s.country.clone()), text(r, "country"), "{ctx}");
        assert_eq!(s.shipping_country, text(r, "shipping_country"), "{ctx}");
        assert_eq!(s.card_last4, text(r, "card_last4"), "{ctx}");
        assert_eq!(s.card_fingerprint, text(r, "card_fingerprint"), "{ctx}");
        assert_eq!(s.device_id, text(r, "device_id"), "{ctx}");
        assert_eq!(s.ip_address, text(r, "ip_address"), "{ctx}");
        // Bit for bit: the binary format carries the float itself, not a decimal rendering.
        let float = |key| r.get(key).map(|v: &Value| v.as_f64().unwrap().to_bits());
        assert_eq!(s.latitude.map(f64::to_bits), float("latitude"), "{ctx}");
        assert_eq!(s.longitude.map(f64::to_bits), float("longitude"), "{ctx}");
        // Counts past `integer` are clamped to its maximum.
        let count = |key| {
            r.get(key)
                .map(|v: &Value| i32::try_from(v.as_u64().unwrap()).unwrap_or(i32::MAX))
        };
        assert_eq!(s.account_age_days, count("account_age_days"), "{ctx}");
        assert_eq!(s.items, count("items"), "{ctx}");
        assert_eq!((s.kafka_partition, s.kafka_offset), (0, i as i64), "{ctx}");
        assert_eq!(s.kafka_timestamp.timestamp_millis(), kafka_ms(i), "{ctx}");
        let score = s.fraud_score.expect("scored");
        assert!((0.0..=1.0).contains(&score), "{ctx}");
    }
    // The ids' claims carry the same event times (the lookup from an id to its partition).
    let mismatched_claims = p
        .scalar(
            "SELECT count(*) FROM sluice.transactions t
             JOIN sluice.transaction_ids i USING (transaction_id)
             WHERE i.event_time <> t.event_time",
        )
        .await?;
    assert_eq!(
        mismatched_claims, 0,
        "claims whose event time differs from the row's"
    );
    p.assert_exactly_once(
        &records
            .iter()
            .map(|r| text(r, "transaction_id").unwrap())
            .collect::<Vec<_>>(),
    )
    .await?;
    Ok(())
}
