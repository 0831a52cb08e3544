//! The batch's Kafka outputs, delivered before its transaction commits so none is lost (a
//! crash between the two can repeat a message; the tables stay exact): rejected records to
//! the DLQ topic, alerts to the alerts topic (contract §2).

use super::Sink;
use crate::batch::{Accepted, Rejected};
use chrono::Utc;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

impl Sink {
    pub(super) async fn publish_dlq(&self, rejected: &[&Rejected]) -> Result<(), KafkaError> {
        let mut deliveries = Vec::with_capacity(rejected.len());
        for r in rejected {
            let partition = r.partition.to_string();
            let offset = r.offset.to_string();
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "sluice-reason",
                    value: Some(r.reason.as_str()),
                })
                .insert(Header {
                    key: "sluice-source-partition",
                    value: Some(&partition),
                })
                .insert(Header {
                    key: "sluice-source-offset",
                    value: Some(&offset),
                });
            let mut record = FutureRecord::<[u8], [u8]>::to(&self.dlq_topic)
                .payload(&r.raw_masked)
                .headers(headers);
            if let Some(id) = &r.transaction_id {
                record = record.key(id.as_bytes());
            }
            match self.producer.send_result(record) {
                Ok(delivery) => deliveries.push(delivery),
                Err((e, _)) => return Err(e),
            }
        }
        await_deliveries(deliveries).await?;
        self.metrics.dlq_records.inc_by(rejected.len() as u64);
        Ok(())
    }
}

/// An alert message (contract §2) for each flagged record of `records`, by index: built
/// beside the id claim, sent for the records the claim found new.
pub(super) fn alert_messages(records: &[Accepted]) -> Vec<(usize, String)> {
    let detected_at = Utc::now().to_rfc3339();
    records
        .iter()
        .enumerate()
        .filter_map(|(i, r)| Some((i, r.verdict.as_ref().filter(|v| v.flagged)?, r)))
        .map(|(i, verdict, r)| {
            let alert = serde_json::json!({
                "transaction_id": r.valid.tx.transaction_id,
                "customer_id": r.valid.tx.customer_id,
                "score": verdict.score,
                "reasons": verdict.reasons,
                "detected_at": detected_at,
            });
            (i, alert.to_string())
        })
        .collect()
}

/// Send `alerts` (customer id as key, message) and wait for their delivery. Owned, so it
/// runs as its own task beside the batch's statements: handing thousands of messages to the
/// producer is CPU work that would otherwise hold up the sink's COPY stream.
pub(super) async fn send_alerts(
    producer: FutureProducer,
    topic: String,
    alerts: Vec<(String, String)>,
) -> Result<(), KafkaError> {
    let mut deliveries = Vec::with_capacity(alerts.len());
    for (key, payload) in &alerts {
        let record = FutureRecord::to(&topic).key(key).payload(payload);
        deliveries.push(producer.send_result(record).map_err(|(e, _)| e)?);
    }
    await_deliveries(deliveries).await
}

async fn await_deliveries(
    deliveries: Vec<rdkafka::producer::DeliveryFuture>,
) -> Result<(), KafkaError> {
    for d in deliveries {
        match d.await {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => return Err(e),
            Err(_) => return Err(KafkaError::Canceled),
        }
    }
    Ok(())
}
