//! Kafka client settings for the consumer and the DLQ/alerts producer, and creation of the
//! output topics.

use crate::config::Secrets;
use anyhow::Result;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::FutureProducer;
use rdkafka::types::RDKafkaErrorCode;
use sluice_api::WorkerConfig;
use std::time::Duration;

fn base(config: &WorkerConfig, secrets: &Secrets) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.kafka.bootstrap_servers)
        .set("security.protocol", &config.kafka.security_protocol)
        .set("client.id", format!("sluice-worker-{}", config.pipeline));
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
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .create()?)
}

/// Create the DLQ and alerts topics with the input topic's partition count when missing
/// (the operator normally does; a hand-run worker should not depend on auto-creation).
pub async fn ensure_output_topics(config: &WorkerConfig, secrets: &Secrets) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = base(config, secrets).create()?;
    let partitions = {
        let topic = config.kafka.topic.clone();
        let meta = tokio::task::block_in_place(|| {
            admin
                .inner()
                .fetch_metadata(Some(&topic), Duration::from_secs(10))
        })?;
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
