//! Every example in `manifests/examples/` applies cleanly and becomes the expected children,
//! owned by the pipeline and labelled, with the expected status conditions.

mod common;

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DynamicObject, PostParams};
use kube::{Resource, ResourceExt};
use sluice_operator::children::{cnpg, monitoring};
use sluice_operator::crd::PipelineDeployment;

/// Asserts `obj` is controlled by `pd` and carries the pipeline's labels.
fn assert_owned<K: Resource>(obj: &K, pd: &PipelineDeployment) {
    let meta = obj.meta();
    let name = meta.name.clone().unwrap_or_default();
    let owner = meta
        .owner_references
        .as_ref()
        .and_then(|o| o.first())
        .unwrap_or_else(|| panic!("{name} has no owner"));
    assert_eq!(owner.kind, "PipelineDeployment", "{name}");
    assert_eq!(
        Some(&owner.uid),
        pd.metadata.uid.as_ref(),
        "{name} owned by another object"
    );
    assert_eq!(owner.controller, Some(true), "{name}");
    let labels = meta.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get("sluice.dev/pipeline"),
        Some(&pd.name_any()),
        "{name} labels"
    );
    assert_eq!(
        labels
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("sluice-operator"),
        "{name} labels"
    );
}

#[tokio::test]
async fn each_example_becomes_a_pipeline() {
    let ns = TestNs::new("op-examples").await;
    let _op = Operator::start(&ns.name, "examples");
    let pds: Api<PipelineDeployment> = ns.api();
    let mut files: Vec<String> = std::fs::read_dir(repo().join("manifests/examples"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|f| f.ends_with(".yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 3,
        "expected at least three examples, found {files:?}"
    );
    for file in &files {
        let mut pd = example(file);
        unique_topic(&mut pd, &ns.name);
        pds.create(&PostParams::default(), &pd)
            .await
            .unwrap_or_else(|e| panic!("{file} rejected: {e}"));
    }
    for file in &files {
        let want = example(file);
        let name = want.name_any();
        let cnpg_wanted = want.spec.postgres.cloudnativepg.is_some();
        // CloudNativePG's CRD is installed but its operator is not: the database never becomes
        // ready, and the pipeline says so instead of claiming Ready.
        let pd = if cnpg_wanted {
            wait_ready(&pds, &name, "False", Some("DatabaseNotReady")).await
        } else {
            wait_ready(&pds, &name, "True", Some("PipelineReady")).await
        };
        assert_eq!(
            common::condition(&pd, "Degraded").unwrap().0,
            "False",
            "{file}: {:?}",
            pd.status
        );
        let st = pd.status.clone().unwrap();
        if want.spec.kafka.manage_topic {
            assert_eq!(
                st.topic_partitions,
                Some(want.spec.kafka.partitions),
                "{file}"
            );
        }

        // Under autoscaling the operator leaves spec.replicas to the HPA: the Deployment is
        // created at the API server's default of 1, and the HPA's first sync (the real
        // kube-controller-manager's) lifts it to min. Read before that sync, it still says 1.
        let min = Some(want.spec.workers.min_replicas);
        let deployments = ns.api::<Deployment>();
        let worker = format!("{name}-worker");
        let dep = if want.autoscaled() {
            wait_for(
                &format!("{file}: the HPA scales the workers to min"),
                TIMEOUT,
                || async {
                    let d = deployments.get(&worker).await.ok()?;
                    (d.spec.replicas == min).then_some(d)
                },
            )
            .await
        } else {
            deployments.get(&worker).await.unwrap()
        };
        assert_owned(&dep, &pd);
        let spec = &dep.spec;
        assert_eq!(spec.replicas, min, "{file}: replicas start at min");
        let pod = spec.template.spec.as_ref().unwrap();
        assert_eq!(
            pod.service_account_name.as_deref(),
            Some(format!("{name}-worker").as_str())
        );
        // The pod knobs (spec.workers) as the example sets them; worker_pods.rs checks each.
        let w = &want.spec.workers;
        assert_eq!(
            pod.tolerations.clone().unwrap_or_default(),
            w.tolerations,
            "{file}: tolerations"
        );
        assert_eq!(
            pod.node_selector.clone().unwrap_or_default(),
            w.node_selector,
            "{file}: nodeSelector"
        );
        assert_eq!(pod.affinity, w.affinity, "{file}: affinity");
        if let Some(spread) = &w.topology_spread_constraints {
            assert_eq!(
                pod.topology_spread_constraints.as_ref(),
                Some(spread).filter(|s| !s.is_empty()),
                "{file}: topologySpreadConstraints"
            );
        }
        let c = &pod.containers[0];
        assert_eq!(c.image.as_deref(), Some(want.spec.workers.image.as_str()));
        assert_eq!(
            c.args.as_ref().unwrap(),
            &vec!["--config".to_string(), "/etc/sluice/config.yaml".into()]
        );
        assert!(
            c.resources.as_ref().unwrap().limits.is_some(),
            "{file}: limits set"
        );
        let env = c.env.as_ref().unwrap();
        let db = env
            .iter()
            .find(|e| e.name == "DATABASE_URL")
            .expect("DATABASE_URL");
        assert!(
            db.value.is_none() && db.value_from.as_ref().unwrap().secret_key_ref.is_some(),
            "{file}: DB URL only by Secret ref"
        );
        // Under autoscaling the operator's apply must not own spec.replicas.
        let applied = dep
            .managed_fields()
            .iter()
            .find(|m| m.manager.as_deref() == Some("sluice-operator"))
            .expect("applied by sluice-operator");
        let owns_replicas = applied.fields_v1.as_ref().unwrap().0["f:spec"]
            .get("f:replicas")
            .is_some();
        assert_eq!(
            owns_replicas,
            !want.autoscaled(),
            "{file}: spec.replicas ownership"
        );

        assert_owned(
            &ns.api::<ConfigMap>()
                .get(&format!("{name}-config"))
                .await
                .unwrap(),
            &pd,
        );
        assert_owned(
            &ns.api::<Service>()
                .get(&format!("{name}-metrics"))
                .await
                .unwrap(),
            &pd,
        );
        assert_owned(
            &ns.api::<ServiceAccount>()
                .get(&format!("{name}-worker"))
                .await
                .unwrap(),
            &pd,
        );
        assert_owned(
            &ns.api::<PodDisruptionBudget>()
                .get(&format!("{name}-worker"))
                .await
                .unwrap(),
            &pd,
        );
        let dashboard = ns
            .api::<ConfigMap>()
            .get_opt(&format!("{name}-dashboard"))
            .await
            .unwrap();
        assert_eq!(
            dashboard.is_some(),
            want.spec.monitoring.grafana_dashboard,
            "{file}: dashboard"
        );

        let dynamic = |ar| Api::<DynamicObject>::namespaced_with(ns.client.clone(), &ns.name, &ar);
        let cluster = dynamic(cnpg::api_resource())
            .get_opt(&format!("{name}-db"))
            .await
            .unwrap();
        assert_eq!(cluster.is_some(), cnpg_wanted, "{file}: CNPG Cluster");
        if let Some(cluster) = cluster {
            // The database outlives its pipeline (deletionPolicy Retain): no owner for the
            // garbage collector to follow, the pipeline's labels instead.
            assert!(
                cluster.owner_references().is_empty(),
                "{file}: Cluster owner"
            );
            assert!(
                cnpg::is_pipelines(&pd, &cluster.metadata),
                "{file}: Cluster labels"
            );
            let replicas = want
                .spec
                .postgres
                .cloudnativepg
                .as_ref()
                .unwrap()
                .read_replicas;
            assert_eq!(cluster.data["spec"]["instances"], 1 + replicas);
        }
        let sm = dynamic(monitoring::service_monitor_resource())
            .get_opt(&name)
            .await
            .unwrap();
        assert_eq!(
            sm.is_some(),
            want.spec.monitoring.service_monitor,
            "{file}: ServiceMonitor"
        );
        let pr = dynamic(monitoring::prometheus_rule_resource())
            .get_opt(&name)
            .await
            .unwrap();
        assert_eq!(
            pr.is_some(),
            want.spec.monitoring.prometheus_rule,
            "{file}: PrometheusRule"
        );
    }
}
