use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStatus};

use super::*;

fn deployment(generation: i64, replicas: Option<i32>, st: Option<DeploymentStatus>) -> Deployment {
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

#[test]
fn topic_settings_differences_are_reported_not_degrading() {
    let mut o = Observed {
        desired_replicas: 1,
        ready_replicas: 1,
        rolled_out: true,
        ..Observed::default()
    };
    assert!(
        !conditions(&o)
            .iter()
            .any(|c| c.type_ == "TopicSettingsInSync")
    );
    o.topic_settings = Some(vec![]);
    let all = conditions(&o);
    let c = all
        .iter()
        .find(|c| c.type_ == "TopicSettingsInSync")
        .unwrap();
    assert!(c.status);
    o.topic_settings = Some(vec!["t: retention.ms is 1, spec asks 2".into()]);
    let all = conditions(&o);
    let c = all
        .iter()
        .find(|c| c.type_ == "TopicSettingsInSync")
        .unwrap();
    assert_eq!(
        (c.status, c.reason.as_str()),
        (false, TOPIC_SETTINGS_DIFFER)
    );
    assert!(c.message.starts_with("t: retention.ms is 1, spec asks 2; "));
    assert!(all[0].status, "still Ready");
    assert!(!all[2].status, "not Degraded");
}
