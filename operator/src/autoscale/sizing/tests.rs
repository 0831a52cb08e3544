use super::*;

/// 12 partitions, 1..12 workers, CRD defaults (lagPerReplica 10 000, catch-up 60 s),
/// utilisation 0.7, 4 connections per worker, no budget.
fn policy() -> Policy {
    Policy {
        min_replicas: 1,
        max_replicas: 12,
        partitions: 12,
        lag_per_replica: 10_000,
        catch_up_seconds: 60.0,
        target_utilisation: 0.7,
        connections_per_worker: 4,
        connection_budget: None,
    }
}

fn signals(lag: i64, input: f64, rate: Option<f64>, current: i32) -> Signals<'static> {
    Signals {
        lag: Ok(lag),
        input_rate: Some(input),
        per_worker_rate: rate,
        current,
        rebalancing: false,
    }
}

fn scale(v: Verdict) -> Decision {
    match v {
        Verdict::Scale(d) => d,
        Verdict::Hold(h) => panic!("expected a decision, got {h}"),
    }
}

const KEDA_THRESHOLD: i64 = 10_000; // = lagPerReplica default

#[test]
fn burst_with_backlog_one_step() {
    // lag 120 000, input 8 000/s, 2 500/s per worker:
    //   120 000 / (60 × 2 500) = 0.80   (work off the backlog in 60 s)
    // +   8 000 / (0.7 × 2 500) = 4.57  (keep up at 70 %)
    // = 5.37 → 6 workers.
    let d = scale(decide(
        &policy(),
        &signals(120_000, 8_000.0, Some(2_500.0), 2),
    ));
    assert_eq!(d.desired, 6);
    assert!((d.need - 5.371).abs() < 1e-3, "{}", d.need);
    assert_eq!(d.cap, None);
    // KEDA on the same lag: ceil(120 000 / 10 000) = 12, twice as many.
    assert_eq!(keda_desired(120_000, KEDA_THRESHOLD, 12, 1, 12), 12);
}

#[test]
fn steady_input_small_trailing_lag() {
    // Idle steady state: input 2 000/s, lag 2 000 (one second of commits in flight):
    //   2 000 / 150 000 = 0.013 + 2 000 / 1 750 = 1.143 → 1.16 → 2 workers
    // (one would run at 80 % > 70 %).
    let d = scale(decide(
        &policy(),
        &signals(2_000, 2_000.0, Some(2_500.0), 1),
    ));
    assert_eq!(d.desired, 2);
    // KEDA: ceil(2 000 / 10 000) = 1.
    assert_eq!(keda_desired(2_000, KEDA_THRESHOLD, 12, 1, 12), 1);
}

#[test]
fn exact_need_is_not_rounded_up() {
    // 150 000 / 150 000 + 1 750 / 1 750 = 2.0 exactly → 2, not 3.
    let d = scale(decide(
        &policy(),
        &signals(150_000, 1_750.0, Some(2_500.0), 1),
    ));
    assert_eq!(d.desired, 2);
}

#[test]
fn capped_by_partitions() {
    // lag 1 200 000, input 20 000/s: 1 200 000 / 150 000 = 8 + 20 000 / 1 750 = 11.43
    // → 19.43 → 20, capped at the 12 partitions (= maxReplicas; partitions named on a tie).
    let d = scale(decide(
        &policy(),
        &signals(1_200_000, 20_000.0, Some(2_500.0), 4),
    ));
    assert_eq!((d.desired, d.cap), (12, Some(Cap::Partitions(12))));
    // KEDA: 1 200 000 / 10 000 = 120 > 12 partitions → metric 120 000 → 12.
    assert_eq!(keda_metric(1_200_000, KEDA_THRESHOLD, 12), 120_000);
    assert_eq!(keda_desired(1_200_000, KEDA_THRESHOLD, 12, 1, 12), 12);
}

#[test]
fn capped_by_max_replicas() {
    let p = Policy {
        max_replicas: 8,
        ..policy()
    };
    // Same 19.43 → 20 → maxReplicas 8.
    let d = scale(decide(&p, &signals(1_200_000, 20_000.0, Some(2_500.0), 4)));
    assert_eq!((d.desired, d.cap), (8, Some(Cap::MaxReplicas(8))));
    assert_eq!(keda_desired(1_200_000, KEDA_THRESHOLD, 12, 1, 8), 8);
}

#[test]
fn capped_by_database_budget() {
    // Budget 20 connections, 4 per worker → at most 5 workers; the burst wants 6.
    let p = Policy {
        connection_budget: Some(20),
        ..policy()
    };
    let d = scale(decide(&p, &signals(120_000, 8_000.0, Some(2_500.0), 2)));
    assert_eq!(d.desired, 5);
    assert_eq!(
        d.cap,
        Some(Cap::Database {
            workers: 5,
            budget: 20,
            connections_per_worker: 4
        })
    );
    // KEDA knows nothing of the database: 12.
    assert_eq!(keda_desired(120_000, KEDA_THRESHOLD, 12, 1, 12), 12);
}

#[test]
fn floored_at_min_replicas() {
    // lag 0, input 500/s: 500 / 1 750 = 0.29 → 1, raised to minReplicas 2.
    let p = Policy {
        min_replicas: 2,
        ..policy()
    };
    let d = scale(decide(&p, &signals(0, 500.0, Some(2_500.0), 3)));
    assert_eq!((d.desired, d.cap), (2, Some(Cap::MinReplicas(2))));
    // Even a database cap below minReplicas does not go under the floor.
    let p = Policy {
        min_replicas: 2,
        connection_budget: Some(4),
        ..policy()
    };
    assert_eq!(
        decide(&p, &signals(120_000, 8_000.0, Some(2_500.0), 3)).replicas(3),
        2
    );
    assert_eq!(keda_desired(0, KEDA_THRESHOLD, 12, 2, 12), 2);
}

#[test]
fn falls_back_to_lag_per_replica_before_a_rate_is_measured() {
    // No per-worker rate yet: ceil(45 000 / 10 000) = ceil(4.5) = 5 — KEDA's answer too.
    let d = scale(decide(&policy(), &signals(45_000, 2_000.0, None, 1)));
    assert_eq!(d.desired, 5);
    assert!(matches!(d.reason, Reason::LagPerReplica { .. }));
    assert_eq!(keda_desired(45_000, KEDA_THRESHOLD, 12, 1, 12), 5);
    // No lag, no rate: minReplicas.
    assert_eq!(decide(&policy(), &signals(0, 0.0, None, 3)).replicas(3), 1);
}

#[test]
fn unknown_lag_holds() {
    let s = Signals {
        lag: Err("metadata from k:9092: timed out"),
        ..signals(0, 0.0, Some(2_500.0), 4)
    };
    let v = decide(&policy(), &s);
    assert!(matches!(v, Verdict::Hold(Hold::LagUnknown { .. })), "{v}");
    assert_eq!(v.replicas(4), 4);
}

#[test]
fn never_scales_down_while_rebalancing() {
    // 6 workers, the rule wants 2 (steady 2 000/s): held while rebalancing …
    let s = Signals {
        rebalancing: true,
        ..signals(2_000, 2_000.0, Some(2_500.0), 6)
    };
    assert_eq!(
        decide(&policy(), &s),
        Verdict::Hold(Hold::Rebalancing {
            current: 6,
            wanted: 2
        })
    );
    // … but scaling up is allowed: 120 000 lag at 8 000/s still wants 6 from 4.
    let s = Signals {
        rebalancing: true,
        ..signals(120_000, 8_000.0, Some(2_500.0), 4)
    };
    assert_eq!(decide(&policy(), &s).replicas(4), 6);
}

#[test]
fn keda_integer_division_quirk() {
    // 125 000 / 10 000 = 12 (integer) is not > 12 partitions: the metric stays 125 000
    // and the HPA wants ceil(12.5) = 13, clamped to maxReplicas 12.
    assert_eq!(keda_metric(125_000, KEDA_THRESHOLD, 12), 125_000);
    assert_eq!(keda_desired(125_000, KEDA_THRESHOLD, 12, 1, 12), 12);
    assert_eq!(keda_desired(125_000, KEDA_THRESHOLD, 12, 1, 20), 13);
}

#[test]
fn stabilizer_follows_hpa_windows() {
    // Up window 0 s, down window 300 s (the CRD's defaults).
    let mut s = Stabilizer::new(0.0, 300.0);
    assert_eq!(s.stabilize(0.0, 8, 2), 8); // up at once
    assert_eq!(s.stabilize(15.0, 3, 8), 8); // 8 was wanted 15 s ago: stay
    assert_eq!(s.stabilize(300.0, 3, 8), 8); // 8 is exactly 300 s old: still in the window
    assert_eq!(s.stabilize(316.0, 3, 8), 3); // the window holds only 3s now
}
