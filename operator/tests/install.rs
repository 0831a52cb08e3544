//! The Helm chart (`charts/sluice`) and the install bundle rendered from it
//! (`manifests/install.yaml`): `helm lint`, `helm template` with the default and with every
//! value set (`ci/full-values.yaml`), both accepted by the API server (strict server-side dry
//! run, the Prometheus Operator CRDs installed so ServiceMonitor and PrometheusRule validate)
//! without Pod Security warnings in the `restricted` namespace, bad values refused by the schema
//! with a message naming them, and the committed bundle equal to a fresh render.
//! (Installing the chart for real, with the operator running from its image: the real-node test
//! tests/tests/helm_release.rs.)

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::*;
use serde_json::Value;

/// The Kubernetes version charts are rendered for (as hack/helm.sh does).
const KUBE_VERSION: &str = "1.37.0";

/// `kubectl apply --server-side --dry-run=server --validate=strict` of `yaml`; returns stderr
/// (where kubectl prints admission warnings such as Pod Security violations). The
/// ServiceAccounts of `yaml` are created for real first: admission of a Pod (the `helm test`
/// hook) looks its ServiceAccount up, which a dry run does not create.
fn dry_run(yaml: &str) -> String {
    let sas: Vec<Value> = docs(yaml)
        .into_iter()
        .filter(|d| d["kind"] == "ServiceAccount")
        .collect();
    if !sas.is_empty() {
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": sas});
        apply(&list.to_string(), &[]);
    }
    apply(
        yaml,
        &["--force-conflicts", "--dry-run=server", "--validate=strict"],
    )
}

/// `kubectl apply --server-side ARGS -f -` of `yaml`; returns stderr.
fn apply(yaml: &str, args: &[&str]) -> String {
    let mut child = kubectl(setup())
        .args(["apply", "--server-side"])
        .args(args)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(yaml.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        out.status.success(),
        "kubectl apply {args:?} failed: {stderr}"
    );
    stderr
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap()
}

/// helm, as hack/helm.sh provides it (built into $SLUICE_CACHE/bin if absent).
fn helm() -> PathBuf {
    sluice_harness::helm_binary().unwrap()
}

fn chart() -> PathBuf {
    repo().join("charts/sluice")
}

/// `helm template sluice charts/sluice -n sluice-system` with `extra` arguments.
fn template(extra: &[&str]) -> String {
    run(Command::new(helm())
        .args(["template", "sluice"])
        .arg(chart())
        .args([
            "--namespace",
            "sluice-system",
            "--kube-version",
            KUBE_VERSION,
        ])
        .args(extra))
}

fn docs(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .filter_map(|d| serde::Deserialize::deserialize(d).ok())
        .filter(|d: &Value| d.is_object())
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
}

fn kinds(docs: &[Value]) -> Vec<String> {
    docs.iter()
        .map(|d| d["kind"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The operator's namespace as the bundle creates it (restricted Pod Security), for real: the
/// dry runs of namespaced objects need it to exist.
fn operator_namespace() {
    let ns = docs(&read("manifests/install.yaml"))
        .into_iter()
        .find(|d| d["kind"] == "Namespace")
        .expect("manifests/install.yaml creates the namespace");
    assert_eq!(ns["metadata"]["name"], "sluice-system");
    assert_eq!(
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    apply(&ns.to_string(), &[]);
}

/// Rule files of the chart that are Prometheus rule files (`groups:`).
fn rule_groups_in_chart() -> usize {
    let dir = chart().join("files/rules");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .filter_map(|p| serde_yaml::from_str::<Value>(&std::fs::read_to_string(p).unwrap()).ok())
        .filter_map(|d| d["groups"].as_array().map(Vec::len))
        .sum()
}

fn dashboards_in_chart() -> usize {
    std::fs::read_dir(chart().join("files/dashboards"))
        .map(|d| {
            d.filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "json")
            })
            .count()
        })
        .unwrap_or(0)
}

#[test]
fn chart_lints_with_default_and_full_values() {
    let helm = helm();
    run(Command::new(&helm)
        .args(["lint", "--strict", "--kube-version", KUBE_VERSION])
        .arg(chart()));
    run(Command::new(&helm)
        .args(["lint", "--strict", "--kube-version", KUBE_VERSION])
        .arg(chart())
        .arg("-f")
        .arg(chart().join("ci/full-values.yaml")));
}

#[test]
fn default_render_validates_on_the_server() {
    setup();
    operator_namespace();
    let rendered = template(&[]);
    let warnings = dry_run(&rendered);
    assert!(!warnings.contains("PodSecurity"), "{warnings}");
    let d = docs(&rendered);
    let crd = find(
        &d,
        "CustomResourceDefinition",
        "pipelinedeployments.sluice.dev",
    )
    .expect("the CRD is installed by default");
    assert_eq!(
        crd["metadata"]["annotations"]["helm.sh/resource-policy"], "keep",
        "CRD kept on uninstall"
    );
    let dep = find(&d, "Deployment", "sluice-operator").expect("operator Deployment");
    let c = &dep["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "ghcr.io/sluice-dev/sluice-operator:0.1.0");
    assert!(c["livenessProbe"]["httpGet"]["path"] == "/healthz");
    assert!(c["readinessProbe"]["httpGet"]["path"] == "/healthz");
    assert!(c["resources"]["limits"]["memory"].is_string());
    for (kind, name) in [
        ("ServiceAccount", "sluice-operator"),
        ("ClusterRole", "sluice-operator"),
        ("ClusterRoleBinding", "sluice-operator"),
        ("Role", "sluice-operator-leader-election"),
        ("RoleBinding", "sluice-operator-auth-reader"),
        ("Service", "sluice-operator-metrics"),
        ("Service", "sluice-operator-external-metrics"),
        ("APIService", "v1beta1.external.metrics.k8s.io"),
        ("PodDisruptionBudget", "sluice-operator"),
        ("Pod", "sluice-operator-test"),
    ] {
        assert!(
            find(&d, kind, name).is_some(),
            "default render lacks {kind} {name}"
        );
    }
    let test_pod = find(&d, "Pod", "sluice-operator-test").unwrap();
    assert_eq!(test_pod["metadata"]["annotations"]["helm.sh/hook"], "test");
    assert_eq!(test_pod["spec"]["containers"][0]["args"][0], "self-test");
    let k = kinds(&d);
    for absent in ["ServiceMonitor", "PrometheusRule", "ConfigMap", "Namespace"] {
        assert!(
            !k.iter().any(|x| x == absent),
            "{absent} rendered by default"
        );
    }
    // Secrets: only `get`, of the Kafka credentials a pipeline names; never list or watch.
    let rules = &find(&d, "ClusterRole", "sluice-operator").unwrap()["rules"];
    let secret_verbs: Vec<&Value> = rules
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["resources"]
                .as_array()
                .unwrap()
                .contains(&"secrets".into())
        })
        .flat_map(|r| r["verbs"].as_array().unwrap())
        .collect();
    assert_eq!(secret_verbs, [&Value::from("get")], "{rules}");
}

#[test]
fn full_values_render_validates_on_the_server() {
    setup();
    operator_namespace();
    let full = chart().join("ci/full-values.yaml");
    let rendered = template(&["-f", full.to_str().unwrap()]);
    let warnings = dry_run(&rendered);
    assert!(!warnings.contains("PodSecurity"), "{warnings}");
    let d = docs(&rendered);
    let sm = find(&d, "ServiceMonitor", "sluice-operator").expect("ServiceMonitor");
    assert_eq!(sm["metadata"]["labels"]["release"], "kube-prometheus-stack");
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "metrics");
    let groups = rule_groups_in_chart();
    match find(&d, "PrometheusRule", "sluice-operator") {
        Some(pr) => {
            assert_eq!(pr["metadata"]["labels"]["release"], "kube-prometheus-stack");
            assert_eq!(
                pr["spec"]["groups"].as_array().unwrap().len(),
                groups,
                "every group of files/rules/*.yaml"
            );
        }
        None => assert_eq!(groups, 0, "rule files present but no PrometheusRule"),
    }
    let dashboards: Vec<&Value> = d
        .iter()
        .filter(|x| x["kind"] == "ConfigMap" && x["metadata"]["labels"]["grafana_dashboard"] == "1")
        .collect();
    assert_eq!(
        dashboards.len(),
        dashboards_in_chart(),
        "one ConfigMap per dashboard"
    );
    for cm in &dashboards {
        assert_eq!(cm["metadata"]["annotations"]["grafana_folder"], "Sluice");
        for json in cm["data"].as_object().unwrap().values() {
            serde_json::from_str::<Value>(json.as_str().unwrap()).expect("dashboard JSON");
        }
    }
    let pdb = find(&d, "PodDisruptionBudget", "sluice-operator").unwrap();
    assert_eq!(pdb["spec"]["minAvailable"], 2);
    assert!(pdb["spec"]["maxUnavailable"].is_null());
    let pod = &find(&d, "Deployment", "sluice-operator").unwrap()["spec"]["template"]["spec"];
    assert_eq!(pod["imagePullSecrets"][0]["name"], "regcred");
    assert_eq!(
        pod["topologySpreadConstraints"][0]["labelSelector"]["matchLabels"]["app.kubernetes.io/name"],
        "sluice-operator"
    );
}

#[test]
fn bad_values_are_refused_naming_the_field() {
    let out = Command::new(helm())
        .args(["template", "x"])
        .arg(chart())
        .args(["--kube-version", KUBE_VERSION, "-f"])
        .arg(chart().join("ci/bad-values.yaml"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "bad values accepted");
    assert!(stderr.contains("schema"), "{stderr}");
    assert!(
        stderr.contains("/replicaCount") && stderr.contains("minimum"),
        "{stderr}"
    );
    assert!(
        stderr.contains("/metrics/serviceMonitor") && stderr.contains("'labelz' not allowed"),
        "{stderr}"
    );
    // A wrongly typed nested value, too.
    let out = Command::new(helm())
        .args(["template", "x"])
        .arg(chart())
        .args([
            "--kube-version",
            KUBE_VERSION,
            "--set",
            "image.pullPolicy=Sometimes",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "bad pullPolicy accepted");
    assert!(stderr.contains("/image/pullPolicy"), "{stderr}");
}

#[test]
fn install_yaml_is_the_chart_rendered() {
    let fresh = sluice_harness::hack("helm.sh", &["install-yaml"]).unwrap();
    let committed = read("manifests/install.yaml");
    assert!(
        fresh == committed,
        "manifests/install.yaml differs from charts/sluice rendered: run `make manifests`"
    );
}

#[test]
fn install_yaml_applies_and_passes_restricted() {
    setup();
    operator_namespace();
    let bundle = read("manifests/install.yaml");
    let warnings = dry_run(&bundle);
    assert!(!warnings.contains("PodSecurity"), "{warnings}");
    let d = docs(&bundle);
    assert!(
        !kinds(&d).iter().any(|k| k == "Pod"),
        "the bundle carries no helm test pod"
    );
    assert!(find(&d, "APIService", "v1beta1.external.metrics.k8s.io").is_some());
}

/// The single-broker Kafka of README "Run on kind" is valid and admitted under its
/// namespace's restricted Pod Security (its image is not run here: no registry).
#[test]
fn kind_kafka_manifest_validates_on_the_server() {
    setup();
    let text = read("manifests/kind/kafka.yaml");
    let d = docs(&text);
    let ns = d
        .iter()
        .find(|x| x["kind"] == "Namespace")
        .expect("namespace");
    apply(&ns.to_string(), &[]);
    let warnings = dry_run(&text);
    assert!(!warnings.contains("PodSecurity"), "{warnings}");
    let svc = find(&d, "Service", "kafka").expect("Service kafka");
    assert_eq!(svc["metadata"]["namespace"], "kafka");
    assert_eq!(svc["spec"]["ports"][0]["port"], 9092);
}

/// One watched namespace, one replica without leader election, no external metrics API: a
/// Role instead of the ClusterRole, and a self-test that checks no Lease and no APIService.
#[test]
fn single_namespace_render_validates_on_the_server() {
    setup();
    operator_namespace();
    apply(
        r#"{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "sluice-scoped"}}"#,
        &[],
    );
    let rendered = template(&[
        "--set",
        "watchNamespace=sluice-scoped,replicaCount=1,leaderElection.enabled=false",
        "--set",
        "externalMetrics.enabled=false,podDisruptionBudget.minAvailable=50%",
    ]);
    let warnings = dry_run(&rendered);
    assert!(!warnings.contains("PodSecurity"), "{warnings}");
    let d = docs(&rendered);
    assert!(find(&d, "ClusterRole", "sluice-operator").is_none());
    let role = find(&d, "Role", "sluice-operator").expect("a Role in the watched namespace");
    assert_eq!(role["metadata"]["namespace"], "sluice-scoped");
    for absent in [
        ("Role", "sluice-operator-leader-election"),
        ("APIService", "v1beta1.external.metrics.k8s.io"),
        ("RoleBinding", "sluice-operator-auth-reader"),
    ] {
        assert!(
            find(&d, absent.0, absent.1).is_none(),
            "{absent:?} rendered"
        );
    }
    let dep = find(&d, "Deployment", "sluice-operator").unwrap();
    let args = &dep["spec"]["template"]["spec"]["containers"][0]["args"];
    for want in ["--namespace=sluice-scoped", "--no-leader-election"] {
        assert!(args.as_array().unwrap().contains(&want.into()), "{args}");
    }
    let test_args =
        &find(&d, "Pod", "sluice-operator-test").unwrap()["spec"]["containers"][0]["args"];
    assert!(
        test_args.as_array().unwrap().contains(&"--no-lease".into()),
        "{test_args}"
    );
    assert!(
        !test_args
            .as_array()
            .unwrap()
            .contains(&"--external-metrics".into()),
        "{test_args}"
    );
    assert_eq!(
        find(&d, "PodDisruptionBudget", "sluice-operator").unwrap()["spec"]["minAvailable"],
        "50%"
    );
}
