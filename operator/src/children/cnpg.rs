//! The CloudNativePG `Cluster` (when `spec.postgres.cloudnativepg` is chosen): one primary and
//! N read replicas. CloudNativePG serves them as `<cluster>-rw` (primary) and `<cluster>-ro`
//! (replicas) and writes the app user's credentials to the `<cluster>-app` Secret, which the
//! worker Deployment references. Built as a dynamic object: the operator does not link
//! CloudNativePG's types, and the CRD may be absent.

use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::json;

use super::{Names, meta};
use crate::crd::PipelineDeployment;

/// `postgresql.cnpg.io/v1` `Cluster`.
pub fn api_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("postgresql.cnpg.io", "v1", "Cluster"),
        "clusters",
    )
}

/// The Cluster, or `None` when the pipeline uses an external database.
pub fn build_cnpg_cluster(pd: &PipelineDeployment) -> Option<DynamicObject> {
    let c = pd.spec.postgres.cloudnativepg.as_ref()?;
    let ar = api_resource();
    let mut storage = json!({ "size": c.storage_size });
    if let Some(class) = &c.storage_class {
        storage["storageClass"] = json!(class);
    }
    let mut spec = json!({
        "instances": 1 + c.read_replicas,
        "storage": storage,
        "enableSuperuserAccess": false,
        "bootstrap": { "initdb": { "database": "app", "owner": "app" } },
    });
    if let Some(image) = &c.image_name {
        spec["imageName"] = json!(image);
    }
    let mut obj = DynamicObject::new(&Names::of(pd).database, &ar).data(json!({ "spec": spec }));
    obj.metadata = meta(pd, &Names::of(pd).database, "database");
    Some(obj)
}
