//! The scoring stage: between validation and the sink, every valid transaction may get a
//! [`Verdict`]. The fraud model plugs in here ([`crate::fraud`]); the sink only sees verdicts
//! and the state to persist.

use crate::validate::ValidTransaction;
use sluice_fraud::Verdict;

/// A customer's persisted scoring state (`customer_profiles`).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ProfileRow {
    pub customer_id: String,
    /// The partition the customer's events arrive on; `None` when not known (a profile
    /// read back by customer id whose partition was never recorded).
    pub partition: Option<i32>,
    pub profile: Vec<u8>,
}

/// A stage that scores transactions of the partitions this worker owns, in partition order.
/// Its per-customer state is persisted on a cadence (see `batcher`) and warmed when
/// partitions arrive; the records since the last persisted state are replayed into it.
pub trait ScoringStage: Send {
    /// The verdict on `tx`; `None` when nothing scored it (scoring off, or a repeat of a
    /// transaction already scored).
    fn score(&mut self, tx: &ValidTransaction, partition: i32) -> Option<Verdict>;
    /// Partitions were revoked (or their state is stale): forget their customers.
    fn forget_partitions(&mut self, _partitions: &[i32]) {}
    /// Whether this stage keeps state that must be warmed and persisted.
    fn stateful(&self) -> bool {
        false
    }
    /// Load persisted state (of newly assigned partitions, or of [`ScoringStage::to_reload`]).
    fn warm(&mut self, _rows: Vec<ProfileRow>) {}
    /// Customers among these whose state must be read back from Postgres before they are
    /// scored (evicted earlier for lack of memory).
    fn to_reload(&self, _customers: &mut dyn Iterator<Item = &str>) -> Vec<String> {
        Vec::new()
    }
    /// A batch went to the sink.
    fn handed_on(&mut self) {}
    /// State changed since the last call, to commit with the next batch that checkpoints.
    fn take_dirty(&mut self) -> Vec<ProfileRow> {
        Vec::new()
    }
    /// Like [`ScoringStage::take_dirty`], for the customers of `partitions` only (and those
    /// whose partition is not known).
    fn take_dirty_of(&mut self, _partitions: &[i32]) -> Vec<ProfileRow> {
        Vec::new()
    }
    /// About how many customers [`ScoringStage::take_dirty`] would return.
    fn dirty_len(&self) -> usize {
        0
    }
    /// New fraud switches from a reloaded configuration. True when the stage started its
    /// state afresh: the caller then warms it for the partitions it owns.
    fn reconfigure(&mut self, _config: &sluice_api::config::FraudConfig) -> bool {
        false
    }
}
