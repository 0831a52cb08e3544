//! What deleting a pipeline does to its data, on a real API server and a real broker:
//! `Retain` (the default) keeps the CloudNativePG Cluster, the topics with every record and
//! the consumer group; `Delete` removes them through a finalizer. Also: the rendered Cluster
//! (backup, parameters, PodMonitor, reads from the primary without replicas), the
//! connection budget, and two pipelines refused one schema.

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Event;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::json;
use sluice_operator::children::cnpg;
use sluice_operator::controller::{CREATED_TOPICS, FINALIZER};
use sluice_operator::crd::PipelineDeployment;

const RECORDS: i64 = 25;

fn kafka() -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &setup().kafka);
    c
}

/// Records on partition 0 of `topic` (its high watermark), or None when it does not exist.
fn records(topic: &str) -> Option<i64> {
    let c: BaseConsumer = kafka().create().unwrap();
    let md = c.fetch_metadata(None, Duration::from_secs(5)).ok()?;
    md.topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())?;
    c.fetch_watermarks(topic, 0, Duration::from_secs(5))
        .ok()
        .map(|(_, high)| high)
}

fn produce(topic: &str) {
    let p: BaseProducer = kafka().create().unwrap();
    for i in 0..RECORDS {
        let key = format!("k{i}");
        p.send(BaseRecord::to(topic).key(&key).payload("{}").partition(0))
            .unwrap();
    }
    p.flush(Duration::from_secs(10)).unwrap();
}

/// Commits an offset for `group` on `topic`, as the workers do: the group then exists.
fn commit(group: &str, topic: &str) {
    let c: BaseConsumer = kafka().set("group.id", group).create().unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(RECORDS))
        .unwrap();
    c.commit(&tpl, CommitMode::Sync).unwrap();
}

/// Whether the broker knows `group`.
fn group_exists(group: &str) -> bool {
    let c: BaseConsumer = kafka().create().unwrap();
    c.fetch_group_list(Some(group), Duration::from_secs(5))
        .map(|l| {
            l.groups()
                .iter()
                .any(|g| g.name() == group && g.state() != "Dead")
        })
        .unwrap_or(true)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

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

/// Creates the pipeline and waits until its Cluster and topic exist; then gives the topic
/// records and the group a committed offset.
async fn start(ns: &TestNs, pd: &PipelineDeployment) -> (Api<DynamicObject>, String, String) {
    let pds: Api<PipelineDeployment> = ns.api();
    pds.create(&PostParams::default(), pd).await.unwrap();
    let clusters =
        Api::<DynamicObject>::namespaced_with(ns.client.clone(), &ns.name, &cnpg::api_resource());
    let db = format!("{}-db", pd.name_any());
    wait_for("the CloudNativePG Cluster", TIMEOUT, || async {
        clusters.get_opt(&db).await.ok().flatten()
    })
    .await;
    let topic = pd.spec.kafka.topic.clone();
    let t = topic.clone();
    wait_for("the input topic", TIMEOUT, || {
        let t = t.clone();
        async move { blocking(move || records(&t)).await }
    })
    .await;
    let group = pd.consumer_group();
    let (t, g) = (topic.clone(), group.clone());
    blocking(move || {
        produce(&t);
        commit(&g, &t);
    })
    .await;
    (clusters, topic, group)
}

async fn wait_gone(pds: &Api<PipelineDeployment>, name: &str) {
    wait_for(&format!("pipeline {name} gone"), TIMEOUT, || async {
        pds.get_opt(name).await.ok()?.is_none().then_some(())
    })
    .await;
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

    pds.delete(&name, &DeleteParams::default()).await.unwrap();
    wait_gone(&pds, &name).await;
    // The garbage collector has taken the owned children…
    wait_for("the worker Deployment collected", TIMEOUT, || async {
        deployments
            .get_opt(&format!("{name}-worker"))
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    // …and left the database, the records and the group.
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
    let pds: Api<PipelineDeployment> = ns.api();
    let pd = cnpg_pipeline(&ns.name, Some("Delete"));
    let name = pd.name_any();
    let (clusters, topic, group) = start(&ns, &pd).await;
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

    pds.delete(&name, &DeleteParams::default()).await.unwrap();
    wait_gone(&pds, &name).await;
    wait_for("the Cluster deleted", TIMEOUT, || async {
        clusters
            .get_opt(&format!("{name}-db"))
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    let deployments: Api<Deployment> = ns.api();
    wait_for("the worker Deployment deleted", TIMEOUT, || async {
        deployments
            .get_opt(&format!("{name}-worker"))
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    for t in [
        topic.clone(),
        format!("{topic}.dlq"),
        format!("{topic}.alerts"),
    ] {
        wait_for(&format!("topic {t} deleted"), TIMEOUT, || {
            let t = t.clone();
            async move { blocking(move || records(&t).is_none().then_some(())).await }
        })
        .await;
    }
    let g = group.clone();
    assert!(!blocking(move || group_exists(&g)).await, "group {group}");
    let events: Api<Event> = ns.api();
    let list = events.list(&ListParams::default()).await.unwrap();
    assert!(
        list.items
            .iter()
            .any(|e| e.reason.as_deref() == Some("DataDeleted")),
        "a DataDeleted Event"
    );
}

#[tokio::test]
async fn a_delete_pipeline_switched_to_retain_keeps_its_data() {
    let ns = TestNs::new("op-delete-retain").await;
    let _op = Operator::start(&ns.name, "switch");
    let pds: Api<PipelineDeployment> = ns.api();
    let pd = cnpg_pipeline(&ns.name, Some("Delete"));
    let name = pd.name_any();
    let (clusters, topic, _) = start(&ns, &pd).await;
    wait_for("the finalizer", TIMEOUT, || async {
        let pd = pds.get(&name).await.ok()?;
        pd.finalizers().iter().any(|f| f == FINALIZER).then_some(())
    })
    .await;
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
    pds.delete(&name, &DeleteParams::default()).await.unwrap();
    wait_gone(&pds, &name).await;
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
