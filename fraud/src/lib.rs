//! Fraud detection for sluice, pure and I/O-free so the worker, the load generator and
//! the offline evaluation share one implementation.
//!
//! - [`profile`]: a customer's online state, ≤ 256 bytes encoded.
//! - [`store`]: the profiles a worker holds, bounded, with dirty tracking for persistence.
//! - [`features`]: what one event looks like against its customer's past.
//! - [`model`]: the logistic model, its versioned weights and the [`Scorer`].
//! - [`sim`]: labeled synthetic traffic.
//! - [`eval`]: precision / recall / PR-AUC of the model beside a rules-only baseline.
//!
//! How the worker drives it, one batch at a time, in partition order:
//!
//! ```
//! use sluice_api::config::FraudConfig;
//! use sluice_fraud::{Model, ProfileStore, Scorer, SimConfig, Simulator};
//!
//! let mut scorer = Scorer::new(Model::default(), FraudConfig::default());
//! let mut store = ProfileStore::new(100_000);
//! let mut sim = Simulator::new(1, SimConfig::default());
//! let batch: Vec<_> = (0..100).map(|i| sim.next_event(1_767_225_600_000 + i * 1_000).0).collect();
//!
//! // 1. Warm customers this worker has not seen (SELECT profile FROM ... WHERE customer_id = ANY($1)).
//! let missing = store.missing(batch.iter().map(|tx| tx.customer_id.as_str()));
//! # let persisted: Vec<(String, Vec<u8>)> = Vec::new();
//! for (customer_id, bytes) in &persisted {
//!     store.warm(customer_id, bytes).ok(); // an unknown version starts the customer afresh
//! }
//! # let _ = missing;
//! // 2. Score in order; flagged verdicts become alerts in the same transaction.
//! for tx in &batch {
//!     let t = chrono::DateTime::parse_from_rfc3339(&tx.timestamp).unwrap().timestamp_millis();
//!     let verdict = scorer.score(&mut store, tx, t, (tx.amount * 100.0).round() as i64);
//!     assert!((0.0..=1.0).contains(&verdict.score));
//! }
//! // 3. Upsert the changed profiles in the batch transaction.
//! let dirty = store.take_dirty();
//! assert!(!dirty.is_empty() && dirty.iter().all(|(_, bytes)| bytes.len() <= 256));
//! // Config reloads swap switches without losing state.
//! scorer.set_config(FraudConfig { threshold: 0.7, ..FraudConfig::default() });
//! ```

pub mod eval;
pub mod features;
pub mod hash;
pub mod model;
pub mod profile;
pub mod sim;
pub mod store;

pub use model::{Model, Scorer, Verdict};
pub use profile::Profile;
pub use sim::{Label, SimConfig, Simulator};
pub use store::ProfileStore;
