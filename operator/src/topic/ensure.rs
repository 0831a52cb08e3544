//! Creating and growing the topics: the input topic gets the requested partitions (created,
//! or grown — never shrunk, Kafka cannot), and its companions are created when missing.

use std::collections::HashMap;
use std::sync::Arc;

use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use super::settings::with_configs;
use super::{TopicError, TopicOutcome, TopicRequest, Topics};

impl Topics {
    /// Partition count of each existing topic (absent topics are left out).
    async fn partitions(
        &self,
        admin: &Arc<AdminClient<DefaultClientContext>>,
        req: &TopicRequest,
    ) -> Result<HashMap<String, i32>, TopicError> {
        let md = self.layouts(admin).await?;
        match md {
            Ok(md) => Ok(md.into_iter().map(|(t, l)| (t, l.partitions)).collect()),
            Err(e) => {
                let (config, timeout) = (self.client_config(req), self.timeout);
                let message = tokio::task::spawn_blocking(move || {
                    crate::kafka_auth::why_refused(&config, timeout, e.to_string())
                })
                .await
                .map_err(|e| TopicError::Client(e.to_string()))?;
                Err(TopicError::Unreachable {
                    bootstrap: req.bootstrap.clone(),
                    message,
                })
            }
        }
    }

    /// Creates or grows the topic (never shrinks it) and creates missing companions.
    pub async fn ensure(&self, req: &TopicRequest) -> Result<TopicOutcome, TopicError> {
        let admin = self.client(req)?;
        let existing = self.partitions(&admin, req).await?;
        let opts = AdminOptions::new()
            .operation_timeout(Some(self.timeout))
            .request_timeout(Some(self.timeout));

        let missing: Vec<&String> = req
            .companions
            .iter()
            .filter(|c| !existing.contains_key(*c))
            .collect();
        if !missing.is_empty() {
            let new: Vec<NewTopic> = missing
                .iter()
                .map(|c| {
                    with_configs(
                        NewTopic::new(
                            c,
                            req.partitions,
                            TopicReplication::Fixed(req.replication_factor),
                        ),
                        req,
                    )
                })
                .collect();
            check(admin.create_topics(&new, &opts).await, |code| {
                TopicError::Create {
                    topic: missing[0].clone(),
                    code,
                }
            })?;
        }

        match existing.get(&req.topic).copied() {
            None => {
                let new = with_configs(
                    NewTopic::new(
                        &req.topic,
                        req.partitions,
                        TopicReplication::Fixed(req.replication_factor),
                    ),
                    req,
                );
                check(admin.create_topics([&new], &opts).await, |code| {
                    TopicError::Create {
                        topic: req.topic.clone(),
                        code,
                    }
                })?;
                Ok(TopicOutcome::Created {
                    partitions: req.partitions,
                })
            }
            Some(have) if have < req.partitions => {
                let grow = NewPartitions::new(&req.topic, req.partitions as usize);
                check(admin.create_partitions([&grow], &opts).await, |code| {
                    TopicError::Grow {
                        topic: req.topic.clone(),
                        code,
                    }
                })?;
                Ok(TopicOutcome::Expanded {
                    from: have,
                    to: req.partitions,
                })
            }
            Some(have) => Ok(TopicOutcome::Unchanged { partitions: have }),
        }
    }
}

/// Turns an admin result into an error unless every topic succeeded (or already existed:
/// another reconcile or operator replica may have won the race).
fn check(
    res: rdkafka::error::KafkaResult<Vec<rdkafka::admin::TopicResult>>,
    err: impl Fn(String) -> TopicError,
) -> Result<(), TopicError> {
    for r in res.map_err(|e| err(e.to_string()))? {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(err(format!("{code:?}"))),
        }
    }
    Ok(())
}
