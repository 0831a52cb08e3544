//! The Kafka topic through the admin API of a real broker: created with the requested
//! partitions (plus `.dlq` and `.alerts`), grown when the spec grows, never shrunk.

mod common;

use common::*;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use sluice_operator::crd::PipelineDeployment;

fn partitions(topic: &str) -> Option<usize> {
    topic_partitions(&setup().kafka, topic)
}

#[tokio::test]
async fn topic_is_created_and_grown_never_shrunk() {
    let ns = TestNs::new("op-topic").await;
    let _op = Operator::start(&ns.name, "topic");
    let pds: Api<PipelineDeployment> = ns.api();
    let mut pd = example("external-postgres.yaml");
    unique_topic(&mut pd, &ns.name);
    pd.spec.kafka.partitions = 3;
    pd.spec.workers.max_replicas = 3;
    let topic = pd.spec.kafka.topic.clone();
    pds.create(&PostParams::default(), &pd).await.unwrap();
    let ready = wait_ready(&pds, "payments", "True", None).await;
    assert_eq!(ready.status.unwrap().topic_partitions, Some(3));
    // A fresh client's metadata may lag the controller's by a moment: poll.
    for (name, want) in [
        (topic.clone(), Some(3)),
        (format!("{topic}.dlq"), None),
        (format!("{topic}.alerts"), None),
    ] {
        wait_for(&format!("topic {name} on the broker"), TIMEOUT, || async {
            let t = name.clone();
            let n = tokio::task::spawn_blocking(move || partitions(&t))
                .await
                .ok()??;
            want.is_none_or(|w| w == n).then_some(())
        })
        .await;
    }

    pds.patch(
        "payments",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"kafka": {"partitions": 5}}})),
    )
    .await
    .unwrap();
    wait_for("topic grown to 5 partitions", TIMEOUT, || async {
        let pd = pds.get("payments").await.ok()?;
        let t = topic.clone();
        let n = tokio::task::spawn_blocking(move || partitions(&t))
            .await
            .ok()??;
        (n == 5 && pd.status?.topic_partitions == Some(5)).then_some(())
    })
    .await;
    let err = pds
        .patch(
            "payments",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"kafka": {"partitions": 4}}})),
        )
        .await
        .expect_err("decreasing partitions is rejected");
    assert!(err.to_string().contains("spec.kafka.partitions"), "{err}");
}
