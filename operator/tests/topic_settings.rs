//! `spec.kafka.topicSettings` on a real broker: topics the operator creates get them; when an
//! existing topic differs from the spec, the difference is reported in the
//! `TopicSettingsInSync` condition and the topic is left as it is.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use kube::api::{Api, Patch, PatchParams, PostParams};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use serde_json::json;
use sluice_operator::crd::{PipelineDeployment, TopicSettings, TopicSettingsSpec};

/// The configs of `topic` as the broker reports them (`None` when it cannot be described yet).
async fn configs(topic: &str) -> Option<HashMap<String, String>> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &setup().kafka)
        .create()
        .ok()?;
    let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(5)));
    let mut results = admin
        .describe_configs(&[ResourceSpecifier::Topic(topic)], &opts)
        .await
        .ok()?;
    let resource = results.pop()?.ok()?;
    Some(
        resource
            .entries
            .into_iter()
            .filter_map(|e| Some((e.name, e.value?)))
            .collect(),
    )
}

/// Waits until `topic` has every `(key, value)` of `want`.
async fn wait_configs(topic: &str, want: &[(&str, &str)]) {
    wait_for(&format!("{topic} with {want:?}"), TIMEOUT, || async {
        let have = configs(topic).await?;
        want.iter()
            .all(|(k, v)| have.get(*k).map(String::as_str) == Some(*v))
            .then_some(())
    })
    .await;
}

/// Waits until the pipeline's `TopicSettingsInSync` condition has `status`; returns its message.
async fn wait_in_sync(api: &Api<PipelineDeployment>, status: &str) -> (String, String) {
    wait_for(
        &format!("TopicSettingsInSync={status}"),
        TIMEOUT,
        || async {
            let pd = api.get("payments").await.ok()?;
            let st = pd.status.as_ref()?;
            if st.observed_generation != pd.metadata.generation {
                return None;
            }
            st.conditions
                .iter()
                .find(|c| c.type_ == "TopicSettingsInSync" && c.status == status)
                .map(|c| (c.reason.clone(), c.message.clone()))
        },
    )
    .await
}

#[tokio::test]
async fn topics_are_created_with_their_settings_and_differences_are_reported() {
    let ns = TestNs::new("op-topic-settings").await;
    let _op = Operator::start(&ns.name, "topic-settings");
    let pds: Api<PipelineDeployment> = ns.api();
    let mut pd = example("external-postgres.yaml");
    unique_topic(&mut pd, &ns.name);
    pd.spec.kafka.partitions = 2;
    pd.spec.workers.max_replicas = 2;
    pd.spec.kafka.topic_settings = Some(TopicSettingsSpec {
        input: Some(TopicSettings {
            min_insync_replicas: Some(1),
            retention_ms: Some(7_200_000),
            retention_bytes: None,
        }),
        dlq: Some(TopicSettings {
            retention_ms: Some(-1),
            ..TopicSettings::default()
        }),
        alerts: Some(TopicSettings {
            retention_bytes: Some(2_097_152),
            ..TopicSettings::default()
        }),
    });
    let topic = pd.spec.kafka.topic.clone();
    pds.create(&PostParams::default(), &pd).await.unwrap();
    wait_ready(&pds, "payments", "True", None).await;
    wait_configs(
        &topic,
        &[("min.insync.replicas", "1"), ("retention.ms", "7200000")],
    )
    .await;
    wait_configs(&format!("{topic}.dlq"), &[("retention.ms", "-1")]).await;
    wait_configs(
        &format!("{topic}.alerts"),
        &[("retention.bytes", "2097152")],
    )
    .await;
    let (reason, _) = wait_in_sync(&pds, "True").await;
    assert_eq!(reason, "TopicSettingsMatch");

    // The spec now asks for other settings than the existing topic has: reported, not applied.
    pds.patch(
        "payments",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"spec": {"kafka": {"topicSettings": {"input": {"retentionMs": 10800000}}}}}),
        ),
    )
    .await
    .unwrap();
    let (reason, message) = wait_in_sync(&pds, "False").await;
    assert_eq!(reason, "TopicSettingsDiffer");
    assert!(
        message.contains(&format!(
            "{topic}: retention.ms is 7200000, spec asks 10800000"
        )),
        "{message}"
    );
    let ready = pds.get("payments").await.unwrap();
    assert_eq!(
        condition(&ready, "Degraded").map(|(s, _)| s).as_deref(),
        Some("False"),
        "a difference in settings does not degrade the pipeline"
    );
    assert_eq!(
        configs(&topic)
            .await
            .unwrap()
            .get("retention.ms")
            .map(String::as_str),
        Some("7200000"),
        "the operator never alters an existing topic"
    );
}
