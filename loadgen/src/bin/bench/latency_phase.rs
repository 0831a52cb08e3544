//! One latency phase: a fixed offered rate against the running worker, on a warmed system.
//! First `VACUUM (ANALYZE)` (unless `--latency-vacuum-first false`), so the maintenance the
//! drain before left owing is paid outside the phase, and a `CHECKPOINT`, so a checkpoint
//! begun by the drain (or by that vacuum) does not spill into the phase; then
//! the rate is offered without a break for `warmup + seconds`. Rows produced (Kafka
//! timestamp) in the first `warmup` seconds are the start-up, reported apart; the rest are
//! the steady state, the figures the bars are held to. What Postgres ran beside
//! ([`activity`]) and the batch time split ([`split`]) cover the steady state.

use super::activity::{self, Span};
use super::latency::Latencies;
use super::machine_cpu::{CpuSnapshot, CpuUse};
use super::split::{Counters, Split};
use super::worker::{handled, scrape, wait_handled};
use super::{Args, pg_view, round2};
use anyhow::Result;
use chrono::Utc;
use serde_json::{Value, json};
use sluice_loadgen::{GeneratorConfig, LoadSpec, Summary, produce};
use sqlx::{PgConnection, PgPool};
use std::time::{Duration, Instant};

/// Where the phase runs: the worker's port and the bench database.
pub struct Target<'a> {
    pub topic: &'a str,
    pub port: u16,
    pub worker_pid: u32,
    pub broker_pid: Option<u32>,
    pub db_name: &'a str,
    pub pool: &'a PgPool,
}

pub struct LatencyPhase {
    pub rate: u64,
    pub warmup_s: u64,
    pub steady_s: u64,
    pub offered: Summary,
    /// `None` without a warm-up.
    pub startup: Option<Latencies>,
    pub steady: Latencies,
    pub beside: Vec<Span>,
    /// Steady-state start until every offered record was handled.
    pub split: Split,
    pub postgres: Value,
    /// Who had the CPU from the steady state's start until its rows were all handled.
    pub cpu: CpuUse,
    /// Wall time of the whole phase, vacuum to last record handled.
    pub seconds: f64,
    /// How long the `VACUUM (ANALYZE)` before the phase took, if it ran.
    pub vacuum_s: Option<f64>,
}

/// `id_prefix` and `seed` keep each phase's transaction ids apart from every other's.
pub async fn run(
    args: &Args,
    target: &Target<'_>,
    admin: &mut PgConnection,
    db: &mut PgConnection,
    rate: u64,
    (id_prefix, seed): (&str, u64),
) -> Result<LatencyPhase> {
    let started = Instant::now();
    let (warmup_s, steady_s) = (args.latency_warmup_seconds, args.latency_seconds);
    let vacuum_s = if args.latency_vacuum_first {
        Some(pg_view::vacuum_analyze(&mut *db).await?)
    } else {
        None
    };
    pg_view::checkpoint(&mut *admin).await?;
    let pg_before = pg_view::snapshot(admin, db, target.db_name).await?;
    let handled_before = handled(target.port).await?;
    let spec = LoadSpec {
        brokers: args.brokers.clone(),
        topic: target.topic.to_string(),
        rate,
        duration: Some(Duration::from_secs(warmup_s + steady_s)),
        count: None,
        generator: GeneratorConfig {
            seed,
            id_prefix: id_prefix.into(),
            ..GeneratorConfig::default()
        },
        progress: true,
        collect_ids: false,
        labels: None,
    };
    let phase_start = Utc::now();
    let producing = tokio::task::spawn_blocking(move || produce(&spec));
    tokio::time::sleep(Duration::from_secs(warmup_s)).await;
    let steady_start = phase_start + chrono::Duration::seconds(warmup_s as i64);
    let steady_page = scrape(target.port).await?;
    let steady_started = Instant::now();
    let cpu_start = CpuSnapshot::take(target.worker_pid, target.broker_pid);
    let beside = activity::watch(args.database_url.clone(), steady_start);
    let offered = producing.await??;
    let phase_end = Utc::now();
    wait_handled(target.port, handled_before + offered.produced).await?;
    let cpu = cpu_start.until(&CpuSnapshot::take(target.worker_pid, target.broker_pid));
    let split = Split {
        counters: Counters::parse(&scrape(target.port).await?)
            .since(&Counters::parse(&steady_page)),
        seconds: steady_started.elapsed().as_secs_f64(),
    };
    let beside = beside.finish().await;
    let seconds = started.elapsed().as_secs_f64();
    let pg_after = pg_view::snapshot(admin, db, target.db_name).await?;
    let postgres = pg_view::delta(&pg_before, &pg_after, seconds);
    let startup = match warmup_s {
        0 => None,
        _ => Some(Latencies::read(target.pool, phase_start, steady_start).await?),
    };
    let steady = Latencies::read(target.pool, steady_start, phase_end).await?;
    Ok(LatencyPhase {
        rate,
        warmup_s,
        steady_s,
        offered,
        startup,
        steady,
        beside,
        split,
        postgres,
        cpu,
        seconds,
        vacuum_s,
    })
}

impl LatencyPhase {
    /// Events offered per second over the span they were due in: below the requested rate
    /// when this machine could not generate and send that many (the producer stops at the
    /// span's end whether or not it kept up).
    pub fn achieved_tps(&self) -> f64 {
        self.offered.produced as f64 / (self.warmup_s + self.steady_s).max(1) as f64
    }

    pub fn startup_json(&self) -> Value {
        self.startup
            .as_ref()
            .map_or(Value::Null, Latencies::summary_json)
    }

    pub fn to_json(&self) -> Value {
        json!({
            "offered_rate_tps": self.rate,
            "offered_achieved_tps": self.achieved_tps().round(),
            "offered_events": self.offered.produced,
            "startup_ms": self.startup_json(),
            "steady_ms": self.steady.summary_json(),
            "seconds": self.steady_s,
            "warmup_seconds": self.warmup_s,
            "phase_wall_s": round2(self.seconds),
            "vacuum_before_s": self.vacuum_s.map(round2),
            "steady_cpu": self.cpu.to_json(),
            "spans_are": "by Kafka timestamp: start-up = rows produced in the first warmup_seconds of a rate offered without a break, steady = the rest; before the phase VACUUM (ANALYZE) of the bench database (vacuum_before_s; null: not run) and CHECKPOINT",
        })
    }

    pub fn print(&self) {
        let line = |name: &str, l: &Latencies| {
            eprintln!(
                "   {name:<13} p50 {:>7.1} ms  p95 {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms  ({} rows)",
                l.pct(0.50),
                l.pct(0.95),
                l.pct(0.99),
                l.sorted_ms.last().copied().unwrap_or(0.0),
                l.sorted_ms.len()
            )
        };
        if let Some(v) = self.vacuum_s {
            eprintln!("   VACUUM (ANALYZE) before the phase took {v:.1}s");
        }
        eprintln!(
            "   offered {:.0} tx/s of {} requested ({} events due in {}s, sent and flushed in {:.1}s)",
            self.achieved_tps(),
            self.rate,
            self.offered.produced,
            self.warmup_s + self.steady_s,
            self.offered.elapsed.as_secs_f64()
        );
        if let Some(s) = &self.startup {
            line(&format!("start-up {}s", self.warmup_s), s);
        }
        line(&format!("steady {}s", self.steady_s), &self.steady);
        eprintln!("   {}", self.cpu.line("the steady state"));
        activity::print(
            &format!("the {} tx/s steady state", self.rate),
            &self.beside,
        );
    }
}
