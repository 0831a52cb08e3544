//! A pipeline whose worker config the worker would refuse never reaches a worker: it is
//! Degraded (`InvalidWorkerConfig`, with the worker's own message) and gets no ConfigMap and
//! no Deployment until it is fixed.
//!
//! The CRD now refuses every such value itself (see `validation.rs`), so the object here is
//! one stored under an older, looser CRD — the upgrade case: the API server does not
//! re-validate stored objects when a CRD tightens. The test loosens the CRD for the create
//! and tightens it again before the operator starts.

mod common;

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use sluice_operator::crd::{PipelineDeployment, crd};

const MANAGER: &str = "invalid-config-test";

/// Server-side applies our CRD with `spec.postgres.maxConnections`' minimum set to `minimum`.
async fn apply_crd(client: &Client, minimum: i64) {
    let mut body = serde_json::to_value(crd()).unwrap();
    body["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        ["postgres"]["properties"]["maxConnections"]["minimum"] = json!(minimum);
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(
        &crd().name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(body),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn a_pipeline_the_worker_would_refuse_is_degraded_and_gets_no_workers() {
    let ns = TestNs::new("op-invalid-config").await;
    let pds: Api<PipelineDeployment> = ns.api();
    let mut pd = example("external-postgres.yaml");
    unique_topic(&mut pd, &ns.name);
    pd.spec.postgres.max_connections = 1;

    // Stored under a CRD that still accepted one connection (the schema change takes a moment
    // to reach the API server's handler: retry until it does).
    apply_crd(&ns.client, 1).await;
    wait_for(
        "the loose CRD accepts maxConnections: 1",
        TIMEOUT,
        || async { pds.create(&PostParams::default(), &pd).await.ok() },
    )
    .await;
    let minimum = crd_yaml_minimum();
    apply_crd(&ns.client, minimum).await;
    let mut probe = pd.clone();
    probe.metadata.name = Some("probe".into());
    wait_for(
        "the CRD refuses maxConnections: 1 again",
        TIMEOUT,
        || async {
            match pds.create(&PostParams::default(), &probe).await {
                Err(e) if e.to_string().contains("spec.postgres.maxConnections") => Some(()),
                Ok(_) => {
                    let _ = pds.delete("probe", &Default::default()).await;
                    None
                }
                Err(_) => None,
            }
        },
    )
    .await;

    let _op = Operator::start(&ns.name, "invalid-config");
    let degraded = wait_for("Degraded=True InvalidWorkerConfig", TIMEOUT, || async {
        let pd = pds.get("payments").await.ok()?;
        (condition(&pd, "Degraded")? == ("True".into(), "InvalidWorkerConfig".into())).then_some(pd)
    })
    .await;
    let conditions = &degraded.status.as_ref().unwrap().conditions;
    let message = &conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .unwrap()
        .message;
    assert!(
        message.contains("postgres.max_connections must be at least 2"),
        "{message}"
    );
    assert_eq!(
        condition(&degraded, "Ready"),
        Some(("False".into(), "InvalidWorkerConfig".into()))
    );
    // The reconcile ran (the other children exist), but the config never reached a worker.
    let sas: Api<ServiceAccount> = ns.api();
    assert!(sas.get_opt("payments-worker").await.unwrap().is_some());
    let cms: Api<ConfigMap> = ns.api();
    let deps: Api<Deployment> = ns.api();
    assert!(cms.get_opt("payments-config").await.unwrap().is_none());
    assert!(deps.get_opt("payments-worker").await.unwrap().is_none());

    // Fixed: the workers come.
    pds.patch(
        "payments",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"postgres": {"maxConnections": 2}}})),
    )
    .await
    .unwrap();
    wait_for("Degraded=False once fixed", TIMEOUT, || async {
        let pd = pds.get("payments").await.ok()?;
        (condition(&pd, "Degraded")?.0 == "False").then_some(())
    })
    .await;
    assert!(cms.get_opt("payments-config").await.unwrap().is_some());
    assert!(deps.get_opt("payments-worker").await.unwrap().is_some());
}

/// The minimum the generated CRD states for `spec.postgres.maxConnections`.
fn crd_yaml_minimum() -> i64 {
    let body = serde_json::to_value(crd()).unwrap();
    body["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        ["postgres"]["properties"]["maxConnections"]["minimum"]
        .as_f64()
        .unwrap() as i64
}
