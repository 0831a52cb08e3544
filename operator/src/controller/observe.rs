//! What a reconcile reads back besides the lag: the workers' rollout, the database, and
//! whether the optional APIs the spec relies on (KEDA, Prometheus Operator) exist.

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;

use super::apply::Stored;
use super::{Context, Error, Step};
use crate::children::{self, Names, monitoring};
use crate::crd::{AutoscalingProvider, PipelineDeployment};
use crate::discovery::Caps;
use crate::status::{self, Observed, Rollout};

/// The worker Deployment as stored. (Under autoscaling its HPA keeps it within
/// minReplicas..maxReplicas; the operator never writes its `spec.replicas`.)
pub(super) fn observe_workers(
    pd: &PipelineDeployment,
    stored: &Stored<'_>,
) -> Result<Deployment, Error> {
    stored
        .typed::<Deployment>(&Names::of(pd).worker)
        .expect("the worker Deployment is always desired, as observed")
}

/// The rollout of the worker Deployment as it is, when this reconcile did not apply it (the
/// worker config is invalid); no Deployment yet is no workers.
pub(super) async fn read_workers(
    ctx: &Context,
    ns: &str,
    pd: &PipelineDeployment,
) -> Result<Rollout, Error> {
    let name = Names::of(pd).worker;
    let stored = Api::<Deployment>::namespaced(ctx.client.clone(), ns)
        .get_opt(&name)
        .await
        .map_err(|source| Error::Child {
            kind: "Deployment",
            name: name.clone(),
            step: Step::Read,
            source,
        })?;
    Ok(stored.as_ref().map_or(
        Rollout {
            desired_replicas: 0,
            ready_replicas: 0,
            rolled_out: false,
        },
        status::rollout,
    ))
}

/// Why the database is not usable yet: CloudNativePG wanted but not installed, or its Cluster
/// not ready.
pub(super) fn observe_database(
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
pub(super) fn observe_keda(pd: &PipelineDeployment, caps: Caps, observed: &mut Observed) {
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

/// The most workers `pd` may run: the autoscaler's maximum as its HPA / ScaledObject gets it,
/// or the fixed replica count.
pub(super) fn max_workers(pd: &PipelineDeployment) -> i32 {
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
pub(super) fn observe_monitoring(pd: &PipelineDeployment, caps: Caps, observed: &mut Observed) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::children::testing::{BASIC, pipeline};
    use crate::controller::desired_children;
    use crate::crd::PipelineDeploymentStatus;
    use kube::api::DynamicObject;
    use serde_json::json;

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

        let c = desired_children(&pd, Caps::ALL);
        let desired = c.apply.last().unwrap();
        let mut cluster: DynamicObject = serde_json::from_value(desired.body.clone()).unwrap();
        cluster.data["status"] = json!({ "readyInstances": 2 });
        let stored = Stored(vec![(desired, cluster.clone())]);
        let mut o = Observed::default();
        observe_database(&pd, Caps::ALL, &stored, &mut o);
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
        observe_database(&pd, Caps::ALL, &stored, &mut o);
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
        observe_monitoring(&pd, Caps::ALL, &mut o);
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
}
