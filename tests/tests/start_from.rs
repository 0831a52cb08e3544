//! Where a new pipeline starts reading (`kafka.start_from`): `latest` skips what the topic
//! already held, a timestamp skips what came before it, and neither ever moves a partition
//! that has a stored offset. The start position is chosen once per partition and stored, so
//! a worker that takes over a `latest` partition before any record arrived does not skip
//! what was produced in between; a partition added to the topic later starts at its
//! beginning.

use chrono::{DateTime, SubsecRound, Utc};
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use sluice_e2e::{Pipeline, Summary, Worker, wait_for};
use std::time::Duration;

const PARTITIONS: i32 = 4;
const EVENTS: u64 = 2_000;
const TIMEOUT: Duration = Duration::from_secs(60);

/// Produce `count` events whose ids are tagged `tag` (distinct from every other batch).
async fn produce(p: &Pipeline, tag: &str, count: u64, seed: u64) -> anyhow::Result<Summary> {
    let mut spec = p.load(count, 0, seed);
    spec.generator.id_prefix = format!("{}-{tag}", p.name);
    p.produce(spec).await
}

/// A worker of `p` told to start from `latest`.
fn latest_worker(p: &Pipeline) -> anyhow::Result<Worker> {
    p.worker().env("SLUICE_KAFKA__START_FROM", "latest").spawn()
}

/// A new `latest` pipeline over `EVENTS` records produced beforehand (tag `before`): returns
/// its first worker once every partition has a stored offset, that is once it has chosen
/// where each starts.
async fn started_at_latest(name: &str, seed: u64) -> anyhow::Result<(Pipeline, Worker)> {
    let p = Pipeline::new(name, PARTITIONS).await?;
    produce(&p, "before", EVENTS, seed).await?;
    let first = latest_worker(&p)?;
    wait_started(&p).await?;
    Ok((p, first))
}

/// Wait until every partition has a stored offset: a worker has chosen where each starts.
async fn wait_started(p: &Pipeline) -> anyhow::Result<()> {
    wait_for(
        "a stored start offset for every partition",
        TIMEOUT,
        || async {
            let started: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM sluice.consumer_offsets WHERE next_offset IS NOT NULL",
            )
            .fetch_one(&p.pool)
            .await
            .unwrap_or(0); // the schema may not exist yet
            started == i64::from(PARTITIONS)
        },
    )
    .await
}

/// Whether Kafka's copy of the group's offsets (what lag tools and the operator read) is at
/// the end of every partition.
fn kafka_copy_at_end(p: &Pipeline) -> anyhow::Result<bool> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &p.brokers)
        .set("group.id", format!("g-{}", p.name))
        .create()?;
    let timeout = Duration::from_secs(5);
    let mut tpl = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        tpl.add_partition(&p.topic, partition);
    }
    for e in consumer.committed_offsets(tpl, timeout)?.elements() {
        let (_, end) = consumer.fetch_watermarks(&p.topic, e.partition(), timeout)?;
        if e.offset() != Offset::Offset(end) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Both batches, as one summary.
fn both(a: &Summary, b: &Summary) -> Summary {
    Summary {
        produced: a.produced + b.produced,
        valid: a.valid + b.valid,
        invalid: a.invalid + b.invalid,
        duplicates: a.duplicates + b.duplicates,
        valid_ids: a.valid_ids.iter().chain(&b.valid_ids).cloned().collect(),
        ..Summary::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_skips_what_was_there_and_is_chosen_once() -> anyhow::Result<()> {
    let (p, mut first) = started_at_latest("start_latest", 1).await?;
    // Mirrored to Kafka, so lag readers do not count the skipped backlog as lag.
    wait_for("the start offsets mirrored to Kafka", TIMEOUT, || async {
        let p = p.clone();
        tokio::task::spawn_blocking(move || kafka_copy_at_end(&p)).await?
    })
    .await?;
    // The first owner leaves before any record arrives; records produced while no worker
    // runs must still land: the next owner resumes at the stored start, not at a new end.
    first.terminate()?;
    let after = produce(&p, "after", EVENTS, 2).await?;
    let _second = latest_worker(&p)?;
    // Exactly the later batch: nothing of the earlier one, stored or rejected.
    p.assert_all_landed_once(&after, TIMEOUT).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timestamp_skips_what_came_before_it() -> anyhow::Result<()> {
    let p = Pipeline::new("start_time", PARTITIONS).await?;
    produce(&p, "before", EVENTS, 3).await?;
    // Kafka timestamps are milliseconds: start at the next one, and produce once it passed.
    let start: DateTime<Utc> = Utc::now().trunc_subsecs(3) + chrono::Duration::milliseconds(1);
    wait_for("the clock to pass the start time", TIMEOUT, || async {
        Utc::now() > start
    })
    .await?;
    let after = produce(&p, "after", EVENTS, 4).await?;
    let _worker = p
        .worker()
        .env(
            "SLUICE_KAFKA__START_FROM",
            start.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        )
        .spawn()?;
    p.assert_all_landed_once(&after, TIMEOUT).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_offsets_win_over_a_changed_start() -> anyhow::Result<()> {
    let p = Pipeline::new("start_stored", PARTITIONS).await?;
    let first = produce(&p, "first", EVENTS, 5).await?;
    let mut worker = p.worker().spawn()?; // the default: earliest
    p.assert_all_landed_once(&first, TIMEOUT).await?;
    worker.terminate()?;
    // Produced while no worker runs, then the config says `latest`: the stored offsets
    // still rule, so nothing is skipped.
    let second = produce(&p, "second", EVENTS, 6).await?;
    let _worker = latest_worker(&p)?;
    p.assert_all_landed_once(&both(&first, &second), TIMEOUT)
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_added_later_start_at_their_beginning() -> anyhow::Result<()> {
    let (p, mut first) = started_at_latest("start_grown", 7).await?;
    first.terminate()?;
    // The topic grows while no worker runs; records go to old and new partitions alike.
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &p.brokers)
        .create()?;
    let grow = NewPartitions::new(&p.topic, PARTITIONS as usize * 2);
    for r in admin
        .create_partitions([&grow], &AdminOptions::new())
        .await?
    {
        r.map_err(|(t, e)| anyhow::anyhow!("adding partitions to {t}: {e}"))?;
    }
    let after = produce(&p, "after", EVENTS, 8).await?;
    let _second = latest_worker(&p)?;
    // The new partitions were not there when the pipeline started: nothing of them skipped.
    p.assert_all_landed_once(&after, TIMEOUT).await?;
    Ok(())
}
