//! Monitoring checked by the real tools.
//!
//! - The chart's Grafana dashboards match Grafana's published dashboard schema
//!   (`hack/dashcheck`: the Grafana Foundation SDK's strict decoder and its Validate()).
//! - On the real node (`hack/node.sh`): a real Prometheus (Debian's) scrapes worker pods under
//!   load and the operator pods: the targets the ServiceMonitors the operator renders select,
//!   read from the local API server (Debian's Prometheus lacks Kubernetes discovery; file
//!   discovery is fed the same targets and labels), with their relabelling; it loads the
//!   rules of the rendered PrometheusRule and of `charts/sluice/files/rules/`. Every rule group
//!   loads and evaluates with health ok, every recording rule and every dashboard query returns
//!   data, and every metric an alert reads has series here, but for the exporters this node
//!   does not run (`ABSENT_HERE`; the rules a CloudNativePG pipeline would get are rendered by
//!   the operator's code and loaded too). The dashboards' SQL panels run against the pipeline's
//!   database, read-only as on a replica, and return rows.
//!
//! `hack/test.sh` runs the real-node test inside the node's network namespace (`hack/node.sh
//! exec NAME -- cargo test ... --test monitoring -- --ignored`); elsewhere there is no node,
//! hence `#[ignore]`.

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use sluice_e2e::cluster::{
    Landed, apply, get_json, install_operator, kafka_spec, kubectl, namespace_with_database,
    pipeline_manifest, wait_condition, wait_rollout, worker_pods,
};
use sluice_e2e::prometheus::{
    Discovery, Prometheus, dashboard_queries, grafana_promql, grafana_sql, overview_dashboard,
    prometheus_operator_crds, promql_metric_names, rule_file, rules_of, service_monitor_jobs,
};
use sluice_e2e::{
    Pipeline, cache_dir, go, go_mod_cache, helm_binary, repo_root, run, wait_for_blocking,
};
use sluice_operator::children::monitoring::build_prometheus_rule;
use sluice_operator::crd::PipelineDeployment;
use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

/// Metric names alert rules read that no component on the real node exports: CloudNativePG's
/// replication lag (its instance manager's, for `SluiceReplicaLagHigh`). Exactly these, so a
/// misspelled or removed metric fails the test.
const ABSENT_HERE: &[&str] = &["cnpg_pg_replication_lag"];

/// Scrape and rule evaluation interval of the test's Prometheus.
const INTERVAL: &str = "5s";

/// How long the queries may take to return data once the load runs.
const DATA_TIMEOUT: Duration = Duration::from_secs(150);

/// Runs `hack/dashcheck` (Grafana Foundation SDK's strict decoder and `Validate()`) on `files`.
fn dashcheck(files: &[String]) -> Result<std::process::Output> {
    Command::new(go())
        .arg("run")
        .arg(".")
        .args(files)
        .current_dir(repo_root().join("hack/dashcheck"))
        .env("GOMODCACHE", go_mod_cache())
        .env("GOCACHE", cache_dir().join("go/build"))
        .env("GOFLAGS", "-mod=readonly")
        .env("GOTOOLCHAIN", "local")
        .output()
        .context("go run ./hack/dashcheck")
}

#[test]
fn dashboards_match_grafana_schema() -> Result<()> {
    let root = repo_root();
    let dir = root.join("charts/sluice/files/dashboards");
    let mut files: Vec<String> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    files.sort();
    ensure!(!files.is_empty(), "no dashboards in {}", dir.display());
    let out = dashcheck(&files)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.success(), "dashcheck: {stdout}{stderr}");
    // The checker judged every file.
    ensure!(
        stdout.lines().filter(|l| l.ends_with(": ok")).count() == files.len(),
        "dashcheck: {stdout}"
    );
    println!("{stdout}");

    // It refuses what Grafana would not load: an unknown panel field, a target of the wrong type.
    let tmp = std::env::temp_dir().join(format!("dashcheck-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let mut bad = overview_dashboard()?;
    bad["panels"][0]["colour"] = json!("red");
    bad["panels"][1]["targets"][0]["expr"] = json!(42);
    let bad_path = tmp.join("bad.json");
    std::fs::write(&bad_path, serde_json::to_string(&bad)?)?;
    let out = dashcheck(&[bad_path.to_string_lossy().into_owned()])?;
    let _ = std::fs::remove_dir_all(&tmp);
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success(),
        "dashcheck accepted a broken dashboard"
    );
    ensure!(
        stderr.contains("unexpected field 'colour'") && stderr.contains("targets[0].expr"),
        "dashcheck: {stderr}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real node: hack/test.sh runs it inside `hack/node.sh exec`"]
async fn prometheus_evaluates_every_rule_and_dashboard_query() -> Result<()> {
    // The Prometheus Operator's CRDs, so the operator renders its ServiceMonitor and
    // PrometheusRule.
    for crd in prometheus_operator_crds()? {
        kubectl(&["apply", "--server-side", "-f", &crd.to_string_lossy()])?;
    }
    kubectl(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/servicemonitors.monitoring.coreos.com",
        "crd/prometheusrules.monitoring.coreos.com",
    ])?;
    install_operator()?;

    let p = Pipeline::new("monitoring", 4).await?;
    let ns = namespace_with_database("mon", &p).await?;
    apply(&pipeline_yaml(&ns, &p))?;
    wait_rollout(&ns, "deployment/payments-worker")?;
    ensure!(worker_pods(&ns)?.len() == 2, "expected 2 worker pods");
    wait_condition(&ns, "payments", "Ready", Duration::from_secs(120))?;

    // A pipeline whose brokers refuse connections: the operator's topic step fails, so its
    // reconcile error counter (read by SluiceOperatorReconcileErrors) has a series.
    apply(&broken_pipeline_yaml(&ns))?;

    // What the operator rendered for the pipeline.
    let sm = wait_object(&ns, "servicemonitor", "payments")?;
    let rule = wait_object(&ns, "prometheusrule", "payments")?;

    // Scrape jobs: the pipeline's ServiceMonitor, and the operator's as the chart renders it,
    // their targets kept current from the API server.
    let operator_sm = operator_service_monitor()?;
    let sd = std::env::temp_dir().join(format!("sluice-sd-{}", std::process::id()));
    let (pipeline_sd, operator_sd) = (sd.join("pipeline.json"), sd.join("operator.json"));
    let mut jobs = service_monitor_jobs(&sm, &pipeline_sd)?;
    jobs.extend(service_monitor_jobs(&operator_sm, &operator_sd)?);
    let discovery = Discovery::start(vec![(sm, pipeline_sd), (operator_sm, operator_sd)])?;
    let config = json!({
        "global": {"scrape_interval": INTERVAL, "evaluation_interval": INTERVAL},
        "scrape_configs": jobs,
    });
    let mut rule_files = vec![
        ("pipeline.yaml".to_owned(), rule_file(&rule)?),
        (
            "pipeline-cloudnativepg.yaml".to_owned(),
            cloudnativepg_only_rules(&ns, &rule)?,
        ),
    ];
    let rules_dir = repo_root().join("charts/sluice/files/rules");
    if let Ok(entries) = std::fs::read_dir(&rules_dir) {
        let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                let doc: Value = serde_yaml::from_str(&std::fs::read_to_string(&path)?)
                    .with_context(|| path.display().to_string())?;
                // promtool unit-test files beside the rule files have no groups.
                if doc["groups"].is_null() {
                    continue;
                }
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                rule_files.push((format!("chart-{name}"), rule_file(&doc)?));
            }
        }
    }
    let rules = rules_of(&rule_files)?;
    ensure!(
        rules.iter().any(|r| r.3),
        "no alert rules found in {rule_files:?}"
    );
    let prom = Prometheus::start(config, &rule_files)?;
    println!(
        "prometheus on 127.0.0.1:{} with {} rules in {} files",
        prom.port,
        rules.len(),
        rule_files.len()
    );

    // Load: a steady stream for the whole check (1% invalid and 1% repeated records, so
    // rejections, duplicates and the DLQ have data too).
    let producer = {
        let (p2, spec) = (p.clone(), p.load(120_000, 1_000, 7));
        tokio::spawn(async move { p2.produce(spec).await })
    };

    // The targets are scraped: the worker pods (two at least) and the operator pods.
    let deadline = Instant::now() + DATA_TIMEOUT;
    loop {
        let up = prom.query(&format!(
            r#"up{{namespace="{ns}", job="payments-metrics"}} == 1"#
        ))?;
        let op = prom.query(r#"up{namespace="sluice-system"} == 1"#)?;
        if up.as_array().map_or(0, Vec::len) >= 2 && op.as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "targets not all up: {}",
                prom.api("/api/v1/targets")?["activeTargets"]
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    // The operator's per-pipeline gauges reach Prometheus with the pipeline's namespace label:
    // the operator's ServiceMonitor must honour the labels it exports, or Prometheus renames
    // `namespace` to `exported_namespace` (the target's namespace is sluice-system).
    let deadline = Instant::now() + DATA_TIMEOUT;
    let gauge = loop {
        let r = prom.query(r#"sluice_operator_pipeline_workers_desired{pipeline="payments"}"#)?;
        if let Some(s) = r.as_array().and_then(|a| a.first()) {
            break s["metric"].clone();
        }
        if Instant::now() > deadline {
            bail!("no sluice_operator_pipeline_workers_desired series scraped from the operator");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    ensure!(
        gauge["namespace"] == ns.as_str(),
        "the operator's gauges arrive as {gauge}: the operator's ServiceMonitor \
         (charts/sluice/templates/servicemonitor.yaml) needs honorLabels: true"
    );

    // A database outage while records flow: the application role may not log in and its
    // sessions are ended, so batch writes fail and are retried (sluice_db_errors_total), and
    // the DB error panel and alert have data. Then it logs in again.
    let role = format!("app_{}", &p.name[p.name.len() - 8..]);
    sql(&p, &format!("ALTER ROLE {role} NOLOGIN")).await?;
    let outage = async {
        let deadline = Instant::now() + DATA_TIMEOUT;
        loop {
            sql(
                &p,
                &format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'"),
            )
            .await?;
            if prom.samples(&format!(r#"sluice_db_errors_total{{namespace="{ns}"}}"#))? > 0 {
                return Ok::<_, anyhow::Error>(());
            }
            if Instant::now() > deadline {
                bail!("no failed batch write seen by Prometheus during the database outage");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    .await;
    sql(&p, &format!("ALTER ROLE {role} LOGIN")).await?;
    outage?;
    println!("database outage: failed batch writes counted and scraped");
    let deadline = Instant::now() + DATA_TIMEOUT;
    while prom.samples(r#"sluice_operator_reconcile_errors_total{error="topic"}"#)? == 0 {
        if Instant::now() > deadline {
            bail!("no reconcile error of the unreachable pipeline's topic step scraped");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    kubectl(&[
        "-n",
        &ns,
        "delete",
        "pipelinedeployment",
        "unreachable",
        "--wait=false",
    ])?;

    // Every rule group loads and evaluates with health ok.
    let want_groups: BTreeSet<String> = rules.iter().map(|r| r.0.clone()).collect();
    let deadline = Instant::now() + DATA_TIMEOUT;
    loop {
        let groups = prom.api("/api/v1/rules")?["groups"].clone();
        let loaded: BTreeSet<String> = groups
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|g| g["name"].as_str().map(str::to_owned))
            .collect();
        let unhealthy: Vec<String> = groups
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .filter(|r| r["health"] != "ok")
            .map(|r| format!("{} ({}: {})", r["name"], r["health"], r["lastError"]))
            .collect();
        let rule_count = groups
            .as_array()
            .into_iter()
            .flatten()
            .map(|g| g["rules"].as_array().map_or(0, Vec::len))
            .sum::<usize>();
        if loaded == want_groups && unhealthy.is_empty() && rule_count == rules.len() {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "rule groups loaded {loaded:?} (want {want_groups:?}), {rule_count} of {} rules, not ok: {unhealthy:?}",
                rules.len()
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    println!(
        "{} rule groups, {} rules: health ok",
        want_groups.len(),
        rules.len()
    );

    // Every recording rule's expression and recorded series, every dashboard query, and every
    // variable query of the dashboard return data.
    let dashboard = overview_dashboard()?;
    let mut queries: Vec<(String, String)> = Vec::new();
    for (_, name, expr, alert) in &rules {
        if !alert {
            queries.push((format!("recording rule {name}"), expr.clone()));
            queries.push((format!("recorded series {name}"), name.clone()));
        }
    }
    for (title, expr) in dashboard_queries(&dashboard, "prometheus") {
        queries.push((
            format!("panel '{title}'"),
            grafana_promql(&expr, &ns, "payments"),
        ));
    }
    for v in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if v["type"] == "query" {
            let def = grafana_promql(
                v["definition"].as_str().unwrap_or_default(),
                &ns,
                "payments",
            );
            // label_values(SELECTOR, LABEL) is Grafana's call of the series API.
            let inner = def
                .strip_prefix("label_values(")
                .and_then(|d| d.strip_suffix(')'))
                .with_context(|| format!("variable query {def}"))?;
            let (selector, label) = inner
                .rsplit_once(',')
                .context("label_values(selector, label)")?;
            queries.push((
                format!("variable '{}'", v["name"].as_str().unwrap_or_default()),
                format!("count by ({}) ({})", label.trim(), selector.trim()),
            ));
        }
    }
    let deadline = Instant::now() + DATA_TIMEOUT;
    let mut pending: Vec<(String, String)> = queries.clone();
    while !pending.is_empty() {
        let mut still = Vec::new();
        for (what, expr) in pending {
            // A parse or evaluation error fails at once; no data yet is retried.
            let n = prom
                .samples(&expr)
                .with_context(|| format!("{what}: {expr}"))?;
            if n == 0 {
                still.push((what, expr));
            }
        }
        pending = still;
        if !pending.is_empty() && Instant::now() > deadline {
            bail!("no data within {DATA_TIMEOUT:?} for: {pending:#?}");
        }
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
    println!("{} rule and dashboard queries returned data", queries.len());
    // The variables offer this pipeline.
    let pipelines = prom.query(&format!(
        r#"count by (pipeline) (sluice_transactions_total{{namespace="{ns}"}})"#
    ))?;
    ensure!(
        pipelines
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["metric"]["pipeline"] == "payments"),
        "pipeline variable does not offer payments: {pipelines}"
    );

    // Every metric an alert reads has series here, but for the exporters this node lacks.
    let present = prom.metric_names()?;
    let mut missing = BTreeSet::new();
    let mut read = BTreeSet::new();
    for (_, name, expr, alert) in &rules {
        if *alert {
            for m in promql_metric_names(expr) {
                read.insert(m.clone());
                if !present.contains(&m) {
                    missing.insert((m, name.clone()));
                }
            }
        }
    }
    let missing_names: BTreeSet<&str> = missing.iter().map(|(m, _)| m.as_str()).collect();
    let expected: BTreeSet<&str> = ABSENT_HERE.iter().copied().collect();
    ensure!(
        missing_names == expected,
        "alert metrics without series (metric, alert): {missing:?}; expected exactly {expected:?} to be absent"
    );
    println!(
        "alerts read {} metrics, {} with series here, absent as expected: {expected:?}",
        read.len(),
        read.len() - missing_names.len()
    );

    // The SQL panels on the pipeline's database, read-only as on a replica, over the last hour.
    let now = chrono::Utc::now();
    let (from, to) = (
        (now - chrono::Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        (now + chrono::Duration::minutes(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    );
    let panels = dashboard_queries(&dashboard, "grafana-postgresql-datasource");
    ensure!(!panels.is_empty(), "no SQL panels");
    for (title, raw) in &panels {
        let q = grafana_sql(raw, "sluice", &from, &to);
        ensure!(!q.contains('$'), "panel '{title}': macro left in {q}");
        let mut tx = p.pool.begin().await?;
        sqlx::raw_sql("SET TRANSACTION READ ONLY")
            .execute(&mut *tx)
            .await?;
        let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(q.clone()))
            .fetch_all(&mut *tx)
            .await
            .with_context(|| format!("panel '{title}': {q}"))?;
        tx.rollback().await?;
        ensure!(!rows.is_empty(), "panel '{title}' returned no rows: {q}");
        println!("panel '{title}': {} rows", rows.len());
    }

    // And the records landed exactly once through the outage.
    let mut landed = Landed::default();
    landed.add(&producer.await??);
    landed.assert(&p).await?;

    drop(prom);
    drop(discovery);
    let _ = std::fs::remove_dir_all(&sd);
    kubectl(&["delete", "namespace", &ns, "--wait=false"])?;
    Ok(())
}

async fn sql(p: &Pipeline, q: &str) -> Result<()> {
    sqlx::raw_sql(sqlx::AssertSqlSafe(q.to_owned()))
        .execute(&p.pool)
        .await?;
    Ok(())
}

/// Wait for an object the operator renders and return it.
fn wait_object(ns: &str, kind: &str, name: &str) -> Result<Value> {
    wait_for_blocking(
        &format!("the operator to render {kind} {ns}/{name}"),
        Duration::from_secs(120),
        || get_json(ns, &[kind, name]).map(Some),
    )
}

/// The operator's ServiceMonitor as the chart renders it for the release `manifests/install.yaml`
/// comes from (release `sluice` in `sluice-system`, `metrics.serviceMonitor.enabled=true`).
fn operator_service_monitor() -> Result<Value> {
    let out = run(Command::new(helm_binary()?)
        .args(["template", "sluice"])
        .arg(repo_root().join("charts/sluice"))
        .args([
            "--namespace",
            "sluice-system",
            // What hack/helm.sh renders manifests/install.yaml for.
            "--kube-version",
            "1.37.0",
            "--set",
            "metrics.serviceMonitor.enabled=true",
            "--show-only",
            "templates/servicemonitor.yaml",
        ]))?;
    let sm: Value = serde_yaml::from_str(&out)?;
    ensure!(
        sm["kind"] == "ServiceMonitor",
        "helm template rendered {sm}"
    );
    Ok(sm)
}

/// The alerts only a CloudNativePG pipeline gets (replica lag), rendered by the operator's code
/// for this pipeline as if it used CloudNativePG, as a rule file beside the rendered rule.
fn cloudnativepg_only_rules(ns: &str, rendered: &Value) -> Result<String> {
    let mut pd: PipelineDeployment =
        serde_json::from_value(get_json(ns, &["pipelinedeployment", "payments"])?)?;
    pd.spec.postgres.external = None;
    pd.spec.postgres.cloudnativepg = Some(serde_json::from_value(json!({}))?);
    let cnpg = serde_json::to_value(build_prometheus_rule(&pd))?;
    let have: BTreeSet<String> = rules_of(&[("rendered".into(), rule_file(rendered)?)])?
        .into_iter()
        .map(|r| r.1)
        .collect();
    let mut groups = Vec::new();
    for g in cnpg["spec"]["groups"].as_array().into_iter().flatten() {
        let rules: Vec<Value> = g["rules"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| {
                r["alert"]
                    .as_str()
                    .or(r["record"].as_str())
                    .is_some_and(|n| !have.contains(n))
            })
            .cloned()
            .collect();
        if !rules.is_empty() {
            let name = format!("{}.cloudnativepg", g["name"].as_str().unwrap_or_default());
            groups.push(json!({"name": name, "rules": rules}));
        }
    }
    ensure!(!groups.is_empty(), "no CloudNativePG-only rules rendered");
    rule_file(&json!({ "groups": groups }))
}

/// A pipeline whose brokers refuse connections (a closed port on the node).
fn broken_pipeline_yaml(ns: &str) -> String {
    let node_ip = std::env::var("NODE_IP").unwrap_or_else(|_| "127.0.0.1".into());
    pipeline_manifest(
        ns,
        "unreachable",
        json!({
            "kafka": {"bootstrapServers": format!("{node_ip}:1"), "topic": "unreachable"},
            "workers": {
                "minReplicas": 1,
                "maxReplicas": 1,
                "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
            },
        }),
    )
}

fn pipeline_yaml(ns: &str, p: &Pipeline) -> String {
    pipeline_manifest(
        ns,
        "payments",
        json!({
            "kafka": kafka_spec(p, 4),
            "workers": {
                "minReplicas": 2,
                "maxReplicas": 3,
                "batch": {"maxRecords": 500, "maxWaitMs": 20},
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
            },
            // Autoscaled (2..3), so the operator reads the lag and exports its per-pipeline gauges.
            "autoscaling": {"enabled": true},
            "monitoring": {"scrapeInterval": INTERVAL},
        }),
    )
}
