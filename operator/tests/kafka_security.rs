//! The operator's own Kafka clients (topic admin, lag reader) on the secured listeners of a
//! broker of the test's own (`hack/kafka.sh start NAME --secure`), with the credentials the
//! pipeline references in Secrets: over SASL_SSL with SCRAM and with PLAIN, and over mutual
//! TLS, it creates and grows the topic and reads lag; a wrong password, an untrusted CA, a
//! client certificate the broker does not trust or a missing Secret make the pipeline Degraded
//! with a reason that says so.

mod common;

use std::process::Command;

use common::*;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
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
    fn start(prefix: &str) -> Self {
        let name = format!("{prefix}-{}", std::process::id());
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

async fn wait_partitions(bootstrap: &str, topic: &str, want: usize) {
    wait_for(
        &format!("topic {topic} with {want} partitions"),
        TIMEOUT,
        || async {
            let (b, t) = (bootstrap.to_owned(), topic.to_owned());
            tokio::task::spawn_blocking(move || topic_partitions(&b, &t))
                .await
                .ok()
                .flatten()
                .filter(|n| *n == want)
        },
    )
    .await;
}

fn key(name: &str, key: &str) -> SecretKeyRef {
    SecretKeyRef {
        name: name.into(),
        key: key.into(),
    }
}

/// Creates one Secret per `(name, stringData)`.
async fn create_secrets(ns: &TestNs, secrets: &[(&str, serde_json::Value)]) {
    let api: Api<Secret> = ns.api();
    for (name, data) in secrets {
        let s: Secret =
            serde_json::from_value(json!({"metadata": {"name": name}, "stringData": data}))
                .unwrap();
        api.create(&PostParams::default(), &s).await.unwrap();
    }
}

/// How a pipeline reaches the broker: SASL (mechanism, Secret with `username`/`password`) and
/// the Secrets of its CA (`ca.crt`) and client certificate (`tls.crt`/`tls.key`).
struct Access<'a> {
    bootstrap: String,
    sasl: Option<(SaslMechanism, &'a str)>,
    ca: &'a str,
    client: Option<&'a str>,
}

/// A pipeline `name` with a managed topic of 3 partitions, reaching the broker by `access`.
fn pipeline(ns: &str, name: &str, access: &Access) -> PipelineDeployment {
    let mut pd = example("external-postgres.yaml");
    pd.metadata.name = Some(name.into());
    pd.spec.kafka.topic = format!("secure-{name}.{ns}");
    pd.spec.kafka.bootstrap_servers = access.bootstrap.clone();
    pd.spec.kafka.manage_topic = true;
    pd.spec.kafka.partitions = 3;
    pd.spec.workers.max_replicas = 3;
    pd.spec.workers.min_replicas = 1;
    pd.spec.kafka.security_protocol = match access.sasl {
        Some(_) => SecurityProtocol::SaslSsl,
        None => SecurityProtocol::Ssl,
    };
    pd.spec.kafka.sasl = access.sasl.map(|(mechanism, user)| SaslSpec {
        mechanism,
        username: key(user, "username"),
        password: key(user, "password"),
    });
    pd.spec.kafka.tls = Some(KafkaTls {
        ca: Some(key(access.ca, "ca.crt")),
        client_certificate: access.client.map(|c| key(c, "tls.crt")),
        client_key: access.client.map(|c| key(c, "tls.key")),
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

/// Creates pipeline `name`; once its lag is read, checks the topic exists with 3 partitions,
/// grows it to 4 and checks the status follows with the pipeline not Degraded.
async fn topic_and_lag(
    pds: &Api<PipelineDeployment>,
    ns: &str,
    plaintext: &str,
    name: &str,
    access: &Access<'_>,
) {
    let pd = pipeline(ns, name, access);
    let topic = pd.spec.kafka.topic.clone();
    pds.create(&PostParams::default(), &pd).await.unwrap();
    wait_condition(pds, name, "LagKnown", "True", "OffsetsRead").await;
    wait_partitions(plaintext, &topic, 3).await;
    pds.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"kafka": {"partitions": 4}}})),
    )
    .await
    .unwrap();
    wait_partitions(plaintext, &topic, 4).await;
    // The status follows once the reconcile that grew the topic patches it.
    let status = wait_for(
        &format!("{name}: topicPartitions 4 in the status"),
        TIMEOUT,
        || async {
            let status = pds.get(name).await.ok()?.status?;
            (status.topic_partitions == Some(4)).then_some(status)
        },
    )
    .await;
    let degraded = status.conditions.iter().find(|c| c.type_ == "Degraded");
    assert_eq!(degraded.unwrap().status, "False", "{name}: {degraded:?}");
}

/// Creates pipeline `name` and waits until it is Degraded with `reason`; the message, checked
/// to carry no secret.
async fn refused(
    pds: &Api<PipelineDeployment>,
    ns: &str,
    name: &str,
    access: &Access<'_>,
    reason: &str,
    secrets: &[String],
) -> String {
    let pd = pipeline(ns, name, access);
    pds.create(&PostParams::default(), &pd).await.unwrap();
    let message = wait_condition(pds, name, "Degraded", "True", reason).await;
    assert!(
        !message.contains("BEGIN") && secrets.iter().all(|s| !message.contains(s.as_str())),
        "no secret in the status: {message}"
    );
    println!("{name}: {message}");
    message
}

#[tokio::test]
async fn topic_and_lag_over_sasl_ssl_scram_and_plain_and_refusals_degrade() {
    let kafka = SecureKafka::start("op-sasl");
    let (scram_pw, plain_pw) = (
        kafka.get("KAFKA_SCRAM_PASSWORD"),
        kafka.get("KAFKA_PLAIN_PASSWORD"),
    );
    let ns = TestNs::new("op-kafka-sasl").await;
    create_secrets(
        &ns,
        &[
            (
                "scram-user",
                json!({"username": kafka.get("KAFKA_SCRAM_USERNAME"), "password": scram_pw}),
            ),
            (
                "plain-user",
                json!({"username": kafka.get("KAFKA_PLAIN_USERNAME"), "password": plain_pw}),
            ),
            (
                "wrong-user",
                json!({"username": kafka.get("KAFKA_PLAIN_USERNAME"), "password": "not-the-password"}),
            ),
            ("kafka-ca", json!({"ca.crt": kafka.file("KAFKA_CA")})),
            (
                "other-ca",
                json!({"ca.crt": kafka.file("KAFKA_UNTRUSTED_CA")}),
            ),
        ],
    )
    .await;
    let _op = Operator::start(&ns.name, "kafka-sasl");
    let pds: Api<PipelineDeployment> = ns.api();
    let plaintext = kafka.get("KAFKA_BOOTSTRAP");
    let sasl = |mechanism, user, ca| Access {
        bootstrap: kafka.get("KAFKA_SASL_SSL_BOOTSTRAP"),
        sasl: Some((mechanism, user)),
        ca,
        client: None,
    };

    // The right credentials: the topic is created (and grown), lag is read.
    for (name, mechanism, user) in [
        ("scram", SaslMechanism::ScramSha512, "scram-user"),
        ("plain", SaslMechanism::Plain, "plain-user"),
    ] {
        let access = sasl(mechanism, user, "kafka-ca");
        topic_and_lag(&pds, &ns.name, &plaintext, name, &access).await;
    }

    // A wrong password, a CA that did not sign the broker's certificate, a missing Secret.
    let secrets = [scram_pw.clone(), plain_pw.clone()];
    for (name, mechanism, user, ca, reason) in [
        (
            "refused",
            SaslMechanism::Plain,
            "wrong-user",
            "kafka-ca",
            "KafkaAuthenticationFailed",
        ),
        (
            "untrusted",
            SaslMechanism::ScramSha512,
            "scram-user",
            "other-ca",
            "KafkaTlsFailed",
        ),
        (
            "missing",
            SaslMechanism::ScramSha256,
            "no-such-secret",
            "kafka-ca",
            "KafkaCredentialsUnavailable",
        ),
    ] {
        let access = sasl(mechanism, user, ca);
        refused(&pds, &ns.name, name, &access, reason, &secrets).await;
    }
}

/// A self-signed certificate and its key (PEM), made with openssl: a client certificate no CA
/// the broker trusts has signed.
fn self_signed() -> (String, String) {
    let dir = std::env::temp_dir().join(format!("sluice-stranger-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    let mut openssl = Command::new("openssl");
    openssl
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=sluice-stranger", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert);
    run(&mut openssl);
    let pem = (
        std::fs::read_to_string(&cert).unwrap(),
        std::fs::read_to_string(&key).unwrap(),
    );
    std::fs::remove_dir_all(&dir).unwrap();
    pem
}

#[tokio::test]
async fn topic_and_lag_over_mutual_tls_and_an_untrusted_client_certificate_degrades() {
    let kafka = SecureKafka::start("op-mtls");
    let (stranger_cert, stranger_key) = self_signed();
    let ns = TestNs::new("op-kafka-mtls").await;
    create_secrets(
        &ns,
        &[
            ("kafka-ca", json!({"ca.crt": kafka.file("KAFKA_CA")})),
            (
                "kafka-client",
                json!({"tls.crt": kafka.file("KAFKA_CLIENT_CERT"), "tls.key": kafka.file("KAFKA_CLIENT_KEY")}),
            ),
            (
                "stranger",
                json!({"tls.crt": stranger_cert, "tls.key": stranger_key}),
            ),
        ],
    )
    .await;
    let mut op = Operator::start(&ns.name, "kafka-mtls");
    let pds: Api<PipelineDeployment> = ns.api();
    let mtls = |client| Access {
        bootstrap: kafka.get("KAFKA_MTLS_BOOTSTRAP"),
        sasl: None,
        ca: "kafka-ca",
        client: Some(client),
    };

    // The client certificate the broker's CA signed: topic created and grown, lag read.
    let plaintext = kafka.get("KAFKA_BOOTSTRAP");
    topic_and_lag(&pds, &ns.name, &plaintext, "mtls", &mtls("kafka-client")).await;

    // A certificate the broker does not trust: Degraded, in librdkafka's words; no crash.
    let message = refused(
        &pds,
        &ns.name,
        "stranger",
        &mtls("stranger"),
        "KafkaTlsFailed",
        &[],
    )
    .await;
    assert!(
        message.contains("SSL") && message.contains("certificate"),
        "librdkafka's words: {message}"
    );
    assert!(
        op.process.exited().unwrap().is_none(),
        "the operator exited"
    );
}
