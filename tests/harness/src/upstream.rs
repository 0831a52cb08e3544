//! The upstream CRDs the operator's optional children must satisfy (CloudNativePG, the
//! Prometheus Operator, KEDA), from their published Go modules: the versions are pinned here
//! once for the operator's tests and the end-to-end tests.

use anyhow::{Context, Result};
use std::path::PathBuf;
use std::process::Command;

use crate::{go, go_mod_cache, run};

pub const CNPG_VERSION: &str = "v1.27.0";
pub const PROMETHEUS_OPERATOR_VERSION: &str = "v0.85.0";
pub const KEDA_VERSION: &str = "v2.20.2";

/// The source directory of Go module `module@version` in the module cache, downloaded
/// (`go mod download`) when it is not there yet.
pub fn go_module_dir(module: &str, version: &str) -> Result<PathBuf> {
    let cache = go_mod_cache();
    let dir = cache.join(format!("{module}@{version}"));
    if dir.exists() {
        return Ok(dir);
    }
    let out = run(Command::new(go())
        .args(["mod", "download", "-json", &format!("{module}@{version}")])
        .env("GOMODCACHE", &cache)
        .env("GOFLAGS", "-modcacherw")
        .current_dir(std::env::temp_dir()))?;
    let v: serde_json::Value = serde_json::from_str(&out)
        .with_context(|| format!("`go mod download -json {module}`: {out}"))?;
    let dir = v["Dir"]
        .as_str()
        .with_context(|| format!("no Dir in `go mod download -json {module}`: {out}"))?;
    Ok(PathBuf::from(dir))
}

/// The ServiceMonitor and PrometheusRule CRDs of the Prometheus Operator.
pub fn prometheus_operator_crds() -> Result<Vec<PathBuf>> {
    let dir = go_module_dir(
        "github.com/prometheus-operator/prometheus-operator",
        PROMETHEUS_OPERATOR_VERSION,
    )?
    .join("example/prometheus-operator-crd");
    Ok(vec![
        dir.join("monitoring.coreos.com_servicemonitors.yaml"),
        dir.join("monitoring.coreos.com_prometheusrules.yaml"),
    ])
}

/// The CRDs of CloudNativePG (Cluster), KEDA (ScaledObject) and the Prometheus Operator.
pub fn upstream_crds() -> Result<Vec<PathBuf>> {
    let cnpg = go_module_dir("github.com/cloudnative-pg/cloudnative-pg", CNPG_VERSION)?;
    let keda = go_module_dir("github.com/kedacore/keda/v2", KEDA_VERSION)?;
    let mut crds = vec![
        cnpg.join("config/crd/bases/postgresql.cnpg.io_clusters.yaml"),
        keda.join("config/crd/bases/keda.sh_scaledobjects.yaml"),
    ];
    crds.extend(prometheus_operator_crds()?);
    Ok(crds)
}
