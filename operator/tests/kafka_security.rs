//! The operator's own Kafka clients on a SASL_SSL listener (a broker of the test's own from
//! `hack/kafka.sh start NAME --secure`): with the SCRAM credentials and CA the pipeline
//! references in Secrets it creates and grows the topic and reads lag; a wrong password, an
//! untrusted CA or a missing Secret make the pipeline Degraded with a reason that says so.

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::json;
use sluice_operator::crd::{
    KafkaTls, PipelineDeployment, SaslMechanism, SaslSpec, SecretKeyRef, SecurityProtocol,
};

/// A broker with the SASL_SSL and mTLS listeners, stopped (and its data removed) when dropped.
struct SecureKafka {
    name: String,
    env: String,
}

impl SecureKafka {
    fn start() -> Self {
        let name = format!("op-secure-{}", std::process::id());
        let env = sluice_harness::hack("kafka.sh", &["start", &name, "--secure"]).unwrap();
        Self { name, env }
    }

    fn get(&self, key: &str) -> String {
        sluice_harness::env_value(&self.env, key)
            .unwrap_or_else(|| panic!("{key} in kafka.sh's env"))
    }

    fn file(&self, key: &str) -> String {
        std::fs::read_to_string(self.get(key)).unwrap()
    }
}

impl Drop for SecureKafka {
    fn drop(&mut self) {
        let _ = sluice_harness::hack("kafka.sh", &["stop", &self.name]);
    }
}

/// Partitions of `topic`, read through the broker's plaintext listener.
fn partitions(bootstrap: &str, topic: &str) -> Option<usize> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let md = c.fetch_metadata(None, Duration::from_secs(5)).ok()?;
    md.topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().len())
}

fn key(name: &str, key: &str) -> SecretKeyRef {
    SecretKeyRef {
        name: name.into(),
        key: key.into(),
    }
}

/// A SASL_SSL + SCRAM-SHA-512 pipeline `name` whose credentials are in Secret `user` and whose
/// CA is in Secret `ca`.
fn pipeline(ns: &str, kafka: &SecureKafka, name: &str, user: &str, ca: &str) -> PipelineDeployment {
    let mut pd = example("external-postgres.yaml");
    pd.metadata.name = Some(name.into());
    pd.spec.kafka.topic = format!("secure-{name}.{ns}");
    pd.spec.kafka.bootstrap_servers = kafka.get("KAFKA_SASL_SSL_BOOTSTRAP");
    pd.spec.kafka.manage_topic = true;
    pd.spec.kafka.partitions = 3;
    pd.spec.workers.max_replicas = 3;
    pd.spec.workers.min_replicas = 1;
    pd.spec.kafka.security_protocol = SecurityProtocol::SaslSsl;
    pd.spec.kafka.sasl = Some(SaslSpec {
        mechanism: SaslMechanism::ScramSha512,
        username: key(user, "username"),
        password: key(user, "password"),
    });
    pd.spec.kafka.tls = Some(KafkaTls {
        ca: Some(key(ca, "ca.crt")),
        ..KafkaTls::default()
    });
    // Pipelines of one test share the external database: each its own schema (set through
    // JSON, the way a manifest would).
    let mut v = serde_json::to_value(&pd).unwrap();
    v["spec"]["postgres"]["schema"] = json!(name.replace('-', "_"));
    serde_json::from_value(v).unwrap()
}

/// Waits for condition `type_` of pipeline `name` to be `status` with `reason`; its message.
async fn wait_condition(
    api: &Api<PipelineDeployment>,
    name: &str,
    type_: &str,
    status: &str,
    reason: &str,
) -> String {
    wait_for(
        &format!("{name} {type_}={status} {reason}"),
        TIMEOUT,
        || async {
            let pd = api.get(name).await.ok()?;
            let c = pd
                .status?
                .conditions
                .into_iter()
                .find(|c| c.type_ == type_)?;
            (c.status == status && c.reason == reason).then_some(c.message)
        },
    )
    .await
}

#[tokio::test]
async fn topic_and_lag_over_sasl_ssl_scram_and_refusals_degrade() {
    let kafka = SecureKafka::start();
    let plaintext = kafka.get("KAFKA_BOOTSTRAP");
    let ns = TestNs::new("op-kafka-sec").await;
    let secrets: Api<Secret> = ns.api();
    for (name, data) in [
        (
            "kafka-user",
            json!({"username": kafka.get("KAFKA_SCRAM_USERNAME"), "password": kafka.get("KAFKA_SCRAM_PASSWORD")}),
        ),
        (
            "wrong-user",
            json!({"username": kafka.get("KAFKA_SCRAM_USERNAME"), "password": "not-the-password"}),
        ),
        ("kafka-ca", json!({"ca.crt": kafka.file("KAFKA_CA")})),
        (
            "other-ca",
            json!({"ca.crt": kafka.file("KAFKA_UNTRUSTED_CA")}),
        ),
    ] {
        let s: Secret =
            serde_json::from_value(json!({"metadata": {"name": name}, "stringData": data}))
                .unwrap();
        secrets.create(&PostParams::default(), &s).await.unwrap();
    }
    let _op = Operator::start(&ns.name, "kafka-sec");
    let pds: Api<PipelineDeployment> = ns.api();

    // The right credentials: the topic is created (and grown) over SASL_SSL, lag is read.
    let good = pipeline(&ns.name, &kafka, "secure", "kafka-user", "kafka-ca");
    let topic = good.spec.kafka.topic.clone();
    pds.create(&PostParams::default(), &good).await.unwrap();
    wait_condition(&pds, "secure", "LagKnown", "True", "OffsetsRead").await;
    wait_for("the topic with 3 partitions", TIMEOUT, || async {
        let (b, t) = (plaintext.clone(), topic.clone());
        tokio::task::spawn_blocking(move || partitions(&b, &t))
            .await
            .ok()
            .flatten()
            .filter(|n| *n == 3)
    })
    .await;
    pds.patch(
        "secure",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"kafka": {"partitions": 4}}})),
    )
    .await
    .unwrap();
    wait_for("the topic grown to 4 partitions", TIMEOUT, || async {
        let (b, t) = (plaintext.clone(), topic.clone());
        tokio::task::spawn_blocking(move || partitions(&b, &t))
            .await
            .ok()
            .flatten()
            .filter(|n| *n == 4)
    })
    .await;
    // The status follows once the reconcile that grew the topic patches it.
    let status = wait_for("topicPartitions 4 in the status", TIMEOUT, || async {
        let status = pds.get("secure").await.ok()?.status?;
        (status.topic_partitions == Some(4)).then_some(status)
    })
    .await;
    let degraded = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .unwrap();
    assert_eq!(degraded.status, "False", "{degraded:?}");

    // A wrong password, a CA that did not sign the broker's certificate, a missing Secret.
    for (name, user, ca, reason) in [
        (
            "refused",
            "wrong-user",
            "kafka-ca",
            "KafkaAuthenticationFailed",
        ),
        ("untrusted", "kafka-user", "other-ca", "KafkaTlsFailed"),
        (
            "missing",
            "no-such-secret",
            "kafka-ca",
            "KafkaCredentialsUnavailable",
        ),
    ] {
        pds.create(
            &PostParams::default(),
            &pipeline(&ns.name, &kafka, name, user, ca),
        )
        .await
        .unwrap();
        let message = wait_condition(&pds, name, "Degraded", "True", reason).await;
        assert!(
            !message.contains(&kafka.get("KAFKA_SCRAM_PASSWORD")) && !message.contains("BEGIN"),
            "no secret in the status: {message}"
        );
        println!("{name}: {message}");
    }
}
