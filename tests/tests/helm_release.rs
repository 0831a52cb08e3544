//! On a real node (`hack/node.sh`): the Helm chart installed for real. `helm install` runs the
//! operator as pods from its image (imported into the node, no registry) with the chart's
//! RBAC; the operator pods become Ready; the example pipeline
//! `manifests/examples/external-postgres.yaml` (autoscaled: its HPA reads the external metrics
//! API the chart registers) becomes Ready with worker pods; `helm test` fails while the
//! operator is scaled to zero (its Lease goes stale) and passes once it runs again (the
//! self-test pod checks the CRD, the leader Lease and the APIService through the API server); `helm
//! uninstall` removes the operator and its cluster-wide objects but keeps the CRD and the
//! pipeline.
//!
//! Run inside the node's network namespace:
//!   hack/node.sh exec NAME -- cargo test --release -p sluice-e2e --test helm_release -- --ignored

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;
use sluice_e2e::cluster::{
    apply, describe_pods, get_json, kubectl, namespace_with_database, wait_condition,
};
use sluice_e2e::{Pipeline, helm_binary, repo_root, run, wait_for_blocking};
use std::process::Command;
use std::time::Duration;

const RELEASE: &str = "sluice";
const NAMESPACE: &str = "sluice-system";

fn helm(args: &[&str]) -> Result<String> {
    run(Command::new(helm_binary()?).args(args))
}

fn exists(args: &[&str]) -> Result<bool> {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--ignore-not-found", "-o", "name"]);
    Ok(!kubectl(&all)?.trim().is_empty())
}

/// The node may carry the plain bundle (`kubectl apply -f manifests/install.yaml`, from
/// another real-node test): Helm adopts no object without its release annotations, so the
/// bundle's objects go, but for the namespace and the CRD (which Helm adopts once annotated;
/// deleting it would delete every pipeline).
fn remove_plain_bundle() -> Result<()> {
    let text = std::fs::read_to_string(repo_root().join("manifests/install.yaml"))?;
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let d: Value = serde::Deserialize::deserialize(doc)?;
        let kind = d["kind"].as_str().unwrap_or_default();
        let name = d["metadata"]["name"].as_str().unwrap_or_default();
        if kind.is_empty() {
            continue;
        }
        match kind {
            "Namespace" => {}
            "CustomResourceDefinition" => {
                if exists(&["crd", name])? {
                    kubectl(&[
                        "annotate",
                        "--overwrite",
                        "crd",
                        name,
                        &format!("meta.helm.sh/release-name={RELEASE}"),
                        &format!("meta.helm.sh/release-namespace={NAMESPACE}"),
                    ])?;
                    kubectl(&[
                        "label",
                        "--overwrite",
                        "crd",
                        name,
                        "app.kubernetes.io/managed-by=Helm",
                    ])?;
                }
            }
            _ => {
                let ns = d["metadata"]["namespace"].as_str();
                let mut args = vec!["delete", kind, name, "--ignore-not-found", "--wait=true"];
                if let Some(ns) = ns {
                    args.extend_from_slice(&["-n", ns]);
                }
                kubectl(&args)?;
            }
        }
    }
    Ok(())
}

/// The namespace with the restricted Pod Security labels, as the bundle creates it (Helm
/// installs into an existing namespace).
fn operator_namespace() -> Result<()> {
    if !exists(&["namespace", NAMESPACE])? {
        kubectl(&["create", "namespace", NAMESPACE])?;
    }
    kubectl(&[
        "label",
        "--overwrite",
        "namespace",
        NAMESPACE,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/enforce-version=latest",
        "pod-security.kubernetes.io/warn=restricted",
        "pod-security.kubernetes.io/warn-version=latest",
    ])?;
    Ok(())
}

/// The example, pointed at this node's Kafka topic and the namespace's database Secret.
fn example_pipeline(ns: &str, p: &Pipeline) -> Result<String> {
    let path = repo_root().join("manifests/examples/external-postgres.yaml");
    let mut pd: Value = serde_yaml::from_str(&std::fs::read_to_string(path)?)?;
    pd["metadata"]["namespace"] = ns.into();
    pd["spec"]["kafka"]["bootstrapServers"] = p.brokers.clone().into();
    pd["spec"]["kafka"]["topic"] = p.topic.clone().into();
    pd["spec"]["workers"]["imagePullPolicy"] = "IfNotPresent".into();
    Ok(serde_json::to_string(&pd)?)
}

/// Waits until every operator pod is gone (after scaling to zero).
fn wait_no_operator_pods() -> Result<()> {
    wait_for_blocking(
        "no operator pod left after scaling to 0",
        Duration::from_secs(120),
        || {
            let pods = kubectl(&[
                "-n",
                NAMESPACE,
                "get",
                "pods",
                "-l",
                "app.kubernetes.io/name=sluice-operator",
                "-o",
                "name",
            ])?;
            anyhow::Ok(pods.trim().is_empty())
        },
    )
}

/// Waits until the leader Lease is released or older than its duration (no replica renews
/// it any more).
fn wait_lease_not_fresh() -> Result<()> {
    let mut spec = Value::Null;
    wait_for_blocking(
        "the Lease to go stale with no operator pod",
        Duration::from_secs(120),
        || {
            spec = get_json(NAMESPACE, &["lease", "sluice-operator"])?["spec"].clone();
            let held = spec["holderIdentity"]
                .as_str()
                .is_some_and(|h| !h.is_empty());
            let duration = spec["leaseDurationSeconds"].as_i64().unwrap_or(0);
            let renewed = spec["renewTime"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
            let fresh = held
                && renewed
                    .is_some_and(|r| (chrono::Utc::now() - r.to_utc()).num_seconds() <= duration);
            anyhow::Ok(!fresh)
        },
    )
    .with_context(|| format!("Lease: {spec}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real node: run inside `hack/node.sh exec`"]
async fn helm_install_test_uninstall() -> Result<()> {
    remove_plain_bundle()?;
    operator_namespace()?;
    let _ = helm(&["uninstall", RELEASE, "-n", NAMESPACE, "--wait"]); // an earlier failed run
    let chart = repo_root().join("charts/sluice");
    helm(&[
        "install",
        RELEASE,
        chart.to_str().unwrap(),
        "--namespace",
        NAMESPACE,
        "--set",
        "image.pullPolicy=IfNotPresent",
        "--wait",
        "--timeout",
        "5m",
    ])
    .with_context(|| describe_pods(NAMESPACE))?;
    let status: Value =
        serde_json::from_str(&helm(&["status", RELEASE, "-n", NAMESPACE, "-o", "json"])?)?;
    ensure!(
        status["info"]["status"] == "deployed",
        "release {}",
        status["info"]
    );

    // The operator pods: Ready, from the image, under the chart's ServiceAccount.
    let pods: Value = serde_json::from_str(&kubectl(&[
        "-n",
        NAMESPACE,
        "get",
        "pods",
        "-l",
        "app.kubernetes.io/name=sluice-operator,app.kubernetes.io/instance=sluice",
        "-o",
        "json",
    ])?)?;
    let pods = pods["items"].as_array().context("pods")?;
    ensure!(pods.len() == 2, "expected 2 operator pods: {pods:?}");
    for pod in pods {
        let ready = pod["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        ensure!(ready, "operator pod not Ready: {}", pod["status"]);
        ensure!(pod["spec"]["serviceAccountName"] == "sluice-operator");
        ensure!(
            pod["spec"]["containers"][0]["image"] == "ghcr.io/sluice-dev/sluice-operator:0.1.0"
        );
    }
    println!("helm install: 2 operator pods Ready");

    // A pipeline from the examples, reconciled into Ready worker pods.
    let p = Pipeline::new("helm_release", 6).await?;
    let ns = namespace_with_database("hr", &p).await?;
    // The example also reads a `replica` URL; the same database serves here.
    let primary = kubectl(&[
        "-n",
        &ns,
        "get",
        "secret",
        "payments-db",
        "-o",
        "jsonpath={.data.primary}",
    ])?;
    kubectl(&[
        "-n",
        &ns,
        "patch",
        "secret",
        "payments-db",
        "--type=merge",
        "-p",
        &format!(r#"{{"data":{{"replica":"{primary}"}}}}"#),
    ])?;
    apply(&example_pipeline(&ns, &p)?)?;
    wait_condition(&ns, "payments", "Ready", Duration::from_secs(240))
        .with_context(|| describe_pods(&ns))?;
    println!("example pipeline {ns}/payments Ready");

    // helm test fails while no operator runs: the leader Lease goes stale.
    let chart_arg = chart.to_str().unwrap();
    let upgrade = |timeout: &str| {
        helm(&[
            "upgrade",
            RELEASE,
            chart_arg,
            "-n",
            NAMESPACE,
            "--reuse-values",
            "--set",
            &format!("tests.timeoutSeconds={timeout}"),
            "--wait",
        ])
    };
    upgrade("10")?;
    kubectl(&[
        "-n",
        NAMESPACE,
        "scale",
        "deployment/sluice-operator",
        "--replicas=0",
    ])?;
    wait_no_operator_pods()?;
    wait_lease_not_fresh()?;
    let Err(e) = helm(&["test", RELEASE, "-n", NAMESPACE, "--timeout", "2m"]) else {
        bail!("helm test passed with no operator running");
    };
    let logs = kubectl(&["-n", NAMESPACE, "logs", "sluice-operator-test"])?;
    ensure!(
        logs.contains("ok    crd:") && logs.contains("FAIL  lease:"),
        "self-test with no operator: {e:#}\n{logs}"
    );
    println!("helm test fails with no operator running:\n{}", logs.trim());

    // Back to two replicas: helm test passes (the pod replaces the failed one).
    kubectl(&[
        "-n",
        NAMESPACE,
        "scale",
        "deployment/sluice-operator",
        "--replicas=2",
    ])?;
    kubectl(&[
        "-n",
        NAMESPACE,
        "rollout",
        "status",
        "deployment/sluice-operator",
        "--timeout=180s",
    ])?;
    upgrade("90")?;
    match helm(&["test", RELEASE, "-n", NAMESPACE, "--timeout", "4m"]) {
        Ok(out) => {
            ensure!(out.contains("Succeeded"), "helm test: {out}");
            println!("helm test passed");
        }
        Err(e) => {
            let logs = kubectl(&["-n", NAMESPACE, "logs", "sluice-operator-test"])
                .unwrap_or_else(|e| e.to_string());
            bail!("{e:#}\nself-test output:\n{logs}");
        }
    }

    // helm uninstall: operator and cluster-wide objects gone, CRD and pipeline kept.
    helm(&[
        "uninstall",
        RELEASE,
        "-n",
        NAMESPACE,
        "--wait",
        "--timeout",
        "3m",
    ])?;
    for gone in [
        vec!["-n", NAMESPACE, "deployment", "sluice-operator"],
        vec!["-n", NAMESPACE, "service", "sluice-operator-metrics"],
        vec!["clusterrole", "sluice-operator"],
        vec!["apiservice", "v1beta1.external.metrics.k8s.io"],
    ] {
        ensure!(!exists(&gone)?, "{gone:?} left after helm uninstall");
    }
    ensure!(
        exists(&["crd", "pipelinedeployments.sluice.dev"])?,
        "the CRD went with the release"
    );
    ensure!(
        exists(&["-n", &ns, "pipelinedeployment", "payments"])?,
        "the pipeline went with the release"
    );
    println!("helm uninstall: operator removed, CRD and pipeline kept");

    kubectl(&["delete", "namespace", &ns, "--wait=false"])?;
    Ok(())
}
