//! A batch: the records of one Postgres transaction, and how it moves each partition's
//! stored offset.

use crate::batch_timing::{Stage, StageTimes};
use crate::score::ProfileRow;
use crate::validate::{Reason, ValidTransaction};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use hashbrown::HashTable;
use sluice_fraud::Verdict;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, RandomState};
use std::time::Instant;

/// A valid record, scored, waiting to be written.
pub struct Accepted {
    pub valid: ValidTransaction,
    pub partition: i32,
    pub offset: i64,
    pub kafka_timestamp: DateTime<Utc>,
    pub received_at: Instant,
    /// Original bytes, kept in case the row turns out to be a duplicate (DLQ needs them).
    pub raw: Bytes,
    /// The fraud stage's verdict, given when the batch is handed on (see `batcher`), in
    /// partition order; `None` while not scored yet or when nothing scored it (scoring off,
    /// a repeat).
    pub verdict: Option<Verdict>,
    /// Behind its partition's watermark by more than the allowed lateness: stored, but left
    /// out of the per-minute summaries.
    pub late: bool,
}

impl Accepted {
    /// The fraud score stored with the row; `None` when nothing scored it.
    pub fn score(&self) -> Option<f64> {
        self.verdict.as_ref().map(|v| v.score)
    }

    pub fn flagged(&self) -> bool {
        self.verdict.as_ref().is_some_and(|v| v.flagged)
    }

    /// Whether its id may be stored already, as far as this worker knows: the scorer gives
    /// no verdict to a repeat of an id it scored recently, nor to anything when scoring is
    /// off. A record with a verdict was seen for the first time by this worker, so its id
    /// is almost always new (the sink's claim still decides, see `sink::rows::claim_ids`).
    pub fn maybe_stored(&self) -> bool {
        self.verdict.is_none()
    }
}

/// A record that will not be a row of `transactions`.
pub struct Rejected {
    pub partition: i32,
    pub offset: i64,
    pub kafka_timestamp: DateTime<Utc>,
    pub reason: Reason,
    pub detail: String,
    pub transaction_id: Option<String>,
    /// Original bytes with card numbers masked.
    pub raw_masked: Vec<u8>,
}

/// How one partition's stored offset moves if this batch commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetMove {
    /// The stored offset this batch was built on (`None`: nothing stored yet). A mismatch at
    /// write time means another worker moved the partition on: this batch is stale.
    pub expected: Option<i64>,
    pub next: i64,
    /// The partition's watermark once this batch's records are counted (`None`: unchanged).
    pub watermark: Option<DateTime<Utc>>,
    /// Set when the batch checkpoints the customer profiles: the offset the partition's
    /// persisted profiles will be current to.
    pub profiles_at: Option<i64>,
}

pub struct Batch {
    /// Bumped by the consumer on every resync; the sink discards older generations.
    pub generation: u64,
    pub accepted: Vec<Accepted>,
    pub rejected: Vec<Rejected>,
    pub offsets: BTreeMap<i32, OffsetMove>,
    /// Scoring state changed by this batch's records (latest per customer), committed with them.
    pub profiles: BTreeMap<String, ProfileRow>,
    pub opened_at: Instant,
    /// When its first record was taken (the start of its wall time).
    pub first_taken: Option<Instant>,
    /// When it went to the sink (the start of its queue time).
    pub handed_on_at: Option<Instant>,
    /// The consumer thread's stages (decode, profile reload, score), summed over its records.
    pub times: StageTimes,
    /// The valid records by transaction id, as indexes into `accepted`: finds a repeat within
    /// the batch without a copy of every id.
    ids: HashTable<usize>,
    id_hasher: RandomState,
    /// `accepted[..scored]` went through the scoring stage. Scoring waits for the hand-on
    /// (see `batcher`), and a batch the sink had no room for keeps growing after it.
    scored: usize,
}

impl Batch {
    pub fn new(generation: u64) -> Self {
        Self {
            generation,
            accepted: Vec::new(),
            rejected: Vec::new(),
            offsets: BTreeMap::new(),
            profiles: BTreeMap::new(),
            opened_at: Instant::now(),
            first_taken: None,
            handed_on_at: None,
            times: StageTimes::default(),
            ids: HashTable::new(),
            id_hasher: RandomState::new(),
            scored: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.accepted.len() + self.rejected.len()
    }

    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// Note that `offset` of `partition` is consumed by this batch; `stored` is the stored
    /// offset of the partition when the batch opens it.
    pub fn advance(
        &mut self,
        partition: i32,
        offset: i64,
        stored: Option<i64>,
        watermark: Option<DateTime<Utc>>,
    ) {
        self.offsets
            .entry(partition)
            .and_modify(|m| {
                m.next = offset + 1;
                m.watermark = watermark;
            })
            .or_insert(OffsetMove {
                expected: stored,
                next: offset + 1,
                watermark,
                profiles_at: None,
            });
    }

    /// Checkpoint the profiles of `partition` (stored offset `stored`) at `profiles_at`. A
    /// partition without records in the batch gets a move that leaves its offset: the
    /// compare-and-set still fences a stale writer.
    pub fn checkpoint(&mut self, partition: i32, stored: i64, profiles_at: i64) {
        self.offsets
            .entry(partition)
            .or_insert(OffsetMove {
                expected: Some(stored),
                next: stored,
                watermark: None,
                profiles_at: None,
            })
            .profiles_at = Some(profiles_at);
    }

    /// Split into at most `lanes` batches over disjoint sets of partitions, each written in
    /// its own transaction. Partitions are dealt round-robin in order, so any set of owned
    /// partitions spreads evenly. The consumer thread's stage times stay with the first.
    pub fn split(mut self, lanes: usize) -> Vec<Batch> {
        let partitions: Vec<i32> = self.offsets.keys().copied().collect();
        if lanes <= 1 || partitions.len() <= 1 {
            return vec![self];
        }
        let lane_of: HashMap<i32, usize> = partitions
            .iter()
            .enumerate()
            .map(|(i, p)| (*p, i % lanes))
            .collect();
        let mut out: Vec<Batch> = (0..lanes.min(partitions.len()))
            .map(|_| Batch {
                opened_at: self.opened_at,
                first_taken: self.first_taken,
                handed_on_at: self.handed_on_at,
                ..Batch::new(self.generation)
            })
            .collect();
        out[0].times = std::mem::take(&mut self.times);
        for r in self.accepted {
            out[lane_of[&r.partition]].accepted.push(r);
        }
        for r in self.rejected {
            out[lane_of[&r.partition]].rejected.push(r);
        }
        for (p, m) in self.offsets {
            out[lane_of[&p]].offsets.insert(p, m);
        }
        for (customer, row) in self.profiles {
            // A customer whose partition is not known goes with the first lane.
            let lane = row.partition.and_then(|p| lane_of.get(&p)).copied();
            out[lane.unwrap_or(0)].profiles.insert(customer, row);
        }
        for b in &mut out {
            b.scored = b.accepted.len();
        }
        out
    }

    /// A record taken at `started` was decoded and placed: its time counts as decode.
    pub fn took(&mut self, started: Instant) {
        self.first_taken.get_or_insert(started);
        self.times.add(Stage::Decode, started.elapsed());
    }

    /// Whether a valid record with this id is already in the batch: a second copy is a
    /// duplicate at once (the database only sees one copy per statement), and is not scored.
    pub fn holds(&self, transaction_id: &str) -> bool {
        let hash = self.id_hasher.hash_one(transaction_id);
        self.ids
            .find(hash, |&i| {
                self.accepted[i].valid.tx.transaction_id == transaction_id
            })
            .is_some()
    }

    /// Add a valid record whose id is not in the batch yet (see [`Batch::holds`]).
    pub fn push_accepted(&mut self, record: Accepted) {
        debug_assert!(!self.holds(&record.valid.tx.transaction_id));
        self.accepted.push(record);
        self.index_id(self.accepted.len() - 1);
    }

    /// Add `accepted[i]` to the ids.
    fn index_id(&mut self, i: usize) {
        let (accepted, hasher) = (&self.accepted, &self.id_hasher);
        let id_hash = |i: usize| hasher.hash_one(accepted[i].valid.tx.transaction_id.as_str());
        self.ids.insert_unique(id_hash(i), i, |&j| id_hash(j));
    }

    /// Accepted records not scored yet, in order.
    pub fn unscored(&self) -> &[Accepted] {
        &self.accepted[self.scored..]
    }

    /// Give every record not scored yet its verdict, in order.
    pub fn score_unscored(&mut self, mut score: impl FnMut(&Accepted) -> Option<Verdict>) {
        for r in &mut self.accepted[self.scored..] {
            r.verdict = score(r);
        }
        self.scored = self.accepted.len();
    }

    /// Attach changed scoring state; a later copy of a customer's profile replaces the earlier.
    pub fn add_profiles(&mut self, rows: Vec<ProfileRow>) {
        for row in rows {
            self.profiles.insert(row.customer_id.clone(), row);
        }
    }

    pub fn push_rejected(&mut self, record: Rejected) {
        self.rejected.push(record);
    }

    /// Drop everything of `partitions` (revoked before the batch was handed on).
    pub fn retain_partitions(&mut self, keep: impl Fn(i32) -> bool) {
        self.scored = self.accepted[..self.scored]
            .iter()
            .filter(|r| keep(r.partition))
            .count();
        self.accepted.retain(|r| keep(r.partition));
        self.rejected.retain(|r| keep(r.partition));
        self.offsets.retain(|p, _| keep(*p));
        self.profiles.retain(|_, r| r.partition.is_none_or(&keep));
        self.ids.clear();
        for i in 0..self.accepted.len() {
            self.index_id(i);
        }
    }
}

pub fn duplicate_of(record: &Accepted) -> Rejected {
    duplicate(
        record.partition,
        record.offset,
        record.kafka_timestamp,
        &record.valid.tx.transaction_id,
        &record.raw,
    )
}

/// A rejection for a record repeating an already stored (or batched) `transaction_id`.
pub fn duplicate(
    partition: i32,
    offset: i64,
    kafka_timestamp: DateTime<Utc>,
    transaction_id: &str,
    raw: &[u8],
) -> Rejected {
    Rejected {
        partition,
        offset,
        kafka_timestamp,
        reason: Reason::Duplicate,
        detail: "transaction_id already stored".into(),
        transaction_id: Some(transaction_id.to_owned()),
        raw_masked: crate::validate::mask_pans(raw),
    }
}

/// A valid record with these ids, unscored, for tests.
#[cfg(test)]
pub(crate) fn test_record(
    transaction_id: &str,
    customer_id: &str,
    partition: i32,
    offset: i64,
) -> Accepted {
    let json = serde_json::json!({
        "transaction_id": transaction_id, "customer_id": customer_id, "merchant_id": "m",
        "amount": 1.0, "currency": "EUR", "timestamp": "2026-11-25T11:00:00Z",
        "payment_method": "credit_card", "country": "DE"
    });
    let bounds =
        crate::validate::TimeBounds::around("2026-11-25T12:00:00Z".parse().unwrap(), 30, 300);
    Accepted {
        valid: crate::validate::validate(json.to_string().as_bytes(), bounds).unwrap(),
        partition,
        offset,
        kafka_timestamp: Utc::now(),
        received_at: Instant::now(),
        raw: Bytes::new(),
        verdict: None,
        late: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepted(partition: i32, n: usize) -> Accepted {
        test_record(&format!("t-{partition}-{n}"), "c", partition, n as i64)
    }

    #[test]
    fn records_are_scored_once_even_when_partitions_leave_in_between() {
        let mut b = Batch::new(0);
        b.push_accepted(accepted(1, 0));
        b.push_accepted(accepted(2, 0));
        let mut scored = Vec::new();
        b.score_unscored(|r| {
            scored.push(r.valid.tx.transaction_id.clone());
            None
        });
        b.push_accepted(accepted(1, 1));
        b.push_accepted(accepted(2, 1));
        b.retain_partitions(|p| p != 1);
        let unscored: Vec<_> = b
            .unscored()
            .iter()
            .map(|r| r.valid.tx.transaction_id.as_str())
            .collect();
        assert_eq!(
            unscored,
            ["t-2-1"],
            "only what arrived since the last scoring"
        );
        assert_eq!(scored, ["t-1-0", "t-2-0"]);
    }

    #[test]
    fn a_batch_knows_the_ids_it_holds_after_partitions_leave() {
        let mut b = Batch::new(0);
        for n in 0..100 {
            b.push_accepted(accepted((n % 3) as i32, n));
        }
        assert!(b.holds("t-1-1") && b.holds("t-2-98"));
        assert!(!b.holds("t-1-0"), "not an id of the batch");
        b.retain_partitions(|p| p != 1);
        assert!(!b.holds("t-1-1"), "gone with its partition");
        assert!(b.holds("t-0-0") && b.holds("t-2-98"));
        b.push_accepted(accepted(1, 1));
        assert!(b.holds("t-1-1"));
    }

    #[test]
    fn offsets_remember_the_value_they_were_built_on() {
        let mut b = Batch::new(0);
        let t = Utc::now();
        b.advance(3, 10, Some(10), None);
        b.advance(3, 11, Some(10), Some(t));
        assert_eq!(
            b.offsets[&3],
            OffsetMove {
                expected: Some(10),
                next: 12,
                watermark: Some(t),
                profiles_at: None,
            }
        );
    }

    #[test]
    fn a_checkpoint_covers_partitions_without_records_and_fences_them() {
        let mut b = Batch::new(0);
        b.advance(1, 5, Some(5), None);
        b.checkpoint(1, 5, 6);
        b.checkpoint(2, 40, 37);
        assert_eq!(b.offsets[&1].profiles_at, Some(6));
        assert_eq!(
            b.offsets[&2],
            OffsetMove {
                expected: Some(40),
                next: 40,
                watermark: None,
                profiles_at: Some(37),
            }
        );
    }

    #[test]
    fn lanes_get_disjoint_partitions_and_everything_lands_in_one() {
        let mut b = Batch::new(3);
        for p in [0, 2, 4, 6, 7] {
            b.push_accepted(accepted(p, 0));
            b.advance(p, 0, Some(0), None);
        }
        b.add_profiles(vec![
            ProfileRow {
                customer_id: "a".into(),
                partition: Some(6),
                profile: vec![1],
            },
            ProfileRow {
                customer_id: "b".into(),
                partition: None,
                profile: vec![2],
            },
        ]);
        let lanes = b.split(2);
        assert_eq!(lanes.len(), 2);
        let parts = |l: &Batch| l.offsets.keys().copied().collect::<Vec<_>>();
        assert_eq!(parts(&lanes[0]), [0, 4, 7]);
        assert_eq!(parts(&lanes[1]), [2, 6]);
        for l in &lanes {
            assert_eq!(l.generation, 3);
            assert!(
                l.accepted
                    .iter()
                    .all(|r| l.offsets.contains_key(&r.partition))
            );
        }
        assert_eq!(lanes[1].profiles.keys().collect::<Vec<_>>(), ["a"]);
        assert_eq!(lanes[0].profiles.keys().collect::<Vec<_>>(), ["b"]);
        assert_eq!(Batch::new(0).split(4).len(), 1);
    }
}
