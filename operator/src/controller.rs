//! The reconciler. One reconcile of a PipelineDeployment:
//!
//! 1. [`desired_children`] builds every child the pipeline should have ([`Desired`], in apply
//!    order) and names the ones it should not have ([`Unwanted`]);
//! 2. [`prune_child`] deletes each unwanted child this pipeline controls — first, so that a
//!    replaced autoscaler (HPA ↔ KEDA ScaledObject) is gone before its successor is applied:
//!    KEDA's admission webhook rejects a ScaledObject whose target another HPA scales;
//! 3. [`apply_child`] server-side applies each desired child — one path for every kind,
//!    typed or dynamic;
//! 4. the workers' rollout, the database and the Kafka topic (`topic::Topics::reconcile`) are
//!    observed, and the status is patched (with Events on transitions).
//!
//! Every apply uses one field manager and `force`: the operator is the authority on the fields
//! it sets, so a hand edit of one of them is taken back on the next reconcile. Fields it does
//! not set (e.g. `spec.replicas` under an HPA) stay with whoever set them.

use std::collections::HashMap;
use std::fmt::{self, Debug};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
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

use crate::autoscale::{Autoscaler, SizingOptions, Verdict};
use crate::child_cache::{self, ChildCache};
use crate::children::{self, FIELD_MANAGER, MANAGED_SELECTOR, Names, cnpg, keda, monitoring};
use crate::crd::{
    AutoscalingProvider, AutoscalingStatus, PipelineDeployment, PipelineDeploymentStatus,
};
use crate::discovery::{Capabilities, Caps};
use crate::metrics::Metrics;
use crate::status::{self, AutoscaleObserved, Observed};
use crate::topic::Topics;

/// What was being done to a child when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The server-side apply (or, for the worker Deployment, the autoscaling floor's patch).
    Apply,
    /// Reading the stored child back for its status.
    Read,
    /// Looking up or deleting a child that is no longer wanted.
    Prune,
}

impl Step {
    /// Prefix of the metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Apply => "apply",
            Self::Read => "read",
            Self::Prune => "prune",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Apply => "apply",
            Self::Read => "read",
            Self::Prune => "delete",
        })
    }
}

/// A reconcile failure, naming the step that failed; `kind()` is the metric label.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A step on one child. `kind` is a kind name fixed in the code (`Desired` / `Unwanted`),
    /// never one read from the cluster, so the labels stay a bounded set.
    #[error("failed to {step} {kind} {name}: {source}")]
    Child {
        kind: &'static str,
        name: String,
        step: Step,
        source: kube::Error,
    },
    #[error("failed to patch status: {0}")]
    Status(#[source] kube::Error),
    #[error("object has no namespace")]
    NoNamespace,
}

impl Error {
    /// The `error` label of the failure metric: `<step>_<kind>` for a child (`apply_deployment`,
    /// `read_cluster`, `prune_servicemonitor`, …), else `status` or `invalid_object`. (Topic
    /// failures do not fail the reconcile; they are counted as `topic` where they happen.)
    pub fn kind(&self) -> String {
        match self {
            Self::Child { kind, step, .. } => {
                format!("{}_{}", step.label(), kind.to_ascii_lowercase())
            }
            Self::Status(_) => "status".into(),
            Self::NoNamespace => "invalid_object".into(),
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
    ))
    .owns_stream(tracked(
        cache,
        meta_api::<HorizontalPodAutoscaler>(&client, &namespace),
    ));
    // Optional kinds are watched only if their CRDs exist now; a watch on a missing resource
    // would fail forever. (Created later, they are still applied and repaired on resync.)
    let caps = ctx.capabilities.get().await;
    for (present, ar) in [
        (caps.cnpg, children::cnpg::api_resource()),
        (caps.keda, children::keda::api_resource()),
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
    // What is kept per pipeline (gauges, lag readings, rate windows) goes away when it is
    // deleted: at once when a requeue finds the pipeline gone, and within a sweep interval
    // otherwise.
    let sweeper = tokio::spawn(sweep_deleted_pipelines(ctx.clone(), controller.store()));
    let forget = ctx.clone();
    controller
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|res| {
            let forget = forget.clone();
            async move {
                match res {
                    Ok(_) => {}
                    // A requeued pipeline that was deleted meanwhile.
                    Err(kube::runtime::controller::Error::ObjectNotFound(obj)) => {
                        forget.forget_pipeline(obj.namespace.as_deref().unwrap_or(""), &obj.name);
                    }
                    Err(e) => warn!(error = %e, "controller stream error"),
                }
            }
        })
        .await;
    sweeper.abort();
}

/// How often the gauges of deleted pipelines are looked for.
const SWEEP_INTERVAL: Duration = Duration::from_secs(30);

/// Forgets the pipelines no longer in `store` (once it has synced). Every pipeline the
/// operator keeps state for has gauges, so the gauges list them all.
async fn sweep_deleted_pipelines(
    ctx: Arc<Context>,
    store: kube::runtime::reflector::Store<PipelineDeployment>,
) {
    if store.wait_until_ready().await.is_err() {
        return;
    }
    loop {
        tokio::time::sleep(SWEEP_INTERVAL).await;
        for (ns, name) in ctx.metrics.pipelines() {
            if store.get(&ObjectRef::new(&name).within(&ns)).is_none() {
                ctx.forget_pipeline(&ns, &name);
            }
        }
    }
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

/// A child the pipeline should have, as [`apply_child`] sends it: typed objects and dynamic
/// ones (kinds the operator has no Rust types for, whose CRDs may be absent) alike.
#[derive(Debug, Clone)]
pub struct Desired {
    /// Kind name for errors and metric labels.
    kind: &'static str,
    resource: ApiResource,
    name: String,
    /// The apply body, `apiVersion` and `kind` included.
    body: serde_json::Value,
    /// Hand the stored object back, read fresh when the apply is skipped as unchanged.
    observe: bool,
}

impl Desired {
    /// A child with a Rust type (`k8s_openapi`).
    pub fn typed<K>(obj: K) -> Self
    where
        K: k8s_openapi::Resource<Scope = NamespaceResourceScope>
            + Resource<DynamicType = ()>
            + Serialize,
    {
        let name = obj.name_any();
        Self::new(K::KIND, ApiResource::erase::<K>(&()), name, &obj)
    }

    /// A child without a Rust type, of the API `resource`; `kind` names it in errors and labels.
    pub fn dynamic(resource: ApiResource, obj: DynamicObject, kind: &'static str) -> Self {
        let name = obj.name_any();
        Self::new(kind, resource, name, &obj)
    }

    fn new(kind: &'static str, resource: ApiResource, name: String, obj: &impl Serialize) -> Self {
        let mut body = serde_json::to_value(obj).expect("object serializes");
        body["apiVersion"] = json!(resource.api_version);
        body["kind"] = json!(resource.kind);
        Self {
            kind,
            resource,
            name,
            body,
            observe: false,
        }
    }

    /// Reconcile reads this child's status: [`apply_child`] returns it as stored.
    pub fn observed(mut self) -> Self {
        self.observe = true;
        self
    }

    pub fn kind(&self) -> &'static str {
        self.kind
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn failed(&self, step: Step, source: kube::Error) -> Error {
        Error::Child {
            kind: self.kind,
            name: self.name.clone(),
            step,
            source,
        }
    }
}

/// A child the pipeline should not have (any more): deleted if it exists and this pipeline
/// controls it.
#[derive(Debug, Clone)]
pub struct Unwanted {
    kind: &'static str,
    resource: ApiResource,
    name: String,
}

impl Unwanted {
    pub fn typed<K>(name: impl Into<String>) -> Self
    where
        K: k8s_openapi::Resource<Scope = NamespaceResourceScope> + Resource<DynamicType = ()>,
    {
        Self::dynamic(ApiResource::erase::<K>(&()), name, K::KIND)
    }

    pub fn dynamic(resource: ApiResource, name: impl Into<String>, kind: &'static str) -> Self {
        Self {
            kind,
            resource,
            name: name.into(),
        }
    }

    pub fn kind(&self) -> &'static str {
        self.kind
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Every child of a pipeline: what to apply (in this order) and what to remove.
#[derive(Debug, Default)]
pub struct Children {
    pub apply: Vec<Desired>,
    pub prune: Vec<Unwanted>,
}

impl Children {
    fn want(&mut self, child: Desired) {
        self.apply.push(child);
    }

    /// An optional child: applied when `desired` is `Some`, else `unwanted` is pruned.
    fn want_or_prune(&mut self, desired: Option<Desired>, unwanted: Unwanted) {
        match desired {
            Some(d) => self.apply.push(d),
            None => self.prune.push(unwanted),
        }
    }
}

/// All children of `pd`. Kinds whose CRDs the cluster does not serve (`caps`) are neither
/// applied nor pruned; `observe_database` reports a wanted-but-missing CloudNativePG and
/// `observe_keda` a wanted-but-missing KEDA, `observe_monitoring` missing Prometheus Operator
/// CRDs.
pub fn desired_children(pd: &PipelineDeployment, caps: Caps) -> Children {
    let names = Names::of(pd);
    let mut c = Children::default();

    // Children every pipeline has.
    let (config_map, config_hash) = children::config_map::build_config_map(pd);
    c.want(Desired::typed(
        children::service_account::build_service_account(pd),
    ));
    c.want(Desired::typed(config_map));
    c.want(Desired::typed(children::deployment::build_deployment(pd, &config_hash)).observed());
    c.want(Desired::typed(children::service::build_service(pd)));
    c.want(Desired::typed(children::pdb::build_pdb(pd)));
    // The HPA's ceiling follows the partitions the topic has (status), not only the spec.
    let partitions = pd
        .status
        .as_ref()
        .and_then(|s| s.topic_partitions)
        .unwrap_or(pd.spec.kafka.partitions);
    // The autoscaler: an HPA on the external metric, or (provider KEDA) a ScaledObject below.
    let provider = pd
        .spec
        .autoscaling
        .as_ref()
        .map(|a| a.provider)
        .unwrap_or_default();
    c.want_or_prune(
        (pd.autoscaled() && provider == AutoscalingProvider::Hpa)
            .then(|| Desired::typed(children::hpa::build_hpa(pd, partitions))),
        Unwanted::typed::<HorizontalPodAutoscaler>(&names.worker),
    );

    // Optional children: applied when wanted (and possible), pruned when not.
    let mon = &pd.spec.monitoring;
    c.want_or_prune(
        mon.grafana_dashboard
            .then(|| Desired::typed(children::dashboard::build_dashboard(pd))),
        Unwanted::typed::<ConfigMap>(&names.dashboard),
    );
    if caps.service_monitor {
        let ar = monitoring::service_monitor_resource();
        c.want_or_prune(
            mon.service_monitor.then(|| {
                Desired::dynamic(
                    ar.clone(),
                    monitoring::build_service_monitor(pd),
                    "ServiceMonitor",
                )
            }),
            Unwanted::dynamic(ar, pd.name_any(), "ServiceMonitor"),
        );
    }
    if caps.prometheus_rule {
        let ar = monitoring::prometheus_rule_resource();
        c.want_or_prune(
            mon.prometheus_rule.then(|| {
                Desired::dynamic(
                    ar.clone(),
                    monitoring::build_prometheus_rule(pd),
                    "PrometheusRule",
                )
            }),
            Unwanted::dynamic(ar, pd.name_any(), "PrometheusRule"),
        );
    }
    if caps.keda {
        let ar = keda::api_resource();
        c.want_or_prune(
            (pd.autoscaled() && provider == AutoscalingProvider::Keda).then(|| {
                Desired::dynamic(
                    ar.clone(),
                    keda::build_scaled_object(pd, partitions, &keda::operator_namespace()),
                    "ScaledObject",
                )
            }),
            Unwanted::dynamic(ar, &names.worker, "ScaledObject"),
        );
    }
    if caps.cnpg {
        let ar = cnpg::api_resource();
        c.want_or_prune(
            cnpg::build_cnpg_cluster(pd)
                .map(|cluster| Desired::dynamic(ar.clone(), cluster, "Cluster").observed()),
            Unwanted::dynamic(ar, &names.database, "Cluster"),
        );
    }
    c
}

/// The observed children ([`Desired::observed`]), each with its object as stored.
#[derive(Default)]
struct Stored<'a>(Vec<(&'a Desired, DynamicObject)>);

impl<'a> Stored<'a> {
    /// The desired and the stored `kind` named `name`, if it was applied as observed.
    fn get(&self, kind: &str, name: &str) -> Option<&(&'a Desired, DynamicObject)> {
        self.0
            .iter()
            .find(|(d, _)| d.kind == kind && d.name == name)
    }

    /// The stored `K` named `name`, parsed into its type.
    fn typed<K>(&self, name: &str) -> Option<Result<K, Error>>
    where
        K: k8s_openapi::Resource + DeserializeOwned,
    {
        let (desired, stored) = self.get(K::KIND, name)?;
        Some(
            serde_json::to_value(stored)
                .and_then(serde_json::from_value)
                .map_err(|e| desired.failed(Step::Read, kube::Error::SerdeError(e))),
        )
    }
}

/// Applies every desired child in order; returns the observed ones as stored.
async fn apply_all<'a>(
    ctx: &Context,
    ns: &str,
    desired: &'a [Desired],
) -> Result<Stored<'a>, Error> {
    let mut stored = Stored::default();
    for d in desired {
        if let Some(obj) = apply_child(ctx, ns, d).await? {
            stored.0.push((d, obj));
        }
    }
    Ok(stored)
}

/// The one apply path of every child: a server-side apply, skipped when the same object was
/// applied before and the child has not changed since. Returns the stored object of an
/// [observed](Desired::observed) child (read fresh when the apply was skipped: the watches
/// carry metadata only), `None` for the others.
async fn apply_child(ctx: &Context, ns: &str, d: &Desired) -> Result<Option<DynamicObject>, Error> {
    let api = Api::<DynamicObject>::namespaced_with(ctx.client.clone(), ns, &d.resource);
    let key = child_cache::key(&d.resource.kind, ns, &d.name);
    let desired = child_cache::desired_hash(&d.body);
    if ctx.children.unchanged(&key, desired) {
        ctx.metrics.applies.with_label_values(&["skipped"]).inc();
        if !d.observe {
            return Ok(None);
        }
        let stored = api
            .get(&d.name)
            .await
            .map_err(|e| d.failed(Step::Read, e))?;
        return Ok(Some(stored));
    }
    ctx.metrics.applies.with_label_values(&["applied"]).inc();
    let stored = api
        .patch(
            &d.name,
            &PatchParams::apply(FIELD_MANAGER)
                .force()
                .validation_strict(),
            &Patch::Apply(&d.body),
        )
        .await
        .map_err(|e| d.failed(Step::Apply, e))?;
    ctx.children.record_applied(key, desired, &stored.metadata);
    Ok(d.observe.then_some(stored))
}

/// Deletes the unwanted child if it exists and this pipeline controls it (never someone
/// else's object).
async fn prune_child(
    ctx: &Context,
    ns: &str,
    pd: &PipelineDeployment,
    u: &Unwanted,
) -> Result<(), Error> {
    let api = Api::<DynamicObject>::namespaced_with(ctx.client.clone(), ns, &u.resource);
    let (name, kind) = (u.name.as_str(), u.kind);
    let err = |source| Error::Child {
        kind,
        name: name.into(),
        step: Step::Prune,
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

/// The worker Deployment as stored. (Under autoscaling its HPA keeps it within
/// minReplicas..maxReplicas; the operator never writes its `spec.replicas`.)
fn observe_workers(pd: &PipelineDeployment, stored: &Stored<'_>) -> Result<Deployment, Error> {
    stored
        .typed::<Deployment>(&Names::of(pd).worker)
        .expect("the worker Deployment is always desired, as observed")
}

/// How often the lag of a pipeline is read: every [`SAMPLE_INTERVAL`] when it is autoscaled,
/// every [`LAG_SAMPLE_INTERVAL`] otherwise (for the status and the lag alerts only).
fn lag_sample_interval(pd: &PipelineDeployment) -> Duration {
    if pd.autoscaled() {
        SAMPLE_INTERVAL
    } else {
        LAG_SAMPLE_INTERVAL
    }
}

/// Reads the lag of a pipeline (at most every [`lag_sample_interval`]) and, when it is
/// autoscaled, sizes it: what the status shows, the lag gauges export and the external
/// metric serves. The lag is read for every pipeline so that the lag alerts, which use the
/// operator's gauges, still fire when every worker is down.
async fn observe_lag(
    ctx: &Context,
    pd: &PipelineDeployment,
    rollout: status::Rollout,
) -> AutoscaleObserved {
    let key = ObjectRef::from(pd);
    let cached = ctx
        .readings
        .lock()
        .expect("readings poisoned")
        .get(&key)
        .cloned();
    if let Some((at, reading)) = cached
        && at.elapsed() < lag_sample_interval(pd)
        && reading.status.is_some() == pd.autoscaled()
    {
        return reading;
    }
    let obs = ctx.autoscaler.observe(pd, rollout.ready_replicas).await;
    let unknown = obs.lag.as_result().err().map(str::to_owned);
    let status = if pd.autoscaled() {
        Some(decide_size(ctx, pd, rollout, &obs, unknown.as_deref()))
    } else {
        ctx.last_unknown
            .lock()
            .expect("last_unknown poisoned")
            .remove(&key);
        None
    };
    let reading = AutoscaleObserved {
        lag: obs.total_lag(),
        lag_seconds: obs.time_lag_seconds(),
        unknown,
        status,
    };
    ctx.metrics.observe_autoscaling(pd, &reading);
    ctx.readings
        .lock()
        .expect("readings poisoned")
        .insert(key, (Instant::now(), reading.clone()));
    reading
}

/// The autoscaler's decision for an autoscaled pipeline, from a fresh lag reading.
fn decide_size(
    ctx: &Context,
    pd: &PipelineDeployment,
    rollout: status::Rollout,
    obs: &crate::autoscale::Observation,
    unknown: Option<&str>,
) -> AutoscalingStatus {
    let key = ObjectRef::from(pd);
    let current = rollout.desired_replicas;
    let verdict = Autoscaler::decide(
        pd,
        obs,
        current,
        !rollout.rolled_out,
        &SizingOptions {
            target_utilisation: pd
                .spec
                .autoscaling
                .as_ref()
                .map_or(SizingOptions::default().target_utilisation, |a| {
                    a.target_utilization
                }),
            connection_budget: pd.spec.postgres.connection_budget,
        },
    );
    let (mut needed, mut reason) = match (&verdict, unknown) {
        (_, Some(why)) => (None, format!("lag unknown: {why}")),
        (Verdict::Scale(d), None) => (Some(d.desired), d.to_string()),
        (Verdict::Hold(h), None) => (Some(verdict.replicas(current)), h.to_string()),
    };
    // An outage longer than the HPA's scale-down window empties the window of the sizes
    // recommended before it, so the first reading after it would scale down at once, on rates
    // measured across a restart and a rebalance. Hold the size for one window instead.
    let window = Duration::from_secs(
        pd.spec
            .autoscaling
            .as_ref()
            .map_or(0, |a| a.scale_down_stabilization_seconds.max(0) as u64),
    );
    let since_unknown = {
        let mut last = ctx.last_unknown.lock().expect("last_unknown poisoned");
        if unknown.is_some() {
            last.insert(key.clone(), Instant::now());
        }
        last.get(&key).map(Instant::elapsed)
    };
    if let (Some(n), Some(since)) = (needed, since_unknown)
        && unknown.is_none()
        && since < window
        && n < current
    {
        needed = Some(current);
        reason = format!(
            "{current} workers held: the lag was unknown {}s ago, within the {}s scale-down window ({reason})",
            since.as_secs(),
            window.as_secs()
        );
    }
    let rates = &obs.rates;
    AutoscalingStatus {
        sampled_at: k8s_openapi::jiff::Timestamp::now()
            .round(k8s_openapi::jiff::Unit::Second)
            .unwrap_or_else(|_| k8s_openapi::jiff::Timestamp::now())
            .to_string(),
        needed_workers: needed,
        reason,
        input_rate: rates.input.map(round2),
        processing_rate: rates.processing.map(round2),
        per_worker_rate: rates.per_worker.map(|p| round2(p.records_per_sec)),
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Why the database is not usable yet: CloudNativePG wanted but not installed, or its Cluster
/// not ready.
fn observe_database(
    pd: &PipelineDeployment,
    caps: Caps,
    stored: &Stored<'_>,
    observed: &mut Observed,
) {
    if pd.spec.postgres.cloudnativepg.is_none() {
        return;
    }
    if !caps.cnpg {
        let msg = "spec.postgres.cloudnativepg is set but the CloudNativePG CRDs (postgresql.cnpg.io/v1 Cluster) are not installed".to_string();
        observed.database_waiting = Some(("CloudNativePGMissing".into(), msg.clone()));
        observed.degraded = Some(("CloudNativePGMissing".into(), msg));
        return;
    }
    let name = Names::of(pd).database;
    let (desired, cluster) = stored
        .get("Cluster", &name)
        .expect("the CloudNativePG Cluster is desired, as observed, when its CRD is installed");
    let want = desired.body["spec"]["instances"].as_i64().unwrap_or(1);
    let ready = cluster.data["status"]["readyInstances"]
        .as_i64()
        .unwrap_or(0);
    if ready < want {
        observed.database_waiting = Some((
            "DatabaseNotReady".into(),
            format!("CloudNativePG cluster {name}: {ready}/{want} instances ready"),
        ));
    }
}

/// An autoscaled pipeline with `provider: KEDA` in a cluster without KEDA's CRDs: nothing
/// scales its workers.
fn observe_keda(pd: &PipelineDeployment, caps: Caps, observed: &mut Observed) {
    let keda = pd
        .spec
        .autoscaling
        .as_ref()
        .is_some_and(|a| a.enabled && a.provider == AutoscalingProvider::Keda);
    if keda && !caps.keda {
        observed.degraded.get_or_insert((
            "KEDAMissing".into(),
            "spec.autoscaling.provider is KEDA but the KEDA CRDs (keda.sh/v1alpha1 ScaledObject) are not installed: nothing scales the workers".into(),
        ));
    }
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

/// Reconciles one PipelineDeployment: build the children → apply → prune → observe → status.
#[tracing::instrument(skip_all, fields(ns = pd.namespace(), name = pd.name_any()))]
pub async fn reconcile(pd: Arc<PipelineDeployment>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.timer();
    let ns = pd.namespace().ok_or(Error::NoNamespace)?;
    let caps = ctx.capabilities.get().await;

    let children = desired_children(&pd, caps);
    for unwanted in &children.prune {
        prune_child(&ctx, &ns, &pd, unwanted).await?;
    }
    let stored = apply_all(&ctx, &ns, &children.apply).await?;

    let mut observed = Observed {
        generation: pd.metadata.generation.unwrap_or_default(),
        ..Observed::default()
    };
    let deployment = observe_workers(&pd, &stored)?;
    let rollout = status::rollout(&deployment);
    observed.set_rollout(rollout);
    ctx.metrics.observe_workers(
        &pd,
        rollout.desired_replicas,
        rollout.ready_replicas,
        max_workers(&pd),
    );
    observed.autoscale = Some(observe_lag(&ctx, &pd, rollout).await);
    observe_database(&pd, caps, &stored, &mut observed);
    observe_keda(&pd, caps, &mut observed);
    observe_monitoring(&pd, caps, &mut observed);
    // The topic: failures degrade the pipeline and retry; they do not stop the reconcile.
    let topic = ctx.topics.reconcile(&pd, &mut observed).await;
    if topic.failed {
        ctx.metrics.failures.with_label_values(&["topic"]).inc();
    }
    if let Some(ev) = topic.event {
        publish(&ctx, &pd, EventType::Normal, ev.reason, ev.note).await;
    }

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

/// The most workers `pd` may run: the autoscaler's maximum as its HPA / ScaledObject gets it,
/// or the fixed replica count.
fn max_workers(pd: &PipelineDeployment) -> i32 {
    if pd.autoscaled() {
        let partitions = pd
            .status
            .as_ref()
            .and_then(|s| s.topic_partitions)
            .unwrap_or(pd.spec.kafka.partitions);
        children::hpa::max_replicas(pd, partitions)
    } else {
        pd.spec.workers.min_replicas
    }
}

/// Whether the ServiceMonitor and PrometheusRule the spec asks for can exist: the
/// `MonitoringReady` condition. `None` when the spec asks for neither.
fn observe_monitoring(pd: &PipelineDeployment, caps: Caps, observed: &mut Observed) {
    let mon = &pd.spec.monitoring;
    if !mon.service_monitor && !mon.prometheus_rule {
        return;
    }
    let missing: Vec<String> = [
        (
            mon.service_monitor && !caps.service_monitor,
            monitoring::service_monitor_resource(),
        ),
        (
            mon.prometheus_rule && !caps.prometheus_rule,
            monitoring::prometheus_rule_resource(),
        ),
    ]
    .into_iter()
    .filter(|(missing, _)| *missing)
    .map(|(_, ar)| monitoring::crd_name(&ar))
    .collect();
    observed.monitoring = Some(if missing.is_empty() {
        Ok(())
    } else {
        Err(missing.join(", "))
    });
}

/// Writes the status `observed` calls for, if it changed, and publishes the Events of its
/// transitions. Returns whether the pipeline is Ready.
async fn patch_status(
    ctx: &Context,
    ns: &str,
    pd: &PipelineDeployment,
    observed: &Observed,
) -> Result<bool, Error> {
    let previous = pd.status.clone().unwrap_or_default();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let new_status = status::next(pd, &previous, observed, now);
    let ready_now = new_status.conditions[0].status == "True";
    if new_status != previous {
        let body = json!({
            "apiVersion": PipelineDeployment::api_version(&()),
            "kind": PipelineDeployment::kind(&()),
            "status": new_status,
        });
        Api::<PipelineDeployment>::namespaced(ctx.client.clone(), ns)
            .patch_status(
                &pd.name_any(),
                &PatchParams::apply(FIELD_MANAGER)
                    .force()
                    .validation_strict(),
                &Patch::Apply(body),
            )
            .await
            .map_err(Error::Status)?;
        publish_transitions(ctx, pd, &previous, &new_status).await;
    }
    Ok(ready_now)
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
    // Monitoring: a Warning when the Prometheus Operator CRDs turn out missing (once, not on
    // every reconcile), a Normal Event when they appear.
    let monitoring = |st: &PipelineDeploymentStatus| {
        st.conditions
            .iter()
            .find(|c| c.type_ == "MonitoringReady")
            .map(|c| (c.status.clone(), c.message.clone()))
    };
    if let Some(now) = new.conditions.iter().find(|c| c.type_ == "MonitoringReady") {
        let before = monitoring(old);
        if now.status == "False" && before != Some((now.status.clone(), now.message.clone())) {
            publish(
                ctx,
                pd,
                EventType::Warning,
                &now.reason,
                now.message.clone(),
            )
            .await;
        } else if now.status == "True" && before.is_some_and(|(s, _)| s == "False") {
            publish(ctx, pd, EventType::Normal, &now.reason, now.message.clone()).await;
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::children::testing::{BASIC, pipeline};

    fn kinds<'a>(xs: impl IntoIterator<Item = (&'static str, &'a str)>) -> Vec<String> {
        xs.into_iter().map(|(k, n)| format!("{k}/{n}")).collect()
    }

    fn applied(c: &Children) -> Vec<String> {
        kinds(c.apply.iter().map(|d| (d.kind(), d.name())))
    }

    fn pruned(c: &Children) -> Vec<String> {
        kinds(c.prune.iter().map(|u| (u.kind(), u.name())))
    }

    const ALL: Caps = Caps {
        cnpg: true,
        service_monitor: true,
        prometheus_rule: true,
        keda: true,
    };

    #[test]
    fn every_pipeline_has_the_core_children_in_order() {
        let pd = pipeline(BASIC);
        let c = desired_children(&pd, Caps::default());
        assert_eq!(
            applied(&c),
            [
                "ServiceAccount/payments-worker",
                "ConfigMap/payments-config",
                "Deployment/payments-worker",
                "Service/payments-metrics",
                "PodDisruptionBudget/payments-worker",
                "ConfigMap/payments-dashboard",
            ]
        );
        // Optional kinds without their CRDs: neither applied nor pruned. Not autoscaled: no HPA.
        assert_eq!(pruned(&c), ["HorizontalPodAutoscaler/payments-worker"]);
        let observed: Vec<_> = c.apply.iter().filter(|d| d.observe).collect();
        assert_eq!(observed.len(), 1);
        assert_eq!(observed[0].kind(), "Deployment");
        let dep = &c.apply[2];
        assert_eq!(
            (&dep.body["apiVersion"], &dep.body["kind"]),
            (&json!("apps/v1"), &json!("Deployment"))
        );
        assert_eq!(dep.resource.plural, "deployments");
    }

    #[test]
    fn optional_children_follow_the_spec_when_their_crds_exist() {
        let mut pd = pipeline(BASIC);
        pd.spec.postgres.external = None;
        pd.spec.postgres.cloudnativepg = Some(serde_json::from_value(json!({})).unwrap());
        let c = desired_children(&pd, ALL);
        assert_eq!(
            applied(&c)[5..],
            [
                "ConfigMap/payments-dashboard",
                "ServiceMonitor/payments",
                "PrometheusRule/payments",
                "Cluster/payments-db",
            ]
        );
        assert_eq!(
            pruned(&c),
            [
                "HorizontalPodAutoscaler/payments-worker",
                "ScaledObject/payments-worker"
            ]
        );
        let cluster = c.apply.last().unwrap();
        assert!(cluster.observe);
        assert_eq!(cluster.body["apiVersion"], "postgresql.cnpg.io/v1");
        assert_eq!(cluster.body["spec"]["instances"], 2);
        assert_eq!(c.apply[6].body["kind"], "ServiceMonitor");

        let mut off = pipeline(BASIC);
        off.spec.monitoring.grafana_dashboard = false;
        off.spec.monitoring.service_monitor = false;
        off.spec.monitoring.prometheus_rule = false;
        let c = desired_children(&off, ALL);
        assert_eq!(applied(&c).len(), 5);
        assert_eq!(
            pruned(&c),
            [
                "HorizontalPodAutoscaler/payments-worker",
                "ConfigMap/payments-dashboard",
                "ServiceMonitor/payments",
                "PrometheusRule/payments",
                "ScaledObject/payments-worker",
                "Cluster/payments-db",
            ]
        );
        assert_eq!(c.prune[1].resource.plural, "configmaps");
        // Without the CRDs only the HPA and the dashboard (a ConfigMap) are pruned.
        assert_eq!(
            pruned(&desired_children(&off, Caps::default())),
            [
                "HorizontalPodAutoscaler/payments-worker",
                "ConfigMap/payments-dashboard"
            ]
        );
        // Autoscaled: the HPA comes right after the PodDisruptionBudget.
        let mut auto = pipeline(BASIC);
        auto.spec.workers.max_replicas = 4;
        auto.spec.autoscaling = Some(crate::crd::AutoscalingSpec {
            enabled: true,
            ..Default::default()
        });
        assert_eq!(
            applied(&desired_children(&auto, Caps::default()))[5],
            "HorizontalPodAutoscaler/payments-worker"
        );
    }

    #[test]
    fn provider_keda_swaps_the_hpa_for_a_scaled_object_or_degrades_without_keda() {
        let mut pd = pipeline(BASIC);
        pd.spec.monitoring.grafana_dashboard = false;
        pd.spec.autoscaling = Some(crate::crd::AutoscalingSpec {
            enabled: true,
            provider: AutoscalingProvider::Keda,
            ..Default::default()
        });
        let only_keda = Caps {
            keda: true,
            ..Caps::default()
        };
        let c = desired_children(&pd, only_keda);
        assert_eq!(applied(&c)[5..], ["ScaledObject/payments-worker"]);
        assert_eq!(
            pruned(&c),
            [
                "HorizontalPodAutoscaler/payments-worker",
                "ConfigMap/payments-dashboard"
            ]
        );
        let so = c.apply.last().unwrap();
        assert_eq!(so.body["apiVersion"], "keda.sh/v1alpha1");
        assert_eq!(so.resource.plural, "scaledobjects");
        assert_eq!(so.body["spec"]["scaleTargetRef"]["name"], "payments-worker");
        let mut o = Observed::default();
        observe_keda(&pd, only_keda, &mut o);
        assert_eq!(o.degraded, None);

        // KEDA not installed: no autoscaler at all, and the pipeline says why.
        let c = desired_children(&pd, Caps::default());
        assert_eq!(applied(&c).len(), 5);
        assert_eq!(pruned(&c)[0], "HorizontalPodAutoscaler/payments-worker");
        let mut o = Observed::default();
        observe_keda(&pd, Caps::default(), &mut o);
        assert_eq!(o.degraded.unwrap().0, "KEDAMissing");

        // Back to the HPA (the default provider): the ScaledObject is pruned.
        pd.spec.autoscaling.as_mut().unwrap().provider = AutoscalingProvider::Hpa;
        let c = desired_children(&pd, only_keda);
        assert_eq!(
            applied(&c)[5..],
            ["HorizontalPodAutoscaler/payments-worker"]
        );
        assert!(pruned(&c).contains(&"ScaledObject/payments-worker".to_string()));
        let mut o = Observed::default();
        observe_keda(&pd, Caps::default(), &mut o);
        assert_eq!(o.degraded, None);
    }

    #[test]
    fn cloudnativepg_missing_degrades_and_a_starting_cluster_waits() {
        let mut pd = pipeline(BASIC);
        pd.spec.postgres.external = None;
        pd.spec.postgres.cloudnativepg =
            Some(serde_json::from_value(json!({"readReplicas": 2})).unwrap());

        let mut o = Observed::default();
        observe_database(&pd, Caps::default(), &Stored::default(), &mut o);
        assert_eq!(o.database_waiting.unwrap().0, "CloudNativePGMissing");
        assert_eq!(o.degraded.unwrap().0, "CloudNativePGMissing");

        let c = desired_children(&pd, ALL);
        let desired = c.apply.last().unwrap();
        let mut cluster: DynamicObject = serde_json::from_value(desired.body.clone()).unwrap();
        cluster.data["status"] = json!({ "readyInstances": 2 });
        let stored = Stored(vec![(desired, cluster.clone())]);
        let mut o = Observed::default();
        observe_database(&pd, ALL, &stored, &mut o);
        assert_eq!(
            o.database_waiting,
            Some((
                "DatabaseNotReady".into(),
                "CloudNativePG cluster payments-db: 2/3 instances ready".into()
            ))
        );
        assert!(o.degraded.is_none());

        cluster.data["status"] = json!({ "readyInstances": 3 });
        let stored = Stored(vec![(desired, cluster)]);
        let mut o = Observed::default();
        observe_database(&pd, ALL, &stored, &mut o);
        assert!(o.database_waiting.is_none());
    }

    #[test]
    fn missing_prometheus_operator_crds_are_named_not_skipped() {
        let pd = pipeline(BASIC);
        let mut o = Observed::default();
        observe_monitoring(&pd, Caps::default(), &mut o);
        assert_eq!(
            o.monitoring,
            Some(Err(
                "servicemonitors.monitoring.coreos.com, prometheusrules.monitoring.coreos.com"
                    .into()
            ))
        );
        let only_sm = Caps {
            service_monitor: true,
            ..Caps::default()
        };
        let mut o = Observed::default();
        observe_monitoring(&pd, only_sm, &mut o);
        assert_eq!(
            o.monitoring,
            Some(Err("prometheusrules.monitoring.coreos.com".into()))
        );
        let mut o = Observed::default();
        observe_monitoring(&pd, ALL, &mut o);
        assert_eq!(o.monitoring, Some(Ok(())));
        // Nothing wanted: no condition at all, whatever the cluster serves.
        let mut off = pipeline(BASIC);
        off.spec.monitoring.service_monitor = false;
        off.spec.monitoring.prometheus_rule = false;
        let mut o = Observed::default();
        observe_monitoring(&off, Caps::default(), &mut o);
        assert_eq!(o.monitoring, None);
        // Only the PrometheusRule wanted: the ServiceMonitor CRD does not matter.
        off.spec.monitoring.prometheus_rule = true;
        observe_monitoring(&off, only_sm, &mut o);
        assert_eq!(
            o.monitoring,
            Some(Err("prometheusrules.monitoring.coreos.com".into()))
        );
    }

    #[test]
    fn max_workers_is_the_autoscalers_ceiling_or_the_fixed_count() {
        let mut pd = pipeline(BASIC);
        assert_eq!(max_workers(&pd), 2);
        pd.spec.autoscaling = Some(crate::crd::AutoscalingSpec {
            enabled: true,
            ..Default::default()
        });
        assert_eq!(max_workers(&pd), 4);
        pd.status = Some(PipelineDeploymentStatus {
            topic_partitions: Some(3),
            ..Default::default()
        });
        assert_eq!(max_workers(&pd), 3, "capped by the topic's partitions");
    }

    #[test]
    fn stored_children_parse_into_their_types() {
        let pd = pipeline(BASIC);
        let c = desired_children(&pd, Caps::default());
        let dep = &c.apply[2];
        let stored = Stored(vec![(
            dep,
            serde_json::from_value(dep.body.clone()).unwrap(),
        )]);
        let parsed = stored
            .typed::<Deployment>("payments-worker")
            .unwrap()
            .unwrap();
        assert_eq!(parsed.metadata.name.as_deref(), Some("payments-worker"));
        assert!(stored.typed::<Deployment>("other").is_none());
    }

    #[test]
    fn failure_labels_name_the_step_and_the_child() {
        let source = || kube::Error::SerdeError(serde_json::from_str::<()>("x").unwrap_err());
        let child = |step, kind: &'static str| Error::Child {
            kind,
            name: "n".into(),
            step,
            source: source(),
        };
        assert_eq!(child(Step::Apply, "Deployment").kind(), "apply_deployment");
        assert_eq!(child(Step::Read, "Cluster").kind(), "read_cluster");
        assert_eq!(
            child(Step::Prune, "ServiceMonitor").kind(),
            "prune_servicemonitor"
        );
        assert_eq!(
            child(Step::Apply, "PodDisruptionBudget").kind(),
            "apply_poddisruptionbudget"
        );
        assert_eq!(Error::Status(source()).kind(), "status");
        assert_eq!(Error::NoNamespace.kind(), "invalid_object");
        assert!(
            child(Step::Prune, "ConfigMap")
                .to_string()
                .starts_with("failed to delete ConfigMap n: ")
        );
    }
}
