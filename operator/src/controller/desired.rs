//! What a pipeline should have: every child to apply ([`Desired`], in apply order) and every
//! child to remove ([`Unwanted`]), built from the spec and the APIs the cluster serves.

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ApiResource, DynamicObject};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde_json::json;
use sluice_api::ConfigError;

use super::{Error, Step};
use crate::children::{self, Names, cnpg, keda, monitoring};
use crate::crd::{AutoscalingProvider, PipelineDeployment};
use crate::discovery::Caps;

/// A child the pipeline should have, as [`apply_child`] sends it: typed objects and dynamic
/// ones (kinds the operator has no Rust types for, whose CRDs may be absent) alike.
#[derive(Debug, Clone)]
pub struct Desired {
    /// Kind name for errors and metric labels.
    pub(super) kind: &'static str,
    pub(super) resource: ApiResource,
    pub(super) name: String,
    /// The apply body, `apiVersion` and `kind` included.
    pub(super) body: serde_json::Value,
    /// Hand the stored object back, read fresh when the apply is skipped as unchanged.
    pub(super) observe: bool,
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

    pub(super) fn failed(&self, step: Step, source: kube::Error) -> Error {
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
    pub(super) kind: &'static str,
    pub(super) resource: ApiResource,
    pub(super) name: String,
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
    /// Why the worker config is not rendered: the worker would refuse it. Its ConfigMap and
    /// Deployment are then neither applied nor pruned, so running workers keep their last
    /// good config.
    pub invalid_config: Option<ConfigError>,
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

    // Children every pipeline has (the config and the workers only while the config is valid).
    c.want(Desired::typed(
        children::service_account::build_service_account(pd),
    ));
    match children::config_map::build_config_map(pd) {
        Ok((config_map, config_hash)) => {
            c.want(Desired::typed(config_map));
            c.want(
                Desired::typed(children::deployment::build_deployment(pd, &config_hash)).observed(),
            );
        }
        Err(invalid) => c.invalid_config = Some(invalid),
    }
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

#[cfg(test)]
mod tests;
