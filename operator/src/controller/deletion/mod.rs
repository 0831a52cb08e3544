//! What deleting a pipeline does to its data (`spec.deletionPolicy`).
//!
//! `Retain` (the default) needs nothing at deletion: the CloudNativePG Cluster has no owner
//! reference (see `children/cnpg.rs`), an external database is never touched, and topics and
//! the consumer group live in Kafka, where the garbage collector never reaches. Such a
//! pipeline carries no finalizer, so deleting it never waits on the operator.
//!
//! `Delete` adds the finalizer [`FINALIZER`]. When the pipeline is deleted, each reconcile
//! removes what is left of what sluice made — the workers are stopped first (their
//! autoscaler deleted, the Deployment scaled to zero: consumers must leave the group before
//! the group can go, and no worker may write while its tables are dropped; `workers.rs`),
//! the CloudNativePG Cluster, or on an external database the sluice tables of the
//! pipeline's schema and the schema if then empty (`postgres.rs`), the DLQ and alerts
//! topics, the input topic if the operator created it ([`CREATED_TOPICS`]), the consumer
//! group (`kafka.rs`) — and drops the finalizer once nothing is left. It never blocks
//! deletion for good: [`GIVE_UP_AFTER`] after the deletion request it drops the finalizer
//! anyway, with a Warning Event naming what is left.

mod kafka;
mod postgres;
mod workers;

use std::time::Duration;

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::info;

use super::publish::publish;
use super::{Context, Error, schema_in_use};
use crate::children::Names;
use crate::children::config_map::worker_config;
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

/// What a `Delete` pipeline leaves to remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cleanup {
    pub deployment: String,
    /// The CloudNativePG Cluster, when the pipeline has one.
    pub cluster: Option<String>,
    /// The schema whose sluice tables are dropped, when the database is external.
    pub schema: Option<String>,
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
        let postgres = &pd.spec.postgres;
        Self {
            deployment: names.worker,
            cluster: postgres.cloudnativepg.is_some().then_some(names.database),
            schema: postgres.external.is_some().then(|| pd.schema()),
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

/// Merge-patches the pipeline's own metadata (its finalizers, the created-topics annotation).
async fn patch_metadata(
    ctx: &Context,
    ns: &str,
    pd: &PipelineDeployment,
    metadata: serde_json::Value,
) -> Result<(), Error> {
    Api::<PipelineDeployment>::namespaced(ctx.client.clone(), ns)
        .patch(
            &pd.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": metadata })),
        )
        .await
        .map_err(Error::Finalizer)?;
    Ok(())
}

/// The pipeline's finalizers with [`FINALIZER`] present or not, as a patch guarded by its
/// resourceVersion (a concurrent change makes the patch fail and the reconcile retry with the
/// fresh object).
async fn set_finalizer(
    ctx: &Context,
    ns: &str,
    pd: &PipelineDeployment,
    present: bool,
) -> Result<(), Error> {
    let mut finalizers: Vec<String> = pd
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    if present {
        finalizers.push(FINALIZER.into());
    }
    let metadata = json!({ "finalizers": finalizers, "resourceVersion": pd.resource_version() });
    patch_metadata(ctx, ns, pd, metadata).await
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
    set_finalizer(ctx, ns, pd, want).await
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
    let metadata = json!({ "annotations": { CREATED_TOPICS: all.join(",") } });
    patch_metadata(ctx, ns, pd, metadata).await
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
    let (done, left) = remove_data(ctx, ns, pd, &plan).await;
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
            let note = format!("deletionPolicy Delete: removed {}", done.join(", "));
            publish(ctx, pd, EventType::Normal, "DataDeleted", note).await;
            drop_finalizer(ctx, ns, pd).await
        }
        Verdict::GiveUp => {
            let note = format!(
                "deletionPolicy Delete: gave up after {}s; left behind: {}",
                GIVE_UP_AFTER.as_secs(),
                left.join("; ")
            );
            publish(ctx, pd, EventType::Warning, "DataLeft", note).await;
            drop_finalizer(ctx, ns, pd).await
        }
        Verdict::Retry => {
            info!(left = %left.join("; "), "deletion not done yet");
            Ok(Action::requeue(RETRY))
        }
    }
}

async fn drop_finalizer(ctx: &Context, ns: &str, pd: &PipelineDeployment) -> Result<Action, Error> {
    set_finalizer(ctx, ns, pd, false).await?;
    Ok(Action::await_change())
}

/// Removes what the plan names. Returns what was removed and what is still there (one phrase
/// each, with why).
async fn remove_data(
    ctx: &Context,
    ns: &str,
    pd: &PipelineDeployment,
    plan: &Cleanup,
) -> (Vec<String>, Vec<String>) {
    let (mut done, mut left) = (Vec::new(), Vec::new());
    // The workers first: a group with members cannot be deleted, and tables are dropped only
    // once no worker can write to them. Their autoscaler goes, then they are scaled to zero
    // (the garbage collector deletes the Deployment after the pipeline).
    let stopped = match workers::stop(ctx, ns, pd, &plan.deployment).await {
        Ok(0) => {
            done.push(format!("workers {} stopped", plan.deployment));
            true
        }
        Ok(n) => {
            left.push(format!("workers {}: {n} pods still there", plan.deployment));
            false
        }
        Err(e) => {
            left.push(format!("workers {}: {e}", plan.deployment));
            false
        }
    };
    if let Some(name) = &plan.cluster {
        match workers::delete_cluster(ctx, ns, pd, name).await {
            Ok(()) => done.push(format!("CloudNativePG Cluster {name}")),
            Err(e) => left.push(format!("CloudNativePG Cluster {name}: {e}")),
        }
    }
    if let Some(schema) = &plan.schema {
        match schema_owner(ctx, ns, pd).await {
            Err(e) => left.push(format!("Postgres schema {schema}: {e}")),
            // Refused for a schema an older pipeline uses: this one never wrote there.
            Ok(Some(owner)) => done.push(format!(
                "nothing in Postgres schema {schema} (pipeline {owner}'s)"
            )),
            Ok(None) if !stopped => left.push(format!(
                "Postgres schema {schema}: waiting for the workers to stop"
            )),
            Ok(None) => match postgres::drop_schema(&ctx.client, ns, pd).await {
                Ok(what) => done.extend(what),
                Err(e) => left.push(format!("Postgres schema {schema}: {e}")),
            },
        }
    }
    match crate::kafka_auth::resolve(&ctx.client, pd).await {
        Ok(auth) => {
            let not_deleted = kafka::delete_topics_and_group(pd, &auth, plan).await;
            if not_deleted.is_empty() {
                done.push(format!("topics {}", plan.topics.join(", ")));
                done.push(format!("consumer group {}", plan.consumer_group));
            }
            left.extend(not_deleted);
        }
        Err(e) => left.push(format!("Kafka topics and group: {e}")),
    }
    (done, left)
}

/// The older pipeline of this namespace that holds `pd`'s schema of the same database, if any
/// (then `pd` was refused it, see `database::schema_in_use`).
async fn schema_owner(
    ctx: &Context,
    ns: &str,
    pd: &PipelineDeployment,
) -> Result<Option<String>, kube::Error> {
    let all = Api::<PipelineDeployment>::namespaced(ctx.client.clone(), ns)
        .list(&Default::default())
        .await?;
    Ok(schema_in_use(pd, &all.items).map(ResourceExt::name_any))
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
        assert_eq!(plan.schema.as_deref(), Some("sluice_ns_payments"));
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
