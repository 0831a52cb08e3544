//! `spec.kafka.topicSettings` and the replication factor: set on the topics the operator
//! creates ([`with_configs`]), compared on the ones that exist ([`Topics::settings_differences`]),
//! never altered.

use std::collections::HashMap;

use rdkafka::admin::{AdminOptions, NewTopic, ResourceSpecifier};

use super::{TopicError, TopicRequest, Topics};

impl Topics {
    /// Where the pipeline's existing topics differ from the replication factor and the
    /// configs the spec asks for (empty: they match). Read-only: nothing is altered.
    pub async fn settings_differences(
        &self,
        req: &TopicRequest,
    ) -> Result<Vec<String>, TopicError> {
        let admin = self.client(req)?;
        let replication: HashMap<String, i32> = self
            .layouts(&admin)
            .await?
            .map_err(|e| TopicError::Unreachable {
                bootstrap: req.bootstrap.clone(),
                message: e.to_string(),
            })?
            .into_iter()
            .filter_map(|(t, l)| Some((t, l.replicas?)))
            .collect();
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
}

/// `new` with the configs `req` asks for its topic.
pub(super) fn with_configs<'a>(new: NewTopic<'a>, req: &'a TopicRequest) -> NewTopic<'a> {
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
pub(super) fn differences(
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
