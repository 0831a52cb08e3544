//! What deleting a pipeline does to its data (`spec.deletionPolicy`).
//!
//! `Retain` (the default) needs nothing at deletion: the CloudNativePG Cluster has no owner
//! reference (see `children/cnpg.rs`), and topics and the consumer group live in Kafka, where
//! the garbage collector never reaches. Such a pipeline carries no finalizer, so deleting it
//! never waits on the operator.
//!
//! `Delete` adds the finalizer [`FINALIZER`]. When the pipeline is deleted, each reconcile
//! removes what is left of what sluice made — the workers are stopped first (their
//! autoscaler deleted, the Deployment scaled to zero: consumers must leave the group before
//! the group can go), the CloudNativePG Cluster, the DLQ and
//! alerts topics, the input topic if the operator created it ([`CREATED_TOPICS`]), the
//! consumer group — and drops the finalizer once nothing is left. It never blocks deletion
//! for good: [`GIVE_UP_AFTER`] after the deletion request it drops the finalizer anyway,
//! with a Warning Event naming what is left.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use serde_json::json;
use tracing::info;

use super::publish::publish;
use super::{Context, Error};
use crate::children::config_map::worker_config;
use crate::children::{Names, cnpg, keda};
use crate::crd::{DeletionPolicy, PipelineDeployment};

/// The finalizer of a pipeline whose data goes with it.
pub const FINALIZER: &str = "sluice.dev/delete-data";
/// Annotation on the pipeline listing the topics the operator created (comma-separated): only
/// those input topics are deleted with it, never one that existed before.
pub const CREATED_TOPICS: &str = "sluice.dev/created-topics";
/// How long after the deletion request the finalizer keeps trying.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(300);
/// How often a deletion that is not done yet is retried.
const RETRY: Duration = Duration::from_secs(5);
/// Bound of each Kafka admin call.
const KAFKA_TIMEOUT: Duration = Duration::from_secs(10);

/// What a `Delete` pipeline leaves to remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cleanup {
    pub deployment: String,
    /// The CloudNativePG Cluster, when the pipeline has one.
    pub cluster: Option<String>,
    /// Topics to delete: the DLQ and alerts topics, and the input topic if the operator
    /// created it.
    pub topics: Vec<String>,
    pub consumer_group: String,
}

impl Cleanup {
    pub fn of(pd: &PipelineDeployment) -> Self {
        let names = Names::of(pd);
        let kafka = worker_config(pd).kafka;
        let mut topics = vec![kafka.dlq_topic(), kafka.alerts_topic()];
        if created_topics(pd).iter().any(|t| *t == pd.spec.kafka.topic) {
            topics.insert(0, pd.spec.kafka.topic.clone());
        }
        Self {
            deployment: names.worker,
            cluster: pd
                .spec
                .postgres
                .cloudnativepg
                .is_some()
                .then_some(names.database),
            topics,
            consumer_group: pd.consumer_group(),
        }
    }
}

/// The topics the operator recorded as created by it.
pub fn created_topics(pd: &PipelineDeployment) -> Vec<&str> {
    pd.annotations()
        .get(CREATED_TOPICS)
        .map(|v| v.split(',').filter(|t| !t.is_empty()).collect())
        .unwrap_or_default()
}

/// What to do with the finalizer once a deletion attempt is over.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing is left: drop it.
    Done,
    /// Something is left and there is time: try again.
    Retry,
    /// Something is left and time is up: drop it and say what is left.
    GiveUp,
}

pub fn verdict(left: &[String], since_deletion: Duration) -> Verdict {
    if left.is_empty() {
        Verdict::Done
    } else if since_deletion >= GIVE_UP_AFTER {
        Verdict::GiveUp
    } else {
        Verdict::Retry
    }
}

fn has_finalizer(pd: &PipelineDeployment) -> bool {
    pd.finalizers().iter().any(|f| f == FINALIZER)
}

/// Replaces the pipeline's finalizers, guarded by its resourceVersion (a concurrent change
/// makes the patch fail and the reconcile retry with the fresh object).
async fn set_finalizers(
    ctx: &Context,
    ns: &str,
    pd: &PipelineDeployment,
    finalizers: Vec<String>,
) -> Result<(), Error> {
    let api = Api::<PipelineDeployment>::namespaced(ctx.client.clone(), ns);
    let patch = json!({
        "metadata": { "finalizers": finalizers, "resourceVersion": pd.resource_version() }
    });
    api.patch(
        &pd.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map_err(Error::Finalizer)?;
    Ok(())
}

/// A live pipeline: the finalizer is present exactly when its policy is `Delete`.
pub(super) async fn sync_finalizer(
    ctx: &Context,
    ns: &str,
    pd: &PipelineDeployment,
) -> Result<(), Error> {
    let want = pd.deletion_policy() == DeletionPolicy::Delete;
    if want == has_finalizer(pd) {
        return Ok(());
    }
    let mut finalizers: Vec<String> = pd
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    if want {
        finalizers.push(FINALIZER.into());
    }
    set_finalizers(ctx, ns, pd, finalizers).await
}

/// Records that the operator created `topic`, so `Delete` knows it is sluice's.
pub(super) async fn record_created_topic(
    ctx: &Context,
    ns: &str,
    pd: &PipelineDeployment,
    topic: &str,
) -> Result<(), Error> {
    let mut all = created_topics(pd);
    if all.contains(&topic) {
        return Ok(());
    }
    all.push(topic);
    let patch = json!({ "metadata": { "annotations": { CREATED_TOPICS: all.join(",") } } });
    Api::<PipelineDeployment>::namespaced(ctx.client.clone(), ns)
        .patch(
            &pd.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map_err(Error::Finalizer)?;
    Ok(())
}

/// One attempt at finishing the deletion of `pd` (its deletionTimestamp is set).
pub(super) async fn finish(
    ctx: &Context,
    ns: &str,
    pd: &PipelineDeployment,
) -> Result<Action, Error> {
    if !has_finalizer(pd) {
        return Ok(Action::await_change());
    }
    if pd.deletion_policy() == DeletionPolicy::Retain {
        // The policy was changed to Retain after the delete request: keep everything.
        return drop_finalizer(ctx, ns, pd).await;
    }
    let plan = Cleanup::of(pd);
    let left = remove_data(ctx, ns, pd, &plan).await;
    let since = pd
        .meta()
        .deletion_timestamp
        .as_ref()
        .map(|t| {
            let elapsed = k8s_openapi::jiff::Timestamp::now().duration_since(t.0);
            Duration::try_from(elapsed).unwrap_or_default()
        })
        .unwrap_or_default();
    match verdict(&left, since) {
        Verdict::Done => {
            publish(
                ctx,
                pd,
                EventType::Normal,
                "DataDeleted",
                format!("deletionPolicy Delete: removed {}", describe(&plan)),
            )
            .await;
            drop_finalizer(ctx, ns, pd).await
        }
        Verdict::GiveUp => {
            publish(
                ctx,
                pd,
                EventType::Warning,
                "DataLeft",
                format!(
                    "deletionPolicy Delete: gave up after {}s; left behind: {}",
                    GIVE_UP_AFTER.as_secs(),
                    left.join("; ")
                ),
            )
            .await;
            drop_finalizer(ctx, ns, pd).await
        }
        Verdict::Retry => {
            info!(left = %left.join("; "), "deletion not done yet");
            Ok(Action::requeue(RETRY))
        }
    }
}

async fn drop_finalizer(ctx: &Context, ns: &str, pd: &PipelineDeployment) -> Result<Action, Error> {
    let rest = pd
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    set_finalizers(ctx, ns, pd, rest).await?;
    Ok(Action::await_change())
}

fn describe(plan: &Cleanup) -> String {
    let mut parts = vec![format!("workers {} stopped", plan.deployment)];
    if let Some(c) = &plan.cluster {
        parts.push(format!("CloudNativePG Cluster {c}"));
    }
    parts.push(format!("topics {}", plan.topics.join(", ")));
    parts.push(format!("consumer group {}", plan.consumer_group));
    parts.join(", ")
}

/// Removes what the plan names; returns what is still there (one phrase each, with why).
async fn remove_data(
    ctx: &Context,
    ns: &str,
    pd: &PipelineDeployment,
    plan: &Cleanup,
) -> Vec<String> {
    let mut left = Vec::new();
    // The workers first: a group with members cannot be deleted. Their autoscaler goes, then
    // they are scaled to zero (the garbage collector deletes the Deployment after the pipeline).
    if let Err(e) = stop_workers(ctx, ns, pd, plan).await {
        left.push(format!("workers {}: {e}", plan.deployment));
    }
    if let Some(name) = &plan.cluster
        && let Err(e) = delete_cluster(ctx, ns, pd, name).await
    {
        left.push(format!("CloudNativePG Cluster {name}: {e}"));
    }
    match crate::kafka_auth::resolve(&ctx.client, pd).await {
        Ok(auth) => left.extend(delete_kafka_data(pd, &auth, plan).await),
        Err(e) => left.push(format!("Kafka topics and group: {e}")),
    }
    left
}

/// Deletes the workers' HPA or ScaledObject (when this pipeline controls it) and scales the
/// worker Deployment to zero.
async fn stop_workers(
    ctx: &Context,
    ns: &str,
    pd: &PipelineDeployment,
    plan: &Cleanup,
) -> Result<(), kube::Error> {
    let caps = ctx.capabilities.get().await;
    let mut autoscalers = vec![ApiResource::erase::<HorizontalPodAutoscaler>(&())];
    if caps.keda {
        autoscalers.push(keda::api_resource());
    }
    for ar in autoscalers {
        let api = Api::<DynamicObject>::namespaced_with(ctx.client.clone(), ns, &ar);
        if let Some(obj) = api.get_metadata_opt(&plan.deployment).await? {
            let ours = obj
                .owner_references()
                .iter()
                .any(|o| Some(&o.uid) == pd.uid().as_ref() && o.controller == Some(true));
            if ours {
                api.delete(&plan.deployment, &DeleteParams::background())
                    .await?;
            }
        }
    }
    let deployments = Api::<Deployment>::namespaced(ctx.client.clone(), ns);
    if deployments
        .get_metadata_opt(&plan.deployment)
        .await?
        .is_some()
    {
        deployments
            .patch(
                &plan.deployment,
                &PatchParams::default(),
                &Patch::Merge(json!({ "spec": { "replicas": 0 } })),
            )
            .await?;
    }
    Ok(())
}

async fn delete_cluster(
    ctx: &Context,
    ns: &str,
    pd: &PipelineDeployment,
    name: &str,
) -> Result<(), String> {
    if !ctx.capabilities.get().await.cnpg {
        return Ok(());
    }
    let api = Api::<DynamicObject>::namespaced_with(ctx.client.clone(), ns, &cnpg::api_resource());
    match api.get_metadata_opt(name).await {
        Ok(None) => Ok(()),
        Ok(Some(obj)) if !cnpg::is_pipelines(pd, &obj.metadata) => {
            // Not labelled as this pipeline's: someone else's Cluster, never deleted.
            Ok(())
        }
        Ok(Some(_)) => api
            .delete(name, &DeleteParams::background())
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// Deletes the plan's topics and consumer group; returns what could not be deleted.
/// The pipeline's own credentials (`kafka_auth`) authenticate the admin client.
async fn delete_kafka_data(
    pd: &PipelineDeployment,
    auth: &crate::kafka_auth::KafkaAuth,
    plan: &Cleanup,
) -> Vec<String> {
    let k = &pd.spec.kafka;
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &k.bootstrap_servers)
        .set("security.protocol", k.security_protocol.as_str())
        .set("socket.timeout.ms", KAFKA_TIMEOUT.as_millis().to_string())
        .set("client.id", "sluice-operator");
    for (key, value) in auth.props() {
        config.set(*key, value);
    }
    let admin: AdminClient<DefaultClientContext> = match config.create() {
        Ok(a) => a,
        Err(e) => return vec![format!("Kafka topics and group: admin client: {e}")],
    };
    let opts = AdminOptions::new()
        .operation_timeout(Some(KAFKA_TIMEOUT))
        .request_timeout(Some(KAFKA_TIMEOUT));
    let mut left = Vec::new();
    let topics: Vec<&str> = plan.topics.iter().map(String::as_str).collect();
    match admin.delete_topics(&topics, &opts).await {
        Ok(results) => {
            for r in results {
                match r {
                    Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
                    Err((t, code)) => left.push(format!("topic {t}: {code:?}")),
                }
            }
        }
        Err(e) => left.push(format!("topics {}: {e}", plan.topics.join(", "))),
    }
    match admin
        .delete_groups(&[plan.consumer_group.as_str()], &opts)
        .await
    {
        Ok(results) => {
            for r in results {
                match r {
                    Ok(_) | Err((_, RDKafkaErrorCode::GroupIdNotFound)) => {}
                    Err((g, code)) => left.push(format!("consumer group {g}: {code:?}")),
                }
            }
        }
        Err(e) => left.push(format!("consumer group {}: {e}", plan.consumer_group)),
    }
    left
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::children::testing::{BASIC, pipeline};

    #[test]
    fn the_input_topic_goes_only_if_the_operator_created_it() {
        let mut pd = pipeline(BASIC);
        let plan = Cleanup::of(&pd);
        assert_eq!(plan.topics, ["payments.dlq", "payments.alerts"]);
        assert_eq!(plan.consumer_group, "sluice-ns-payments");
        assert_eq!(plan.deployment, "payments-worker");
        assert_eq!(
            plan.cluster, None,
            "an external database is not the pipeline's"
        );
        pd.metadata.annotations = Some(
            [(
                CREATED_TOPICS.to_string(),
                "payments,payments.dlq".to_string(),
            )]
            .into(),
        );
        assert_eq!(
            Cleanup::of(&pd).topics,
            ["payments", "payments.dlq", "payments.alerts"]
        );
    }

    #[test]
    fn the_finalizer_gives_up_after_its_deadline() {
        let left = vec!["topic payments.dlq: broker down".to_string()];
        assert_eq!(verdict(&[], Duration::ZERO), Verdict::Done);
        assert_eq!(verdict(&[], GIVE_UP_AFTER * 2), Verdict::Done);
        assert_eq!(verdict(&left, Duration::from_secs(10)), Verdict::Retry);
        assert_eq!(verdict(&left, GIVE_UP_AFTER), Verdict::GiveUp);
    }
}
