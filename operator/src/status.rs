//! Status conditions (`Ready`, `Progressing`, `Degraded`) computed from what one reconcile
//! observed. Pure functions: the controller gathers observations, this decides what they mean.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::children::Names;
use crate::crd::{AutoscalingStatus, PipelineDeployment, PipelineDeploymentStatus};

/// What a reconcile saw, in the terms the conditions need.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub generation: i64,
    pub desired_replicas: i32,
    pub ready_replicas: i32,
    /// The Deployment controller has seen the latest template and finished rolling it out.
    pub rolled_out: bool,
    /// `None` when the operator does not manage the topic.
    pub topic_partitions: Option<i32>,
    /// Why the topic could not be ensured.
    pub topic_error: Option<String>,
    /// Why the database is not usable yet (CloudNativePG missing or still starting).
    pub database_waiting: Option<(String, String)>,
    /// A problem that needs a person (missing CRD, failed step).
    pub degraded: Option<(String, String)>,
    /// Why the worker would refuse the config the spec calls for (`WorkerConfig::validate`):
    /// neither its ConfigMap nor its Deployment was applied.
    pub invalid_config: Option<String>,
    /// The lag reading (every pipeline) and the autoscaler's decision (autoscaled ones).
    pub autoscale: Option<AutoscaleObserved>,
    /// Whether the monitoring objects the spec asks for (ServiceMonitor, PrometheusRule) could
    /// be created: `Err` names the missing Prometheus Operator CRDs. `None` when none is wanted.
    pub monitoring: Option<Result<(), String>>,
}

/// Reason of `Ready=False` and `Degraded=True` when the spec calls for a worker config the
/// worker would refuse.
pub const INVALID_WORKER_CONFIG: &str = "InvalidWorkerConfig";

/// Reason of `MonitoringReady=False` when the Prometheus Operator CRDs are missing.
pub const PROMETHEUS_OPERATOR_MISSING: &str = "PrometheusOperatorMissing";

/// What the operator read of one pipeline's lag and, when it is autoscaled, what the
/// autoscaler decided. The lag is read for every pipeline, so the lag alerts still fire when
/// every worker is down.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AutoscaleObserved {
    pub lag: Option<i64>,
    pub lag_seconds: Option<f64>,
    /// Why the lag is unknown (the `LagKnown` condition's message).
    pub unknown: Option<String>,
    /// `None` when the pipeline is not autoscaled.
    pub status: Option<AutoscalingStatus>,
}

/// How far the worker Deployment has rolled out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rollout {
    /// `spec.replicas` (the API default 1 when unset).
    pub desired_replicas: i32,
    pub ready_replicas: i32,
    /// The Deployment controller has seen the latest generation and every desired replica is
    /// updated and available, with no old ones left over.
    pub rolled_out: bool,
}

/// The rollout of the worker Deployment as stored (spec and status).
pub fn rollout(d: &Deployment) -> Rollout {
    let desired = d.spec.replicas.unwrap_or(1);
    let st = d.status.clone().unwrap_or_default();
    Rollout {
        desired_replicas: desired,
        ready_replicas: st.ready_replicas.unwrap_or(0),
        rolled_out: st.observed_generation >= d.metadata.generation
            && st.updated_replicas.unwrap_or(0) >= desired
            && st.replicas.unwrap_or(0) <= desired
            && st.available_replicas.unwrap_or(0) >= desired,
    }
}

impl Observed {
    /// Takes the workers' numbers from `r`.
    pub fn set_rollout(&mut self, r: Rollout) {
        self.desired_replicas = r.desired_replicas;
        self.ready_replicas = r.ready_replicas;
        self.rolled_out = r.rolled_out;
    }
}

/// One condition as decided now; `lastTransitionTime` is filled by [`merge`].
pub struct Cond {
    pub type_: &'static str,
    pub status: bool,
    pub reason: String,
    pub message: String,
}

/// The conditions for an observation: Ready, Progressing, Degraded, LagKnown once the lag
/// has been read, and MonitoringReady when monitoring objects are wanted. (Missing
/// monitoring does not make the pipeline un-Ready or Degraded: data still flows.)
pub fn conditions(o: &Observed) -> Vec<Cond> {
    let c = |type_, status, reason: &str, message: String| Cond {
        type_,
        status,
        reason: reason.into(),
        message,
    };
    let workers_ready = o.rolled_out && o.ready_replicas >= o.desired_replicas;
    let invalid_config = o.invalid_config.as_ref().map(|e| {
        format!(
            "the worker would refuse the config this spec calls for: {e}; its ConfigMap and Deployment are left as they were"
        )
    });
    let ready = if let Some(msg) = &invalid_config {
        c("Ready", false, INVALID_WORKER_CONFIG, msg.clone())
    } else if let Some(e) = &o.topic_error {
        c(
            "Ready",
            false,
            "KafkaUnavailable",
            format!("topic not ensured: {e}"),
        )
    } else if let Some((reason, msg)) = &o.database_waiting {
        c("Ready", false, reason, msg.clone())
    } else if !workers_ready {
        c(
            "Ready",
            false,
            "WorkersNotReady",
            format!("{}/{} workers ready", o.ready_replicas, o.desired_replicas),
        )
    } else {
        c(
            "Ready",
            true,
            "PipelineReady",
            format!("{} workers ready", o.ready_replicas),
        )
    };
    let progressing = if invalid_config.is_some() {
        c(
            "Progressing",
            false,
            INVALID_WORKER_CONFIG,
            "worker Deployment not updated: its config is invalid".into(),
        )
    } else if o.rolled_out {
        c(
            "Progressing",
            false,
            "RolloutComplete",
            "worker Deployment is up to date".into(),
        )
    } else {
        c(
            "Progressing",
            true,
            "RollingOut",
            format!(
                "rolling out workers: {}/{} ready",
                o.ready_replicas, o.desired_replicas
            ),
        )
    };
    let degraded = match (&invalid_config, &o.degraded, &o.topic_error) {
        (Some(msg), _, _) => c("Degraded", true, INVALID_WORKER_CONFIG, msg.clone()),
        (None, Some((reason, msg)), _) => c("Degraded", true, reason, msg.clone()),
        (None, None, Some(e)) => c("Degraded", true, "KafkaUnavailable", e.clone()),
        (None, None, None) => c(
            "Degraded",
            false,
            "AsExpected",
            "all steps succeeded".into(),
        ),
    };
    let mut all = vec![ready, progressing, degraded];
    if let Some(a) = &o.autoscale {
        all.push(match &a.unknown {
            None => c(
                "LagKnown",
                true,
                "OffsetsRead",
                "lag read from Kafka".into(),
            ),
            Some(why) => c(
                "LagKnown",
                false,
                "OffsetsUnavailable",
                if a.status.is_some() {
                    format!("{why}; the autoscaler holds the current size")
                } else {
                    why.clone()
                },
            ),
        });
    }
    if let Some(m) = &o.monitoring {
        all.push(match m {
            Ok(()) => c(
                "MonitoringReady",
                true,
                "MonitoringApplied",
                "ServiceMonitor and PrometheusRule as the spec asks are applied".into(),
            ),
            Err(missing) => c(
                "MonitoringReady",
                false,
                PROMETHEUS_OPERATOR_MISSING,
                format!(
                    "spec.monitoring asks for Prometheus Operator objects but the cluster does not serve the CRD {missing}: install the Prometheus Operator (or kube-prometheus-stack); the operator picks it up without a restart"
                ),
            ),
        });
    }
    all
}

/// Full conditions for the status: `lastTransitionTime` moves only when a status flips.
pub fn merge(previous: &[Condition], now: Vec<Cond>, generation: i64, at: Time) -> Vec<Condition> {
    now.into_iter()
        .map(|c| {
            let status = if c.status { "True" } else { "False" }.to_string();
            let last = previous
                .iter()
                .find(|p| p.type_ == c.type_ && p.status == status)
                .map_or_else(|| at.clone(), |p| p.last_transition_time.clone());
            Condition {
                type_: c.type_.into(),
                status,
                reason: c.reason,
                message: c.message,
                observed_generation: Some(generation),
                last_transition_time: last,
            }
        })
        .collect()
}

/// `192.4` → `3m12s`.
fn human_duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as i64;
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, sec) => format!("{m}m{sec}s"),
        (h, m, _) => format!("{h}h{m}m"),
    }
}

/// The status of `pd` for what a reconcile `observed`, after `previous` (conditions keep
/// their transition times).
pub fn next(
    pd: &PipelineDeployment,
    previous: &PipelineDeploymentStatus,
    observed: &Observed,
    now: Time,
) -> PipelineDeploymentStatus {
    PipelineDeploymentStatus {
        observed_generation: Some(observed.generation),
        conditions: merge(
            &previous.conditions,
            conditions(observed),
            observed.generation,
            now,
        ),
        desired_replicas: Some(observed.desired_replicas),
        ready_replicas: Some(observed.ready_replicas),
        topic_partitions: observed.topic_partitions,
        lag: observed.autoscale.as_ref().and_then(|a| a.lag),
        lag_seconds: observed.autoscale.as_ref().and_then(|a| a.lag_seconds),
        lag_duration: observed
            .autoscale
            .as_ref()
            .and_then(|a| a.lag_seconds)
            .map(human_duration),
        autoscaling: observed.autoscale.as_ref().and_then(|a| a.status.clone()),
        database_service: Some(match &pd.spec.postgres.cloudnativepg {
            Some(_) => format!("{}-rw", Names::of(pd).database),
            None => "external".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStatus};

    use super::*;

    fn deployment(
        generation: i64,
        replicas: Option<i32>,
        st: Option<DeploymentStatus>,
    ) -> Deployment {
        let mut d = Deployment {
            spec: DeploymentSpec {
                replicas,
                ..DeploymentSpec::default()
            },
            status: st,
            ..Deployment::default()
        };
        d.metadata.generation = Some(generation);
        d
    }

    #[test]
    fn rolled_out_only_when_the_latest_generation_is_fully_available() {
        let done = DeploymentStatus {
            observed_generation: Some(2),
            replicas: Some(3),
            updated_replicas: Some(3),
            ready_replicas: Some(3),
            available_replicas: Some(3),
            ..DeploymentStatus::default()
        };
        let r = rollout(&deployment(2, Some(3), Some(done.clone())));
        assert_eq!(
            r,
            Rollout {
                desired_replicas: 3,
                ready_replicas: 3,
                rolled_out: true
            }
        );
        // The Deployment controller has not seen generation 3 yet.
        assert!(!rollout(&deployment(3, Some(3), Some(done.clone()))).rolled_out);
        // Surge: an old pod still around.
        let surge = DeploymentStatus {
            replicas: Some(4),
            ..done.clone()
        };
        assert!(!rollout(&deployment(2, Some(3), Some(surge))).rolled_out);
        // Not all updated, or not all available.
        for st in [
            DeploymentStatus {
                updated_replicas: Some(2),
                ..done.clone()
            },
            DeploymentStatus {
                available_replicas: Some(2),
                ready_replicas: Some(2),
                ..done.clone()
            },
        ] {
            assert!(!rollout(&deployment(2, Some(3), Some(st))).rolled_out);
        }
        // No status yet; `spec.replicas` unset counts as the API default of 1.
        assert_eq!(
            rollout(&deployment(1, None, None)),
            Rollout {
                desired_replicas: 1,
                ready_replicas: 0,
                rolled_out: false
            }
        );
        // Scaled to zero and settled.
        let zero = DeploymentStatus {
            observed_generation: Some(1),
            ..DeploymentStatus::default()
        };
        assert!(rollout(&deployment(1, Some(0), Some(zero))).rolled_out);
    }

    #[test]
    fn ready_only_when_workers_topic_and_database_are() {
        let mut o = Observed {
            desired_replicas: 2,
            ready_replicas: 2,
            rolled_out: true,
            ..Observed::default()
        };
        assert!(conditions(&o)[0].status);
        o.ready_replicas = 1;
        assert_eq!(conditions(&o)[0].reason, "WorkersNotReady");
        o.ready_replicas = 2;
        o.topic_error = Some("down".into());
        let all = conditions(&o);
        assert!(!all[0].status && all[2].status);
        assert_eq!(all.len(), 3, "LagKnown only once the lag was read");
        o.topic_error = None;
        o.database_waiting = Some(("DatabaseNotReady".into(), "0/2".into()));
        assert_eq!(conditions(&o)[0].reason, "DatabaseNotReady");
        o.autoscale = Some(AutoscaleObserved {
            unknown: Some("broker down".into()),
            ..AutoscaleObserved::default()
        });
        let lag = &conditions(&o)[3];
        assert_eq!((lag.type_, lag.status), ("LagKnown", false));
        assert!(lag.message.starts_with("broker down"));
        o.monitoring = Some(Err("prometheusrules.monitoring.coreos.com".into()));
        let all = conditions(&o);
        let mon = &all[4];
        assert_eq!(
            (mon.type_, mon.status, mon.reason.as_str()),
            ("MonitoringReady", false, PROMETHEUS_OPERATOR_MISSING)
        );
        assert!(
            mon.message
                .contains("prometheusrules.monitoring.coreos.com")
        );
        assert_eq!(
            all[0].reason, "DatabaseNotReady",
            "monitoring does not decide Ready"
        );
        o.monitoring = Some(Ok(()));
        assert!(conditions(&o)[4].status);
    }

    #[test]
    fn an_invalid_worker_config_is_degraded_and_not_ready_whatever_the_workers() {
        let o = Observed {
            desired_replicas: 2,
            ready_replicas: 2,
            rolled_out: true,
            invalid_config: Some("postgres.max_connections must be at least 2".into()),
            topic_error: Some("down".into()),
            ..Observed::default()
        };
        let all = conditions(&o);
        for (i, type_, status) in [
            (0, "Ready", false),
            (1, "Progressing", false),
            (2, "Degraded", true),
        ] {
            assert_eq!(
                (all[i].type_, all[i].status, all[i].reason.as_str()),
                (type_, status, INVALID_WORKER_CONFIG)
            );
        }
        assert!(
            all[2]
                .message
                .contains("postgres.max_connections must be at least 2")
        );
    }

    #[test]
    fn durations_for_people() {
        assert_eq!(human_duration(4.4), "4s");
        assert_eq!(human_duration(192.4), "3m12s");
        assert_eq!(human_duration(7300.0), "2h1m");
    }

    #[test]
    fn transition_time_kept_while_status_holds() {
        let t0 = Time("2026-01-01T00:00:00Z".parse().unwrap());
        let t1 = Time("2026-01-01T00:01:00Z".parse().unwrap());
        let o = Observed {
            rolled_out: true,
            ..Observed::default()
        };
        let first = merge(&[], conditions(&o), 1, t0.clone());
        let second = merge(&first, conditions(&o), 1, t1.clone());
        assert_eq!(second[0].last_transition_time, t0);
        let o = Observed {
            rolled_out: false,
            desired_replicas: 1,
            ..Observed::default()
        };
        let third = merge(&second, conditions(&o), 2, t1.clone());
        assert_eq!(third[0].last_transition_time, t1);
    }
}
