use std::collections::BTreeMap;

use rdkafka::admin::{NewTopic, TopicReplication};

use super::settings::{differences, with_configs};
use super::*;
use crate::children::testing::{BASIC, pipeline};
use crate::crd::SecurityProtocol;

#[test]
fn plan_follows_manage_topic_and_the_protocol() {
    let pd = pipeline(BASIC);
    let TopicPlan::Ensure(req) = TopicPlan::of(&pd) else {
        panic!("a PLAINTEXT pipeline manages its topic");
    };
    assert_eq!(req.bootstrap, "kafka:9092");
    assert_eq!(req.security_protocol, "PLAINTEXT");
    assert_eq!(req.topic, "payments");
    assert_eq!(req.partitions, pd.spec.kafka.partitions);
    assert_eq!(req.replication_factor, pd.spec.kafka.replication_factor);
    assert_eq!(req.companions, ["payments.dlq", "payments.alerts"]);

    let mut ssl = pd.clone();
    ssl.spec.kafka.security_protocol = SecurityProtocol::Ssl;
    assert!(matches!(TopicPlan::of(&ssl), TopicPlan::Ensure(r) if r.security_protocol == "SSL"));

    // SASL too: the operator authenticates with the pipeline's Secrets (kafka_auth).
    let mut sasl = pd.clone();
    sasl.spec.kafka.security_protocol = SecurityProtocol::SaslSsl;
    assert!(
        matches!(TopicPlan::of(&sasl), TopicPlan::Ensure(r) if r.security_protocol == "SASL_SSL")
    );

    let mut unmanaged = sasl.clone();
    unmanaged.spec.kafka.manage_topic = false;
    assert_eq!(TopicPlan::of(&unmanaged), TopicPlan::Unmanaged);
}

#[test]
fn outcomes_become_observations_and_events() {
    let mut o = Observed::default();
    let step = record(
        "t",
        Ok(TopicOutcome::Created { partitions: 3 }),
        None,
        &mut o,
    );
    assert_eq!(o.topic_partitions, Some(3));
    assert_eq!(step.event.unwrap().reason, "TopicCreated");

    let step = record(
        "t",
        Ok(TopicOutcome::Expanded { from: 3, to: 6 }),
        Some(3),
        &mut o,
    );
    assert_eq!(o.topic_partitions, Some(6));
    let ev = step.event.unwrap();
    assert_eq!(
        (ev.reason, ev.note.as_str()),
        ("TopicExpanded", "topic t: partitions 3 → 6")
    );

    let step = record(
        "t",
        Ok(TopicOutcome::Unchanged { partitions: 8 }),
        Some(6),
        &mut o,
    );
    assert_eq!((o.topic_partitions, step), (Some(8), TopicStep::default()));

    let mut o = Observed::default();
    let step = record("t", Err(TopicError::Client("boom".into())), Some(6), &mut o);
    assert!(step.failed && step.event.is_none());
    assert_eq!(o.topic_partitions, Some(6), "last known partitions kept");
    assert_eq!(o.topic_error.as_deref(), Some("kafka admin client: boom"));
}

#[test]
fn missing_credentials_do_not_hide_an_earlier_degradation() {
    let missing = Err(crate::kafka_auth::AuthError::SecretMissing {
        namespace: "ns".into(),
        name: "kafka-user".into(),
        field: "sasl.username",
    });
    let mut o = Observed::default();
    crate::kafka_auth::explain(&pipeline(BASIC), &missing, &mut o);
    assert_eq!(
        o.degraded.as_ref().unwrap().0,
        crate::kafka_auth::CREDENTIALS_UNAVAILABLE
    );
    let mut o = Observed {
        degraded: Some(("CloudNativePGMissing".into(), "m".into())),
        ..Observed::default()
    };
    crate::kafka_auth::explain(&pipeline(BASIC), &missing, &mut o);
    assert_eq!(o.degraded.unwrap().0, "CloudNativePGMissing");
}

#[test]
fn topic_settings_become_configs_and_differences() {
    use crate::crd::{TopicSettings, TopicSettingsSpec};
    let mut pd = pipeline(BASIC);
    pd.spec.kafka.topic_settings = Some(TopicSettingsSpec {
        input: Some(TopicSettings {
            min_insync_replicas: Some(1),
            retention_ms: Some(7_200_000),
            retention_bytes: None,
        }),
        dlq: Some(TopicSettings::default()),
        alerts: None,
    });
    let TopicPlan::Ensure(req) = TopicPlan::of(&pd) else {
        panic!("a managed topic");
    };
    assert_eq!(
        req.configs,
        BTreeMap::from([(
            "payments".to_string(),
            vec![
                ("min.insync.replicas", "1".to_string()),
                ("retention.ms", "7200000".to_string())
            ]
        )]),
        "topics with nothing set are absent"
    );
    let created = with_configs(
        NewTopic::new("payments", 1, TopicReplication::Fixed(1)),
        &req,
    );
    assert_eq!(created.config.len(), 2);

    let replication = HashMap::from([
        ("payments".to_string(), req.replication_factor),
        ("payments.dlq".to_string(), req.replication_factor + 2),
    ]);
    let described = HashMap::from([(
        "payments".to_string(),
        HashMap::from([
            ("min.insync.replicas".to_string(), Some("1".to_string())),
            ("retention.ms".to_string(), Some("604800000".to_string())),
        ]),
    )]);
    assert_eq!(
        differences(&req, &replication, &described),
        [
            "payments: retention.ms is 604800000, spec asks 7200000".to_string(),
            format!(
                "payments.dlq: replication factor is {}, spec asks {}",
                req.replication_factor + 2,
                req.replication_factor
            ),
        ]
    );
    let matching = HashMap::from([(
        "payments".to_string(),
        HashMap::from([
            ("min.insync.replicas".to_string(), Some("1".to_string())),
            ("retention.ms".to_string(), Some("7200000".to_string())),
        ]),
    )]);
    let same_factor = HashMap::from([("payments".to_string(), req.replication_factor)]);
    assert!(differences(&req, &same_factor, &matching).is_empty());
}
