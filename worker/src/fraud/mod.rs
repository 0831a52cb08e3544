//! The fraud stage: [`sluice_fraud`]'s model and per-customer profiles behind the worker's
//! [`ScoringStage`] seam. Profiles of the partitions this worker owns live in a bounded store;
//! changed ones are committed with the batches that checkpoint and warmed when a partition
//! arrives.
//!
//! A customer evicted from the store (idle while more than `fraud.profile_capacity` others
//! were active) is reloaded before it is scored again. Its freshest state may still be in a
//! batch on its way to Postgres, so the profiles evicted during the last few hand-ons are
//! kept aside in memory; older ones are read back from `customer_profiles`.

use crate::score::{ProfileRow, ScoringStage};
use crate::validate::ValidTransaction;
use sluice_api::config::FraudConfig;
use sluice_fraud::{Model, ProfileStore, Verdict};
use std::collections::{HashMap, HashSet, VecDeque};

/// Hand-ons an evicted profile stays in memory. The sink queue holds one batch, and the
/// sink takes the next only once the batch two before it is settled, so a batch handed on
/// three hand-ons ago has committed (or been dropped with its generation, which makes the
/// scorer forget and re-warm anyway).
const EVICTED_KEPT_FOR: usize = 3;

/// Bound on remembered evictions (~24 bytes each); beyond it evicted customers come back cold.
const EVICTED_REMEMBERED: usize = 1_000_000;

/// Transaction ids remembered as scored (~32 bytes each), shared by the partitions. Kafka
/// may deliver a transaction again in a later batch (a producer retry); the sink stores it
/// once, and this keeps the customer's profile from counting it twice, and lets the sink
/// claim the ids it has never seen by COPY (`sink::rows::claim_ids`). Older repeats are
/// still caught by the sink but fold into the profile again.
const SCORED_REMEMBERED: usize = 100_000;

pub struct FraudScorer {
    scorer: sluice_fraud::Scorer,
    store: ProfileStore,
    /// Partition of every customer in the store (a customer lives in one partition). Kept
    /// in step with the store: evictions are collected, revoked partitions retained alike.
    partition_of: HashMap<String, i32>,
    /// Evicted customers (id hash → partition, if known) whose profile Postgres holds or
    /// will hold.
    evicted: HashMap<u64, Option<i32>>,
    /// Profiles evicted during the last hand-ons, newest first, possibly not committed yet.
    recently_evicted: VecDeque<EvictedProfiles>,
    warned_full: bool,
    recently_scored: RecentIds,
}

/// Profiles evicted during one hand-on: customer → (partition if known, encoded profile).
type EvictedProfiles = HashMap<String, (Option<i32>, Vec<u8>)>;

/// A bounded set of transaction id hashes, first-in first-out within each partition. When
/// full, the partition remembering the most gives up its oldest: a repeat is recognised by
/// how far back it is in its own partition, however unevenly the consumer reads the
/// partitions. (One queue for all let a lagging partition's ids be pushed out by the
/// others': a backlog drain that read one partition ~30k records behind the rest missed ~10
/// repeats per million, each a claim by COPY rolled back.)
#[derive(Default)]
struct RecentIds {
    by_partition: HashMap<i32, VecDeque<u64>>,
    set: HashSet<u64>,
}

/// A 64-bit hash of an id, for the sets that only need to recognise ids again.
fn id_hash(id: &str) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default().hash_one(id)
}

impl RecentIds {
    /// Remembers `id`; false if it was already remembered.
    fn insert(&mut self, id: &str, partition: i32) -> bool {
        self.insert_bounded(id_hash(id), partition, SCORED_REMEMBERED)
    }

    fn insert_bounded(&mut self, hash: u64, partition: i32, bound: usize) -> bool {
        if !self.set.insert(hash) {
            return false;
        }
        self.by_partition
            .entry(partition)
            .or_default()
            .push_back(hash);
        if self.set.len() > bound {
            let fullest = self
                .by_partition
                .values_mut()
                .max_by_key(|ids| ids.len())
                .expect("the partition just added to");
            if let Some(old) = fullest.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }

    fn forget_partitions(&mut self, partitions: &[i32]) {
        for p in partitions {
            for h in self.by_partition.remove(p).unwrap_or_default() {
                self.set.remove(&h);
            }
        }
    }
}

impl FraudScorer {
    pub fn new(model: Model, config: FraudConfig) -> Self {
        let capacity = config.profile_capacity;
        Self {
            scorer: sluice_fraud::Scorer::new(model, config),
            store: ProfileStore::new(capacity).log_evictions(),
            partition_of: HashMap::new(),
            evicted: HashMap::new(),
            recently_evicted: VecDeque::from([HashMap::new()]),
            warned_full: false,
            recently_scored: RecentIds::default(),
        }
    }

    /// Move what the store just evicted aside.
    fn collect_evicted(&mut self) {
        for (customer, profile) in self.store.take_evicted() {
            let partition = self.partition_of.remove(&*customer);
            if self.evicted.len() < EVICTED_REMEMBERED {
                self.evicted.insert(id_hash(&customer), partition);
            } else if !self.warned_full {
                self.warned_full = true;
                tracing::warn!(
                    remembered = EVICTED_REMEMBERED,
                    "too many evicted customers to remember: later ones come back cold; raise fraud.profile_capacity or add workers"
                );
            }
            if let Some(newest) = self.recently_evicted.front_mut() {
                newest.insert(customer.into(), (partition, profile));
            }
        }
    }

    fn profile_rows(&self, dirty: Vec<(String, Vec<u8>)>) -> Vec<ProfileRow> {
        dirty
            .into_iter()
            .map(|(customer_id, profile)| {
                let partition = self.partition_of.get(&customer_id).copied();
                ProfileRow {
                    customer_id,
                    partition,
                    profile,
                }
            })
            .collect()
    }

    /// Put a customer evicted during the last hand-ons back from memory.
    fn restore_recent(&mut self, customer_id: &str) {
        let found = self
            .recently_evicted
            .iter_mut()
            .find_map(|m| m.remove(customer_id));
        if let Some((partition, profile)) = found
            && self.store.warm(customer_id, &profile).is_ok()
        {
            self.evicted.remove(&id_hash(customer_id));
            if let Some(partition) = partition {
                self.partition_of.insert(customer_id.to_owned(), partition);
            }
        }
    }
}

impl ScoringStage for FraudScorer {
    fn score(&mut self, tx: &ValidTransaction, partition: i32) -> Option<Verdict> {
        if !self
            .recently_scored
            .insert(&tx.tx.transaction_id, partition)
        {
            return None; // a repeat: the sink rejects it as a duplicate
        }
        let customer = tx.tx.customer_id.as_str();
        if !self.partition_of.contains_key(customer) {
            self.restore_recent(customer);
            self.partition_of.insert(customer.to_owned(), partition);
        }
        let verdict = self.scorer.score(
            &mut self.store,
            &tx.tx,
            tx.event_time.timestamp_millis(),
            tx.amount_cents,
        );
        self.collect_evicted();
        Some(verdict)
    }

    fn forget_partitions(&mut self, partitions: &[i32]) {
        let partition_of = &self.partition_of;
        self.store
            .retain(|id| partition_of.get(id).is_none_or(|p| !partitions.contains(p)));
        self.partition_of.retain(|_, p| !partitions.contains(p));
        self.evicted
            .retain(|_, p| p.is_none_or(|p| !partitions.contains(&p)));
        self.recently_scored.forget_partitions(partitions);
        for m in &mut self.recently_evicted {
            m.retain(|_, (p, _)| p.is_none_or(|p| !partitions.contains(&p)));
        }
    }

    fn stateful(&self) -> bool {
        true
    }

    fn warm(&mut self, rows: Vec<ProfileRow>) {
        let mut stale = 0;
        for row in rows {
            if self.store.warm(&row.customer_id, &row.profile).is_err() {
                stale += 1; // another profile version: the customer starts afresh
                continue;
            }
            self.evicted.remove(&id_hash(&row.customer_id));
            // Unknown: the customer's next transaction says where it lives.
            if let Some(partition) = row.partition {
                self.partition_of.insert(row.customer_id, partition);
            }
            self.collect_evicted();
        }
        if stale > 0 {
            tracing::warn!(stale, "ignored persisted profiles of an unknown version");
        }
    }

    fn to_reload(&self, customers: &mut dyn Iterator<Item = &str>) -> Vec<String> {
        let unique: HashSet<&str> = customers
            .filter(|c| !self.store.contains(c) && self.evicted.contains_key(&id_hash(c)))
            .filter(|c| self.recently_evicted.iter().all(|m| !m.contains_key(*c)))
            .collect();
        unique.into_iter().map(str::to_owned).collect()
    }

    fn handed_on(&mut self) {
        self.recently_evicted.push_front(HashMap::new());
        self.recently_evicted.truncate(EVICTED_KEPT_FOR);
    }

    fn take_dirty(&mut self) -> Vec<ProfileRow> {
        let dirty = self.store.take_dirty();
        self.profile_rows(dirty)
    }

    fn take_dirty_of(&mut self, partitions: &[i32]) -> Vec<ProfileRow> {
        let partition_of = &self.partition_of;
        let dirty = self
            .store
            .take_dirty_if(|c| partition_of.get(c).is_none_or(|p| partitions.contains(p)));
        self.profile_rows(dirty)
    }

    fn dirty_len(&self) -> usize {
        self.store.dirty_len()
    }

    fn reconfigure(&mut self, config: &FraudConfig) -> bool {
        self.scorer.set_config(config.clone());
        false
    }
}

/// The fraud stage as the worker runs it. Enabled at start, it keeps profiles even while
/// later switched off, so switching back on needs no warm-up. Disabled at start, it does no
/// per-customer work at all (the bare data plane); switched on later, it starts its state
/// from what Postgres holds.
pub struct FraudStage {
    model: Model,
    active: Option<FraudScorer>,
}

impl FraudStage {
    pub fn new(model: Model, config: &FraudConfig) -> Self {
        let active = config
            .enabled
            .then(|| FraudScorer::new(model.clone(), config.clone()));
        Self { model, active }
    }
}

impl ScoringStage for FraudStage {
    fn score(&mut self, tx: &ValidTransaction, partition: i32) -> Option<Verdict> {
        self.active.as_mut().and_then(|s| s.score(tx, partition))
    }

    fn forget_partitions(&mut self, partitions: &[i32]) {
        if let Some(s) = &mut self.active {
            s.forget_partitions(partitions);
        }
    }

    fn stateful(&self) -> bool {
        self.active.is_some()
    }

    fn warm(&mut self, rows: Vec<ProfileRow>) {
        if let Some(s) = &mut self.active {
            s.warm(rows);
        }
    }

    fn to_reload(&self, customers: &mut dyn Iterator<Item = &str>) -> Vec<String> {
        self.active
            .as_ref()
            .map(|s| s.to_reload(customers))
            .unwrap_or_default()
    }

    fn handed_on(&mut self) {
        if let Some(s) = &mut self.active {
            s.handed_on();
        }
    }

    fn take_dirty(&mut self) -> Vec<ProfileRow> {
        self.active
            .as_mut()
            .map(FraudScorer::take_dirty)
            .unwrap_or_default()
    }

    fn take_dirty_of(&mut self, partitions: &[i32]) -> Vec<ProfileRow> {
        self.active
            .as_mut()
            .map(|s| s.take_dirty_of(partitions))
            .unwrap_or_default()
    }

    fn dirty_len(&self) -> usize {
        self.active.as_ref().map_or(0, ScoringStage::dirty_len)
    }

    fn reconfigure(&mut self, config: &FraudConfig) -> bool {
        match &mut self.active {
            Some(s) => s.reconfigure(config),
            None if config.enabled => {
                self.active = Some(FraudScorer::new(self.model.clone(), config.clone()));
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests;
