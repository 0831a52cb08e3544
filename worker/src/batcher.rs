//! The batcher: takes each polled record into the open batch (validated, classified, its
//! lateness decided), scores the batch and hands it to the sink, and says when the sink is
//! so far behind that the consumer must hold back (backpressure; the waiting itself is the
//! consumer's, since it decides when Kafka is polled).
//!
//! It also keeps what the consumer knows of every owned partition: the stored offset the
//! batches handed on so far will leave, the next offset expected from Kafka, the watermark,
//! and which records are taken but not yet committed.
//!
//! Customer profiles are checkpointed on a cadence (`fraud.profile_checkpoint_ms`), not with
//! every batch: a checkpoint carries the profiles of one partition's customers changed since
//! its last one, and the offset they are current to. The owned partitions take turns, evenly
//! spread over the cadence, so no batch carries every profile at once (that one batch would
//! be a latency spike); all of them go together at shutdown and when too many are dirty. A worker that takes a partition over
//! warms its profiles and replays the records between that offset and the stored one into
//! them (scored, never written again): the Flink way, one profile write per customer per
//! checkpoint instead of one per batch.

use crate::batch::{Accepted, Batch, Rejected, duplicate};
use crate::batch_timing::{Laps, Stage};
use crate::db::StoredOffset;
use crate::raw_chunks::RawChunks;
use crate::score::{ProfileRow, ScoringStage};
use crate::summaries::Watermark;
use crate::validate::{TimeBounds, ValidTransaction, mask_pans, validate};
use chrono::{DateTime, Utc};
use prometheus::IntCounter;
use sluice_api::WorkerConfig;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// What the batcher knows of one partition this worker owns.
#[derive(Debug)]
pub struct OwnedPartition {
    /// The stored offset once every batch handed on so far commits (`None`: nothing stored).
    stored: Option<i64>,
    /// Next offset expected from Kafka; anything lower was already taken.
    seen: i64,
    /// The reference for late events. Starts from the stored value, so replays classify as
    /// before.
    watermark: Watermark,
    /// Taken, not yet committed (`sluice_consumer_lag_seconds`).
    pub uncommitted: Uncommitted,
    /// The offset stored in Postgres as far as this worker knows: read when it took the
    /// partition, then moved by each batch it commits. Kafka's copy is refreshed from it.
    pub committed: Option<i64>,
    /// Records below this offset are stored already: they are only replayed into the
    /// profiles, which were persisted at an earlier offset.
    replay_until: i64,
}

impl OwnedPartition {
    /// A partition at its stored offset; with `replay`, first replaying the records since
    /// its profiles were persisted.
    pub fn at(stored: &StoredOffset, replay: bool) -> Self {
        let replay_from = match (stored.profiles_offset, stored.next) {
            (Some(from), Some(next)) if replay && from < next => Some(from),
            _ => None,
        };
        Self {
            stored: stored.next,
            seen: replay_from.or(stored.next).unwrap_or(0),
            watermark: Watermark::stored(stored.watermark),
            uncommitted: Uncommitted::default(),
            committed: stored.next,
            replay_until: stored.next.unwrap_or(0),
        }
    }

    /// Where fetching starts: the replay's first record, or the stored offset (`None`:
    /// nothing stored).
    pub fn fetch_from(&self) -> Option<i64> {
        self.stored.map(|_| self.seen)
    }

    /// Records still to replay before the stored offset (a lower bound: offsets without a
    /// record, e.g. transaction markers, are never delivered).
    pub fn replay_left(&self) -> i64 {
        (self.replay_until - self.seen).max(0)
    }

    /// The offset this partition's profiles are current to once everything handed on so
    /// far commits: all its records handed on are scored, and so is every record replayed.
    fn profiles_at(&self) -> Option<i64> {
        if self.seen < self.replay_until {
            Some(self.seen)
        } else {
            self.stored
        }
    }
}

/// Records of one partition taken but not yet committed, for its time lag: the offset and
/// Kafka timestamp of the first record of each batch not yet committed (batches are
/// contiguous per partition, so the front is the oldest uncommitted record).
#[derive(Debug, Default)]
pub struct Uncommitted {
    firsts: VecDeque<(i64, DateTime<Utc>)>,
    /// The open (not yet handed on) batch already has an entry for this partition.
    open: bool,
}

impl Uncommitted {
    fn take(&mut self, offset: i64, kafka_time: DateTime<Utc>) {
        if !self.open {
            self.firsts.push_back((offset, kafka_time));
            self.open = true;
        }
    }

    /// Everything below `next` is committed.
    pub fn committed(&mut self, next: i64) {
        while self.firsts.front().is_some_and(|(o, _)| *o < next) {
            self.firsts.pop_front();
        }
    }

    /// Seconds since the oldest uncommitted record's Kafka timestamp; 0 when none is held.
    pub fn time_lag(&self, now: DateTime<Utc>) -> f64 {
        self.firsts.front().map_or(0.0, |(_, t)| {
            ((now - *t).num_milliseconds().max(0) as f64) / 1000.0
        })
    }
}

/// The open batch and the partitions it draws from. Shared by the poll loop and the
/// rebalance callbacks (both on the poll thread).
pub struct Batcher {
    pub batch: Batch,
    /// Bumped on every resync; batches of older generations are dropped by the sink.
    pub generation: u64,
    pub owned: HashMap<i32, OwnedPartition>,
    pub scorer: Box<dyn ScoringStage>,
    /// Valid records before their partition's stored offset, to replay into the profiles.
    replay: Vec<(ValidTransaction, i32)>,
    raw_chunks: RawChunks,
    /// Checkpoint the profiles at most this often (zero: with every batch)…
    checkpoint_every: Duration,
    /// …or once this many are dirty, which bounds memory (dirty profiles are never evicted).
    checkpoint_dirty_limit: usize,
    /// When the last partition's turn was, and which partition it was.
    last_checkpoint: Instant,
    last_checkpointed: i32,
    checkpoint_requested: bool,
    replayed: IntCounter,
    checkpoints: IntCounter,
    max_records: usize,
    max_wait: Duration,
    retention_days: u32,
    max_future_skew_secs: i64,
    allowed_lateness: chrono::Duration,
}

impl Batcher {
    /// `replayed` and `checkpoints` count records replayed into profiles and checkpoints
    /// handed on.
    pub fn new(
        config: &WorkerConfig,
        scorer: Box<dyn ScoringStage>,
        replayed: IntCounter,
        checkpoints: IntCounter,
    ) -> Self {
        Self {
            batch: Batch::new(0),
            generation: 0,
            owned: HashMap::new(),
            scorer,
            replay: Vec::new(),
            raw_chunks: RawChunks::default(),
            checkpoint_every: Duration::from_millis(config.fraud.profile_checkpoint_ms),
            checkpoint_dirty_limit: (config.fraud.profile_capacity / 2).max(1),
            last_checkpoint: Instant::now(),
            last_checkpointed: -1,
            checkpoint_requested: false,
            replayed,
            checkpoints,
            max_records: config.batch.max_records,
            max_wait: Duration::from_millis(config.batch.max_wait_ms),
            retention_days: config.retention.days,
            max_future_skew_secs: config.validation.max_future_skew_secs,
            allowed_lateness: chrono::Duration::seconds(
                config.analytics.allowed_lateness_secs.min(i64::MAX as u64) as i64,
            ),
        }
    }

    pub fn owned_partitions(&self) -> Vec<i32> {
        self.owned.keys().copied().collect()
    }

    /// Full, or its first record waited `batch.max_wait_ms`, or profiles wait for their
    /// checkpoint: hand it on when the sink has room.
    pub fn due(&self) -> bool {
        let full_or_waited = !self.batch.is_empty()
            && (self.batch.len() >= self.max_records
                || self.batch.opened_at.elapsed() >= self.max_wait);
        full_or_waited || (self.scorer.dirty_len() > 0 && self.checkpoint_turn())
    }

    /// Whether a partition's checkpoint is due (cheap: asked before every poll).
    fn checkpoint_turn(&self) -> bool {
        self.scorer.stateful()
            && (self.checkpoint_all()
                || self.last_checkpoint.elapsed()
                    >= self.checkpoint_every / self.owned.len().max(1) as u32)
    }

    /// Every partition checkpoints at once: asked to (shutdown), too many profiles dirty,
    /// or no cadence.
    fn checkpoint_all(&self) -> bool {
        self.checkpoint_requested
            || self.checkpoint_every.is_zero()
            || self.scorer.dirty_len() >= self.checkpoint_dirty_limit
    }

    /// The partitions whose profiles the next hand-on checkpoints (those with a stored
    /// offset): all of them (see [`Self::checkpoint_all`]), otherwise the next one in turn
    /// once its share of the cadence has passed.
    fn checkpoint_plan(&self) -> Vec<i32> {
        if !self.checkpoint_turn() {
            return Vec::new();
        }
        let mut stored: Vec<i32> = self
            .owned
            .iter()
            .filter(|(_, o)| o.stored.is_some())
            .map(|(p, _)| *p)
            .collect();
        stored.sort_unstable();
        if self.checkpoint_all() {
            return stored;
        }
        let next = stored
            .iter()
            .find(|p| **p > self.last_checkpointed)
            .or(stored.first());
        next.map(|p| vec![*p]).unwrap_or_default()
    }

    /// Make the next hand-on a checkpoint (shutting down: the next owner replays nothing).
    pub fn request_checkpoint(&mut self) {
        self.checkpoint_requested = true;
    }

    /// Records waiting to be replayed into the profiles.
    pub fn replay_buffered(&self) -> usize {
        self.replay.len()
    }

    /// The open batch holds `batch.max_records`: while the sink has no room for it, the
    /// consumer takes no more records. (It once grew to twice that while the sink was busy;
    /// that held 35 MB more in memory at the bench's backlog drain and drained no faster.)
    pub fn full(&self) -> bool {
        self.batch.len() >= self.max_records
    }

    /// How long the consumer may block in poll before the open batch is due.
    pub fn poll_timeout(&self) -> Duration {
        if self.batch.is_empty() {
            Duration::from_millis(100)
        } else {
            // At least a little: with an overdue batch and a busy sink, don't spin. Whole
            // milliseconds: rdkafka blocks for the whole ms of a timeout and then spins
            // through what is left of it (it rounds the remainder down to 0 ms).
            let left = self
                .max_wait
                .saturating_sub(self.batch.opened_at.elapsed())
                .max(Duration::from_millis(2));
            Duration::from_millis(left.as_micros().div_ceil(1000) as u64)
        }
    }

    /// Take one record of `partition` into the open batch; records of partitions not owned,
    /// or below what was already taken (a re-fetch after a seek or rebalance), are skipped.
    pub fn take(
        &mut self,
        partition: i32,
        offset: i64,
        payload: &[u8],
        kafka_timestamp: DateTime<Utc>,
    ) {
        let Some(owned) = self.owned.get_mut(&partition) else {
            return;
        };
        if offset < owned.seen {
            return;
        }
        let started = Instant::now();
        let bounds = TimeBounds::around(Utc::now(), self.retention_days, self.max_future_skew_secs);
        if offset < owned.replay_until {
            // Stored already; only its effect on the customer's profile is missing. A record
            // rejected the first time changed no profile, so it is skipped again.
            if let Ok(valid) = validate(payload, bounds) {
                self.replay.push((valid, partition));
            }
            owned.seen = offset + 1;
            return;
        }
        match validate(payload, bounds) {
            Ok(valid) if self.batch.holds(&valid.tx.transaction_id) => {
                // A repeat within the batch: rejected without touching the customer's profile.
                let repeat = duplicate(
                    partition,
                    offset,
                    kafka_timestamp,
                    &valid.tx.transaction_id,
                    payload,
                );
                self.batch.push_rejected(repeat);
            }
            Ok(valid) => {
                let late = owned.watermark.observe(
                    valid.event_time,
                    kafka_timestamp,
                    self.allowed_lateness,
                );
                self.batch.push_accepted(Accepted {
                    valid,
                    partition,
                    offset,
                    kafka_timestamp,
                    received_at: started,
                    raw: self.raw_chunks.keep(payload),
                    verdict: None,
                    late,
                });
            }
            Err(rejection) => self.batch.push_rejected(Rejected {
                partition,
                offset,
                kafka_timestamp,
                reason: rejection.reason,
                detail: rejection.detail,
                transaction_id: None,
                raw_masked: mask_pans(payload),
            }),
        }
        owned.seen = offset + 1;
        owned.uncommitted.take(offset, kafka_timestamp);
        self.batch
            .advance(partition, offset, owned.stored, owned.watermark.get());
        self.batch.took(started);
    }

    /// Score the batch's records not scored yet, in order, after reading back in one query
    /// (`reload`) the profiles of customers that were evicted from memory. Scoring here rather
    /// than as records arrive is what lets that read be one per batch.
    fn score_unscored(&mut self, reload: &dyn Fn(&[String]) -> Vec<ProfileRow>, laps: &mut Laps) {
        let to_reload = {
            let mut customers = self
                .batch
                .unscored()
                .iter()
                .map(|r| r.valid.tx.customer_id.as_str());
            self.scorer.to_reload(&mut customers)
        };
        if !to_reload.is_empty() {
            laps.lap(Stage::Score);
            self.scorer.warm(reload(&to_reload));
            laps.lap(Stage::ProfileReload);
        }
        let scorer = &mut self.scorer;
        self.batch
            .score_unscored(|r| scorer.score(&r.valid, r.partition));
    }

    /// Replay the buffered records into the profiles, in order, after reading back the
    /// evicted customers among them (as [`Self::score_unscored`] does). Nothing else of them
    /// is kept: they were stored before.
    pub fn score_replay(&mut self, reload: &dyn Fn(&[String]) -> Vec<ProfileRow>) {
        if self.replay.is_empty() {
            return;
        }
        let replay = std::mem::take(&mut self.replay);
        let to_reload = {
            let mut customers = replay.iter().map(|(v, _)| v.tx.customer_id.as_str());
            self.scorer.to_reload(&mut customers)
        };
        if !to_reload.is_empty() {
            self.scorer.warm(reload(&to_reload));
        }
        for (valid, partition) in &replay {
            self.scorer.score(valid, *partition);
        }
        self.replayed.inc_by(replay.len() as u64);
    }

    /// Put the changed profiles of `partitions`' customers into the open batch with, for
    /// each of those partitions, the offset they are current to.
    fn add_checkpoint(&mut self, partitions: &[i32]) {
        let dirty = if partitions.len() == self.owned.len() {
            self.scorer.take_dirty()
        } else {
            self.scorer.take_dirty_of(partitions)
        };
        self.batch.add_profiles(dirty);
        for (&p, owned) in self.owned.iter().filter(|(p, _)| partitions.contains(p)) {
            if let Some(m) = self.batch.offsets.get_mut(&p) {
                m.profiles_at = Some(m.next); // its records in the batch are scored
            } else if let (Some(stored), Some(at)) = (owned.stored, owned.profiles_at()) {
                self.batch.checkpoint(p, stored, at);
            }
        }
    }

    /// Hand the open batch to the sink if it has room; each partition's stored offset then
    /// moves to what the batch will store. `inflight` counts batches the sink has not finished.
    pub fn try_hand_on(
        &mut self,
        sink: &mpsc::Sender<Batch>,
        inflight: &AtomicUsize,
        reload: &dyn Fn(&[String]) -> Vec<ProfileRow>,
    ) -> bool {
        if sink.capacity() == 0 {
            return false; // the sink has a batch waiting already
        }
        let mut laps = Laps::start();
        // Replayed records come before any record of their partition in the batch.
        self.score_replay(reload);
        self.score_unscored(reload, &mut laps);
        let checkpoint = self.checkpoint_plan();
        if !checkpoint.is_empty() {
            self.add_checkpoint(&checkpoint);
        }
        laps.lap(Stage::Score);
        if self.batch.is_empty() {
            return false; // a checkpoint with no partition to record it for
        }
        self.batch.times.merge(&laps.times);
        self.batch.handed_on_at = Some(Instant::now());
        let next = Batch::new(self.generation);
        let batch = std::mem::replace(&mut self.batch, next);
        let moves: Vec<(i32, i64)> = batch.offsets.iter().map(|(p, m)| (*p, m.next)).collect();
        inflight.fetch_add(1, Ordering::SeqCst);
        match sink.try_send(batch) {
            Ok(()) => {
                self.scorer.handed_on();
                if let Some(last) = checkpoint.last() {
                    self.checkpoints.inc();
                    self.last_checkpoint = Instant::now();
                    self.last_checkpointed = *last;
                    self.checkpoint_requested = false;
                }
                for (p, next) in moves {
                    if let Some(owned) = self.owned.get_mut(&p) {
                        owned.stored = Some(next);
                        owned.uncommitted.open = false;
                    }
                }
                true
            }
            Err(e) => {
                inflight.fetch_sub(1, Ordering::SeqCst);
                let batch = match e {
                    mpsc::error::TrySendError::Full(batch)
                    | mpsc::error::TrySendError::Closed(batch) => batch,
                };
                self.batch = batch;
                false
            }
        }
    }

    /// Drop the open batch and everything known of the owned partitions (a batch was fenced):
    /// the next generation starts from the stored offsets and scoring state. Returns the
    /// owned partitions, to re-read.
    pub fn restart(&mut self, fenced_generation: u64) -> Option<Vec<i32>> {
        if fenced_generation < self.generation {
            return None; // already resynced past it
        }
        self.generation = fenced_generation + 1;
        self.batch = Batch::new(self.generation);
        self.replay.clear();
        let partitions = self.owned_partitions();
        // In-memory scoring state may be ahead of what committed: start from the store.
        self.scorer.forget_partitions(&partitions);
        for owned in self.owned.values_mut() {
            owned.uncommitted = Uncommitted::default();
        }
        Some(partitions)
    }

    /// Give up `partitions` (revoked): their records leave the open batch.
    pub fn revoke(&mut self, partitions: &[i32]) {
        self.batch.retain_partitions(|p| !partitions.contains(&p));
        self.replay.retain(|(_, p)| !partitions.contains(p));
        for p in partitions {
            self.owned.remove(p);
        }
        self.scorer.forget_partitions(partitions);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_lag_is_the_age_of_the_oldest_uncommitted_record() {
        let t = |s: i64| DateTime::<Utc>::from_timestamp(1_700_000_000 + s, 0).unwrap();
        let mut p = Uncommitted::default();
        assert_eq!(p.time_lag(t(100)), 0.0, "nothing held: caught up");
        // Batch 1 takes offsets 10..=12 (first at t=0), batch 2 takes 13.. (first at t=5).
        p.take(10, t(0));
        p.take(11, t(1));
        p.take(12, t(2));
        p.open = false; // handed on
        p.take(13, t(5));
        p.take(14, t(6));
        assert_eq!(p.time_lag(t(30)), 30.0);
        p.committed(13); // batch 1 committed
        assert_eq!(p.time_lag(t(30)), 25.0);
        p.open = false;
        p.committed(15); // batch 2 committed
        assert_eq!(p.time_lag(t(30)), 0.0);
        // A clock behind the record's timestamp never reads negative.
        p.take(15, t(40));
        assert_eq!(p.time_lag(t(30)), 0.0);
    }
}
