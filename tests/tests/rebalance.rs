//! Two workers in one consumer group while partitions move between them (a second worker
//! joins, one leaves cleanly, one is killed, one rejoins): every valid id exactly once.
//! Each step waits for the assignment it causes (`sluice_partitions_assigned` of the workers)
//! and for records to flow, instead of sleeping.

use sluice_e2e::{Pipeline, Worker, wait_for};
use std::time::Duration;

const PARTITIONS: u32 = 8;
const EVENTS: u64 = 100_000;
/// Long enough for a rebalance after a session timeout (6 s in the harness) plus a batch.
const MOVE: Duration = Duration::from_secs(60);

/// Wait until the workers (in order) hold partitions as `want` says, all of them between
/// them, and more records have been handled since (or the stream is done), so each step
/// happens while data flows under the new assignment.
async fn settled(
    p: &Pipeline,
    workers: &[&Worker],
    want: &[fn(u32) -> bool],
) -> anyhow::Result<()> {
    let before = p.handled().await?;
    let (held, handled) = wait_for("the partitions to move", MOVE, || async {
        let mut held = Vec::new();
        for w in workers {
            held.push(w.partitions_assigned().await?);
        }
        let moved = held.iter().zip(want).all(|(n, ok)| ok(*n));
        let handled = p.handled().await?;
        let flowing = handled > before || handled >= EVENTS as i64;
        let done = moved && held.iter().sum::<u32>() == PARTITIONS && flowing;
        anyhow::Ok(done.then_some((held, handled)))
    })
    .await?;
    eprintln!("partitions held {held:?} at {handled} records handled");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_moving_between_workers_keep_exactly_once() -> anyhow::Result<()> {
    let all = |n: u32| n == PARTITIONS;
    let some = |n: u32| n > 0 && n < PARTITIONS;
    let p = Pipeline::new("rebalance", PARTITIONS as i32).await?;
    let producer = {
        let (p2, spec) = (p.clone(), p.load(EVENTS, 6_000, 11));
        tokio::spawn(async move { p2.produce(spec).await })
    };
    let mut a = p.worker().spawn()?;
    settled(&p, &[&a], &[all]).await?;
    let mut b = p.worker().spawn()?; // partitions split between a and b
    settled(&p, &[&a, &b], &[some, some]).await?;
    a.terminate()?; // clean leave: a's partitions move to b
    settled(&p, &[&b], &[all]).await?;
    let a2 = p.worker().spawn()?; // rejoin: partitions move back
    settled(&p, &[&a2, &b], &[some, some]).await?;
    b.kill9(); // b's partitions move to a2 after the session timeout
    let summary = producer.await??;
    p.wait_handled(summary.produced as i64, Duration::from_secs(120))
        .await?;
    tokio::time::sleep(Duration::from_secs(1)).await; // a straggler would show up now
    p.assert_exactly_once(&summary.valid_ids).await?;
    let rejected = p
        .scalar("SELECT count(*) FROM sluice.rejected_transactions")
        .await?;
    assert_eq!(rejected as u64, summary.invalid + summary.duplicates);
    assert_eq!(
        a2.partitions_assigned().await?,
        PARTITIONS,
        "the rejoined worker took partitions (all of them once b was gone)"
    );
    Ok(())
}
