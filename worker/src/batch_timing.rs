//! Where a batch's time goes: `sluice_batch_stage_seconds{stage}` over a small fixed set of
//! stages, and `sluice_batch_wall_seconds` from its first record to its commit. Timed once
//! per batch (per-record work is summed into the batch as it is taken), so the split costs
//! no per-record metric.

use std::time::{Duration, Instant};

/// One step of a batch's life, in order. The sink's statements are one stage each; the
/// Rust work between two statements (building the next one's arrays) counts to the next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Consumer thread: JSON decode and contract validation of every record (summed).
    Decode,
    /// Consumer thread: reading evicted customers' profiles back from Postgres.
    ProfileReload,
    /// Consumer thread: fraud scoring, and serialising the changed profiles.
    Score,
    /// Handed on, waiting for the sink to take it, and at the gate until the batch before
    /// commits (`sink::order`).
    Queue,
    /// Failed write attempts and their backoff before the attempt that committed.
    Retry,
    Begin,
    ClaimIds,
    /// Waiting for the rows and alerts as COPY data, encoded on another thread beside the
    /// id claim (so mostly zero).
    Encode,
    InsertRows,
    InsertAlerts,
    InsertRejected,
    /// Only in batches that checkpoint the profiles.
    UpsertProfiles,
    MoveOffsets,
    Summaries,
    Quality,
    /// Kafka deliveries still awaited after the last statement (they are sent when the ids
    /// are claimed and run beside the statements).
    ProduceDlq,
    ProduceAlerts,
    Commit,
}

const STAGES: usize = 18;

impl Stage {
    pub const ALL: [Stage; STAGES] = [
        Stage::Decode,
        Stage::ProfileReload,
        Stage::Score,
        Stage::Queue,
        Stage::Retry,
        Stage::Begin,
        Stage::ClaimIds,
        Stage::Encode,
        Stage::InsertRows,
        Stage::InsertAlerts,
        Stage::InsertRejected,
        Stage::UpsertProfiles,
        Stage::MoveOffsets,
        Stage::Summaries,
        Stage::Quality,
        Stage::ProduceDlq,
        Stage::ProduceAlerts,
        Stage::Commit,
    ];

    /// The `stage` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Decode => "decode",
            Stage::ProfileReload => "profile_reload",
            Stage::Score => "score",
            Stage::Queue => "queue",
            Stage::Retry => "retry",
            Stage::Begin => "begin",
            Stage::ClaimIds => "claim_ids",
            Stage::Encode => "encode",
            Stage::InsertRows => "insert_rows",
            Stage::Summaries => "summaries",
            Stage::InsertAlerts => "insert_alerts",
            Stage::InsertRejected => "insert_rejected",
            Stage::Quality => "quality",
            Stage::UpsertProfiles => "upsert_profiles",
            Stage::MoveOffsets => "move_offsets",
            Stage::ProduceDlq => "produce_dlq",
            Stage::ProduceAlerts => "produce_alerts",
            Stage::Commit => "commit",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Time per stage of one batch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StageTimes([Duration; STAGES]);

impl StageTimes {
    pub fn add(&mut self, stage: Stage, d: Duration) {
        self.0[stage.index()] += d;
    }

    pub fn get(&self, stage: Stage) -> Duration {
        self.0[stage.index()]
    }

    pub fn merge(&mut self, other: &StageTimes) {
        for s in Stage::ALL {
            self.add(s, other.get(s));
        }
    }

    /// The stages that took any time, as `stage=ms` pairs (for a per-batch debug line).
    pub fn nonzero_ms(&self) -> String {
        Stage::ALL
            .iter()
            .filter(|s| !self.get(**s).is_zero())
            .map(|s| format!("{}={:.1}", s.as_str(), self.get(*s).as_secs_f64() * 1e3))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Consecutive stages timed with one clock: each lap charges the time since the last.
pub struct Laps {
    last: Instant,
    pub times: StageTimes,
}

impl Laps {
    pub fn start() -> Self {
        Self {
            last: Instant::now(),
            times: StageTimes::default(),
        }
    }

    pub fn lap(&mut self, stage: Stage) {
        self.lap_until(stage, Instant::now());
    }

    /// Charge `stage` with the time from the last lap to `at`, if any (work that ran beside
    /// the timed stages costs only what is left of it after them).
    pub fn lap_until(&mut self, stage: Stage, at: Instant) {
        self.times
            .add(stage, at.saturating_duration_since(self.last));
        self.last = self.last.max(at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stage_has_its_own_slot_and_label() {
        let mut t = StageTimes::default();
        for (i, s) in Stage::ALL.iter().enumerate() {
            assert_eq!(s.index(), i, "{s:?} out of order in ALL");
            t.add(*s, Duration::from_millis(i as u64 + 1));
        }
        let labels: std::collections::HashSet<_> = Stage::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(labels.len(), STAGES);
        let mut sum = StageTimes::default();
        sum.merge(&t);
        sum.merge(&t);
        assert_eq!(
            sum.get(Stage::Commit),
            Duration::from_millis(2 * STAGES as u64)
        );
    }

    #[test]
    fn laps_charge_the_time_since_the_previous_lap() {
        let mut laps = Laps::start();
        std::thread::sleep(Duration::from_millis(5));
        laps.lap(Stage::Begin);
        laps.lap(Stage::Commit);
        assert!(laps.times.get(Stage::Begin) >= Duration::from_millis(5));
        assert!(laps.times.get(Stage::Commit) < Duration::from_millis(5));
        // Work that finished before the last lap costs nothing more.
        laps.lap_until(
            Stage::ProduceDlq,
            Instant::now() - Duration::from_millis(50),
        );
        assert_eq!(laps.times.get(Stage::ProduceDlq), Duration::ZERO);
    }
}
