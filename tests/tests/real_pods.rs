//! On a real node (kubelet + containerd + runc, `hack/node.sh`): the operator runs as a pod
//! from its image with the RBAC it ships and turns a PipelineDeployment into worker pods from
//! the worker image. They pass their probes, read the rendered ConfigMap, log in to Postgres
//! with a password from a Secret, consume Kafka and land every valid record exactly once, also
//! when a pod is deleted mid-stream and during a rolling update.
//!
//! `hack/test.sh` runs this inside the node's network namespace (`hack/node.sh exec NAME --
//! cargo test ... -- --ignored`); elsewhere there is no node, hence `#[ignore]`.

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;
use sluice_e2e::{Pipeline, Summary, repo_root};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const WORKER_IMAGE: &str = "ghcr.io/sluice-dev/sluice-worker:0.1.0";
/// Pod grace period the operator renders for workers.
const GRACE: Duration = Duration::from_secs(30);
/// The distroless "nonroot" user the pods run as.
const NONROOT: u32 = 65532;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real node: hack/test.sh runs it inside `hack/node.sh exec`"]
async fn workers_run_as_real_pods_and_lose_nothing() -> Result<()> {
    let node_ip = std::env::var("NODE_IP").context("NODE_IP: run inside `hack/node.sh exec`")?;
    install_operator()?;

    let p = Pipeline::new("real_pods", 4).await?;
    let ns = format!("rp-{}", &p.name[p.name.len() - 8..]);
    let secret = app_role(&p, &node_ip).await?;
    kubectl(&["create", "namespace", &ns])?;
    kubectl(&[
        "-n",
        &ns,
        "create",
        "secret",
        "generic",
        "payments-db",
        &format!("--from-literal=primary={secret}"),
    ])?;
    apply(&pipeline_yaml(&ns, &p, 2000))?;

    let deployment = "deployment/payments-worker";
    wait_rollout(&ns, deployment)?;
    let pods = worker_pods(&ns)?;
    ensure!(pods.len() == 2, "expected 2 worker pods, got {pods:?}");
    assert_restricted_processes()?;
    wait_condition(&ns, "Ready", Duration::from_secs(120))?;

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
    tokio::time::sleep(Duration::from_secs(5)).await;
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
    tokio::time::sleep(Duration::from_secs(4)).await;
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

/// What was produced so far, and the check that all of it landed exactly once.
#[derive(Default)]
struct Landed {
    produced: u64,
    rejected: u64,
    valid: Vec<String>,
}

impl Landed {
    fn add(&mut self, s: &Summary) {
        self.produced += s.produced;
        self.rejected += s.invalid + s.duplicates;
        self.valid.extend(s.valid_ids.iter().cloned());
    }

    async fn assert(&self, p: &Pipeline) -> Result<()> {
        p.wait_handled(self.produced as i64, Duration::from_secs(180))
            .await?;
        tokio::time::sleep(Duration::from_millis(500)).await; // a straggler would show now
        p.assert_exactly_once(&self.valid).await?;
        let rejected = p
            .scalar("SELECT count(*) FROM sluice.rejected_transactions")
            .await?;
        ensure!(
            rejected as u64 == self.rejected,
            "{rejected} rejections recorded, expected {}",
            self.rejected
        );
        Ok(())
    }
}

/// A login role owning the pipeline's database, as an application would have: pods log in
/// with its password (scram-sha-256), never as the trusted superuser. Returns the URL.
async fn app_role(p: &Pipeline, node_ip: &str) -> Result<String> {
    let role = format!("app_{}", &p.name[p.name.len() - 8..]);
    let password: u64 = rand::random();
    let password = format!("{password:016x}");
    for sql in [
        format!("CREATE ROLE {role} LOGIN PASSWORD '{password}'"),
        format!("ALTER DATABASE {} OWNER TO {role}", p.name),
        format!("GRANT ALL ON SCHEMA public TO {role}"),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&p.pool)
            .await?;
    }
    let port = url_port(&p.database_url).context("port of DATABASE_URL")?;
    Ok(format!(
        "postgres://{role}:{password}@{node_ip}:{port}/{}",
        p.name
    ))
}

fn url_port(url: &str) -> Option<&str> {
    let host_port = url.split('@').nth(1)?.split('/').next()?;
    host_port.rsplit(':').next()
}

fn pipeline_yaml(ns: &str, p: &Pipeline, max_records: u32) -> String {
    format!(
        r#"apiVersion: sluice.dev/v1alpha1
kind: PipelineDeployment
metadata:
  name: payments
  namespace: {ns}
spec:
  kafka:
    bootstrapServers: {brokers}
    topic: {topic}
    partitions: 4
  workers:
    image: {WORKER_IMAGE}
    imagePullPolicy: IfNotPresent
    minReplicas: 2
    maxReplicas: 2
    batch:
      maxRecords: {max_records}
      maxWaitMs: 20
    resources:
      requests: {{cpu: 100m, memory: 128Mi}}
      limits: {{memory: 512Mi}}
  postgres:
    external:
      primaryUrl: {{name: payments-db, key: primary}}
"#,
        brokers = p.brokers,
        topic = p.topic,
    )
}

/// The plain install bundle, with the operator image built by `make images`.
fn install_operator() -> Result<()> {
    let root = repo_root();
    for f in [
        "manifests/namespace.yaml",
        "crds/sluice.dev_pipelinedeployments.yaml",
        "manifests/rbac.yaml",
        "manifests/operator.yaml",
    ] {
        kubectl(&[
            "apply",
            "--server-side",
            "-f",
            &root.join(f).to_string_lossy(),
        ])?;
    }
    wait_rollout("sluice-system", "deployment/sluice-operator")
}

fn wait_rollout(ns: &str, what: &str) -> Result<()> {
    kubectl(&["-n", ns, "rollout", "status", what, "--timeout=180s"])
        .map(|_| ())
        .with_context(|| format!("{what} in {ns}: {}", describe_pods(ns)))
}

fn worker_pods(ns: &str) -> Result<Vec<String>> {
    let out = kubectl(&[
        "-n",
        ns,
        "get",
        "pods",
        "-l",
        "app.kubernetes.io/component=worker",
        "--field-selector=status.phase=Running",
        "-o",
        "json",
    ])?;
    let v: Value = serde_json::from_str(&out)?;
    Ok(v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_owned))
        .collect())
}

fn wait_condition(ns: &str, type_: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let out = kubectl(&[
            "-n",
            ns,
            "get",
            "pipelinedeployment",
            "payments",
            "-o",
            "json",
        ])?;
        let v: Value = serde_json::from_str(&out)?;
        let found = v["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == type_ && c["status"] == "True");
        if found {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "condition {type_} not True within {timeout:?}: {}",
                v["status"]
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
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

fn describe_pods(ns: &str) -> String {
    kubectl(&["-n", ns, "get", "pods", "-o", "wide"])
        .and_then(|pods| {
            Ok(pods + &kubectl(&["-n", ns, "get", "events", "--sort-by=.lastTimestamp"])?)
        })
        .unwrap_or_else(|e| e.to_string())
}

fn kubectl(args: &[&str]) -> Result<String> {
    let out = Command::new("kubectl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running kubectl")?;
    ensure!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn apply(yaml: &str) -> Result<()> {
    let mut child = Command::new("kubectl")
        .args(["apply", "--server-side", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(yaml.as_bytes())?;
    let out = child.wait_with_output()?;
    ensure!(
        out.status.success(),
        "kubectl apply: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
