//! Who had the CPU during a phase: the load generator (this process), the worker, the whole
//! machine, and how long tasks waited for a CPU (`/proc/pressure/cpu`). The load generator
//! shares the machine with what it measures; if it takes a core, the figures measure the
//! harness (a busy-wait in its pacing once did exactly that: see the README).

use super::worker::cpu_seconds;
use serde_json::{Value, json};
use std::time::Instant;

pub struct CpuSnapshot {
    at: Instant,
    bench_s: f64,
    worker_s: f64,
    /// (busy, total) jiffies of all CPUs; busy = total - idle - iowait.
    machine: Option<(u64, u64)>,
    /// Microseconds in which at least one runnable task waited for a CPU.
    pressure_some_us: Option<u64>,
}

/// CPU use between two snapshots.
pub struct CpuUse {
    pub seconds: f64,
    /// CPU seconds per second: 1.0 is one core.
    pub bench_cores: f64,
    pub worker_cores: f64,
    pub machine_busy_share: Option<f64>,
    pub pressure_some_share: Option<f64>,
}

impl CpuSnapshot {
    pub fn take(worker_pid: u32) -> Self {
        Self {
            at: Instant::now(),
            bench_s: cpu_seconds(std::process::id()),
            worker_s: cpu_seconds(worker_pid),
            machine: machine_jiffies(),
            pressure_some_us: pressure_some_us(),
        }
    }

    pub fn until(&self, end: &CpuSnapshot) -> CpuUse {
        let seconds = end.at.duration_since(self.at).as_secs_f64().max(1e-3);
        CpuUse {
            seconds,
            bench_cores: (end.bench_s - self.bench_s) / seconds,
            worker_cores: (end.worker_s - self.worker_s) / seconds,
            machine_busy_share: self.machine.zip(end.machine).map(|((b0, t0), (b1, t1))| {
                (b1.saturating_sub(b0)) as f64 / (t1.saturating_sub(t0)).max(1) as f64
            }),
            pressure_some_share: self
                .pressure_some_us
                .zip(end.pressure_some_us)
                .map(|(a, b)| b.saturating_sub(a) as f64 / 1e6 / seconds),
        }
    }
}

impl CpuUse {
    pub fn to_json(&self) -> Value {
        let r3 = |x: f64| (x * 1000.0).round() / 1000.0;
        json!({
            "seconds": r3(self.seconds),
            "bench_cores": r3(self.bench_cores),
            "worker_cores": r3(self.worker_cores),
            "machine_busy_share": self.machine_busy_share.map(r3),
            "cpu_pressure_some_share": self.pressure_some_share.map(r3),
            "measured_as": "CPU seconds per second from /proc/<pid>/stat for sluice-bench itself (its load generator producing the offered rate, and its samplers) and the worker; machine_busy_share = non-idle, non-iowait share of all CPUs (/proc/stat); cpu_pressure_some_share = share of the time at least one runnable task waited for a CPU (/proc/pressure/cpu, null without PSI)",
        })
    }

    pub fn line(&self) -> String {
        let pct = |x: Option<f64>| x.map_or("n/a".into(), |v| format!("{:.0}%", v * 100.0));
        format!(
            "CPU over the steady state: sluice-bench (load generator) {:.2} cores, worker {:.2} cores, machine busy {}, a task waiting for a CPU {} of the time",
            self.bench_cores,
            self.worker_cores,
            pct(self.machine_busy_share),
            pct(self.pressure_some_share)
        )
    }
}

fn machine_jiffies() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let total: u64 = cpu.iter().take(8).sum();
    let idle = cpu.get(3)? + cpu.get(4)?;
    Some((total - idle, total))
}

fn pressure_some_us() -> Option<u64> {
    std::fs::read_to_string("/proc/pressure/cpu")
        .ok()?
        .lines()
        .find(|l| l.starts_with("some "))?
        .split_whitespace()
        .find_map(|f| f.strip_prefix("total="))?
        .parse()
        .ok()
}
