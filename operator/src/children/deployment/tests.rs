use super::*;
use crate::children::testing::{BASIC, pipeline};
use serde_json::Value;

/// The entry of `list` (env, volumes, volume mounts) with that `name`.
fn named<'a>(list: &'a Value, name: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|e| e["name"] == name)
}

#[test]
fn replicas_follow_min_without_autoscaling_and_are_left_out_with_it() {
    let mut pd = pipeline(BASIC);
    assert_eq!(build_deployment(&pd, "h").spec.replicas, Some(2));
    pd.spec.autoscaling = Some(serde_json::from_str(r#"{"enabled": true}"#).unwrap());
    let d = serde_json::to_value(build_deployment(&pd, "h")).unwrap();
    assert!(
        d["spec"].get("replicas").is_none(),
        "replicas must be absent from the applied object"
    );
}

#[test]
fn pod_is_restricted_and_gets_secrets_by_reference() {
    let d = serde_json::to_value(build_deployment(&pipeline(BASIC), "abc")).unwrap();
    let pod = &d["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
    assert_eq!(
        c["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert!(c["resources"]["limits"]["memory"].is_string());
    let db = named(&c["env"], "DATABASE_URL").unwrap();
    assert_eq!(db["valueFrom"]["secretKeyRef"]["name"], "db");
    assert_eq!(
        d["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION],
        "abc"
    );
    assert_eq!(c["args"][1], "/etc/sluice/config.yaml");
}

const KNOBS: &str = r#"
apiVersion: sluice.dev/v1alpha1
kind: PipelineDeployment
metadata: {name: payments, namespace: ns, generation: 1}
spec:
  kafka: {bootstrapServers: "kafka:9092", topic: payments}
  workers:
    image: "sluice-worker:test"
    imagePullSecrets: [{name: registry}]
    nodeSelector: {kubernetes.io/arch: amd64}
    tolerations: [{key: dedicated, operator: Equal, value: stream, effect: NoSchedule}]
    affinity:
      nodeAffinity:
        requiredDuringSchedulingIgnoredDuringExecution:
          nodeSelectorTerms: [{matchExpressions: [{key: pool, operator: In, values: [stream]}]}]
    topologySpreadConstraints:
      - {maxSkew: 2, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: DoNotSchedule}
    podAnnotations: {sidecar.istio.io/inject: "false"}
    podLabels: {team: payments}
    priorityClassName: streaming
  postgres:
    external:
      primaryUrl: {name: db, key: url}
"#;

#[test]
fn pod_knobs_reach_the_pod_template_and_the_operators_labels_stay() {
    let d = serde_json::to_value(build_deployment(&pipeline(KNOBS), "abc")).unwrap();
    let meta = &d["spec"]["template"]["metadata"];
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(pod["imagePullSecrets"][0]["name"], "registry");
    assert_eq!(pod["nodeSelector"]["kubernetes.io/arch"], "amd64");
    assert_eq!(pod["tolerations"][0]["value"], "stream");
    assert_eq!(
        pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
            [0]["matchExpressions"][0]["values"][0],
        "stream"
    );
    let spread = pod["topologySpreadConstraints"].as_array().unwrap();
    assert_eq!(
        spread.len(),
        1,
        "the spec's constraints replace the default"
    );
    assert_eq!(spread[0]["topologyKey"], "topology.kubernetes.io/zone");
    assert_eq!(pod["priorityClassName"], "streaming");
    assert_eq!(meta["labels"]["team"], "payments");
    assert_eq!(meta["labels"]["sluice.dev/pipeline"], "payments");
    assert_eq!(meta["annotations"]["sidecar.istio.io/inject"], "false");
    assert_eq!(meta["annotations"][CONFIG_HASH_ANNOTATION], "abc");
}

#[test]
fn workers_spread_across_nodes_unless_told_otherwise() {
    let mut pd = pipeline(BASIC);
    let d = serde_json::to_value(build_deployment(&pd, "h")).unwrap();
    let pod = &d["spec"]["template"]["spec"];
    let spread = &pod["topologySpreadConstraints"][0];
    assert_eq!(spread["topologyKey"], "kubernetes.io/hostname");
    assert_eq!(spread["maxSkew"], 1);
    assert_eq!(spread["whenUnsatisfiable"], "ScheduleAnyway");
    assert_eq!(
        spread["labelSelector"]["matchLabels"],
        serde_json::to_value(selector_labels(&pd)).unwrap()
    );
    for absent in [
        "imagePullSecrets",
        "nodeSelector",
        "tolerations",
        "affinity",
    ] {
        assert!(pod.get(absent).is_none(), "{absent} set without a spec");
    }

    pd.spec.workers.topology_spread_constraints = Some(vec![]);
    let d = serde_json::to_value(build_deployment(&pd, "h")).unwrap();
    assert!(
        d["spec"]["template"]["spec"]
            .get("topologySpreadConstraints")
            .is_none(),
        "an empty list means no constraint"
    );
}

#[test]
fn kafka_tls_files_are_mounted_from_their_secrets_and_named_by_path() {
    let plain = serde_json::to_value(build_deployment(&pipeline(BASIC), "abc")).unwrap();
    assert!(named(&plain["spec"]["template"]["spec"]["volumes"], "kafka-tls").is_none());

    let mut pd = pipeline(BASIC);
    pd.spec.kafka.security_protocol = crate::crd::SecurityProtocol::Ssl;
    let key = |name: &str, key: &str| SecretKeyRef {
        name: name.into(),
        key: key.into(),
    };
    pd.spec.kafka.tls = Some(crate::crd::KafkaTls {
        ca: Some(key("kafka-ca", "ca.crt")),
        client_certificate: Some(key("kafka-client", "tls.crt")),
        client_key: Some(key("kafka-client", "tls.key")),
    });
    let d = serde_json::to_value(build_deployment(&pd, "abc")).unwrap();
    let pod = &d["spec"]["template"]["spec"];
    let volume = named(&pod["volumes"], "kafka-tls").unwrap();
    let sources = volume["projected"]["sources"].as_array().unwrap();
    let items: Vec<(&str, &str, &str)> = sources
        .iter()
        .map(|s| {
            let item = &s["secret"]["items"][0];
            (
                s["secret"]["name"].as_str().unwrap(),
                item["key"].as_str().unwrap(),
                item["path"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        items,
        [
            ("kafka-ca", "ca.crt", "ca.crt"),
            ("kafka-client", "tls.crt", "tls.crt"),
            ("kafka-client", "tls.key", "tls.key")
        ]
    );
    let c = &pod["containers"][0];
    let mount = named(&c["volumeMounts"], "kafka-tls").unwrap();
    assert_eq!(mount["readOnly"], true);
    let env = |name: &str| named(&c["env"], name).map(|e| e["value"].as_str().unwrap().to_string());
    assert_eq!(
        env("SLUICE_KAFKA__SSL_CA_LOCATION").as_deref(),
        Some("/etc/sluice/kafka-tls/ca.crt")
    );
    assert_eq!(
        env("SLUICE_KAFKA__SSL_KEY_LOCATION").as_deref(),
        Some("/etc/sluice/kafka-tls/tls.key")
    );
    // Nothing secret in the pod spec itself: only references and paths.
    assert!(!d.to_string().contains("BEGIN"));
}
