//! The reconciler: build every child → server-side apply → remove children no longer wanted
//! → ensure the Kafka topic → patch status (and publish Events on transitions).
//!
//! Every apply uses one field manager and `force`: the operator is the authority on the fields
//! it sets, so a hand edit of one of them is taken back on the next reconcile. Fields it does
//! not set (e.g. `spec.replicas` under an HPA) stay with whoever set them.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, PartialObjectMeta, Patch, PatchParams,
};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tracing::{info, warn};

use crate::child_cache::{self, ChildCache};
use crate::children::{self, FIELD_MANAGER, MANAGED_SELECTOR, Names};
use crate::crd::{PipelineDeployment, PipelineDeploymentStatus, SecurityProtocol};
use crate::discovery::Capabilities;
use crate::metrics::Metrics;
use crate::status::{self, Observed};
use crate::topic::{TopicOutcome, TopicRequest, Topics};

/// A reconcile failure, named after the step that failed; `kind()` is the metric label.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to apply {kind} {name}: {source}")]
    Apply {
        kind: &'static str,
        name: String,
        source: kube::Error,
    },
    #[error("failed to delete {kind} {name}: {source}")]
    Prune {
        kind: &'static str,
        name: String,
        source: kube::Error,
    },
    #[error("failed to patch status: {0}")]
    Status(#[source] kube::Error),
    #[error("object has no namespace")]
    NoNamespace,
}

impl Error {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Apply { .. } => "apply",
            Self::Prune { .. } => "prune",
            Self::Status(_) => "status",
            Self::NoNamespace => "invalid_object",
        }
    }
}

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
}

impl Context {
    pub fn new(client: Client, metrics: Arc<Metrics>, instance: Option<String>) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance,
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            capabilities: Capabilities::new(client.clone(), Duration::from_secs(30)),
            topics: Topics::new(Duration::from_secs(5)),
            client,
            metrics,
            children: Arc::default(),
            failures: Mutex::default(),
        }
    }
}

/// Requeue interval of a healthy pipeline (drift is also caught by the owned-object watches).
const RESYNC: Duration = Duration::from_secs(300);
/// Requeue interval while something is still coming up or Kafka is unreachable.
const RETRY: Duration = Duration::from_secs(10);

/// Runs the controller until `shutdown` resolves. `namespace` limits it to one namespace.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    fn api<K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>>(
        c: &Client,
        ns: &Option<String>,
    ) -> Api<K> {
        match ns {
            Some(ns) => Api::namespaced(c.clone(), ns),
            None => Api::all(c.clone()),
        }
    }
    let owned = || watcher::Config::default().labels(MANAGED_SELECTOR);
    // Owned children are watched metadata-only (an Api of PartialObjectMeta), each stream
    // feeding the child cache before it triggers the owner's reconcile.
    fn meta_api<K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>>(
        c: &Client,
        ns: &Option<String>,
    ) -> Api<PartialObjectMeta<K>> {
        match ns {
            Some(ns) => Api::namespaced(c.clone(), ns),
            None => Api::all(c.clone()),
        }
    }
    let cache = &ctx.children;
    let mut controller = Controller::new(
        api::<PipelineDeployment>(&client, &namespace),
        watcher::Config::default().any_semantic(),
    )
    .owns_stream(tracked(cache, meta_api::<Deployment>(&client, &namespace)))
    .owns_stream(tracked(cache, meta_api::<ConfigMap>(&client, &namespace)))
    .owns_stream(tracked(cache, meta_api::<Service>(&client, &namespace)))
    .owns_stream(tracked(
        cache,
        meta_api::<ServiceAccount>(&client, &namespace),
    ))
    .owns_stream(tracked(
        cache,
        meta_api::<PodDisruptionBudget>(&client, &namespace),
    ));
    // Optional kinds are watched only if their CRDs exist now; a watch on a missing resource
    // would fail forever. (Created later, they are still applied and repaired on resync.)
    let caps = ctx.capabilities.get().await;
    for (present, ar) in [
        (caps.cnpg, children::cnpg::api_resource()),
        (
            caps.service_monitor,
            children::monitoring::service_monitor_resource(),
        ),
        (
            caps.prometheus_rule,
            children::monitoring::prometheus_rule_resource(),
        ),
    ] {
        if present {
            let api = match &namespace {
                Some(ns) => Api::<PartialObjectMeta<DynamicObject>>::namespaced_with(
                    client.clone(),
                    ns,
                    &ar,
                ),
                None => Api::<PartialObjectMeta<DynamicObject>>::all_with(client.clone(), &ar),
            };
            let stream = cache
                .track(&ar.kind, watcher::watcher(api, owned()))
                .touched_objects();
            controller = controller.owns_stream_with(stream, ar.clone());
        }
    }
    ctx.metrics
        .healthy
        .store(true, std::sync::atomic::Ordering::Relaxed);
    controller
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            match res {
                // A requeued pipeline that was deleted meanwhile: nothing to do.
                Ok(_) | Err(kube::runtime::controller::Error::ObjectNotFound(_)) => {}
                Err(e) => warn!(error = %e, "controller stream error"),
            }
        })
        .await;
}

/// The metadata watch of one owned kind, recorded in the child cache on its way to the trigger.
fn tracked<K>(
    cache: &Arc<ChildCache>,
    api: Api<PartialObjectMeta<K>>,
) -> impl futures::Stream<Item = Result<PartialObjectMeta<K>, watcher::Error>> + Send + use<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let events = watcher::watcher(api, watcher::Config::default().labels(MANAGED_SELECTOR));
    cache.track(&K::kind(&()), events).touched_objects()
}

/// Server-side applies `obj` (namespaced, static type) and returns the object as stored, or
/// `None` when the same object was applied before and the child has not changed since.
async fn apply<K>(ctx: &Context, ns: &str, obj: &K) -> Result<Option<K>, Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Serialize
        + DeserializeOwned
        + Clone
        + Debug,
{
    let name = obj.name_any();
    let key = child_cache::key(&K::kind(&()), ns, &name);
    let desired = child_cache::desired_hash(obj);
    if ctx.children.unchanged(&key, desired) {
        ctx.metrics.applies.with_label_values(&["skipped"]).inc();
        return Ok(None);
    }
    ctx.metrics.applies.with_label_values(&["applied"]).inc();
    let stored = Api::<K>::namespaced(ctx.client.clone(), ns)
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER)
                .force()
                .validation_strict(),
            &Patch::Apply(obj),
        )
        .await
        .map_err(|source| Error::Apply {
            kind: short_kind::<K>(),
            name,
            source,
        })?;
    ctx.children.record_applied(key, desired, stored.meta());
    Ok(Some(stored))
}

/// [`apply`] for objects without Rust types (CloudNativePG, Prometheus Operator).
async fn apply_dynamic(
    ctx: &Context,
    ns: &str,
    ar: &ApiResource,
    obj: &DynamicObject,
    kind: &'static str,
) -> Result<Option<DynamicObject>, Error> {
    let name = obj.name_any();
    let mut body = serde_json::to_value(obj).expect("object serializes");
    body["apiVersion"] = json!(ar.api_version);
    body["kind"] = json!(ar.kind);
    let key = child_cache::key(&ar.kind, ns, &name);
    let desired = child_cache::desired_hash(&body);
    if ctx.children.unchanged(&key, desired) {
        ctx.metrics.applies.with_label_values(&["skipped"]).inc();
        return Ok(None);
    }
    ctx.metrics.applies.with_label_values(&["applied"]).inc();
    let stored = Api::<DynamicObject>::namespaced_with(ctx.client.clone(), ns, ar)
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER)
                .force()
                .validation_strict(),
            &Patch::Apply(body),
        )
        .await
        .map_err(|source| Error::Apply { kind, name, source })?;
    ctx.children.record_applied(key, desired, &stored.metadata);
    Ok(Some(stored))
}

fn short_kind<K: Resource<DynamicType = ()>>() -> &'static str {
    match K::kind(&()).as_ref() {
        "Deployment" => "Deployment",
        "ConfigMap" => "ConfigMap",
        "Service" => "Service",
        "ServiceAccount" => "ServiceAccount",
        "PodDisruptionBudget" => "PodDisruptionBudget",
        _ => "object",
    }
}

/// Under autoscaling the operator does not own `spec.replicas`, so a new Deployment starts at
/// the API default of 1. Raise it to the floor with a plain merge patch under its own manager
/// (an update, not an apply): updates never conflict, so the autoscaler's later writes of the
/// field simply take it over, and the operator's applies never mention it.
async fn raise_to_min(
    client: &Client,
    ns: &str,
    d: &Deployment,
    min: i32,
) -> Result<Deployment, Error> {
    let name = d.name_any();
    let pp = PatchParams {
        field_manager: Some(format!("{FIELD_MANAGER}-floor")),
        ..PatchParams::default()
    };
    Api::<Deployment>::namespaced(client.clone(), ns)
        .patch(
            &name,
            &pp,
            &Patch::Merge(json!({ "spec": { "replicas": min } })),
        )
        .await
        .map_err(|source| Error::Apply {
            kind: "Deployment",
            name,
            source,
        })
}

/// Deletes `name` if it exists and this pipeline controls it (never someone else's object).
async fn prune(
    api: Api<DynamicObject>,
    name: &str,
    pd: &PipelineDeployment,
    kind: &'static str,
) -> Result<(), Error> {
    let err = |source| Error::Prune {
        kind,
        name: name.into(),
        source,
    };
    let Some(obj) = api.get_metadata_opt(name).await.map_err(err)? else {
        return Ok(());
    };
    let ours = obj
        .owner_references()
        .iter()
        .any(|o| Some(&o.uid) == pd.uid().as_ref() && o.controller == Some(true));
    if ours {
        api.delete(name, &DeleteParams::background())
            .await
            .map_err(err)?;
        info!(%name, kind, "removed child no longer wanted");
    }
    Ok(())
}

async fn publish(
    ctx: &Context,
    pd: &PipelineDeployment,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let ev = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &pd.object_ref(&())).await {
        warn!(error = %e, "failed to publish event");
    }
}

/// Reconciles one PipelineDeployment.
#[tracing::instrument(skip_all, fields(ns = pd.namespace(), name = pd.name_any()))]
pub async fn reconcile(pd: Arc<PipelineDeployment>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.timer();
    let ns = pd.namespace().ok_or(Error::NoNamespace)?;
    let client = &ctx.client;
    let c = ctx.as_ref();
    let names = Names::of(&pd);
    let caps = ctx.capabilities.get().await;
    let mut observed = Observed {
        generation: pd.metadata.generation.unwrap_or_default(),
        ..Observed::default()
    };

    // Children every pipeline has.
    let (config_map, config_hash) = children::config_map::build_config_map(&pd);
    apply(
        c,
        &ns,
        &children::service_account::build_service_account(&pd),
    )
    .await?;
    apply(c, &ns, &config_map).await?;
    let desired_deployment = children::deployment::build_deployment(&pd, &config_hash);
    let mut deployment = match apply(c, &ns, &desired_deployment).await? {
        Some(d) => d,
        // Unchanged spec: read the status fresh (the watches carry metadata only).
        None => Api::<Deployment>::namespaced(client.clone(), &ns)
            .get(&names.worker)
            .await
            .map_err(|source| Error::Apply {
                kind: "Deployment",
                name: names.worker.clone(),
                source,
            })?,
    };
    if pd.autoscaled() && deployment.spec.replicas.unwrap_or(1) < pd.spec.workers.min_replicas {
        deployment = raise_to_min(client, &ns, &deployment, pd.spec.workers.min_replicas).await?;
    }
    apply(c, &ns, &children::service::build_service(&pd)).await?;
    apply(c, &ns, &children::pdb::build_pdb(&pd)).await?;

    // Optional children: applied when wanted (and possible), pruned when not.
    let cm_api = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        &ns,
        &ApiResource::erase::<ConfigMap>(&()),
    );
    if pd.spec.monitoring.grafana_dashboard {
        apply(c, &ns, &children::dashboard::build_dashboard(&pd)).await?;
    } else {
        prune(cm_api, &names.dashboard, &pd, "ConfigMap").await?;
    }
    let sm = children::monitoring::service_monitor_resource();
    let pr = children::monitoring::prometheus_rule_resource();
    for (present, wanted, ar, name, kind) in [
        (
            caps.service_monitor,
            pd.spec.monitoring.service_monitor,
            &sm,
            pd.name_any(),
            "ServiceMonitor",
        ),
        (
            caps.prometheus_rule,
            pd.spec.monitoring.prometheus_rule,
            &pr,
            pd.name_any(),
            "PrometheusRule",
        ),
    ] {
        match (present, wanted) {
            (true, true) => {
                let obj = if kind == "ServiceMonitor" {
                    children::monitoring::build_service_monitor(&pd)
                } else {
                    children::monitoring::build_prometheus_rule(&pd)
                };
                apply_dynamic(c, &ns, ar, &obj, kind).await?;
            }
            (true, false) => {
                prune(
                    Api::namespaced_with(client.clone(), &ns, ar),
                    &name,
                    &pd,
                    kind,
                )
                .await?
            }
            (false, _) => {}
        }
    }
    let cnpg = children::cnpg::api_resource();
    match (children::cnpg::build_cnpg_cluster(&pd), caps.cnpg) {
        (Some(cluster), true) => {
            let stored = match apply_dynamic(c, &ns, &cnpg, &cluster, "Cluster").await? {
                Some(stored) => stored,
                // Unchanged spec: read the status (metadata watches do not carry it).
                None => Api::<DynamicObject>::namespaced_with(client.clone(), &ns, &cnpg)
                    .get(&names.database)
                    .await
                    .map_err(|source| Error::Apply {
                        kind: "Cluster",
                        name: names.database.clone(),
                        source,
                    })?,
            };
            let want = cluster.data["spec"]["instances"].as_i64().unwrap_or(1);
            let ready = stored.data["status"]["readyInstances"]
                .as_i64()
                .unwrap_or(0);
            if ready < want {
                observed.database_waiting = Some((
                    "DatabaseNotReady".into(),
                    format!(
                        "CloudNativePG cluster {}: {ready}/{want} instances ready",
                        names.database
                    ),
                ));
            }
        }
        (Some(_), false) => {
            let msg = "spec.postgres.cloudnativepg is set but the CloudNativePG CRDs (postgresql.cnpg.io/v1 Cluster) are not installed".to_string();
            observed.database_waiting = Some(("CloudNativePGMissing".into(), msg.clone()));
            observed.degraded = Some(("CloudNativePGMissing".into(), msg));
        }
        (None, true) => {
            prune(
                Api::namespaced_with(client.clone(), &ns, &cnpg),
                &names.database,
                &pd,
                "Cluster",
            )
            .await?
        }
        (None, false) => {}
    }

    // The topic: failures degrade the pipeline and retry; they do not stop the other steps.
    let prev_partitions = pd.status.as_ref().and_then(|s| s.topic_partitions);
    if pd.spec.kafka.manage_topic {
        if matches!(
            pd.spec.kafka.security_protocol,
            SecurityProtocol::Plaintext | SecurityProtocol::Ssl
        ) {
            let k = &pd.spec.kafka;
            let cfg = children::config_map::worker_config(&pd).kafka;
            let req = TopicRequest {
                bootstrap: k.bootstrap_servers.clone(),
                security_protocol: k.security_protocol.as_str().into(),
                topic: k.topic.clone(),
                partitions: k.partitions,
                replication_factor: k.replication_factor,
                companions: vec![cfg.dlq_topic(), cfg.alerts_topic()],
            };
            match ctx.topics.ensure(&req).await {
                Ok(outcome) => {
                    observed.topic_partitions = Some(outcome.partitions());
                    match outcome {
                        TopicOutcome::Created { partitions } => {
                            publish(
                                &ctx,
                                &pd,
                                EventType::Normal,
                                "TopicCreated",
                                format!("created topic {} with {partitions} partitions", k.topic),
                            )
                            .await
                        }
                        TopicOutcome::Expanded { from, to } => {
                            publish(
                                &ctx,
                                &pd,
                                EventType::Normal,
                                "TopicExpanded",
                                format!("topic {}: partitions {from} → {to}", k.topic),
                            )
                            .await
                        }
                        TopicOutcome::Unchanged { .. } => {}
                    }
                }
                Err(e) => {
                    ctx.metrics.failures.with_label_values(&["topic"]).inc();
                    observed.topic_error = Some(e.to_string());
                    observed.topic_partitions = prev_partitions;
                }
            }
        } else {
            // The operator holds no Kafka credentials (it never reads Secrets).
            observed.degraded.get_or_insert((
                "TopicNotManaged".into(),
                "spec.kafka.manageTopic needs a PLAINTEXT or SSL listener; set it to false for SASL clusters and create the topic elsewhere".into(),
            ));
        }
    }

    // Status.
    let dep_status = deployment.status.clone().unwrap_or_default();
    let dep_spec_replicas = deployment.spec.replicas.unwrap_or(1);
    observed.desired_replicas = dep_spec_replicas;
    observed.ready_replicas = dep_status.ready_replicas.unwrap_or(0);
    observed.rolled_out = dep_status.observed_generation >= deployment.metadata.generation
        && dep_status.updated_replicas.unwrap_or(0) >= dep_spec_replicas
        && dep_status.replicas.unwrap_or(0) <= dep_spec_replicas
        && dep_status.available_replicas.unwrap_or(0) >= dep_spec_replicas;
    let previous = pd.status.clone().unwrap_or_default();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let conditions = status::merge(
        &previous.conditions,
        status::conditions(&observed),
        observed.generation,
        now,
    );
    let new_status = PipelineDeploymentStatus {
        observed_generation: Some(observed.generation),
        conditions,
        desired_replicas: Some(observed.desired_replicas),
        ready_replicas: Some(observed.ready_replicas),
        topic_partitions: observed.topic_partitions,
        lag: previous.lag,
        database_service: Some(match &pd.spec.postgres.cloudnativepg {
            Some(_) => format!("{}-rw", names.database),
            None => "external".into(),
        }),
    };
    let ready_now = new_status.conditions[0].status == "True";
    if new_status != previous {
        let body = json!({
            "apiVersion": PipelineDeployment::api_version(&()),
            "kind": PipelineDeployment::kind(&()),
            "status": new_status,
        });
        Api::<PipelineDeployment>::namespaced(client.clone(), &ns)
            .patch_status(
                &pd.name_any(),
                &PatchParams::apply(FIELD_MANAGER)
                    .force()
                    .validation_strict(),
                &Patch::Apply(body),
            )
            .await
            .map_err(Error::Status)?;
        publish_transitions(&ctx, &pd, &previous, &new_status).await;
    }

    ctx.metrics.reconciliations.with_label_values(&["ok"]).inc();
    ctx.failures
        .lock()
        .expect("failures poisoned")
        .remove(&ObjectRef::from(pd.as_ref()));
    Ok(if ready_now {
        Action::requeue(RESYNC)
    } else {
        Action::requeue(RETRY)
    })
}

/// Events for notable transitions: became Ready, stopped being Ready, became Degraded.
async fn publish_transitions(
    ctx: &Context,
    pd: &PipelineDeployment,
    old: &PipelineDeploymentStatus,
    new: &PipelineDeploymentStatus,
) {
    let is_true = |st: &PipelineDeploymentStatus, t: &str| {
        st.conditions
            .iter()
            .any(|c| c.type_ == t && c.status == "True")
    };
    let find = |t: &str| {
        new.conditions
            .iter()
            .find(|c| c.type_ == t)
            .expect("all conditions are set")
    };
    let (ready, degraded) = (find("Ready"), find("Degraded"));
    if is_true(new, "Ready") && !is_true(old, "Ready") {
        publish(
            ctx,
            pd,
            EventType::Normal,
            &ready.reason,
            ready.message.clone(),
        )
        .await;
    } else if !is_true(new, "Ready") && is_true(old, "Ready") {
        publish(
            ctx,
            pd,
            EventType::Warning,
            &ready.reason,
            ready.message.clone(),
        )
        .await;
    }
    if is_true(new, "Degraded")
        && (!is_true(old, "Degraded")
            || old
                .conditions
                .iter()
                .any(|c| c.type_ == "Degraded" && c.reason != degraded.reason))
    {
        publish(
            ctx,
            pd,
            EventType::Warning,
            &degraded.reason,
            degraded.message.clone(),
        )
        .await;
    }
}

/// Logs and counts the failure, then retries with exponential backoff per object
/// (0.5 s, 1 s, 2 s … capped at 5 min).
pub fn error_policy(pd: Arc<PipelineDeployment>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics
        .reconciliations
        .with_label_values(&["error"])
        .inc();
    ctx.metrics.failures.with_label_values(&[err.kind()]).inc();
    let mut failures = ctx.failures.lock().expect("failures poisoned");
    let n = failures.entry(ObjectRef::from(pd.as_ref())).or_insert(0);
    *n = n.saturating_add(1);
    let delay = Duration::from_millis(500u64.saturating_mul(1 << (*n - 1).min(10)))
        .min(Duration::from_secs(300));
    warn!(ns = pd.namespace(), name = pd.name_any(), error = %err, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}
