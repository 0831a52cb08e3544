use super::*;

/// The field `validate` names for a default config changed by `edit`, or `None` if accepted.
fn refused_field(edit: impl FnOnce(&mut WorkerConfig)) -> Option<&'static str> {
    let mut c = WorkerConfig::default();
    edit(&mut c);
    c.validate().err().map(|e| e.field)
}

#[test]
fn defaults_are_valid() {
    assert_eq!(WorkerConfig::default().validate(), Ok(()));
}

#[test]
fn message_names_the_field_and_the_bound() {
    let mut c = WorkerConfig::default();
    c.postgres.max_connections = 1;
    let e = c.validate().unwrap_err();
    assert_eq!(
        e.to_string(),
        "postgres.max_connections must be at least 2 (writer + maintenance), got 1"
    );
}

#[test]
fn schema_is_a_plain_identifier_postgres_keeps_whole() {
    for bad in ["", "1abc", "a-b", "a.b", "a b", "ä", &"s".repeat(64)] {
        assert_eq!(
            refused_field(|c| c.postgres.schema = bad.into()),
            Some("postgres.schema"),
            "{bad:?}"
        );
    }
    for good in ["_x", "Sluice_2", &"s".repeat(63)] {
        assert_eq!(refused_field(|c| c.postgres.schema = good.into()), None);
    }
}

#[test]
fn pool_has_room_for_writer_and_maintenance() {
    let field = |n| refused_field(|c| c.postgres.max_connections = n);
    assert_eq!(field(1), Some("postgres.max_connections"));
    assert_eq!(field(0), Some("postgres.max_connections"));
    assert_eq!(field(2), None);
}

#[test]
fn retry_delays_are_positive_and_ordered() {
    assert_eq!(
        refused_field(|c| c.postgres.retry_initial_ms = 0),
        Some("postgres.retry_initial_ms")
    );
    assert_eq!(
        refused_field(|c| {
            c.postgres.retry_initial_ms = 2_000;
            c.postgres.retry_max_ms = 1_000;
        }),
        Some("postgres.retry_initial_ms")
    );
    assert_eq!(
        refused_field(|c| {
            c.postgres.retry_initial_ms = 1_000;
            c.postgres.retry_max_ms = 1_000;
        }),
        None
    );
}

#[test]
fn batch_holds_a_record() {
    assert_eq!(
        refused_field(|c| c.batch.max_records = 0),
        Some("batch.max_records")
    );
    assert_eq!(refused_field(|c| c.batch.max_records = 1), None);
}

#[test]
fn kafka_endpoints_and_names_are_set() {
    assert_eq!(
        refused_field(|c| c.kafka.bootstrap_servers = " ".into()),
        Some("kafka.bootstrap_servers")
    );
    assert_eq!(
        refused_field(|c| c.kafka.topic = String::new()),
        Some("kafka.topic")
    );
    assert_eq!(
        refused_field(|c| c.kafka.group_id = String::new()),
        Some("kafka.group_id")
    );
}

#[test]
fn topics_are_names_kafka_accepts() {
    for bad in ["a/b", "a b", ".", "..", &"t".repeat(250)] {
        assert_eq!(
            refused_field(|c| c.kafka.topic = bad.into()),
            Some("kafka.topic"),
            "{bad:?}"
        );
    }
    assert_eq!(
        refused_field(|c| c.kafka.dlq_topic = "dl q".into()),
        Some("kafka.dlq_topic")
    );
    assert_eq!(
        refused_field(|c| c.kafka.alerts_topic = "a:b".into()),
        Some("kafka.alerts_topic")
    );
}

#[test]
fn derived_output_topics_fit_kafkas_limit() {
    let longest = "t".repeat(bounds::MAX_INPUT_TOPIC_LEN);
    assert_eq!(refused_field(|c| c.kafka.topic = longest.clone()), None);
    // `<topic>.dlq` would still fit; `<topic>.alerts` would not.
    assert_eq!(
        refused_field(|c| c.kafka.topic = format!("{longest}t")),
        Some("kafka.alerts_topic")
    );
    // Named output topics do not depend on the input topic's length.
    assert_eq!(
        refused_field(|c| {
            c.kafka.topic = "t".repeat(bounds::MAX_TOPIC_LEN);
            c.kafka.dlq_topic = "dlq".into();
            c.kafka.alerts_topic = "alerts".into();
        }),
        None
    );
}

#[test]
fn security_protocol_and_sasl_mechanism_are_known() {
    for p in bounds::SECURITY_PROTOCOLS {
        assert_eq!(
            refused_field(|c| c.kafka.security_protocol = p.into()),
            None
        );
    }
    assert_eq!(
        refused_field(|c| c.kafka.security_protocol = "sasl_ssl".into()),
        None
    );
    assert_eq!(
        refused_field(|c| c.kafka.security_protocol = "TLS".into()),
        Some("kafka.security_protocol")
    );
    for m in bounds::SASL_MECHANISMS {
        assert_eq!(refused_field(|c| c.kafka.sasl_mechanism = m.into()), None);
    }
    assert_eq!(
        refused_field(|c| c.kafka.sasl_mechanism = "GSSAPI".into()),
        Some("kafka.sasl_mechanism")
    );
}

#[test]
fn session_timeout_is_within_the_brokers_range() {
    let field = |ms| refused_field(|c| c.kafka.session_timeout_ms = ms);
    assert_eq!(field(5_999), Some("kafka.session_timeout_ms"));
    assert_eq!(field(6_000), None);
    assert_eq!(field(1_800_000), None);
    assert_eq!(field(1_800_001), Some("kafka.session_timeout_ms"));
}

#[test]
fn fetch_wait_leaves_room_under_the_socket_timeout() {
    let field = |ms| refused_field(|c| c.kafka.fetch_wait_max_ms = ms);
    assert_eq!(field(0), None);
    assert_eq!(field(59_000), None);
    assert_eq!(field(59_001), Some("kafka.fetch_wait_max_ms"));
}

#[test]
fn future_skew_is_a_bounded_non_negative_span() {
    let field = |s| refused_field(|c| c.validation.max_future_skew_secs = s);
    assert_eq!(field(-1), Some("validation.max_future_skew_secs"));
    assert_eq!(field(i64::MIN), Some("validation.max_future_skew_secs"));
    assert_eq!(field(0), None);
    assert_eq!(field(365 * 86_400), None);
    assert_eq!(
        field(365 * 86_400 + 1),
        Some("validation.max_future_skew_secs")
    );
}

#[test]
fn retention_keeps_at_least_today() {
    let days = |d| refused_field(|c| c.retention.days = d);
    assert_eq!(days(0), Some("retention.days"));
    assert_eq!(days(1), None);
    assert_eq!(days(36_500), None);
    assert_eq!(days(36_501), Some("retention.days"));
    assert_eq!(
        refused_field(|c| c.retention.days_ahead = 367),
        Some("retention.days_ahead")
    );
    assert_eq!(refused_field(|c| c.retention.days_ahead = 0), None);
}

#[test]
fn listen_is_host_and_port() {
    for good in ["0.0.0.0:9090", "127.0.0.1:0", "[::]:9090", "localhost:9090"] {
        assert_eq!(
            refused_field(|c| c.http.listen = good.into()),
            None,
            "{good}"
        );
    }
    for bad in ["", "9090", ":9090", "0.0.0.0", "0.0.0.0:99999", "::1:80"] {
        assert_eq!(
            refused_field(|c| c.http.listen = bad.into()),
            Some("http.listen"),
            "{bad}"
        );
    }
}

#[test]
fn threshold_is_a_score() {
    let field = |t| refused_field(|c| c.fraud.threshold = t);
    assert_eq!(field(0.0), None);
    assert_eq!(field(1.0), None);
    assert_eq!(field(-0.1), Some("fraud.threshold"));
    assert_eq!(field(1.1), Some("fraud.threshold"));
    assert_eq!(field(f64::NAN), Some("fraud.threshold"));
}

#[test]
fn lateness_is_a_bounded_span() {
    let field = |s| refused_field(|c| c.analytics.allowed_lateness_secs = s);
    assert_eq!(field(0), None);
    assert_eq!(field(365 * 86_400), None);
    assert_eq!(field(u64::MAX), Some("analytics.allowed_lateness_secs"));
}

#[test]
fn start_from_is_earliest_latest_or_a_timestamp() {
    let field = |s: &str| refused_field(|c| c.kafka.start_from = s.into());
    for good in [
        "earliest",
        "latest",
        "2026-01-31T00:00:00Z",
        "2026-01-31T01:02:03.456+02:00",
    ] {
        assert_eq!(field(good), None, "{good}");
    }
    for bad in ["", "Earliest", "now", "2026-01-31", "2026-01-31 00:00:00"] {
        assert_eq!(field(bad), Some("kafka.start_from"), "{bad}");
    }
    let at = |s: &str| StartFrom::parse(s);
    assert_eq!(at("earliest"), Some(StartFrom::Earliest));
    assert_eq!(
        at("2026-01-31T02:00:00+02:00"),
        Some(StartFrom::Timestamp(
            "2026-01-31T00:00:00Z".parse().unwrap()
        ))
    );
}

#[test]
fn tls_files_need_a_tls_protocol_and_come_as_a_pair() {
    let tls = |c: &mut WorkerConfig| c.kafka.security_protocol = "SASL_SSL".into();
    assert_eq!(
        refused_field(|c| {
            tls(c);
            c.kafka.ssl_ca_location = "/etc/ca.pem".into();
        }),
        None
    );
    assert_eq!(
        refused_field(|c| c.kafka.ssl_ca_location = "/etc/ca.pem".into()),
        Some("kafka.ssl_ca_location")
    );
    assert_eq!(
        refused_field(|c| {
            tls(c);
            c.kafka.ssl_certificate_location = "/etc/tls.crt".into();
        }),
        Some("kafka.ssl_key_location")
    );
    assert_eq!(
        refused_field(|c| {
            tls(c);
            c.kafka.ssl_key_location = "/etc/tls.key".into();
        }),
        Some("kafka.ssl_certificate_location")
    );
    assert_eq!(
        refused_field(|c| {
            tls(c);
            c.kafka.ssl_certificate_location = "/etc/tls.crt".into();
            c.kafka.ssl_key_location = "/etc/tls.key".into();
        }),
        None
    );
}
