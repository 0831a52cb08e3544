//! Lag-driven autoscaling of a pipeline's workers: true lag from Kafka, rates over a window,
//! and a one-step sizing rule.
//!
//! - [`lag`] reads each partition's log start / end and the group's committed offsets, and the
//!   age of the oldest unconsumed record: [`LagReading::Known`] or [`LagReading::Unknown`] with
//!   the reason, never a made-up 0.
//! - [`rates`] turns successive readings into input, processing and per-worker rates; the
//!   per-worker rate is only trusted while the group was busy (it had lag to work on).
//! - [`sizing`] decides how many workers are needed, in one step (the Flink autoscaler's rule),
//!   capped by partitions, `maxReplicas` and a database connection budget, floored at
//!   `minReplicas`; it holds on an unknown lag and never scales down mid-rebalance.
//!   [`sizing::keda_desired`] is KEDA's Kafka rule, for comparison.
//!
//! # What the controller calls
//!
//! One [`Autoscaler`] per operator (it keeps each pipeline's rate window), then per pipeline
//! and poll (every 15 s or so):
//!
//! ```no_run
//! # async fn poll(
//! #     autoscaler: &sluice_operator::autoscale::Autoscaler,
//! #     pd: &sluice_operator::crd::PipelineDeployment,
//! #     ready_workers: i32,
//! #     current_replicas: i32,
//! #     rolling_out: bool,
//! # ) {
//! use sluice_operator::autoscale::{Autoscaler, SizingOptions, Verdict};
//! let obs = autoscaler.observe(pd, ready_workers).await;
//! // status.lag ← obs.total_lag() (None = unknown: leave it / report the reason),
//! // metrics     ← obs.total_lag(), obs.time_lag_seconds(), obs.rates.
//! let verdict = Autoscaler::decide(
//!     pd,
//!     &obs,
//!     current_replicas,
//!     rolling_out, // the caller's own knowledge of a rollout or scale in progress
//!     &SizingOptions::default(),
//! );
//! match &verdict {
//!     Verdict::Scale(d) => { /* serve d.desired as the needed workers; d is Display */ }
//!     Verdict::Hold(h) => { /* keep the current size (serve no new value); h is Display */ }
//! }
//! # }
//! ```
//!
//! and [`Autoscaler::forget`] when a pipeline is deleted. `observe` blocks a tokio blocking
//! thread for at most the [`LagReader`]'s timeout (5 s by default); it is safe to call for
//! several pipelines concurrently.
//!
//! [`SizingOptions`] carries `spec.autoscaling.targetUtilization` (default
//! [`sizing::DEFAULT_TARGET_UTILISATION`], 0.7) and `spec.postgres.connectionBudget` (total
//! connections of the primary the workers may use; no database cap when unset).

pub mod lag;
pub mod rates;
pub mod sizing;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::ResourceExt;

pub use lag::{LagReader, LagReading, LagSnapshot, LagTarget, PartitionLag, TimeLag};
pub use rates::{PerWorkerRate, RateConfig, RateWindow, Rates, Sample};
pub use sizing::{Cap, Decision, Hold, Policy, Reason, Signals, Verdict};

use crate::crd::PipelineDeployment;

/// One poll of one pipeline: the lag reading and the rates including it.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub lag: LagReading,
    /// Rates over the window (an Unknown reading adds no sample: these are the previous ones).
    pub rates: Rates,
    pub ready_workers: i32,
    /// The group coordinator reports a rebalance in progress.
    pub rebalancing: bool,
}

impl Observation {
    /// Total lag in records, `None` if unknown.
    pub fn total_lag(&self) -> Option<i64> {
        self.lag.total()
    }

    /// Age in seconds of the oldest unconsumed record, `None` if unknown.
    pub fn time_lag_seconds(&self) -> Option<f64> {
        self.lag.snapshot().and_then(|s| s.time_lag.seconds())
    }

    /// Partitions the topic has, if read.
    pub fn partitions(&self) -> Option<i32> {
        self.lag.snapshot().map(LagSnapshot::partition_count)
    }

    /// The rule's inputs. `rebalancing`: the caller's own knowledge (rollout, scale in
    /// progress), or-ed with the coordinator's.
    pub fn signals(&self, current: i32, rebalancing: bool) -> Signals<'_> {
        Signals {
            lag: self.lag.as_result(),
            input_rate: self.rates.input,
            per_worker_rate: self.rates.per_worker.map(|p| p.records_per_sec),
            current,
            rebalancing: rebalancing || self.rebalancing,
        }
    }
}

/// Sizing parameters the CRD does not carry yet (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SizingOptions {
    pub target_utilisation: f64,
    pub connection_budget: Option<i32>,
}

impl Default for SizingOptions {
    fn default() -> Self {
        Self {
            target_utilisation: sizing::DEFAULT_TARGET_UTILISATION,
            connection_budget: None,
        }
    }
}

/// Lag readings and rate windows of all pipelines.
#[derive(Debug)]
pub struct Autoscaler {
    reader: LagReader,
    rate_config: RateConfig,
    origin: Instant,
    /// key → (topic|group the window was built on, window).
    windows: Mutex<HashMap<String, (String, RateWindow)>>,
}

impl Default for Autoscaler {
    fn default() -> Self {
        Self::new(LagReader::default(), RateConfig::default())
    }
}

impl Autoscaler {
    pub fn new(reader: LagReader, rate_config: RateConfig) -> Self {
        Self {
            reader,
            rate_config,
            origin: Instant::now(),
            windows: Mutex::default(),
        }
    }

    /// Reads the pipeline's lag and updates its rates.
    pub async fn observe(&self, pd: &PipelineDeployment, ready_workers: i32) -> Observation {
        self.observe_target(&key(pd), &LagTarget::of(pd), ready_workers)
            .await
    }

    /// [`Self::observe`] with further client properties: the SASL credentials and TLS PEMs
    /// read from the pipeline's Secrets (`kafka_auth`).
    pub async fn observe_with(
        &self,
        pd: &PipelineDeployment,
        props: &[(&'static str, String)],
        ready_workers: i32,
    ) -> Observation {
        let mut target = LagTarget::of(pd);
        target.extra = props
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        self.observe_target(&key(pd), &target, ready_workers).await
    }

    /// An Unknown reading of the pipeline's lag that was not even attempted (`reason`), e.g.
    /// because its credentials could not be read.
    pub fn unreadable(&self, pd: &PipelineDeployment, reason: String) -> Observation {
        let target = LagTarget::of(pd);
        self.record(
            &key(pd),
            &scope(&target),
            LagReading::Unknown { reason },
            0,
            Instant::now(),
        )
    }

    /// [`Self::observe`] with an explicit target, e.g. with SASL properties in
    /// [`LagTarget::extra`]; `key` names the pipeline's rate window.
    pub async fn observe_target(
        &self,
        key: &str,
        target: &LagTarget,
        ready_workers: i32,
    ) -> Observation {
        let lag = self.reader.read(target).await;
        self.record(key, &scope(target), lag, ready_workers, Instant::now())
    }

    /// Adds a reading taken at `at` to the window `key` (restarted if `scope`, the topic and
    /// group it reads, changed). Unknown readings add nothing.
    pub fn record(
        &self,
        key: &str,
        scope: &str,
        lag: LagReading,
        ready_workers: i32,
        at: Instant,
    ) -> Observation {
        let mut windows = self.windows.lock().expect("autoscale windows poisoned");
        let entry = windows
            .entry(key.to_string())
            .or_insert_with(|| (scope.to_string(), RateWindow::new(self.rate_config)));
        if entry.0 != scope {
            *entry = (scope.to_string(), RateWindow::new(self.rate_config));
        }
        let window = &mut entry.1;
        let (rates, rebalancing) = match lag.snapshot() {
            Some(s) => (
                window.push(Sample {
                    at: at.saturating_duration_since(self.origin).as_secs_f64(),
                    end: s.sum_end(),
                    position: s.sum_position(),
                    lag: s.total(),
                    workers: ready_workers.max(0) as u32,
                    partitions: s.partition_count().max(0) as u32,
                    rebalancing: s.rebalancing(),
                }),
                s.rebalancing(),
            ),
            None => (window.rates(), false),
        };
        Observation {
            lag,
            rates,
            ready_workers,
            rebalancing,
        }
    }

    /// Restores a per-worker rate (records/s) measured earlier for the pipeline, e.g. kept in
    /// the status across an operator restart; the window's own measurements replace it.
    pub fn restore_per_worker(&self, pd: &PipelineDeployment, records_per_sec: f64) {
        if !(records_per_sec > 0.0 && records_per_sec.is_finite()) {
            return;
        }
        let scope = scope(&LagTarget::of(pd));
        let mut windows = self.windows.lock().expect("autoscale windows poisoned");
        let entry = windows
            .entry(key(pd))
            .or_insert_with(|| (scope.clone(), RateWindow::new(self.rate_config)));
        if entry.0 == scope {
            entry.1.restore_per_worker(PerWorkerRate {
                records_per_sec,
                workers: 0,
                measured_at: f64::NEG_INFINITY,
                fresh: false,
            });
        }
    }

    /// Drops the rate window of the pipeline `namespace/name` (the pipeline was deleted).
    pub fn forget(&self, namespace: &str, name: &str) {
        self.windows
            .lock()
            .expect("autoscale windows poisoned")
            .remove(&window_key(namespace, name));
    }

    /// The reading timeout.
    pub fn timeout(&self) -> Duration {
        self.reader.timeout()
    }

    /// Sizes the pipeline from an observation: [`sizing::decide`] with the spec's policy, the
    /// topic's partitions as read, and `rebalancing` or-ed with the coordinator's state.
    pub fn decide(
        pd: &PipelineDeployment,
        obs: &Observation,
        current_replicas: i32,
        rebalancing: bool,
        options: &SizingOptions,
    ) -> Verdict {
        let policy = Policy::from_spec(
            pd,
            obs.partitions(),
            options.target_utilisation,
            options.connection_budget,
        );
        sizing::decide(&policy, &obs.signals(current_replicas, rebalancing))
    }
}

/// Rate-window key of a pipeline: `namespace/name`.
fn key(pd: &PipelineDeployment) -> String {
    window_key(&pd.namespace().unwrap_or_default(), &pd.name_any())
}

fn window_key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// What a window's counters count: `topic|group` (a new group restarts the window).
fn scope(target: &LagTarget) -> String {
    format!("{}|{}", target.topic, target.group)
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    fn pd() -> PipelineDeployment {
        serde_yaml::from_str(
            r#"
apiVersion: sluice.dev/v1alpha1
kind: PipelineDeployment
metadata: {name: payments, namespace: shop}
spec:
  kafka: {bootstrapServers: "k:9092", topic: payments, partitions: 4}
  workers: {image: "w:1", minReplicas: 1, maxReplicas: 4}
  autoscaling: {enabled: true}
  postgres: {external: {primaryUrl: {name: db, key: url}}}
"#,
        )
        .unwrap()
    }

    /// Four partitions, each with `end` and `committed` offsets.
    fn reading(end: i64, committed: i64) -> LagReading {
        LagReading::Known(LagSnapshot {
            topic: "payments".into(),
            group: "g".into(),
            partitions: (0..4)
                .map(|p| PartitionLag::new(p, 0, end, Some(committed)))
                .collect(),
            time_lag: TimeLag::CaughtUp,
            group_state: None,
            read_at: SystemTime::now(),
            took: Duration::ZERO,
        })
    }

    #[test]
    fn observe_decide_round() {
        let a = Autoscaler::default();
        let t0 = Instant::now();
        let pd = pd();
        let opts = SizingOptions::default();
        // First poll: lag 4 × 20 000 = 80 000, no rates yet → ceil(80 000 / 10 000) = 8,
        // capped at the 4 partitions.
        let o = a.record(
            "shop/payments",
            "payments|g",
            reading(100_000, 80_000),
            2,
            t0,
        );
        assert_eq!(o.total_lag(), Some(80_000));
        let v = Autoscaler::decide(&pd, &o, 2, false, &opts);
        assert_eq!(v.replicas(2), 4, "{v}");
        // 15 s later: ends +60 000 (4 000/s in), positions +30 000 (2 000/s by 2 workers,
        // lag 80 000 → 110 000: busy) → 1 000/s per worker; in-flight lag 110 000:
        //   110 000 / (60 × 1 000) = 1.83 + 4 000 / (0.7 × 1 000) = 5.71 → 7.55 → 8 → 4.
        let o = a.record(
            "shop/payments",
            "payments|g",
            reading(115_000, 87_500),
            2,
            t0 + Duration::from_secs(15),
        );
        assert_eq!(o.rates.input, Some(4_000.0));
        assert_eq!(o.rates.per_worker.unwrap().records_per_sec, 1_000.0);
        let Verdict::Scale(d) = Autoscaler::decide(&pd, &o, 2, false, &opts) else {
            panic!("decision expected")
        };
        assert_eq!((d.desired, d.cap), (4, Some(Cap::Partitions(4))));
        // An unknown reading: no sample, the rates stay, the decision holds.
        let o = a.record(
            "shop/payments",
            "payments|g",
            LagReading::Unknown {
                reason: "timed out".into(),
            },
            4,
            t0 + Duration::from_secs(30),
        );
        assert_eq!(o.rates.input, Some(4_000.0));
        assert_eq!(o.total_lag(), None);
        let v = Autoscaler::decide(&pd, &o, 4, false, &opts);
        assert!(matches!(v, Verdict::Hold(Hold::LagUnknown { .. })), "{v}");
        // Another group on the same pipeline: a new window.
        let o = a.record(
            "shop/payments",
            "payments|other",
            reading(115_000, 87_500),
            4,
            t0 + Duration::from_secs(45),
        );
        assert_eq!((o.rates.input, o.rates.per_worker), (None, None));
    }
}
