//! Detection quality survives partitions moving between workers mid-stream. One labeled
//! stream on the simulated event clock (customers keep their daily pace, so the model sees
//! the traffic it was fitted on) runs twice, each on its own topic and database: once through
//! a single worker (the reference), once while a second worker joins and the first is then
//! killed (-9). Precision and recall of the stored verdicts agree within 2 points, both runs
//! catch fraud, and every row is stored exactly once.

use sluice_e2e::{EventClock, LoadSpec, Pipeline, Summary, wait_for};
use sluice_loadgen::pipeline_eval::{PipelineReport, evaluate, read_labels};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const EVENTS: u64 = 200_000;
const CUSTOMERS: usize = 5_000;
/// The first labels build customer history (about 12 events per customer) and are not counted.
const WARMUP: usize = 60_000;
const SEED: u64 = 21;
/// Events per second of the moved run: the stream lasts ~25 s, long enough to move twice.
const MOVED_RATE: u64 = 8_000;
const PARTITIONS: u32 = 8;
/// Long enough for a rebalance after a session timeout (6 s in the harness) plus a batch.
const MOVE: Duration = Duration::from_secs(60);

fn labeled(p: &Pipeline, rate: u64) -> (LoadSpec, PathBuf) {
    let labels = std::env::temp_dir().join(format!("{}-labels.jsonl", p.name));
    let mut spec = p.load(EVENTS, rate, SEED);
    spec.generator.customers = CUSTOMERS;
    spec.generator.event_clock = EventClock::Simulated;
    spec.labels = Some(labels.clone());
    (spec, labels)
}

async fn finish(
    p: &Pipeline,
    summary: &Summary,
    labels: &PathBuf,
) -> anyhow::Result<PipelineReport> {
    p.assert_all_landed_once(summary, Duration::from_secs(120))
        .await?;
    let report = evaluate(
        &p.pool,
        "sluice",
        &read_labels(labels)?,
        WARMUP,
        &Default::default(),
    )
    .await?;
    let _ = std::fs::remove_file(labels);
    assert!(
        report.complete(),
        "labels and stored rows differ: {:?}",
        report.counts
    );
    Ok(report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fraud_quality_holds_while_partitions_move() -> anyhow::Result<()> {
    let started = Instant::now();

    // Reference: one worker, the whole stream, no move.
    let r = Pipeline::new("fraud_move_ref", PARTITIONS as i32).await?;
    let reference = {
        let _w = r.worker().spawn()?;
        let (spec, labels) = labeled(&r, 0);
        let summary = r.produce(spec).await?;
        finish(&r, &summary, &labels).await?
    };
    eprintln!(
        "reference (one worker), {:.0} s:\n{}",
        started.elapsed().as_secs_f64(),
        reference.render()
    );

    // Moved: a second worker joins after the warm-up, later the first is killed.
    let p = Pipeline::new("fraud_move", PARTITIONS as i32).await?;
    let (spec, labels) = labeled(&p, MOVED_RATE);
    let producer = {
        let p2 = p.clone();
        tokio::spawn(async move { p2.produce(spec).await })
    };
    let mut a = p.worker().spawn()?;
    wait_for("the warm-up stored by one worker", MOVE, || async {
        anyhow::Ok(
            a.partitions_assigned().await? == PARTITIONS && p.handled().await? >= WARMUP as i64,
        )
    })
    .await?;
    let b = p.worker().spawn()?; // cooperative rebalance: some of a's partitions move to b
    let (a_held, b_held) = wait_for("b to take partitions and store rows", MOVE, || async {
        let (a_held, b_held) = (
            a.partitions_assigned().await?,
            b.partitions_assigned().await?,
        );
        let b_stored = b.metric("sluice_transactions_total", &[]).await?;
        let moved = b_held > 0 && a_held + b_held == PARTITIONS && b_stored > 0.0;
        anyhow::Ok(moved.then_some((a_held, b_held)))
    })
    .await?;
    eprintln!("after the join: a holds {a_held}, b holds {b_held} partitions");
    a.kill9(); // a's partitions move to b after the session timeout; b warms their customers
    let summary = producer.await??;
    let moved = finish(&p, &summary, &labels).await?;
    eprintln!(
        "moved (join, then kill -9), {:.0} s:\n{}",
        started.elapsed().as_secs_f64(),
        moved.render()
    );
    assert_eq!(
        b.partitions_assigned().await?,
        PARTITIONS,
        "the second worker took partitions (all of them once the first was gone)"
    );
    assert!(
        a_held < PARTITIONS,
        "the first worker gave partitions up when the second joined"
    );

    for (name, m) in [("reference", &reference.overall), ("moved", &moved.overall)] {
        assert!(
            m.positives >= 500 && m.true_positives > 0,
            "{name}: too little fraud to compare: {m:?}"
        );
        assert!(
            m.recall > 0.8 && m.precision > 0.5,
            "{name}: the pipeline barely detects fraud: {m:?}"
        );
    }
    let (dp, dr) = (
        moved.overall.precision - reference.overall.precision,
        moved.overall.recall - reference.overall.recall,
    );
    eprintln!("moved - reference: precision {dp:+.4}, recall {dr:+.4}");
    assert!(
        dp.abs() <= 0.02,
        "precision moved {dp:+.4} (reference {:?}, moved {:?})",
        reference.overall,
        moved.overall
    );
    assert!(
        dr.abs() <= 0.02,
        "recall moved {dr:+.4} (reference {:?}, moved {:?})",
        reference.overall,
        moved.overall
    );
    Ok(())
}
