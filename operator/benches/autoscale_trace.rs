//! Trace benchmark of the autoscaling rule: a deterministic (seeded) 10-minute bursty input
//! replayed against a simulated consumer group, once sized by sluice's rule
//! (`autoscale::sizing::decide` on `autoscale::rates` measurements) and once by KEDA's Kafka
//! scaler rule (`sizing::keda_desired`), each behind the HorizontalPodAutoscaler it would
//! really have.
//!
//! The group: each worker processes up to `WORKER_RATE` records/s; records are keyed evenly
//! over `PARTITIONS` partitions and a partition belongs to one worker, so `n` workers deliver
//! `PARTITIONS / ceil(PARTITIONS / n)` workers' worth (12 partitions on 5 workers: the workers
//! holding 3 partitions bound it to 4). Every change of the worker count costs a rebalance
//! pause of `REBALANCE_PAUSE` seconds in which nothing is processed. Kafka's committed offsets
//! trail the processed records by `COMMIT_TRAIL` seconds (the worker mirrors them after its
//! Postgres commit); both rules see lag through them.
//!
//! - sluice: the operator samples every 15 s; its HPA (children/hpa.rs) has tolerance 0,
//!   scale-up to any size in one step, scale-down 100 %/15 s, stabilization up 0 s / down
//!   300 s (the CRD's defaults).
//! - KEDA: lag every 30 s (KEDA's default pollingInterval), `lagThreshold` = the CRD's
//!   lagPerReplica default (10 000), default HPA behaviour: 10 % tolerance, scale-up at most
//!   max(+100 %, +4 pods) per step, scale-down stabilization 300 s.
//!
//! Replicas change only when the HPA's answer differs from the current count. Printed per
//! rule: scaling actions, ∫ lag dt (record·s), ∫ time lag dt (s·s), peak lag, peak time lag,
//! max replicas and worker·seconds. The bar: sluice below KEDA on both the scaling actions and
//! ∫ lag dt.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::VecDeque;

use sluice_operator::autoscale::rates::{PerWorkerRate, RateConfig, RateWindow, Sample};
use sluice_operator::autoscale::sizing::{self, Policy, Signals, Stabilizer, Verdict};

/// The trace's seed; `AUTOSCALE_TRACE_SEED` (decimal or 0x-hex) replays another trace.
const SEED: u64 = 0x5EED_2026;

fn seed() -> u64 {
    std::env::var("AUTOSCALE_TRACE_SEED")
        .ok()
        .and_then(|v| match v.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16).ok(),
            None => v.parse().ok(),
        })
        .unwrap_or(SEED)
}
const DURATION: f64 = 600.0;
const DT: f64 = 0.1;
const PARTITIONS: i32 = 12;
const MIN_REPLICAS: i32 = 1;
const MAX_REPLICAS: i32 = 12;
/// Records/s one worker processes when it has work.
const WORKER_RATE: f64 = 2_500.0;
const REBALANCE_PAUSE: f64 = 5.0;
const COMMIT_TRAIL: f64 = 1.0;
/// CRD defaults.
const LAG_PER_REPLICA: i64 = 10_000;
const CATCH_UP_SECONDS: f64 = 60.0;
const SCALE_UP_STABILIZATION: f64 = 0.0;
const SCALE_DOWN_STABILIZATION: f64 = 300.0;
const SLUICE_POLL: f64 = 15.0;
const KEDA_POLL: f64 = 30.0;
const KEDA_LAG_THRESHOLD: i64 = LAG_PER_REPLICA;
const HPA_TOLERANCE: f64 = 0.1;

/// Input records/s for every second of the trace, and its bursts and quiet spell.
struct Trace {
    per_second: Vec<f64>,
    bursts: Vec<(f64, f64)>,
    quiet: (f64, f64),
}

/// Base 2 000/s ± 10 %, bursts to 20 000/s (± 5 %) for 30–60 s every 60–120 s, and a quiet
/// spell at 300/s from 330 s to 420 s (no burst overlaps it).
fn trace(seed: u64) -> Trace {
    // Seeded: the same trace on every run.
    let mut rng = StdRng::seed_from_u64(seed);
    let quiet = (330.0, 420.0);
    let mut bursts = Vec::new();
    let mut t = rng.random_range(45.0..75.0);
    while t < DURATION - 30.0 {
        let len = rng.random_range(30.0..60.0);
        let end = (t + len).min(DURATION);
        if end <= quiet.0 || t >= quiet.1 {
            bursts.push((t, end));
        }
        t = end + rng.random_range(60.0..120.0);
    }
    let per_second = (0..DURATION as usize)
        .map(|s| {
            let s = s as f64;
            if bursts.iter().any(|&(a, b)| s >= a && s < b) {
                20_000.0 * rng.random_range(0.95..1.05)
            } else if s >= quiet.0 && s < quiet.1 {
                300.0 * rng.random_range(0.9..1.1)
            } else {
                2_000.0 * rng.random_range(0.9..1.1)
            }
        })
        .collect();
    Trace {
        per_second,
        bursts,
        quiet,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Rule {
    Sluice,
    /// sluice with a per-worker rate measured before the trace (e.g. restored from the status
    /// after an operator restart): the rate-based rule from the first burst on.
    SluiceWarm,
    Keda,
}

#[derive(Default)]
struct Outcome {
    actions: u32,
    ups: u32,
    downs: u32,
    lag_integral: f64,
    time_lag_integral: f64,
    peak_lag: f64,
    peak_time_lag: f64,
    max_replicas: i32,
    worker_seconds: f64,
    holds: u32,
    timeline: Vec<(f64, i32, i32, String)>,
}

/// Workers' worth a group of `n` delivers on `PARTITIONS` partitions.
fn effective_workers(n: i32) -> f64 {
    if n <= 0 {
        return 0.0;
    }
    let n = n.min(PARTITIONS);
    f64::from(PARTITIONS) / f64::from((PARTITIONS + n - 1) / n)
}

fn simulate(rule: Rule, trace: &Trace) -> Outcome {
    let policy = Policy {
        min_replicas: MIN_REPLICAS,
        max_replicas: MAX_REPLICAS,
        partitions: PARTITIONS,
        lag_per_replica: LAG_PER_REPLICA,
        catch_up_seconds: CATCH_UP_SECONDS,
        target_utilisation: sizing::DEFAULT_TARGET_UTILISATION,
        connections_per_worker: 4,
        connection_budget: None,
    };
    let mut window = RateWindow::new(RateConfig::default());
    if rule == Rule::SluiceWarm {
        window.restore_per_worker(PerWorkerRate {
            records_per_sec: WORKER_RATE,
            workers: 0,
            measured_at: f64::NEG_INFINITY,
            fresh: false,
        });
    }
    let (up_window, down_window) = (SCALE_UP_STABILIZATION, SCALE_DOWN_STABILIZATION);
    let mut stabilizer = Stabilizer::new(up_window, down_window);
    let poll = match rule {
        Rule::Sluice | Rule::SluiceWarm => SLUICE_POLL,
        Rule::Keda => KEDA_POLL,
    };

    let mut out = Outcome::default();
    let mut replicas = MIN_REPLICAS;
    let mut pause_until = f64::NEG_INFINITY;
    // Unconsumed records as (arrival time, count), oldest first.
    let mut queue: VecDeque<(f64, f64)> = VecDeque::new();
    let (mut produced, mut processed) = (0.0_f64, 0.0_f64);
    // (time, processed) of the last COMMIT_TRAIL seconds: Kafka's committed offsets.
    let mut history: VecDeque<(f64, f64)> = VecDeque::new();
    let mut next_poll = poll;

    let steps = (DURATION / DT).round() as usize;
    for step in 0..steps {
        let t = step as f64 * DT;
        // Produce.
        let rate = trace.per_second[(t as usize).min(trace.per_second.len() - 1)];
        let n = rate * DT;
        produced += n;
        queue.push_back((t, n));
        // Process, oldest first.
        let mut capacity = if t < pause_until {
            0.0
        } else {
            WORKER_RATE * effective_workers(replicas) * DT
        };
        while capacity > 0.0
            && let Some(front) = queue.front_mut()
        {
            let take = front.1.min(capacity);
            front.1 -= take;
            capacity -= take;
            processed += take;
            if front.1 <= 1e-9 {
                queue.pop_front();
            }
        }
        history.push_back((t, processed));
        while history.len() > 1 && history[1].0 <= t - COMMIT_TRAIL {
            history.pop_front();
        }
        // The truth, integrated.
        let lag = produced - processed;
        let time_lag = queue.front().map_or(0.0, |&(a, _)| t + DT - a);
        out.lag_integral += lag * DT;
        out.time_lag_integral += time_lag * DT;
        out.peak_lag = out.peak_lag.max(lag);
        out.peak_time_lag = out.peak_time_lag.max(time_lag);
        out.worker_seconds += f64::from(replicas) * DT;
        out.max_replicas = out.max_replicas.max(replicas);

        if t + 1e-9 < next_poll {
            continue;
        }
        next_poll += poll;
        // What Kafka shows: end offsets now, committed offsets COMMIT_TRAIL behind.
        let end = produced.floor() as i64;
        let committed = history.front().map_or(0.0, |h| h.1).floor() as i64;
        let seen_lag = (end - committed).max(0);
        let rebalancing = t < pause_until;
        let (wanted, note) = match rule {
            Rule::Sluice | Rule::SluiceWarm => {
                let rates = window.push(Sample {
                    at: t,
                    end,
                    position: committed,
                    lag: seen_lag,
                    workers: replicas as u32,
                    partitions: PARTITIONS as u32,
                    rebalancing,
                });
                let verdict = sizing::decide(
                    &policy,
                    &Signals {
                        lag: Ok(seen_lag),
                        input_rate: rates.input,
                        per_worker_rate: rates.per_worker.map(|p| p.records_per_sec),
                        current: replicas,
                        rebalancing,
                    },
                );
                match verdict {
                    // Hold: the HPA sees no new value and keeps the size.
                    Verdict::Hold(h) => {
                        out.holds += 1;
                        (replicas, h.to_string())
                    }
                    Verdict::Scale(d) => {
                        let note = d.to_string();
                        // sluice's HPA: tolerance 0, one step up, stabilization windows.
                        let s = stabilizer.stabilize(t, d.desired, replicas);
                        (s.clamp(MIN_REPLICAS, MAX_REPLICAS), note)
                    }
                }
            }
            Rule::Keda => {
                let metric = sizing::keda_metric(seen_lag, KEDA_LAG_THRESHOLD, PARTITIONS);
                let raw = sizing::keda_desired(
                    seen_lag,
                    KEDA_LAG_THRESHOLD,
                    PARTITIONS,
                    MIN_REPLICAS,
                    MAX_REPLICAS,
                );
                // Default HPA: 10 % tolerance around the target …
                let ratio = metric as f64 / (KEDA_LAG_THRESHOLD as f64 * f64::from(replicas));
                let desired = if (ratio - 1.0).abs() <= HPA_TOLERANCE {
                    replicas
                } else {
                    raw
                };
                // … stabilization, then at most max(+100 %, +4) per scale-up.
                let s = stabilizer.stabilize(t, desired, replicas);
                let s = s.min((replicas * 2).max(replicas + 4));
                (
                    s.clamp(MIN_REPLICAS, MAX_REPLICAS),
                    format!("lag {seen_lag} → KEDA {raw}"),
                )
            }
        };
        if wanted != replicas {
            out.actions += 1;
            if wanted > replicas {
                out.ups += 1;
            } else {
                out.downs += 1;
            }
            out.timeline.push((t, replicas, wanted, note));
            replicas = wanted;
            pause_until = t + REBALANCE_PAUSE;
        }
    }
    out
}

fn main() {
    let seed = seed();
    let trace = trace(seed);
    let total: f64 = trace.per_second.iter().sum();
    println!("autoscale trace benchmark (seed {seed:#x}, {DURATION} s, dt {DT} s)");
    println!(
        "  input: {:.1} M records; base 2 000/s ±10 %; bursts to 20 000/s at {}; quiet 300/s {:.0}–{:.0} s",
        total / 1e6,
        trace
            .bursts
            .iter()
            .map(|(a, b)| format!("{a:.0}–{b:.0} s"))
            .collect::<Vec<_>>()
            .join(", "),
        trace.quiet.0,
        trace.quiet.1
    );
    println!(
        "  group: {PARTITIONS} partitions, {MIN_REPLICAS}–{MAX_REPLICAS} workers of {WORKER_RATE}/s, \
         rebalance pause {REBALANCE_PAUSE} s, commits trail {COMMIT_TRAIL} s"
    );
    println!(
        "  sluice: poll {SLUICE_POLL} s, catch-up {CATCH_UP_SECONDS} s, utilisation {}, \
         lagPerReplica {LAG_PER_REPLICA} before a rate is measured; HPA tolerance 0, \
         stabilization up {SCALE_UP_STABILIZATION} s / down {SCALE_DOWN_STABILIZATION} s",
        sizing::DEFAULT_TARGET_UTILISATION
    );
    println!(
        "  KEDA:   poll {KEDA_POLL} s, lagThreshold {KEDA_LAG_THRESHOLD}; default HPA: tolerance \
         {HPA_TOLERANCE}, up ≤ max(+100 %, +4)/step, stabilization down {SCALE_DOWN_STABILIZATION} s"
    );
    let sluice = simulate(Rule::Sluice, &trace);
    let warm = simulate(Rule::SluiceWarm, &trace);
    let keda = simulate(Rule::Keda, &trace);
    let rows = [("sluice", &sluice), ("sluice*", &warm), ("KEDA", &keda)];
    for (name, o) in rows {
        println!("\n{name}: scaling actions");
        for (t, from, to, note) in &o.timeline {
            println!("  {t:6.1} s  {from:2} → {to:2}  ({note})");
        }
        if o.holds > 0 {
            println!("  (held {} times: rebalancing)", o.holds);
        }
    }
    println!(
        "\n{:<8} {:>8} {:>6} {:>15} {:>15} {:>10} {:>12} {:>8} {:>10}",
        "rule",
        "actions",
        "up/dn",
        "∫lag dt (rec·s)",
        "∫time-lag (s²)",
        "peak lag",
        "peak t-lag s",
        "max rep",
        "worker·s"
    );
    for (name, o) in rows {
        println!(
            "{:<8} {:>8} {:>6} {:>15.4e} {:>15.0} {:>10.0} {:>12.1} {:>8} {:>10.0}",
            name,
            o.actions,
            format!("{}/{}", o.ups, o.downs),
            o.lag_integral,
            o.time_lag_integral,
            o.peak_lag,
            o.peak_time_lag,
            o.max_replicas,
            o.worker_seconds
        );
    }
    println!(
        "(sluice* = sluice with a per-worker rate of {WORKER_RATE}/s known before the trace, \
         e.g. restored from the status)"
    );
    let fewer_actions = sluice.actions < keda.actions;
    let less_lag = sluice.lag_integral < keda.lag_integral;
    println!(
        "\nbar (sluice < KEDA on actions AND ∫lag dt): actions {} vs {} {}, ∫lag dt {:.4e} vs {:.4e} {} → {}",
        sluice.actions,
        keda.actions,
        if fewer_actions { "✓" } else { "✗" },
        sluice.lag_integral,
        keda.lag_integral,
        if less_lag { "✓" } else { "✗" },
        if fewer_actions && less_lag {
            "PASS"
        } else {
            "NOT MET"
        }
    );
}
