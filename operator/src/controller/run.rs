//! The controller loop: the pipeline watch, the metadata-only watches of the owned children
//! (feeding the child cache), and the sweep that forgets deleted pipelines.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DynamicObject, PartialObjectMeta};
use kube::runtime::controller::Controller;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tracing::warn;

use super::{Context, error_policy, reconcile};
use crate::child_cache::ChildCache;
use crate::children::{self, MANAGED_SELECTOR};
use crate::crd::PipelineDeployment;

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
            controller = if ar.kind == "Cluster" {
                // The CloudNativePG Cluster has no owner reference (it outlives a retained
                // pipeline): its label names the pipeline instead.
                controller.watches_stream_with(stream, pipeline_of_labels, ar.clone())
            } else {
                controller.owns_stream_with(stream, ar.clone())
            };
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

/// The pipeline a child names in its [`PIPELINE_LABEL`](children::PIPELINE_LABEL).
fn pipeline_of_labels(
    obj: PartialObjectMeta<DynamicObject>,
) -> Option<ObjectRef<PipelineDeployment>> {
    let name = obj.labels().get(children::PIPELINE_LABEL)?;
    Some(ObjectRef::new(name).within(obj.namespace().as_deref()?))
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
