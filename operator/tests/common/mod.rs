//! Shared harness of the operator's end-to-end tests: the real control plane from
//! `hack/cluster.sh` (or `$KUBECONFIG`), real Kafka from `hack/kafka.sh` (or
//! `$KAFKA_BOOTSTRAP`), the real CloudNativePG, Prometheus Operator and KEDA CRDs from their
//! Go modules, one temporary namespace per test and the operator binary as a child process.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use sluice_operator::crd::PipelineDeployment;

pub const CNPG_VERSION: &str = "v1.27.0";
pub const PROMETHEUS_OPERATOR_VERSION: &str = "v0.85.0";
pub const KEDA_VERSION: &str = "v2.20.2";

pub struct Setup {
    pub repo: PathBuf,
    pub kubeconfig: PathBuf,
    pub kafka: String,
}

static SETUP: OnceLock<Setup> = OnceLock::new();

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn cache_dir() -> PathBuf {
    std::env::var_os("SLUICE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/sluice"))
}

/// Runs a command, panics with its stderr on failure, returns stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .stderr(Stdio::piped())
        .output()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
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
                let out = run(Command::new(repo.join("hack/cluster.sh")).arg("up"));
                PathBuf::from(
                    out.lines()
                        .last()
                        .expect("cluster.sh prints the kubeconfig path")
                        .trim(),
                )
            }
        };
        let kafka = match std::env::var("KAFKA_BOOTSTRAP") {
            Ok(k) if !k.is_empty() => k,
            _ => {
                let out =
                    run(Command::new(repo.join("hack/kafka.sh")).args(["start", "operator-e2e"]));
                out.lines()
                    .find_map(|l| l.strip_prefix("KAFKA_BOOTSTRAP="))
                    .expect("kafka.sh prints KAFKA_BOOTSTRAP=")
                    .trim()
                    .to_string()
            }
        };
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
        run(kubectl(&setup).args([
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd",
            "--all",
        ]));
        setup
    })
}

/// CRD files of CloudNativePG, the Prometheus Operator and KEDA, from their published Go
/// modules.
pub fn upstream_crds() -> Vec<PathBuf> {
    let gomodcache = cache_dir().join("gomod");
    let dir = |module: &str, version: &str| -> PathBuf {
        let go = std::env::var("GO").unwrap_or_else(|_| {
            if Path::new("/usr/local/go/bin/go").exists() {
                "/usr/local/go/bin/go".into()
            } else {
                "go".into()
            }
        });
        let out = run(Command::new(go)
            .args(["mod", "download", "-json", &format!("{module}@{version}")])
            .env("GOMODCACHE", &gomodcache)
            .env("GOFLAGS", "-modcacherw")
            .current_dir(std::env::temp_dir()));
        let v: serde_json::Value =
            serde_json::from_str(&out).expect("go mod download -json output");
        PathBuf::from(
            v["Dir"]
                .as_str()
                .unwrap_or_else(|| panic!("go mod download {module}: {out}")),
        )
    };
    let cnpg = dir("github.com/cloudnative-pg/cloudnative-pg", CNPG_VERSION);
    let prom = dir(
        "github.com/prometheus-operator/prometheus-operator",
        PROMETHEUS_OPERATOR_VERSION,
    );
    let keda = dir("github.com/kedacore/keda/v2", KEDA_VERSION);
    vec![
        cnpg.join("config/crd/bases/postgresql.cnpg.io_clusters.yaml"),
        keda.join("config/crd/bases/keda.sh_scaledobjects.yaml"),
        prom.join("example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml"),
        prom.join("example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml"),
    ]
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
    pub child: Child,
    pub metrics_port: u16,
    pub identity: String,
    pub log: PathBuf,
}

impl Operator {
    /// Starts an operator watching `ns` with its Lease in `ns`.
    pub fn start(ns: &str, identity: &str) -> Self {
        Self::start_with(ns, identity, &setup().kubeconfig, &[])
    }

    pub fn start_with(ns: &str, identity: &str, kubeconfig: &Path, extra: &[&str]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::env::temp_dir().join(format!("sluice-operator-{ns}-{identity}.log"));
        let log_file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_sluice-operator"))
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
            .env("RUST_LOG", "info,kube=warn,sluice_operator=debug")
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .expect("start sluice-operator");
        Self {
            child,
            metrics_port: port,
            identity: identity.into(),
            log,
        }
    }

    /// The operator's /metrics text, or None if it does not answer.
    pub fn metrics(&self) -> Option<String> {
        http_get(self.metrics_port, "/metrics")
    }

    pub fn is_leader(&self) -> bool {
        self.metrics()
            .is_some_and(|m| m.lines().any(|l| l.trim() == "sluice_operator_leader 1"))
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Minimal HTTP GET on 127.0.0.1 (the operator's metrics endpoint), body only.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let (head, body) = buf.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200")
        .then(|| body.to_string())
        .or_else(|| head.starts_with("HTTP/1.0 200").then(|| body.to_string()))
}

/// Polls `f` every 200 ms until it returns Some, panicking with `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
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
