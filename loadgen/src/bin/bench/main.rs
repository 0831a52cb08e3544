//! `sluice-bench` (run by `make bench`): on the Kafka and Postgres that hack/ started,
//! measures in one run (1) the raw COPY rate of the rows into the same schema — the limit,
//! (2) the worker draining a pre-produced backlog, (3) end-to-end latency at a fixed offered
//! rate, (4) the same backlog drain with fraud scoring off vs on (fresh database each, same
//! events, alternating order); then checks what landed and writes `report.json` and `report.svg`.

use anyhow::{Context, Result, ensure};
use chrono::Utc;
use clap::Parser;
use plotters::prelude::*;
use serde_json::json;
use sluice_harness::{Process, free_port, get, metrics, wait_for};
use sluice_loadgen::{
    EventClock, EventKind, Generator, GeneratorConfig, LoadSpec, ensure_topic, produce,
};
use sluice_worker::batch::Accepted;
use sluice_worker::copy_text::{COPY_TRANSACTIONS, encode_copy};
use sluice_worker::validate::{TimeBounds, validate};
use sqlx::{Connection, PgConnection, PgPool};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(name = "sluice-bench")]
struct Args {
    #[arg(long, env = "KAFKA_BOOTSTRAP")]
    brokers: String,
    /// Admin URL of the Postgres cluster (a fresh database is created in it).
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    /// Events pre-produced before the worker starts.
    #[arg(long, default_value_t = 1_000_000)]
    backlog: u64,
    /// Rows for the raw COPY baseline.
    #[arg(long, default_value_t = 300_000)]
    copy_rows: usize,
    /// Offered rate of the latency phase.
    #[arg(long, default_value_t = 2_000)]
    latency_rate: u64,
    #[arg(long, default_value_t = 30)]
    latency_seconds: u64,
    #[arg(long, default_value_t = 8)]
    partitions: i32,
    /// Events per drain of the scoring off/on comparison; 0 skips the comparison.
    #[arg(long, env = "BENCH_SCORING_COMPARE_EVENTS", default_value_t = 250_000)]
    scoring_compare_events: u64,
    /// Rounds of the comparison; a round drains once with scoring off and once with it on,
    /// in the order off,on | on,off | off,on … so a steady drift of the machine cancels out.
    #[arg(long, env = "BENCH_SCORING_COMPARE_ROUNDS", default_value_t = 2)]
    scoring_compare_rounds: u32,
    /// Event times of the comparison's stream. `simulated`: ~3 purchases per customer per
    /// day, as in `make eval` (about 1% flagged). `wall`: the backlog's compressed span, where
    /// every customer buys many times a minute and velocity rules flag ~9%.
    #[arg(long, env = "BENCH_SCORING_COMPARE_CLOCK", default_value = "simulated", value_parser = ["simulated", "wall"])]
    scoring_compare_clock: String,
    /// Directory of the sluice-worker binary.
    #[arg(long, env = "SLUICE_BIN_DIR")]
    bin_dir: PathBuf,
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.out)?;
    let run = format!("bench_{}", Utc::now().format("%Y%m%d%H%M%S"));
    let topic = run.replace('_', "-");
    ensure_topic(&args.brokers, &topic, args.partitions).await?;
    let mut admin = PgConnection::connect(&args.database_url).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {run}")))
        .execute(&mut admin)
        .await?;
    let db_url = format!(
        "{}/{run}",
        &args.database_url[..args.database_url.rfind('/').expect("db url has a path")]
    );

    eprintln!(
        "== 1/4 raw COPY baseline: {} rows into the same schema",
        args.copy_rows
    );
    let copy_tps = copy_baseline(&db_url, args.copy_rows).await?;
    eprintln!("   {copy_tps:.0} rows/s");

    eprintln!(
        "== 2/4 backlog: producing {} events, then draining with one worker",
        args.backlog
    );
    let backlog = LoadSpec {
        brokers: args.brokers.clone(),
        topic: topic.clone(),
        rate: 0,
        duration: None,
        count: Some(args.backlog),
        generator: GeneratorConfig {
            seed: 42,
            id_prefix: "backlog".into(),
            ..GeneratorConfig::default()
        },
        progress: true,
        collect_ids: false,
        labels: None,
    };
    let produced = {
        let spec = backlog.clone();
        tokio::task::spawn_blocking(move || produce(&spec)).await??
    };
    let port = free_port()?;
    let mut worker = spawn_worker(&args, &db_url, &topic, port, "worker.log", &[])?;
    let samples = watch_drain(
        port,
        produced.produced,
        &mut worker,
        Duration::from_millis(250),
    )
    .await?;
    let (t0, n0) = *samples
        .iter()
        .find(|(_, n)| *n > 0)
        .context("worker made no progress")?;
    let (t1, n1) = *samples.last().expect("samples");
    let throughput = (n1 - n0) as f64 / (t1 - t0).max(1e-3);
    eprintln!(
        "   drained {} in {:.1}s: {throughput:.0} tx/s",
        produced.produced,
        t1 - t0
    );

    eprintln!(
        "== 3/4 latency at {} tx/s for {}s",
        args.latency_rate, args.latency_seconds
    );
    let phase_start = Utc::now();
    let latency_spec = LoadSpec {
        brokers: args.brokers.clone(),
        topic: topic.clone(),
        rate: args.latency_rate,
        duration: Some(Duration::from_secs(args.latency_seconds)),
        count: None,
        generator: GeneratorConfig {
            seed: 43,
            id_prefix: "latency".into(),
            ..GeneratorConfig::default()
        },
        progress: true,
        collect_ids: false,
        labels: None,
    };
    let offered = tokio::task::spawn_blocking(move || produce(&latency_spec)).await??;
    let expected_total = produced.produced + offered.produced;
    wait_handled(port, expected_total).await?;
    let rss_peak_mb = peak_rss_mb(worker.id());
    stop(&mut worker);

    let pool = PgPool::connect(&db_url).await?;
    let latencies: Vec<f64> = sqlx::query_scalar(
        "SELECT extract(epoch FROM ingested_at - kafka_timestamp)::float8 * 1000
         FROM sluice.transactions WHERE kafka_timestamp >= $1 ORDER BY 1",
    )
    .bind(phase_start)
    .fetch_all(&pool)
    .await?;
    ensure!(!latencies.is_empty(), "no rows from the latency phase");
    let pct = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    let (stored, distinct): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT transaction_id) FROM sluice.transactions")
            .fetch_one(&pool)
            .await?;
    let rejected: i64 = sqlx::query_scalar("SELECT count(*) FROM sluice.rejected_transactions")
        .fetch_one(&pool)
        .await?;
    pool.close().await;

    // A failed comparison still leaves the report of phases 1-3; the run fails at the end.
    let (compare, compare_error) =
        if args.scoring_compare_events == 0 || args.scoring_compare_rounds == 0 {
            eprintln!("== 4/4 scoring off/on comparison skipped (--scoring-compare-events 0)");
            (None, None)
        } else {
            match scoring_compare(&args, &backlog, &run).await {
                Ok(c) => (Some(c), None),
                Err(e) => {
                    eprintln!("   scoring comparison failed: {e:#}");
                    (None, Some(format!("{e:#}")))
                }
            }
        };
    let compare_json = compare.as_ref().map(ScoringCompare::to_json);

    let report = json!({
        "offered_rate_tps": args.latency_rate,
        "throughput_tps": throughput.round(),
        "duration_s": ((t1 - t0) * 10.0).round() / 10.0,
        "latency_ms": {"p50": round2(pct(0.50)), "p95": round2(pct(0.95)), "p99": round2(pct(0.99)), "max": round2(*latencies.last().unwrap())},
        "copy_baseline_tps": copy_tps.round(),
        "ratio_to_copy": round2(throughput / copy_tps),
        "rows_expected": produced.valid + offered.valid,
        "rows_stored": stored,
        "duplicates_stored": stored - distinct,
        "rejected": rejected,
        "rejected_expected": produced.invalid + produced.duplicates + offered.invalid + offered.duplicates,
        "worker_rss_mb_peak": rss_peak_mb,
        "backlog_events": produced.produced,
        "latency_phase_events": offered.produced,
        "latency_measured_as": "ingested_at (statement time of the batch insert) - Kafka CreateTime",
        "machine": {"cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)},
        "throughput_scoring_off_tps": compare.as_ref().map(|c| c.off_tps.round()),
        "throughput_scoring_on_tps": compare.as_ref().map(|c| c.on_tps.round()),
        "scoring_on_ratio": compare.as_ref().map(|c| round2(c.on_tps / c.off_tps)),
        "scoring_compare": compare_json.unwrap_or_else(|| json!({"skipped": compare_error.is_none(), "error": compare_error})),
    });
    let report_path = args.out.join("report.json");
    std::fs::write(&report_path, serde_json::to_string_pretty(&report)? + "\n")?;
    let compare_samples: Vec<(bool, &[(f64, u64)])> = compare
        .iter()
        .flat_map(|c| &c.runs)
        .map(|r| (r.scoring, r.samples.as_slice()))
        .collect();
    plot(
        &args.out.join("report.svg"),
        &samples,
        &compare_samples,
        &latencies,
    )?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    if let Some(c) = &compare {
        eprintln!(
            "scoring off {:.0} tx/s, on {:.0} tx/s: on/off = {:.2} (bar: >= 0.80); worker cpu per event off {:.0} us, on {:.0} us; main drain (scoring on) {throughput:.0} tx/s",
            c.off_tps,
            c.on_tps,
            c.on_tps / c.off_tps,
            c.cpu_us_per_event(false),
            c.cpu_us_per_event(true)
        );
        if c.on_tps > c.off_tps * 1.05 {
            eprintln!(
                "warning: scoring off drained slower than scoring on: the off worker is stalled on something other than its own work, so it is no data-plane ceiling"
            );
        }
    }
    eprintln!("wrote {} and report.svg", report_path.display());
    ensure!(
        stored as u64 == produced.valid + offered.valid && stored == distinct,
        "rows stored do not match rows expected"
    );
    if let Some(e) = compare_error {
        anyhow::bail!("scoring comparison failed: {e}");
    }
    Ok(())
}

/// One drain of the scoring comparison.
struct CompareRun {
    scoring: bool,
    tps: f64,
    /// Records handled between the first progress sample and the end, and that span.
    handled: u64,
    seconds: f64,
    /// CPU the worker used from start to drained (user + system): less sensitive to other
    /// load on a shared machine than the wall-clock rate.
    cpu_s: f64,
    rows_stored: i64,
    alerts: i64,
    profiles: i64,
    samples: Vec<(f64, u64)>,
}

struct ScoringCompare {
    event_clock: String,
    events: u64,
    rows_expected: u64,
    runs: Vec<CompareRun>,
    off_tps: f64,
    on_tps: f64,
}

impl ScoringCompare {
    /// [slowest, fastest] drain of a mode: how far apart repeats of the same drain land.
    fn range(&self, on: bool) -> [f64; 2] {
        let tps = self
            .runs
            .iter()
            .filter(|r| r.scoring == on)
            .map(|r| r.tps.round());
        [
            tps.clone().fold(f64::INFINITY, f64::min),
            tps.fold(0.0, f64::max),
        ]
    }

    fn cpu_us_per_event(&self, on: bool) -> f64 {
        let runs = self.runs.iter().filter(|r| r.scoring == on);
        runs.clone().map(|r| r.cpu_s).sum::<f64>() * 1e6
            / (runs.count() as f64 * self.events as f64)
    }

    fn to_json(&self) -> serde_json::Value {
        json!({
            "events_per_drain": self.events,
            "event_clock": self.event_clock,
            "rows_expected_per_drain": self.rows_expected,
            "order": self.runs.iter().map(|r| if r.scoring { "on" } else { "off" }).collect::<Vec<_>>(),
            "runs": self.runs.iter().map(|r| json!({
                "scoring": if r.scoring { "on" } else { "off" },
                "throughput_tps": r.tps.round(),
                "duration_s": (r.seconds * 10.0).round() / 10.0,
                "worker_cpu_s": round2(r.cpu_s),
                "rows_stored": r.rows_stored,
                "fraud_alerts": r.alerts,
                "customer_profiles": r.profiles,
            })).collect::<Vec<_>>(),
            "throughput_is": "per mode: records handled / seconds, summed over that mode's drains",
            "worker_cpu_us_per_event": {"off": self.cpu_us_per_event(false).round(), "on": self.cpu_us_per_event(true).round()},
            "throughput_tps_range": {"off": self.range(false), "on": self.range(true)},
            "scoring_off_means": "worker started with fraud.enabled=false (SLUICE_FRAUD__ENABLED=false); runs[].customer_profiles shows whether it still kept per-customer state",
        })
    }
}

/// (4) Drain the same backlog with scoring off and on, alternating off,on | on,off | …: one
/// topic produced once (byte-identical input), then per drain a fresh database, a fresh
/// consumer group, a CHECKPOINT so no drain pays for the previous one's dirty pages, and a
/// fresh worker. Progress is sampled every 100 ms (the drains are short).
async fn scoring_compare(args: &Args, template: &LoadSpec, run: &str) -> Result<ScoringCompare> {
    let drains = 2 * args.scoring_compare_rounds;
    eprintln!(
        "== 4/4 scoring off vs on: producing {} events, then {drains} drains (fresh database each)",
        args.scoring_compare_events
    );
    let topic = format!("{}-scoring", run.replace('_', "-"));
    ensure_topic(&args.brokers, &topic, args.partitions).await?;
    let spec = LoadSpec {
        topic: topic.clone(),
        count: Some(args.scoring_compare_events),
        generator: GeneratorConfig {
            seed: 42,
            id_prefix: "scoring".into(),
            event_clock: match args.scoring_compare_clock.as_str() {
                "wall" => EventClock::Wall,
                _ => EventClock::Simulated,
            },
            ..GeneratorConfig::default()
        },
        ..template.clone()
    };
    let produced = tokio::task::spawn_blocking(move || produce(&spec)).await??;
    let mut admin = PgConnection::connect(&args.database_url).await?;
    let base = &args.database_url[..args.database_url.rfind('/').expect("db url has a path")];
    let mut runs = Vec::new();
    for i in 0..drains {
        let scoring = matches!(i % 4, 1 | 2);
        let mode = if scoring { "on" } else { "off" };
        let name = format!("{run}_scoring{i}_{mode}");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await?;
        sqlx::raw_sql("CHECKPOINT").execute(&mut admin).await?;
        let db_url = format!("{base}/{name}");
        let port = free_port()?;
        let env = [
            ("SLUICE_FRAUD__ENABLED", scoring.to_string()),
            ("SLUICE_KAFKA__GROUP_ID", format!("{name}-group")),
        ];
        let mut worker = spawn_worker(
            args,
            &db_url,
            &topic,
            port,
            &format!("worker-scoring{i}-{mode}.log"),
            &env,
        )?;
        let drained = watch_drain(
            port,
            produced.produced,
            &mut worker,
            Duration::from_millis(100),
        )
        .await;
        let cpu_s = cpu_seconds(worker.id());
        stop(&mut worker);
        let samples = drained?;
        let (t0, n0) = *samples
            .iter()
            .find(|(_, n)| *n > 0)
            .context("worker made no progress")?;
        let (t1, n1) = *samples.last().expect("samples");
        let (handled, seconds) = (n1 - n0, (t1 - t0).max(1e-3));
        let pool = PgPool::connect(&db_url).await?;
        let count = |table: &str| format!("SELECT count(*) FROM sluice.{table}");
        let rows_stored: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(count("transactions")))
            .fetch_one(&pool)
            .await?;
        let alerts: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(count("fraud_alerts")))
            .fetch_one(&pool)
            .await?;
        let profiles: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(count("customer_profiles")))
            .fetch_one(&pool)
            .await?;
        pool.close().await;
        let tps = handled as f64 / seconds;
        eprintln!(
            "   drain {}/{drains} scoring {mode:>3}: {tps:.0} tx/s ({seconds:.1}s, worker cpu {cpu_s:.1}s), {rows_stored} rows, {alerts} alerts, {profiles} profiles",
            i + 1
        );
        ensure!(
            rows_stored as u64 == produced.valid,
            "scoring {mode} drain stored {rows_stored} rows, expected {}",
            produced.valid
        );
        ensure!(
            scoring || alerts == 0,
            "scoring off still raised {alerts} alerts: the switch did not apply"
        );
        if scoring && alerts == 0 {
            eprintln!("   warning: scoring on raised no alerts");
        }
        runs.push(CompareRun {
            scoring,
            tps,
            handled,
            seconds,
            cpu_s,
            rows_stored,
            alerts,
            profiles,
            samples,
        });
    }
    let mode_tps = |on: bool| {
        let (n, s) = runs
            .iter()
            .filter(|r| r.scoring == on)
            .fold((0, 0.0), |(n, s), r| (n + r.handled, s + r.seconds));
        n as f64 / s
    };
    Ok(ScoringCompare {
        event_clock: args.scoring_compare_clock.clone(),
        events: produced.produced,
        rows_expected: produced.valid,
        off_tps: mode_tps(false),
        on_tps: mode_tps(true),
        runs,
    })
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// COPY the generator's valid rows straight into `transactions` (same indexes, same daily
/// partitions), 50,000 rows per committed COPY: what Postgres can take on this box.
async fn copy_baseline(db_url: &str, rows: usize) -> Result<f64> {
    let pool = sluice_worker::db::connect(db_url, "copy_baseline", 2, true).await?;
    sluice_worker::db::migrate(&pool, "copy_baseline").await?;
    sluice_worker::db::maintain_partitions(&pool, Utc::now(), 30, 3).await?;
    let mut generator = Generator::new(GeneratorConfig {
        seed: 42,
        invalid_ratio: 0.0,
        duplicate_ratio: 0.0,
        id_prefix: "copy".into(),
        ..GeneratorConfig::default()
    });
    let now = Utc::now();
    let bounds = TimeBounds::around(now, 30, 300);
    let mut records = Vec::with_capacity(rows);
    while records.len() < rows {
        let e = generator.next(now);
        if e.kind != EventKind::Valid {
            continue;
        }
        let valid = validate(&e.payload, bounds)
            .map_err(|r| anyhow::anyhow!("generator made an invalid event: {r:?}"))?;
        records.push(Accepted {
            valid,
            partition: (records.len() % 8) as i32,
            offset: records.len() as i64,
            kafka_timestamp: now,
            received_at: Instant::now(),
            raw: Vec::new(),
            verdict: None,
            late: false,
        });
    }
    let mut conn = pool.acquire().await?;
    let started = Instant::now();
    for chunk in records.chunks(50_000) {
        let mut buf = Vec::with_capacity(chunk.len() * 256);
        encode_copy(chunk, &mut buf);
        let mut tx = conn.begin().await?;
        let mut copy = tx.copy_in_raw(COPY_TRANSACTIONS).await?;
        copy.send(buf).await?;
        copy.finish().await?;
        tx.commit().await?;
    }
    Ok(rows as f64 / started.elapsed().as_secs_f64())
}

/// `env` is applied last, so it overrides the defaults here.
fn spawn_worker(
    args: &Args,
    db_url: &str,
    topic: &str,
    port: u16,
    log_name: &str,
    env: &[(&str, String)],
) -> Result<Process> {
    Process::spawn(
        Command::new(args.bin_dir.join("sluice-worker"))
            .env("DATABASE_URL", db_url)
            .env("SLUICE_PIPELINE", "bench")
            .env("SLUICE_KAFKA__BOOTSTRAP_SERVERS", &args.brokers)
            .env("SLUICE_KAFKA__TOPIC", topic)
            .env("SLUICE_KAFKA__GROUP_ID", format!("{topic}-group"))
            .env("SLUICE_HTTP__LISTEN", format!("127.0.0.1:{port}"))
            .envs(env.iter().map(|(k, v)| (k, v))),
        args.out.join(log_name),
    )
    .context("starting sluice-worker")
}

/// SIGTERM the worker and wait for it to stop; a failed stop is reported, not fatal (what
/// was measured stands).
fn stop(worker: &mut Process) {
    if let Err(e) = worker.terminate(Duration::from_secs(60)) {
        eprintln!("   warning: {e:#}");
    }
}

/// Records the worker has handled, from its `sluice_transactions_total`.
async fn handled(port: u16) -> Result<u64> {
    let page = get(port, "/metrics").await?.ok()?;
    Ok(metrics::sum(&page, "sluice_transactions_total", &[]) as u64)
}

/// Sample the worker's counters every `every` until `expected` records are handled.
async fn watch_drain(
    port: u16,
    expected: u64,
    worker: &mut Process,
    every: Duration,
) -> Result<Vec<(f64, u64)>> {
    let started = Instant::now();
    let mut samples = Vec::new();
    loop {
        ensure!(
            worker.exited()?.is_none(),
            "the worker exited during the drain"
        );
        if let Ok(n) = handled(port).await {
            samples.push((started.elapsed().as_secs_f64(), n));
            if n >= expected {
                return Ok(samples);
            }
        }
        ensure!(
            started.elapsed() < Duration::from_secs(900),
            "backlog not drained in 15 minutes"
        );
        tokio::time::sleep(every).await;
    }
}

async fn wait_handled(port: u16, expected: u64) -> Result<()> {
    wait_for(
        "the latency phase drained",
        Duration::from_secs(300),
        || async { handled(port).await.is_ok_and(|n| n >= expected) },
    )
    .await
}

/// User + system CPU seconds of a process so far (USER_HZ = 100 on Linux).
fn cpu_seconds(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let f: Vec<&str> = s.rsplit_once(')')?.1.split_whitespace().collect();
            Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / 100.0)
        })
        .unwrap_or(0.0)
}

fn peak_rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))?
                .split_whitespace()
                .nth(1)?
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kb| (kb / 1024.0 * 10.0).round() / 10.0)
}

/// Rate over a trailing window of about one second, at every sample.
fn rates_1s(samples: &[(f64, u64)]) -> Vec<(f64, f64)> {
    let mut j = 0;
    let mut out = Vec::new();
    for (i, &(t, n)) in samples.iter().enumerate() {
        while j + 1 < i && t - samples[j + 1].0 >= 1.0 {
            j += 1;
        }
        if i > j && t - samples[j].0 >= 0.9 {
            out.push((t, (n - samples[j].1) as f64 / (t - samples[j].0)));
        }
    }
    out
}

/// `compare`: the scoring comparison's drains (scoring on?, samples), drawn over the backlog's.
fn plot(
    path: &std::path::Path,
    samples: &[(f64, u64)],
    compare: &[(bool, &[(f64, u64)])],
    latencies_ms: &[f64],
) -> Result<()> {
    let root = SVGBackend::new(path, (1200, 450)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(600);

    let rates: Vec<(f64, f64)> = samples
        .windows(5)
        .map(|w| {
            (
                w[4].0,
                (w[4].1 - w[0].1) as f64 / (w[4].0 - w[0].0).max(1e-3),
            )
        })
        .collect();
    let compare: Vec<(bool, Vec<(f64, f64)>)> =
        compare.iter().map(|(on, s)| (*on, rates_1s(s))).collect();
    let all = || rates.iter().chain(compare.iter().flat_map(|c| &c.1));
    let max_rate = all().map(|r| r.1).fold(1.0, f64::max) * 1.1;
    let max_t = all()
        .map(|r| r.0)
        .fold(samples.last().map_or(1.0, |s| s.0), f64::max);
    let mut chart = ChartBuilder::on(&left)
        .caption(
            "Backlog drain: throughput (tx/s, 1 s window)",
            ("sans-serif", 18),
        )
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..max_t, 0f64..max_rate)?;
    chart
        .configure_mesh()
        .x_desc("seconds since worker start")
        .y_desc("tx/s")
        .draw()?;
    chart
        .draw_series(LineSeries::new(rates, &BLUE))?
        .label("backlog (scoring on)")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLUE));
    for on in [false, true] {
        let color = if on { RED.mix(0.7) } else { GREEN.mix(0.7) };
        for (i, (_, r)) in compare.iter().filter(|c| c.0 == on).enumerate() {
            let series = chart.draw_series(LineSeries::new(r.iter().copied(), color))?;
            if i == 0 {
                let label = if on {
                    "comparison: scoring on"
                } else {
                    "comparison: scoring off"
                };
                series
                    .label(label)
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color));
            }
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;

    let cap = latencies_ms[((latencies_ms.len() - 1) as f64 * 0.999) as usize].max(1.0);
    let bins = 50usize;
    let width = cap / bins as f64;
    let mut counts = vec![0u32; bins];
    for &l in latencies_ms {
        counts[((l / width) as usize).min(bins - 1)] += 1;
    }
    let max_count = counts.iter().copied().max().unwrap_or(1);
    let mut chart = ChartBuilder::on(&right)
        .caption("End-to-end latency at fixed rate (ms)", ("sans-serif", 18))
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..cap, 0u32..max_count + max_count / 10 + 1)?;
    chart
        .configure_mesh()
        .x_desc("Kafka timestamp -> row written (ms), to p99.9")
        .y_desc("rows")
        .draw()?;
    chart.draw_series(counts.iter().enumerate().map(|(i, &c)| {
        Rectangle::new(
            [(i as f64 * width, 0), ((i + 1) as f64 * width, c)],
            BLUE.mix(0.6).filled(),
        )
    }))?;
    root.present()?;
    Ok(())
}
