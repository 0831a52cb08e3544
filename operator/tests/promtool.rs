//! Every alert is unit tested by Prometheus' own `promtool`: the per-pipeline PrometheusRule,
//! rendered through the library for a sample pipeline, and the operator's own rules
//! (`charts/sluice/files/rules/*.yaml`). `promtool check rules` checks both as written
//! (annotation templates included); `promtool test rules` runs `operator/tests/promtool/*.test.yaml`
//! against copies without annotations (the tests compare labels, not prose). The test fails
//! when an alert lacks a firing and a not-firing case, or a recording rule is never queried.
//! No cluster needed: promtool is Debian's (hack/deps.sh installs the prometheus package).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use serde_yaml::Value;
use sluice_harness::repo_root as repo;
use sluice_operator::children::monitoring;
use sluice_operator::crd::PipelineDeployment;

/// The sample pipeline the unit tests are written for (see pipeline.test.yaml).
const SAMPLE: &str = r#"
apiVersion: sluice.dev/v1alpha1
kind: PipelineDeployment
metadata: {name: payments, namespace: shop, uid: 00000000-0000-0000-0000-000000000001}
spec:
  kafka: {bootstrapServers: "kafka:9092", topic: payments, partitions: 12}
  workers: {image: "sluice-worker:test", minReplicas: 1, maxReplicas: 4}
  autoscaling: {enabled: true}
  postgres:
    cloudnativepg: {readReplicas: 1}
"#;

fn promtool(args: &[&str], dir: &Path) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool (Debian's prometheus package; hack/deps.sh installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

/// The rule file with every rule's annotations removed.
fn without_annotations(mut rules: Value) -> Value {
    for group in rules["groups"].as_sequence_mut().unwrap() {
        for rule in group["rules"].as_sequence_mut().unwrap() {
            rule.as_mapping_mut().unwrap().remove("annotations");
        }
    }
    rules
}

fn rule_names(rules: &Value, key: &str) -> BTreeSet<String> {
    rules["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap())
        .filter_map(|r| r[key].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn every_alert_has_a_passing_promtool_unit_test() {
    let pd: PipelineDeployment = serde_yaml::from_str(SAMPLE).unwrap();
    let pipeline: Value = serde_yaml::to_value(serde_json::json!({
        "groups": monitoring::rule_groups(&pd)
    }))
    .unwrap();
    // The PrometheusRule the operator applies carries exactly these groups.
    let built = monitoring::build_prometheus_rule(&pd);
    assert_eq!(
        serde_json::to_value(&built.data["spec"]["groups"]).unwrap(),
        monitoring::rule_groups(&pd)
    );

    let mut rule_files: BTreeMap<&str, Value> = BTreeMap::from([("pipeline", pipeline)]);
    let chart_rules = repo().join("charts/sluice/files/rules");
    let operator: Value =
        serde_yaml::from_str(&std::fs::read_to_string(chart_rules.join("operator.yaml")).unwrap())
            .unwrap();
    rule_files.insert("operator", operator);

    let dir = std::env::temp_dir().join(format!("sluice-promtool-{}", std::process::id()));
    let full = dir.join("full");
    std::fs::create_dir_all(&full).unwrap();
    for (name, rules) in &rule_files {
        std::fs::write(
            full.join(format!("{name}.rules.yaml")),
            serde_yaml::to_string(rules).unwrap(),
        )
        .unwrap();
        std::fs::write(
            dir.join(format!("{name}.rules.yaml")),
            serde_yaml::to_string(&without_annotations(rules.clone())).unwrap(),
        )
        .unwrap();
    }
    // As written, annotations and all.
    let checked = promtool(
        &[
            "check",
            "rules",
            "pipeline.rules.yaml",
            "operator.rules.yaml",
        ],
        &full,
    );
    assert_eq!(checked.matches("SUCCESS").count(), 2, "{checked}");
    // Every file of charts/sluice/files/rules is a rule file promtool accepts (the chart
    // loads them all).
    for entry in std::fs::read_dir(&chart_rules).unwrap() {
        let path = entry.unwrap().path();
        promtool(&["check", "rules", path.to_str().unwrap()], &full);
    }

    // The unit tests, and what they cover.
    let tests_dir = repo().join("operator/tests/promtool");
    let mut test_files = Vec::new();
    let mut firing: BTreeSet<String> = BTreeSet::new();
    let mut quiet: BTreeSet<String> = BTreeSet::new();
    let mut queried = String::new();
    for entry in std::fs::read_dir(&tests_dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if !name.ends_with(".test.yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let doc: Value = serde_yaml::from_str(&text).unwrap();
        for t in doc["tests"].as_sequence().unwrap() {
            for a in t["alert_rule_test"].as_sequence().into_iter().flatten() {
                let alert = a["alertname"].as_str().unwrap().to_owned();
                let fires = a["exp_alerts"].as_sequence().is_some_and(|s| !s.is_empty());
                if fires {
                    firing.insert(alert);
                } else {
                    quiet.insert(alert);
                }
            }
            for e in t["promql_expr_test"].as_sequence().into_iter().flatten() {
                queried.push_str(e["expr"].as_str().unwrap());
                queried.push('\n');
            }
        }
        std::fs::write(dir.join(&name), text).unwrap();
        test_files.push(name);
    }
    assert!(test_files.len() >= 2, "test files: {test_files:?}");
    let mut args = vec!["test", "rules"];
    args.extend(test_files.iter().map(String::as_str));
    let out = promtool(&args, &dir);
    assert!(!out.contains("FAILED"), "{out}");

    let mut missing = Vec::new();
    for rules in rule_files.values() {
        for alert in rule_names(rules, "alert") {
            if !firing.contains(&alert) {
                missing.push(format!("{alert}: no test where it fires"));
            }
            if !quiet.contains(&alert) {
                missing.push(format!("{alert}: no test where it stays quiet"));
            }
        }
        for record in rule_names(rules, "record") {
            if !queried.contains(&record) {
                missing.push(format!("{record}: recording rule never queried"));
            }
        }
    }
    assert!(missing.is_empty(), "untested rules: {missing:#?}");
    // And no test for an alert that does not exist (a renamed alert).
    let all: BTreeSet<String> = rule_files
        .values()
        .flat_map(|r| rule_names(r, "alert"))
        .collect();
    let stale: Vec<_> = firing.union(&quiet).filter(|a| !all.contains(*a)).collect();
    assert!(
        stale.is_empty(),
        "tests of alerts that do not exist: {stale:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
