//! sluice-operator: reconciles `PipelineDeployment` objects into running pipelines.
//!
//! `crd` defines the resource, `children` builds the objects it owns, `controller` applies
//! them and writes `status` (skipping no-op applies through `child_cache`), `topic` manages
//! the Kafka topic, `discovery` detects optional APIs, `leader` holds the Lease, `metrics`
//! serves /metrics and /healthz.

pub mod autoscale;
pub mod child_cache;
pub mod children;
pub mod controller;
pub mod crd;
pub mod discovery;
pub mod external_metrics;
pub mod kafka_auth;
pub mod leader;
pub mod metrics;
pub mod status;
pub mod topic;
