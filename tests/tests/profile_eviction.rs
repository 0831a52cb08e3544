//! A worker with room for few customer profiles evicts idle ones, and reads them back from
//! Postgres when they return: the returning customer is scored exactly as by a worker that
//! never evicted it, and unlike a customer with no history.

use chrono::{Duration as Span, Utc};
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;
use sluice_e2e::Pipeline;
use std::time::Duration;

const OTHERS: usize = 3_000;

/// The returning customer's history, a crowd that pushes it out of memory, then its return.
async fn produce(p: &Pipeline, with_history: bool) -> anyhow::Result<i64> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &p.brokers)
        .set("enable.idempotence", "true")
        .create()?;
    let now = Utc::now();
    let event = |id: String, customer: &str, at: chrono::DateTime<Utc>, amount: f64| {
        json!({
            "transaction_id": id, "customer_id": customer, "merchant_id": "m-grocer", "merchant_category": "grocery",
            "amount": amount, "currency": "EUR", "timestamp": at.to_rfc3339(), "payment_method": "credit_card",
            "country": "DE", "device_id": format!("dev-{customer}"), "card_fingerprint": format!("card-{customer}"),
            "latitude": 52.52, "longitude": 13.40, "account_age_days": 900
        })
    };
    // Back with a device, card and country never seen before, spending far more: against
    // its history this looks like an account takeover; without history it does not.
    let mut back = event("return".into(), "habitual", now - Span::hours(2), 950.0);
    back["device_id"] = json!("dev-unknown");
    back["card_fingerprint"] = json!("card-unknown");
    back["country"] = json!("BR");
    back["merchant_id"] = json!("m-electronics");
    back["merchant_category"] = json!("electronics");
    back["latitude"] = json!(-23.55);
    back["longitude"] = json!(-46.63);
    let mut events = Vec::new();
    if with_history {
        for day in 0..12 {
            events.push(event(
                format!("h-{day}"),
                "habitual",
                now - Span::days(20 - day) + Span::hours(9),
                42.0,
            ));
        }
    }
    for i in 0..OTHERS {
        events.push(event(
            format!("o-{i}"),
            &format!("other-{i}"),
            now - Span::hours(30),
            20.0,
        ));
    }
    events.push(back);
    // Queued in order on one partition by one idempotent producer, so they stay in order.
    let mut deliveries = Vec::new();
    for e in &events {
        let payload = e.to_string();
        let record = FutureRecord::to(&p.topic).key("k").payload(&payload);
        deliveries.push(producer.send_result(record).map_err(|(e, _)| e)?);
    }
    for d in deliveries {
        d.await?.map_err(|(e, _)| e)?;
    }
    Ok(events.len() as i64)
}

async fn returning_score(p: &Pipeline) -> anyhow::Result<f64> {
    Ok(sqlx::query_scalar(
        "SELECT fraud_score FROM sluice.transactions WHERE transaction_id = 'return'",
    )
    .fetch_one(&p.pool)
    .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evicted_customers_are_reloaded_before_they_are_scored() -> anyhow::Result<()> {
    let small = Pipeline::new("eviction_small", 1).await?;
    let roomy = Pipeline::new("eviction_roomy", 1).await?;
    let cold = Pipeline::new("eviction_cold", 1).await?;
    let n = produce(&small, true).await?;
    produce(&roomy, true).await?;
    let n_cold = produce(&cold, false).await?;

    // Small batches, so the returning customer's profile has long been committed and left
    // memory when it comes back.
    let w = small
        .worker()
        .env("SLUICE_FRAUD__PROFILE_CAPACITY", 500)
        .env("SLUICE_BATCH__MAX_RECORDS", 200)
        .spawn()?;
    let _roomy = roomy
        .worker()
        .env("SLUICE_BATCH__MAX_RECORDS", 200)
        .spawn()?;
    let _cold = cold
        .worker()
        .env("SLUICE_BATCH__MAX_RECORDS", 200)
        .spawn()?;
    small.wait_handled(n, Duration::from_secs(60)).await?;
    roomy.wait_handled(n, Duration::from_secs(60)).await?;
    cold.wait_handled(n_cold, Duration::from_secs(60)).await?;

    let metrics = w.metrics().await?;
    let reloaded: f64 = metrics
        .lines()
        .find(|l| l.starts_with("sluice_profiles_reloaded_total{"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0);
    assert!(
        reloaded >= 1.0,
        "the returning customer was read back from Postgres:\n{metrics}"
    );

    let (small_score, roomy_score, cold_score) = (
        returning_score(&small).await?,
        returning_score(&roomy).await?,
        returning_score(&cold).await?,
    );
    assert!(
        (small_score - roomy_score).abs() < 1e-9,
        "evicted and reloaded {small_score} vs never evicted {roomy_score}"
    );
    assert!(
        small_score > cold_score + 0.1,
        "history matters here: {small_score} vs no history {cold_score}"
    );
    Ok(())
}
