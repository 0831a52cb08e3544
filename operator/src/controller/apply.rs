//! Applying and pruning children: one server-side apply path for every kind, skipped when
//! the child cache shows nothing changed, and deletes only of children this pipeline controls.

use kube::ResourceExt;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use serde::de::DeserializeOwned;
use tracing::info;

use super::{Context, Desired, Error, Step, Unwanted};
use crate::child_cache;
use crate::children::FIELD_MANAGER;
use crate::crd::PipelineDeployment;

/// The observed children ([`Desired::observed`]), each with its object as stored.
#[derive(Default)]
pub(super) struct Stored<'a>(pub(super) Vec<(&'a Desired, DynamicObject)>);

impl<'a> Stored<'a> {
    /// The desired and the stored `kind` named `name`, if it was applied as observed.
    pub(super) fn get(&self, kind: &str, name: &str) -> Option<&(&'a Desired, DynamicObject)> {
        self.0
            .iter()
            .find(|(d, _)| d.kind == kind && d.name == name)
    }

    /// The stored `K` named `name`, parsed into its type.
    pub(super) fn typed<K>(&self, name: &str) -> Option<Result<K, Error>>
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
pub(super) async fn apply_all<'a>(
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
pub(super) async fn prune_child(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::children::testing::{BASIC, pipeline};
    use crate::controller::desired_children;
    use crate::discovery::Caps;
    use k8s_openapi::api::apps::v1::Deployment;

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
}
