//! The credentials of the operator's own Kafka clients (topic admin in `topic.rs`, lag reader
//! in `autoscale/lag/reader.rs`): the SASL username/password and the TLS PEMs that
//! `spec.kafka.sasl` / `spec.kafka.tls` reference, read from their Secrets with one `get` each
//! per reconcile. The workers get the same Secrets as env and mounted files
//! (`children/deployment.rs`); nothing secret reaches a ConfigMap, the status or a log line.
//!
//! When Kafka refuses these credentials or certificates, librdkafka fails the request with a
//! bare "timed out" or "transport failure" and reports the cause as an error event: a consumer
//! sees it when it polls ([`ErrorCapture`]; an admin client never polls those events, so
//! [`why_refused`] asks again with a consumer). [`ErrorCapture::annotate`] puts the cause into
//! the error text with its condition reason, and [`explain`] makes that the pipeline's
//! `Degraded` reason.

use std::collections::BTreeMap;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client, ResourceExt};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, ClientContext};
use sluice_api::{KafkaRefusal, kafka_refusal};

use crate::crd::{PipelineDeployment, SecretKeyRef};
use crate::status::Observed;

/// `Degraded` reason: a referenced Secret or key is missing or unreadable.
pub const CREDENTIALS_UNAVAILABLE: &str = "KafkaCredentialsUnavailable";
/// `Degraded` reason: the brokers refused the SASL credentials.
pub const AUTHENTICATION_FAILED: &str = "KafkaAuthenticationFailed";
/// `Degraded` reason: TLS failed (e.g. the broker's certificate is not signed by the configured
/// CA, or the broker refused the client certificate).
pub const TLS_FAILED: &str = "KafkaTlsFailed";

/// librdkafka properties that authenticate a client, and which Secret versions they came from.
/// `Debug` shows property names only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KafkaAuth {
    props: Vec<(&'static str, String)>,
    identity: String,
}

impl std::fmt::Debug for KafkaAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.props.iter().map(|(k, _)| *k).collect();
        f.debug_struct("KafkaAuth")
            .field("props", &names)
            .field("identity", &self.identity)
            .finish()
    }
}

impl KafkaAuth {
    /// The properties to set on a client (values may be secret).
    pub fn props(&self) -> &[(&'static str, String)] {
        &self.props
    }

    /// `namespace/secret@resourceVersion` of every Secret read, for client cache keys: a
    /// rotated password or certificate gives a new key, so a new client.
    pub fn identity(&self) -> &str {
        &self.identity
    }
}

/// Why the credentials could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("Secret {namespace}/{name} (spec.kafka.{field}) not found")]
    SecretMissing {
        namespace: String,
        name: String,
        field: &'static str,
    },
    #[error("Secret {namespace}/{name} has no key {key} (spec.kafka.{field})")]
    KeyMissing {
        namespace: String,
        name: String,
        key: String,
        field: &'static str,
    },
    #[error("key {key} of Secret {namespace}/{name} is not UTF-8 text (spec.kafka.{field})")]
    NotText {
        namespace: String,
        name: String,
        key: String,
        field: &'static str,
    },
    #[error("reading Secret {namespace}/{name}: {message}")]
    Api {
        namespace: String,
        name: String,
        message: String,
    },
}

/// The Secret keys `spec.kafka` references, with the librdkafka property each one sets.
fn references(pd: &PipelineDeployment) -> Vec<(&'static str, &'static str, &SecretKeyRef)> {
    let k = &pd.spec.kafka;
    let mut refs = Vec::new();
    if let Some(sasl) = &k.sasl {
        refs.push(("sasl.username", "sasl.username", &sasl.username));
        refs.push(("sasl.password", "sasl.password", &sasl.password));
    }
    if let Some(tls) = &k.tls {
        for (field, property, r) in [
            ("tls.ca", "ssl.ca.pem", &tls.ca),
            (
                "tls.clientCertificate",
                "ssl.certificate.pem",
                &tls.client_certificate,
            ),
            ("tls.clientKey", "ssl.key.pem", &tls.client_key),
        ] {
            if let Some(r) = r {
                refs.push((field, property, r));
            }
        }
    }
    refs
}

/// Reads the Secrets the pipeline's Kafka settings reference (each Secret once).
pub async fn resolve(client: &Client, pd: &PipelineDeployment) -> Result<KafkaAuth, AuthError> {
    let refs = references(pd);
    let mut auth = KafkaAuth::default();
    if let Some(sasl) = &pd.spec.kafka.sasl {
        auth.props
            .push(("sasl.mechanism", sasl.mechanism.as_str().to_string()));
    }
    if refs.is_empty() {
        return Ok(auth);
    }
    let namespace = pd.namespace().unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let mut secrets: BTreeMap<&str, Secret> = BTreeMap::new();
    for (field, property, r) in refs {
        if !secrets.contains_key(r.name.as_str()) {
            let secret = api
                .get_opt(&r.name)
                .await
                .map_err(|e| AuthError::Api {
                    namespace: namespace.clone(),
                    name: r.name.clone(),
                    message: e.to_string(),
                })?
                .ok_or_else(|| AuthError::SecretMissing {
                    namespace: namespace.clone(),
                    name: r.name.clone(),
                    field,
                })?;
            secrets.insert(&r.name, secret);
        }
        let bytes = secrets[r.name.as_str()]
            .data
            .as_ref()
            .and_then(|d| d.get(&r.key))
            .ok_or_else(|| AuthError::KeyMissing {
                namespace: namespace.clone(),
                name: r.name.clone(),
                key: r.key.clone(),
                field,
            })?;
        let text = String::from_utf8(bytes.0.clone()).map_err(|_| AuthError::NotText {
            namespace: namespace.clone(),
            name: r.name.clone(),
            key: r.key.clone(),
            field,
        })?;
        auth.props.push((property, text));
    }
    auth.identity = secrets
        .iter()
        .map(|(name, s)| {
            format!(
                "{namespace}/{name}@{}",
                s.resource_version().unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join(",");
    Ok(auth)
}

/// A client context that keeps the last authentication or TLS failure librdkafka reported.
#[derive(Default)]
pub struct ErrorCapture {
    last: Mutex<Option<(&'static str, String)>>,
}

impl ClientContext for ErrorCapture {
    fn error(&self, error: KafkaError, reason: &str) {
        let refused = match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed) => {
                Some(AUTHENTICATION_FAILED)
            }
            Some(RDKafkaErrorCode::SSL) => Some(TLS_FAILED),
            _ => kafka_refusal(reason).map(|refusal| match refusal {
                KafkaRefusal::Authentication => AUTHENTICATION_FAILED,
                KafkaRefusal::Tls => TLS_FAILED,
            }),
        };
        match refused {
            Some(kind) => {
                *self.last.lock().expect("error capture poisoned") =
                    Some((kind, reason.to_string()))
            }
            None => tracing::debug!(%error, reason, "Kafka client error"),
        }
    }
}

impl ConsumerContext for ErrorCapture {}

impl ErrorCapture {
    /// Forgets the last failure (before a new attempt with a cached client).
    pub fn clear(&self) {
        *self.last.lock().expect("error capture poisoned") = None;
    }

    /// Whether a refusal was captured.
    pub fn refused(&self) -> bool {
        self.last.lock().expect("error capture poisoned").is_some()
    }

    /// `message`, preceded by the failure's reason and librdkafka's words when Kafka refused
    /// the credentials or the TLS handshake.
    pub fn annotate(&self, message: String) -> String {
        match &*self.last.lock().expect("error capture poisoned") {
            Some((kind, reason)) => format!("{kind}: {reason} ({message})"),
            None => message,
        }
    }
}

/// `message` (a failed request of a client made from `config`), with the reason Kafka refused
/// that client if it did: a throw-away consumer with the same settings (no group, so it never
/// joins one) fetches metadata and polls its error events. Blocking, up to about `timeout`.
pub fn why_refused(config: &ClientConfig, timeout: std::time::Duration, message: String) -> String {
    let Ok(probe) =
        config.create_with_context::<_, BaseConsumer<ErrorCapture>>(ErrorCapture::default())
    else {
        return message;
    };
    let _ = probe.fetch_metadata(None, timeout);
    for _ in 0..20 {
        if probe.context().refused() {
            break;
        }
        let _ = probe.poll(std::time::Duration::from_millis(50));
    }
    probe.context().annotate(message)
}

/// Makes the pipeline `Degraded` with a reason that names the Kafka security problem: the
/// brokers refused the credentials (seen by the topic step or the lag reading), or they could
/// not be read while the operator manages the topic. (A missing Secret of a pipeline whose
/// topic is managed elsewhere only leaves the lag unknown: like the database Secrets, it is the
/// workers' to use, and their pods report it.) Another degradation already recorded is kept.
pub fn explain(
    pd: &PipelineDeployment,
    auth: &Result<KafkaAuth, AuthError>,
    observed: &mut Observed,
) {
    if let Err(e) = auth {
        if !pd.spec.kafka.manage_topic {
            return;
        }
        observed.degraded.get_or_insert((
            CREDENTIALS_UNAVAILABLE.into(),
            format!(
                "{e}: the operator cannot manage the topic or read lag, and the workers cannot start"
            ),
        ));
        return;
    }
    let lag_unknown = observed.autoscale.as_ref().and_then(|a| a.unknown.clone());
    let failure = [observed.topic_error.clone(), lag_unknown]
        .into_iter()
        .flatten()
        .find_map(|message| {
            [AUTHENTICATION_FAILED, TLS_FAILED]
                .into_iter()
                .find(|kind| message.contains(kind))
                .map(|kind| (kind, message))
        });
    if let Some((kind, message)) = failure {
        observed.degraded.get_or_insert((
            kind.into(),
            format!("Kafka refused the connection: {message}"),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::children::testing::{BASIC, pipeline};
    use crate::crd::{KafkaTls, SaslMechanism, SaslSpec, SecurityProtocol};
    use crate::status::AutoscaleObserved;

    fn key(name: &str, key: &str) -> SecretKeyRef {
        SecretKeyRef {
            name: name.into(),
            key: key.into(),
        }
    }

    #[test]
    fn every_reference_sets_its_property() {
        let mut pd = pipeline(BASIC);
        assert!(references(&pd).is_empty());
        pd.spec.kafka.security_protocol = SecurityProtocol::SaslSsl;
        pd.spec.kafka.sasl = Some(SaslSpec {
            mechanism: SaslMechanism::ScramSha512,
            username: key("kafka-user", "username"),
            password: key("kafka-user", "password"),
        });
        pd.spec.kafka.tls = Some(KafkaTls {
            ca: Some(key("kafka-ca", "ca.crt")),
            client_certificate: Some(key("kafka-client", "tls.crt")),
            client_key: Some(key("kafka-client", "tls.key")),
        });
        let props: Vec<&str> = references(&pd).iter().map(|(_, p, _)| *p).collect();
        assert_eq!(
            props,
            [
                "sasl.username",
                "sasl.password",
                "ssl.ca.pem",
                "ssl.certificate.pem",
                "ssl.key.pem"
            ]
        );
    }

    #[test]
    fn debug_never_shows_values() {
        let auth = KafkaAuth {
            props: vec![("sasl.password", "hunter2".into())],
            identity: "ns/s@1".into(),
        };
        let shown = format!("{auth:?}");
        assert!(
            shown.contains("sasl.password") && !shown.contains("hunter2"),
            "{shown}"
        );
    }

    #[test]
    fn refusals_become_the_degraded_reason() {
        let capture = ErrorCapture::default();
        capture.error(
            KafkaError::Global(RDKafkaErrorCode::AllBrokersDown),
            "1/1 brokers are down",
        );
        assert_eq!(capture.annotate("timed out".into()), "timed out");
        capture.error(
            KafkaError::Global(RDKafkaErrorCode::Authentication),
            "SASL authentication error: invalid credentials",
        );
        let message = capture.annotate("metadata: timed out".into());
        assert!(message.starts_with(AUTHENTICATION_FAILED), "{message}");

        let mut o = Observed {
            autoscale: Some(AutoscaleObserved {
                unknown: Some(message),
                ..AutoscaleObserved::default()
            }),
            ..Observed::default()
        };
        explain(&pipeline(BASIC), &Ok(KafkaAuth::default()), &mut o);
        assert_eq!(o.degraded.as_ref().unwrap().0, AUTHENTICATION_FAILED);

        capture.clear();
        capture.error(
            KafkaError::Global(RDKafkaErrorCode::SSL),
            "certificate verify failed",
        );
        let mut o = Observed {
            topic_error: Some(capture.annotate("metadata: timed out".into())),
            ..Observed::default()
        };
        explain(&pipeline(BASIC), &Ok(KafkaAuth::default()), &mut o);
        assert_eq!(o.degraded.as_ref().unwrap().0, TLS_FAILED);
        // The broker refusing the client certificate: a transport failure, OpenSSL's words.
        capture.clear();
        capture.error(
            KafkaError::Global(RDKafkaErrorCode::BrokerTransportFailure),
            "ssl://k:9093/bootstrap: Receive failed: error:0A000412:SSL routines::sslv3 alert \
             bad certificate: SSL alert number 42 (after 1ms in state APIVERSION_QUERY)",
        );
        assert!(capture.annotate(String::new()).starts_with(TLS_FAILED));

        let missing = Err(AuthError::SecretMissing {
            namespace: "ns".into(),
            name: "kafka-user".into(),
            field: "sasl.username",
        });
        let mut o = Observed::default();
        explain(&pipeline(BASIC), &missing, &mut o);
        assert_eq!(o.degraded.as_ref().unwrap().0, CREDENTIALS_UNAVAILABLE);
        // The topic managed elsewhere: the workers' pods report the missing Secret.
        let mut unmanaged = pipeline(BASIC);
        unmanaged.spec.kafka.manage_topic = false;
        let mut o = Observed::default();
        explain(&unmanaged, &missing, &mut o);
        assert_eq!(o.degraded, None);
    }
}
