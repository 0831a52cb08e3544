//! The scaling curve: backlog drain throughput (scoring on) for 1 and 2 workers on the same
//! topic and database, and for one worker over topics of 1, 2, 4, … partitions.
//!
//! Every point gets a fresh topic, a fresh database and consumer group, and a
//! `CHECKPOINT`. Its workers start on the empty topic and the same events (same seed and
//! count) are produced only once their group has settled: a second worker joining a group that is
//! already draining costs a cooperative rebalance of several seconds (two rounds, each
//! waiting for in-flight batches), which on a drain of a few seconds would measure the
//! rebalance, not the workers. Throughput is measured like the main drain (first progress
//! to all handled, the workers' counters summed) and also from the moment the last event
//! was in Kafka, when the producer no longer competes for the CPU.

use super::worker::{cpu_seconds, spawn_worker, stop, wait_assigned, watch_drain};
use super::{Args, create_database, round2};
use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use sluice_harness::{Process, free_port};
use sluice_loadgen::{GeneratorConfig, LoadSpec, ensure_topic, produce};
use sqlx::{Connection, PgConnection, PgPool};
use std::time::{Duration, Instant};

pub struct Point {
    pub partitions: i32,
    pub workers: usize,
    /// (tx/s, seconds) from the first progress to all handled.
    pub drain: (f64, f64),
    /// (tx/s, seconds) from the last event produced to all handled.
    pub after_produced: Option<(f64, f64)>,
    /// Workers started until every one had partitions.
    pub settle_s: f64,
    /// CPU (user + system) of all the point's workers from start to drained.
    pub cpu_s: f64,
}

pub struct Scaling {
    pub events: u64,
    pub points: Vec<Point>,
}

/// Partition counts swept with one worker, then more workers on the most partitions.
fn plan(args: &Args) -> Vec<(i32, usize)> {
    let mut points: Vec<(i32, usize)> = args.scaling_partitions.iter().map(|&p| (p, 1)).collect();
    let most = args.scaling_partitions.iter().copied().max().unwrap_or(1);
    points.extend(
        args.scaling_workers
            .iter()
            .filter(|&&w| w != 1)
            .map(|&w| (most, w)),
    );
    points
}

pub async fn scaling(args: &Args, template: &LoadSpec, run: &str) -> Result<Scaling> {
    let points = plan(args);
    eprintln!(
        "== 6/6 scaling: {} events per drain, {} drains (partitions, workers): {points:?}",
        args.scaling_events,
        points.len()
    );
    let mut admin = PgConnection::connect(&args.database_url).await?;
    let mut out = Vec::new();
    for (partitions, workers) in points {
        let name = format!("{run}_scale_p{partitions}_w{workers}");
        let topic = name.replace('_', "-");
        ensure_topic(&args.brokers, &topic, partitions).await?;
        create_database(&mut admin, &name).await?;
        sqlx::raw_sql("CHECKPOINT").execute(&mut admin).await?;
        let db_url = args.database_url_of(&name);
        let group = [("SLUICE_KAFKA__GROUP_ID", format!("{name}-group"))];
        let mut ports: Vec<u16> = Vec::new();
        while ports.len() < workers {
            let port = free_port()?;
            if !ports.contains(&port) {
                ports.push(port);
            }
        }
        let mut procs: Vec<Process> = Vec::new();
        for (i, &port) in ports.iter().enumerate() {
            let log = format!("worker-scale-p{partitions}-w{workers}-{i}.log");
            procs.push(spawn_worker(args, &db_url, &topic, port, &log, &group)?);
        }
        let result = drain_point(args, template, &topic, &ports, partitions, &mut procs).await;
        let cpu_s: f64 = procs.iter().map(|w| cpu_seconds(w.id())).sum();
        procs.iter_mut().for_each(stop);
        let (drain, after_produced, settle_s, valid) = result?;
        let pool = PgPool::connect(&db_url).await?;
        let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM sluice.transactions")
            .fetch_one(&pool)
            .await?;
        pool.close().await;
        ensure!(
            stored as u64 == valid,
            "{partitions} partitions, {workers} workers: stored {stored} rows, expected {valid}"
        );
        eprintln!(
            "   {partitions} partitions, {workers} worker(s): {:.0} tx/s ({:.1}s); after the last event was produced {}; worker cpu {cpu_s:.1}s; group settled in {settle_s:.1}s",
            drain.0,
            drain.1,
            after_produced.map_or("-".into(), |(tps, s)| format!("{tps:.0} tx/s ({s:.1}s)")),
        );
        out.push(Point {
            partitions,
            workers,
            drain,
            after_produced,
            settle_s,
            cpu_s,
        });
    }
    Ok(Scaling {
        events: args.scaling_events,
        points: out,
    })
}

/// Measurement = (drain, after produced, settle seconds, valid events)
type Measured = ((f64, f64), Option<(f64, f64)>, f64, u64);

/// Wait for the group, then produce the events and watch the workers drain them.
async fn drain_point(
    args: &Args,
    template: &LoadSpec,
    topic: &str,
    ports: &[u16],
    partitions: i32,
    procs: &mut [Process],
) -> Result<Measured> {
    let settle_s = wait_assigned(ports, partitions, procs).await?;
    let spec = LoadSpec {
        topic: topic.to_string(),
        count: Some(args.scaling_events),
        progress: false,
        generator: GeneratorConfig {
            seed: 42,
            id_prefix: "scaling".into(),
            ..template.generator.clone()
        },
        ..template.clone()
    };
    let watch_started = Instant::now();
    let producing = tokio::task::spawn_blocking(move || {
        produce(&spec).map(|summary| (summary, Instant::now()))
    });
    // A failed producer ends the point at once instead of leaving the drain to time out.
    let (drained, (summary, produced_at)) = tokio::try_join!(
        watch_drain(
            ports,
            args.scaling_events,
            procs,
            Duration::from_millis(100)
        ),
        async { producing.await? },
    )?;
    let drain = drained.throughput().context("no worker made progress")?;
    let after_produced = drained.throughput_after((produced_at - watch_started).as_secs_f64());
    Ok((drain, after_produced, settle_s, summary.valid))
}

impl Scaling {
    fn cpu_s_per_1k(&self, p: &Point) -> f64 {
        p.cpu_s * 1000.0 / self.events as f64
    }

    pub fn to_json(&self) -> Value {
        json!({
            "events_per_drain": self.events,
            "points": self.points.iter().map(|p| json!({
                "partitions": p.partitions,
                "workers": p.workers,
                "throughput_tps": p.drain.0.round(),
                "duration_s": round2(p.drain.1),
                "after_produced_tps": p.after_produced.map(|a| a.0.round()),
                "after_produced_s": p.after_produced.map(|a| round2(a.1)),
                "worker_cpu_s": round2(p.cpu_s),
                "worker_cpu_s_per_1k_events": (self.cpu_s_per_1k(p) * 10_000.0).round() / 10_000.0,
                "group_settled_s": round2(p.settle_s),
            })).collect::<Vec<_>>(),
            "measured_as": "backlog drain with scoring on; per point a fresh topic, database and consumer group, CHECKPOINT before; the workers start on the empty topic and the events are produced at full speed once every worker has partitions (group_settled_s), so no start-up rebalance is measured. throughput = records handled (all workers summed) from the first progress sample to all handled / that span, the producer still running in its first part; after_produced = the same from the last event produced (the producer no longer competing for CPU); worker_cpu_s = user+system CPU of the point's workers from start to drained (/proc)",
        })
    }

    pub fn print(&self) {
        eprintln!("   partitions  workers     tx/s  after produced  worker cpu s/1k events");
        for p in &self.points {
            let after = p
                .after_produced
                .map_or("-".into(), |a| format!("{:.0}", a.0));
            eprintln!(
                "   {:>10}  {:>7}  {:>7.0}  {after:>14}  {:>22.4}",
                p.partitions,
                p.workers,
                p.drain.0,
                self.cpu_s_per_1k(p)
            );
        }
    }
}
