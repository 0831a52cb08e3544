//! Builders of the objects a PipelineDeployment owns: one `build_<child>()` per kind, each a
//! pure function of the custom resource, so reconcile is "build all → apply → prune" and the
//! builders are unit-testable without a cluster.

pub mod cnpg;
pub mod config_map;
pub mod dashboard;
pub mod deployment;
pub mod hpa;
pub mod keda;
pub mod monitoring;
pub mod pdb;
pub mod service;
pub mod service_account;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

use crate::crd::PipelineDeployment;

/// Field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "sluice-operator";
/// Label carrying the owning pipeline's name; selects every child of one pipeline.
pub const PIPELINE_LABEL: &str = "sluice.dev/pipeline";
/// `app.kubernetes.io/managed-by` value on every child; the operator's watches select on it.
pub const MANAGED_BY: &str = "sluice-operator";
/// Label selector matching everything this operator manages.
pub const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=sluice-operator";
/// Pod-template annotation holding the hash of the worker config: a config change changes
/// the template, which rolls the Deployment.
pub const CONFIG_HASH_ANNOTATION: &str = "sluice.dev/config-hash";
/// Port of the worker's /metrics, /healthz and /readyz.
pub const METRICS_PORT: i32 = 9090;

/// Names of the children, derived from the pipeline's name so they are stable and findable.
pub struct Names {
    pub worker: String,
    pub config: String,
    pub metrics: String,
    pub dashboard: String,
    pub database: String,
}

impl Names {
    pub fn of(pd: &PipelineDeployment) -> Self {
        let n = pd.name_any();
        Self {
            worker: format!("{n}-worker"),
            config: format!("{n}-config"),
            metrics: format!("{n}-metrics"),
            dashboard: format!("{n}-dashboard"),
            database: format!("{n}-db"),
        }
    }
}

/// Labels selecting the worker pods of a pipeline (the Deployment/Service/PDB selector).
pub fn selector_labels(pd: &PipelineDeployment) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), "sluice-worker".into()),
        (PIPELINE_LABEL.into(), pd.name_any()),
    ])
}

/// Labels of every child: the selector labels plus the recommended app.kubernetes.io set.
pub fn labels(pd: &PipelineDeployment, component: &str) -> BTreeMap<String, String> {
    let mut l = selector_labels(pd);
    l.insert("app.kubernetes.io/instance".into(), pd.name_any());
    l.insert("app.kubernetes.io/component".into(), component.into());
    l.insert("app.kubernetes.io/part-of".into(), "sluice".into());
    l.insert("app.kubernetes.io/managed-by".into(), MANAGED_BY.into());
    l
}

/// Controller owner reference to the pipeline: the garbage collector deletes the child with
/// it, and `owns()` watches map child events back to the pipeline.
pub fn owner_ref(pd: &PipelineDeployment) -> OwnerReference {
    pd.controller_owner_ref(&())
        .expect("PipelineDeployment from the API server has a uid")
}

/// Metadata of a child named `name` with the standard labels and owner reference.
pub fn meta(pd: &PipelineDeployment, name: &str, component: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: pd.namespace(),
        labels: Some(labels(pd, component)),
        owner_references: Some(vec![owner_ref(pd)]),
        ..ObjectMeta::default()
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use crate::crd::PipelineDeployment;

    /// A pipeline as the API server would return it (defaults applied, uid set).
    pub fn pipeline(yaml: &str) -> PipelineDeployment {
        let mut pd: PipelineDeployment = serde_yaml::from_str(yaml).expect("test pipeline parses");
        pd.metadata.uid = Some("00000000-0000-0000-0000-000000000001".into());
        pd.metadata.namespace.get_or_insert_with(|| "ns".into());
        pd
    }

    pub const BASIC: &str = r#"
apiVersion: sluice.dev/v1alpha1
kind: PipelineDeployment
metadata: {name: payments, namespace: ns, generation: 1}
spec:
  kafka: {bootstrapServers: "kafka:9092", topic: payments}
  workers: {image: "sluice-worker:test", minReplicas: 2, maxReplicas: 4}
  postgres:
    external:
      primaryUrl: {name: db, key: url}
"#;
}
