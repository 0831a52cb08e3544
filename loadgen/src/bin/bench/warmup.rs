//! The warm-up before the backlog drain: the same kind of events produced to a topic of
//! their own and drained by a worker into a database dropped after, in rounds until the
//! broker's JIT compiler is quiet. A broker started minutes before compiles its produce,
//! fetch and group paths while it serves (measured: its C1/C2 threads took ~0.2 of the 2
//! cores through a whole cold drain, and still ~0.1 through a drain after one 1M-event
//! round); a long-running broker paid that long ago, so the drain, like the latency phases,
//! runs on a warmed system. What the broker still used during the drain is reported beside
//! it ([`super::machine_cpu`]).

use super::machine_cpu::CpuSnapshot;
use super::worker::{spawn_worker, stop, watch_drain};
use super::{Args, create_database, drop_database, produce_again, round2, round3};
use anyhow::Result;
use serde_json::{Value, json};
use sluice_harness::free_port;
use sluice_loadgen::LoadSpec;
use sqlx::PgConnection;
use std::time::{Duration, Instant};

/// The broker counts as warmed once its JIT threads use at most this many cores through a
/// round's drain.
const JIT_QUIET_CORES: f64 = 0.05;

/// Warm-up rounds of `args.warmup_events` events like `template`'s, until the broker's JIT
/// is quiet or `args.warmup_rounds` ran (one round when the broker is not on this machine,
/// `broker_pid` `None`); `None` when skipped. Each round's database is dropped before the
/// next step, so nothing of it (dirty pages, autovacuum) runs beside the measured drain.
pub async fn warm_up(
    args: &Args,
    admin: &mut PgConnection,
    template: &LoadSpec,
    run: &str,
    broker_pid: Option<u32>,
) -> Result<Option<Value>> {
    if args.warmup_events == 0 || args.warmup_rounds == 0 {
        return Ok(None);
    }
    let started = Instant::now();
    let mut rounds = Vec::new();
    for round in 1..=args.warmup_rounds {
        let (tps, jit_cores) = warm_round(args, admin, template, run, round, broker_pid).await?;
        eprintln!(
            "   warm-up round {round}: {} events produced and drained ({tps:.0} tx/s); broker JIT through its drain: {} cores",
            args.warmup_events,
            jit_cores.map_or("n/a".into(), |c| format!("{c:.2}"))
        );
        rounds.push(json!({
            "events": args.warmup_events,
            "drain_tps": tps.round(),
            "broker_jit_cores": jit_cores.map(round3),
        }));
        if jit_cores.is_none_or(|c| c <= JIT_QUIET_CORES) {
            break;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "   warm-up: {} round(s) in {seconds:.1}s, their databases dropped",
        rounds.len()
    );
    Ok(Some(json!({
        "rounds": rounds,
        "wall_s": round2(seconds),
        "jit_quiet_cores": JIT_QUIET_CORES,
        "is": "before the measured drain: the same kind of events on topics of their own, each round drained by a worker into a database dropped after, until the broker's JIT compiler threads used at most jit_quiet_cores through a round's drain (or the most rounds ran), so the broker has compiled its hot paths (a long-running broker's state); backlog_cpu shows what the broker still used during the drain",
    })))
}

/// One round: produce, drain into a fresh database, drop it. The drain's rate and the
/// broker's JIT cores through it.
async fn warm_round(
    args: &Args,
    admin: &mut PgConnection,
    template: &LoadSpec,
    run: &str,
    round: u32,
    broker_pid: Option<u32>,
) -> Result<(f64, Option<f64>)> {
    let name = format!("{run}_warmup{round}");
    let topic = name.replace('_', "-");
    let produced = produce_again(
        args,
        template,
        &topic,
        format!("warmup{round}"),
        Some(args.warmup_events),
    )
    .await?;
    create_database(admin, &name).await?;
    let port = free_port()?;
    let mut worker = spawn_worker(
        args,
        &args.database_url_of(&name),
        &topic,
        port,
        &format!("worker-warmup{round}.log"),
        &[],
    )?;
    let cpu_before = CpuSnapshot::take(worker.id(), broker_pid);
    let drained = watch_drain(
        &[port],
        produced.produced,
        std::slice::from_mut(&mut worker),
        Duration::from_millis(250),
    )
    .await;
    let cpu = cpu_before.until(&CpuSnapshot::take(worker.id(), broker_pid));
    stop(&mut worker);
    let drained = drained?;
    drop_database(admin, &name).await?;
    let tps = drained.throughput().map_or(0.0, |(tps, _)| tps);
    Ok((tps, cpu.broker_jit_cores))
}
