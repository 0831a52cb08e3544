//! On a real node (kubelet + containerd + runc, `hack/node.sh`): the operator runs as a pod
//! from its image with the RBAC it ships and turns a PipelineDeployment into worker pods from
//! the worker image. They pass their probes, read the rendered ConfigMap, log in to Postgres
//! with a password from a Secret, consume Kafka and land every valid record exactly once, also
//! when a pod is deleted mid-stream and during a rolling update.
//!
//! `hack/test.sh` runs this inside the node's network namespace (`hack/node.sh exec NAME --
//! cargo test ... -- --ignored`); elsewhere there is no node, hence `#[ignore]`.

use anyhow::{Result, ensure};
use serde_json::json;
use sluice_e2e::Pipeline;
use sluice_e2e::cluster::{
    Landed, apply, install_operator, kafka_spec, kubectl, namespace_with_database,
    pipeline_manifest, wait_condition, wait_rollout, worker_pods,
};
use std::time::{Duration, Instant};

/// Pod grace period the operator renders for workers.
const GRACE: Duration = Duration::from_secs(30);
/// The distroless "nonroot" user the pods run as.
const NONROOT: u32 = 65532;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real node: hack/test.sh runs it inside `hack/node.sh exec`"]
async fn workers_run_as_real_pods_and_lose_nothing() -> Result<()> {
    install_operator()?;

    let p = Pipeline::new("real_pods", 4).await?;
    let ns = namespace_with_database("rp", &p).await?;
    apply(&pipeline_yaml(&ns, &p, 2000))?;

    let deployment = "deployment/payments-worker";
    wait_rollout(&ns, deployment)?;
    let pods = worker_pods(&ns)?;
    ensure!(pods.len() == 2, "expected 2 worker pods, got {pods:?}");
    assert_restricted_processes()?;
    wait_condition(&ns, "payments", "Ready", Duration::from_secs(120))?;

    // Steady stream into running pods.
    let mut all = Landed::default();
    let s = p.produce(p.load(20_000, 2_000, 1)).await?;
    all.add(&s);
    all.assert(&p).await?;
    println!("steady: {} records landed once by worker pods", s.produced);

    // A pod deleted mid-stream: it drains within its grace period, its partitions move.
    let producer = {
        let (p2, spec) = (p.clone(), p.load(30_000, 2_000, 2));
        tokio::spawn(async move { p2.produce(spec).await })
    };
    // Mid-stream: a third of it has landed.
    p.wait_handled(all.produced as i64 + 10_000, Duration::from_secs(60))
        .await?;
    let victim = &worker_pods(&ns)?[0];
    let t0 = Instant::now();
    kubectl(&["-n", &ns, "delete", "pod", victim, "--wait=true"])?;
    let stopped = t0.elapsed();
    ensure!(
        stopped < GRACE,
        "pod {victim} took {stopped:?} to stop: killed at the end of its grace period, not drained"
    );
    println!("pod {victim} deleted mid-stream, gone after {stopped:.1?}");
    all.add(&producer.await??);
    all.assert(&p).await?;
    wait_rollout(&ns, deployment)?;

    // A spec change rolls every pod (new config hash) while records flow.
    let before = worker_pods(&ns)?;
    let producer = {
        let (p2, spec) = (p.clone(), p.load(30_000, 2_000, 3));
        tokio::spawn(async move { p2.produce(spec).await })
    };
    p.wait_handled(all.produced as i64 + 8_000, Duration::from_secs(60))
        .await?;
    let t0 = Instant::now();
    apply(&pipeline_yaml(&ns, &p, 1000))?;
    wait_rollout(&ns, deployment)?;
    let after = worker_pods(&ns)?;
    ensure!(
        after.iter().all(|p| !before.contains(p)),
        "rolling update kept old pods: before {before:?}, after {after:?}"
    );
    println!("rolling update done in {:.1?}", t0.elapsed());
    all.add(&producer.await??);
    all.assert(&p).await?;
    assert_restricted_processes()?;

    kubectl(&["delete", "namespace", &ns, "--wait=false"])?;
    Ok(())
}

fn pipeline_yaml(ns: &str, p: &Pipeline, max_records: u32) -> String {
    pipeline_manifest(
        ns,
        "payments",
        json!({
            "kafka": kafka_spec(p, 4),
            "workers": {
                "minReplicas": 2,
                "maxReplicas": 2,
                "batch": {"maxRecords": max_records, "maxWaitMs": 20},
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
            },
        }),
    )
}

/// The security context users get, as the kernel sees it: every sluice process on the node
/// runs as the nonroot user with no capabilities, cannot gain privileges, and sees its root
/// filesystem read-only.
fn assert_restricted_processes() -> Result<()> {
    let mut seen = 0;
    for entry in std::fs::read_dir("/proc")? {
        let pid = entry?.file_name();
        let Ok(cmdline) = std::fs::read(format!("/proc/{}/cmdline", pid.to_string_lossy())) else {
            continue;
        };
        let exe = cmdline.split(|b| *b == 0).next().unwrap_or_default();
        let exe = String::from_utf8_lossy(exe);
        if !exe.starts_with("/usr/local/bin/sluice-") {
            continue; // test-spawned workers run from the target dir, not from an image
        }
        let status = std::fs::read_to_string(format!("/proc/{}/status", pid.to_string_lossy()))?;
        let field = |k: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .map(|v| v.split_whitespace().collect::<Vec<_>>())
                .unwrap_or_default()
        };
        let uids = field("Uid:");
        ensure!(
            uids.iter().all(|u| *u == NONROOT.to_string()),
            "{exe} runs with uids {uids:?}"
        );
        ensure!(
            field("CapEff:") == ["0000000000000000"],
            "{exe} has capabilities"
        );
        ensure!(field("NoNewPrivs:") == ["1"], "{exe} may gain privileges");
        let mounts = std::fs::read_to_string(format!("/proc/{}/mountinfo", pid.to_string_lossy()))?;
        let root_options = mounts
            .lines()
            .map(|l| l.split(' ').collect::<Vec<_>>())
            .find(|f| f.get(4) == Some(&"/"))
            .and_then(|f| f.get(5).map(|o| o.to_string()))
            .unwrap_or_default();
        ensure!(
            root_options.split(',').any(|o| o == "ro"),
            "{exe} has a writable root filesystem ({root_options})"
        );
        seen += 1;
    }
    // Two workers and two operator replicas.
    ensure!(
        seen >= 4,
        "only {seen} sluice processes from images found on the node"
    );
    Ok(())
}
