//! Security: worker pods are admitted in a namespace enforcing the `restricted` Pod Security
//! Standard, and the operator does its job with exactly the RBAC of `manifests/install.yaml`
//! (rendered from the chart; and cannot do what it does not need, e.g. list Secrets: it may
//! only `get` the ones a pipeline names for Kafka).

mod common;

use common::*;
use k8s_openapi::api::authorization::v1::SelfSubjectAccessReview;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::{ClusterRole, Role, RoleBinding};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::{Value, json};
use sluice_operator::crd::PipelineDeployment;

#[tokio::test]
async fn worker_pods_are_admitted_under_restricted_pod_security() {
    let ns = TestNs::with_labels(
        "op-restricted",
        json!({"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest"}),
    )
    .await;
    let _op = Operator::start(&ns.name, "restricted");
    let pds: Api<PipelineDeployment> = ns.api();
    let mut pd = example("external-postgres.yaml");
    unique_topic(&mut pd, &ns.name);
    pds.create(&PostParams::default(), &pd).await.unwrap();
    let pods: Api<Pod> = ns.api();
    let want = pd.spec.workers.min_replicas as usize;
    wait_for(
        "worker pods created by the controller-manager",
        TIMEOUT,
        || async {
            let list = pods
                .list(&ListParams::default().labels("sluice.dev/pipeline=payments"))
                .await
                .ok()?;
            (list.items.len() >= want).then_some(())
        },
    )
    .await;
    wait_ready(&pds, "payments", "True", None).await;
}

/// The documents of manifests/install.yaml.
fn rbac_docs() -> Vec<Value> {
    let text = std::fs::read_to_string(repo().join("manifests/install.yaml")).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|d: &Value| d.is_object())
        .collect()
}

fn doc(docs: &[Value], kind: &str, name: &str) -> Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("install.yaml has no {kind} {name}"))
        .clone()
}

/// A client authenticated as `sa` through a TokenRequest, and a kubeconfig file for it.
async fn client_as(ns: &TestNs, sa: &str) -> (Client, std::path::PathBuf) {
    let sas: Api<ServiceAccount> = ns.api();
    let req = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 3600}});
    let tr: Value = sas
        .create_subresource("token", sa, &PostParams::default(), &req)
        .await
        .expect("TokenRequest");
    let token = tr["status"]["token"].as_str().expect("token").to_string();
    let mut kc: Value =
        serde_yaml::from_str(&std::fs::read_to_string(&setup().kubeconfig).unwrap()).unwrap();
    kc["users"] = json!([{"name": sa, "user": {"token": token}}]);
    for ctx in kc["contexts"].as_array_mut().unwrap() {
        ctx["context"]["user"] = json!(sa);
    }
    let path = std::env::temp_dir().join(format!("kubeconfig-{}-{sa}", ns.name));
    std::fs::write(&path, serde_yaml::to_string(&kc).unwrap()).unwrap();
    let config = Config::from_custom_kubeconfig(
        Kubeconfig::read_from(&path).unwrap(),
        &KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    (Client::try_from(config).unwrap(), path)
}

async fn can(client: &Client, ns: &str, group: &str, resource: &str, verb: &str) -> bool {
    let review: SelfSubjectAccessReview = serde_json::from_value(json!({
        "spec": {"resourceAttributes": {"namespace": ns, "group": group, "resource": resource, "verb": verb}}
    }))
    .unwrap();
    let r = Api::<SelfSubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .unwrap();
    r.status.unwrap().allowed
}

#[tokio::test]
async fn operator_works_with_least_privilege_rbac() {
    let ns = TestNs::new("op-rbac").await;
    let docs = rbac_docs();
    let admin = &ns.client;
    let apply = PatchParams::apply("sluice-e2e").force();
    // The ClusterRole as shipped; bound here to a ServiceAccount of the test namespace.
    let cr: ClusterRole =
        serde_json::from_value(doc(&docs, "ClusterRole", "sluice-operator")).unwrap();
    Api::<ClusterRole>::all(admin.clone())
        .patch("sluice-operator", &apply, &Patch::Apply(&cr))
        .await
        .unwrap();
    let mut leader: Role =
        serde_json::from_value(doc(&docs, "Role", "sluice-operator-leader-election")).unwrap();
    leader.metadata.namespace = Some(ns.name.clone());
    ns.api::<Role>()
        .create(&PostParams::default(), &leader)
        .await
        .unwrap();
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "sluice-operator"}})).unwrap();
    ns.api::<ServiceAccount>()
        .create(&PostParams::default(), &sa)
        .await
        .unwrap();
    for (name, kind) in [
        ("sluice-operator", "ClusterRole"),
        ("sluice-operator-leader-election", "Role"),
    ] {
        let rb: RoleBinding = serde_json::from_value(json!({
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": "sluice-operator", "namespace": ns.name}],
        }))
        .unwrap();
        ns.api::<RoleBinding>()
            .create(&PostParams::default(), &rb)
            .await
            .unwrap();
    }
    let (sa_client, sa_kubeconfig) = client_as(&ns, "sluice-operator").await;

    // Nothing beyond what it needs.
    for (group, resource, verb) in [
        ("", "secrets", "list"),
        ("", "secrets", "watch"),
        ("", "secrets", "create"),
        ("", "pods", "create"),
        ("", "pods", "delete"),
        ("apps", "deployments", "delete"),
        ("", "namespaces", "delete"),
        ("rbac.authorization.k8s.io", "rolebindings", "create"),
        ("sluice.dev", "pipelinedeployments", "delete"),
    ] {
        assert!(
            !can(&sa_client, &ns.name, group, resource, verb).await,
            "operator may {verb} {resource}: too much"
        );
    }
    for (group, resource, verb) in [
        ("apps", "deployments", "patch"),
        ("", "configmaps", "create"),
        ("events.k8s.io", "events", "create"),
        // The Kafka credentials a pipeline names, for the operator's own Kafka clients.
        ("", "secrets", "get"),
    ] {
        assert!(
            can(&sa_client, &ns.name, group, resource, verb).await,
            "operator may not {verb} {resource}"
        );
    }

    // …and enough to do its job: a pipeline becomes Ready, with its Events published.
    let _op = Operator::start_with(&ns.name, "rbac", &sa_kubeconfig, &[]);
    let pds: Api<PipelineDeployment> = ns.api();
    let mut pd = example("cloudnativepg.yaml");
    unique_topic(&mut pd, &ns.name);
    pds.create(&PostParams::default(), &pd).await.unwrap();
    wait_ready(&pds, "card-payments", "False", Some("DatabaseNotReady")).await;
    let mut pd = example("external-postgres.yaml");
    unique_topic(&mut pd, &ns.name);
    pds.create(&PostParams::default(), &pd).await.unwrap();
    wait_ready(&pds, "payments", "True", None).await;
    wait_for("Events published by the operator", TIMEOUT, || async {
        let evs = ns.api::<Event>().list(&ListParams::default()).await.ok()?;
        evs.items
            .iter()
            .any(|e| e.reporting_controller.as_deref() == Some("sluice-operator"))
            .then_some(())
    })
    .await;
}
