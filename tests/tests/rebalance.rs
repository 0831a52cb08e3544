//! Two workers in one consumer group while partitions move between them (a second worker
//! joins, one leaves cleanly, one is killed, one rejoins): every valid id exactly once.

use sluice_e2e::Pipeline;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_moving_between_workers_keep_exactly_once() -> anyhow::Result<()> {
    let p = Pipeline::new("rebalance", 8).await?;
    let producer = {
        let (p2, spec) = (p.clone(), p.load(100_000, 6_000, 11));
        tokio::spawn(async move { p2.produce(spec).await })
    };
    let mut a = p.worker().spawn()?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut b = p.worker().spawn()?; // partitions split between a and b
    tokio::time::sleep(Duration::from_secs(4)).await;
    a.terminate()?; // clean leave: a's partitions move to b
    tokio::time::sleep(Duration::from_secs(3)).await;
    let a2 = p.worker().spawn()?; // rejoin: partitions move back
    tokio::time::sleep(Duration::from_secs(4)).await;
    b.kill9(); // b's partitions move to a2 after the session timeout
    let summary = producer.await??;
    p.wait_handled(summary.produced as i64, Duration::from_secs(120))
        .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    p.assert_exactly_once(&summary.valid_ids).await?;
    let rejected = p
        .scalar("SELECT count(*) FROM sluice.rejected_transactions")
        .await?;
    assert_eq!(rejected as u64, summary.invalid + summary.duplicates);
    assert!(
        a2.log().contains("partitions assigned"),
        "the rejoined worker took partitions"
    );
    Ok(())
}
