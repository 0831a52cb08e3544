//! How many workers a pipeline needs, in one step.
//!
//! The rule is the Flink Kubernetes operator autoscaler's: the workers must keep up with the
//! input at a target utilisation *and* work off the backlog within the catch-up time, both at
//! the workers' true (measured, busy) per-worker rate:
//!
//! ```text
//! need = lag / (catchUpSeconds × perWorkerRate) + input / (targetUtilisation × perWorkerRate)
//! desired = max(minReplicas, min(ceil(need), partitions, maxReplicas, budget / maxConnections))
//! ```
//!
//! Before any per-worker rate was measured it falls back to `ceil(lag / lagPerReplica)`.
//! The caps: a worker beyond the topic's partitions would idle; `maxReplicas` is the user's
//! ceiling; and each worker opens `postgres.maxConnections` connections to the primary, so a
//! connection budget allows `floor(budget / maxConnections)` workers. The CRD has no budget
//! field yet: it is a parameter here, and the field that should carry it is
//! `spec.postgres.connectionBudget` (connections of the primary this pipeline's workers may
//! use in total, e.g. the server's `max_connections` minus superuser and other clients'
//! reservations). `minReplicas` is a floor that wins over every cap.
//!
//! No decision is made on an Unknown lag ([`Hold::LagUnknown`]: the caller keeps the current
//! size), and a lower size is never chosen while the group is rebalancing
//! ([`Hold::Rebalancing`]): the throughput seen mid-rebalance is not the workers' capacity.
//!
//! [`keda_desired`] is KEDA's Kafka scaler rule on the same inputs, for comparison, and
//! [`Stabilizer`] is the HorizontalPodAutoscaler's stabilization window, for callers (and the
//! trace benchmark) that apply the CRD's `scaleUp/scaleDownStabilizationSeconds` themselves.

use std::collections::VecDeque;
use std::fmt;

use crate::crd::PipelineDeployment;

/// Flink autoscaler's default `job.autoscaler.utilization.target`. Not in the CRD; the field
/// that should carry it is `spec.autoscaling.targetUtilization`.
pub const DEFAULT_TARGET_UTILISATION: f64 = 0.7;

/// Everything the rule needs from the spec (and the topic), as plain numbers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    pub min_replicas: i32,
    pub max_replicas: i32,
    /// Partitions the topic has (what Kafka reports, may exceed `spec.kafka.partitions`).
    pub partitions: i32,
    /// Fallback target lag per worker, before a per-worker rate is known.
    pub lag_per_replica: i64,
    /// Seconds in which the backlog should be worked off.
    pub catch_up_seconds: f64,
    /// Fraction of a worker's capacity the input should use (0 < u ≤ 1).
    pub target_utilisation: f64,
    /// `spec.postgres.maxConnections`: connections each worker opens.
    pub connections_per_worker: i32,
    /// Connections of the primary all workers may use together; `None` = no database cap.
    pub connection_budget: Option<i32>,
}

impl Policy {
    /// The pipeline's policy. `partitions`: what the topic has, if read (else the spec's);
    /// `target_utilisation` and `connection_budget`: `spec.autoscaling.targetUtilization` and
    /// `spec.postgres.connectionBudget` (the controller passes them).
    pub fn from_spec(
        pd: &PipelineDeployment,
        partitions: Option<i32>,
        target_utilisation: f64,
        connection_budget: Option<i32>,
    ) -> Self {
        // Absent autoscaling: the CRD's defaults, through serde (the default fns are private).
        let a = pd.spec.autoscaling.clone().unwrap_or_else(|| {
            serde_json::from_value(serde_json::json!({})).expect("AutoscalingSpec defaults")
        });
        Self {
            min_replicas: pd.spec.workers.min_replicas,
            max_replicas: pd.spec.workers.max_replicas,
            partitions: partitions.unwrap_or(pd.spec.kafka.partitions),
            lag_per_replica: a.lag_per_replica,
            catch_up_seconds: f64::from(a.catch_up_seconds),
            target_utilisation,
            connections_per_worker: pd.spec.postgres.max_connections,
            connection_budget,
        }
    }
}

/// What the rule sees at one evaluation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Signals<'a> {
    /// Total lag in records, or why it is unknown.
    pub lag: Result<i64, &'a str>,
    /// Records/s produced (over the rate window); `None` = not measured yet (counted as 0).
    pub input_rate: Option<f64>,
    /// The last trustworthy per-worker rate (records/s); `None` = fall back to lagPerReplica.
    pub per_worker_rate: Option<f64>,
    /// Workers the group has now.
    pub current: i32,
    /// The group is rebalancing (coordinator state, or a rollout/scale in progress).
    pub rebalancing: bool,
}

/// The outcome of one evaluation.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Run `desired` workers (may equal the current count).
    Scale(Decision),
    /// Make no decision: keep the current count.
    Hold(Hold),
}

impl Verdict {
    /// The size to run: the decision's, or `current` on hold.
    pub fn replicas(&self, current: i32) -> i32 {
        match self {
            Self::Scale(d) => d.desired,
            Self::Hold(_) => current,
        }
    }
}

/// A sizing decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub desired: i32,
    /// What the formula asked for before rounding and caps.
    pub need: f64,
    pub reason: Reason,
    /// The bound that changed `ceil(need)`, if any.
    pub cap: Option<Cap>,
}

/// Which formula produced the need.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reason {
    /// `lag / (catchUp × rate) + input / (utilisation × rate)`.
    Rates {
        lag: i64,
        input: f64,
        per_worker: f64,
        catch_up_seconds: f64,
        target_utilisation: f64,
    },
    /// `lag / lagPerReplica`, before any per-worker rate was measured.
    LagPerReplica { lag: i64, lag_per_replica: i64 },
}

/// The bound that limited the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    /// The topic's partitions.
    Partitions(i32),
    /// `spec.workers.maxReplicas`.
    MaxReplicas(i32),
    /// `floor(budget / connections_per_worker)` workers.
    Database {
        workers: i32,
        budget: i32,
        connections_per_worker: i32,
    },
    /// Raised to `spec.workers.minReplicas`.
    MinReplicas(i32),
}

/// Why no decision was made.
#[derive(Debug, Clone, PartialEq)]
pub enum Hold {
    /// The lag reading was Unknown.
    LagUnknown { reason: String },
    /// The rule wants fewer workers while the group rebalances.
    Rebalancing { current: i32, wanted: i32 },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Rates {
                lag,
                input,
                per_worker,
                catch_up_seconds,
                target_utilisation,
            } => write!(
                f,
                "lag {lag} / ({catch_up_seconds} s × {per_worker:.0}/s) + input {input:.0}/s / \
                 ({target_utilisation} × {per_worker:.0}/s)"
            ),
            Self::LagPerReplica {
                lag,
                lag_per_replica,
            } => write!(
                f,
                "lag {lag} / {lag_per_replica} per replica (no per-worker rate measured yet)"
            ),
        }
    }
}

impl fmt::Display for Cap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Partitions(n) => write!(f, "capped at the topic's {n} partitions"),
            Self::MaxReplicas(n) => write!(f, "capped at maxReplicas {n}"),
            Self::Database {
                workers,
                budget,
                connections_per_worker,
            } => write!(
                f,
                "capped at {workers} workers by the database: budget {budget} connections / \
                 {connections_per_worker} per worker"
            ),
            Self::MinReplicas(n) => write!(f, "raised to minReplicas {n}"),
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} workers: need {:.2} = {}",
            self.desired, self.need, self.reason
        )?;
        if let Some(cap) = self.cap {
            write!(f, ", {cap}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Hold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LagUnknown { reason } => write!(f, "holding: lag unknown ({reason})"),
            Self::Rebalancing { current, wanted } => write!(
                f,
                "holding {current} workers: {wanted} wanted but the group is rebalancing"
            ),
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Scale(d) => d.fmt(f),
            Self::Hold(h) => h.fmt(f),
        }
    }
}

/// Sizes the group in one step (see the module docs).
pub fn decide(policy: &Policy, s: &Signals<'_>) -> Verdict {
    let lag = match s.lag {
        Ok(lag) => lag.max(0),
        Err(reason) => {
            return Verdict::Hold(Hold::LagUnknown {
                reason: reason.to_string(),
            });
        }
    };
    let (need, reason) = match s.per_worker_rate.filter(|r| *r > 0.0 && r.is_finite()) {
        Some(rate) => {
            let input = s.input_rate.unwrap_or(0.0).max(0.0);
            let catch_up = policy.catch_up_seconds.max(1.0);
            let u = policy.target_utilisation.clamp(0.01, 1.0);
            (
                lag as f64 / (catch_up * rate) + input / (u * rate),
                Reason::Rates {
                    lag,
                    input,
                    per_worker: rate,
                    catch_up_seconds: catch_up,
                    target_utilisation: u,
                },
            )
        }
        None => {
            let per = policy.lag_per_replica.max(1);
            (
                lag as f64 / per as f64,
                Reason::LagPerReplica {
                    lag,
                    lag_per_replica: per,
                },
            )
        }
    };
    // ceil, tolerant of float noise (3.0000000001 is 3 workers, not 4).
    let wanted = (need - 1e-9).ceil().clamp(0.0, f64::from(i32::MAX)) as i32;

    let mut caps = vec![
        Cap::Partitions(policy.partitions.max(1)),
        Cap::MaxReplicas(policy.max_replicas),
    ];
    if let Some(budget) = policy.connection_budget {
        let per = policy.connections_per_worker.max(1);
        caps.push(Cap::Database {
            workers: budget.max(0) / per,
            budget,
            connections_per_worker: per,
        });
    }
    let limit = |c: &Cap| match *c {
        Cap::Partitions(n) | Cap::MaxReplicas(n) | Cap::MinReplicas(n) => n,
        Cap::Database { workers, .. } => workers,
    };
    // The tightest bound; on a tie the first listed (partitions) names it.
    let tightest = caps
        .iter()
        .copied()
        .reduce(|a, b| if limit(&b) < limit(&a) { b } else { a })
        .expect("at least two caps");
    let (mut desired, mut cap) = if wanted > limit(&tightest) {
        (limit(&tightest), Some(tightest))
    } else {
        (wanted, None)
    };
    if desired < policy.min_replicas {
        desired = policy.min_replicas;
        cap = Some(Cap::MinReplicas(policy.min_replicas));
    }
    if s.rebalancing && desired < s.current {
        return Verdict::Hold(Hold::Rebalancing {
            current: s.current,
            wanted: desired,
        });
    }
    Verdict::Scale(Decision {
        desired,
        need,
        reason,
        cap,
    })
}

/// The lag KEDA's Kafka scaler reports to the HPA (default settings: `allowIdleConsumers`,
/// `limitToPartitionsWithLag` and `excludePersistentLag` off): the total lag, capped at
/// `partitions × lagThreshold` when `totalLag / lagThreshold` (integer division, as in
/// `getTotalLag` of `pkg/scalers/kafka_scaler.go`) exceeds the partitions.
pub fn keda_metric(total_lag: i64, lag_threshold: i64, partitions: i32) -> i64 {
    let threshold = lag_threshold.max(1);
    let partitions = i64::from(partitions.max(0));
    if total_lag / threshold > partitions {
        partitions * threshold
    } else {
        total_lag
    }
}

/// KEDA's Kafka scaler rule: the HPA's `AverageValue` answer on [`keda_metric`],
/// `ceil(metric / lagThreshold)`, within `[minReplicas, maxReplicas]` (what the HPA clamps
/// to). KEDA's own lag is `end − committed`, not counting from the log start; pass it what
/// KEDA would see. Not modelled: HPA's 10 % tolerance and behavior (the trace benchmark
/// applies them), scale to zero below `activationLagThreshold`.
pub fn keda_desired(
    total_lag: i64,
    lag_threshold: i64,
    partitions: i32,
    min_replicas: i32,
    max_replicas: i32,
) -> i32 {
    let threshold = lag_threshold.max(1);
    let metric = keda_metric(total_lag.max(0), threshold, partitions);
    let want = (metric + threshold - 1) / threshold;
    (want.min(i64::from(i32::MAX)) as i32).clamp(min_replicas, max_replicas.max(min_replicas))
}

/// The HorizontalPodAutoscaler's stabilization windows (`behavior.scaleUp/scaleDown.
/// stabilizationWindowSeconds`): a scale-up goes to the lowest recommendation of the up
/// window, a scale-down to the highest of the down window, so a size must be wanted for the
/// whole window before the group moves there.
#[derive(Debug, Clone)]
pub struct Stabilizer {
    up_window: f64,
    down_window: f64,
    history: VecDeque<(f64, i32)>,
}

impl Stabilizer {
    /// Windows in seconds (the CRD's `scaleUpStabilizationSeconds`,
    /// `scaleDownStabilizationSeconds`).
    pub fn new(up_window: f64, down_window: f64) -> Self {
        Self {
            up_window,
            down_window,
            history: VecDeque::new(),
        }
    }

    /// Records the recommendation `desired` at time `at` (seconds, monotonic) and returns the
    /// stabilized size given the `current` one (HPA's `stabilizeRecommendationWithBehaviors`).
    pub fn stabilize(&mut self, at: f64, desired: i32, current: i32) -> i32 {
        self.history.push_back((at, desired));
        let keep = self.up_window.max(self.down_window);
        while let Some(&(t, _)) = self.history.front()
            && at - t > keep
        {
            self.history.pop_front();
        }
        let (mut up, mut down) = (desired, desired);
        for &(t, r) in &self.history {
            if at - t <= self.up_window {
                up = up.min(r);
            }
            if at - t <= self.down_window {
                down = down.max(r);
            }
        }
        current.max(up).min(down)
    }
}

#[cfg(test)]
mod tests;
