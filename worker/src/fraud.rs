//! The fraud stage: [`sluice_fraud`]'s model and per-customer profiles behind the worker's
//! [`Scorer`] seam. Profiles of the partitions this worker owns live in a bounded store;
//! changed ones are committed with every batch and warmed when a partition arrives.

use crate::score::{ProfileRow, Scorer, Verdict};
use crate::validate::ValidTransaction;
use sluice_api::config::FraudConfig;
use sluice_fraud::{Model, ProfileStore};
use std::collections::HashMap;

/// Profiles held in memory; at ~350 bytes each, 200k is about 70 MB.
pub const PROFILE_CAPACITY: usize = 200_000;

pub struct FraudScorer {
    scorer: sluice_fraud::Scorer,
    store: ProfileStore,
    /// Partition of every customer in the store (a customer lives in one partition).
    partition_of: HashMap<String, i32>,
    batches_since_prune: u32,
}

impl FraudScorer {
    pub fn new(model: Model, config: FraudConfig, capacity: usize) -> Self {
        Self {
            scorer: sluice_fraud::Scorer::new(model, config),
            store: ProfileStore::new(capacity),
            partition_of: HashMap::new(),
            batches_since_prune: 0,
        }
    }
}

impl Scorer for FraudScorer {
    fn score(&mut self, tx: &ValidTransaction, partition: i32) -> Verdict {
        if !self.partition_of.contains_key(&tx.tx.customer_id) {
            self.partition_of.insert(tx.tx.customer_id.clone(), partition);
        }
        let v = self.scorer.score(&mut self.store, &tx.tx, tx.event_time.timestamp_millis(), tx.amount_cents);
        Verdict { score: Some(v.score), flagged: v.flagged, reasons: v.reasons }
    }

    fn forget_partitions(&mut self, partitions: &[i32]) {
        let partition_of = &self.partition_of;
        self.store.retain(|id| partition_of.get(id).is_none_or(|p| !partitions.contains(p)));
        self.partition_of.retain(|_, p| !partitions.contains(p));
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
            self.partition_of.insert(row.customer_id, row.partition);
        }
        if stale > 0 {
            tracing::warn!(stale, "ignored persisted profiles of an unknown version");
        }
    }

    fn take_dirty(&mut self) -> Vec<ProfileRow> {
        let dirty = self.store.take_dirty();
        // Evicted customers leave the map now and then, keeping it as bounded as the store.
        self.batches_since_prune += 1;
        if self.batches_since_prune >= 100 {
            self.batches_since_prune = 0;
            let store = &self.store;
            self.partition_of.retain(|id, _| store.contains(id));
        }
        dirty
            .into_iter()
            .map(|(customer_id, profile)| {
                let partition = self.partition_of.get(&customer_id).copied().unwrap_or(-1);
                ProfileRow { customer_id, partition, profile }
            })
            .collect()
    }

    fn reconfigure(&mut self, config: &FraudConfig) {
        self.scorer.set_config(config.clone());
    }
}
