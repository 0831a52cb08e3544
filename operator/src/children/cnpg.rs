//! The CloudNativePG `Cluster` (when `spec.postgres.cloudnativepg` is chosen): one primary and
//! N read replicas. CloudNativePG serves them as `<cluster>-rw` (primary) and `<cluster>-ro`
//! (replicas) and writes the app user's credentials to the `<cluster>-app` Secret, which the
//! worker Deployment references. Built as a dynamic object: the operator does not link
//! CloudNativePG's types, and the CRD may be absent.
//!
//! The Cluster holds the pipeline's data, so it has no owner reference: deleting the pipeline
//! never lets the garbage collector take it (`spec.deletionPolicy: Retain`, the default). Only
//! the `Delete` policy's finalizer removes it. Its labels name the pipeline, and a pipeline
//! re-created with the same name takes the retained Cluster up again.

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
    if !c.parameters.is_empty() {
        spec["postgresql"] = json!({ "parameters": c.parameters });
    }
    if let Some(backup) = &c.backup {
        spec["backup"] = backup.clone();
    }
    if c.enable_pod_monitor {
        spec["monitoring"] = json!({ "enablePodMonitor": true });
    }
    let mut obj = DynamicObject::new(&Names::of(pd).database, &ar).data(json!({ "spec": spec }));
    obj.metadata = meta(pd, &Names::of(pd).database, "database");
    // Applied without it, server-side apply also drops the reference older operators set.
    obj.metadata.owner_references = None;
    Some(obj)
}

/// The Service analytics reads go to: `<cluster>-ro` (the replicas), or `<cluster>-rw` (the
/// primary) when there are no replicas, since `-ro` then has no endpoints.
pub fn read_service(pd: &PipelineDeployment) -> String {
    let db = Names::of(pd).database;
    match &pd.spec.postgres.cloudnativepg {
        Some(c) if c.read_replicas == 0 => format!("{db}-rw"),
        _ => format!("{db}-ro"),
    }
}

/// Whether the stored Cluster `obj` is this pipeline's: its label names the pipeline (the
/// Cluster has no owner reference, see the module header).
pub fn is_pipelines(pd: &PipelineDeployment, obj: &kube::api::ObjectMeta) -> bool {
    use kube::ResourceExt;
    let label = |key: &str| obj.labels.as_ref().and_then(|l| l.get(key));
    label(super::PIPELINE_LABEL).is_some_and(|n| *n == pd.name_any())
        && label("app.kubernetes.io/managed-by").is_some_and(|m| m == super::MANAGED_BY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::children::testing::pipeline;
    use crate::crd::CloudNativePgSpec;

    fn cnpg(pd: &mut PipelineDeployment) -> &mut CloudNativePgSpec {
        pd.spec.postgres.cloudnativepg.as_mut().unwrap()
    }

    const CNPG: &str = r#"
apiVersion: sluice.dev/v1alpha1
kind: PipelineDeployment
metadata: {name: payments, namespace: ns, generation: 1}
spec:
  kafka: {bootstrapServers: "kafka:9092", topic: payments}
  workers: {image: "sluice-worker:test", minReplicas: 1, maxReplicas: 1}
  postgres:
    cloudnativepg:
      readReplicas: 0
      parameters: {max_connections: "300", shared_buffers: "256MB"}
      enablePodMonitor: true
      backup:
        barmanObjectStore:
          destinationPath: "s3://backups/payments"
          s3Credentials:
            accessKeyId: {name: s3, key: id}
            secretAccessKey: {name: s3, key: secret}
        retentionPolicy: "30d"
"#;

    #[test]
    fn settings_pass_through_to_the_cluster() {
        let mut pd = pipeline(CNPG);
        let c = build_cnpg_cluster(&pd).unwrap();
        let spec = &c.data["spec"];
        assert_eq!(spec["instances"], 1);
        assert_eq!(spec["postgresql"]["parameters"]["max_connections"], "300");
        assert_eq!(spec["postgresql"]["parameters"]["shared_buffers"], "256MB");
        assert_eq!(spec["monitoring"]["enablePodMonitor"], true);
        assert_eq!(
            spec["backup"]["barmanObjectStore"]["destinationPath"],
            "s3://backups/payments"
        );
        assert_eq!(spec["backup"]["retentionPolicy"], "30d");
        assert_eq!(cnpg(&mut pd).server_max_connections(), 300);
    }

    #[test]
    fn unset_settings_are_left_to_cloudnativepg() {
        let mut pd = pipeline(CNPG);
        let c = cnpg(&mut pd);
        c.parameters.clear();
        c.backup = None;
        c.enable_pod_monitor = false;
        let spec = &build_cnpg_cluster(&pd).unwrap().data["spec"];
        for absent in ["postgresql", "backup", "monitoring"] {
            assert!(spec.get(absent).is_none(), "{absent}");
        }
        assert_eq!(
            cnpg(&mut pd).server_max_connections(),
            crate::crd::POSTGRES_DEFAULT_MAX_CONNECTIONS
        );
    }

    #[test]
    fn reads_go_to_the_primary_without_replicas() {
        let mut pd = pipeline(CNPG);
        assert_eq!(read_service(&pd), "payments-db-rw");
        cnpg(&mut pd).read_replicas = 1;
        assert_eq!(read_service(&pd), "payments-db-ro");
    }

    /// The data outlives the pipeline unless its deletion policy says otherwise.
    #[test]
    fn the_cluster_has_no_owner_and_names_its_pipeline() {
        let pd = pipeline(CNPG);
        let c = build_cnpg_cluster(&pd).unwrap();
        assert!(c.metadata.owner_references.is_none());
        assert!(is_pipelines(&pd, &c.metadata));
        let mut other = pipeline(CNPG);
        other.metadata.name = Some("other".into());
        assert!(!is_pipelines(&other, &c.metadata));
    }
}
