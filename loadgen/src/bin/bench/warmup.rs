//! The warm-up before the backlog drain: the same kind of events produced to a topic of
//! their own and drained by a worker into a database dropped after. A broker started
//! minutes before compiles its produce, fetch and group paths with its JIT while it serves
//! (measured: its C1/C2 threads took ~0.2 of the 2 cores through a whole cold drain, ~0.05
//! through a second one); a long-running broker paid that long ago, so the drain, like the
//! latency phases, runs on a warmed system. What the broker still used during the drain is
//! reported beside it ([`super::machine_cpu`]).

use super::worker::{spawn_worker, stop, watch_drain};
use super::{Args, round2};
use anyhow::Result;
use serde_json::{Value, json};
use sluice_harness::free_port;
use sluice_loadgen::{GeneratorConfig, LoadSpec, ensure_topic, produce};
use sqlx::PgConnection;
use std::time::{Duration, Instant};

/// Produce `args.warmup_events` events like `template`'s and drain them; `None` when
/// skipped. The database is dropped before returning, so nothing of it (dirty pages,
/// autovacuum) runs beside the measured drain.
pub async fn warm_up(
    args: &Args,
    admin: &mut PgConnection,
    template: &LoadSpec,
    run: &str,
) -> Result<Option<Value>> {
    if args.warmup_events == 0 {
        return Ok(None);
    }
    let started = Instant::now();
    let name = format!("{run}_warmup");
    let topic = name.replace('_', "-");
    ensure_topic(&args.brokers, &topic, args.partitions).await?;
    let spec = LoadSpec {
        topic: topic.clone(),
        count: Some(args.warmup_events),
        progress: false,
        generator: GeneratorConfig {
            id_prefix: "warmup".into(),
            ..template.generator.clone()
        },
        ..template.clone()
    };
    let produced = tokio::task::spawn_blocking(move || produce(&spec)).await??;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut *admin)
        .await?;
    let port = free_port()?;
    let mut worker = spawn_worker(
        args,
        &args.database_url_of(&name),
        &topic,
        port,
        "worker-warmup.log",
        &[],
    )?;
    let drained = watch_drain(
        &[port],
        produced.produced,
        std::slice::from_mut(&mut worker),
        Duration::from_millis(250),
    )
    .await;
    stop(&mut worker);
    let drained = drained?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {name} WITH (FORCE)"
    )))
    .execute(&mut *admin)
    .await?;
    let tps = drained.throughput().map_or(0.0, |(tps, _)| tps);
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "   warm-up: {} events produced and drained ({tps:.0} tx/s) in {seconds:.1}s, database dropped",
        produced.produced
    );
    Ok(Some(json!({
        "events": produced.produced,
        "drain_tps": tps.round(),
        "wall_s": round2(seconds),
        "is": "before the measured drain: the same kind of events on a topic of their own, drained by a worker into a database dropped after, so the broker's JIT has compiled its hot paths (a long-running broker's state); backlog_cpu shows what the broker still used during the drain",
    })))
}
