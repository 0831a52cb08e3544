//! The scoring stage: between validation and the sink, every valid transaction gets a
//! [`Verdict`]. Fraud detection plugs in here; until a model is configured, transactions
//! pass unscored (`fraud_score` NULL, never flagged).

use crate::validate::ValidTransaction;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Verdict {
    /// In [0, 1]; `None` when no scorer ran.
    pub score: Option<f64>,
    pub flagged: bool,
    /// Stable snake_case names of the rules or features behind the score.
    pub reasons: Vec<&'static str>,
}

/// A stage that scores transactions of the partitions this worker owns, in partition order.
pub trait Scorer: Send {
    fn score(&mut self, tx: &ValidTransaction, partition: i32) -> Verdict;
    /// Partitions were revoked: forget their customers' state.
    fn forget_partitions(&mut self, _partitions: &[i32]) {}
}

/// The seam's default: no opinion.
pub struct Unscored;

impl Scorer for Unscored {
    fn score(&mut self, _tx: &ValidTransaction, _partition: i32) -> Verdict {
        Verdict::default()
    }
}
