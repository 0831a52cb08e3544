//! A pipeline on an external Postgres with real rows in it: the test's Postgres from
//! `hack/postgres.sh` (or `$DATABASE_URL`), one fresh database per pipeline whose URL the
//! pipeline reads from a Secret, and a real `sluice-worker` on the host run with the config
//! the operator rendered into the ConfigMap (the kwok pods do not run), landing transactions
//! produced to the pipeline's topic.

use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Secret};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;
use sluice_api::WorkerConfig;
use sluice_harness::Process;
use sluice_operator::controller::{CREATED_TOPICS, FINALIZER};
use sluice_operator::crd::{DeletionPolicy, PipelineDeployment};
use sqlx::{Connection, PgConnection};

use crate::common::*;

pub mod kafka;
use kafka::{blocking, produce_transactions, records};

/// Creates the pipeline and waits until the operator has made its topic and, for a `Delete`
/// pipeline, put its finalizer on (and recorded the topic as its own).
pub async fn create(ns: &TestNs, pd: &PipelineDeployment) {
    let pds: Api<PipelineDeployment> = ns.api();
    pds.create(&PostParams::default(), pd).await.unwrap();
    let t = pd.spec.kafka.topic.clone();
    wait_for("the input topic", TIMEOUT, || {
        let t = t.clone();
        async move { blocking(move || records(&t)).await }
    })
    .await;
    if pd.deletion_policy() == DeletionPolicy::Delete {
        let (name, topic) = (pd.name_any(), pd.spec.kafka.topic.clone());
        let stored = wait_for(
            "the finalizer and the created-topic record",
            TIMEOUT,
            || async {
                let pd = pds.get(&name).await.ok()?;
                (pd.finalizers().iter().any(|f| f == FINALIZER)
                    && pd.annotations().get(CREATED_TOPICS) == Some(&topic))
                .then_some(pd)
            },
        )
        .await;
        assert_eq!(stored.finalizers(), [FINALIZER]);
    }
}

/// Deletes the pipeline and waits until it is gone, and its worker Deployment with it.
pub async fn delete_and_wait(ns: &TestNs, name: &str) {
    let pds: Api<PipelineDeployment> = ns.api();
    pds.delete(name, &DeleteParams::default()).await.unwrap();
    wait_for(&format!("pipeline {name} gone"), TIMEOUT, || async {
        pds.get_opt(name).await.ok()?.is_none().then_some(())
    })
    .await;
    let deployments: Api<Deployment> = ns.api();
    let worker = format!("{name}-worker");
    wait_for(
        &format!("Deployment {worker} collected"),
        TIMEOUT,
        || async {
            deployments
                .get_opt(&worker)
                .await
                .ok()?
                .is_none()
                .then_some(())
        },
    )
    .await;
}

/// Waits until none of `topics` exists any more.
pub async fn wait_topics_deleted(topics: &[String]) {
    for t in topics {
        wait_for(&format!("topic {t} deleted"), TIMEOUT, || {
            let t = t.clone();
            async move { blocking(move || records(&t).is_none().then_some(())).await }
        })
        .await;
    }
}

/// Whether the namespace has an Event with `reason`.
pub async fn has_event(ns: &TestNs, reason: &str) -> bool {
    let events: Api<Event> = ns.api();
    let list = events.list(&ListParams::default()).await.unwrap();
    list.items
        .iter()
        .any(|e| e.reason.as_deref() == Some(reason))
}

/// Transactions each landed pipeline gets.
pub const TRANSACTIONS: i64 = 200;

/// A pipeline whose worker has landed [`TRANSACTIONS`] rows and stopped.
pub struct Landed {
    pub pd: PipelineDeployment,
    /// URL of the pipeline's database (the value of its Secret).
    pub url: String,
    pub schema: String,
}

impl Landed {
    pub async fn connect(&self) -> PgConnection {
        PgConnection::connect(&self.url).await.unwrap()
    }

    /// Rows of `table` in the pipeline's schema.
    pub async fn count(&self, table: &str) -> i64 {
        let sql = format!("SELECT count(*) FROM \"{}\".{table}", self.schema);
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(&mut self.connect().await)
            .await
            .unwrap()
    }

    /// Whether the schema exists.
    pub async fn schema_exists(&self) -> bool {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
            .bind(&self.schema)
            .fetch_one(&mut self.connect().await)
            .await
            .unwrap()
    }

    /// Tables and views in the schema, partitions included, sorted.
    pub async fn relations(&self) -> Vec<String> {
        sqlx::query_scalar(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm') ORDER BY 1",
        )
        .bind(&self.schema)
        .fetch_all(&mut self.connect().await)
        .await
        .unwrap()
    }
}

/// The sluice tables and views among `relations`: what the worker's migrations and its
/// partition upkeep make.
pub fn sluice_tables(relations: &[String]) -> Vec<&String> {
    relations
        .iter()
        .filter(|r| {
            r.starts_with("transactions")
                || [
                    "transaction_ids",
                    "consumer_offsets",
                    "rejected_transactions",
                    "fraud_alerts",
                    "analytics_summaries",
                    "customer_profiles",
                    "quality_summaries",
                    "quality_rates",
                    "_sqlx_migrations",
                ]
                .contains(&r.as_str())
        })
        .collect()
}

/// URL of the test server's `postgres` database (superuser `sluice`).
fn admin_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        sluice_harness::service_address("DATABASE_URL", "postgres.sh", &["start", "operator-e2e"])
            .unwrap_or_else(|e| panic!("{e:#}"))
    })
}

/// A new, empty database; its URL.
async fn fresh_database(name: &str) -> String {
    let admin = admin_url().to_string();
    let mut conn = PgConnection::connect(&admin).await.unwrap();
    for sql in [
        format!("DROP DATABASE IF EXISTS {name}"),
        format!("CREATE DATABASE {name}"),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let base = admin.rsplit_once('/').expect("a URL with a database").0;
    format!("{base}/{name}")
}

/// The external-Postgres example as pipeline `name` of `ns`: its own topic (managed by the
/// operator), its primary URL in Secret `<name>-db`, its schema the per-pipeline default.
fn external_pipeline(ns: &str, name: &str, policy: Option<&str>) -> PipelineDeployment {
    let mut pd = example("external-postgres.yaml");
    pd.metadata.name = Some(name.into());
    pd.metadata.namespace = Some(ns.into());
    pd.spec.kafka.topic = format!("{name}.{ns}");
    pd.spec.kafka.manage_topic = true;
    pd.spec.kafka.bootstrap_servers = setup().kafka.clone();
    pd.spec.kafka.partitions = 2;
    pd.spec.workers.min_replicas = 1;
    pd.spec.workers.max_replicas = 1;
    pd.spec.autoscaling = None;
    pd.spec.monitoring = Default::default();
    pd.spec.deletion_policy = policy.map(|p| serde_json::from_value(json!(p)).unwrap());
    pd.spec.postgres.schema = None;
    pd.spec.postgres.external = Some(
        serde_json::from_value(
            json!({"primaryUrl": {"name": format!("{name}-db"), "key": "primary"}}),
        )
        .unwrap(),
    );
    pd
}

/// Creates pipeline `name` on a fresh database and lands [`TRANSACTIONS`] rows through a real
/// worker, stopped afterwards (as the operator stops the pods before dropping anything).
pub async fn land(ns: &TestNs, name: &str, policy: Option<&str>) -> Landed {
    let url = fresh_database(&format!("{}_{name}", ns.name.replace('-', "_"))).await;
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": format!("{name}-db")},
        "stringData": {"primary": url},
    }))
    .unwrap();
    ns.api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let pd = external_pipeline(&ns.name, name, policy);
    create(ns, &pd).await;

    let maps: Api<ConfigMap> = ns.api();
    let yaml = wait_for("the rendered worker config", TIMEOUT, || async {
        maps.get_opt(&format!("{name}-config"))
            .await
            .ok()??
            .data?
            .remove("config.yaml")
    })
    .await;
    let mut config: WorkerConfig = serde_yaml::from_str(&yaml).unwrap();
    let schema = config.postgres.schema.clone();
    assert_eq!(schema, pd.schema());
    // Pods each have their own address; workers on one host need their own port.
    config.http.listen = format!("127.0.0.1:{}", sluice_harness::free_port().unwrap());
    let file = std::env::temp_dir().join(format!("sluice-{}-{name}.yaml", ns.name));
    std::fs::write(&file, serde_yaml::to_string(&config).unwrap()).unwrap();
    let mut worker = Process::spawn(
        Command::new(sluice_harness::bin_dir().join("sluice-worker"))
            .arg("--config")
            .arg(&file)
            .env("DATABASE_URL", &url)
            .env("POD_NAME", format!("{name}-worker-0"))
            .env("RUST_LOG", "info"),
        std::env::temp_dir().join(format!("sluice-worker-{}-{name}.log", ns.name)),
    )
    .expect("start sluice-worker (cargo build --release -p sluice-worker)");

    let topic = pd.spec.kafka.topic.clone();
    blocking(move || produce_transactions(&topic)).await;
    let landed = Landed { pd, url, schema };
    wait_for(
        &format!("{TRANSACTIONS} rows landed by {name}'s worker"),
        Duration::from_secs(120),
        || {
            if let Ok(Some(status)) = worker.exited() {
                panic!("the worker exited ({status}): {}", worker.log_tail(30));
            }
            let landed = &landed;
            async move {
                let n: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT count(*) FROM \"{}\".transactions",
                    landed.schema
                )))
                .fetch_one(&mut landed.connect().await)
                .await
                .ok();
                (n == Some(TRANSACTIONS)).then_some(())
            }
        },
    )
    .await;
    worker.terminate(Duration::from_secs(30)).unwrap();
    landed
}
