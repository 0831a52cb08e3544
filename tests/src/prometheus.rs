//! A real Prometheus (Debian's `/usr/bin/prometheus`) for the monitoring tests: scrape jobs
//! equivalent to what a rendered ServiceMonitor selects, fed with the ServiceMonitor's targets
//! as the local API server lists them (Debian builds Prometheus without its Kubernetes service
//! discovery, so [`Discovery`] plays that part through file discovery); the queries of the chart's Grafana dashboards with Grafana's
//! variables and macros substituted; and the metric names a PromQL expression reads.

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::{Process, cache_dir, free_port, get_blocking, repo_root, wait_for_blocking};

pub use sluice_harness::upstream::prometheus_operator_crds;

/// A Prometheus server of the test's own: its config and rule files and its data in a
/// directory under the run directory, killed and removed when dropped.
pub struct Prometheus {
    process: Process,
    pub port: u16,
    pub dir: PathBuf,
}

impl Prometheus {
    /// Start `/usr/bin/prometheus` with `config` (any YAML, e.g. JSON) and rule files
    /// (`name`, YAML text); `rule_files` of the config is set to them.
    pub fn start(mut config: Value, rules: &[(String, String)]) -> Result<Self> {
        let run = std::env::var_os("SLUICE_RUN")
            .map(PathBuf::from)
            .unwrap_or_else(|| cache_dir().join("run"));
        let dir = run.join(format!("prometheus-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("rules"))?;
        let mut files = Vec::new();
        for (name, text) in rules {
            let path = dir.join("rules").join(name);
            std::fs::write(&path, text)?;
            files.push(path.to_string_lossy().into_owned());
        }
        config["rule_files"] = json!(files);
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, serde_json::to_string_pretty(&config)?)?;
        let port = free_port()?;
        let process = Process::spawn(
            Command::new("/usr/bin/prometheus")
                .arg(format!("--config.file={}", config_path.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--log.level=info"),
            dir.join("prometheus.log"),
        )
        .context("starting /usr/bin/prometheus (hack/deps.sh installs Debian's prometheus)")?;
        let mut prom = Self { process, port, dir };
        wait_for_blocking("prometheus ready", Duration::from_secs(60), || {
            if let Some(status) = prom.process.exited()? {
                bail!("prometheus exited with {status}");
            }
            Ok(get_blocking(prom.port, "/-/ready").is_ok_and(|r| r.status == 200))
        })
        .with_context(|| prom.log_tail())?;
        Ok(prom)
    }

    pub fn log_tail(&self) -> String {
        self.process.log_tail(30)
    }

    /// GET an API path and return its `data`, or the API's error.
    pub fn api(&self, path: &str) -> Result<Value> {
        // Blocking: the test's async runtime is not needed for a local server. The API answers
        // errors with a JSON body too, so the status is not checked here.
        let body = get_blocking(self.port, path)?.body;
        let v: Value = serde_json::from_str(&body).with_context(|| format!("{path}: {body}"))?;
        ensure!(
            v["status"] == "success",
            "{}: {}",
            v["errorType"].as_str().unwrap_or("error"),
            v["error"].as_str().unwrap_or(&body)
        );
        Ok(v["data"].clone())
    }

    /// An instant query: its result (a vector's samples, or a scalar), or the parse or
    /// evaluation error.
    pub fn query(&self, expr: &str) -> Result<Value> {
        let data = self.api(&format!("/api/v1/query?query={}", encode(expr)))?;
        Ok(data["result"].clone())
    }

    /// Series of an instant query; an empty list is no data.
    pub fn samples(&self, expr: &str) -> Result<usize> {
        let r = self.query(expr)?;
        Ok(match r {
            Value::Array(a) => a.len(),
            Value::Null => 0,
            _ => 1, // a scalar or string always has a value
        })
    }

    /// Metric names that have at least one series in the head block.
    pub fn metric_names(&self) -> Result<BTreeSet<String>> {
        let data = self.api("/api/v1/label/__name__/values")?;
        Ok(data
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.process.kill9();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Percent-encoding of a query parameter (RFC 3986 unreserved characters stay).
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A label name as Prometheus' Kubernetes discovery spells it (`app.kubernetes.io/name` →
/// `app_kubernetes_io_name`).
fn sanitize(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Scrape jobs equivalent to a rendered ServiceMonitor, as the Prometheus Operator generates
/// them for Kubernetes endpoint-slice discovery: keep the Services matching
/// `selector.matchLabels` and the endpoint's named port, and label targets with `namespace`,
/// `service`, `pod`, `container`, `endpoint` and `job` (the Service's name). The targets come
/// from `sd_file`, which [`Discovery`] keeps filled with what that discovery would find.
pub fn service_monitor_jobs(sm: &Value, sd_file: &Path) -> Result<Vec<Value>> {
    let ns = sm["metadata"]["namespace"]
        .as_str()
        .context("ServiceMonitor namespace")?;
    let name = sm["metadata"]["name"]
        .as_str()
        .context("ServiceMonitor name")?;
    let spec = &sm["spec"];
    ensure!(
        spec["selector"]["matchExpressions"].is_null(),
        "ServiceMonitor {ns}/{name}: matchExpressions are not translated here"
    );
    let mut keep = Vec::new();
    for (k, v) in spec["selector"]["matchLabels"]
        .as_object()
        .context("ServiceMonitor selector.matchLabels")?
    {
        let k = sanitize(k);
        keep.push(json!({
            "action": "keep",
            "source_labels": [
                format!("__meta_kubernetes_service_label_{k}"),
                format!("__meta_kubernetes_service_labelpresent_{k}"),
            ],
            "regex": format!("({});true", v.as_str().context("label value")?),
        }));
    }
    let mut jobs = Vec::new();
    for (i, ep) in spec["endpoints"]
        .as_array()
        .context("ServiceMonitor endpoints")?
        .iter()
        .enumerate()
    {
        let port = ep["port"].as_str().context("endpoint port (by name)")?;
        let mut relabel = keep.clone();
        relabel.push(json!({
            "action": "keep",
            "source_labels": ["__meta_kubernetes_endpointslice_port_name"],
            "regex": port,
        }));
        for (from, to) in [
            ("__meta_kubernetes_namespace", "namespace"),
            ("__meta_kubernetes_service_name", "service"),
            ("__meta_kubernetes_pod_name", "pod"),
            ("__meta_kubernetes_pod_container_name", "container"),
            ("__meta_kubernetes_service_name", "job"),
        ] {
            relabel.push(json!({"source_labels": [from], "target_label": to}));
        }
        relabel.push(json!({"target_label": "endpoint", "replacement": port}));
        let mut job = json!({
            "job_name": format!("serviceMonitor/{ns}/{name}/{i}"),
            "honor_labels": ep["honorLabels"].as_bool().unwrap_or(false),
            "metrics_path": ep["path"].as_str().unwrap_or("/metrics"),
            "scheme": ep["scheme"].as_str().unwrap_or("http"),
            "file_sd_configs": [{"files": [sd_file], "refresh_interval": "5s"}],
            "relabel_configs": relabel,
        });
        if let Some(interval) = ep["interval"].as_str() {
            job["scrape_interval"] = json!(interval);
        }
        jobs.push(job);
    }
    Ok(jobs)
}

/// The namespaces a ServiceMonitor looks in: its `namespaceSelector.matchNames`, or its own.
fn service_monitor_namespaces(sm: &Value) -> Vec<String> {
    match sm["spec"]["namespaceSelector"]["matchNames"].as_array() {
        Some(names) => names
            .iter()
            .filter_map(|n| n.as_str().map(str::to_owned))
            .collect(),
        None => sm["metadata"]["namespace"]
            .as_str()
            .map(str::to_owned)
            .into_iter()
            .collect(),
    }
}

/// What Prometheus' endpoint-slice discovery finds in a ServiceMonitor's namespaces, as file
/// discovery target groups: one target per endpoint address and port of every Service, with
/// the `__meta_kubernetes_*` labels the relabelling above reads. Read through kubectl from the
/// local API server.
pub fn discover(sm: &Value) -> Result<Value> {
    let mut groups = Vec::new();
    for ns in service_monitor_namespaces(sm) {
        let list = |kind: &str| -> Result<Vec<Value>> {
            let out = crate::cluster::kubectl(&["-n", &ns, "get", kind, "-o", "json"])?;
            let v: Value = serde_json::from_str(&out)?;
            Ok(v["items"].as_array().cloned().unwrap_or_default())
        };
        let services = list("services")?;
        let pods = list("pods")?;
        for slice in list("endpointslices.discovery.k8s.io")? {
            let Some(svc_name) = slice["metadata"]["labels"]["kubernetes.io/service-name"].as_str()
            else {
                continue;
            };
            let Some(svc) = services.iter().find(|s| s["metadata"]["name"] == svc_name) else {
                continue;
            };
            let mut common = serde_json::Map::new();
            common.insert("__meta_kubernetes_namespace".into(), json!(ns));
            common.insert("__meta_kubernetes_service_name".into(), json!(svc_name));
            common.insert(
                "__meta_kubernetes_endpointslice_name".into(),
                slice["metadata"]["name"].clone(),
            );
            for (k, v) in svc["metadata"]["labels"].as_object().into_iter().flatten() {
                let k = sanitize(k);
                common.insert(format!("__meta_kubernetes_service_label_{k}"), v.clone());
                common.insert(
                    format!("__meta_kubernetes_service_labelpresent_{k}"),
                    json!("true"),
                );
            }
            for ep in slice["endpoints"].as_array().into_iter().flatten() {
                let pod_name = (ep["targetRef"]["kind"] == "Pod")
                    .then(|| ep["targetRef"]["name"].as_str())
                    .flatten();
                let pod = pod_name.and_then(|n| pods.iter().find(|p| p["metadata"]["name"] == n));
                for port in slice["ports"].as_array().into_iter().flatten() {
                    let (Some(port_name), Some(number)) =
                        (port["name"].as_str(), port["port"].as_u64())
                    else {
                        continue;
                    };
                    let mut labels = common.clone();
                    labels.insert(
                        "__meta_kubernetes_endpointslice_port_name".into(),
                        json!(port_name),
                    );
                    labels.insert(
                        "__meta_kubernetes_endpointslice_endpoint_conditions_ready".into(),
                        json!(
                            ep["conditions"]["ready"]
                                .as_bool()
                                .unwrap_or(false)
                                .to_string()
                        ),
                    );
                    if let Some(name) = pod_name {
                        labels.insert("__meta_kubernetes_pod_name".into(), json!(name));
                    }
                    // The container declaring the port.
                    if let Some(c) = pod.and_then(|p| {
                        p["spec"]["containers"].as_array()?.iter().find(|c| {
                            c["ports"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .any(|cp| cp["containerPort"].as_u64() == Some(number))
                        })
                    }) {
                        labels.insert(
                            "__meta_kubernetes_pod_container_name".into(),
                            c["name"].clone(),
                        );
                    }
                    for addr in ep["addresses"].as_array().into_iter().flatten() {
                        if let Some(ip) = addr.as_str() {
                            groups.push(json!({
                                "targets": [format!("{ip}:{number}")],
                                "labels": labels,
                            }));
                        }
                    }
                }
            }
        }
    }
    Ok(Value::Array(groups))
}

/// Keeps one file-discovery file per ServiceMonitor up to date from the API server (every
/// 2 s, as pods come and go), until dropped.
pub struct Discovery {
    files: Vec<PathBuf>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Discovery {
    /// Write each `(ServiceMonitor, file)` once (so Prometheus starts with targets), then keep
    /// rewriting them on a thread.
    pub fn start(monitors: Vec<(Value, PathBuf)>) -> Result<Self> {
        let write = |sm: &Value, path: &Path| -> Result<()> {
            let groups = discover(sm)?;
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, serde_json::to_string_pretty(&groups)?)?;
            std::fs::rename(&tmp, path)?; // atomic: Prometheus never reads half a file
            Ok(())
        };
        for (sm, path) in &monitors {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            write(sm, path)?;
        }
        let files = monitors.iter().map(|(_, p)| p.clone()).collect();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(Duration::from_secs(2));
                for (sm, path) in &monitors {
                    if let Err(e) = write(sm, path) {
                        eprintln!("discovery for {}: {e:#}", path.display());
                    }
                }
            }
        });
        Ok(Self {
            files,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Discovery {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// The rule groups of a PrometheusRule object, or of a rule file (`groups:` at the top, or a
/// PrometheusRule manifest), as a Prometheus rule file.
pub fn rule_file(doc: &Value) -> Result<String> {
    let groups = if doc["spec"]["groups"].is_array() {
        &doc["spec"]["groups"]
    } else {
        &doc["groups"]
    };
    ensure!(groups.is_array(), "no rule groups in {doc}");
    Ok(serde_json::to_string_pretty(&json!({ "groups": groups }))?)
}

/// Every rule of the rule file texts: (group, `alert` or `record` name, expression, is alert).
pub fn rules_of(files: &[(String, String)]) -> Result<Vec<(String, String, String, bool)>> {
    let mut out = Vec::new();
    for (file, text) in files {
        let v: Value = serde_yaml::from_str(text).with_context(|| file.clone())?;
        for g in v["groups"].as_array().into_iter().flatten() {
            let group = g["name"].as_str().unwrap_or_default().to_owned();
            for r in g["rules"].as_array().into_iter().flatten() {
                let expr = match &r["expr"] {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let (name, alert) = match (r["alert"].as_str(), r["record"].as_str()) {
                    (Some(a), _) => (a.to_owned(), true),
                    (_, Some(rec)) => (rec.to_owned(), false),
                    _ => bail!("{file}: rule without alert or record: {r}"),
                };
                out.push((group.clone(), name, expr, alert));
            }
        }
    }
    Ok(out)
}

const PROMQL_KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "bool",
    "atan2",
    "inf",
    "nan",
    "start",
    "end",
];

/// The metric names a PromQL expression reads: identifiers that are not functions, aggregation
/// operators, keywords, label names (inside `{}` or the label lists of `by`, `without`, `on`,
/// `ignoring`, `group_left`, `group_right`), strings, durations or numbers; and names given as
/// `__name__="..."`.
pub fn promql_metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let mut last_word = String::new();
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i += 1;
            while i < chars.len() && chars[i] != c {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            continue;
        }
        if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        if c == '{' {
            // Label matchers: only `__name__` names a metric.
            let start = i;
            while i < chars.len() && chars[i] != '}' {
                if chars[i] == '"' || chars[i] == '\'' || chars[i] == '`' {
                    let q = chars[i];
                    i += 1;
                    while i < chars.len() && chars[i] != q {
                        if chars[i] == '\\' {
                            i += 1;
                        }
                        i += 1;
                    }
                }
                i += 1;
            }
            let body: String = chars[start..i.min(chars.len())].iter().collect();
            if let Some(pos) = body.find("__name__") {
                let rest = body[pos + 8..].trim_start();
                if let Some(rest) = rest.strip_prefix('=') {
                    let rest = rest.trim_start();
                    if let Some(q) = rest.chars().next()
                        && let Some(end) = rest[1..].find(q)
                    {
                        names.insert(rest[1..1 + end].to_owned());
                    }
                }
            }
            i += 1;
            last_word.clear();
            continue;
        }
        if c == '[' {
            while i < chars.len() && chars[i] != ']' {
                i += 1;
            }
            i += 1;
            continue;
        }
        if c == '('
            && matches!(
                last_word.as_str(),
                "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
            )
        {
            while i < chars.len() && chars[i] != ')' {
                i += 1;
            }
            i += 1;
            last_word.clear();
            continue;
        }
        if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            // A number or duration (1e3, 0x1f, 5m, 1h30m).
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut j = i;
            while j < chars.len() && chars[j].is_whitespace() {
                j += 1;
            }
            let is_call = chars.get(j) == Some(&'(');
            let keyword = PROMQL_KEYWORDS.contains(&word.to_ascii_lowercase().as_str());
            // `sum by (x) (...)`: an aggregation's name is followed by `by`/`without`.
            let next_word: String = chars[j..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
                .collect();
            let aggregation = matches!(next_word.as_str(), "by" | "without");
            if !is_call && !keyword && !aggregation {
                names.insert(word.clone());
            }
            last_word = word;
            continue;
        }
        if !c.is_whitespace() {
            last_word.clear();
        }
        i += 1;
    }
    names
}

/// The overview dashboard the chart ships (and the operator renders per pipeline).
pub fn overview_dashboard() -> Result<Value> {
    let path = repo_root().join("charts/sluice/files/dashboards/sluice-overview.json");
    Ok(serde_json::from_str(&std::fs::read_to_string(&path)?)?)
}

/// Every query of a dashboard by the type of its data source: (panel title, query text).
pub fn dashboard_queries(d: &Value, datasource_type: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut panels: Vec<&Value> = d["panels"].as_array().into_iter().flatten().collect();
    while let Some(p) = panels.pop() {
        panels.extend(p["panels"].as_array().into_iter().flatten());
        for t in p["targets"].as_array().into_iter().flatten() {
            let ds = if t["datasource"]["type"].is_string() {
                &t["datasource"]
            } else {
                &p["datasource"]
            };
            if ds["type"] != datasource_type {
                continue;
            }
            let q = t["expr"]
                .as_str()
                .or(t["rawSql"].as_str())
                .unwrap_or_default();
            out.push((
                p["title"].as_str().unwrap_or_default().to_owned(),
                q.to_owned(),
            ));
        }
    }
    out.reverse();
    out
}

/// A dashboard's PromQL with Grafana's variables substituted as Grafana does for one pipeline
/// and a one-hour range at a 15 s step with a 5 s scrape interval.
pub fn grafana_promql(expr: &str, namespace: &str, pipeline: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("$__range", "1h")
        .replace("${namespace}", namespace)
        .replace("$namespace", namespace)
        .replace("${pipeline}", pipeline)
        .replace("$pipeline", pipeline)
}

/// A dashboard's SQL with Grafana's macros replaced by the SQL the PostgreSQL data source
/// generates (`$__timeFilter(c)` → `c BETWEEN 'from' AND 'to'`, `$__timeFrom()`,
/// `$__timeTo()`) for the range `from`..`to` (RFC 3339), and `${schema:raw}` by the schema.
pub fn grafana_sql(sql: &str, schema: &str, from: &str, to: &str) -> String {
    let mut out = sql
        .replace("${schema:raw}", schema)
        .replace("${schema}", schema)
        .replace("$schema", schema)
        .replace("$__timeFrom()", &format!("'{from}'"))
        .replace("$__timeTo()", &format!("'{to}'"));
    while let Some(start) = out.find("$__timeFilter(") {
        let open = start + "$__timeFilter(".len();
        let close = open + out[open..].find(')').expect("$__timeFilter( closed");
        let column = out[open..close].trim().to_owned();
        out.replace_range(
            start..=close,
            &format!("{column} BETWEEN '{from}' AND '{to}'"),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(e: &str) -> Vec<String> {
        promql_metric_names(e).into_iter().collect()
    }

    #[test]
    fn metric_names_of_promql() {
        assert_eq!(
            names(
                r#"sum by (outcome) (rate(sluice_transactions_total{namespace="a", pipeline="b"}[5m])) > 0.5"#
            ),
            ["sluice_transactions_total"]
        );
        assert_eq!(
            names(
                r#"histogram_quantile(0.99, sum without (pod) (rate(x_bucket[1m]))) / on (pipeline) group_left (le) y offset 5m"#
            ),
            ["x_bucket", "y"]
        );
        assert_eq!(
            names(
                r#"absent(up{job="p-metrics"} == 1) or sum(kube_hpa{a="or"}) and {__name__="z:rate5m"}"#
            ),
            ["kube_hpa", "up", "z:rate5m"]
        );
        assert_eq!(names("max_over_time(a[10m:1m]) > bool 1e3"), ["a"]);
        assert_eq!(names("count without(instance) (b) * 2"), ["b"]);
    }

    #[test]
    fn grafana_macros() {
        assert_eq!(
            grafana_promql(
                r#"rate(m{namespace="$namespace", pipeline="$pipeline"}[$__rate_interval])"#,
                "ns",
                "p"
            ),
            r#"rate(m{namespace="ns", pipeline="p"}[1m])"#
        );
        assert_eq!(
            grafana_sql(
                "SELECT 1 FROM ${schema:raw}.t WHERE $__timeFilter(period_start) AND $__timeFilter( x )",
                "s",
                "F",
                "T"
            ),
            "SELECT 1 FROM s.t WHERE period_start BETWEEN 'F' AND 'T' AND x BETWEEN 'F' AND 'T'"
        );
    }

    #[test]
    fn service_monitor_translation() {
        let sm = json!({
            "metadata": {"namespace": "shop", "name": "payments"},
            "spec": {
                "selector": {"matchLabels": {"app.kubernetes.io/name": "sluice-worker", "sluice.dev/pipeline": "payments"}},
                "endpoints": [{"port": "metrics", "path": "/metrics", "interval": "5s"}],
            }
        });
        let jobs = service_monitor_jobs(&sm, Path::new("/sd/payments.json")).unwrap();
        assert_eq!(jobs.len(), 1);
        let j = &jobs[0];
        assert_eq!(j["scrape_interval"], "5s");
        assert_eq!(
            j["file_sd_configs"][0]["files"],
            json!(["/sd/payments.json"])
        );
        assert_eq!(service_monitor_namespaces(&sm), ["shop"]);
        let r = j["relabel_configs"].as_array().unwrap();
        assert!(r.contains(&json!({
            "action": "keep",
            "source_labels": ["__meta_kubernetes_service_label_sluice_dev_pipeline", "__meta_kubernetes_service_labelpresent_sluice_dev_pipeline"],
            "regex": "(payments);true",
        })));
    }
}
