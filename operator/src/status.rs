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
    /// Where the existing topics differ from the spec's replication factor and
    /// `topicSettings` (empty: they match); `None` when not compared (topic unmanaged or
    /// unreachable).
    pub topic_settings: Option<Vec<String>>,
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

/// Reason of `TopicSettingsInSync=False`: an existing topic's settings differ from the spec
/// (reported, never altered).
pub const TOPIC_SETTINGS_DIFFER: &str = "TopicSettingsDiffer";

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
/// has been read, TopicSettingsInSync once a managed topic's settings were compared, and
/// MonitoringReady when monitoring objects are wanted. (Missing
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
    if let Some(differences) = &o.topic_settings {
        all.push(if differences.is_empty() {
            c(
                "TopicSettingsInSync",
                true,
                "TopicSettingsMatch",
                "the topics have the replication factor and settings the spec asks for".into(),
            )
        } else {
            c(
                "TopicSettingsInSync",
                false,
                TOPIC_SETTINGS_DIFFER,
                format!(
                    "{}; the operator never alters an existing topic: change the topic (kafka-configs --alter) or the spec",
                    differences.join("; ")
                ),
            )
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
mod tests;
