//! What the operator does about a pipeline's topics ([`TopicPlan`]) and how the outcome of
//! ensuring them becomes status observations and an Event ([`record`]).

use std::collections::BTreeMap;

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
