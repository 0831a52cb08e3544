//! Kill -9 the worker at random moments while a stream is produced; after restarts every
//! valid id is stored exactly once and every rejected record is recorded exactly once.

use rand::{Rng, SeedableRng};
use sluice_e2e::{Pipeline, seed};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_minus_nine_loses_and_repeats_nothing() -> anyhow::Result<()> {
    let p = Pipeline::new("exactly_once", 6).await?;
    let producer = {
        let spec = p.load(120_000, 8_000, 7);
        let p2 = p.clone();
        tokio::spawn(async move { p2.produce(spec).await })
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed("exactly_once"));
    for round in 0..5 {
        let mut w = p.worker().env("SLUICE_BATCH__MAX_RECORDS", 2000).spawn()?;
        tokio::time::sleep(Duration::from_millis(rng.random_range(2_000..5_000))).await;
        eprintln!("round {round}: kill -9 after {} rows", p.handled().await?);
        w.kill9();
    }
    let summary = producer.await??;
    let _w = p.worker().spawn()?;
    p.assert_all_landed_once(&summary, Duration::from_secs(120))
        .await?;
    let dup = p
        .scalar("SELECT count(*) FROM sluice.rejected_transactions WHERE reason = 'duplicate'")
        .await?;
    assert_eq!(dup as u64, summary.duplicates);
    // The analytics summary counts each stored row once, whatever the replays.
    let counted = p.scalar("SELECT sum(transaction_count)::bigint FROM sluice.analytics_summaries WHERE dimension = 'all'").await?;
    assert_eq!(counted as usize, summary.valid_ids.len());
    // Every window and dimension equals what the stored rows say (no event here is late).
    let differing = p
        .scalar(
            "WITH truth AS (
                SELECT date_trunc('minute', event_time) AS m, d.dimension, d.value,
                       count(*) AS n, sum(amount) AS total, count(*) FILTER (WHERE is_fraud) AS fraud
                FROM sluice.transactions t,
                     LATERAL (VALUES ('all', ''), ('merchant_category', coalesce(t.merchant_category, 'unknown')),
                                     ('payment_method', t.payment_method)) AS d(dimension, value)
                GROUP BY 1, 2, 3),
             summarised AS (
                SELECT period_start, dimension, dimension_value, transaction_count, total_amount, fraud_count
                FROM sluice.analytics_summaries)
             SELECT count(*) FROM ((TABLE truth EXCEPT TABLE summarised) UNION ALL (TABLE summarised EXCEPT TABLE truth)) x",
        )
        .await?;
    assert_eq!(
        differing, 0,
        "analytics_summaries rows that differ from the stored transactions"
    );
    // Data quality counts every record once too.
    let quality: (i64, i64, i64, i64, i64) = sqlx::query_as(
        "SELECT sum(received_count)::bigint, sum(accepted_count)::bigint, sum(null_count + invalid_count)::bigint,
                sum(duplicate_count)::bigint, sum(late_count)::bigint FROM sluice.quality_summaries",
    )
    .fetch_one(&p.pool)
    .await?;
    let valid = summary.valid_ids.len() as i64;
    let expected = (
        summary.produced as i64,
        valid,
        summary.invalid as i64,
        summary.duplicates as i64,
        0,
    );
    assert_eq!(
        quality, expected,
        "quality_summaries (received, accepted, null+invalid, duplicate, late)"
    );
    Ok(())
}
