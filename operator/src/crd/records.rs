//! `spec.fraud` and `spec.quality`: what the workers do to each record before storing it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sluice_api::WorkerConfig;
use sluice_api::config::bounds;

use super::worker_default;

/// Fraud scoring.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FraudSpec {
    /// Score transactions and raise alerts.
    #[serde(default = "default_fraud_enabled")]
    pub enabled: bool,
    /// Score (0–1) at or above which a transaction is flagged.
    #[serde(default = "default_threshold")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub threshold: f64,
    /// Rules switched off by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disabled_rules: Vec<String>,
}

impl Default for FraudSpec {
    fn default() -> Self {
        Self {
            enabled: default_fraud_enabled(),
            threshold: default_threshold(),
            disabled_rules: Vec::new(),
        }
    }
}

/// Data-quality rules.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct QualitySpec {
    /// Event times further than this many seconds in the future are rejected.
    #[serde(default = "default_future_skew")]
    #[schemars(range(min = 0, max = 86400))]
    pub max_future_skew_seconds: i64,
    /// Days of transactions kept; older events are rejected and older partitions dropped.
    #[serde(default = "default_retention_days")]
    #[schemars(range(min = bounds::MIN_RETENTION_DAYS, max = 3650))]
    pub retention_days: i32,
    /// Events up to this many seconds behind the newest event time of their partition are
    /// still folded into the per-minute analytics; later ones are stored but counted as late.
    #[serde(default = "default_allowed_lateness")]
    #[schemars(range(min = 0, max = 86400))]
    pub allowed_lateness_seconds: i64,
}

impl Default for QualitySpec {
    fn default() -> Self {
        Self {
            max_future_skew_seconds: default_future_skew(),
            retention_days: default_retention_days(),
            allowed_lateness_seconds: default_allowed_lateness(),
        }
    }
}

fn default_fraud_enabled() -> bool {
    WorkerConfig::default().fraud.enabled
}

fn default_threshold() -> f64 {
    WorkerConfig::default().fraud.threshold
}

fn default_future_skew() -> i64 {
    WorkerConfig::default().validation.max_future_skew_secs
}

fn default_allowed_lateness() -> i64 {
    worker_default(WorkerConfig::default().analytics.allowed_lateness_secs)
}

fn default_retention_days() -> i32 {
    worker_default(WorkerConfig::default().retention.days)
}
