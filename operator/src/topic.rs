//! Kafka topics through the admin API: the input topic gets the requested partitions (created,
//! or grown — never shrunk, Kafka cannot), and its `.dlq` / `.alerts` companions exist.
//! Admin clients are cached per bootstrap list; every call is bounded by a timeout so an
//! unreachable broker delays one reconcile, not the controller.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

/// What ensuring the topic did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicOutcome {
    Created {
        partitions: i32,
    },
    Expanded {
        from: i32,
        to: i32,
    },
    /// The topic already had at least the requested partitions (it may have more).
    Unchanged {
        partitions: i32,
    },
}

impl TopicOutcome {
    pub fn partitions(self) -> i32 {
        match self {
            Self::Created { partitions } | Self::Unchanged { partitions } => partitions,
            Self::Expanded { to, .. } => to,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error("kafka admin client: {0}")]
    Client(String),
    #[error("kafka metadata from {bootstrap}: {message}")]
    Unreachable { bootstrap: String, message: String },
    #[error("create topic {topic}: {code}")]
    Create { topic: String, code: String },
    #[error("add partitions to {topic}: {code}")]
    Grow { topic: String, code: String },
}

/// The topics of one pipeline.
#[derive(Debug, Clone)]
pub struct TopicRequest {
    pub bootstrap: String,
    pub security_protocol: String,
    pub topic: String,
    pub partitions: i32,
    pub replication_factor: i32,
    pub companions: Vec<String>,
}

/// Admin-client cache and the topic operations.
#[derive(Default)]
pub struct Topics {
    clients: Mutex<HashMap<String, Arc<AdminClient<DefaultClientContext>>>>,
    timeout: Duration,
}

impl Topics {
    pub fn new(timeout: Duration) -> Self {
        Self {
            clients: Mutex::default(),
            timeout,
        }
    }

    fn client(
        &self,
        req: &TopicRequest,
    ) -> Result<Arc<AdminClient<DefaultClientContext>>, TopicError> {
        let key = format!("{}|{}", req.security_protocol, req.bootstrap);
        let mut clients = self.clients.lock().expect("topic client cache poisoned");
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        let client: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &req.bootstrap)
            .set("security.protocol", &req.security_protocol)
            .set("socket.timeout.ms", self.timeout.as_millis().to_string())
            .set("client.id", "sluice-operator")
            .create()
            .map_err(|e| TopicError::Client(e.to_string()))?;
        let client = Arc::new(client);
        clients.insert(key, client.clone());
        Ok(client)
    }

    /// Partition count of each existing topic among `names` (absent topics are left out).
    async fn partitions(
        &self,
        admin: &Arc<AdminClient<DefaultClientContext>>,
        req: &TopicRequest,
    ) -> Result<HashMap<String, i32>, TopicError> {
        let admin = admin.clone();
        let timeout = self.timeout;
        // All-topics metadata: asking for one topic could auto-create it on brokers that allow it.
        let md = tokio::task::spawn_blocking(move || {
            admin.inner().fetch_metadata(None, timeout).map(|md| {
                md.topics()
                    .iter()
                    .filter(|t| t.error().is_none())
                    .map(|t| (t.name().to_string(), t.partitions().len() as i32))
                    .collect::<HashMap<_, _>>()
            })
        })
        .await
        .map_err(|e| TopicError::Client(e.to_string()))?;
        md.map_err(|e| TopicError::Unreachable {
            bootstrap: req.bootstrap.clone(),
            message: e.to_string(),
        })
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
                    NewTopic::new(
                        c,
                        req.partitions,
                        TopicReplication::Fixed(req.replication_factor),
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
                let new = NewTopic::new(
                    &req.topic,
                    req.partitions,
                    TopicReplication::Fixed(req.replication_factor),
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
