//! Repeats this worker never scored: a stream is stored, the worker stops, and the same
//! records are sent again (a producer replaying old events) before new ones. A fresh worker
//! scores each repeat as new, so the sink's COPY of the ids it takes for new hits stored ids;
//! it must fall back to the checked INSERT, reject every repeat as a duplicate once, and
//! store every new record once. The worker's debug log shows that the fall-back ran. The
//! alerts, stored by COPY as well, must be exactly the flagged rows.

use sluice_e2e::Pipeline;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeats_of_ids_stored_before_are_duplicates_even_when_scored_as_new() -> anyhow::Result<()>
{
    let p = Pipeline::new("stale_repeats", 2).await?;
    let first = p.produce(p.load(3_000, 0, 31)).await?;
    let mut w = p.worker().spawn()?;
    p.assert_all_landed_once(&first, Duration::from_secs(60))
        .await?;
    w.terminate()?;

    // The same seed sends the very same records again, then new ones follow.
    let again = p.produce(p.load(3_000, 0, 31)).await?;
    let new = p.produce(p.load(3_000, 0, 32)).await?;
    let w = p
        .worker()
        .env("RUST_LOG", "info,sluice_worker::sink=debug")
        .spawn()?;
    let produced = first.produced + again.produced + new.produced;
    p.wait_handled(produced as i64, Duration::from_secs(60))
        .await?;
    tokio::time::sleep(Duration::from_millis(500)).await; // a straggler would show up now

    let mut valid = first.valid_ids.clone();
    valid.extend(new.valid_ids.iter().cloned());
    p.assert_exactly_once(&valid).await?;
    let duplicates = p
        .scalar("SELECT count(*) FROM sluice.rejected_transactions WHERE reason = 'duplicate'")
        .await?;
    let expected =
        first.duplicates + again.duplicates + again.valid_ids.len() as u64 + new.duplicates;
    assert_eq!(duplicates as u64, expected, "duplicates recorded");
    let counted = p
        .scalar("SELECT sum(transaction_count)::bigint FROM sluice.analytics_summaries WHERE dimension = 'all'")
        .await?;
    assert_eq!(
        counted as usize,
        valid.len(),
        "rows counted in the summaries"
    );
    let alerts_of_unknown_rows = p
        .scalar(
            "SELECT count(*) FROM sluice.fraud_alerts a
             WHERE NOT EXISTS (SELECT 1 FROM sluice.transactions t WHERE t.transaction_id = a.transaction_id)",
        )
        .await?;
    assert_eq!(alerts_of_unknown_rows, 0);
    // The alerts (stored by COPY) are exactly the flagged rows, with their scores and rules.
    let flagged = p
        .scalar("SELECT count(*) FROM sluice.transactions WHERE is_fraud")
        .await?;
    let alerts = p.scalar("SELECT count(*) FROM sluice.fraud_alerts").await?;
    assert!(alerts > 0, "no alerts to check");
    assert_eq!(alerts, flagged, "alerts against flagged rows");
    let differing = p
        .scalar(
            "SELECT count(*) FROM sluice.fraud_alerts a JOIN sluice.transactions t USING (transaction_id)
             WHERE NOT t.is_fraud OR a.score <> t.fraud_score OR a.customer_id <> t.customer_id
                OR a.event_time <> t.event_time",
        )
        .await?;
    assert_eq!(differing, 0, "alerts that differ from their rows");
    let odd_reasons = p
        .scalar(
            "SELECT count(*) FROM sluice.fraud_alerts, unnest(reasons) r WHERE r !~ '^[a-z0-9_]+$'",
        )
        .await?;
    assert_eq!(odd_reasons, 0, "reasons that are not rule names");
    let with_reasons = p
        .scalar("SELECT count(*) FROM sluice.fraud_alerts WHERE cardinality(reasons) > 0")
        .await?;
    assert!(with_reasons > 0, "no alert has its rules");
    assert!(
        w.log()
            .contains("was stored already; claiming the batch by INSERT"),
        "the COPY of ids never fell back:\n{}",
        w.log()
    );
    Ok(())
}
