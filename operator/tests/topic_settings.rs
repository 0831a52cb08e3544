//! `spec.kafka.topicSettings` on a real broker: topics the operator creates get them, the DLQ
//! and alerts topics included, before any worker exists (a worker that started first would
//! create those two with the broker's defaults); when an existing topic differs from the spec,
//! the difference is reported in the `TopicSettingsInSync` condition and the topic is left as
//! it is.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use serde_json::json;
use sluice_operator::crd::{PipelineDeployment, TopicSettings, TopicSettingsSpec};

type Admin = AdminClient<DefaultClientContext>;

fn admin() -> Admin {
    ClientConfig::new()
        .set("bootstrap.servers", &setup().kafka)
        .create()
        .expect("kafka admin client")
}

/// The configs of `topic` as the broker reports them (`None` or none at all when it cannot be
/// described yet).
async fn configs_with(admin: &Admin, topic: &str) -> Option<HashMap<String, String>> {
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

async fn configs(topic: &str) -> Option<HashMap<String, String>> {
    configs_with(&admin(), topic).await
}

/// Whether `have` holds every `(key, value)` of `want`.
fn has(have: &HashMap<String, String>, want: &[(&str, &str)]) -> bool {
    want.iter()
        .all(|(k, v)| have.get(*k).map(String::as_str) == Some(*v))
}

/// The settings the tests ask for, by topic suffix ("" is the input topic).
const WANT: [(&str, &[(&str, &str)]); 3] = [
    (
        "",
        &[("min.insync.replicas", "1"), ("retention.ms", "7200000")],
    ),
    (".dlq", &[("retention.ms", "-1")]),
    (".alerts", &[("retention.bytes", "2097152")]),
];

/// The example pipeline on a topic of its own, with [`WANT`] as its topic settings.
fn pipeline_with_settings(ns: &str) -> PipelineDeployment {
    let mut pd = example("external-postgres.yaml");
    unique_topic(&mut pd, ns);
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
    pd
}

/// Waits until `topic` has every `(key, value)` of `want`.
async fn wait_configs(topic: &str, want: &[(&str, &str)]) {
    wait_for(&format!("{topic} with {want:?}"), TIMEOUT, || async {
        has(&configs(topic).await?, want).then_some(())
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
    let pd = pipeline_with_settings(&ns.name);
    let topic = pd.spec.kafka.topic.clone();
    let admin = admin();
    // Connected now, so the check below answers at once.
    let _ = configs_with(&admin, &topic).await;
    // Watching the Deployments from before the pipeline exists: the moment the workers'
    // Deployment appears, its topics (DLQ and alerts included) must be there with their settings.
    let mut deployments = watcher(ns.api::<Deployment>(), watcher::Config::default()).boxed();
    while !matches!(
        deployments.try_next().await.expect("watch deployments"),
        Some(watcher::Event::InitDone)
    ) {}
    pds.create(&PostParams::default(), &pd).await.unwrap();
    tokio::time::timeout(TIMEOUT, async {
        while !matches!(
            deployments.try_next().await.expect("watch deployments"),
            Some(watcher::Event::Apply(_))
        ) {}
    })
    .await
    .expect("the workers' Deployment appears");
    for (suffix, want) in WANT {
        let name = format!("{topic}{suffix}");
        let have = configs_with(&admin, &name).await;
        assert!(
            have.as_ref().is_some_and(|have| has(have, want)),
            "{name} when the workers' Deployment appeared: {have:?}, want {want:?}"
        );
    }
    drop(deployments);

    wait_ready(&pds, "payments", "True", None).await;
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

/// A ValidatingAdmissionPolicy refusing every Deployment created in one namespace; deleted
/// when dropped.
struct HoldBackDeployments {
    name: String,
}

const HELD_BACK: &str = "held back by the test";

impl HoldBackDeployments {
    async fn new(ns: &TestNs) -> Self {
        let name = format!("hold-back-deployments-{}", ns.name);
        let policy: ValidatingAdmissionPolicy = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns.name}},
                    "resourceRules": [{
                        "apiGroups": ["apps"], "apiVersions": ["v1"],
                        "operations": ["CREATE"], "resources": ["deployments"]
                    }]
                },
                "validations": [{"expression": "false", "message": HELD_BACK}]
            }
        }))
        .unwrap();
        let binding: ValidatingAdmissionPolicyBinding = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"policyName": name, "validationActions": ["Deny"]}
        }))
        .unwrap();
        let pp = PostParams::default();
        Api::<ValidatingAdmissionPolicy>::all(ns.client.clone())
            .create(&pp, &policy)
            .await
            .unwrap();
        let hold = Self { name };
        hold.bindings(ns).create(&pp, &binding).await.unwrap();
        // Policies take effect a moment after they are created: probe with a dry run.
        let probe: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "probe"},
            "spec": {
                "selector": {"matchLabels": {"app": "probe"}},
                "template": {
                    "metadata": {"labels": {"app": "probe"}},
                    "spec": {"containers": [{"name": "probe", "image": "probe"}]}
                }
            }
        }))
        .unwrap();
        let dry_run = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        let deployments = ns.api::<Deployment>();
        wait_for("the admission policy in effect", TIMEOUT, || async {
            match deployments.create(&dry_run, &probe).await {
                Err(e) => e.to_string().contains(HELD_BACK),
                Ok(_) => false,
            }
        })
        .await;
        hold
    }

    fn bindings(&self, ns: &TestNs) -> Api<ValidatingAdmissionPolicyBinding> {
        Api::all(ns.client.clone())
    }

    /// Lets Deployments be created again.
    async fn release(&self, ns: &TestNs) {
        self.bindings(ns)
            .delete(&self.name, &DeleteParams::default())
            .await
            .unwrap();
    }
}

impl Drop for HoldBackDeployments {
    fn drop(&mut self) {
        let _ = kubectl(setup())
            .args([
                "delete",
                "--ignore-not-found",
                "--wait=false",
                &format!("validatingadmissionpolicybinding/{}", self.name),
                &format!("validatingadmissionpolicy/{}", self.name),
            ])
            .output();
    }
}

/// The topics come first, whatever happens to the workers after: while no Deployment can be
/// created (a refused apply ends that reconcile), the input, DLQ and alerts topics are still
/// created with the spec's settings. Had the topic step come after the workers' Deployment,
/// they would not exist until it could be created.
#[tokio::test]
async fn topics_are_created_before_the_workers() {
    let ns = TestNs::new("op-topics-first").await;
    let hold = HoldBackDeployments::new(&ns).await;
    let _op = Operator::start(&ns.name, "topics-first");
    let pds: Api<PipelineDeployment> = ns.api();
    let pd = pipeline_with_settings(&ns.name);
    let topic = pd.spec.kafka.topic.clone();
    pds.create(&PostParams::default(), &pd).await.unwrap();
    for (suffix, want) in WANT {
        wait_configs(&format!("{topic}{suffix}"), want).await;
    }
    let worker = sluice_operator::children::Names::of(&pd).worker;
    assert!(
        ns.api::<Deployment>()
            .get_opt(&worker)
            .await
            .unwrap()
            .is_none(),
        "the workers' Deployment was held back"
    );

    hold.release(&ns).await;
    wait_ready(&pds, "payments", "True", None).await;
    let (reason, _) = wait_in_sync(&pds, "True").await;
    assert_eq!(reason, "TopicSettingsMatch");
}
