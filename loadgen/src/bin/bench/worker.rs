//! The worker under test: starting and stopping it, reading its counters and `/proc`.

use super::Args;
use anyhow::{Context, Result, ensure};
use sluice_harness::{Process, get, metrics, wait_for};
use std::process::Command;
use std::time::{Duration, Instant};

/// `env` is applied last, so it overrides the defaults here.
pub fn spawn_worker(
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
pub fn stop(worker: &mut Process) {
    if let Err(e) = worker.terminate(Duration::from_secs(60)) {
        eprintln!("   warning: {e:#}");
    }
}

/// The worker's `/metrics` page.
pub async fn scrape(port: u16) -> Result<String> {
    get(port, "/metrics").await?.ok()
}

/// Records the worker has handled, from its `sluice_transactions_total`.
async fn handled(port: u16) -> Result<u64> {
    let page = scrape(port).await?;
    Ok(metrics::sum(&page, "sluice_transactions_total", &[]) as u64)
}

/// A drain watched from the worker's start.
pub struct Drain {
    /// (seconds since the worker started, records handled)
    pub samples: Vec<(f64, u64)>,
    /// `/metrics` at the first sample with progress and at the last: the drain's span.
    pub first_page: String,
    pub last_page: String,
}

/// Sample the worker's counters every `every` until `expected` records are handled.
pub async fn watch_drain(
    port: u16,
    expected: u64,
    worker: &mut Process,
    every: Duration,
) -> Result<Drain> {
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut first_page = None;
    loop {
        ensure!(
            worker.exited()?.is_none(),
            "the worker exited during the drain"
        );
        if let Ok(page) = scrape(port).await {
            let n = metrics::sum(&page, "sluice_transactions_total", &[]) as u64;
            samples.push((started.elapsed().as_secs_f64(), n));
            if n > 0 && first_page.is_none() {
                first_page = Some(page.clone());
            }
            if n >= expected {
                return Ok(Drain {
                    samples,
                    first_page: first_page.unwrap_or_default(),
                    last_page: page,
                });
            }
        }
        ensure!(
            started.elapsed() < Duration::from_secs(900),
            "backlog not drained in 15 minutes"
        );
        tokio::time::sleep(every).await;
    }
}

pub async fn wait_handled(port: u16, expected: u64) -> Result<()> {
    wait_for(
        "the latency phase drained",
        Duration::from_secs(300),
        || async { handled(port).await.is_ok_and(|n| n >= expected) },
    )
    .await
}

/// User + system CPU seconds of a process so far (USER_HZ = 100 on Linux).
pub fn cpu_seconds(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let f: Vec<&str> = s.rsplit_once(')')?.1.split_whitespace().collect();
            Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / 100.0)
        })
        .unwrap_or(0.0)
}

pub fn peak_rss_mb(pid: u32) -> f64 {
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
