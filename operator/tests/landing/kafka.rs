//! The Kafka side of the deletion tests: records on a topic, a committed offset, whether a
//! topic or group exists, valid transactions for a real worker.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::json;
use sluice_operator::crd::PipelineDeployment;

use super::TRANSACTIONS;
use crate::common::setup;

pub const RECORDS: i64 = 25;

pub fn kafka() -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &setup().kafka);
    c
}

/// Records on partition 0 of `topic` (its high watermark), or None when it does not exist.
pub fn records(topic: &str) -> Option<i64> {
    let c: BaseConsumer = kafka().create().unwrap();
    let md = c.fetch_metadata(None, Duration::from_secs(5)).ok()?;
    md.topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())?;
    c.fetch_watermarks(topic, 0, Duration::from_secs(5))
        .ok()
        .map(|(_, high)| high)
}

pub fn produce(topic: &str) {
    let p: BaseProducer = kafka().create().unwrap();
    for i in 0..RECORDS {
        let key = format!("k{i}");
        p.send(BaseRecord::to(topic).key(&key).payload("{}").partition(0))
            .unwrap();
    }
    p.flush(Duration::from_secs(10)).unwrap();
}

/// Commits an offset for `group` on `topic`, as the workers do: the group then exists.
pub fn commit(group: &str, topic: &str) {
    let c: BaseConsumer = kafka().set("group.id", group).create().unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(RECORDS))
        .unwrap();
    c.commit(&tpl, CommitMode::Sync).unwrap();
}

/// Whether the broker knows `group`.
pub fn group_exists(group: &str) -> bool {
    let c: BaseConsumer = kafka().create().unwrap();
    c.fetch_group_list(Some(group), Duration::from_secs(5))
        .map(|l| {
            l.groups()
                .iter()
                .any(|g| g.name() == group && g.state() != "Dead")
        })
        .unwrap_or(true)
}

pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

/// Kafka's view of a landed pipeline: its topics (input, DLQ, alerts) and consumer group.
pub fn kafka_names(pd: &PipelineDeployment) -> ([String; 3], String) {
    let t = &pd.spec.kafka.topic;
    (
        [t.clone(), format!("{t}.dlq"), format!("{t}.alerts")],
        pd.consumer_group(),
    )
}

/// [`TRANSACTIONS`] valid transactions of the shared contract, timestamped now.
pub fn produce_transactions(topic: &str) {
    let p: BaseProducer = kafka().create().unwrap();
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    for i in 0..TRANSACTIONS {
        let id = format!("tx-{topic}-{i}");
        let payload = json!({
            "transaction_id": id, "customer_id": format!("c{}", i % 17), "merchant_id": "m1",
            "amount": 12.5, "currency": "EUR", "timestamp": now,
            "payment_method": "credit_card", "country": "DE"
        })
        .to_string();
        p.send(BaseRecord::to(topic).key(&id).payload(&payload))
            .unwrap();
    }
    p.flush(Duration::from_secs(10)).unwrap();
}
