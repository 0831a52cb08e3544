//! High availability: of two operator replicas exactly one holds the Lease and reconciles;
//! killing it mid-reconcile hands the Lease to the other, which converges everything. Also
//! checks the operator's /metrics and /healthz.

mod common;

use common::*;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use sluice_operator::crd::PipelineDeployment;

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt("sluice-operator")
        .await
        .ok()??
        .spec?
        .holder_identity
}

#[tokio::test]
async fn one_leader_and_failover_converges() {
    let ns = TestNs::new("op-leader").await;
    let mut ops = vec![
        Operator::start(&ns.name, "op-a"),
        Operator::start(&ns.name, "op-b"),
    ];
    let leases: Api<Lease> = ns.api();
    let first = wait_for("a Lease holder", TIMEOUT, || async {
        holder(&leases).await
    })
    .await;
    // Exactly one replica reports leadership, and it is the Lease holder.
    wait_for("exactly one leader", TIMEOUT, || async {
        let leaders: Vec<&str> = ops
            .iter()
            .filter(|o| o.is_leader())
            .map(|o| o.identity.as_str())
            .collect();
        (leaders == [first.as_str()]).then_some(())
    })
    .await;
    for op in &ops {
        assert_eq!(
            http_get(op.metrics_port, "/healthz").as_deref(),
            Some("ok"),
            "{} healthy",
            op.identity
        );
    }

    let pds: Api<PipelineDeployment> = ns.api();
    let mut pd = example("external-postgres.yaml");
    unique_topic(&mut pd, &ns.name);
    pds.create(&PostParams::default(), &pd).await.unwrap();
    wait_ready(&pds, "payments", "True", None).await;
    let (li, si) = if ops[0].identity == first {
        (0, 1)
    } else {
        (1, 0)
    };
    let metrics = ops[li].metrics().unwrap();
    assert!(
        metrics.contains("sluice_operator_reconciliations_total{outcome=\"ok\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sluice_operator_reconcile_duration_seconds_bucket"),
        "{metrics}"
    );

    // Kill the leader right after new work arrives (mid-reconcile), then the standby must take
    // over and converge both the changed pipeline and a new one.
    pds.patch(
        "payments",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"workers": {"minReplicas": 3}}})),
    )
    .await
    .unwrap();
    let mut second = example("sasl-kafka.yaml");
    second.metadata.name = Some("after-failover".into());
    pds.create(&PostParams::default(), &second).await.unwrap();
    ops[li].kill();
    let standby_id = ops[si].identity.clone();
    wait_for("standby takes the Lease", TIMEOUT, || async {
        (holder(&leases).await? == standby_id).then_some(())
    })
    .await;
    wait_ready(&pds, "after-failover", "True", None).await;
    let pd = wait_ready(&pds, "payments", "True", None).await;
    assert_eq!(pd.status.unwrap().desired_replicas, Some(3));
    assert!(ops[si].is_leader());
}
