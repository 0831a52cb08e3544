//! The profiles of the customers a worker currently sees, with bounded memory.
//!
//! Eviction is a clock (second-chance) sweep over idle customers that are already
//! persisted: a dirty profile is never evicted, since its only copy is here until the
//! worker's next batch commits it (see [`ProfileStore::take_dirty`]). A customer evicted
//! and seen again starts fresh unless the worker warms it first: with
//! [`ProfileStore::log_evictions`] the store hands each evicted profile over
//! ([`ProfileStore::take_evicted`]) so the worker knows whom to reload.

use crate::profile::{DecodeError, Profile};
use std::collections::HashMap;

struct Slot {
    customer: Box<str>,
    profile: Profile,
    referenced: bool,
    dirty: bool,
}

/// Customer profiles keyed by `customer_id`.
pub struct ProfileStore {
    index: HashMap<Box<str>, usize>,
    slots: Vec<Slot>,
    free: Vec<usize>,
    dirty: Vec<usize>,
    hand: usize,
    capacity: usize,
    evictions: u64,
    /// Evicted profiles, encoded, when logging is on.
    evicted: Option<Vec<(Box<str>, Vec<u8>)>>,
}

impl ProfileStore {
    /// A store holding at most about `capacity` profiles (it exceeds it only while more
    /// than `capacity` profiles are dirty at once).
    pub fn new(capacity: usize) -> Self {
        Self {
            index: HashMap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            dirty: Vec::new(),
            hand: 0,
            capacity: capacity.max(1),
            evictions: 0,
            evicted: None,
        }
    }

    /// Keep every evicted profile until [`take_evicted`](Self::take_evicted) collects it.
    pub fn log_evictions(mut self) -> Self {
        self.evicted = Some(Vec::new());
        self
    }

    /// Profiles evicted since the last call (empty unless [`log_evictions`](Self::log_evictions)).
    pub fn take_evicted(&mut self) -> Vec<(Box<str>, Vec<u8>)> {
        self.evicted
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Profiles evicted so far (a metric for sizing `capacity`).
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    pub fn contains(&self, customer_id: &str) -> bool {
        self.index.contains_key(customer_id)
    }

    pub fn get(&self, customer_id: &str) -> Option<&Profile> {
        self.index.get(customer_id).map(|i| &self.slots[*i].profile)
    }

    /// The ids among `customer_ids` that have no profile here: the worker loads these from
    /// Postgres and [`warm`](Self::warm)s them before scoring the batch.
    pub fn missing<'a>(&self, customer_ids: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
        let mut out: Vec<&str> = customer_ids
            .into_iter()
            .filter(|c| !self.contains(c))
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The profile to update for `customer_id`, created empty if absent; marks it dirty.
    pub fn entry(&mut self, customer_id: &str) -> &mut Profile {
        let i = match self.index.get(customer_id) {
            Some(i) => *i,
            None => self.insert(customer_id, Profile::default()),
        };
        let slot = &mut self.slots[i];
        slot.referenced = true;
        if !slot.dirty {
            slot.dirty = true;
            self.dirty.push(i);
        }
        &mut slot.profile
    }

    /// Loads persisted state for `customer_id` (not dirty: it is what Postgres holds).
    /// Replaces any profile already here.
    pub fn warm(&mut self, customer_id: &str, bytes: &[u8]) -> Result<(), DecodeError> {
        let profile = Profile::decode(bytes)?;
        match self.index.get(customer_id) {
            Some(i) => self.slots[*i].profile = profile,
            None => {
                self.insert(customer_id, profile);
            }
        }
        Ok(())
    }

    /// About how many profiles are dirty (an upper bound: a profile retained away since it
    /// was dirtied still counts until the next [`take_dirty`](Self::take_dirty)).
    pub fn dirty_len(&self) -> usize {
        self.dirty.len()
    }

    /// Encoded profiles changed since the last call, to persist in the batch transaction.
    /// The worker must call this once per committed batch; if the commit fails it must
    /// replay the batch (which re-dirties the same customers).
    pub fn take_dirty(&mut self) -> Vec<(String, Vec<u8>)> {
        self.take_dirty_if(|_| true)
    }

    /// Like [`take_dirty`](Self::take_dirty), for the customers `pick` chooses; the others
    /// stay dirty.
    pub fn take_dirty_if(&mut self, mut pick: impl FnMut(&str) -> bool) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        let mut kept = Vec::new();
        for i in std::mem::take(&mut self.dirty) {
            let slot = &mut self.slots[i];
            if !slot.dirty {
                continue;
            }
            if pick(&slot.customer) {
                slot.dirty = false;
                out.push((slot.customer.to_string(), slot.profile.encode()));
            } else {
                kept.push(i);
            }
        }
        self.dirty = kept;
        out
    }

    /// Every profile, encoded (e.g. to hand a partition's state over in tests).
    pub fn export(&self) -> Vec<(String, Vec<u8>)> {
        self.index
            .iter()
            .map(|(c, i)| (c.to_string(), self.slots[*i].profile.encode()))
            .collect()
    }

    /// Drops the profiles for which `keep` is false, e.g. the customers of a revoked
    /// partition. Dirty ones are dropped too: the worker persists before revoking.
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        let drop: Vec<usize> = self
            .index
            .iter()
            .filter(|(c, _)| !keep(c))
            .map(|(_, i)| *i)
            .collect();
        for i in drop {
            self.remove_slot(i);
        }
    }

    fn remove_slot(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        self.index.remove(&slot.customer);
        slot.dirty = false;
        slot.referenced = false;
        slot.customer = Box::from("");
        self.free.push(i);
    }

    fn insert(&mut self, customer_id: &str, profile: Profile) -> usize {
        if self.index.len() >= self.capacity {
            self.evict_one();
        }
        let slot = Slot {
            customer: Box::from(customer_id),
            profile,
            referenced: true,
            dirty: false,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i] = slot;
                i
            }
            None => {
                self.slots.push(slot);
                self.slots.len() - 1
            }
        };
        self.index.insert(Box::from(customer_id), i);
        i
    }

    /// Second-chance sweep: clears `referenced` bits until it finds a clean, unreferenced
    /// profile. Gives up after two turns (everything dirty) and lets the store grow.
    fn evict_one(&mut self) {
        let n = self.slots.len();
        for _ in 0..2 * n {
            self.hand = (self.hand + 1) % n;
            let slot = &mut self.slots[self.hand];
            if slot.customer.is_empty() || slot.dirty {
                continue;
            }
            if slot.referenced {
                slot.referenced = false;
                continue;
            }
            if let Some(log) = &mut self.evicted {
                log.push((slot.customer.clone(), slot.profile.encode()));
            }
            self.remove_slot(self.hand);
            self.evictions += 1;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirty_profiles_can_be_taken_in_parts() {
        let mut s = ProfileStore::new(10);
        s.entry("a");
        s.entry("b");
        let first = s.take_dirty_if(|c| c == "a");
        assert_eq!(
            first.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>(),
            ["a"]
        );
        assert_eq!(s.dirty_len(), 1);
        let rest = s.take_dirty();
        assert_eq!(
            rest.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>(),
            ["b"]
        );
        assert!(s.take_dirty().is_empty());
    }

    #[test]
    fn dirty_profiles_are_reported_once() {
        let mut s = ProfileStore::new(10);
        s.entry("a").count = 1;
        s.entry("b").count = 2;
        s.entry("a").count = 3;
        let mut d = s.take_dirty();
        d.sort();
        assert_eq!(d.len(), 2);
        assert_eq!(Profile::decode(&d[0].1).unwrap().count, 3);
        assert!(s.take_dirty().is_empty());
        s.entry("b");
        assert_eq!(s.take_dirty().len(), 1);
    }

    #[test]
    fn evicted_profiles_are_handed_over_when_logged() {
        let mut s = ProfileStore::new(2).log_evictions();
        for c in ["a", "b", "c", "d"] {
            s.entry(c).count = 7;
            s.take_dirty();
        }
        let evicted = s.take_evicted();
        assert_eq!(evicted.len(), 2);
        for (id, bytes) in &evicted {
            assert!(!s.contains(id));
            assert_eq!(Profile::decode(bytes).unwrap().count, 7);
        }
        assert!(s.take_evicted().is_empty());
        assert!(ProfileStore::new(1).take_evicted().is_empty());
    }

    #[test]
    fn eviction_keeps_memory_bounded_and_spares_dirty_and_recent() {
        let mut s = ProfileStore::new(3);
        for c in ["a", "b", "c"] {
            s.entry(c);
        }
        s.take_dirty();
        s.entry("a"); // dirty again: must survive
        s.entry("d");
        assert_eq!(s.len(), 3);
        assert!(s.contains("a") && s.contains("d"));
        assert_eq!(s.evictions(), 1);
        s.take_dirty();
        for i in 0..100 {
            s.entry(&format!("x{i}"));
            s.take_dirty();
        }
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn store_grows_only_while_everything_is_dirty() {
        let mut s = ProfileStore::new(2);
        for c in ["a", "b", "c"] {
            s.entry(c);
        }
        assert_eq!(s.len(), 3);
        assert_eq!(s.take_dirty().len(), 3);
    }

    #[test]
    fn warm_loads_clean_state_and_missing_lists_unknown_ids() {
        let mut a = ProfileStore::new(10);
        a.entry("c1").count = 7;
        let (id, bytes) = a.take_dirty().pop().unwrap();
        let mut b = ProfileStore::new(10);
        assert_eq!(b.missing(["c1", "c2", "c1"]), vec!["c1", "c2"]);
        b.warm(&id, &bytes).unwrap();
        assert_eq!(b.get("c1").unwrap().count, 7);
        assert!(b.take_dirty().is_empty());
        assert_eq!(b.missing(["c1", "c2"]), vec!["c2"]);
        b.retain(|c| c != "c1");
        assert!(b.is_empty());
    }
}
