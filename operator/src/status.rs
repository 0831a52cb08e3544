//! Status conditions (`Ready`, `Progressing`, `Degraded`) computed from what one reconcile
//! observed. Pure functions: the controller gathers observations, this decides what they mean.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

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
}

/// One condition as decided now; `lastTransitionTime` is filled by [`merge`].
pub struct Cond {
    pub type_: &'static str,
    pub status: bool,
    pub reason: String,
    pub message: String,
}

/// The three conditions for an observation.
pub fn conditions(o: &Observed) -> [Cond; 3] {
    let c = |type_, status, reason: &str, message: String| Cond {
        type_,
        status,
        reason: reason.into(),
        message,
    };
    let workers_ready = o.rolled_out && o.ready_replicas >= o.desired_replicas;
    let ready = if let Some(e) = &o.topic_error {
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
    let progressing = if o.rolled_out {
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
    let degraded = match (&o.degraded, &o.topic_error) {
        (Some((reason, msg)), _) => c("Degraded", true, reason, msg.clone()),
        (None, Some(e)) => c("Degraded", true, "KafkaUnavailable", e.clone()),
        (None, None) => c(
            "Degraded",
            false,
            "AsExpected",
            "all steps succeeded".into(),
        ),
    };
    [ready, progressing, degraded]
}

/// Full conditions for the status: `lastTransitionTime` moves only when a status flips.
pub fn merge(previous: &[Condition], now: [Cond; 3], generation: i64, at: Time) -> Vec<Condition> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let [ready, _, degraded] = conditions(&o);
        assert!(!ready.status && degraded.status);
        o.topic_error = None;
        o.database_waiting = Some(("DatabaseNotReady".into(), "0/2".into()));
        assert_eq!(conditions(&o)[0].reason, "DatabaseNotReady");
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
