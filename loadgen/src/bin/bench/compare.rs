//! Phase 4: the same backlog drained with fraud scoring off and on.

use super::args::event_clock;
use super::split::{Counters, Split};
use super::worker::{cpu_seconds, spawn_worker, stop, watch_drain};
use super::{Args, create_database, pg_view, round2};
use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use sluice_harness::free_port;
use sluice_loadgen::{GeneratorConfig, LoadSpec, ensure_topic, produce};
use sqlx::{Connection, PgConnection, PgPool};
use std::time::Duration;

/// One drain of the scoring comparison.
pub struct CompareRun {
    pub scoring: bool,
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
    pub samples: Vec<(f64, u64)>,
    /// The worker's batch time split over the whole drain.
    split: Counters,
    /// Postgres's view of the drain ([`pg_view::delta`]).
    postgres: Value,
}

pub struct ScoringCompare {
    event_clock: String,
    events: u64,
    rows_expected: u64,
    pub runs: Vec<CompareRun>,
    pub off_tps: f64,
    pub on_tps: f64,
}

impl ScoringCompare {
    /// The batch time split of every drain of a mode, summed.
    pub fn split(&self, on: bool) -> Split {
        let runs = self.runs.iter().filter(|r| r.scoring == on);
        Split {
            counters: runs
                .clone()
                .fold(Counters::default(), |sum, r| sum.plus(&r.split)),
            seconds: runs.map(|r| r.seconds).sum(),
        }
    }

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

    pub fn cpu_us_per_event(&self, on: bool) -> f64 {
        let runs = self.runs.iter().filter(|r| r.scoring == on);
        runs.clone().map(|r| r.cpu_s).sum::<f64>() * 1e6
            / (runs.count() as f64 * self.events as f64)
    }

    pub fn to_json(&self) -> serde_json::Value {
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
                "postgres": r.postgres,
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
pub async fn scoring_compare(
    args: &Args,
    template: &LoadSpec,
    run: &str,
) -> Result<ScoringCompare> {
    let drains = 2 * args.scoring_compare_rounds;
    eprintln!(
        "== 5/6 scoring off vs on: producing {} events, then {drains} drains (fresh database each)",
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
            event_clock: event_clock(&args.scoring_compare_clock),
            ..GeneratorConfig::default()
        },
        ..template.clone()
    };
    let produced = tokio::task::spawn_blocking(move || produce(&spec)).await??;
    let mut admin = PgConnection::connect(&args.database_url).await?;
    let mut runs = Vec::new();
    for i in 0..drains {
        let scoring = matches!(i % 4, 1 | 2);
        let mode = if scoring { "on" } else { "off" };
        let name = format!("{run}_scoring{i}_{mode}");
        create_database(&mut admin, &name).await?;
        pg_view::checkpoint(&mut admin).await?;
        let db_url = args.database_url_of(&name);
        let mut db = PgConnection::connect(&db_url).await?;
        let pg_before = pg_view::snapshot(&mut admin, &mut db, &name).await?;
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
            &[port],
            produced.produced,
            std::slice::from_mut(&mut worker),
            Duration::from_millis(100),
        )
        .await;
        let cpu_s = cpu_seconds(worker.id());
        stop(&mut worker);
        let drained = drained?;
        let split =
            Counters::parse(&drained.last_page).since(&Counters::parse(&drained.first_page));
        let samples = drained.samples;
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
        let pg_after = pg_view::snapshot(&mut admin, &mut db, &name).await?;
        let postgres = pg_view::delta(&pg_before, &pg_after, seconds);
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
        pg_view::print(&format!("drain {}/{drains}", i + 1), &postgres, true);
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
            split,
            postgres,
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
