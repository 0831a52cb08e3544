//! `spec.autoscaling`: lag-driven sizing of the workers.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Lag-driven autoscaling. The operator sizes the workers so the backlog drains within
/// `catchUpSeconds` at the measured per-worker rate, never below `lagPerReplica` records each.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalingSpec {
    /// Turns autoscaling on. While on, the operator leaves the worker Deployment's
    /// `spec.replicas` to the HorizontalPodAutoscaler.
    #[serde(default)]
    pub enabled: bool,
    /// Target lag (records) per worker.
    #[serde(default = "default_lag_per_replica")]
    #[schemars(range(min = 1))]
    pub lag_per_replica: i64,
    /// Time in which a backlog should be worked off, in seconds.
    #[serde(default = "default_catch_up_seconds")]
    #[schemars(range(min = 1, max = 86400))]
    pub catch_up_seconds: i32,
    /// Seconds a higher recommendation must persist before scaling up.
    #[serde(default)]
    #[schemars(range(min = 0, max = 3600))]
    pub scale_up_stabilization_seconds: i32,
    /// Seconds a lower recommendation must persist before scaling down (avoids rebalance churn).
    #[serde(default = "default_scale_down_stabilization")]
    #[schemars(range(min = 0, max = 3600))]
    pub scale_down_stabilization_seconds: i32,
    /// Share of a worker's measured capacity the steady input may use; the rest drains
    /// backlogs and absorbs bursts (the Flink autoscaler's target utilisation).
    #[serde(default = "default_target_utilization")]
    #[schemars(range(min = 0.1, max = 1.0))]
    pub target_utilization: f64,
    /// What scales the workers on the operator's sizing. `HPA`: a HorizontalPodAutoscaler
    /// reading the external metric `sluice_needed_workers`, which needs the operator's
    /// external metrics API registered (manifests/external-metrics.yaml). `KEDA`: a KEDA
    /// `ScaledObject` whose `metrics-api` trigger reads the same number over plain HTTP from
    /// the operator's metrics Service, for clusters where KEDA owns the external metrics API
    /// (needs the keda.sh/v1alpha1 CRDs; without them the pipeline is Degraded, `KEDAMissing`).
    #[serde(default)]
    pub provider: AutoscalingProvider,
}

/// What scales an autoscaled pipeline's workers.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AutoscalingProvider {
    #[default]
    #[serde(rename = "HPA")]
    Hpa,
    #[serde(rename = "KEDA")]
    Keda,
}

impl Default for AutoscalingSpec {
    fn default() -> Self {
        Self {
            enabled: false,
            lag_per_replica: default_lag_per_replica(),
            catch_up_seconds: default_catch_up_seconds(),
            scale_up_stabilization_seconds: 0,
            scale_down_stabilization_seconds: default_scale_down_stabilization(),
            provider: AutoscalingProvider::Hpa,
            target_utilization: default_target_utilization(),
        }
    }
}

fn default_target_utilization() -> f64 {
    0.7
}

fn default_lag_per_replica() -> i64 {
    10_000
}

fn default_catch_up_seconds() -> i32 {
    60
}

fn default_scale_down_stabilization() -> i32 {
    300
}
