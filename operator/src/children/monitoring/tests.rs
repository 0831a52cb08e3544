use super::*;
use crate::children::testing::{BASIC, pipeline};

fn names(v: &Value, key: &str) -> Vec<String> {
    v[0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r[key].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn every_rule_selects_its_own_pipeline() {
    let pd = pipeline(BASIC);
    let groups = rule_groups(&pd);
    assert_eq!(groups[0]["name"], "sluice.ns.payments");
    for r in groups[0]["rules"].as_array().unwrap() {
        let expr = r["expr"].as_str().unwrap();
        for selector in expr.split('{').skip(1) {
            let selector = selector.split('}').next().unwrap();
            if selector.starts_with(' ') || selector.starts_with('.') {
                continue; // an annotation template, not a selector
            }
            assert!(
                selector.contains(r#"namespace="ns""#)
                    && (selector.contains(r#"pipeline="payments""#)
                        || selector.contains(r#"pod=~"payments-db-"#)),
                "{} selects {{{selector}}}",
                r["alert"].as_str().or(r["record"].as_str()).unwrap()
            );
        }
    }
}

#[test]
fn optional_rules_follow_the_spec() {
    let mut pd = pipeline(BASIC);
    let basic = names(&rule_groups(&pd), "alert");
    assert!(basic.contains(&"SluiceWorkersDown".to_string()));
    assert!(basic.contains(&"SluiceFraudRateSpike".to_string()));
    assert!(basic.contains(&"SluiceLagUnknown".to_string()));
    for absent in ["SluiceAutoscalerAtMax", "SluiceReplicaLagHigh"] {
        assert!(!basic.contains(&absent.to_string()), "{absent}");
    }
    pd.spec.fraud.enabled = false;
    pd.spec.autoscaling = Some(crate::crd::AutoscalingSpec {
        enabled: true,
        ..Default::default()
    });
    pd.spec.postgres.external = None;
    pd.spec.postgres.cloudnativepg = Some(serde_json::from_value(json!({})).unwrap());
    let all = rule_groups(&pd);
    let alerts = names(&all, "alert");
    for present in [
        "SluiceLagUnknown",
        "SluiceAutoscalerAtMax",
        "SluiceReplicaLagHigh",
    ] {
        assert!(alerts.contains(&present.to_string()), "{present}");
    }
    assert!(!alerts.contains(&"SluiceFraudRateSpike".to_string()));
    assert!(!names(&all, "record").iter().any(|r| r.contains("fraud")));
    let replica = all[0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["alert"] == "SluiceReplicaLagHigh")
        .unwrap();
    assert_eq!(replica["labels"]["pipeline"], "payments");
}

#[test]
fn thresholds_come_from_the_spec() {
    let mut pd = pipeline(BASIC);
    pd.spec.monitoring.alert_lag_threshold = 5000;
    pd.spec.monitoring.alerts.time_lag_seconds = 42;
    pd.spec.monitoring.alerts.min_quality_score = 0.75;
    let groups = rule_groups(&pd);
    let expr = |alert: &str| {
        groups[0]["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["alert"] == alert)
            .unwrap()["expr"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert!(expr("SluiceConsumerLagHigh").ends_with("> 5000"));
    assert!(expr("SluiceConsumerLagGrowing").contains("> 500 and"));
    assert!(expr("SluiceTimeLagHigh").ends_with("> 42"));
    assert!(expr("SluiceQualityScoreLow").ends_with("< 0.75"));
}

#[test]
fn monitoring_labels_reach_both_objects_without_replacing_ours() {
    let mut pd = pipeline(BASIC);
    pd.spec
        .monitoring
        .labels
        .insert("release".into(), "kube-prometheus-stack".into());
    for obj in [build_service_monitor(&pd), build_prometheus_rule(&pd)] {
        let labels = obj.metadata.labels.unwrap();
        assert_eq!(labels["release"], "kube-prometheus-stack");
        assert_eq!(labels["app.kubernetes.io/managed-by"], "sluice-operator");
        assert_eq!(labels["sluice.dev/pipeline"], "payments");
    }
}
