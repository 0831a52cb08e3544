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
//!
//! Submodules: `plan` (what to do, and the outcome as observations), `ensure` (create and
//! grow), `settings` (topic configs set and compared).

mod ensure;
mod plan;
mod settings;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaResult;

use crate::crd::PipelineDeployment;
use crate::kafka_auth::KafkaAuth;
use crate::status::Observed;

pub use plan::{TopicError, TopicEvent, TopicOutcome, TopicPlan, TopicRequest, TopicStep, record};

type Admin = Arc<AdminClient<DefaultClientContext>>;

/// What the metadata says of one existing topic.
#[derive(Debug, Clone, Copy)]
struct Layout {
    partitions: i32,
    /// Replicas of its first partition (`None`: it has no partitions).
    replicas: Option<i32>,
}

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

    /// The [`Layout`] of every existing topic, by name. The outer error is a failed task, the
    /// inner one Kafka's answer: callers report it differently.
    async fn layouts(
        &self,
        admin: &Admin,
    ) -> Result<KafkaResult<HashMap<String, Layout>>, TopicError> {
        let (admin, timeout) = (admin.clone(), self.timeout);
        // All-topics metadata: asking for one topic could auto-create it on brokers that allow it.
        tokio::task::spawn_blocking(move || {
            admin.inner().fetch_metadata(None, timeout).map(|md| {
                md.topics()
                    .iter()
                    .filter(|t| t.error().is_none())
                    .map(|t| {
                        let layout = Layout {
                            partitions: t.partitions().len() as i32,
                            replicas: t.partitions().first().map(|p| p.replicas().len() as i32),
                        };
                        (t.name().to_string(), layout)
                    })
                    .collect()
            })
        })
        .await
        .map_err(|e| TopicError::Client(e.to_string()))
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
}

#[cfg(test)]
mod tests;
