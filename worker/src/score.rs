//! The scoring stage: between validation and the sink, every valid transaction gets a
//! [`Verdict`]. The fraud model plugs in here ([`crate::fraud`]); the sink only sees verdicts
//! and the state to persist.

use crate::validate::ValidTransaction;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Verdict {
    /// In [0, 1]; `None` when no scorer ran.
    pub score: Option<f64>,
    pub flagged: bool,
    /// Stable snake_case names of the rules or features behind the score.
    pub reasons: Vec<&'static str>,
}

/// A customer's persisted scoring state (`customer_profiles`).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ProfileRow {
    pub customer_id: String,
    pub partition: i32,
    pub profile: Vec<u8>,
}

/// A stage that scores transactions of the partitions this worker owns, in partition order.
/// Its per-customer state is persisted with each batch and warmed when partitions arrive.
pub trait Scorer: Send {
    fn score(&mut self, tx: &ValidTransaction, partition: i32) -> Verdict;
    /// Partitions were revoked (or their state is stale): forget their customers.
    fn forget_partitions(&mut self, _partitions: &[i32]) {}
    /// Whether this scorer keeps state that must be warmed and persisted.
    fn stateful(&self) -> bool {
        false
    }
    /// Load persisted state (of newly assigned partitions, or of [`Scorer::to_reload`]).
    fn warm(&mut self, _rows: Vec<ProfileRow>) {}
    /// Customers among these whose state must be read back from Postgres before they are
    /// scored (evicted earlier for lack of memory).
    fn to_reload(&self, _customers: &mut dyn Iterator<Item = &str>) -> Vec<String> {
        Vec::new()
    }
    /// A batch went to the sink.
    fn handed_on(&mut self) {}
    /// State changed since the last call, to commit with the next batch.
    fn take_dirty(&mut self) -> Vec<ProfileRow> {
        Vec::new()
    }
    /// New fraud switches from a reloaded configuration. True when the scorer started its
    /// state afresh: the caller then warms it for the partitions it owns.
    fn reconfigure(&mut self, _config: &sluice_api::config::FraudConfig) -> bool {
        false
    }
}
