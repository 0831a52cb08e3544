//! `postgres.sink_lanes`: a batch split over disjoint partitions into concurrent
//! transactions. Killed (-9) at random moments while lanes commit independently, two workers
//! with three lanes each still store every valid id once, record every rejection once, and
//! count each row once in the per-minute summaries that every lane adds to.

use rand::{Rng, SeedableRng};
use sluice_e2e::{Pipeline, seed};
use std::time::Duration;

fn with_lanes(p: &Pipeline) -> sluice_e2e::WorkerBuilder<'_> {
    p.worker()
        .env("SLUICE_POSTGRES__SINK_LANES", 3)
        .env("SLUICE_POSTGRES__MAX_CONNECTIONS", 5)
        .env("SLUICE_BATCH__MAX_RECORDS", 1_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lanes_killed_mid_batch_lose_and_repeat_nothing() -> anyhow::Result<()> {
    let p = Pipeline::new("sink_lanes", 6).await?;
    let producer = {
        let spec = p.load(80_000, 8_000, 13);
        let p2 = p.clone();
        tokio::spawn(async move { p2.produce(spec).await })
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed("sink_lanes"));
    let steady = with_lanes(&p).spawn()?;
    for round in 0..4 {
        let mut w = with_lanes(&p).spawn()?;
        tokio::time::sleep(Duration::from_millis(rng.random_range(2_000..4_000))).await;
        eprintln!("round {round}: kill -9 after {} rows", p.handled().await?);
        w.kill9();
    }
    let summary = producer.await??;
    p.assert_all_landed_once(&summary, Duration::from_secs(120))
        .await?;
    let counted = p
        .scalar("SELECT sum(transaction_count)::bigint FROM sluice.analytics_summaries WHERE dimension = 'all'")
        .await?;
    assert_eq!(counted as usize, summary.valid_ids.len());
    let received = p
        .scalar("SELECT sum(received_count)::bigint FROM sluice.quality_summaries")
        .await?;
    assert_eq!(received as u64, summary.produced);
    assert!(
        steady.log().contains(r#""lanes":3"#),
        "the workers ran three lanes:\n{}",
        steady.log()
    );
    Ok(())
}
