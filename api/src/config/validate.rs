//! The bounds of every setting: what [`WorkerConfig::validate`] checks.

use super::{KafkaConfig, PostgresConfig, WorkerConfig};

/// The bounds [`WorkerConfig::validate`] enforces, public so the CRD states the same ones.
pub mod bounds {
    /// Pool size: one connection for the writer and one for partition maintenance.
    pub const MIN_MAX_CONNECTIONS: u32 = 2;
    /// Postgres truncates longer identifiers (NAMEDATALEN - 1).
    pub const MAX_SCHEMA_LEN: usize = 63;
    /// Kafka refuses longer topic names.
    pub const MAX_TOPIC_LEN: usize = 249;
    /// Longest suffix the worker appends to the input topic for its output topics.
    pub const OUTPUT_TOPIC_SUFFIX_LEN: usize = ".alerts".len();
    /// Longest input topic whose derived `<topic>.dlq` / `<topic>.alerts` are still legal.
    pub const MAX_INPUT_TOPIC_LEN: usize = MAX_TOPIC_LEN - OUTPUT_TOPIC_SUFFIX_LEN;
    pub const SECURITY_PROTOCOLS: [&str; 4] = ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"];
    /// The username/password mechanisms (credentials come from the environment).
    pub const SASL_MECHANISMS: [&str; 3] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];
    /// The broker's default `group.min.session.timeout.ms` / `group.max.session.timeout.ms`:
    /// a consumer asking for less or more is refused when it joins the group.
    pub const MIN_SESSION_TIMEOUT_MS: u32 = 6_000;
    pub const MAX_SESSION_TIMEOUT_MS: u32 = 1_800_000;
    /// librdkafka requires `socket.timeout.ms` (60 s) >= `fetch.wait.max.ms` + 1 s.
    pub const MAX_FETCH_WAIT_MS: u32 = 59_000;
    /// Event-time spans (future skew, lateness) stay within date arithmetic's range.
    pub const MAX_TIME_SPAN_SECS: u64 = 365 * 86_400;
    /// Retention in days: at least today; at most a century of daily partitions.
    pub const MIN_RETENTION_DAYS: u32 = 1;
    pub const MAX_RETENTION_DAYS: u32 = 36_500;
    /// Daily partitions created ahead of today.
    pub const MAX_DAYS_AHEAD: u32 = 366;
    /// Concurrent batch transactions of one worker.
    pub const MAX_SINK_LANES: u32 = 16;
    /// Records since the last profile write are replayed after a crash: keep that short.
    pub const MAX_PROFILE_CHECKPOINT_MS: u64 = 600_000;
}

/// A setting outside its bounds: `field` is its path in the YAML file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {problem}")]
pub struct ConfigError {
    /// Path of the setting, e.g. `postgres.max_connections`.
    pub field: &'static str,
    /// What is wrong, naming the bound and the value, e.g. `must be at least 2 (…), got 1`.
    pub problem: String,
}

fn refuse(field: &'static str, problem: impl Into<String>) -> Result<(), ConfigError> {
    Err(ConfigError {
        field,
        problem: problem.into(),
    })
}

fn at_least<T: PartialOrd + std::fmt::Display>(
    field: &'static str,
    value: T,
    min: T,
    why: &str,
) -> Result<(), ConfigError> {
    if value < min {
        return refuse(field, format!("must be at least {min}{why}, got {value}"));
    }
    Ok(())
}

fn at_most<T: PartialOrd + std::fmt::Display>(
    field: &'static str,
    value: T,
    max: T,
    why: &str,
) -> Result<(), ConfigError> {
    if value > max {
        return refuse(field, format!("must be at most {max}{why}, got {value}"));
    }
    Ok(())
}

fn not_empty(field: &'static str, value: &str) -> Result<(), ConfigError> {
    if value.trim().is_empty() {
        return refuse(field, "must be set");
    }
    Ok(())
}

fn one_of(field: &'static str, value: &str, allowed: &[&str]) -> Result<(), ConfigError> {
    if !allowed.contains(&value) {
        return refuse(
            field,
            format!("must be one of {}, got {value:?}", allowed.join(", ")),
        );
    }
    Ok(())
}

/// A topic name Kafka accepts: 1–249 of `[A-Za-z0-9._-]`, not `.` or `..`.
fn kafka_topic(field: &'static str, name: &str, max_len: usize) -> Result<(), ConfigError> {
    not_empty(field, name)?;
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        || name == "."
        || name == ".."
    {
        return refuse(
            field,
            format!("must be a Kafka topic name ([A-Za-z0-9._-]+, not . or ..), got {name:?}"),
        );
    }
    if name.len() > max_len {
        return refuse(
            field,
            format!("must be at most {max_len} characters, got {}", name.len()),
        );
    }
    Ok(())
}

pub(super) fn worker_config(c: &WorkerConfig) -> Result<(), ConfigError> {
    kafka(&c.kafka)?;
    postgres(&c.postgres)?;
    at_least(
        "batch.max_records",
        c.batch.max_records,
        1,
        " (records per database transaction)",
    )?;
    at_least(
        "validation.max_future_skew_secs",
        c.validation.max_future_skew_secs,
        0,
        " (a negative skew would reject events from now)",
    )?;
    at_most(
        "validation.max_future_skew_secs",
        c.validation.max_future_skew_secs.unsigned_abs(),
        bounds::MAX_TIME_SPAN_SECS,
        "",
    )?;
    at_least(
        "retention.days",
        c.retention.days,
        bounds::MIN_RETENTION_DAYS,
        " (today's partition is kept)",
    )?;
    at_most(
        "retention.days",
        c.retention.days,
        bounds::MAX_RETENTION_DAYS,
        "",
    )?;
    at_most(
        "retention.days_ahead",
        c.retention.days_ahead,
        bounds::MAX_DAYS_AHEAD,
        "",
    )?;
    http_listen(&c.http.listen)?;
    if !(0.0..=1.0).contains(&c.fraud.threshold) {
        return refuse(
            "fraud.threshold",
            format!(
                "must be between 0 and 1 (a score), got {}",
                c.fraud.threshold
            ),
        );
    }
    at_most(
        "fraud.profile_checkpoint_ms",
        c.fraud.profile_checkpoint_ms,
        bounds::MAX_PROFILE_CHECKPOINT_MS,
        " (records since the last profile write are replayed after a crash)",
    )?;
    at_most(
        "analytics.allowed_lateness_secs",
        c.analytics.allowed_lateness_secs,
        bounds::MAX_TIME_SPAN_SECS,
        "",
    )
}

fn kafka(k: &KafkaConfig) -> Result<(), ConfigError> {
    not_empty("kafka.bootstrap_servers", &k.bootstrap_servers)?;
    kafka_topic("kafka.topic", &k.topic, bounds::MAX_TOPIC_LEN)?;
    kafka_topic("kafka.dlq_topic", &k.dlq_topic(), bounds::MAX_TOPIC_LEN)?;
    kafka_topic(
        "kafka.alerts_topic",
        &k.alerts_topic(),
        bounds::MAX_TOPIC_LEN,
    )?;
    not_empty("kafka.group_id", &k.group_id)?;
    // librdkafka reads the protocol case-insensitively.
    one_of(
        "kafka.security_protocol",
        &k.security_protocol.to_ascii_uppercase(),
        &bounds::SECURITY_PROTOCOLS,
    )?;
    one_of(
        "kafka.sasl_mechanism",
        &k.sasl_mechanism,
        &bounds::SASL_MECHANISMS,
    )?;
    kafka_tls(k)?;
    at_least(
        "kafka.session_timeout_ms",
        k.session_timeout_ms,
        bounds::MIN_SESSION_TIMEOUT_MS,
        " (the broker's group.min.session.timeout.ms)",
    )?;
    at_most(
        "kafka.session_timeout_ms",
        k.session_timeout_ms,
        bounds::MAX_SESSION_TIMEOUT_MS,
        " (the broker's group.max.session.timeout.ms)",
    )?;
    at_most(
        "kafka.fetch_wait_max_ms",
        k.fetch_wait_max_ms,
        bounds::MAX_FETCH_WAIT_MS,
        " (librdkafka: socket.timeout.ms - 1000)",
    )?;
    if k.start_from().is_none() {
        return refuse(
            "kafka.start_from",
            format!(
                "must be earliest, latest or an RFC 3339 timestamp (e.g. 2026-01-31T00:00:00Z), got {:?}",
                k.start_from
            ),
        );
    }
    Ok(())
}

/// TLS files make sense only on a TLS protocol, and a client certificate needs its key.
fn kafka_tls(k: &KafkaConfig) -> Result<(), ConfigError> {
    let tls = k.security_protocol.to_ascii_uppercase().ends_with("SSL");
    for (field, value) in [
        ("kafka.ssl_ca_location", &k.ssl_ca_location),
        (
            "kafka.ssl_certificate_location",
            &k.ssl_certificate_location,
        ),
        ("kafka.ssl_key_location", &k.ssl_key_location),
    ] {
        if !value.is_empty() && !tls {
            return refuse(
                field,
                format!(
                    "needs security_protocol SSL or SASL_SSL, got {}",
                    k.security_protocol
                ),
            );
        }
    }
    match (
        k.ssl_certificate_location.is_empty(),
        k.ssl_key_location.is_empty(),
    ) {
        (false, true) => refuse(
            "kafka.ssl_key_location",
            "must be set with ssl_certificate_location (the client certificate's key)",
        ),
        (true, false) => refuse(
            "kafka.ssl_certificate_location",
            "must be set with ssl_key_location (the key's certificate)",
        ),
        _ => Ok(()),
    }
}

fn postgres(p: &PostgresConfig) -> Result<(), ConfigError> {
    // Formatted into SQL unquoted, so it must be a plain identifier.
    let plain = p
        .schema
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
        && p.schema
            .starts_with(|c: char| c.is_ascii_alphabetic() || c == '_');
    if !plain {
        return refuse(
            "postgres.schema",
            format!(
                "must be a plain identifier ([A-Za-z_][A-Za-z0-9_]*), got {:?}",
                p.schema
            ),
        );
    }
    at_most(
        "postgres.schema",
        p.schema.len(),
        bounds::MAX_SCHEMA_LEN,
        " characters",
    )?;
    at_least(
        "postgres.max_connections",
        p.max_connections,
        bounds::MIN_MAX_CONNECTIONS,
        " (writer + maintenance)",
    )?;
    at_least(
        "postgres.sink_lanes",
        p.sink_lanes,
        1,
        " (concurrent batch transactions)",
    )?;
    at_most(
        "postgres.sink_lanes",
        p.sink_lanes,
        bounds::MAX_SINK_LANES,
        "",
    )?;
    at_least(
        "postgres.retry_initial_ms",
        p.retry_initial_ms,
        1,
        " (the delay doubles from it)",
    )?;
    if p.retry_initial_ms > p.retry_max_ms {
        return refuse(
            "postgres.retry_initial_ms",
            format!(
                "must be at most postgres.retry_max_ms ({}), got {}",
                p.retry_max_ms, p.retry_initial_ms
            ),
        );
    }
    Ok(())
}

/// `host:port` the HTTP server can bind: an IP socket address or a host name and a port.
fn http_listen(listen: &str) -> Result<(), ConfigError> {
    let parses = listen.parse::<std::net::SocketAddr>().is_ok()
        || listen.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && !host.contains(':') && port.parse::<u16>().is_ok()
        });
    if !parses {
        return refuse(
            "http.listen",
            format!("must be host:port, e.g. 0.0.0.0:9090, got {listen:?}"),
        );
    }
    Ok(())
}
