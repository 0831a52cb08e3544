//! The reconciler. One reconcile of a PipelineDeployment:
//!
//! 1. the Kafka topics (`topic::Topics::reconcile`) are ensured before any child exists: a
//!    worker that starts first creates the DLQ and alerts topics itself, with the broker's
//!    defaults instead of `spec.kafka.topicSettings`. A failure degrades the pipeline and is
//!    retried; the children are still applied;
//! 2. [`desired_children`] (`desired.rs`) builds every child the pipeline should have
//!    ([`Desired`], in apply order) and names the ones it should not have ([`Unwanted`]); a
//!    worker config the worker would refuse leaves its ConfigMap and Deployment out
//!    (`InvalidWorkerConfig`);
//! 3. [`apply::prune_child`] deletes each unwanted child this pipeline controls — first, so
//!    that a replaced autoscaler (HPA ↔ KEDA ScaledObject) is gone before its successor is
//!    applied: KEDA's admission webhook rejects a ScaledObject whose target another HPA scales;
//! 4. [`apply::apply_child`] server-side applies each desired child — one path for every kind,
//!    typed or dynamic;
//! 5. the workers' rollout, the database (`observe.rs`) and the lag (`lag_reading.rs`) are
//!    observed, and the status is patched with Events on transitions (`publish.rs`). `run.rs`
//!    is the watch loop around it.
//!
//! Every apply uses one field manager and `force`: the operator is the authority on the fields
//! it sets, so a hand edit of one of them is taken back on the next reconcile. Fields it does
//! not set (e.g. `spec.replicas` under an HPA) stay with whoever set them.

mod apply;
mod database;
mod deletion;
mod desired;
mod error;
mod lag_reading;
mod observe;
mod publish;
mod run;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::{EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::{Client, ResourceExt};
use tracing::warn;

pub use database::{CONNECTIONS_OVER_BUDGET, SCHEMA_IN_USE, over_connection_budget, schema_in_use};
pub use deletion::{CREATED_TOPICS, Cleanup, FINALIZER, GIVE_UP_AFTER};
pub use desired::{Children, Desired, Unwanted, desired_children};
pub use error::{Error, Step};
pub use run::run;

use apply::{apply_all, prune_child};
use lag_reading::observe_lag;
use observe::{
    max_workers, observe_database, observe_keda, observe_monitoring, observe_workers, read_workers,
};
use publish::{patch_status, publish};

use crate::autoscale::Autoscaler;
use crate::child_cache::ChildCache;
use crate::children::FIELD_MANAGER;
use crate::crd::PipelineDeployment;
use crate::discovery::Capabilities;
use crate::metrics::Metrics;
use crate::status::{self, AutoscaleObserved, Observed};
use crate::topic::Topics;

/// Shared state of all reconciles.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub topics: Topics,
    pub capabilities: Capabilities,
    /// Children as last seen and applied, to skip no-op applies.
    pub children: Arc<ChildCache>,
    /// Consecutive failures per object, for the error policy's exponential backoff.
    failures: Mutex<HashMap<ObjectRef<PipelineDeployment>, u32>>,
    /// Lag readings of every pipeline, rate windows of the autoscaled ones.
    pub autoscaler: Autoscaler,
    /// The latest lag reading per pipeline and when it was taken: a reconcile within
    /// [`lag_sample_interval`] of it (e.g. the one its own status patch triggers) reuses it.
    readings: Mutex<HashMap<ObjectRef<PipelineDeployment>, (Instant, AutoscaleObserved)>>,
    /// When each pipeline's lag was last Unknown (see [`decide_size`]).
    last_unknown: Mutex<HashMap<ObjectRef<PipelineDeployment>, Instant>>,
}

impl Context {
    pub fn new(client: Client, metrics: Arc<Metrics>, instance: Option<String>) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance,
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            capabilities: Capabilities::new(client.clone(), CAPABILITIES_TTL),
            topics: Topics::new(Duration::from_secs(5)),
            client,
            metrics,
            children: Arc::default(),
            failures: Mutex::default(),
            autoscaler: Autoscaler::default(),
            readings: Mutex::default(),
            last_unknown: Mutex::default(),
        }
    }

    /// Drops everything kept for the deleted pipeline `namespace/name`: its gauges, lag
    /// reading, last Unknown time and rate window.
    fn forget_pipeline(&self, namespace: &str, name: &str) {
        self.metrics.forget_pipeline(namespace, name);
        self.autoscaler.forget(namespace, name);
        let key = ObjectRef::<PipelineDeployment>::new(name).within(namespace);
        self.readings
            .lock()
            .expect("readings poisoned")
            .remove(&key);
        self.last_unknown
            .lock()
            .expect("last_unknown poisoned")
            .remove(&key);
    }
}

/// Requeue interval while something is still coming up or Kafka is unreachable.
const RETRY: Duration = Duration::from_secs(10);
/// How long the optional APIs the cluster serves are cached (see [`Capabilities`]).
pub const CAPABILITIES_TTL: Duration = Duration::from_secs(30);
/// How often the lag of a pipeline that is not autoscaled is read (status and lag alerts);
/// also the requeue interval of a healthy one (drift is caught by the owned-object watches).
pub const LAG_SAMPLE_INTERVAL: Duration = Duration::from_secs(30);
/// How often an autoscaled pipeline's lag is read (its reconcile is requeued this often).
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(10);

/// Reconciles one PipelineDeployment: topics → build the children → prune → apply → observe →
/// status.
#[tracing::instrument(skip_all, fields(ns = pd.namespace(), name = pd.name_any()))]
pub async fn reconcile(pd: Arc<PipelineDeployment>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.timer();
    let ns = pd.namespace().ok_or(Error::NoNamespace)?;
    if pd.metadata.deletion_timestamp.is_some() {
        return deletion::finish(&ctx, &ns, &pd).await;
    }
    deletion::sync_finalizer(&ctx, &ns, &pd).await?;
    let caps = ctx.capabilities.get().await;

    let mut observed = Observed {
        generation: pd.metadata.generation.unwrap_or_default(),
        ..Observed::default()
    };
    // The Kafka credentials of the operator's own clients (lag, topic), from the pipeline's Secrets.
    let kafka_auth = crate::kafka_auth::resolve(&ctx.client, &pd).await;
    // Before the children: see step 1 of the module doc. Reads only the spec and Secrets the
    // user made, nothing applied below.
    topic_step(&ctx, &ns, &pd, &kafka_auth, &mut observed).await;

    let mut children = desired_children(&pd, caps);
    // A schema another pipeline of this database already uses: no workers of this one may
    // write there, so its config and workers are left as they are (none, for a new one).
    let schema_taken = if pd.spec.postgres.external.is_some() {
        let all = Api::<PipelineDeployment>::namespaced(ctx.client.clone(), &ns)
            .list(&Default::default())
            .await
            .map_err(Error::ListPipelines)?;
        schema_in_use(&pd, &all.items).map(|other| {
            format!(
                "schema {} of this database is already used by pipeline {}: set spec.postgres.schema to another name (or leave it unset for one of this pipeline's own)",
                pd.schema(),
                other.name_any()
            )
        })
    } else {
        None
    };
    if schema_taken.is_some() {
        let names = crate::children::Names::of(&pd);
        children.apply.retain(|d| {
            !(d.kind() == "ConfigMap" && d.name() == names.config
                || d.kind() == "Deployment" && d.name() == names.worker)
        });
    }
    for unwanted in &children.prune {
        prune_child(&ctx, &ns, &pd, unwanted).await?;
    }
    let stored = apply_all(&ctx, &ns, &children.apply).await?;

    let rollout = match (&children.invalid_config, &schema_taken) {
        (None, None) => status::rollout(&observe_workers(&pd, &stored)?),
        (Some(invalid), _) => {
            observed.invalid_config = Some(invalid.to_string());
            read_workers(&ctx, &ns, &pd).await?
        }
        (None, Some(taken)) => {
            observed.database_waiting = Some((SCHEMA_IN_USE.into(), taken.clone()));
            observed.degraded = Some((SCHEMA_IN_USE.into(), taken.clone()));
            read_workers(&ctx, &ns, &pd).await?
        }
    };
    observed.set_rollout(rollout);
    ctx.metrics.observe_workers(
        &pd,
        rollout.desired_replicas,
        rollout.ready_replicas,
        max_workers(&pd),
    );
    observed.autoscale = Some(observe_lag(&ctx, &pd, rollout, &kafka_auth).await);
    observe_database(&pd, caps, &stored, &mut observed);
    if let Some(over) = over_connection_budget(&pd) {
        observed.degraded.get_or_insert(over);
    }
    observe_keda(&pd, caps, &mut observed);
    observe_monitoring(&pd, caps, &mut observed);
    // After the lag reading: it explains a refused connection from the topic or the lag.
    crate::kafka_auth::explain(&pd, &kafka_auth, &mut observed);

    let ready_now = patch_status(&ctx, &ns, &pd, &observed).await?;
    ctx.metrics.reconciliations.with_label_values(&["ok"]).inc();
    ctx.failures
        .lock()
        .expect("failures poisoned")
        .remove(&ObjectRef::from(pd.as_ref()));
    Ok(if pd.autoscaled() {
        Action::requeue(SAMPLE_INTERVAL)
    } else if !ready_now {
        Action::requeue(RETRY)
    } else {
        // The next lag reading; by then the capabilities cache has also expired, so
        // monitoring CRDs installed meanwhile are picked up without a restart.
        Action::requeue(LAG_SAMPLE_INTERVAL.min(CAPABILITIES_TTL))
    })
}

/// The topic step: ensures the pipeline's topics and records the outcome in `observed`.
/// Failures degrade the pipeline and retry; they do not stop the reconcile.
async fn topic_step(
    ctx: &Context,
    ns: &str,
    pd: &PipelineDeployment,
    kafka_auth: &Result<crate::kafka_auth::KafkaAuth, crate::kafka_auth::AuthError>,
    observed: &mut Observed,
) {
    let topic = ctx.topics.reconcile(pd, kafka_auth, observed).await;
    if topic.failed {
        ctx.metrics.failures.with_label_values(&["topic"]).inc();
    }
    if let Some(ev) = topic.event {
        if ev.reason == "TopicCreated" {
            // Only a topic the operator created goes with a `Delete` pipeline.
            // A failed record errs on the safe side: the topic is then kept.
            if let Err(e) = deletion::record_created_topic(ctx, ns, pd, &pd.spec.kafka.topic).await
            {
                warn!(error = %e, "could not record the created topic");
            }
        }
        publish(ctx, pd, EventType::Normal, ev.reason, ev.note).await;
    }
}

/// Logs and counts the failure, then retries with exponential backoff per object
/// (0.5 s, 1 s, 2 s … capped at 5 min).
pub fn error_policy(pd: Arc<PipelineDeployment>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics
        .reconciliations
        .with_label_values(&["error"])
        .inc();
    ctx.metrics
        .failures
        .with_label_values(&[err.kind().as_str()])
        .inc();
    let mut failures = ctx.failures.lock().expect("failures poisoned");
    let n = failures.entry(ObjectRef::from(pd.as_ref())).or_insert(0);
    *n = n.saturating_add(1);
    let delay = Duration::from_millis(500u64.saturating_mul(1 << (*n - 1).min(10)))
        .min(Duration::from_secs(300));
    warn!(ns = pd.namespace(), name = pd.name_any(), error = %err, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}
