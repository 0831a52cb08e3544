//! Per-minute event-time windows: late events within the allowed lateness are folded into
//! their minute, later ones are stored but left out (and counted as late), the watermark
//! survives a worker restart, and data quality is counted per minute.

use chrono::{DateTime, Duration as Span, DurationRound, Utc};
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value, json};
use sluice_e2e::Pipeline;
use std::time::Duration;

fn event(id: &str, at: DateTime<Utc>, amount: f64, method: &str) -> Vec<u8> {
    let v: Value = json!({
        "transaction_id": id, "customer_id": "cust-7", "merchant_id": "m-1", "merchant_category": "books",
        "amount": amount, "currency": "EUR", "timestamp": at.to_rfc3339(), "payment_method": method,
        "country": "DE"
    });
    serde_json::to_vec(&v).unwrap()
}

struct Sender {
    producer: FutureProducer,
    topic: String,
}

impl Sender {
    async fn send(&self, payload: Vec<u8>) -> anyhow::Result<()> {
        self.producer
            .send(
                FutureRecord::<str, [u8]>::to(&self.topic)
                    .key("cust-7")
                    .payload(&payload),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)?;
        Ok(())
    }
}

async fn window(
    p: &Pipeline,
    start: DateTime<Utc>,
    dimension: &str,
    value: &str,
) -> anyhow::Result<(i64, f64)> {
    let row: Option<(i64, f64)> = sqlx::query_as(
        "SELECT transaction_count, total_amount::float8 FROM sluice.analytics_summaries
         WHERE period_start = $1 AND dimension = $2 AND dimension_value = $3",
    )
    .bind(start)
    .bind(dimension)
    .bind(value)
    .fetch_optional(&p.pool)
    .await?;
    Ok(row.unwrap_or((0, 0.0)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_events_fold_in_within_the_allowed_lateness_only() -> anyhow::Result<()> {
    let p = Pipeline::new("analytics_windows", 1).await?;
    let send = Sender {
        producer: ClientConfig::new()
            .set("bootstrap.servers", &p.brokers)
            .create()?,
        topic: p.topic.clone(),
    };
    let t0 = (Utc::now() - Span::minutes(30)).duration_trunc(Span::minutes(1))?;
    let at = |secs: i64| t0 + Span::seconds(secs);
    let lateness = 120;
    let worker = |p: &Pipeline| {
        p.worker()
            .env("SLUICE_ANALYTICS__ALLOWED_LATENESS_SECS", lateness)
            .spawn()
    };

    let mut w = worker(&p)?;
    // Minute 0: ten on time.
    for i in 0..10 {
        send.send(event(&format!("on-{i}"), at(i * 5), 10.0, "credit_card"))
            .await?;
    }
    // Minute 2 moves the watermark to t0+130 s.
    for i in 0..5 {
        send.send(event(&format!("m2-{i}"), at(130), 1.0, "credit_card"))
            .await?;
    }
    // 110 s behind the watermark: within the lateness, folded into minute 0.
    for i in 0..3 {
        send.send(event(&format!("late-ok-{i}"), at(20), 2.5, "paypal"))
            .await?;
    }
    // Minute 6 moves the watermark to t0+400 s; then 370 s behind it: too late.
    send.send(event("m6", at(400), 7.0, "credit_card")).await?;
    for i in 0..2 {
        send.send(event(
            &format!("too-late-{i}"),
            at(30),
            100.0,
            "credit_card",
        ))
        .await?;
    }
    // Quality: two nulls, one invalid, two duplicates.
    send.send(serde_json::to_vec(
        &json!({"transaction_id": "n1", "customer_id": null}),
    )?)
    .await?;
    let mut missing: Value = serde_json::from_slice(&event("n2", at(400), 1.0, "credit_card"))?;
    missing.as_object_mut().unwrap().remove("merchant_id");
    send.send(serde_json::to_vec(&missing)?).await?;
    send.send(event("bad", at(400), -1.0, "credit_card"))
        .await?;
    send.send(event("on-0", at(0), 10.0, "credit_card")).await?;
    send.send(event("on-1", at(5), 10.0, "credit_card")).await?;
    p.wait_handled(21 + 5, Duration::from_secs(60)).await?;

    // The watermark (t0+400 s) was committed with the offsets: a new worker still finds an
    // event at t0+35 s too late.
    w.terminate()?;
    let w2 = worker(&p)?;
    send.send(event(
        "too-late-after-restart",
        at(35),
        100.0,
        "credit_card",
    ))
    .await?;
    p.wait_handled(22 + 5, Duration::from_secs(60)).await?;
    let metrics = w2.metrics().await?;
    let late_line = metrics
        .lines()
        .find(|l| l.starts_with("sluice_late_events_total{"))
        .unwrap_or_default();
    assert!(
        late_line.ends_with(" 1"),
        "the restarted worker counted its one late event: {late_line:?}"
    );

    assert_eq!(
        p.scalar("SELECT count(*) FROM sluice.transactions").await?,
        22,
        "late events are still stored"
    );
    assert_eq!(
        window(&p, at(0), "all", "").await?,
        (13, 107.5),
        "minute 0: 10 on time + 3 within lateness"
    );
    assert_eq!(
        window(&p, at(0), "payment_method", "paypal").await?,
        (3, 7.5)
    );
    assert_eq!(
        window(&p, at(0), "payment_method", "credit_card").await?,
        (10, 100.0),
        "too-late rows left out"
    );
    assert_eq!(window(&p, at(120), "all", "").await?, (5, 5.0));
    assert_eq!(window(&p, at(360), "all", "").await?, (1, 7.0));
    let summarised = p.scalar("SELECT sum(transaction_count)::bigint FROM sluice.analytics_summaries WHERE dimension = 'all'").await?;
    assert_eq!(summarised, 19);

    let quality: (i64, i64, i64, i64, i64, i64) = sqlx::query_as(
        "SELECT sum(received_count)::bigint, sum(accepted_count)::bigint, sum(null_count)::bigint,
                sum(invalid_count)::bigint, sum(duplicate_count)::bigint, sum(late_count)::bigint
         FROM sluice.quality_summaries",
    )
    .fetch_one(&p.pool)
    .await?;
    assert_eq!(
        quality,
        (27, 22, 2, 1, 2, 3),
        "(received, accepted, null, invalid, duplicate, late)"
    );
    let rates_add_up: bool = sqlx::query_scalar(
        "SELECT bool_and(abs(null_rate + invalid_rate + duplicate_rate + quality_score - 1) < 1e-9)
         FROM sluice.quality_rates",
    )
    .fetch_one(&p.pool)
    .await?;
    assert!(
        rates_add_up,
        "per-minute rates of null, invalid, duplicate and accepted add up to 1"
    );
    Ok(())
}
