//! Kafka topics through the admin API: the input topic gets the requested partitions (created,
//! or grown — never shrunk, Kafka cannot), and its `.dlq` / `.alerts` companions exist.
//! Admin clients are cached per bootstrap list; every call is bounded by a timeout so an
//! unreachable broker delays one reconcile, not the controller.
//!
//! The topic step of a reconcile is [`Topics::reconcile`]: [`TopicPlan::of`] decides whether
//! the operator manages the topic at all, [`record`] turns the outcome into status
//! observations and the Event to publish.
//!
//! `spec.kafka.topicSettings` (and the replication factor) are set on the topics the operator
//! creates; on topics that exist they are compared ([`Topics::settings_differences`]) and the
//! differences reported, never applied.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{
    AdminClient, AdminOptions, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use crate::children::config_map::worker_config;
use crate::crd::PipelineDeployment;
use crate::kafka_auth::KafkaAuth;
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
    #[error("describe configs of {topic}: {message}")]
    Describe { topic: String, message: String },
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
    /// Topic configs (`spec.kafka.topicSettings`) by topic name; topics without any are absent.
    pub configs: BTreeMap<String, Vec<(&'static str, String)>>,
    /// SASL credentials and TLS PEMs from the pipeline's Secrets (empty from [`TopicPlan::of`];
    /// [`Topics::reconcile`] fills it).
    pub auth: KafkaAuth,
}

/// What the operator does about a pipeline's topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicPlan {
    /// `spec.kafka.manageTopic: false`: the topic is managed elsewhere.
    Unmanaged,
    /// Create or grow the topic and create its companions (on any listener: the operator
    /// authenticates with the pipeline's own Secrets, see `kafka_auth`).
    Ensure(TopicRequest),
}

impl TopicPlan {
    pub fn of(pd: &PipelineDeployment) -> Self {
        let k = &pd.spec.kafka;
        if !k.manage_topic {
            return Self::Unmanaged;
        }
        let cfg = worker_config(pd).kafka;
        let settings = k.topic_settings.clone().unwrap_or_default();
        let configs = [
            (k.topic.clone(), settings.input),
            (cfg.dlq_topic(), settings.dlq),
            (cfg.alerts_topic(), settings.alerts),
        ]
        .into_iter()
        .filter_map(|(topic, s)| Some((topic, s?.configs())))
        .filter(|(_, c)| !c.is_empty())
        .collect();
        Self::Ensure(TopicRequest {
            bootstrap: k.bootstrap_servers.clone(),
            security_protocol: k.security_protocol.as_str().into(),
            topic: k.topic.clone(),
            partitions: k.partitions,
            replication_factor: k.replication_factor,
            companions: vec![cfg.dlq_topic(), cfg.alerts_topic()],
            configs,
            auth: KafkaAuth::default(),
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

type Admin = Arc<AdminClient<DefaultClientContext>>;

/// Admin-client cache and the topic operations.
#[derive(Default)]
pub struct Topics {
    /// By protocol, brokers and the Secrets used: (their versions, the client).
    clients: Mutex<HashMap<String, (String, Admin)>>,
    timeout: Duration,
}

impl Topics {
    pub fn new(timeout: Duration) -> Self {
        Self {
            clients: Mutex::default(),
            timeout,
        }
    }

    /// The cached client for `req`'s brokers and credentials. A Secret that changed (another
    /// resourceVersion) replaces the client, so a rotated password is used from the next
    /// reconcile on.
    fn client(
        &self,
        req: &TopicRequest,
    ) -> Result<Arc<AdminClient<DefaultClientContext>>, TopicError> {
        let versions = req.auth.identity();
        let secrets: Vec<&str> = versions
            .split(',')
            .map(|s| s.split('@').next().unwrap_or_default())
            .collect();
        let key = format!(
            "{}|{}|{}",
            req.security_protocol,
            req.bootstrap,
            secrets.join(",")
        );
        let mut clients = self.clients.lock().expect("topic client cache poisoned");
        if let Some((v, c)) = clients.get(&key)
            && v == versions
        {
            return Ok(c.clone());
        }
        let client: AdminClient<DefaultClientContext> = self
            .client_config(req)
            .create()
            .map_err(|e| TopicError::Client(e.to_string()))?;
        let client = Arc::new(client);
        clients.insert(key, (versions.to_string(), client.clone()));
        Ok(client)
    }

    fn client_config(&self, req: &TopicRequest) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &req.bootstrap)
            .set("security.protocol", &req.security_protocol)
            .set("socket.timeout.ms", self.timeout.as_millis().to_string())
            .set("client.id", "sluice-operator");
        for (property, value) in req.auth.props() {
            config.set(*property, value);
        }
        config
    }

    /// Partition count of each existing topic among `names` (absent topics are left out).
    async fn partitions(
        &self,
        admin: &Arc<AdminClient<DefaultClientContext>>,
        req: &TopicRequest,
    ) -> Result<HashMap<String, i32>, TopicError> {
        let client = admin.clone();
        let timeout = self.timeout;
        // All-topics metadata: asking for one topic could auto-create it on brokers that allow it.
        let md = tokio::task::spawn_blocking(move || {
            client.inner().fetch_metadata(None, timeout).map(|md| {
                md.topics()
                    .iter()
                    .filter(|t| t.error().is_none())
                    .map(|t| (t.name().to_string(), t.partitions().len() as i32))
                    .collect::<HashMap<_, _>>()
            })
        })
        .await
        .map_err(|e| TopicError::Client(e.to_string()))?;
        match md {
            Ok(md) => Ok(md),
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

    /// The topic step of a reconcile: ensures the topic when the pipeline wants it managed and
    /// records what happened in `observed`. Failures degrade the pipeline and are retried;
    /// they do not stop the other steps.
    /// `auth` is the pipeline's Kafka credentials; when they could not be read, the topic is
    /// left alone (`kafka_auth::explain` degrades the pipeline).
    pub async fn reconcile(
        &self,
        pd: &PipelineDeployment,
        auth: &Result<KafkaAuth, crate::kafka_auth::AuthError>,
        observed: &mut Observed,
    ) -> TopicStep {
        match TopicPlan::of(pd) {
            TopicPlan::Unmanaged => TopicStep::default(),
            TopicPlan::Ensure(_) if auth.is_err() => TopicStep::default(),
            TopicPlan::Ensure(mut req) => {
                if let Ok(auth) = auth {
                    req.auth = auth.clone();
                }
                let previous = pd.status.as_ref().and_then(|s| s.topic_partitions);
                let step = record(&req.topic, self.ensure(&req).await, previous, observed);
                if !step.failed {
                    match self.settings_differences(&req).await {
                        Ok(differences) => observed.topic_settings = Some(differences),
                        Err(e) => {
                            tracing::warn!(topic = %req.topic, error = %e, "topic settings not compared")
                        }
                    }
                }
                step
            }
        }
    }

    /// Where the pipeline's existing topics differ from the replication factor and the
    /// configs the spec asks for (empty: they match). Read-only: nothing is altered.
    pub async fn settings_differences(
        &self,
        req: &TopicRequest,
    ) -> Result<Vec<String>, TopicError> {
        let admin = self.client(req)?;
        let timeout = self.timeout;
        let replication = {
            let admin = admin.clone();
            let names: Vec<String> = std::iter::once(req.topic.clone())
                .chain(req.companions.iter().cloned())
                .collect();
            tokio::task::spawn_blocking(move || {
                admin.inner().fetch_metadata(None, timeout).map(|md| {
                    md.topics()
                        .iter()
                        .filter(|t| t.error().is_none() && names.iter().any(|n| n == t.name()))
                        .filter_map(|t| {
                            let replicas = t.partitions().first()?.replicas().len();
                            Some((t.name().to_string(), replicas as i32))
                        })
                        .collect::<HashMap<_, _>>()
                })
            })
            .await
            .map_err(|e| TopicError::Client(e.to_string()))?
            .map_err(|e| TopicError::Unreachable {
                bootstrap: req.bootstrap.clone(),
                message: e.to_string(),
            })?
        };
        let mut described = HashMap::new();
        if !req.configs.is_empty() {
            let opts = AdminOptions::new().request_timeout(Some(self.timeout));
            let resources: Vec<ResourceSpecifier> = req
                .configs
                .keys()
                .map(|t| ResourceSpecifier::Topic(t))
                .collect();
            let results = admin
                .describe_configs(&resources, &opts)
                .await
                .map_err(|e| TopicError::Describe {
                    topic: req.topic.clone(),
                    message: e.to_string(),
                })?;
            for (topic, result) in req.configs.keys().zip(results) {
                let resource = result.map_err(|code| TopicError::Describe {
                    topic: topic.clone(),
                    message: format!("{code:?}"),
                })?;
                let entries = resource
                    .entries
                    .into_iter()
                    .map(|e| (e.name, e.value))
                    .collect::<HashMap<_, _>>();
                described.insert(topic.clone(), entries);
            }
        }
        Ok(differences(req, &replication, &described))
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

/// `new` with the configs `req` asks for its topic.
fn with_configs<'a>(new: NewTopic<'a>, req: &'a TopicRequest) -> NewTopic<'a> {
    let configs = req
        .configs
        .get(new.name)
        .map(Vec::as_slice)
        .unwrap_or_default();
    configs
        .iter()
        .fold(new, |new, (key, value)| new.set(key, value))
}

/// One line per setting where an existing topic differs from the spec, e.g.
/// `payments: retention.ms is 604800000, spec asks 86400000`.
fn differences(
    req: &TopicRequest,
    replication: &HashMap<String, i32>,
    described: &HashMap<String, HashMap<String, Option<String>>>,
) -> Vec<String> {
    let mut out = Vec::new();
    for topic in std::iter::once(&req.topic).chain(&req.companions) {
        if let Some(&have) = replication.get(topic)
            && have != req.replication_factor
        {
            out.push(format!(
                "{topic}: replication factor is {have}, spec asks {}",
                req.replication_factor
            ));
        }
        for (key, want) in req
            .configs
            .get(topic)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let have = described
                .get(topic)
                .and_then(|c| c.get(*key))
                .cloned()
                .flatten();
            if have.as_deref() != Some(want.as_str()) {
                out.push(format!(
                    "{topic}: {key} is {}, spec asks {want}",
                    have.as_deref().unwrap_or("unset")
                ));
            }
        }
    }
    out
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
