//! Helpers for the tests that run on the real node (`hack/node.sh`): kubectl against its
//! cluster (`KUBECONFIG` from the node's env), the install bundle, and an application role in
//! Postgres for the pods.

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::{Pipeline, Summary, repo_root, run, wait_for_blocking};

/// The worker image `make images` builds (and `hack/node.sh` imports into the node).
pub const WORKER_IMAGE: &str = "ghcr.io/sluice-dev/sluice-worker:0.1.0";

/// A PipelineDeployment `name` in `ns` (as JSON, which `kubectl apply` takes like YAML): workers
/// from [`WORKER_IMAGE`] as imported into the node, the database from the Secret of
/// [`namespace_with_database`], and `spec` merged over that (objects key by key, anything else
/// replaced), e.g. `json!({"kafka": kafka_spec(p, 4), "workers": {"minReplicas": 2}})`.
pub fn pipeline_manifest(ns: &str, name: &str, spec: Value) -> String {
    let mut manifest = json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "PipelineDeployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "workers": {"image": WORKER_IMAGE, "imagePullPolicy": "IfNotPresent"},
            // The schema the harness reads (`sluice.transactions`), not the pipeline's own default.
            "postgres": {
                "external": {"primaryUrl": {"name": "payments-db", "key": "primary"}},
                "schema": "sluice",
            },
        },
    });
    merge(&mut manifest["spec"], spec);
    manifest.to_string()
}

/// The `kafka` section of a spec for the pipeline's broker and topic.
pub fn kafka_spec(p: &Pipeline, partitions: i32) -> Value {
    json!({"bootstrapServers": p.brokers, "topic": p.topic, "partitions": partitions})
}

fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(base), Value::Object(patch)) => {
            for (k, v) in patch {
                merge(base.entry(k).or_insert(Value::Null), v);
            }
        }
        (base, patch) => *base = patch,
    }
}

/// A namespace `<prefix>-<suffix of the pipeline>` for the pipeline's custom resource, holding
/// the Secret `payments-db` (key `primary`) with the URL of an application role that owns the
/// pipeline's database, reached at the node's address as pods reach it.
pub async fn namespace_with_database(prefix: &str, p: &Pipeline) -> Result<String> {
    let node_ip = std::env::var("NODE_IP").context("NODE_IP: run inside `hack/node.sh exec`")?;
    let ns = format!("{prefix}-{}", &p.name[p.name.len() - 8..]);
    let url = app_role(p, &node_ip).await?;
    kubectl(&["create", "namespace", &ns])?;
    kubectl(&[
        "-n",
        &ns,
        "create",
        "secret",
        "generic",
        "payments-db",
        &format!("--from-literal=primary={url}"),
    ])?;
    Ok(ns)
}

/// A login role owning the pipeline's database, as an application would have: pods log in
/// with its password (scram-sha-256), never as the trusted superuser. Returns the URL.
pub async fn app_role(p: &Pipeline, node_ip: &str) -> Result<String> {
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

pub fn url_port(url: &str) -> Option<&str> {
    let host_port = url.split('@').nth(1)?.split('/').next()?;
    host_port.rsplit(':').next()
}

/// The plain install bundle `manifests/install.yaml` (rendered from the chart: namespace,
/// CRD, RBAC, operator, external metrics API), with the operator image built by `make images`.
pub fn install_operator() -> Result<()> {
    let bundle = repo_root().join("manifests/install.yaml");
    kubectl(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        &bundle.to_string_lossy(),
    ])?;
    wait_rollout("sluice-system", "deployment/sluice-operator")
}

/// Waits until `what` exists (its creator, e.g. a freshly installed operator still taking over
/// the leader Lease, may not have made it yet: `rollout status` fails at once on NotFound) and
/// has rolled out.
pub fn wait_rollout(ns: &str, what: &str) -> Result<()> {
    wait_for_blocking(
        &format!("{what} in {ns} to be created"),
        Duration::from_secs(120),
        || kubectl(&["-n", ns, "get", what]).is_ok(),
    )
    .with_context(|| describe_pods(ns))?;
    kubectl(&["-n", ns, "rollout", "status", what, "--timeout=180s"])
        .map(|_| ())
        .with_context(|| format!("{what} in {ns}: {}", describe_pods(ns)))
}

pub fn describe_pods(ns: &str) -> String {
    kubectl(&["-n", ns, "get", "pods", "-o", "wide"])
        .and_then(|pods| {
            Ok(pods + &kubectl(&["-n", ns, "get", "events", "--sort-by=.lastTimestamp"])?)
        })
        .unwrap_or_else(|e| e.to_string())
}

pub fn kubectl(args: &[&str]) -> Result<String> {
    run(Command::new("kubectl").args(args))
}

/// `kubectl -n ns get <what…> -o json`, parsed.
pub fn get_json(ns: &str, what: &[&str]) -> Result<Value> {
    let mut args = vec!["-n", ns, "get"];
    args.extend_from_slice(what);
    args.extend_from_slice(&["-o", "json"]);
    Ok(serde_json::from_str(&kubectl(&args)?)?)
}

pub fn apply(yaml: &str) -> Result<()> {
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

/// What was produced so far, and the check that all of it landed exactly once.
#[derive(Default)]
pub struct Landed {
    pub produced: u64,
    pub rejected: u64,
    pub valid: Vec<String>,
}

impl Landed {
    pub fn add(&mut self, s: &Summary) {
        self.produced += s.produced;
        self.rejected += s.invalid + s.duplicates;
        self.valid.extend(s.valid_ids.iter().cloned());
    }

    pub async fn assert(&self, p: &Pipeline) -> Result<()> {
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

pub fn worker_pods(ns: &str) -> Result<Vec<String>> {
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

pub fn wait_condition(ns: &str, pipeline: &str, type_: &str, timeout: Duration) -> Result<()> {
    let mut status = Value::Null;
    wait_for_blocking(&format!("condition {type_} True"), timeout, || {
        let v = get_json(ns, &["pipelinedeployment", pipeline])?;
        status = v["status"].clone();
        anyhow::Ok(
            status["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == type_ && c["status"] == "True"),
        )
    })
    .with_context(|| format!("status: {status}"))
}
