//! The drain and its raw COPY replay again, as further pairs. The bar holds the drain to the
//! replay of its rows, two measurements a minute apart on a shared 2-core machine where each
//! moved by ±15% independently of the other between runs: one pair decides the ratio less
//! than the machine's noise does. Each further pair repeats the first's steps on a topic and
//! database of its own (dropped after): the same backlog (same seed, its own ids) produced,
//! the database loaded with the COPY baseline's rows as the first drain's was, `VACUUM
//! (ANALYZE)` and `CHECKPOINT`, the drain by a fresh worker, `VACUUM (ANALYZE)`, then the
//! replay of its rows ([`super::copy::Again::Replay`]). The report pools the pairs: rows
//! drained over drain seconds, against rows replayed over replay seconds.

use super::copy::{self, Again};
use super::machine_cpu::{CpuSnapshot, CpuUse};
use super::worker::{spawn_worker, stop, watch_drain};
use super::{Args, create_database, drop_database, pg_view, produce_again, round2};
use anyhow::{Context, Result};
use serde_json::{Value, json};
use sluice_harness::free_port;
use sluice_loadgen::LoadSpec;
use sqlx::{Connection, PgConnection};
use std::time::Duration;

/// One drain and the replay of its rows by raw COPY.
pub struct Pair {
    pub drain_tps: f64,
    pub drain_seconds: f64,
    pub replay_tps: f64,
    pub replay_rows: usize,
    /// Who had the CPU through the drain; none for the first pair (main reports its own).
    pub drain_cpu: Option<CpuUse>,
}

impl Pair {
    pub fn ratio(&self) -> f64 {
        self.drain_tps / self.replay_tps
    }

    fn drained(&self) -> f64 {
        self.drain_tps * self.drain_seconds
    }

    fn replay_seconds(&self) -> f64 {
        self.replay_rows as f64 / self.replay_tps
    }

    pub fn to_json(&self) -> Value {
        json!({
            "drain_tps": self.drain_tps.round(),
            "drain_s": round2(self.drain_seconds),
            "copy_replay_tps": self.replay_tps.round(),
            "copy_replay_rows": self.replay_rows,
            "ratio": round2(self.ratio()),
            "drain_cpu": self.drain_cpu.as_ref().map(CpuUse::to_json),
        })
    }
}

/// Drain rate over replay rate, each pooled over `pairs` (total rows over total seconds).
pub fn pooled_ratio(pairs: &[Pair]) -> f64 {
    let drained: f64 = pairs.iter().map(Pair::drained).sum();
    let drain_seconds: f64 = pairs.iter().map(|p| p.drain_seconds).sum();
    let replayed: f64 = pairs.iter().map(|p| p.replay_rows as f64).sum();
    let replay_seconds: f64 = pairs.iter().map(Pair::replay_seconds).sum();
    (drained / drain_seconds) / (replayed / replay_seconds)
}

/// Pair number `n` (2, 3, …) like the first, whose backlog was `template`'s.
pub async fn again(
    args: &Args,
    admin: &mut PgConnection,
    template: &LoadSpec,
    run: &str,
    n: u32,
    broker_pid: Option<u32>,
) -> Result<Pair> {
    let name = format!("{run}_pair{n}");
    let topic = name.replace('_', "-");
    let id_prefix = format!("pair{n}");
    let produced = produce_again(args, template, &topic, id_prefix.clone(), template.count).await?;
    create_database(admin, &name).await?;
    let db_url = args.database_url_of(&name);
    let measured = drain_and_replay(
        args,
        admin,
        (&name, &db_url, &topic, &id_prefix),
        produced.produced,
        broker_pid,
    )
    .await;
    drop_database(admin, &name).await?;
    let pair = measured?;
    eprintln!(
        "   pair {n}: drained {} at {:.0} tx/s, replayed by raw COPY at {:.0} rows/s: {:.2}",
        produced.produced,
        pair.drain_tps,
        pair.replay_tps,
        pair.ratio()
    );
    Ok(pair)
}

/// The first pair's steps from the loaded database on: `(name, url, topic, id prefix)`.
async fn drain_and_replay(
    args: &Args,
    admin: &mut PgConnection,
    (name, db_url, topic, id_prefix): (&str, &str, &str, &str),
    produced: u64,
    broker_pid: Option<u32>,
) -> Result<Pair> {
    copy::copy_baseline(db_url, args.copy_rows).await?;
    let mut db = PgConnection::connect(db_url).await?;
    pg_view::vacuum_analyze(&mut db).await?;
    pg_view::checkpoint(admin).await?;
    let port = free_port()?;
    let log = format!("worker-{}.log", name.rsplit('_').next().unwrap_or(name));
    let mut worker = spawn_worker(args, db_url, topic, port, &log, &[])?;
    let cpu_before = CpuSnapshot::take(worker.id(), broker_pid);
    let drained = watch_drain(
        &[port],
        produced,
        std::slice::from_mut(&mut worker),
        Duration::from_millis(250),
    )
    .await;
    let cpu = cpu_before.until(&CpuSnapshot::take(worker.id(), broker_pid));
    stop(&mut worker);
    let (drain_tps, drain_seconds) = drained?.throughput().context("worker made no progress")?;
    pg_view::vacuum_analyze(&mut db).await?;
    drop(db);
    let (replay_tps, replay_rows) = copy::copy_drained_again(
        admin,
        db_url,
        name,
        id_prefix,
        Again::Replay {
            preload_rows: args.copy_rows,
        },
    )
    .await?;
    Ok(Pair {
        drain_tps,
        drain_seconds,
        replay_tps,
        replay_rows,
        drain_cpu: Some(cpu),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(drain_tps: f64, drain_seconds: f64, replay_tps: f64, replay_rows: usize) -> Pair {
        Pair {
            drain_tps,
            drain_seconds,
            replay_tps,
            replay_rows,
            drain_cpu: None,
        }
    }

    #[test]
    fn pairs_pool_rows_over_seconds() {
        // 1M rows in 20 s and in 25 s: 2M in 45 s; replayed in 10 s and in 12.5 s.
        let pairs = [
            pair(50_000.0, 20.0, 100_000.0, 1_000_000),
            pair(40_000.0, 25.0, 80_000.0, 1_000_000),
        ];
        let drain = 2_000_000.0 / 45.0;
        let replay = 2_000_000.0 / 22.5;
        assert!((pooled_ratio(&pairs) - drain / replay).abs() < 1e-9);
        assert!((pooled_ratio(&pairs[..1]) - 0.5).abs() < 1e-9);
    }
}
