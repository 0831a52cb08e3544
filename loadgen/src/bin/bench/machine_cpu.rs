//! Who had the CPU during a phase: the load generator (this process), the worker, the Kafka
//! broker and its JIT compiler, the whole machine, and how long tasks waited for a CPU
//! (`/proc/pressure/cpu`). The load generator shares the machine with what it measures; if
//! it takes a core, the figures measure the harness (a busy-wait in its pacing once did
//! exactly that: see the README). A broker JVM started minutes before compiles its hot paths
//! while it serves: a cost a long-running broker has paid long ago.

use super::round3;
use super::worker::{cpu_seconds, cpu_seconds_of};
use serde_json::{Value, json};
use std::time::Instant;

pub struct CpuSnapshot {
    at: Instant,
    bench_s: f64,
    worker_s: f64,
    broker: Option<BrokerCpu>,
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
    /// The broker JVM's cores and, of those, its JIT compiler threads'.
    pub broker_cores: Option<f64>,
    pub broker_jit_cores: Option<f64>,
    pub machine_busy_share: Option<f64>,
    pub pressure_some_share: Option<f64>,
}

impl CpuSnapshot {
    /// `broker_pid` from [`broker_pid`].
    pub fn take(worker_pid: u32, broker_pid: Option<u32>) -> Self {
        Self {
            at: Instant::now(),
            bench_s: cpu_seconds(std::process::id()),
            worker_s: cpu_seconds(worker_pid),
            broker: broker_pid.and_then(BrokerCpu::take),
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
            broker_cores: broker_delta(&self.broker, &end.broker, seconds, |b| b.total_s),
            broker_jit_cores: broker_delta(&self.broker, &end.broker, seconds, |b| b.jit_s),
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
        json!({
            "seconds": round3(self.seconds),
            "bench_cores": round3(self.bench_cores),
            "worker_cores": round3(self.worker_cores),
            "broker_cores": self.broker_cores.map(round3),
            "broker_jit_cores": self.broker_jit_cores.map(round3),
            "machine_busy_share": self.machine_busy_share.map(round3),
            "cpu_pressure_some_share": self.pressure_some_share.map(round3),
            "measured_as": "CPU seconds per second from /proc/<pid>/stat for sluice-bench itself (its load generator producing the offered rate, and its samplers), the worker and the Kafka broker (the JVM running kafka.Kafka that advertises the bootstrap address; null if not on this machine), broker_jit_cores = its C1/C2 compiler threads (/proc/<pid>/task); machine_busy_share = non-idle, non-iowait share of all CPUs (/proc/stat); cpu_pressure_some_share = share of the time at least one runnable task waited for a CPU (/proc/pressure/cpu, null without PSI)",
        })
    }

    /// `span` names what was measured ("the steady state", "the drain").
    pub fn line(&self, span: &str) -> String {
        let pct = |x: Option<f64>| x.map_or("n/a".into(), |v| format!("{:.0}%", v * 100.0));
        let cores = |x: Option<f64>| x.map_or("n/a".into(), |v| format!("{v:.2}"));
        format!(
            "CPU over {span}: sluice-bench (load generator) {:.2} cores, worker {:.2}, Kafka broker {} (its JIT compiler {}), machine busy {}, a task waiting for a CPU {} of the time",
            self.bench_cores,
            self.worker_cores,
            cores(self.broker_cores),
            cores(self.broker_jit_cores),
            pct(self.machine_busy_share),
            pct(self.pressure_some_share)
        )
    }
}

/// CPU seconds of the Kafka broker's JVM so far: all its threads, and its JIT compiler
/// threads ("C1 CompilerThre…", "C2 CompilerThre…").
struct BrokerCpu {
    total_s: f64,
    jit_s: f64,
}

impl BrokerCpu {
    fn take(pid: u32) -> Option<Self> {
        let jit_s = std::fs::read_dir(format!("/proc/{pid}/task"))
            .ok()?
            .filter_map(|e| e.ok())
            .filter(|task| {
                std::fs::read_to_string(task.path().join("comm"))
                    .is_ok_and(|c| c.starts_with("C1 Compiler") || c.starts_with("C2 Compiler"))
            })
            .filter_map(|task| task.file_name().to_str()?.parse::<u32>().ok())
            .map(|tid| cpu_seconds_of(&format!("/proc/{pid}/task/{tid}/stat")))
            .sum();
        Some(Self {
            total_s: cpu_seconds(pid),
            jit_s,
        })
    }
}

/// The Kafka broker behind `bootstrap` on this machine: the process running `kafka.Kafka`
/// whose properties file (its last argument, as hack/kafka.sh starts it) advertises the
/// bootstrap address. `None` when the broker runs elsewhere.
pub fn broker_pid(bootstrap: &str) -> Option<u32> {
    let address = bootstrap.split(',').next()?.trim();
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let args: Vec<&[u8]> = cmdline
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .collect();
            args.contains(&&b"kafka.Kafka"[..])
                && args
                    .last()
                    .and_then(|path| std::fs::read_to_string(std::str::from_utf8(path).ok()?).ok())
                    .is_some_and(|props| {
                        props
                            .lines()
                            .filter_map(|l| l.strip_prefix("advertised.listeners="))
                            .flat_map(|listeners| listeners.split(','))
                            .any(|l| l.trim().ends_with(&format!("://{address}")))
                    })
        })
}

/// Cores a broker figure took between two snapshots.
fn broker_delta(
    start: &Option<BrokerCpu>,
    end: &Option<BrokerCpu>,
    seconds: f64,
    figure: impl Fn(&BrokerCpu) -> f64,
) -> Option<f64> {
    let (start, end) = (start.as_ref()?, end.as_ref()?);
    Some((figure(end) - figure(start)) / seconds)
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
