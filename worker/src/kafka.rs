//! Kafka client settings for the consumer and the DLQ/alerts producer, and creation of the
//! output topics.
//!
//! TLS material comes as files (`kafka.ssl_*_location`, mounted from Secrets), SASL
//! credentials from the environment ([`Secrets`]); neither is ever logged.

use crate::config::Secrets;
use anyhow::Result;
use rdkafka::ClientConfig;
use rdkafka::ClientContext;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureProducer;
use rdkafka::types::RDKafkaErrorCode;
use sluice_api::WorkerConfig;
use std::sync::Mutex;
use std::time::Duration;

fn base(config: &WorkerConfig, secrets: &Secrets) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.kafka.bootstrap_servers)
        .set("security.protocol", &config.kafka.security_protocol)
        .set("client.id", format!("sluice-worker-{}", config.pipeline));
    for (property, file) in [
        ("ssl.ca.location", &config.kafka.ssl_ca_location),
        (
            "ssl.certificate.location",
            &config.kafka.ssl_certificate_location,
        ),
        ("ssl.key.location", &config.kafka.ssl_key_location),
    ] {
        if !file.is_empty() {
            c.set(property, file);
        }
    }
    if let Some((user, password)) = &secrets.kafka_sasl {
        c.set("sasl.mechanism", &config.kafka.sasl_mechanism)
            .set("sasl.username", user)
            .set("sasl.password", password);
    }
    c
}

pub fn consumer_config(config: &WorkerConfig, secrets: &Secrets) -> ClientConfig {
    let mut c = base(config, secrets);
    c.set("group.id", &config.kafka.group_id)
        .set("partition.assignment.strategy", "cooperative-sticky")
        // Postgres holds the stored offsets; Kafka's copy is written by us after each commit.
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        // Partitions added to the topic are only seen at a metadata refresh, every 5 min by
        // default: the operator grows topics, and records on a new partition would wait
        // that long unread (the autoscaling test's 4 → 6 step missed 2/6 of its records).
        .set("topic.metadata.refresh.interval.ms", "30000")
        .set(
            "session.timeout.ms",
            config.kafka.session_timeout_ms.to_string(),
        )
        .set(
            "heartbeat.interval.ms",
            (config.kafka.session_timeout_ms / 5).max(100).to_string(),
        )
        .set(
            "fetch.wait.max.ms",
            config.kafka.fetch_wait_max_ms.to_string(),
        )
        // A fetch returns once it has 16 KB or waited fetch.wait.max.ms: at a few thousand
        // records a second the broker otherwise answers every fetch with a record or two,
        // about one fetch per produce request, which cost the broker more CPU than anything
        // else on a shared machine. A backlog fills it at once.
        .set("fetch.min.bytes", "16384")
        .set("fetch.queue.backoff.ms", "10")
        // Bounded prefetch keeps the worker's memory small whatever the backlog. While the
        // sink is busy the consumer stops polling and this prefetch is what waits: 8 MB /
        // 1 MB per partition put the 1M-event drain's peak RSS at 178 MB, these 150 MB, at
        // the same throughput.
        .set("queued.max.messages.kbytes", "2048")
        .set("queued.min.messages", "5000")
        .set("max.partition.fetch.bytes", "262144")
        .set("statistics.interval.ms", "5000");
    c
}

pub fn producer(config: &WorkerConfig, secrets: &Secrets) -> Result<FutureProducer> {
    Ok(base(config, secrets)
        .set("enable.idempotence", "true")
        .set("linger.ms", "1")
        .set("message.timeout.ms", "30000")
        .create()?)
}

/// Keeps the last authentication or TLS failure librdkafka reported for a client: a failed
/// request only says "timed out" or "transport failure", the reason (bad password, untrusted
/// certificate) comes to the error callback, followed by transport errors that must not hide it.
#[derive(Default)]
struct SecurityFailure(Mutex<Option<String>>);

impl ClientContext for SecurityFailure {
    fn error(&self, error: KafkaError, reason: &str) {
        let refused = matches!(
            error.rdkafka_error_code(),
            Some(
                RDKafkaErrorCode::Authentication
                    | RDKafkaErrorCode::SaslAuthenticationFailed
                    | RDKafkaErrorCode::SSL
            )
        ) || sluice_api::kafka_refusal(reason).is_some();
        if refused {
            *self.0.lock().expect("security failure poisoned") = Some(reason.to_string());
        } else {
            tracing::debug!(%error, reason, "Kafka client error");
        }
    }
}

impl ConsumerContext for SecurityFailure {}

impl SecurityFailure {
    fn get(&self) -> Option<String> {
        self.0.lock().expect("security failure poisoned").clone()
    }
}

/// librdkafka's words if Kafka refuses a client with the worker's settings. An admin client
/// never polls the error events that carry them, so a throw-away consumer (no group: it joins
/// none) fetches metadata and polls its own. Blocking, about a second or two.
fn why_refused(config: &WorkerConfig, secrets: &Secrets) -> Option<String> {
    let probe: BaseConsumer<SecurityFailure> = base(config, secrets)
        .create_with_context(SecurityFailure::default())
        .ok()?;
    let _ = probe.fetch_metadata(None, Duration::from_secs(5));
    for _ in 0..20 {
        if let Some(reason) = probe.context().get() {
            return Some(reason);
        }
        let _ = probe.poll(Duration::from_millis(50));
    }
    probe.context().get()
}

/// Create the DLQ and alerts topics with the input topic's partition count when missing.
/// This is the fallback for a hand-run worker, which should not depend on auto-creation: it
/// uses the broker's defaults. Under the operator the topics already exist, created with
/// `spec.kafka.topicSettings` before the worker Deployment is applied.
///
/// A broker that refuses the worker's credentials or certificate does not stop the worker:
/// exiting would only crash-loop the pod. It logs why and goes on; the consumer keeps
/// reconnecting, logging and counting each failure (`sluice_errors_total{error="poll"}`),
/// and the operator's `Degraded` condition names the reason.
pub async fn ensure_output_topics(config: &WorkerConfig, secrets: &Secrets) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = base(config, secrets).create()?;
    let partitions = {
        let topic = config.kafka.topic.clone();
        let meta = tokio::task::block_in_place(|| {
            admin
                .inner()
                .fetch_metadata(Some(&topic), Duration::from_secs(10))
        });
        let meta = match meta {
            Ok(meta) => meta,
            Err(e) => match tokio::task::block_in_place(|| why_refused(config, secrets)) {
                Some(refused) => {
                    tracing::error!(
                        reason = %refused,
                        bootstrap = %config.kafka.bootstrap_servers,
                        "Kafka refused the worker's credentials or TLS settings; output topics not checked, the consumer keeps retrying"
                    );
                    return Ok(());
                }
                None => return Err(e.into()),
            },
        };
        meta.topics()
            .first()
            .map(|t| t.partitions().len())
            .filter(|n| *n > 0)
            .unwrap_or(1) as i32
    };
    let dlq = config.kafka.dlq_topic();
    let alerts = config.kafka.alerts_topic();
    let topics = [
        NewTopic::new(&dlq, partitions, TopicReplication::Fixed(-1)),
        NewTopic::new(&alerts, partitions, TopicReplication::Fixed(-1)),
    ];
    for result in admin.create_topics(&topics, &AdminOptions::new()).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => anyhow::bail!("creating topic {topic}: {code}"),
        }
    }
    Ok(())
}
