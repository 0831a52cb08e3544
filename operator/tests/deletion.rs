//! What deleting a pipeline does to its data, on a real API server, a real broker and a real
//! Postgres: `Retain` (the default) keeps the CloudNativePG Cluster, the topics with every
//! record, the consumer group and, on an external database, every row a real `sluice-worker`
//! landed; `Delete` removes them through a finalizer, on an external database the sluice
//! tables and the schema, never a table of the user's. Also: the rendered Cluster (backup,
//! parameters, PodMonitor, reads from the primary without replicas), the connection budget,
//! and two pipelines refused one schema.

mod common;
mod landing;

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::json;
use sluice_operator::children::cnpg;
use sluice_operator::controller::FINALIZER;
use sluice_operator::crd::PipelineDeployment;

use landing::kafka::*;
use landing::{
    TRANSACTIONS, create, delete_and_wait, has_event, land, sluice_tables, wait_topics_deleted,
};

/// A CloudNativePG pipeline managing its topic on the test broker, with the Postgres
/// settings passed through.
fn cnpg_pipeline(ns: &str, policy: Option<&str>) -> PipelineDeployment {
    let mut pd = example("cloudnativepg.yaml");
    unique_topic(&mut pd, ns);
    // So that its consumer group is the one the operator names.
    pd.metadata.namespace = Some(ns.into());
    pd.spec.autoscaling = None;
    pd.spec.monitoring = Default::default();
    pd.spec.kafka.partitions = 2;
    pd.spec.workers.min_replicas = 2;
    pd.spec.workers.max_replicas = 2;
    pd.spec.deletion_policy = policy.map(|p| serde_json::from_value(json!(p)).unwrap());
    pd.spec.postgres.cloudnativepg = Some(
        serde_json::from_value(json!({
            "readReplicas": 0,
            "storageSize": "1Gi",
            "enablePodMonitor": true,
            "parameters": {"max_connections": "200", "shared_buffers": "128MB"},
            "backup": {
                "barmanObjectStore": {
                    "destinationPath": "s3://backups/card-payments",
                    "s3Credentials": {
                        "accessKeyId": {"name": "s3", "key": "id"},
                        "secretAccessKey": {"name": "s3", "key": "secret"}
                    }
                },
                "retentionPolicy": "30d"
            }
        }))
        .unwrap(),
    );
    pd
}

/// Creates the CloudNativePG pipeline and waits until its Cluster and topic exist; then gives
/// the topic records and the group a committed offset.
async fn start(ns: &TestNs, pd: &PipelineDeployment) -> (Api<DynamicObject>, String, String) {
    create(ns, pd).await;
    let clusters =
        Api::<DynamicObject>::namespaced_with(ns.client.clone(), &ns.name, &cnpg::api_resource());
    let db = format!("{}-db", pd.name_any());
    wait_for("the CloudNativePG Cluster", TIMEOUT, || async {
        clusters.get_opt(&db).await.ok().flatten()
    })
    .await;
    let topic = pd.spec.kafka.topic.clone();
    let group = pd.consumer_group();
    let (t, g) = (topic.clone(), group.clone());
    blocking(move || {
        produce(&t);
        commit(&g, &t);
    })
    .await;
    (clusters, topic, group)
}

#[tokio::test]
async fn retain_keeps_the_database_the_records_and_the_group() {
    let ns = TestNs::new("op-retain").await;
    let _op = Operator::start(&ns.name, "retain");
    let pds: Api<PipelineDeployment> = ns.api();
    let pd = cnpg_pipeline(&ns.name, None);
    let name = pd.name_any();
    let (clusters, topic, group) = start(&ns, &pd).await;

    // The Cluster as rendered, accepted by CloudNativePG's own CRD.
    let cluster = clusters.get(&format!("{name}-db")).await.unwrap();
    let uid = cluster.uid();
    let spec = &cluster.data["spec"];
    assert_eq!(spec["instances"], 1);
    assert_eq!(spec["postgresql"]["parameters"]["max_connections"], "200");
    assert_eq!(spec["postgresql"]["parameters"]["shared_buffers"], "128MB");
    assert_eq!(spec["monitoring"]["enablePodMonitor"], true);
    assert_eq!(
        spec["backup"]["barmanObjectStore"]["destinationPath"],
        "s3://backups/card-payments"
    );
    assert_eq!(spec["backup"]["retentionPolicy"], "30d");
    assert!(
        cluster.owner_references().is_empty(),
        "the database has no owner the garbage collector could follow"
    );
    // Without replicas, analytics reads go to the primary's service.
    let deployments: Api<Deployment> = ns.api();
    let dep = deployments.get(&format!("{name}-worker")).await.unwrap();
    let env = dep.spec.template.spec.unwrap().containers[0]
        .env
        .clone()
        .unwrap();
    let read = env
        .iter()
        .find(|e| e.name == "DATABASE_READ_URL")
        .and_then(|e| e.value.clone())
        .unwrap();
    assert!(read.contains(&format!("@{name}-db-rw:")), "{read}");
    // Retain needs no finalizer: deletion never waits on the operator.
    let stored = pds.get(&name).await.unwrap();
    assert!(!stored.finalizers().iter().any(|f| f == FINALIZER));

    // Two workers × (10 + 2 analytics) connections against max_connections 20: reported.
    pds.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"postgres": {
            "maxConnections": 10,
            "cloudnativepg": {"parameters": {"max_connections": "20"}}
        }}})),
    )
    .await
    .unwrap();
    wait_for("Degraded ConnectionsOverBudget", TIMEOUT, || async {
        let pd = pds.get(&name).await.ok()?;
        let (status, reason) = condition(&pd, "Degraded")?;
        (status == "True" && reason == "ConnectionsOverBudget").then_some(())
    })
    .await;

    // The garbage collector takes the owned children…
    delete_and_wait(&ns, &name).await;
    // …and leaves the database, the records and the group.
    let kept = clusters.get(&format!("{name}-db")).await.unwrap();
    assert_eq!(kept.uid(), uid, "the same Cluster, never deleted");
    let t = topic.clone();
    assert_eq!(blocking(move || records(&t)).await, Some(RECORDS));
    for companion in [format!("{topic}.dlq"), format!("{topic}.alerts")] {
        let c = companion.clone();
        assert!(blocking(move || records(&c)).await.is_some(), "{companion}");
    }
    assert!(blocking(move || group_exists(&group)).await);

    // The pipeline re-created takes its Cluster up again.
    pds.create(&PostParams::default(), &pd).await.unwrap();
    wait_for("the retained Cluster taken up again", TIMEOUT, || async {
        let pd = pds.get(&name).await.ok()?;
        let (_, reason) = condition(&pd, "Ready")?;
        (reason == "DatabaseNotReady").then_some(())
    })
    .await;
    assert_eq!(
        clusters.get(&format!("{name}-db")).await.unwrap().uid(),
        uid
    );
}

#[tokio::test]
async fn delete_removes_the_database_the_topics_and_the_group() {
    let ns = TestNs::new("op-delete").await;
    let _op = Operator::start(&ns.name, "delete");
    let pd = cnpg_pipeline(&ns.name, Some("Delete"));
    let name = pd.name_any();
    let (clusters, topic, group) = start(&ns, &pd).await;

    delete_and_wait(&ns, &name).await;
    wait_for("the Cluster deleted", TIMEOUT, || async {
        clusters
            .get_opt(&format!("{name}-db"))
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    wait_topics_deleted(&[
        topic.clone(),
        format!("{topic}.dlq"),
        format!("{topic}.alerts"),
    ])
    .await;
    let g = group.clone();
    assert!(!blocking(move || group_exists(&g)).await, "group {group}");
    assert!(has_event(&ns, "DataDeleted").await, "a DataDeleted Event");
}

#[tokio::test]
async fn a_delete_pipeline_switched_to_retain_keeps_its_data() {
    let ns = TestNs::new("op-delete-retain").await;
    let _op = Operator::start(&ns.name, "switch");
    let pds: Api<PipelineDeployment> = ns.api();
    let pd = cnpg_pipeline(&ns.name, Some("Delete"));
    let name = pd.name_any();
    let (clusters, topic, _) = start(&ns, &pd).await;
    pds.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"deletionPolicy": "Retain"}})),
    )
    .await
    .unwrap();
    wait_for("the finalizer removed", TIMEOUT, || async {
        let pd = pds.get(&name).await.ok()?;
        pd.finalizers().is_empty().then_some(())
    })
    .await;
    delete_and_wait(&ns, &name).await;
    assert!(
        clusters
            .get_opt(&format!("{name}-db"))
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(blocking(move || records(&topic)).await, Some(RECORDS));
}

#[tokio::test]
async fn two_pipelines_on_one_database_never_share_a_schema() {
    let ns = TestNs::new("op-schema").await;
    let _op = Operator::start(&ns.name, "schema");
    let pds: Api<PipelineDeployment> = ns.api();
    let mut first = example("external-postgres.yaml");
    unique_topic(&mut first, &ns.name);
    first.spec.kafka.partitions = 2;
    first.spec.workers.min_replicas = 1;
    first.spec.workers.max_replicas = 2;
    pds.create(&PostParams::default(), &first).await.unwrap();
    wait_ready(&pds, "payments", "True", None).await;

    // Same Secret, same explicit schema: refused, and no workers are made for it.
    let mut second = first.clone();
    second.metadata.name = Some("refunds".into());
    second.spec.kafka.topic = format!("refunds.{}", ns.name);
    pds.create(&PostParams::default(), &second).await.unwrap();
    let refused = wait_ready(&pds, "refunds", "False", Some("SchemaInUse")).await;
    let (_, degraded) = condition(&refused, "Degraded").unwrap();
    assert_eq!(degraded, "SchemaInUse");
    let deployments: Api<Deployment> = ns.api();
    assert!(
        deployments
            .get_opt("refunds-worker")
            .await
            .unwrap()
            .is_none()
    );
    // The first keeps it.
    let kept = pds.get("payments").await.unwrap();
    assert_eq!(condition(&kept, "Ready").unwrap().0, "True");

    // Without an explicit schema it gets one of its own and runs.
    pds.patch(
        "refunds",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"postgres": {"schema": null}}})),
    )
    .await
    .unwrap();
    wait_ready(&pds, "refunds", "True", None).await;
    let config =
        Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(ns.client.clone(), &ns.name)
            .get("refunds-config")
            .await
            .unwrap();
    let yaml = &config.data.unwrap()["config.yaml"];
    let want = format!("schema: sluice_{}_refunds", ns.name.replace('-', "_"));
    assert!(yaml.contains(&want), "{yaml}");
}

#[tokio::test]
async fn retain_keeps_every_row_a_worker_landed_in_an_external_database() {
    let ns = TestNs::new("op-retain-pg").await;
    let _op = Operator::start(&ns.name, "retain-pg");
    let landed = land(&ns, "payments", None).await;
    let relations = landed.relations().await;
    let tables = [
        "transactions",
        "transaction_ids",
        "consumer_offsets",
        "analytics_summaries",
        "quality_summaries",
        "customer_profiles",
    ];
    let mut before = Vec::new();
    for t in tables {
        before.push(landed.count(t).await);
    }
    assert_eq!(before[0], TRANSACTIONS);
    assert_eq!(before[1], TRANSACTIONS, "one idempotency key per row");
    assert!(before[2] > 0, "stored offsets");

    delete_and_wait(&ns, "payments").await;
    assert_eq!(landed.relations().await, relations, "every table kept");
    for (t, n) in tables.iter().zip(&before) {
        assert_eq!(landed.count(t).await, *n, "rows of {t}");
    }
    let (topics, group) = kafka_names(&landed.pd);
    for t in topics {
        let topic = t.clone();
        assert!(blocking(move || records(&topic)).await.is_some(), "{t}");
    }
    assert!(blocking(move || group_exists(&group)).await);
}

#[tokio::test]
async fn delete_drops_the_sluice_tables_of_an_external_database_never_a_users_table() {
    let ns = TestNs::new("op-delete-pg").await;
    let _op = Operator::start(&ns.name, "delete-pg");
    let gone = land(&ns, "payments", Some("Delete")).await;
    let kept = land(&ns, "refunds", Some("Delete")).await;
    for l in [&gone, &kept] {
        let relations = l.relations().await;
        assert!(sluice_tables(&relations).len() >= 10, "{relations:?}");
    }
    // A table of the user's in one pipeline's schema: it keeps the schema alive.
    let user_table = format!(
        "CREATE TABLE \"{}\".notes (id int); INSERT INTO \"{}\".notes VALUES (1)",
        kept.schema, kept.schema
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(user_table))
        .execute(&mut kept.connect().await)
        .await
        .unwrap();

    for l in [&gone, &kept] {
        delete_and_wait(&ns, &l.pd.name_any()).await;
    }
    assert!(
        !gone.schema_exists().await,
        "schema {} dropped",
        gone.schema
    );
    assert!(
        kept.schema_exists().await,
        "schema {} kept for the user's table",
        kept.schema
    );
    assert_eq!(
        kept.relations().await,
        ["notes"],
        "only the user's table left"
    );
    assert_eq!(kept.count("notes").await, 1);
    for l in [&gone, &kept] {
        let (topics, group) = kafka_names(&l.pd);
        wait_topics_deleted(&topics).await;
        let g = group.clone();
        assert!(!blocking(move || group_exists(&g)).await, "group {group}");
    }
    assert!(has_event(&ns, "DataDeleted").await, "a DataDeleted Event");
}
