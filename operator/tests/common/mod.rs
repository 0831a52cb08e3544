//! Shared harness of the operator's end-to-end tests: the real control plane from
//! `hack/cluster.sh` (or `$KUBECONFIG`), real Kafka from `hack/kafka.sh` (or
//! `$KAFKA_BOOTSTRAP`), the real CloudNativePG, Prometheus Operator and KEDA CRDs from their
//! Go modules, one temporary namespace per test and the operator binary as a child process.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use sluice_harness::Process;
use sluice_operator::crd::PipelineDeployment;

pub use sluice_harness::repo_root as repo;

pub struct Setup {
    pub repo: PathBuf,
    pub kubeconfig: PathBuf,
    pub kafka: String,
}

static SETUP: OnceLock<Setup> = OnceLock::new();

/// The harness's [`sluice_harness::run`], panicking on failure: operator tests panic.
pub fn run(cmd: &mut Command) -> String {
    sluice_harness::run(cmd).unwrap_or_else(|e| panic!("{e:#}"))
}

pub fn kubectl(setup: &Setup) -> Command {
    let mut c = Command::new("kubectl");
    c.env("KUBECONFIG", &setup.kubeconfig);
    c
}

/// Brings up (or reuses) everything the tests need, once per test binary.
pub fn setup() -> &'static Setup {
    SETUP.get_or_init(|| {
        let repo = repo();
        let kubeconfig = match std::env::var_os("KUBECONFIG").filter(|k| Path::new(k).exists()) {
            Some(k) => PathBuf::from(k),
            None => {
                let out = sluice_harness::hack("cluster.sh", &["up"]).unwrap();
                PathBuf::from(
                    out.lines()
                        .last()
                        .expect("cluster.sh prints the kubeconfig path")
                        .trim(),
                )
            }
        };
        let kafka = sluice_harness::service_address(
            "KAFKA_BOOTSTRAP",
            "kafka.sh",
            &["start", "operator-e2e"],
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
        let setup = Setup {
            repo: repo.clone(),
            kubeconfig,
            kafka,
        };
        // Our CRD plus the real upstream ones the operator's optional children must satisfy.
        let mut apply = kubectl(&setup);
        apply
            .args(["apply", "--server-side", "--force-conflicts", "-f"])
            .arg(repo.join("crds"));
        for f in upstream_crds() {
            apply.arg("-f").arg(f);
        }
        run(&mut apply);
        // kubectl fails at once, instead of waiting, on a CRD the API server has not given a
        // status yet (seen once: "status.conditions accessor error: <nil>"), so the wait is
        // retried until the time runs out.
        sluice_harness::wait_for_blocking("the CRDs Established", Duration::from_secs(60), || {
            sluice_harness::run(kubectl(&setup).args([
                "wait",
                "--for=condition=Established",
                "--timeout=10s",
                "crd",
                "--all",
            ]))
            .map(|_| true)
        })
        .unwrap_or_else(|e| panic!("{e:#}"));
        setup
    })
}

/// Partitions of `topic` as the broker at `bootstrap` (a plaintext listener) reports them;
/// `None` while the topic does not exist.
pub fn topic_partitions(bootstrap: &str, topic: &str) -> Option<usize> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let md = c.fetch_metadata(None, Duration::from_secs(5)).ok()?;
    md.topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().len())
}

/// CRD files of CloudNativePG, the Prometheus Operator and KEDA, from their published Go
/// modules.
pub fn upstream_crds() -> Vec<PathBuf> {
    sluice_harness::upstream::upstream_crds().unwrap_or_else(|e| panic!("{e:#}"))
}

pub async fn client() -> Client {
    let kubeconfig = Kubeconfig::read_from(&setup().kubeconfig).expect("kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kube config");
    Client::try_from(config).expect("kube client")
}

/// A namespace for one test, deleted (without waiting) when dropped.
pub struct TestNs {
    pub name: String,
    pub client: Client,
}

impl TestNs {
    pub async fn new(prefix: &str) -> Self {
        Self::with_labels(prefix, serde_json::json!({})).await
    }

    pub async fn with_labels(prefix: &str, labels: serde_json::Value) -> Self {
        let client = client().await;
        let name = format!(
            "{prefix}-{:x}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
                % 0xffffff
        );
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": { "name": name, "labels": labels }
        }))
        .unwrap();
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("create namespace");
        Self { name, client }
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        if std::env::var_os("SLUICE_KEEP_NS").is_none() {
            let _ = kubectl(setup())
                .args(["delete", "ns", &self.name, "--wait=false"])
                .output();
        }
    }
}

/// The operator binary running against the test cluster; killed when dropped.
pub struct Operator {
    pub process: Process,
    pub metrics_port: u16,
    pub identity: String,
}

impl Operator {
    /// Starts an operator watching `ns` with its Lease in `ns`.
    pub fn start(ns: &str, identity: &str) -> Self {
        Self::start_with(ns, identity, &setup().kubeconfig, &[])
    }

    pub fn start_with(ns: &str, identity: &str, kubeconfig: &Path, extra: &[&str]) -> Self {
        let port = sluice_harness::free_port().unwrap();
        let log = std::env::temp_dir().join(format!("sluice-operator-{ns}-{identity}.log"));
        let process = Process::spawn(
            Command::new(env!("CARGO_BIN_EXE_sluice-operator"))
                .args([
                    "--namespace",
                    ns,
                    "--lease-namespace",
                    ns,
                    "--identity",
                    identity,
                    "--lease-duration",
                    "4",
                ])
                .arg(format!("--metrics-addr=127.0.0.1:{port}"))
                .args(extra)
                .env("KUBECONFIG", kubeconfig)
                .env("RUST_LOG", "info,kube=warn,sluice_operator=debug"),
            log,
        )
        .expect("start sluice-operator");
        Self {
            process,
            metrics_port: port,
            identity: identity.into(),
        }
    }

    /// The operator's /metrics text, or None if it does not answer.
    pub fn metrics(&self) -> Option<String> {
        http_get(self.metrics_port, "/metrics")
    }

    pub fn is_leader(&self) -> bool {
        self.metrics()
            .is_some_and(|m| sluice_harness::metrics::sum(&m, "sluice_operator_leader", &[]) == 1.0)
    }

    pub fn kill(&mut self) {
        self.process.kill9();
    }
}

/// The body of a 200 answer to a GET on 127.0.0.1 (e.g. the operator's metrics endpoint).
pub fn http_get(port: u16, path: &str) -> Option<String> {
    sluice_harness::get_blocking(port, path).ok()?.ok().ok()
}

/// The harness's [`sluice_harness::wait_for`], panicking with what was awaited on timeout.
pub async fn wait_for<T, O, F, Fut>(what: &str, timeout: Duration, f: F) -> T
where
    O: sluice_harness::Outcome<T>,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = O>,
{
    sluice_harness::wait_for(what, timeout, f)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"))
}

pub const TIMEOUT: Duration = Duration::from_secs(60);

/// An example from `manifests/examples/`, with the Kafka bootstrap pointed at the test broker
/// when the operator manages the topic (the examples name in-cluster brokers).
pub fn example(file: &str) -> PipelineDeployment {
    let path = repo().join("manifests/examples").join(file);
    let mut pd: PipelineDeployment =
        serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    if pd.spec.kafka.manage_topic {
        pd.spec.kafka.bootstrap_servers = setup().kafka.clone();
    }
    pd
}

/// The example's topic, made unique so tests sharing the broker do not collide.
pub fn unique_topic(pd: &mut PipelineDeployment, ns: &str) {
    pd.spec.kafka.topic = format!("{}.{ns}", pd.spec.kafka.topic);
}

/// Status condition `type_` of the pipeline as (status, reason), once observedGeneration is current.
pub fn condition(pd: &PipelineDeployment, type_: &str) -> Option<(String, String)> {
    let st = pd.status.as_ref()?;
    if st.observed_generation != pd.metadata.generation {
        return None;
    }
    st.conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

/// Waits until the pipeline's Ready condition has `status` (and, if given, `reason`).
pub async fn wait_ready(
    api: &Api<PipelineDeployment>,
    name: &str,
    status: &str,
    reason: Option<&str>,
) -> PipelineDeployment {
    wait_for(
        &format!("{name} Ready={status} {reason:?}"),
        TIMEOUT,
        || async {
            let pd = api.get(name).await.ok()?;
            let (s, r) = condition(&pd, "Ready")?;
            (s == status && reason.is_none_or(|want| want == r)).then_some(pd)
        },
    )
    .await
}
