//! Kafka topics through the admin API: the input topic gets the requested partitions (created,
//! or grown — never shrunk, Kafka cannot), and its `.dlq` / `.alerts` companions exist.
//! Admin clients are cached per bootstrap list; every call is bounded by a timeout so an
//! unreachable broker delays one reconcile, not the controller.
//!
//! The topic step of a reconcile is [`Topics::reconcile`]: [`TopicPlan::of`] decides whether
//! the operator manages the topic at all, [`record`] turns the outcome into status
//! observations and the Event to publish.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use crate::children::config_map::worker_config;
use crate::crd::{PipelineDeployment, SecurityProtocol};
use crate::status::Observed;

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicRequest {
    pub bootstrap: String,
    pub security_protocol: String,
    pub topic: String,
    pub partitions: i32,
    pub replication_factor: i32,
    pub companions: Vec<String>,
}

/// What the operator does about a pipeline's topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicPlan {
    /// `spec.kafka.manageTopic: false`: the topic is managed elsewhere.
    Unmanaged,
    /// Create or grow the topic and create its companions.
    Ensure(TopicRequest),
    /// `manageTopic` on a SASL listener: the operator holds no Kafka credentials (it never
    /// reads Secrets), so it cannot; the pipeline is degraded with `TopicNotManaged`.
    NeedsCredentials,
}

impl TopicPlan {
    pub fn of(pd: &PipelineDeployment) -> Self {
        let k = &pd.spec.kafka;
        if !k.manage_topic {
            return Self::Unmanaged;
        }
        if !matches!(
            k.security_protocol,
            SecurityProtocol::Plaintext | SecurityProtocol::Ssl
        ) {
            return Self::NeedsCredentials;
        }
        let cfg = worker_config(pd).kafka;
        Self::Ensure(TopicRequest {
            bootstrap: k.bootstrap_servers.clone(),
            security_protocol: k.security_protocol.as_str().into(),
            topic: k.topic.clone(),
            partitions: k.partitions,
            replication_factor: k.replication_factor,
            companions: vec![cfg.dlq_topic(), cfg.alerts_topic()],
        })
    }
}

/// A `Normal` Event about the topic, for the pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicEvent {
    pub reason: &'static str,
    pub note: String,
}

/// What the topic step did beyond what it wrote into [`Observed`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TopicStep {
    pub event: Option<TopicEvent>,
    /// Ensuring the topic failed: counted as the `topic` failure. The reconcile goes on (the
    /// pipeline is degraded and retried), so this is not a reconcile error.
    pub failed: bool,
}

/// Folds the outcome of ensuring `topic` into `observed`: its partitions, or on failure the
/// error (keeping `previous`, the partitions last reported in status).
pub fn record(
    topic: &str,
    result: Result<TopicOutcome, TopicError>,
    previous: Option<i32>,
    observed: &mut Observed,
) -> TopicStep {
    match result {
        Ok(outcome) => {
            observed.topic_partitions = Some(outcome.partitions());
            let event = match outcome {
                TopicOutcome::Created { partitions } => Some(TopicEvent {
                    reason: "TopicCreated",
                    note: format!("created topic {topic} with {partitions} partitions"),
                }),
                TopicOutcome::Expanded { from, to } => Some(TopicEvent {
                    reason: "TopicExpanded",
                    note: format!("topic {topic}: partitions {from} → {to}"),
                }),
                TopicOutcome::Unchanged { .. } => None,
            };
            TopicStep {
                event,
                failed: false,
            }
        }
        Err(e) => {
            observed.topic_error = Some(e.to_string());
            observed.topic_partitions = previous;
            TopicStep {
                event: None,
                failed: true,
            }
        }
    }
}

/// Records that the topic cannot be managed, unless something else already degrades the
/// pipeline.
fn needs_credentials(observed: &mut Observed) {
    observed.degraded.get_or_insert((
        "TopicNotManaged".into(),
        "spec.kafka.manageTopic needs a PLAINTEXT or SSL listener; set it to false for SASL clusters and create the topic elsewhere".into(),
    ));
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

    /// The topic step of a reconcile: ensures the topic when the pipeline wants it managed and
    /// records what happened in `observed`. Failures degrade the pipeline and are retried;
    /// they do not stop the other steps.
    pub async fn reconcile(&self, pd: &PipelineDeployment, observed: &mut Observed) -> TopicStep {
        match TopicPlan::of(pd) {
            TopicPlan::Unmanaged => TopicStep::default(),
            TopicPlan::NeedsCredentials => {
                needs_credentials(observed);
                TopicStep::default()
            }
            TopicPlan::Ensure(req) => {
                let previous = pd.status.as_ref().and_then(|s| s.topic_partitions);
                record(&req.topic, self.ensure(&req).await, previous, observed)
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

#[cfg(test)]
mod tests;
