//! A corpus of bad records, each between valid ones: every bad record is rejected with the
//! right reason (table and DLQ), every valid one lands, and a card number sent in any
//! field appears in no table, no topic and no log line. A card number in free text is
//! masked; one in an identifier rejects the record (`card_number_in_identifier`), since
//! identifiers are never rewritten; a UUID that merely contains a Luhn-valid digit run is
//! stored exactly as sent.

use chrono::Utc;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value, json};
use sluice_e2e::{Pipeline, metrics, wait_for};
use std::collections::HashMap;
use std::time::Duration;

const PAN: &str = "4111111111111111";
const PAN_GROUPED: &str = "4111 1111 1111 1111";
/// A UUID whose digits `5459-0392-8523-6673-5` pass Luhn: the old masking rewrote it.
const LUHN_UUID: &str = "4daa5459-0392-8523-6673-5dbc0e66b2e5";

fn valid(id: &str) -> Value {
    json!({
        "transaction_id": id, "customer_id": "cust-1", "merchant_id": "m-1", "amount": 19.99,
        "currency": "EUR", "timestamp": Utc::now().to_rfc3339(), "payment_method": "credit_card",
        "country": "DE"
    })
}

fn with(id: &str, f: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut v = valid(id);
    f(&mut v);
    serde_json::to_vec(&v).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_records_are_rejected_with_reasons_and_cards_never_leak() -> anyhow::Result<()> {
    let p = Pipeline::new("bad_input", 1).await?;
    let big_pad = "x".repeat(70 * 1024);
    let corpus: Vec<(&str, Vec<u8>)> = vec![
        ("malformed_json", b"{not json".to_vec()),
        ("malformed_json", b"{\"amount\": NaN}".to_vec()),
        ("malformed_json", Vec::new()),
        (
            "invalid_utf8",
            b"{\"transaction_id\": \"\xff\xfe\"}".to_vec(),
        ),
        ("wrong_type", with("b1", |v| v["customer_id"] = json!(123))),
        ("wrong_type", with("b2", |v| v["amount"] = json!("NaN"))),
        ("wrong_type", b"[1, 2, 3]".to_vec()),
        (
            "missing_field",
            with("b3", |v| {
                v.as_object_mut().unwrap().remove("merchant_id");
            }),
        ),
        ("invalid_amount", with("b4", |v| v["amount"] = json!(-5))),
        ("invalid_amount", with("b5", |v| v["amount"] = json!(0))),
        ("invalid_amount", with("b6", |v| v["amount"] = json!(1e15))),
        ("invalid_amount", with("b7", |v| v["amount"] = json!(1.234))),
        (
            "unknown_currency",
            with("b8", |v| v["currency"] = json!("ABC")),
        ),
        (
            "future_timestamp",
            with("b9", |v| v["timestamp"] = json!("2099-01-01T00:00:00Z")),
        ),
        (
            "invalid_timestamp",
            with("b10", |v| v["timestamp"] = json!("last tuesday")),
        ),
        (
            "invalid_field",
            with("b11", |v| v["merchant_id"] = json!("m\u{0}1")),
        ),
        (
            "invalid_field",
            with("b12", |v| v["payment_method"] = json!("cash")),
        ),
        (
            "too_large",
            with("b13", |v| {
                v["pad"] = json!(big_pad);
                v["note"] = json!(PAN);
            }),
        ),
        ("duplicate", with("ok-0", |_| {})),
        (
            "invalid_amount",
            with("b14", |v| {
                v["amount"] = json!(-1);
                v["note"] = json!(format!("card {PAN_GROUPED}"));
                v["card_fingerprint"] = json!(PAN);
            }),
        ),
        (
            "card_number_in_identifier",
            with("b15", |v| v["device_id"] = json!(format!("dev-{PAN}"))),
        ),
        (
            "card_number_in_identifier",
            with("b16", |v| {
                v["transaction_id"] = json!(format!("tx {PAN_GROUPED}"));
                v["note"] = json!(PAN);
            }),
        ),
        (
            "card_number_in_identifier",
            with("b17", |v| {
                v["card_fingerprint"] = json!(PAN);
                v["merchant_category"] = json!(format!("card {PAN_GROUPED}"));
            }),
        ),
    ];

    // valid, bad, valid, bad, …, valid — on one partition, so offsets identify records.
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &p.brokers)
        .create()?;
    let mut expected: HashMap<i64, &str> = HashMap::new();
    let mut valid_ids = Vec::new();
    let mut offset = 0i64;
    let send = |payload: Vec<u8>| {
        let producer = producer.clone();
        let topic = p.topic.clone();
        async move {
            producer
                .send(
                    FutureRecord::<str, [u8]>::to(&topic)
                        .key("cust-1")
                        .payload(&payload),
                    Duration::from_secs(10),
                )
                .await
                .map_err(|(e, _)| e)
        }
    };
    // Valid records: one with a card number in its free text (stored, masked), one whose
    // transaction id is a UUID holding a Luhn-valid digit run (stored unchanged).
    for (i, (reason, bad)) in corpus.iter().enumerate() {
        let id = if i == 2 {
            LUHN_UUID.to_string()
        } else {
            format!("ok-{i}")
        };
        let payload = if i == 1 {
            with(&id, |v| {
                v["merchant_category"] = json!(format!("card {PAN_GROUPED}"));
                v["device_id"] = json!(LUHN_UUID);
            })
        } else {
            with(&id, |_| {})
        };
        send(payload).await?;
        valid_ids.push(id);
        offset += 1;
        send(bad.clone()).await?;
        expected.insert(offset, reason);
        offset += 1;
    }
    send(with("ok-last", |_| {})).await?;
    valid_ids.push("ok-last".into());
    let total = offset + 1;

    let w = p.worker().spawn()?;
    p.wait_handled(total, Duration::from_secs(60)).await?;

    let rows: Vec<(i64, String)> = sqlx::query_as(
        "SELECT source_offset, reason FROM sluice.rejected_transactions ORDER BY source_offset",
    )
    .fetch_all(&p.pool)
    .await?;
    let got: HashMap<i64, &str> = rows.iter().map(|(o, r)| (*o, r.as_str())).collect();
    assert_eq!(got, expected, "reason per rejected offset");
    p.assert_exactly_once(&valid_ids).await?;
    let (category, device): (String, String) = sqlx::query_as(
        "SELECT merchant_category, device_id FROM sluice.transactions WHERE transaction_id = 'ok-1'",
    )
    .fetch_one(&p.pool)
    .await?;
    assert_eq!(category, "card **** **** **** 1111");
    assert_eq!(device, LUHN_UUID, "an identifier was rewritten");
    let uuid_rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sluice.transactions WHERE transaction_id = $1")
            .bind(LUHN_UUID)
            .fetch_one(&p.pool)
            .await?;
    assert_eq!(uuid_rows, 1, "the UUID id was not stored as sent");

    // The new reason is counted like every other: metric label and quality "invalid".
    let in_id = expected
        .values()
        .filter(|r| **r == "card_number_in_identifier")
        .count();
    let counted = || {
        w.metric(
            "sluice_rejections_total",
            &[("reason", "card_number_in_identifier")],
        )
    };
    // The counter moves right after the commit that wait_handled saw.
    wait_for(
        "sluice_rejections_total{reason=\"card_number_in_identifier\"}",
        Duration::from_secs(10),
        || async { anyhow::Ok(counted().await? >= in_id as f64) },
    )
    .await?;
    assert_eq!(
        counted().await?,
        in_id as f64,
        "sluice_rejections_total{{reason=\"card_number_in_identifier\"}}"
    );
    // Every rejected record (duplicates included) was delivered to the DLQ and counted once
    // (no batch was retried here), and once caught up no partition has a time lag.
    let dlq_counted = || w.metric("sluice_dlq_records_total", &[]);
    let rejected = expected.len() as f64;
    wait_for(
        "sluice_dlq_records_total",
        Duration::from_secs(10),
        || async { anyhow::Ok(dlq_counted().await? >= rejected) },
    )
    .await?;
    assert_eq!(dlq_counted().await?, rejected, "sluice_dlq_records_total");
    // The time lag is refreshed with the consumer statistics (every 5 s).
    wait_for(
        "sluice_consumer_lag_seconds 0 on every partition",
        Duration::from_secs(20),
        || async {
            let m = w.metrics().await?;
            let lags: Vec<f64> = metrics::samples(&m, "sluice_consumer_lag_seconds", &[])
                .map(|(_, lag)| lag)
                .collect();
            anyhow::Ok(!lags.is_empty() && lags.iter().all(|lag| *lag == 0.0))
        },
    )
    .await?;
    let invalid: i64 = p
        .scalar("SELECT coalesce(sum(invalid_count), 0)::bigint FROM sluice.quality_summaries")
        .await?;
    let want_invalid = expected
        .values()
        .filter(|r| !matches!(**r, "duplicate" | "missing_field"))
        .count();
    assert_eq!(
        invalid, want_invalid as i64,
        "quality_summaries invalid_count"
    );

    // No card number in any table.
    for table in [
        "transactions",
        "rejected_transactions",
        "fraud_alerts",
        "analytics_summaries",
    ] {
        let sql = format!(
            "SELECT count(*) FROM sluice.{table} t WHERE position($1 in t::text) > 0 OR position($2 in t::text) > 0 \
             OR position(convert_to($1, 'UTF8') in convert_to(t::text, 'UTF8')) > 0"
        );
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(PAN)
            .bind(PAN_GROUPED)
            .fetch_one(&p.pool)
            .await?;
        assert_eq!(n, 0, "card number found in {table}");
    }
    let raw_hits: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sluice.rejected_transactions
         WHERE position(convert_to($1, 'UTF8') in raw_payload) > 0 OR position(convert_to($2, 'UTF8') in raw_payload) > 0",
    )
    .bind(PAN)
    .bind(PAN_GROUPED)
    .fetch_one(&p.pool)
    .await?;
    assert_eq!(raw_hits, 0, "card number in a stored raw payload");

    // The DLQ holds every rejected record, masked, with its reason header.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &p.brokers)
        .set("group.id", format!("dlq-reader-{}", p.name))
        .set("auto.offset.reset", "earliest")
        .create()?;
    consumer.subscribe(&[&format!("{}.dlq", p.topic)])?;
    let mut dlq: HashMap<i64, (String, Vec<u8>)> = HashMap::new();
    wait_for(
        "every rejected record in the DLQ",
        Duration::from_secs(30),
        || {
            while let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                let header = |name: &str| {
                    m.headers()
                        .and_then(|h| h.iter().find(|x| x.key == name).and_then(|x| x.value))
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                        .unwrap_or_default()
                };
                let offset: i64 = header("sluice-source-offset").parse().unwrap_or(-1);
                dlq.insert(
                    offset,
                    (
                        header("sluice-reason"),
                        m.payload().unwrap_or_default().to_vec(),
                    ),
                );
            }
            let done = dlq.len() == expected.len();
            async move { done }
        },
    )
    .await?;
    for (offset, reason) in &expected {
        let (got_reason, payload) = &dlq[offset];
        assert_eq!(got_reason, reason, "DLQ reason of offset {offset}");
        let text = String::from_utf8_lossy(payload);
        assert!(
            !text.contains(PAN) && !text.contains(PAN_GROUPED),
            "card number in DLQ message at {offset}"
        );
    }

    let log = w.log();
    assert!(!log.is_empty());
    assert!(
        !log.contains(PAN) && !log.contains(PAN_GROUPED),
        "card number in the worker log"
    );
    Ok(())
}
