//! Writing the status a reconcile decided on, and the Events of its transitions.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::warn;

use super::{Context, Error};
use crate::children::FIELD_MANAGER;
use crate::crd::{PipelineDeployment, PipelineDeploymentStatus};
use crate::status::{self, Observed};

pub(super) async fn publish(
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

/// Writes the status `observed` calls for, if it changed, and publishes the Events of its
/// transitions. Returns whether the pipeline is Ready.
pub(super) async fn patch_status(
    ctx: &Context,
    ns: &str,
    pd: &PipelineDeployment,
    observed: &Observed,
) -> Result<bool, Error> {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let cached = pd.status.clone().unwrap_or_default();
    let from_cache = status::next(pd, &cached, observed, now.clone());
    if from_cache == cached {
        return Ok(is_ready(&from_cache));
    }
    // The reconcile's object comes from the watch cache, which can still lack the status the
    // previous reconcile wrote a moment ago. A transition judged against that stale status is
    // published twice (a Warning Event that should be said once became a series of two), so
    // the status to change is read from the API server first.
    let api = Api::<PipelineDeployment>::namespaced(ctx.client.clone(), ns);
    // Only its status: the spec stays the reconciled one, which `observed` describes.
    let previous = api
        .get(&pd.name_any())
        .await
        .map_err(Error::Status)?
        .status
        .unwrap_or_default();
    let new_status = status::next(pd, &previous, observed, now);
    if new_status != previous {
        let body = json!({
            "apiVersion": PipelineDeployment::api_version(&()),
            "kind": PipelineDeployment::kind(&()),
            "status": new_status,
        });
        api.patch_status(
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
    Ok(is_ready(&new_status))
}

fn is_ready(status: &PipelineDeploymentStatus) -> bool {
    status.conditions[0].status == "True"
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
