//! The Grafana dashboard ConfigMap. Grafana's sidecar loads every ConfigMap labelled
//! `grafana_dashboard: "1"`, so the pipeline's dashboard appears without touching Grafana.
//!
//! The dashboard is the chart's overview (`charts/sluice/files/dashboards/sluice-overview.json`,
//! the one source of truth, checked against Grafana's schema by `hack/dashcheck`), pinned to
//! this pipeline: its own uid and title, and the `namespace`, `pipeline` and `schema` variables
//! defaulting to the pipeline's namespace, name and Postgres schema.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use serde_json::{Value, json};

use super::{Names, meta};
use crate::crd::PipelineDeployment;

/// The overview dashboard the chart ships for the Grafana sidecar.
pub const OVERVIEW_JSON: &str =
    include_str!("../../../charts/sluice/files/dashboards/sluice-overview.json");

/// Grafana's limit on a dashboard uid.
const MAX_UID_LEN: usize = 40;

pub fn build_dashboard(pd: &PipelineDeployment) -> ConfigMap {
    let name = pd.name_any();
    let ns = pd.namespace().unwrap_or_default();
    let dashboard = pipeline_dashboard(pd);
    let mut metadata = meta(pd, &Names::of(pd).dashboard, "dashboard");
    metadata
        .labels
        .get_or_insert_default()
        .insert("grafana_dashboard".into(), "1".into());
    ConfigMap {
        metadata,
        data: Some(BTreeMap::from([(
            format!("sluice-{ns}-{name}.json"),
            serde_json::to_string_pretty(&dashboard).expect("json"),
        )])),
        ..ConfigMap::default()
    }
}

/// The overview dashboard pinned to one pipeline.
pub fn pipeline_dashboard(pd: &PipelineDeployment) -> Value {
    let name = pd.name_any();
    let ns = pd.namespace().unwrap_or_default();
    let mut d: Value = serde_json::from_str(OVERVIEW_JSON).expect("the shipped dashboard is JSON");
    // Stable for the pipeline's lifetime and unique across pipelines: its uid without dashes.
    let uid: String = pd.uid().unwrap_or_default().replace('-', "");
    let uid = format!("sluice-{uid}");
    d["uid"] = json!(&uid[..uid.len().min(MAX_UID_LEN)]);
    d["title"] = json!(format!("sluice {ns}/{name}"));
    let schema = pd.schema();
    let defaults = [
        ("namespace", ns.as_str()),
        ("pipeline", name.as_str()),
        ("schema", schema.as_str()),
    ];
    for var in d["templating"]["list"]
        .as_array_mut()
        .expect("the shipped dashboard has templating.list")
    {
        let Some(value) = defaults
            .iter()
            .find(|(n, _)| var["name"] == *n)
            .map(|(_, v)| *v)
        else {
            continue;
        };
        var["current"] = json!({ "selected": true, "text": value, "value": value });
        var["options"] = json!([{ "selected": true, "text": value, "value": value }]);
        if var["type"] == "textbox" {
            var["query"] = json!(value);
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::children::testing::{BASIC, pipeline};

    fn overview() -> Value {
        serde_json::from_str(OVERVIEW_JSON).unwrap()
    }

    fn variables(d: &Value) -> Vec<&Value> {
        d["templating"]["list"].as_array().unwrap().iter().collect()
    }

    fn panels(d: &Value) -> Vec<&Value> {
        d["panels"].as_array().unwrap().iter().collect()
    }

    fn variable<'a>(d: &'a Value, name: &str) -> &'a Value {
        variables(d)
            .into_iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("variable {name}"))
    }

    #[test]
    fn the_configmap_holds_the_shipped_dashboard_pinned_to_the_pipeline() {
        let pd = pipeline(BASIC);
        let cm = build_dashboard(&pd);
        assert_eq!(cm.metadata.name.as_deref(), Some("payments-dashboard"));
        assert_eq!(
            cm.metadata.labels.as_ref().unwrap()["grafana_dashboard"],
            "1"
        );
        let data = cm.data.unwrap();
        let d: Value = serde_json::from_str(&data["sluice-ns-payments.json"]).unwrap();
        assert_eq!(d["title"], "sluice ns/payments");
        assert_eq!(d["uid"], "sluice-00000000000000000000000000000001");
        assert!(d["uid"].as_str().unwrap().len() <= MAX_UID_LEN);
        for (var, value) in [
            ("namespace", "ns"),
            ("pipeline", "payments"),
            // A pipeline without spec.postgres.schema has its own.
            ("schema", "sluice_ns_payments"),
        ] {
            assert_eq!(variable(&d, var)["current"]["value"], value, "{var}");
        }
        // The variables stay queries, so the dashboard can still switch pipeline.
        assert_eq!(variable(&d, "pipeline")["type"], "query");
        // Panels are the shipped ones, unchanged.
        assert_eq!(d["panels"], overview()["panels"]);
    }

    #[test]
    fn uid_differs_per_pipeline_and_schema_follows_the_spec() {
        let mut a = pipeline(BASIC);
        a.metadata.uid = Some("11111111-2222-3333-4444-555555555555".into());
        a.spec.postgres.schema = Some("eu_payments".into());
        let mut b = pipeline(BASIC);
        b.metadata.uid = Some("66666666-2222-3333-4444-555555555555".into());
        let (da, db) = (pipeline_dashboard(&a), pipeline_dashboard(&b));
        assert_ne!(da["uid"], db["uid"]);
        assert_eq!(da["uid"], pipeline_dashboard(&a)["uid"], "stable");
        assert_eq!(variable(&da, "schema")["query"], "eu_payments");
        assert_eq!(variable(&db, "schema")["query"], "sluice_ns_payments");
    }

    /// What Grafana needs of the file beyond its schema (`hack/dashcheck` checks that): unique
    /// panel ids, a grid position for every panel, and every data source a declared variable
    /// of the right type.
    #[test]
    fn shipped_dashboard_structure() {
        let d = overview();
        let vars: BTreeSet<&str> = variables(&d)
            .iter()
            .map(|v| v["name"].as_str().unwrap())
            .collect();
        for name in ["datasource", "namespace", "pipeline", "postgres", "schema"] {
            assert!(vars.contains(name), "variable {name}");
        }
        assert_eq!(variable(&d, "datasource")["type"], "datasource");
        assert_eq!(variable(&d, "datasource")["query"], "prometheus");
        assert_eq!(variable(&d, "postgres")["type"], "datasource");
        assert_eq!(
            variable(&d, "postgres")["query"],
            "grafana-postgresql-datasource"
        );
        for q in ["namespace", "pipeline"] {
            let v = variable(&d, q);
            assert_eq!(v["type"], "query");
            assert_eq!(v["datasource"]["uid"], "${datasource}");
            assert!(
                v["definition"]
                    .as_str()
                    .unwrap()
                    .starts_with("label_values(")
            );
        }
        let datasource_var = |ds: &Value| -> (String, String) {
            let uid = ds["uid"].as_str().expect("datasource uid");
            let var = uid
                .strip_prefix("${")
                .and_then(|u| u.strip_suffix('}'))
                .unwrap_or_else(|| panic!("datasource {uid} is not a variable"));
            assert!(
                vars.contains(var),
                "datasource variable {var} is not declared"
            );
            (var.to_owned(), ds["type"].as_str().unwrap().to_owned())
        };

        let mut ids = BTreeSet::new();
        let (mut prom, mut sql) = (0, 0);
        for p in panels(&d) {
            let id = p["id"].as_u64().expect("panel id");
            assert!(ids.insert(id), "panel id {id} twice");
            let g = &p["gridPos"];
            for k in ["h", "w", "x", "y"] {
                assert!(g[k].is_u64(), "panel {id} gridPos.{k}");
            }
            assert!(g["x"].as_u64().unwrap() + g["w"].as_u64().unwrap() <= 24);
            if p["type"] == "row" {
                continue;
            }
            let panel_ds = datasource_var(&p["datasource"]);
            let targets = p["targets"].as_array().expect("targets");
            assert!(!targets.is_empty(), "panel {id} has no query");
            for t in targets {
                let ds = datasource_var(&t["datasource"]);
                assert_eq!(ds, panel_ds, "panel {id}: target and panel data sources");
                match (ds.0.as_str(), ds.1.as_str()) {
                    ("datasource", "prometheus") => {
                        prom += 1;
                        let expr = t["expr"].as_str().unwrap();
                        // Every sluice series is narrowed to the selected pipeline.
                        for (i, _) in expr.match_indices("sluice_") {
                            let sel = &expr[i..];
                            let sel = &sel[..sel.find('}').unwrap_or(sel.len())];
                            assert!(
                                sel.contains(r#"namespace="$namespace""#)
                                    && sel.contains(r#"pipeline="$pipeline""#),
                                "panel {id}: {expr}"
                            );
                        }
                        if expr.contains("rate(") {
                            assert!(expr.contains("[$__rate_interval]"), "panel {id}: {expr}");
                        }
                    }
                    ("postgres", "grafana-postgresql-datasource") => {
                        sql += 1;
                        let q = t["rawSql"].as_str().unwrap();
                        assert!(q.contains("$__timeFilter(period_start)"), "panel {id}: {q}");
                        assert!(q.contains("${schema:raw}."), "panel {id}: {q}");
                    }
                    other => panic!("panel {id}: data source {other:?}"),
                }
            }
        }
        assert!(prom >= 12, "{prom} Prometheus queries");
        assert!(sql >= 5, "{sql} SQL queries");
        // Everything the issue asks the overview to show.
        let exprs = panels(&d)
            .iter()
            .flat_map(|p| p["targets"].as_array().into_iter().flatten())
            .filter_map(|t| t["expr"].as_str().or(t["rawSql"].as_str()))
            .collect::<Vec<_>>()
            .join("\n");
        for needle in [
            "sluice_transactions_total",
            "histogram_quantile(0.5,",
            "histogram_quantile(0.95,",
            "histogram_quantile(0.99,",
            "sluice_end_to_end_latency_seconds_bucket",
            "sluice_consumer_lag{",
            "sluice_consumer_lag_seconds{",
            "sluice_operator_pipeline_workers_desired",
            "sluice_operator_pipeline_workers_ready",
            "sluice_fraud_detected_total",
            "sluice_quality_score",
            "sluice_db_connections_active",
            "sluice_db_errors_total",
            "sluice_dlq_records_total",
            "sluice_rejections_total",
            ".analytics_summaries",
            ".quality_rates",
            ".quality_summaries",
        ] {
            assert!(exprs.contains(needle), "no panel shows {needle}");
        }
    }
}
