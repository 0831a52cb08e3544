//! Two batches in the sink at once, committed in order.
//!
//! One Postgres backend writing one batch at a time caps the sink near half a raw COPY of
//! the same rows (the id claims, alerts and profiles cost about as much again as the rows),
//! with a core left part idle. So the next batch starts on a second connection as soon as
//! this one holds its id claims: its claims, rows, alerts and rejections (inserts that cannot
//! lock anything this one still needs) run beside this one's. Ids this one has are repeats
//! for the later one, which does not claim them (the claim would wait for this commit). Then
//! it waits at the *gate* until this one is settled, and only then upserts profiles, moves
//! offsets (whose compare-and-set expects this one's offsets) and adds the summary deltas.
//! It goes on only if this one committed every lane; if one was fenced it is dropped with
//! it, unless it is of a newer generation (the consumer resynced in between), which claims
//! every id.
//!
//! No deadlock: the earlier batch took every lock it shares with the later one (its id
//! claims) before the later one started, and the later one touches nothing else the earlier
//! one locks until the gate. Should an attempt of the earlier batch fail, the later one rolls
//! back at the gate (it is *overtaken*) and starts again once the earlier one is settled; a
//! retry never overlaps.

use sluice_api::event::CompactString;
use std::collections::HashSet;
use std::sync::Arc;
use tokio::sync::watch;

/// How far a batch's lanes have come, for the batch after it.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    generation: u64,
    lanes: usize,
    /// Lanes whose first attempt holds its id claims.
    claimed: usize,
    committed: usize,
    /// Lanes fenced, or dropped because the batch before them was.
    dropped: usize,
    /// An attempt of a lane failed: a later batch must not overlap the retry.
    failed: bool,
}

impl Progress {
    fn settled(&self) -> bool {
        self.committed + self.dropped == self.lanes
    }

    /// Whether the batch after this one can start, or knows what to wait for: every lane
    /// holds its claims, or an attempt failed (it then waits for the settling).
    pub fn passable(&self) -> bool {
        self.claimed == self.lanes || self.failed || self.settled()
    }

    /// Whether a batch of `generation` after this settled one must be dropped: its stored
    /// offsets were moved by another worker, and the consumer resyncs from the store.
    fn drops(&self, generation: u64) -> bool {
        self.dropped > 0 && generation <= self.generation
    }
}

/// What a lane's write may do next, by the batch before it.
#[derive(Debug, PartialEq, Eq)]
pub enum Turn {
    Go,
    /// The batch before it was fenced: drop this one.
    Drop,
    /// The batch before it failed an attempt: roll back and start again when it settles.
    Overtaken,
}

/// A lane's place in the order of batches: the progress of the batch before it (none when
/// there is nothing before it, or the sink does not overlap batches) and of its own batch.
#[derive(Clone)]
pub struct Order {
    before: Option<watch::Receiver<Progress>>,
    /// The transaction ids of the batch before, when it is of the same generation.
    before_ids: Arc<HashSet<CompactString>>,
    own: Arc<watch::Sender<Progress>>,
}

/// A batch's progress, to hand to the batch after it.
pub type Follow = watch::Receiver<Progress>;

impl Order {
    /// The order of a batch of `lanes` lanes after `before` (its progress and its ids).
    pub fn new(
        generation: u64,
        lanes: usize,
        before: Option<(Follow, Arc<HashSet<CompactString>>)>,
    ) -> (Self, Follow) {
        let (own, follow) = watch::channel(Progress {
            generation,
            lanes,
            claimed: 0,
            committed: 0,
            dropped: 0,
            failed: false,
        });
        let (before, before_ids) = before.unzip();
        // This batch passes the gate only once the batch before committed every lane, or is
        // dropped with it: then its ids are stored. Not so for a batch of an older generation,
        // which may be dropped while this one goes on: those ids must be claimed.
        let same_generation = before
            .as_ref()
            .is_some_and(|b| b.borrow().generation == generation);
        let before_ids = before_ids.filter(|_| same_generation).unwrap_or_default();
        let order = Order {
            before,
            before_ids,
            own: Arc::new(own),
        };
        (order, follow)
    }

    /// Before an attempt: the first may overlap the batch before once that holds its
    /// claims, a retry waits until it is settled.
    pub async fn start(&self, retry: bool) -> Turn {
        match self
            .before_when(|p| p.settled() || (!retry && !p.failed && p.claimed == p.lanes))
            .await
        {
            Some(p) if p.settled() && p.drops(self.generation()) => Turn::Drop,
            _ => Turn::Go,
        }
    }

    /// Before the statements that follow the batch before: wait until it is settled, or
    /// until an attempt of it fails.
    pub async fn gate(&self) -> Turn {
        match self.before_when(|p| p.settled() || p.failed).await {
            Some(p) if !p.settled() => Turn::Overtaken,
            Some(p) if p.drops(self.generation()) => Turn::Drop,
            _ => Turn::Go,
        }
    }

    /// The progress of the batch before once `ready` holds; none if there is no batch
    /// before, or its task is gone (and so is its transaction).
    async fn before_when(&self, ready: impl FnMut(&Progress) -> bool) -> Option<Progress> {
        let mut before = self.before.clone()?;
        before.wait_for(ready).await.ok().map(|p| *p)
    }

    fn generation(&self) -> u64 {
        self.own.borrow().generation
    }

    /// Whether the batch before has this id: it may still be writing it, and this batch,
    /// which commits only after it, has a repeat.
    pub fn held_before(&self, transaction_id: &str) -> bool {
        self.before_ids.contains(transaction_id)
    }

    /// The lane's first attempt holds its id claims.
    pub fn claimed(&self) {
        self.own.send_modify(|p| p.claimed += 1);
    }

    /// An attempt of the lane failed (a database error, or overtaken).
    pub fn failed(&self) {
        self.own.send_modify(|p| p.failed = true);
    }

    /// The lane committed (`true`) or was dropped.
    pub fn settled(&self, committed: bool) {
        self.own.send_modify(|p| {
            if committed {
                p.committed += 1
            } else {
                p.dropped += 1
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn now<F: std::future::Future>(f: F) -> Option<F::Output> {
        tokio::time::timeout(Duration::from_millis(50), f)
            .await
            .ok()
    }

    #[tokio::test]
    async fn the_next_batch_starts_once_this_one_holds_its_claims_and_passes_the_gate_when_it_commits()
     {
        let (first, follow) = Order::new(1, 2, None);
        let (second, _) = Order::new(1, 1, Some((follow, Default::default())));
        assert_eq!(now(first.start(false)).await, Some(Turn::Go));
        assert_eq!(now(second.start(false)).await, None);
        first.claimed();
        assert_eq!(now(second.start(false)).await, None, "one lane of two");
        first.claimed();
        assert_eq!(now(second.start(false)).await, Some(Turn::Go));
        assert_eq!(now(second.gate()).await, None);
        first.settled(true);
        assert_eq!(now(second.gate()).await, None, "one lane of two");
        first.settled(true);
        assert_eq!(now(second.gate()).await, Some(Turn::Go));
    }

    #[tokio::test]
    async fn a_failed_attempt_overtakes_the_next_batch_which_waits_for_the_retry() {
        let (first, follow) = Order::new(1, 1, None);
        let (second, _) = Order::new(1, 1, Some((follow, Default::default())));
        first.claimed();
        assert_eq!(now(second.start(false)).await, Some(Turn::Go));
        first.failed();
        assert_eq!(now(second.gate()).await, Some(Turn::Overtaken));
        assert_eq!(now(second.start(true)).await, None, "a retry waits");
        assert_eq!(now(second.start(false)).await, None, "so does a late start");
        first.settled(true);
        assert_eq!(now(second.start(true)).await, Some(Turn::Go));
        assert_eq!(now(second.gate()).await, Some(Turn::Go));
    }

    #[test]
    fn only_ids_of_the_same_generation_count_as_held() {
        let ids: Arc<HashSet<CompactString>> = Arc::new(["tx-1".into()].into());
        let (_, follow) = Order::new(3, 1, None);
        let (same, _) = Order::new(3, 1, Some((follow.clone(), Arc::clone(&ids))));
        let (resynced, _) = Order::new(4, 1, Some((follow, ids)));
        assert!(same.held_before("tx-1") && !same.held_before("tx-2"));
        assert!(
            !resynced.held_before("tx-1"),
            "the batch before may be dropped while this one goes on"
        );
    }

    #[tokio::test]
    async fn a_fence_drops_the_rest_of_its_generation_only() {
        let (first, follow) = Order::new(3, 1, None);
        let (same, _) = Order::new(3, 1, Some((follow.clone(), Default::default())));
        let (resynced, _) = Order::new(4, 1, Some((follow, Default::default())));
        first.claimed();
        first.settled(false);
        assert_eq!(now(same.start(false)).await, Some(Turn::Drop));
        assert_eq!(now(same.gate()).await, Some(Turn::Drop));
        assert_eq!(now(resynced.gate()).await, Some(Turn::Go));
    }
}
