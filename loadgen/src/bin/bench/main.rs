//! `sluice-bench` (run by `make bench`): on the Kafka and Postgres that hack/ started,
//! measures in one run (1) the raw COPY rate of the rows into the same schema — the limit,
//! (2) the worker draining a pre-produced backlog on a warmed broker ([`warmup`]), then the
//! same rows by raw COPY again (into an empty schema, and replayed into one loaded as the
//! drain's was: [`copy`]), each measurement after a `VACUUM (ANALYZE)` of what the one
//! before left owing, (3, 4)
//! end-to-end latency at a fixed offered rate, low and high, each after a warm-up reported
//! apart ([`latency_phase`]), (5) the same backlog drain with fraud scoring off vs on (fresh
//! database each, same events, alternating order), (6) the scaling curve over workers and
//! partitions ([`scaling`]); then checks what landed and writes `report.json` and
//! `report.svg`.
//! Beside each phase's figures it reports where a batch's time went inside the worker
//! ([`split`]) and what Postgres did meanwhile ([`pg_view`]).

mod activity;
mod args;
mod compare;
mod copy;
mod drain_pairs;
mod latency;
mod latency_phase;
mod machine_cpu;
mod pg_view;
mod phase_clock;
mod plot;
mod scaling;
mod split;
mod warmup;
mod worker;

use anyhow::{Context, Result, ensure};
use args::{Args, vacuum_first};
use chrono::Utc;
use clap::Parser;
use compare::{ScoringCompare, scoring_compare};
use phase_clock::PhaseClock;
use serde_json::json;
use sluice_harness::free_port;
use sluice_loadgen::{GeneratorConfig, LoadSpec, ensure_topic, produce};
use split::{Counters, Split};
use sqlx::{Connection, PgConnection, PgPool};
use std::time::{Duration, Instant};
use worker::{peak_rss_mb, spawn_worker, stop, watch_drain};

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.out)?;
    let run = format!("bench_{}", Utc::now().format("%Y%m%d%H%M%S"));
    let topic = run.replace('_', "-");
    ensure_topic(&args.brokers, &topic, args.partitions).await?;
    let mut admin = PgConnection::connect(&args.database_url).await?;
    create_database(&mut admin, &run).await?;
    let db_url = args.database_url_of(&run);
    if let Err(e) = pg_view::enable_statements(&mut admin).await {
        eprintln!("   warning: no pg_stat_statements ({e:#}); the statements view stays empty");
    }
    let mut db = PgConnection::connect(&db_url).await?;
    let mut pg_views = serde_json::Map::new();
    let broker_pid = machine_cpu::broker_pid(&args.brokers);
    let mut took = PhaseClock::start();
    let pg_start = pg_view::snapshot(&mut admin, &mut db, &run).await?;

    eprintln!(
        "== 1/6 raw COPY baseline: {} rows into the same schema",
        args.copy_rows
    );
    let copy_started = Instant::now();
    let copy_tps = copy::copy_baseline(&db_url, args.copy_rows).await?;
    eprintln!("   {copy_tps:.0} rows/s");
    let pg_copied = pg_view::snapshot(&mut admin, &mut db, &run).await?;
    let view = pg_view::delta(&pg_start, &pg_copied, copy_started.elapsed().as_secs_f64());
    pg_view::print("the COPY baseline", &view, false);
    pg_views.insert("copy_baseline".into(), view);
    let vacuum_after_copy_s = vacuum(&mut db, "the COPY baseline's rows").await?;
    took.lap("copy_baseline");

    eprintln!(
        "== 2/6 backlog: producing {} events, then draining with one worker",
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
            event_clock: args::event_clock(&args.backlog_clock),
            ..GeneratorConfig::default()
        },
        progress: true,
        collect_ids: false,
        labels: None,
    };
    let warmed = warmup::warm_up(&args, &mut admin, &backlog, &run, broker_pid).await?;
    took.lap("warmup");
    let produced = {
        let spec = backlog.clone();
        tokio::task::spawn_blocking(move || produce(&spec)).await??
    };
    // The drain starts from checkpointed pages, as the replay of it by raw COPY does.
    pg_view::checkpoint(&mut admin).await?;
    let pg_before_drain = pg_view::snapshot(&mut admin, &mut db, &run).await?;
    let drain_started = Instant::now();
    let port = free_port()?;
    let mut worker = spawn_worker(&args, &db_url, &topic, port, "worker.log", &[])?;
    let cpu_before_drain = machine_cpu::CpuSnapshot::take(worker.id(), broker_pid);
    let drain = watch_drain(
        &[port],
        produced.produced,
        std::slice::from_mut(&mut worker),
        Duration::from_millis(250),
    )
    .await?;
    let drain_cpu =
        cpu_before_drain.until(&machine_cpu::CpuSnapshot::take(worker.id(), broker_pid));
    let samples = drain.samples;
    let drained = Counters::parse(&drain.last_page);
    let drain_seconds = drain_started.elapsed().as_secs_f64();
    let pg_drained = pg_view::snapshot(&mut admin, &mut db, &run).await?;
    let flagged: i64 = sqlx::query_scalar("SELECT count(*) FROM sluice.fraud_alerts")
        .fetch_one(&mut db)
        .await?;
    let (t0, n0) = *samples
        .iter()
        .find(|(_, n)| *n > 0)
        .context("worker made no progress")?;
    let (t1, n1) = *samples.last().expect("samples");
    let throughput = (n1 - n0) as f64 / (t1 - t0).max(1e-3);
    eprintln!(
        "   drained {} in {:.1}s: {throughput:.0} tx/s ({flagged} flagged, event times: {})",
        produced.produced,
        t1 - t0,
        args.backlog_clock
    );
    eprintln!(
        "   {}",
        drain_cpu.line("the drain (worker start to drained)")
    );
    // Over the span the throughput is measured on: first progress to drained.
    let drain_split = Split {
        counters: drained.since(&Counters::parse(&drain.first_page)),
        seconds: (t1 - t0).max(1e-3),
    };
    let view = pg_view::delta(&pg_before_drain, &pg_drained, drain_seconds);
    pg_view::print("the backlog drain", &view, false);
    pg_views.insert("backlog".into(), view);
    let vacuum_after_drain_s = vacuum(&mut db, "the drain's rows").await?;
    took.lap("backlog");

    eprintln!(
        "== raw COPY of the drain's own rows: its first {} stored rows into a fresh database",
        args.copy_rows
    );
    let (same_rows_tps, _) = copy::copy_drained_again(
        &mut admin,
        &db_url,
        &run,
        &backlog.generator.id_prefix,
        copy::Again::FirstRows(args.copy_rows),
    )
    .await?;
    eprintln!("   {same_rows_tps:.0} rows/s");
    took.lap("copy_same_rows");

    eprintln!(
        "== the drain replayed by raw COPY: every row it stored, into a fresh database first \
         loaded as the drain's was ({} generated rows)",
        args.copy_rows
    );
    let (replay_tps, replayed) = copy::copy_drained_again(
        &mut admin,
        &db_url,
        &run,
        &backlog.generator.id_prefix,
        copy::Again::Replay {
            preload_rows: args.copy_rows,
        },
    )
    .await?;
    eprintln!("   {replay_tps:.0} rows/s over {replayed} rows");
    took.lap("copy_replay");

    let mut pairs = vec![drain_pairs::Pair {
        drain_tps: throughput,
        drain_seconds: t1 - t0,
        replay_tps,
        replay_rows: replayed,
        drain_cpu: None,
    }];
    if args.drain_pairs > 1 {
        eprintln!(
            "== the drain and its replay again, {} more time(s), each on a topic and database of its own",
            args.drain_pairs - 1
        );
    }
    for n in 2..=args.drain_pairs {
        pairs.push(drain_pairs::again(&args, &mut admin, &backlog, &run, n, broker_pid).await?);
    }
    let pooled_ratio = drain_pairs::pooled_ratio(&pairs);
    took.lap("drain_pairs");

    let pool = PgPool::connect(&db_url).await?;
    let target = latency_phase::Target {
        topic: &topic,
        port,
        worker_pid: worker.id(),
        broker_pid,
        db_name: &run,
        pool: &pool,
    };
    eprintln!(
        "== 3/6 latency at {} tx/s: {}CHECKPOINT, {}s start-up, {}s steady state",
        args.latency_rate,
        vacuum_first(&args),
        args.latency_warmup_seconds,
        args.latency_seconds
    );
    let low = latency_phase::run(
        &args,
        &target,
        &mut admin,
        &mut db,
        args.latency_rate,
        ("latency", 43),
    )
    .await?;
    low.print();
    pg_view::print("the latency phase", &low.postgres, false);
    pg_views.insert("latency".into(), low.postgres.clone());
    took.lap("latency");
    let high = if args.latency_rate_high == 0 {
        eprintln!("== 4/6 high-rate latency phase skipped (--latency-rate-high 0)");
        None
    } else {
        eprintln!(
            "== 4/6 latency at {} tx/s: {}CHECKPOINT, {}s start-up, {}s steady state",
            args.latency_rate_high,
            vacuum_first(&args),
            args.latency_warmup_seconds,
            args.latency_seconds
        );
        let high = latency_phase::run(
            &args,
            &target,
            &mut admin,
            &mut db,
            args.latency_rate_high,
            ("latency-high", 44),
        )
        .await?;
        high.print();
        pg_view::print("the high-rate latency phase", &high.postgres, false);
        pg_views.insert("latency_high".into(), high.postgres.clone());
        took.lap("latency_high");
        Some(high)
    };
    let rss_peak_mb = peak_rss_mb(worker.id());
    stop(&mut worker);

    let (stored, distinct): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT transaction_id) FROM sluice.transactions")
            .fetch_one(&pool)
            .await?;
    let rejected: i64 = sqlx::query_scalar("SELECT count(*) FROM sluice.rejected_transactions")
        .fetch_one(&pool)
        .await?;
    pool.close().await;
    let offered: Vec<&sluice_loadgen::Summary> = std::iter::once(&produced)
        .chain([&low.offered])
        .chain(high.as_ref().map(|h| &h.offered))
        .collect();
    let rows_expected: u64 = offered.iter().map(|o| o.valid).sum();
    let rejected_expected: u64 = offered.iter().map(|o| o.invalid + o.duplicates).sum();

    // A failed comparison or curve still leaves the report of phases 1-4; the run fails at
    // the end.
    let (compare, compare_error) =
        if args.scoring_compare_events == 0 || args.scoring_compare_rounds == 0 {
            eprintln!("== 5/6 scoring off/on comparison skipped (--scoring-compare-events 0)");
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
    took.lap("scoring_compare");
    let (curve, curve_error) = if args.scaling_events == 0 || args.scaling_partitions.is_empty() {
        eprintln!("== 6/6 scaling curve skipped (--scaling-events 0)");
        (None, None)
    } else {
        match scaling::scaling(&args, &backlog, &run).await {
            Ok(c) => (Some(c), None),
            Err(e) => {
                eprintln!("   scaling curve failed: {e:#}");
                (None, Some(format!("{e:#}")))
            }
        }
    };
    took.lap("scaling");

    let compare_json = compare.as_ref().map(ScoringCompare::to_json);
    let compare_splits = compare.as_ref().map(|c| (c.split(false), c.split(true)));
    let mut phases: Vec<(&str, &Split)> = vec![("backlog", &drain_split), ("latency", &low.split)];
    if let Some(h) = &high {
        phases.push(("latency high", &h.split));
    }
    if let Some((off, on)) = &compare_splits {
        phases.extend([("scoring off", off), ("scoring on", on)]);
    }
    split::print(&phases);
    let mut split_json: serde_json::Map<String, serde_json::Value> = phases
        .iter()
        .map(|(name, s)| (name.replace(' ', "_"), s.to_json()))
        .collect();
    split_json.insert("meaning".into(), split::meaning());
    pg_views.insert("meaning".into(), pg_view::meaning());
    pg_views.insert(
        "scoring_drains".into(),
        json!("each drain's view is scoring_compare.runs[].postgres"),
    );
    let mut latency_high = high
        .as_ref()
        .map_or(json!({"skipped": true}), |h| h.to_json());
    if let Some(h) = &high {
        latency_high["over_time"] = h.steady.per_second_json(&h.beside);
    }

    let mut report = json!({
        "offered_rate_tps": args.latency_rate,
        "throughput_tps": throughput.round(),
        "duration_s": ((t1 - t0) * 10.0).round() / 10.0,
        "latency_ms": low.steady.summary_json(),
        "latency_startup_ms": low.startup_json(),
        "latency": low.to_json(),
        "latency_high": latency_high,
        "copy_baseline_tps": copy_tps.round(),
        "ratio_to_copy": round2(throughput / copy_tps),
        "copy_same_rows_tps": same_rows_tps.round(),
        "ratio_to_copy_same_rows": round2(throughput / same_rows_tps),
        "copy_replay_tps": replay_tps.round(),
        "copy_replay_rows": replayed,
        "ratio_to_copy_replay": round2(throughput / replay_tps),
        "vacuum_before_s": {"drain": round2(vacuum_after_copy_s), "copy_after_drain": round2(vacuum_after_drain_s)},
        "copy_baselines_are": "copy_baseline_tps: generated rows (unscored, one event time) COPYed before the drain into its empty database; copy_same_rows_tps: the first copy_rows rows the drain stored, COPYed after it into a fresh empty database; copy_replay_tps: every row the drain stored (copy_replay_rows), COPYed after it into a fresh database first loaded as the drain's was (the copy_baseline rows), so the table grows through the sizes it grew through under the drain; all in binary format, 50,000 rows per committed COPY; the drain and the COPYs after it each start after a VACUUM (ANALYZE) of the bench database (vacuum_before_s: the rows before them owe their first autovacuum, which otherwise ran beside them) and a CHECKPOINT",
        "rows_expected": rows_expected,
        "rows_stored": stored,
        "duplicates_stored": stored - distinct,
        "rejected": rejected,
        "rejected_expected": rejected_expected,
        "worker_rss_mb_peak": rss_peak_mb,
        "backlog_events": produced.produced,
        "backlog_event_clock": args.backlog_clock,
        "backlog_flagged": flagged,
        "backlog_cpu": drain_cpu.to_json(),
        "backlog_warmup": warmed.unwrap_or_else(|| json!({"skipped": true})),
        "latency_phase_events": low.offered.produced,
        "latency_measured_as": "ingested_at (statement time of the batch insert) - Kafka CreateTime; latency_ms is the steady state at offered_rate_tps, latency_startup_ms its warm-up (see latency.spans_are)",
        "machine": {"cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)},
        "throughput_scoring_off_tps": compare.as_ref().map(|c| c.off_tps.round()),
        "throughput_scoring_on_tps": compare.as_ref().map(|c| c.on_tps.round()),
        "scoring_on_ratio": compare.as_ref().map(|c| round2(c.on_tps / c.off_tps)),
        "scoring_compare": compare_json.unwrap_or_else(|| json!({"skipped": compare_error.is_none(), "error": compare_error})),
        "scaling": curve.as_ref().map_or_else(|| json!({"skipped": curve_error.is_none(), "error": curve_error}), scaling::Scaling::to_json),
        "batch_time_split": split_json,
        "postgres_view": pg_views,
        "latency_over_time": low.steady.per_second_json(&low.beside),
        "phase_seconds": took.to_json(),
    });
    // Beside the json! above: one macro call with them all exceeds its recursion limit.
    report["ratio_to_copy_replay_pooled"] = json!(round2(pooled_ratio));
    report["drain_pairs"] = pairs.iter().map(drain_pairs::Pair::to_json).collect();
    report["drain_pairs_are"] = json!(
        "the bar's ratio measured drain_pairs.len() times: the first pair is the drain above (throughput_tps) and its replay (copy_replay_tps); each further pair repeats it on a topic and database of its own (same backlog, its own ids; the database loaded with the COPY baseline's rows, VACUUM (ANALYZE) and CHECKPOINT before the drain by a fresh worker, VACUUM (ANALYZE) before the replay); ratio_to_copy_replay_pooled = rows drained over drain seconds, summed over the pairs, divided by rows replayed over replay seconds, summed alike"
    );
    let report_path = args.out.join("report.json");
    std::fs::write(&report_path, serde_json::to_string_pretty(&report)? + "\n")?;
    let compare_samples: Vec<(bool, &[(f64, u64)])> = compare
        .iter()
        .flat_map(|c| &c.runs)
        .map(|r| (r.scoring, r.samples.as_slice()))
        .collect();
    plot::plot(
        &args.out.join("report.svg"),
        &samples,
        &compare_samples,
        &low.steady.sorted_ms,
        &low.steady.per_second,
        &low.beside,
    )?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    eprintln!(
        "backlog drain vs its replay by raw COPY (bar: >= 0.5 x raw COPY of the same rows): {pooled_ratio:.2} pooled over {} pair(s) ({})",
        pairs.len(),
        pairs
            .iter()
            .map(|p| format!(
                "{:.0} / {:.0} = {:.2}",
                p.drain_tps,
                p.replay_tps,
                p.ratio()
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    eprintln!(
        "first backlog drain {throughput:.0} tx/s: {:.2} x the drain replayed by raw COPY ({replay_tps:.0} rows/s), {:.2} x its first rows into an empty schema ({same_rows_tps:.0} rows/s), {:.2} x generated rows into an empty schema ({copy_tps:.0} rows/s)",
        throughput / replay_tps,
        throughput / same_rows_tps,
        throughput / copy_tps
    );
    eprintln!(
        "latency steady state (start-up excluded): {} tx/s offered ({:.0} achieved) p99 {:.1} ms (bar: <= 100)",
        low.rate,
        low.achieved_tps(),
        low.steady.pct(0.99)
    );
    if let Some(h) = &high {
        eprintln!(
            "latency steady state (start-up excluded): {} tx/s offered ({:.0} achieved) p99 {:.1} ms (bar: <= 250)",
            h.rate,
            h.achieved_tps(),
            h.steady.pct(0.99)
        );
    }
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
    if let Some(c) = &curve {
        eprintln!("scaling curve (backlog drain, scoring on):");
        c.print();
    }
    took.print();
    eprintln!("wrote {} and report.svg", report_path.display());
    ensure!(
        stored as u64 == rows_expected && stored == distinct,
        "rows stored do not match rows expected"
    );
    if let Some(e) = compare_error {
        anyhow::bail!("scoring comparison failed: {e}");
    }
    if let Some(e) = curve_error {
        anyhow::bail!("scaling curve failed: {e}");
    }
    Ok(())
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// `VACUUM (ANALYZE)` the bench database: the maintenance `what` left owing (a first
/// autovacuum of up to a million rows per table) is paid now, not beside the next
/// measurement. Seconds it took.
async fn vacuum(db: &mut PgConnection, what: &str) -> Result<f64> {
    let seconds = pg_view::vacuum_analyze(db).await?;
    eprintln!("   VACUUM (ANALYZE) after {what}: {seconds:.1}s");
    Ok(seconds)
}

/// `template`'s backlog again on a topic of its own (made with `args.partitions`): the same
/// generator, `count` events, ids starting with `id_prefix`.
async fn produce_again(
    args: &Args,
    template: &LoadSpec,
    topic: &str,
    id_prefix: String,
    count: Option<u64>,
) -> Result<sluice_loadgen::Summary> {
    ensure_topic(&args.brokers, topic, args.partitions).await?;
    let spec = LoadSpec {
        topic: topic.to_owned(),
        count,
        progress: false,
        generator: GeneratorConfig {
            id_prefix,
            ..template.generator.clone()
        },
        ..template.clone()
    };
    tokio::task::spawn_blocking(move || produce(&spec)).await?
}

/// A database `name` beside the bench's, in the same cluster.
async fn create_database(admin: &mut PgConnection, name: &str) -> Result<()> {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(admin)
        .await?;
    Ok(())
}

/// Drop the database `name`, closing what is still connected to it.
async fn drop_database(admin: &mut PgConnection, name: &str) -> Result<()> {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {name} WITH (FORCE)"
    )))
    .execute(admin)
    .await?;
    Ok(())
}
