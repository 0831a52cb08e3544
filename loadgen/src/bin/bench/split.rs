//! The time split per batch inside the worker, per bench phase: the worker's
//! `sluice_batch_stage_seconds{stage}` and `sluice_batch_wall_seconds` scraped before and
//! after the phase, as mean ms per batch and share of the batch's wall time.

use serde_json::{Value, json};
use sluice_harness::metrics;
use std::collections::BTreeMap;

/// Every stage the worker reports, in batch order (`worker/src/batch_timing.rs`).
pub const STAGES: [&str; 18] = [
    "decode",
    "profile_reload",
    "score",
    "queue",
    "retry",
    "begin",
    "claim_ids",
    "encode",
    "insert_rows",
    "insert_alerts",
    "insert_rejected",
    "upsert_profiles",
    "move_offsets",
    "summaries",
    "quality",
    "produce_dlq",
    "produce_alerts",
    "commit",
];

/// Stages on the consumer thread; the others from `retry` on are the sink's.
const CONSUMER: [&str; 3] = ["decode", "profile_reload", "score"];

/// Cumulative figures of one `/metrics` page (or the difference of two).
#[derive(Clone, Debug, Default)]
pub struct Counters {
    stage_s: BTreeMap<&'static str, f64>,
    batches: f64,
    wall_s: f64,
    records: f64,
}

impl Counters {
    pub fn parse(page: &str) -> Self {
        let stage_s = STAGES
            .iter()
            .map(|s| {
                (
                    *s,
                    metrics::sum(page, "sluice_batch_stage_seconds_sum", &[("stage", s)]),
                )
            })
            .collect();
        Self {
            stage_s,
            batches: metrics::sum(page, "sluice_batch_wall_seconds_count", &[]),
            wall_s: metrics::sum(page, "sluice_batch_wall_seconds_sum", &[]),
            records: metrics::sum(page, "sluice_batch_records_sum", &[]),
        }
    }

    /// What happened between `before` and `self`.
    pub fn since(&self, before: &Counters) -> Counters {
        Counters {
            stage_s: STAGES
                .iter()
                .map(|s| (*s, self.stage(s) - before.stage(s)))
                .collect(),
            batches: self.batches - before.batches,
            wall_s: self.wall_s - before.wall_s,
            records: self.records - before.records,
        }
    }

    /// Sum of two phases' differences (the drains of one scoring mode).
    pub fn plus(&self, other: &Counters) -> Counters {
        Counters {
            stage_s: STAGES
                .iter()
                .map(|s| (*s, self.stage(s) + other.stage(s)))
                .collect(),
            batches: self.batches + other.batches,
            wall_s: self.wall_s + other.wall_s,
            records: self.records + other.records,
        }
    }

    fn stage(&self, s: &str) -> f64 {
        self.stage_s.get(s).copied().unwrap_or(0.0)
    }
}

/// One phase's split: `counters` is the phase's difference, `seconds` its wall span.
pub struct Split {
    pub counters: Counters,
    pub seconds: f64,
}

impl Split {
    fn ms_per_batch(&self, s: &str) -> f64 {
        self.counters.stage(s) * 1000.0 / self.counters.batches.max(1.0)
    }

    fn share(&self, s: &str) -> f64 {
        self.counters.stage(s) / self.counters.wall_s.max(1e-9)
    }

    /// Wall time no stage accounts for: waiting for records while the batch fills, and
    /// the poll loop's own work.
    fn other_share(&self) -> f64 {
        1.0 - STAGES.iter().map(|s| self.share(s)).sum::<f64>()
    }

    /// Busy time of a thread (sum of its stages) over the phase's wall span.
    fn busy(&self, stages: &[&str]) -> f64 {
        stages.iter().map(|s| self.counters.stage(s)).sum::<f64>() / self.seconds.max(1e-9)
    }

    fn sink_busy(&self) -> f64 {
        let sink: Vec<&str> = STAGES[4..].to_vec();
        self.busy(&sink)
    }

    pub fn to_json(&self) -> Value {
        let c = &self.counters;
        let stages: serde_json::Map<String, Value> = STAGES
            .iter()
            .map(|s| {
                (
                    s.to_string(),
                    json!({"ms_per_batch": r3(self.ms_per_batch(s)), "share": r3(self.share(s))}),
                )
            })
            .collect();
        json!({
            "batches": c.batches,
            "records_per_batch": r1(c.records / c.batches.max(1.0)),
            "wall_ms_per_batch": r3(c.wall_s * 1000.0 / c.batches.max(1.0)),
            "stages": stages,
            "other_share": r3(self.other_share()),
            "phase_seconds": r1(self.seconds),
            "sink_busy_share": r3(self.sink_busy()),
            "consumer_busy_share": r3(self.busy(&CONSUMER)),
        })
    }
}

/// The printed table: one column per phase, "mean ms per batch (share of wall time)".
pub fn print(phases: &[(&str, &Split)]) {
    let mut out = String::from(
        "== time split per batch (mean ms per batch, and share of the batch's wall time)\n",
    );
    let row = |out: &mut String, name: &str, cells: Vec<String>| {
        out.push_str(&format!("   {name:<17}"));
        for c in cells {
            out.push_str(&format!("{c:>19}"));
        }
        out.push('\n');
    };
    row(
        &mut out,
        "stage",
        phases.iter().map(|(n, _)| n.to_string()).collect(),
    );
    for s in STAGES {
        let cells = phases
            .iter()
            .map(|(_, p)| format!("{:.2} ({:>4.1}%)", p.ms_per_batch(s), 100.0 * p.share(s)))
            .collect();
        row(&mut out, s, cells);
    }
    let cells = |f: &dyn Fn(&Split) -> String| phases.iter().map(|(_, p)| f(p)).collect();
    row(
        &mut out,
        "other (filling)",
        cells(&|p| format!("({:>4.1}%)", 100.0 * p.other_share())),
    );
    row(
        &mut out,
        "batch wall",
        cells(&|p| {
            format!(
                "{:.2} ms",
                p.counters.wall_s * 1000.0 / p.counters.batches.max(1.0)
            )
        }),
    );
    row(
        &mut out,
        "records/batch",
        cells(&|p| format!("{:.0}", p.counters.records / p.counters.batches.max(1.0))),
    );
    row(
        &mut out,
        "batches",
        cells(&|p| format!("{:.0}", p.counters.batches)),
    );
    row(
        &mut out,
        "sink busy",
        cells(&|p| format!("{:.0}% of {:.0}s", 100.0 * p.sink_busy(), p.seconds)),
    );
    row(
        &mut out,
        "consumer busy",
        cells(&|p| format!("{:.0}%", 100.0 * p.busy(&CONSUMER))),
    );
    eprint!("{out}");
}

pub fn meaning() -> Value {
    json!(
        "per phase, from the worker's sluice_batch_stage_seconds / sluice_batch_wall_seconds scraped before and after it: ms_per_batch = mean time of the stage per committed batch; share = its part of the batch's wall time (first record taken -> commit); other_share = the rest (the batch filling while records arrive, the poll loop); sink_busy_share / consumer_busy_share = the sink's / the consumer thread's stage time over the phase's wall span (1 = never idle; the sink's reaches 2 while two batches overlap)"
    )
}

fn r1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_stages_are_the_workers_in_its_order() {
        let worker: Vec<&str> = sluice_worker::batch_timing::Stage::ALL
            .iter()
            .map(|s| s.as_str())
            .collect();
        assert_eq!(super::STAGES.to_vec(), worker);
    }
}
