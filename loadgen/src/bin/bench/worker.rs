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
pub async fn handled(port: u16) -> Result<u64> {
    let page = scrape(port).await?;
    Ok(metrics::sum(&page, "sluice_transactions_total", &[]) as u64)
}

/// A drain watched from the workers' start.
pub struct Drain {
    /// (seconds since the workers started, records handled by all of them)
    pub samples: Vec<(f64, u64)>,
    /// `/metrics` at the first sample with progress and at the last: the drain's span. With
    /// several workers, their pages one after another, so a sum over the page adds them up.
    pub first_page: String,
    pub last_page: String,
}

impl Drain {
    /// Records per second from the first progress to the end, as the main drain is measured.
    pub fn throughput(&self) -> Option<(f64, f64)> {
        let first = self.samples.iter().find(|(_, n)| *n > 0)?;
        Some(rate(first, self.samples.last()?))
    }

    /// Records per second from the first sample at or after `t` seconds to the end.
    pub fn throughput_after(&self, t: f64) -> Option<(f64, f64)> {
        let first = self.samples.iter().find(|(at, _)| *at >= t)?;
        let last = self.samples.last()?;
        (last.0 > first.0).then(|| rate(first, last))
    }
}

/// (records per second, seconds) between two samples.
fn rate((t0, n0): &(f64, u64), (t1, n1): &(f64, u64)) -> (f64, f64) {
    let seconds = (t1 - t0).max(1e-3);
    ((n1 - n0) as f64 / seconds, seconds)
}

/// Sample the workers' counters every `every` until `expected` records are handled in all.
pub async fn watch_drain(
    ports: &[u16],
    expected: u64,
    workers: &mut [Process],
    every: Duration,
) -> Result<Drain> {
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut first_page = None;
    loop {
        for worker in workers.iter_mut() {
            ensure!(
                worker.exited()?.is_none(),
                "a worker exited during the drain"
            );
        }
        // A sample counts only when every worker answered.
        if let Ok(pages) = scrape_all(ports).await {
            let page = pages.concat();
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

/// Wait until the workers' group has settled: every worker has partitions and together
/// they hold all `partitions`. Returns the seconds it took.
pub async fn wait_assigned(ports: &[u16], partitions: i32, workers: &mut [Process]) -> Result<f64> {
    let started = Instant::now();
    loop {
        for worker in workers.iter_mut() {
            ensure!(
                worker.exited()?.is_none(),
                "a worker exited before its group settled"
            );
        }
        if let Ok(pages) = scrape_all(ports).await {
            let held: Vec<f64> = pages
                .iter()
                .map(|p| metrics::sum(p, "sluice_partitions_assigned", &[]))
                .collect();
            if held.iter().all(|&n| n > 0.0) && held.iter().sum::<f64>() >= f64::from(partitions) {
                return Ok(started.elapsed().as_secs_f64());
            }
        }
        ensure!(
            started.elapsed() < Duration::from_secs(120),
            "the workers' group did not settle in 2 minutes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every worker's `/metrics` page, scraped one after another.
async fn scrape_all(ports: &[u16]) -> Result<Vec<String>> {
    let mut pages = Vec::with_capacity(ports.len());
    for &port in ports {
        pages.push(scrape(port).await?);
    }
    Ok(pages)
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
    cpu_seconds_of(&format!("/proc/{pid}/stat"))
}

/// User + system CPU seconds so far from a `/proc/…/stat` file (a process's or a thread's).
pub fn cpu_seconds_of(stat_path: &str) -> f64 {
    std::fs::read_to_string(stat_path)
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
