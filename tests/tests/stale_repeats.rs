//! Repeats this worker never scored: a stream is stored, the worker stops, and the same
//! records are sent again (a producer replaying old events) before new ones. A fresh worker
//! scores each repeat as new, so the sink's COPY of the ids it takes for new hits stored ids;
//! it must fall back to the checked INSERT, reject every repeat as a duplicate once, and
//! store every new record once. The worker's debug log shows that the fall-back ran.

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
    assert!(
        w.log()
            .contains("was stored already; claiming the batch by INSERT"),
        "the COPY of ids never fell back:\n{}",
        w.log()
    );
    Ok(())
}
