//! The API server itself rejects invalid PipelineDeployments (OpenAPI schema + CEL rules in
//! the CRD), with a message naming the offending field. No operator involved.

mod common;

use common::*;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use sluice_operator::crd::PipelineDeployment;

fn base() -> Value {
    json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "PipelineDeployment",
        "metadata": {"name": "invalid"},
        "spec": {
            "kafka": {"bootstrapServers": "kafka:9092", "topic": "t", "partitions": 6},
            "workers": {"image": "sluice-worker:test", "minReplicas": 1, "maxReplicas": 3},
            "postgres": {"external": {"primaryUrl": {"name": "db", "key": "url"}}}
        }
    })
}

/// Sets `path` (dot-separated under the object) to `value`; `null` removes the field.
fn with(path: &str, value: Value) -> Value {
    let mut obj = base();
    let mut cur = &mut obj;
    let parts: Vec<&str> = path.split('.').collect();
    for p in &parts[..parts.len() - 1] {
        cur = cur.get_mut(*p).unwrap_or_else(|| panic!("no {p} in base"));
    }
    let last = parts[parts.len() - 1];
    if value.is_null() {
        cur.as_object_mut().unwrap().remove(last);
    } else {
        cur[last] = value;
    }
    obj
}

#[tokio::test]
async fn invalid_pipelines_are_rejected_naming_the_field() {
    let ns = TestNs::new("op-validation").await;
    let api: Api<DynamicObject> = Api::namespaced_with(
        ns.client.clone(),
        &ns.name,
        &kube::api::ApiResource::erase::<PipelineDeployment>(&()),
    );
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "min > max replicas",
            with(
                "spec.workers",
                json!({"image": "i", "minReplicas": 5, "maxReplicas": 2}),
            ),
            "spec.workers.minReplicas",
        ),
        (
            "more workers than partitions",
            with("spec.workers.maxReplicas", json!(12)),
            "spec.workers.maxReplicas",
        ),
        (
            "both databases",
            with("spec.postgres.cloudnativepg", json!({"readReplicas": 1})),
            "spec.postgres",
        ),
        (
            "no database",
            with("spec.postgres.external", Value::Null),
            "spec.postgres",
        ),
        (
            "SASL without credentials",
            with("spec.kafka.securityProtocol", json!("SASL_SSL")),
            "spec.kafka.sasl",
        ),
        (
            "unknown security protocol",
            with("spec.kafka.securityProtocol", json!("TLS")),
            "spec.kafka.securityProtocol",
        ),
        (
            "zero partitions",
            with("spec.kafka.partitions", json!(0)),
            "spec.kafka.partitions",
        ),
        (
            "bad topic name",
            with("spec.kafka.topic", json!("no spaces allowed")),
            "spec.kafka.topic",
        ),
        // Values the worker would refuse (`WorkerConfig::validate`): the CRD refuses them too.
        (
            "a pool without room for writer and maintenance",
            with("spec.postgres.maxConnections", json!(1)),
            "spec.postgres.maxConnections",
        ),
        (
            "a topic whose <topic>.alerts Kafka would refuse",
            with("spec.kafka.topic", json!("t".repeat(243))),
            "spec.kafka.topic",
        ),
        (
            "a topic Kafka reserves",
            with("spec.kafka.topic", json!("..")),
            "spec.kafka.topic",
        ),
        (
            "blank brokers",
            with("spec.kafka.bootstrapServers", json!("  ")),
            "spec.kafka.bootstrapServers",
        ),
        (
            "blank consumer group",
            with("spec.kafka.consumerGroup", json!(" ")),
            "spec.kafka.consumerGroup",
        ),
        (
            "no image",
            with("spec.workers.image", Value::Null),
            "spec.workers.image",
        ),
        (
            "threshold above 1",
            with("spec.fraud", json!({"threshold": 1.5})),
            "spec.fraud.threshold",
        ),
        (
            "storage size not a quantity",
            with(
                "spec.postgres",
                json!({"cloudnativepg": {"storageSize": "lots"}}),
            ),
            "spec.postgres.cloudnativepg.storageSize",
        ),
        (
            "monitoring label key not a label key",
            with("spec.monitoring", json!({"labels": {"no spaces": "x"}})),
            "spec.monitoring.labels",
        ),
        (
            "monitoring label taking the operator's own",
            with(
                "spec.monitoring",
                json!({"labels": {"app.kubernetes.io/managed-by": "me"}}),
            ),
            "spec.monitoring.labels",
        ),
        (
            "monitoring label value too long",
            with(
                "spec.monitoring",
                json!({"labels": {"release": "x".repeat(64)}}),
            ),
            "spec.monitoring.labels.release",
        ),
        (
            "fraud spike factor that flags every fluctuation",
            with(
                "spec.monitoring",
                json!({"alerts": {"fraudSpikeFactor": 1.0}}),
            ),
            "spec.monitoring.alerts.fraudSpikeFactor",
        ),
        (
            "quality score above 1",
            with("spec.monitoring", json!({"alerts": {"minQualityScore": 2}})),
            "spec.monitoring.alerts.minQualityScore",
        ),
        (
            "zero time lag threshold",
            with("spec.monitoring", json!({"alerts": {"timeLagSeconds": 0}})),
            "spec.monitoring.alerts.timeLagSeconds",
        ),
        (
            "autoscaling with nothing to scale",
            with("spec.autoscaling", json!({"enabled": true})).pipe(|mut v| {
                v["spec"]["workers"]["maxReplicas"] = json!(1);
                v
            }),
            "spec.autoscaling.enabled",
        ),
    ];
    let mut failures = Vec::new();
    for (what, obj, field) in cases {
        let obj: DynamicObject = serde_json::from_value(obj).unwrap();
        match api.create(&PostParams::default(), &obj).await {
            Ok(_) => {
                failures.push(format!("{what}: accepted"));
                let _ = api.delete("invalid", &Default::default()).await;
            }
            Err(e) if e.to_string().contains(field) => {}
            Err(e) => failures.push(format!("{what}: message does not name {field}: {e}")),
        }
    }

    // Transition rules: partitions never decrease, the topic never changes.
    let obj: DynamicObject = serde_json::from_value(base()).unwrap();
    api.create(&PostParams::default(), &obj)
        .await
        .expect("the base object is valid");
    for (what, patch, field) in [
        (
            "fewer partitions",
            json!({"spec": {"kafka": {"partitions": 3}}}),
            "spec.kafka.partitions",
        ),
        (
            "another topic",
            json!({"spec": {"kafka": {"topic": "other"}}}),
            "spec.kafka.topic",
        ),
    ] {
        match api
            .patch("invalid", &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => failures.push(format!("{what}: accepted")),
            Err(e) if e.to_string().contains(field) => {}
            Err(e) => failures.push(format!("{what}: message does not name {field}: {e}")),
        }
    }
    api.patch(
        "invalid",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"kafka": {"partitions": 12}}})),
    )
    .await
    .expect("more partitions are allowed");
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn kubectl_explain_describes_the_fields() {
    let out = run(kubectl(setup()).args(["explain", "pipelinedeployment.spec.kafka.partitions"]));
    assert!(out.contains("never remove them"), "{out}");
    let out = run(kubectl(setup()).args(["explain", "pipelinedeployment.spec.postgres"]));
    assert!(
        out.contains("cloudnativepg") && out.contains("external"),
        "{out}"
    );
}

trait Pipe: Sized {
    fn pipe(self, f: impl FnOnce(Self) -> Self) -> Self {
        f(self)
    }
}
impl Pipe for Value {}
