//! The batch's Kafka outputs, delivered before its transaction commits so none is lost (a
//! crash between the two can repeat a message; the tables stay exact): rejected records to
//! the DLQ topic, alerts to the alerts topic (contract §2).

use super::Sink;
use crate::batch::{Accepted, Rejected};
use chrono::Utc;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sluice_api::event::CompactString;

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

/// The alert message of contract §2, serialised straight from the record's fields (a
/// `serde_json::Value` would copy every string into a map first: in an alert storm that was
/// about 5% of the worker's CPU).
#[derive(serde::Serialize)]
struct AlertMessage<'a> {
    transaction_id: &'a str,
    customer_id: &'a str,
    score: f64,
    reasons: &'a [&'static str],
    detected_at: &'a str,
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
            let alert = AlertMessage {
                transaction_id: &r.valid.tx.transaction_id,
                customer_id: &r.valid.tx.customer_id,
                score: verdict.score,
                reasons: &verdict.reasons,
                detected_at: &detected_at,
            };
            let message = serde_json::to_string(&alert).expect("an alert serialises");
            (i, message)
        })
        .collect()
}

/// Send `alerts` (customer id as key, message) and wait for their delivery. Owned, so it
/// runs as its own task beside the batch's statements: handing thousands of messages to the
/// producer is CPU work that would otherwise hold up the sink's COPY stream.
pub(super) async fn send_alerts(
    producer: FutureProducer,
    topic: String,
    alerts: Vec<(CompactString, String)>,
) -> Result<(), KafkaError> {
    let mut deliveries = Vec::with_capacity(alerts.len());
    for (key, payload) in &alerts {
        let record = FutureRecord::to(&topic).key(key.as_str()).payload(payload);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::test_record;
    use sluice_fraud::Verdict;

    fn record(id: &str, verdict: Option<Verdict>) -> Accepted {
        Accepted {
            verdict,
            ..test_record(id, "c-\"7\"", 0, 0)
        }
    }

    #[test]
    fn a_message_per_flagged_record_with_the_contract_fields() {
        let verdict = |flagged| Verdict {
            score: 0.93,
            reasons: ["velocity_1h", "new_device"].into_iter().collect(),
            flagged,
        };
        let records = [
            record("t-0", Some(verdict(false))),
            record("t-1", Some(verdict(true))),
            record("t-2", None),
        ];
        let messages = alert_messages(&records);
        assert_eq!(messages.len(), 1);
        let (index, message) = &messages[0];
        assert_eq!(*index, 1);
        let alert: serde_json::Value = serde_json::from_str(message).unwrap();
        assert_eq!(alert["transaction_id"], "t-1");
        assert_eq!(alert["customer_id"], "c-\"7\"", "quotes are escaped");
        assert_eq!(alert["score"], 0.93);
        assert_eq!(
            alert["reasons"],
            serde_json::json!(["velocity_1h", "new_device"])
        );
        let detected = alert["detected_at"].as_str().unwrap();
        chrono::DateTime::parse_from_rfc3339(detected).expect("detected_at is RFC 3339");
        assert_eq!(alert.as_object().unwrap().len(), 5);
    }
}
