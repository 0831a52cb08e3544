//! `Delete`'s Kafka part: the pipeline's topics and consumer group, removed with an admin
//! client that logs in with the pipeline's own credentials (`kafka_auth`).

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use super::Cleanup;
use crate::crd::PipelineDeployment;
use crate::kafka_auth::KafkaAuth;

/// Bound of each Kafka admin call.
const KAFKA_TIMEOUT: Duration = Duration::from_secs(10);

/// Deletes the plan's topics and consumer group; returns what could not be deleted. A topic
/// or group that is already gone counts as deleted.
pub(super) async fn delete_topics_and_group(
    pd: &PipelineDeployment,
    auth: &KafkaAuth,
    plan: &Cleanup,
) -> Vec<String> {
    let k = &pd.spec.kafka;
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &k.bootstrap_servers)
        .set("security.protocol", k.security_protocol.as_str())
        .set("socket.timeout.ms", KAFKA_TIMEOUT.as_millis().to_string())
        .set("client.id", "sluice-operator");
    for (key, value) in auth.props() {
        config.set(*key, value);
    }
    let admin: AdminClient<DefaultClientContext> = match config.create() {
        Ok(a) => a,
        Err(e) => return vec![format!("Kafka topics and group: admin client: {e}")],
    };
    let opts = AdminOptions::new()
        .operation_timeout(Some(KAFKA_TIMEOUT))
        .request_timeout(Some(KAFKA_TIMEOUT));
    let mut left = Vec::new();
    let topics: Vec<&str> = plan.topics.iter().map(String::as_str).collect();
    match admin.delete_topics(&topics, &opts).await {
        Ok(results) => {
            for r in results {
                match r {
                    Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
                    Err((t, code)) => left.push(format!("topic {t}: {code:?}")),
                }
            }
        }
        Err(e) => left.push(format!("topics {}: {e}", plan.topics.join(", "))),
    }
    match admin
        .delete_groups(&[plan.consumer_group.as_str()], &opts)
        .await
    {
        Ok(results) => {
            for r in results {
                match r {
                    Ok(_) | Err((_, RDKafkaErrorCode::GroupIdNotFound)) => {}
                    Err((g, code)) => left.push(format!("consumer group {g}: {code:?}")),
                }
            }
        }
        Err(e) => left.push(format!("consumer group {}: {e}", plan.consumer_group)),
    }
    left
}
