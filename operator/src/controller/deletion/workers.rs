//! `Delete`'s Kubernetes part: the workers stopped (before anything they use is removed) and
//! the pipeline's CloudNativePG Cluster deleted.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::ResourceExt;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams};
use serde_json::json;

use super::super::Context;
use crate::children::{cnpg, keda};
use crate::crd::PipelineDeployment;

/// Deletes the workers' HPA or ScaledObject (when this pipeline controls it) and scales the
/// worker Deployment to zero. Returns how many worker pods are still there (running or
/// terminating), as far as the Deployment's current status tells: 0 once they are all gone.
pub(super) async fn stop(
    ctx: &Context,
    ns: &str,
    pd: &PipelineDeployment,
    deployment: &str,
) -> Result<i32, kube::Error> {
    let caps = ctx.capabilities.get().await;
    let mut autoscalers = vec![ApiResource::erase::<HorizontalPodAutoscaler>(&())];
    if caps.keda {
        autoscalers.push(keda::api_resource());
    }
    for ar in autoscalers {
        let api = Api::<DynamicObject>::namespaced_with(ctx.client.clone(), ns, &ar);
        if let Some(obj) = api.get_metadata_opt(deployment).await? {
            let ours = obj
                .owner_references()
                .iter()
                .any(|o| Some(&o.uid) == pd.uid().as_ref() && o.controller == Some(true));
            if ours {
                api.delete(deployment, &DeleteParams::background()).await?;
            }
        }
    }
    let deployments = Api::<Deployment>::namespaced(ctx.client.clone(), ns);
    let Some(dep) = deployments.get_opt(deployment).await? else {
        return Ok(0);
    };
    if dep.spec.replicas != Some(0) {
        deployments
            .patch(
                deployment,
                &PatchParams::default(),
                &Patch::Merge(json!({ "spec": { "replicas": 0 } })),
            )
            .await?;
        // The status still counts the pods of before: ask again on the next attempt.
        return Ok(dep.status.and_then(|s| s.replicas).unwrap_or(1).max(1));
    }
    Ok(pods_left(&dep))
}

/// Worker pods of a Deployment already scaled to zero, once its controller has caught up
/// with that (until then, the status is not evidence of anything: counted as one).
fn pods_left(dep: &Deployment) -> i32 {
    let generation = dep.metadata.generation.unwrap_or_default();
    match &dep.status {
        Some(s) if s.observed_generation.unwrap_or_default() >= generation => {
            s.replicas.unwrap_or(0) + s.terminating_replicas.unwrap_or(0)
        }
        _ => 1,
    }
}

/// Deletes the pipeline's CloudNativePG Cluster, never one not labelled as this pipeline's.
pub(super) async fn delete_cluster(
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
        Ok(Some(obj)) if !cnpg::is_pipelines(pd, &obj.metadata) => Ok(()),
        Ok(Some(_)) => api
            .delete(name, &DeleteParams::background())
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(status: serde_json::Value) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "payments-worker", "generation": 3},
            "spec": {"replicas": 0, "selector": {}, "template": {}},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn workers_are_gone_only_when_a_current_status_counts_none() {
        assert_eq!(pods_left(&deployment(json!({"observedGeneration": 3}))), 0);
        assert_eq!(
            pods_left(&deployment(json!({"observedGeneration": 3, "replicas": 2}))),
            2
        );
        assert_eq!(
            pods_left(&deployment(
                json!({"observedGeneration": 3, "terminatingReplicas": 1})
            )),
            1
        );
        // The controller has not seen the scale-down yet.
        assert_eq!(pods_left(&deployment(json!({"observedGeneration": 2}))), 1);
    }
}
