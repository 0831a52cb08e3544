//! Customer profiles are written on a cadence, not with every batch; a worker killed (-9)
//! between two checkpoints leaves the records since the last one to be replayed into the
//! profiles by its successor. Two workers read the same stream into two databases: one runs
//! undisturbed, the other is killed mid-stream and replaced. Every stored fraud score and,
//! after both stop, every persisted profile is identical: the replay rebuilt exactly the
//! state that was lost, no record counted twice or missed.

use sluice_e2e::{EventClock, Pipeline};
use std::collections::HashMap;
use std::time::Duration;

const EVENTS: u64 = 60_000;
const RATE: u64 = 8_000;
/// Checkpoints this far apart, so the kill falls between two of them.
const CHECKPOINT_MS: u64 = 2_000;

fn with_cadence(p: &Pipeline) -> sluice_e2e::WorkerBuilder<'_> {
    p.worker()
        .env("SLUICE_FRAUD__PROFILE_CHECKPOINT_MS", CHECKPOINT_MS)
        .env("SLUICE_BATCH__MAX_RECORDS", 500)
}

async fn scores(p: &Pipeline) -> anyhow::Result<HashMap<String, Option<f64>>> {
    Ok(
        sqlx::query_as("SELECT transaction_id, fraud_score FROM sluice.transactions")
            .fetch_all(&p.pool)
            .await?
            .into_iter()
            .collect(),
    )
}

async fn profiles(p: &Pipeline) -> anyhow::Result<HashMap<String, Vec<u8>>> {
    Ok(
        sqlx::query_as("SELECT customer_id, profile FROM sluice.customer_profiles")
            .fetch_all(&p.pool)
            .await?
            .into_iter()
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_checkpoints_is_replayed_into_the_profiles() -> anyhow::Result<()> {
    let reference = Pipeline::new("replay_reference", 4).await?;
    // Its own database and consumer group, on the reference's topic.
    let mut crashed = Pipeline::new("replay_crashed", 4).await?;
    crashed.topic = reference.topic.clone();

    let mut spec = reference.load(EVENTS, RATE, 31);
    spec.generator.event_clock = EventClock::Simulated;
    // No repeated ids: a repeat whose first copy a worker scored before a restart folds into
    // its successor's profile again (it remembers only the ids it scored itself), a
    // difference from the undisturbed run that has nothing to do with the replay.
    spec.generator.duplicate_ratio = 0.0;
    let producer = {
        let p = reference.clone();
        tokio::spawn(async move { p.produce(spec).await })
    };
    let mut undisturbed = with_cadence(&reference).spawn()?;
    let mut first = with_cadence(&crashed).spawn()?;
    crashed
        .wait_handled(EVENTS as i64 / 2, Duration::from_secs(60))
        .await?;
    // Not right after a checkpoint: some records since the last one are in no profile yet.
    tokio::time::sleep(Duration::from_millis(CHECKPOINT_MS / 2)).await;
    first.kill9();
    let mut second = with_cadence(&crashed).spawn()?;

    let summary = producer.await??;
    reference
        .assert_all_landed_once(&summary, Duration::from_secs(120))
        .await?;
    crashed
        .assert_all_landed_once(&summary, Duration::from_secs(120))
        .await?;
    let replayed = second.metric("sluice_profiles_replayed_total", &[]).await?;
    assert!(
        replayed > 0.0,
        "the successor replayed records into the profiles:\n{}",
        second.log()
    );

    let (want, got) = (scores(&reference).await?, scores(&crashed).await?);
    assert_eq!(want.len(), got.len());
    let differing: Vec<_> = want
        .iter()
        .filter(|(id, score)| got.get(*id) != Some(score))
        .take(5)
        .collect();
    assert!(
        differing.is_empty(),
        "scores differ from the undisturbed run after {replayed} records were replayed, e.g. {differing:?}"
    );

    // Shutting down checkpoints what is left: both databases hold the same profiles.
    undisturbed.terminate()?;
    second.terminate()?;
    let (want, got) = (profiles(&reference).await?, profiles(&crashed).await?);
    assert!(want.len() > 1_000, "{} profiles", want.len());
    let differing = want.iter().filter(|(c, p)| got.get(*c) != Some(p)).count();
    assert_eq!(
        (differing, want.len()),
        (0, got.len()),
        "profiles that differ from the undisturbed run's"
    );
    let offsets: i64 = crashed
        .scalar("SELECT count(*) FROM sluice.consumer_offsets WHERE profiles_offset IS DISTINCT FROM next_offset")
        .await?;
    assert_eq!(
        offsets, 0,
        "after a clean stop the profiles are current to the stored offsets"
    );
    Ok(())
}
