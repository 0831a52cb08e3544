//! The install bundle (`manifests/`) and the Helm chart (`charts/sluice`) are accepted by the
//! API server (strict server-side dry run), pass the `restricted` Pod Security Standard of the
//! operator's namespace, and grant the same least-privilege rules.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::*;
use serde_json::Value;

/// `kubectl apply --server-side --dry-run=server --validate=strict` of `yaml`; returns stderr
/// (where kubectl prints admission warnings such as Pod Security violations).
fn dry_run(yaml: &str) -> String {
    let mut child = kubectl(setup())
        .args([
            "apply",
            "--server-side",
            "--dry-run=server",
            "--validate=strict",
            "-f",
            "-",
        ])
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
    assert!(out.status.success(), "dry run failed: {stderr}");
    stderr
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap()
}

/// helm from $SLUICE_CACHE/bin or PATH; built from the Go module proxy into the cache if absent.
fn helm() -> PathBuf {
    let cache = std::env::var_os("SLUICE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/sluice"));
    let cached = cache.join("bin/helm");
    if cached.exists() {
        return cached;
    }
    if Command::new("helm")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return PathBuf::from("helm");
    }
    run(
        Command::new(if std::path::Path::new("/usr/local/go/bin/go").exists() {
            "/usr/local/go/bin/go"
        } else {
            "go"
        })
        .args(["install", "helm.sh/helm/v3/cmd/helm@v3.22.0"])
        .env("GOBIN", cache.join("bin"))
        .env("GOMODCACHE", cache.join("gomod"))
        .env("GOFLAGS", "-modcacherw"),
    );
    cached
}

fn cluster_role_rules(yaml: &str) -> Value {
    serde_yaml::Deserializer::from_str(yaml)
        .filter_map(|d| serde::Deserialize::deserialize(d).ok())
        .find(|d: &Value| d["kind"] == "ClusterRole")
        .map(|d| d["rules"].clone())
        .expect("a ClusterRole")
}

#[test]
fn plain_bundle_applies_and_passes_restricted() {
    setup();
    let ns = read("manifests/namespace.yaml");
    run(kubectl(setup())
        .args(["apply", "--server-side", "-f"])
        .arg(repo().join("manifests/namespace.yaml")));
    let bundle = [
        ns,
        read("manifests/rbac.yaml"),
        read("manifests/operator.yaml"),
        read("manifests/external-metrics.yaml"),
    ]
    .join("\n---\n");
    let warnings = dry_run(&bundle);
    assert!(!warnings.contains("PodSecurity"), "{warnings}");
}

#[test]
fn helm_chart_renders_validates_and_matches_the_bundle_rbac() {
    setup();
    run(kubectl(setup())
        .args(["apply", "--server-side", "-f"])
        .arg(repo().join("manifests/namespace.yaml")));
    let chart = repo().join("charts/sluice");
    let helm = helm();
    run(Command::new(&helm).arg("lint").arg(&chart));
    let rendered = run(Command::new(&helm)
        .args([
            "template",
            "sluice",
            "--namespace",
            "sluice-system",
            "--kube-version",
            "1.37.0",
        ])
        .arg(&chart)
        .args(["--set", "crds.keep=false"]));
    let warnings = dry_run(&rendered);
    assert!(!warnings.contains("PodSecurity"), "{warnings}");
    assert_eq!(
        cluster_role_rules(&rendered),
        cluster_role_rules(&read("manifests/rbac.yaml")),
        "chart and manifests RBAC differ"
    );
    // values.schema.json rejects unknown values.
    let bad = Command::new(&helm)
        .args(["template", "x"])
        .arg(&chart)
        .args(["--kube-version", "1.37.0", "--set", "replicas=3"])
        .output()
        .unwrap();
    assert!(!bad.status.success(), "unknown value accepted");
}
