//! The batch's Kafka outputs, delivered before its transaction commits so none is lost (a
//! crash between the two can repeat a message; the tables stay exact): rejected records to
//! the DLQ topic, alerts to the alerts topic (contract §2).

use super::Sink;
use crate::batch::{Accepted, Rejected};
use chrono::Utc;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;

impl Sink {
    /// One JSON alert per newly stored flagged transaction (contract §2), delivered before
    /// the commit like the DLQ.
    pub(super) async fn publish_alerts(&self, rows: &[&Accepted]) -> Result<(), KafkaError> {
        let detected_at = Utc::now().to_rfc3339();
        let mut deliveries = Vec::new();
        for (r, verdict) in rows.iter().filter_map(|r| Some((r, r.verdict.as_ref()?))) {
            if !verdict.flagged {
                continue;
            }
            let alert = serde_json::json!({
                "transaction_id": r.valid.tx.transaction_id,
                "customer_id": r.valid.tx.customer_id,
                "score": verdict.score,
                "reasons": verdict.reasons,
                "detected_at": detected_at,
            })
            .to_string();
            let record = FutureRecord::to(&self.alerts_topic)
                .key(&r.valid.tx.customer_id)
                .payload(&alert);
            deliveries.push(self.producer.send_result(record).map_err(|(e, _)| e)?);
        }
        await_deliveries(deliveries).await
    }

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
