//! Tests of the fraud stage: eviction and reload, switching on and off, repeats.

use super::*;
use crate::validate::{TimeBounds, validate};

fn tx(customer: &str, n: usize) -> ValidTransaction {
    let json = serde_json::json!({
        "transaction_id": format!("{customer}-{n}"), "customer_id": customer, "merchant_id": "m-1",
        "amount": 20.0, "currency": "EUR", "timestamp": "2026-11-25T11:00:00Z",
        "payment_method": "credit_card", "country": "DE", "device_id": "dev-1"
    });
    validate(
        json.to_string().as_bytes(),
        TimeBounds::around("2026-11-25T12:00:00Z".parse().unwrap(), 30, 300),
    )
    .expect("valid")
}

fn scorer(capacity: usize) -> FraudScorer {
    FraudScorer::new(
        Model::default(),
        FraudConfig {
            profile_capacity: capacity,
            ..FraudConfig::default()
        },
    )
}

#[test]
fn evicted_customers_come_back_from_memory_then_from_the_database() {
    let mut s = scorer(2);
    for n in 0..5 {
        s.score(&tx("habitual", n), 0);
    }
    let persisted = s.take_dirty();
    s.handed_on();
    for c in ["x", "y", "z"] {
        s.score(&tx(c, 0), 1);
    }
    s.take_dirty();
    assert_eq!(
        s.partition_of.len(),
        s.store.len(),
        "the map follows the store's evictions"
    );
    // Evicted a moment ago: restored from memory, no database read needed.
    assert!(s.to_reload(&mut ["habitual"].into_iter()).is_empty());
    for _ in 0..EVICTED_KEPT_FOR {
        s.handed_on();
    }
    // Long gone: the worker must read it back; warming it clears the need.
    assert_eq!(
        s.to_reload(&mut ["habitual", "never-seen"].into_iter()),
        vec!["habitual".to_string()]
    );
    s.warm(
        persisted
            .into_iter()
            .filter(|r| r.customer_id == "habitual")
            .collect(),
    );
    assert!(s.to_reload(&mut ["habitual"].into_iter()).is_empty());
    let back = s.score(&tx("habitual", 5), 0);
    let mut fresh = scorer(10);
    for n in 0..5 {
        fresh.score(&tx("habitual", n), 0);
    }
    assert_eq!(
        back,
        fresh.score(&tx("habitual", 5), 0),
        "same verdict as if never evicted"
    );
}

#[test]
fn disabled_at_start_does_no_customer_work_until_switched_on() {
    let off = FraudConfig {
        enabled: false,
        ..FraudConfig::default()
    };
    let mut stage = FraudStage::new(Model::default(), &off);
    assert!(!stage.stateful());
    assert_eq!(stage.score(&tx("a", 0), 0), None);
    assert!(stage.take_dirty().is_empty());
    assert!(!stage.reconfigure(&off));
    assert!(
        stage.reconfigure(&FraudConfig::default()),
        "switched on: the caller warms state"
    );
    assert!(stage.stateful());
    assert!(stage.score(&tx("a", 1), 0).is_some());
    assert_eq!(stage.take_dirty().len(), 1);
}

#[test]
fn a_repeated_transaction_leaves_the_profile_alone() {
    let mut once = scorer(10);
    let mut twice = scorer(10);
    for n in 0..3 {
        once.score(&tx("c", n), 0);
        twice.score(&tx("c", n), 0);
    }
    assert_eq!(twice.score(&tx("c", 1), 0), None, "repeat not scored");
    assert_eq!(once.score(&tx("c", 3), 0), twice.score(&tx("c", 3), 0));
    twice.forget_partitions(&[0]);
    assert!(
        twice.score(&tx("c", 1), 0).is_some(),
        "forgotten with its partition"
    );
}

#[test]
fn forgetting_a_partition_forgets_its_evicted_customers() {
    let mut s = scorer(1);
    s.score(&tx("a", 0), 3);
    s.take_dirty();
    s.score(&tx("b", 0), 4);
    s.take_dirty();
    for _ in 0..EVICTED_KEPT_FOR {
        s.handed_on();
    }
    assert_eq!(s.to_reload(&mut ["a"].into_iter()), vec!["a".to_string()]);
    s.forget_partitions(&[3]);
    assert!(s.to_reload(&mut ["a"].into_iter()).is_empty());
}

#[test]
fn a_lagging_partition_keeps_its_share_of_the_remembered_ids() {
    let mut recent = RecentIds::default();
    let bound = 100;
    // Partition 7 is read up to id 20, then the others race 1,000 ids ahead of it.
    for h in 0..20 {
        assert!(recent.insert_bounded(h, 7, bound));
    }
    for h in 1_000..2_000 {
        assert!(recent.insert_bounded(h, h as i32 % 3, bound));
    }
    assert!(
        !recent.insert_bounded(5, 7, bound),
        "partition 7's repeat is still recognised"
    );
    assert!(
        recent.insert_bounded(1_000, 1, bound),
        "the flooding partitions gave up their oldest"
    );
    assert!(recent.set.len() <= bound + 1);
    recent.forget_partitions(&[7]);
    assert!(
        recent.insert_bounded(5, 7, bound),
        "forgotten with its partition"
    );
}
