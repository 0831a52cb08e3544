//! Autoscaling on the real node (`hack/node.sh`): the kube-controller-manager's own HPA
//! controller reads `sluice_needed_workers` through the aggregation layer from the operator
//! pods (APIService → Service endpoints, routed by the apiserver itself since the node has no
//! kube-proxy), and sizes worker pods that drain a real Kafka backlog into Postgres.
//!
//! Scenario: a backlog appears → the HPA asks for the needed size in one step → the backlog
//! drains; the broker is killed while the size is still above the minimum (inside the
//! scale-down window, where a lag misread as 0 would scale down) → lag Unknown, the metric is
//! an error, nothing scales; the broker is back → the workers return to minReplicas; the topic
//! grows → the HPA's ceiling follows; every record lands exactly once throughout.
//! The figures (seconds to the needed size, the sizes the HPA passed through) are printed.

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use sluice_e2e::cluster::{
    Landed, apply, get_json, install_operator, kafka_spec, kubectl, namespace_with_database,
    pipeline_manifest, wait_condition, wait_rollout,
};
use sluice_e2e::{Pipeline, hack, wait_for_blocking};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Scale-down window of the test pipeline (the default is 300 s).
const DOWN_WINDOW_S: u64 = 90;

/// One look at the scaling state.
#[derive(Debug, Clone, Default)]
struct Look {
    at: f64,
    hpa_desired: Option<i64>,
    replicas: Option<i64>,
    needed: Option<i64>,
    lag: Option<i64>,
    lag_known: Option<bool>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real node: hack/test.sh runs it inside `hack/node.sh exec`"]
async fn workers_follow_lag_through_a_real_hpa() -> Result<()> {
    let kafka_name = std::env::var("KAFKA_NAME").context("KAFKA_NAME from the node's env")?;
    install_operator()?;
    kubectl(&[
        "wait",
        "--for=condition=Available",
        "apiservice/v1beta1.external.metrics.k8s.io",
        "--timeout=120s",
    ])
    .context("the aggregation layer does not reach the operator's external metrics API")?;

    let p = Pipeline::new("autoscale", 4).await?;
    let ns = namespace_with_database("as", &p).await?;
    apply(&pipeline_yaml(&ns, &p, 4))?;
    wait_rollout(&ns, "deployment/payments-worker")?;
    wait_condition(&ns, "payments", "LagKnown", Duration::from_secs(120))?;
    let metric = external_metric(&ns)?;
    ensure!(
        metric["items"][0]["value"] == "1",
        "an idle pipeline needs its minimum: {metric}"
    );

    let t0 = Instant::now();
    let looks = Arc::new(Mutex::new(Vec::<Look>::new()));
    let sampler = {
        let (looks, ns) = (looks.clone(), ns.clone());
        std::thread::spawn(move || {
            while Arc::strong_count(&looks) > 1 {
                let mut l = look(&ns);
                l.at = t0.elapsed().as_secs_f64();
                looks.lock().unwrap().push(l);
                std::thread::sleep(Duration::from_millis(1000));
            }
        })
    };
    let last =
        |looks: &Arc<Mutex<Vec<Look>>>| looks.lock().unwrap().last().cloned().unwrap_or_default();

    // 1. A backlog appears: the HPA goes to the needed size in one step.
    let mut all = Landed::default();
    let s = p.produce(p.load(150_000, 0, 11)).await?;
    all.add(&s);
    let produced_at = t0.elapsed().as_secs_f64();
    let scaled = wait_for_blocking("the HPA to scale up", Duration::from_secs(120), || {
        let l = last(&looks);
        l.hpa_desired.is_some_and(|d| d > 1).then_some(l)
    })?;
    let up_after = scaled.at - produced_at;
    let path = desired_path(&looks.lock().unwrap());
    println!(
        "backlog of {} records: HPA desired {} after {up_after:.1} s (sizes on the way: {path:?}, needed {:?})",
        s.produced,
        scaled.hpa_desired.unwrap_or(0),
        scaled.needed
    );
    ensure!(
        path.len() == 2,
        "scaled up through intermediate sizes: {path:?}"
    );
    wait_for_blocking(
        "the Deployment to follow the HPA",
        Duration::from_secs(90),
        || (last(&looks).replicas == scaled.hpa_desired).then_some(()),
    )?;

    // 2. The backlog drains at the new size.
    if let Err(e) = all.assert(&p).await {
        print_scaling_state(&ns, &looks.lock().unwrap(), produced_at);
        return Err(e);
    }
    let drained = t0.elapsed().as_secs_f64();
    let at_drain = last(&looks).replicas;
    println!(
        "drained {:.0} s after the backlog appeared, at {at_drain:?} workers",
        drained - produced_at
    );
    ensure!(
        at_drain.is_some_and(|r| r > 1),
        "already scaled down when the backlog drained: {at_drain:?} (the outage check needs a size above the minimum)"
    );

    // 3. The broker dies while the lag is 0 and the size above the minimum, inside the
    // scale-down window. A rule that took the unreadable lag for 0 would now scale down;
    // sluice's holds: lag Unknown, the metric an error, no scaling.
    hack("kafka.sh", &["kill9", &kafka_name])?;
    let killed = t0.elapsed().as_secs_f64();
    let unknown_at = wait_for_blocking(
        "LagKnown False with the broker down",
        Duration::from_secs(60),
        || {
            let l = last(&looks);
            (l.lag_known == Some(false)).then_some(l.at)
        },
    )?;
    let err = external_metric(&ns)
        .err()
        .context("a metric was served with the broker down")?;
    println!(
        "broker down: LagKnown False after {:.1} s; the metric API answers: {err:#}",
        t0.elapsed().as_secs_f64() - killed
    );
    std::thread::sleep(Duration::from_secs(50));
    // From the moment the operator knows the lag is unknown (until then the HPA may still act
    // on what it was served before the crash, e.g. its scale-down window expiring).
    let during: Vec<Look> = looks
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.at >= unknown_at)
        .cloned()
        .collect();
    let sizes: Vec<Option<i64>> = dedup(during.iter().map(|l| l.replicas));
    ensure!(
        sizes.len() == 1 && sizes[0].is_some_and(|r| r > 1),
        "workers rescaled while the lag was unknown, or were at the minimum already: {sizes:?}"
    );
    hack("kafka.sh", &["start", &kafka_name])?;
    let restarted = t0.elapsed().as_secs_f64();
    println!(
        "broker back after {:.0} s down; workers stayed at {sizes:?}",
        restarted - killed
    );

    // 4. The workers return to minReplicas: one window after the lag is known again, plus
    // the HPA's own window.
    let down = wait_for_blocking(
        "the workers back at minReplicas",
        Duration::from_secs(2 * DOWN_WINDOW_S + 120),
        || {
            let l = last(&looks);
            (l.replicas == Some(1)).then_some(l)
        },
    )
    .inspect_err(|_| print_scaling_state(&ns, &looks.lock().unwrap(), killed))?;
    println!(
        "back to 1 worker {:.0} s after the broker came back (scale-down window {DOWN_WINDOW_S} s)",
        down.at - restarted
    );

    // 5. The topic grows: the HPA's ceiling follows.
    apply(&pipeline_yaml(&ns, &p, 6))?;
    wait_for_blocking(
        "the HPA's maxReplicas to follow the partitions",
        Duration::from_secs(60),
        || {
            let hpa = get_json(&ns, &["hpa", "payments-worker"])?;
            anyhow::Ok(hpa["spec"]["maxReplicas"] == 6)
        },
    )?;
    println!("partitions 4 → 6: HPA maxReplicas 6");

    // 6. Nothing lost or repeated across all of it, the outage included.
    let s = p.produce(p.load(20_000, 5_000, 12)).await?;
    all.add(&s);
    all.assert(&p).await?;
    drop(looks);
    let _ = sampler.join();
    kubectl(&["delete", "namespace", &ns, "--wait=false"])?;
    Ok(())
}

fn pipeline_yaml(ns: &str, p: &Pipeline, partitions: i32) -> String {
    pipeline_manifest(
        ns,
        "payments",
        json!({
            "kafka": kafka_spec(p, partitions),
            "workers": {
                "minReplicas": 1,
                "maxReplicas": partitions,
                // Small batches: each worker is slow enough that a backlog needs several.
                "batch": {"maxRecords": 10, "maxWaitMs": 5},
                "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "512Mi"}},
            },
            "autoscaling": {
                "enabled": true,
                "catchUpSeconds": 30,
                "scaleDownStabilizationSeconds": DOWN_WINDOW_S,
            },
        }),
    )
}

/// `sluice_needed_workers` of the pipeline, through the apiserver's aggregation layer.
fn external_metric(ns: &str) -> Result<Value> {
    let raw = kubectl(&[
        "get",
        "--raw",
        &format!(
            "/apis/external.metrics.k8s.io/v1beta1/namespaces/{ns}/sluice_needed_workers?labelSelector=sluice.dev%2Fpipeline%3Dpayments"
        ),
    ])?;
    Ok(serde_json::from_str(&raw)?)
}

fn look(ns: &str) -> Look {
    let get = |what: &[&str]| get_json(ns, what).ok();
    let mut l = Look::default();
    if let Some(h) = get(&["hpa", "payments-worker"]) {
        l.hpa_desired = h["status"]["desiredReplicas"].as_i64();
    }
    if let Some(d) = get(&["deployment", "payments-worker"]) {
        l.replicas = d["spec"]["replicas"].as_i64();
    }
    if let Some(pd) = get(&["pipelinedeployment", "payments"]) {
        let st = &pd["status"];
        l.needed = st["autoscaling"]["neededWorkers"].as_i64();
        l.lag = st["lag"].as_i64();
        l.lag_known = st["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "LagKnown")
            .map(|c| c["status"] == "True");
    }
    l
}

/// What decides the workers' size, printed when a step times out (the node, and the pods'
/// logs with it, are gone afterwards): the looks since `since` (changes only), the HPA's
/// conditions and current metric, the metric the aggregation layer serves, the pipeline's
/// status, and the end of each worker's and operator's log.
fn print_scaling_state(ns: &str, looks: &[Look], since: f64) {
    println!("--- scaling state since t={since:.0}s (changes only):");
    let mut previous: Option<&Look> = None;
    for l in looks.iter().filter(|l| l.at >= since) {
        let key = |l: &Look| (l.hpa_desired, l.replicas, l.needed, l.lag, l.lag_known);
        if previous.is_none_or(|p| key(p) != key(l)) {
            println!("{l:?}");
        }
        previous = Some(l);
    }
    let show = |what: &str, args: &[&str]| {
        let out = kubectl(args).unwrap_or_else(|e| format!("{e:#}"));
        println!("--- {what}\n{out}");
    };
    show("hpa", &["-n", ns, "describe", "hpa", "payments-worker"]);
    println!("--- external metric: {:?}", external_metric(ns));
    show(
        "pipeline status",
        &[
            "-n",
            ns,
            "get",
            "pipelinedeployment",
            "payments",
            "-o",
            "jsonpath={.status}",
        ],
    );
    println!("{}", sluice_e2e::cluster::describe_pods(ns));
    for pod in sluice_e2e::cluster::worker_pods(ns).unwrap_or_default() {
        show(&pod, &["-n", ns, "logs", &pod, "--tail=25"]);
    }
    show(
        "operator",
        &[
            "-n",
            "sluice-system",
            "logs",
            "deployment/sluice-operator",
            "--tail=40",
        ],
    );
}

/// The HPA's desired sizes in order, repeats removed (0: the HPA has not computed one yet).
fn desired_path(looks: &[Look]) -> Vec<i64> {
    dedup(
        looks
            .iter()
            .filter_map(|l| l.hpa_desired)
            .filter(|d| *d > 0),
    )
}

fn dedup<T: PartialEq>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    for i in items {
        if out.last() != Some(&i) {
            out.push(i);
        }
    }
    out
}
