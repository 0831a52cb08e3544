use super::*;
use crate::children::testing::{BASIC, pipeline};

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

    let mut sasl = pd.clone();
    sasl.spec.kafka.security_protocol = SecurityProtocol::SaslSsl;
    assert_eq!(TopicPlan::of(&sasl), TopicPlan::NeedsCredentials);

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
    let mut o = Observed::default();
    needs_credentials(&mut o);
    assert_eq!(o.degraded.as_ref().unwrap().0, "TopicNotManaged");
    let mut o = Observed {
        degraded: Some(("CloudNativePGMissing".into(), "m".into())),
        ..Observed::default()
    };
    needs_credentials(&mut o);
    assert_eq!(o.degraded.unwrap().0, "CloudNativePGMissing");
}
