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
            "unknown deletion policy",
            with("spec.deletionPolicy", json!("Destroy")),
            "spec.deletionPolicy",
        ),
        (
            "a Postgres parameter name with capitals and dashes",
            with(
                "spec.postgres",
                json!({"cloudnativepg": {"parameters": {"Work-Mem": "64MB"}}}),
            ),
            "spec.postgres.cloudnativepg.parameters",
        ),
        (
            "max_connections that is not a number",
            with(
                "spec.postgres",
                json!({"cloudnativepg": {"parameters": {"max_connections": "lots"}}}),
            ),
            "spec.postgres.cloudnativepg.parameters",
        ),
        (
            "a backup with neither object store nor volume snapshots",
            with(
                "spec.postgres",
                json!({"cloudnativepg": {"backup": {"retentionPolicy": "30d"}}}),
            ),
            "spec.postgres.cloudnativepg.backup",
        ),
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
            "TLS settings on a PLAINTEXT listener",
            with(
                "spec.kafka.tls",
                json!({"ca": {"name": "kafka-ca", "key": "ca.crt"}}),
            ),
            "spec.kafka.tls",
        ),
        (
            "a client certificate without its key",
            with(
                "spec.kafka",
                json!({"bootstrapServers": "kafka:9093", "topic": "t", "securityProtocol": "SSL",
                       "tls": {"clientCertificate": {"name": "kafka-client", "key": "tls.crt"}}}),
            ),
            "spec.kafka.tls.clientKey",
        ),
        (
            "a Secret key with a slash",
            with(
                "spec.kafka",
                json!({"bootstrapServers": "kafka:9093", "topic": "t", "securityProtocol": "SSL",
                       "tls": {"ca": {"name": "kafka-ca", "key": "certs/ca.crt"}}}),
            ),
            "spec.kafka.tls.ca.key",
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
        // Worker pod knobs: Kubernetes' own types, refused as the API server refuses a Pod.
        (
            "a toleration with an unknown operator",
            with(
                "spec.workers.tolerations",
                json!([{"key": "dedicated", "operator": "Matches", "value": "x"}]),
            ),
            "spec.workers.tolerations[0].operator",
        ),
        (
            "a toleration matching any value that names a value",
            with(
                "spec.workers.tolerations",
                json!([{"key": "dedicated", "operator": "Exists", "value": "x"}]),
            ),
            "spec.workers.tolerations[0]",
        ),
        (
            "a toleration with an unknown effect",
            with(
                "spec.workers.tolerations",
                json!([{"key": "k", "value": "v", "effect": "NoRun"}]),
            ),
            "spec.workers.tolerations[0].effect",
        ),
        (
            "a pod label taking the selector's",
            with(
                "spec.workers.podLabels",
                json!({"sluice.dev/pipeline": "other"}),
            ),
            "spec.workers.podLabels",
        ),
        (
            "a pod label taking the app name",
            with(
                "spec.workers.podLabels",
                json!({"app.kubernetes.io/name": "x"}),
            ),
            "spec.workers.podLabels",
        ),
        (
            "a pod label value Kubernetes refuses",
            with("spec.workers.podLabels", json!({"team": "a b"})),
            "spec.workers.podLabels.team",
        ),
        (
            "a pod annotation taking the config hash",
            with(
                "spec.workers.podAnnotations",
                json!({"sluice.dev/config-hash": "x"}),
            ),
            "spec.workers.podAnnotations",
        ),
        (
            "a node selector key that is no label key",
            with("spec.workers.nodeSelector", json!({"no spaces": "x"})),
            "spec.workers.nodeSelector",
        ),
        (
            "a negative maxSkew",
            with(
                "spec.workers.topologySpreadConstraints",
                json!([{"maxSkew": -1, "topologyKey": "kubernetes.io/hostname",
                        "whenUnsatisfiable": "DoNotSchedule"}]),
            ),
            "spec.workers.topologySpreadConstraints[0].maxSkew",
        ),
        (
            "an unknown whenUnsatisfiable",
            with(
                "spec.workers.topologySpreadConstraints",
                json!([{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                        "whenUnsatisfiable": "Sometimes"}]),
            ),
            "spec.workers.topologySpreadConstraints[0].whenUnsatisfiable",
        ),
        (
            "minDomains with a soft spread",
            with(
                "spec.workers.topologySpreadConstraints",
                json!([{"maxSkew": 1, "topologyKey": "zone", "minDomains": 2,
                        "whenUnsatisfiable": "ScheduleAnyway"}]),
            ),
            "spec.workers.topologySpreadConstraints[0]",
        ),
        (
            "the same spread twice",
            with(
                "spec.workers.topologySpreadConstraints",
                json!([{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"},
                       {"maxSkew": 2, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}]),
            ),
            "spec.workers.topologySpreadConstraints[1]",
        ),
        (
            "a node affinity with an unknown operator",
            with(
                "spec.workers.affinity",
                json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [
                        {"key": "pool", "operator": "Like", "values": ["a"]}]}]}}}),
            ),
            "spec.workers.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].operator",
        ),
        (
            "a preference weight above 100",
            with(
                "spec.workers.affinity",
                json!({"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
                    "weight": 500,
                    "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname"}}]}}),
            ),
            "spec.workers.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight",
        ),
        (
            "a priority class name that is no DNS name",
            with("spec.workers.priorityClassName", json!("High_Priority")),
            "spec.workers.priorityClassName",
        ),
        (
            "a memory limit that is no quantity",
            with(
                "spec.workers.resources",
                json!({"limits": {"memory": "lots"}}),
            ),
            "spec.workers.resources.limits.memory",
        ),
        (
            "a negative CPU request",
            with("spec.workers.resources", json!({"requests": {"cpu": "-1"}})),
            "spec.workers.resources.requests.cpu",
        ),
        (
            "an image pull secret without a name",
            with("spec.workers.imagePullSecrets", json!([{"name": ""}])),
            "spec.workers.imagePullSecrets[0].name",
        ),
        (
            "startFrom neither earliest, latest nor a timestamp",
            with("spec.kafka.startFrom", json!("yesterday")),
            "spec.kafka.startFrom",
        ),
        (
            "startFrom a date without a time",
            with("spec.kafka.startFrom", json!("2026-01-31")),
            "spec.kafka.startFrom",
        ),
        (
            "minInsyncReplicas above the replication factor",
            with(
                "spec.kafka.topicSettings",
                json!({"dlq": {"minInsyncReplicas": 2}}),
            ),
            "spec.kafka.topicSettings.dlq.minInsyncReplicas",
        ),
        (
            "retention under an hour",
            with(
                "spec.kafka.topicSettings",
                json!({"input": {"retentionMs": 60000}}),
            ),
            "spec.kafka.topicSettings.input.retentionMs",
        ),
        (
            "retention bytes under a megabyte",
            with(
                "spec.kafka.topicSettings",
                json!({"alerts": {"retentionBytes": 1000}}),
            ),
            "spec.kafka.topicSettings.alerts.retentionBytes",
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

#[tokio::test]
async fn start_positions_and_topic_settings_within_bounds_are_accepted() {
    let ns = TestNs::new("op-validation-ok").await;
    let api: Api<DynamicObject> = Api::namespaced_with(
        ns.client.clone(),
        &ns.name,
        &kube::api::ApiResource::erase::<PipelineDeployment>(&()),
    );
    let cases = [
        ("spec.kafka.startFrom", json!("latest")),
        ("spec.kafka.startFrom", json!("2026-01-31T00:00:00Z")),
        (
            "spec.kafka.startFrom",
            json!("2026-01-31T01:02:03.456+02:00"),
        ),
        (
            "spec.kafka.topicSettings",
            json!({
                "input": {"minInsyncReplicas": 1, "retentionMs": -1, "retentionBytes": -1},
                "dlq": {"retentionMs": 3600000, "retentionBytes": 1048576},
                "alerts": {"retentionMs": 604800000}
            }),
        ),
    ];
    for (i, (path, value)) in cases.into_iter().enumerate() {
        let mut obj = with(path, value.clone());
        obj["metadata"]["name"] = json!(format!("valid-{i}"));
        let obj: DynamicObject = serde_json::from_value(obj).unwrap();
        if let Err(e) = api.create(&PostParams::default(), &obj).await {
            panic!("{path}: {value} refused: {e}");
        }
    }
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

#[tokio::test]
async fn deletion_policies_and_postgres_settings_within_bounds_are_accepted() {
    let ns = TestNs::new("op-validation-pg").await;
    let api: Api<DynamicObject> = Api::namespaced_with(
        ns.client.clone(),
        &ns.name,
        &kube::api::ApiResource::erase::<PipelineDeployment>(&()),
    );
    let cases = [
        ("spec.deletionPolicy", json!("Retain")),
        ("spec.deletionPolicy", json!("Delete")),
        (
            "spec.postgres",
            json!({"cloudnativepg": {
                "readReplicas": 0,
                "enablePodMonitor": true,
                "parameters": {"max_connections": "300", "shared_buffers": "256MB", "pg_stat_statements.max": "1000"},
                "backup": {
                    "barmanObjectStore": {"destinationPath": "s3://b/p", "s3Credentials": {"inheritFromIAMRole": true}},
                    "retentionPolicy": "30d"
                }
            }}),
        ),
        (
            "spec.postgres",
            json!({"cloudnativepg": {"backup": {"volumeSnapshot": {"className": "csi-snap"}}}}),
        ),
    ];
    for (i, (path, value)) in cases.into_iter().enumerate() {
        let mut obj = with(path, value.clone());
        obj["metadata"]["name"] = json!(format!("valid-{i}"));
        let obj: DynamicObject = serde_json::from_value(obj).unwrap();
        let stored = api
            .create(&PostParams::default(), &obj)
            .await
            .unwrap_or_else(|e| panic!("{path}: {value} refused: {e}"));
        // Nothing of the passthrough is pruned on the way in.
        if let Some(backup) = value["cloudnativepg"].get("backup") {
            assert_eq!(
                &stored.data["spec"]["postgres"]["cloudnativepg"]["backup"],
                backup
            );
        }
    }
}
