//! Operator benchmark on the real local control plane (the e2e harness):
//! - CR applied → all children created, p50/p99 over sequential applies (bar: p99 ≤ 1 s);
//! - 200 PipelineDeployments applied at once → all reconciled, i.e. children created and status
//!   current, Ready or correctly waiting (bar: ≤ 60 s); the time until all are Ready is printed
//!   too, but it is paced by kube-controller-manager creating the pods, not by the operator;
//! - peak operator RSS meanwhile (bar: ≤ 100 MB).
//!
//! Prints the numbers and writes them to target/bench/operator.json.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use futures::StreamExt;
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, PostParams};
use kube::runtime::watcher;
use sluice_operator::children::monitoring;
use sluice_operator::crd::PipelineDeployment;
use tokio::sync::Mutex;

const LATENCY_SAMPLES: usize = 50;
const FLEET: usize = 200;

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn pipeline(name: &str) -> PipelineDeployment {
    let mut pd = example("external-postgres.yaml");
    pd.metadata.name = Some(name.into());
    // Thousands of partitions would measure the local broker, not the operator.
    pd.spec.kafka.manage_topic = false;
    pd.spec.workers.min_replicas = 1;
    pd
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// The fake nodes of hack/cluster.sh hold 110 pods each; add kwok nodes so the fleet's pods
/// schedule and the bench measures the operator, not the pod limit.
async fn ensure_capacity(client: &kube::Client, pods: usize) {
    use k8s_openapi::api::core::v1::Node;
    let nodes: Api<Node> = Api::all(client.clone());
    for i in 0..pods.div_ceil(110) {
        let name = format!("kwok-bench-{i}");
        if nodes.get_opt(&name).await.unwrap().is_some() {
            continue;
        }
        let node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name,
                "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
                "labels": {"type": "kwok", "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}},
            "status": {"allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110"},
                       "capacity": {"cpu": "32", "memory": "256Gi", "pods": "110"}}
        }))
        .unwrap();
        nodes.create(&PostParams::default(), &node).await.unwrap();
    }
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for a listing
    }
    let ns = TestNs::new("op-bench").await;
    ensure_capacity(&ns.client, LATENCY_SAMPLES + FLEET).await;
    let op = Operator::start(&ns.name, "bench");
    let pid = op.process.id();
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let pds: Api<PipelineDeployment> = ns.api();

    // The PrometheusRule is the last child applied: its arrival means all children exist.
    let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let rules = Api::<DynamicObject>::namespaced_with(
        ns.client.clone(),
        &ns.name,
        &monitoring::prometheus_rule_resource(),
    );
    let watch = {
        let seen = seen.clone();
        tokio::spawn(async move {
            let mut s = watcher::watcher(rules, watcher::Config::default()).boxed();
            while let Some(ev) = s.next().await {
                if let Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) = ev {
                    seen.lock()
                        .await
                        .entry(o.name_any())
                        .or_insert_with(Instant::now);
                }
            }
        })
    };
    wait_for("operator leads", TIMEOUT, || async {
        op.is_leader().then_some(())
    })
    .await;

    let mut latencies = Vec::new();
    for i in 0..LATENCY_SAMPLES {
        let name = format!("lat-{i}");
        pds.create(&PostParams::default(), &pipeline(&name))
            .await
            .unwrap();
        let t0 = Instant::now();
        let at = wait_for("children of one pipeline", TIMEOUT, || async {
            seen.lock().await.get(&name).copied()
        })
        .await;
        latencies.push(at.saturating_duration_since(t0));
    }
    latencies.sort();
    let (p50, p99, max) = (
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        *latencies.last().unwrap(),
    );

    let t0 = Instant::now();
    let creators: Vec<_> = (0..8)
        .map(|c| {
            let pds = pds.clone();
            tokio::spawn(async move {
                for i in (c..FLEET).step_by(8) {
                    pds.create(&PostParams::default(), &pipeline(&format!("fleet-{i}")))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for c in creators {
        c.await.unwrap();
    }
    let applied = t0.elapsed();
    // Reconciled: every child exists and the status describes the current generation, whether
    // Ready or correctly waiting for its pods (that part is paced by kube-controller-manager).
    let fleet_count = |ready_only: bool| {
        let pds = pds.clone();
        async move {
            let list = pds.list(&Default::default()).await.ok()?;
            let n = list
                .items
                .iter()
                .filter(|p| p.name_any().starts_with("fleet-"))
                .filter(|p| condition(p, "Ready").is_some_and(|(s, _)| !ready_only || s == "True"))
                .count();
            Some(n)
        }
    };
    wait_for(
        &format!("{FLEET} pipelines reconciled"),
        Duration::from_secs(300),
        || async {
            let children = {
                let seen = seen.lock().await;
                (0..FLEET).all(|i| seen.contains_key(&format!("fleet-{i}")))
            };
            (children && fleet_count(false).await? == FLEET).then_some(())
        },
    )
    .await;
    let fleet = t0.elapsed();
    wait_for(
        &format!("{FLEET} pipelines Ready"),
        Duration::from_secs(300),
        || async { (fleet_count(true).await? == FLEET).then_some(()) },
    )
    .await;
    let fleet_ready = t0.elapsed();
    let children_done = {
        let seen = seen.lock().await;
        (0..FLEET)
            .filter_map(|i| seen.get(&format!("fleet-{i}")).copied())
            .max()
            .map(|t| t.saturating_duration_since(t0))
    };
    let metrics = op.metrics().unwrap_or_default();
    let sum = |prefix: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
            .sum()
    };
    let reconciles = sum("sluice_operator_reconciliations_total");
    let (applied_n, skipped_n) = (
        sum("sluice_operator_child_applies_total{outcome=\"applied\"}"),
        sum("sluice_operator_child_applies_total{outcome=\"skipped\"}"),
    );
    sampler.abort();
    watch.abort();
    let rss_mb = peak.load(Ordering::Relaxed) as f64 / 1024.0;

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "operator bench ({LATENCY_SAMPLES} sequential applies, then {FLEET} at once; release build)"
    );
    println!(
        "  apply → all children created: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms   (bar p99 ≤ 1000 ms)",
        ms(p50),
        ms(p99),
        ms(max)
    );
    println!(
        "  {FLEET} pipelines: created in {:.1} s, all reconciled after {:.1} s   (bar ≤ 60 s); all Ready (pods up) after {:.1} s",
        applied.as_secs_f64(),
        fleet.as_secs_f64(),
        fleet_ready.as_secs_f64()
    );
    println!(
        "  (fleet children all created after {:.1} s; {reconciles:.0} reconciles, {applied_n:.0} child applies sent, {skipped_n:.0} skipped as unchanged)",
        children_done.unwrap_or_default().as_secs_f64()
    );
    println!("  operator peak RSS: {rss_mb:.1} MB   (bar ≤ 100 MB)");
    let report = serde_json::json!({
        "children_created_ms": {"p50": ms(p50), "p99": ms(p99), "max": ms(max), "samples": LATENCY_SAMPLES},
        "fleet": {"pipelines": FLEET, "created_s": applied.as_secs_f64(), "children_created_s": children_done.map(|d| d.as_secs_f64()), "all_reconciled_s": fleet.as_secs_f64(), "all_ready_s": fleet_ready.as_secs_f64(), "reconciles": reconciles, "child_applies": applied_n, "child_applies_skipped": skipped_n},
        "operator_rss_mb_peak": rss_mb,
    });
    let dir = repo().join("target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("operator.json"),
        serde_json::to_string_pretty(&report).unwrap(),
    )
    .unwrap();
    let ok = ms(p99) <= 1000.0 && fleet <= Duration::from_secs(60) && rss_mb <= 100.0;
    drop(op);
    drop(ns);
    if !ok {
        eprintln!("operator bench: a bar was missed");
        std::process::exit(1);
    }
}
