//! The settings table `sluice-worker --help` prints: each key with what it does and its
//! default, the defaults read from [`WorkerConfig::default`] so the text cannot drift.

use super::{WorkerConfig, bounds};
use serde_json::Value;

/// Every setting (its path in the YAML file) and what it does, in file order.
const DESCRIPTIONS: &[(&str, &str)] = &[
    ("pipeline", "name used as the `pipeline` metric label"),
    ("kafka.bootstrap_servers", "comma-separated broker list"),
    ("kafka.topic", "input topic of transactions"),
    (
        "kafka.group_id",
        "consumer group shared by the pipeline's workers",
    ),
    ("kafka.dlq_topic", "rejected records; empty = <topic>.dlq"),
    ("kafka.alerts_topic", "fraud alerts; empty = <topic>.alerts"),
    (
        "kafka.security_protocol",
        "PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL",
    ),
    (
        "kafka.sasl_mechanism",
        "PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512",
    ),
    (
        "kafka.ssl_ca_location",
        "CA bundle (PEM file); empty = system trust",
    ),
    (
        "kafka.ssl_certificate_location",
        "mTLS client certificate (PEM file)",
    ),
    ("kafka.ssl_key_location", "mTLS client key (PEM file)"),
    (
        "kafka.session_timeout_ms",
        "how long a dead worker keeps its partitions",
    ),
    (
        "kafka.fetch_wait_max_ms",
        "broker fetch wait; bounds latency at low rates",
    ),
    (
        "kafka.start_from",
        "new partitions: earliest | latest | RFC 3339 time",
    ),
    ("postgres.schema", "schema of the pipeline's tables"),
    ("postgres.max_connections", "pool size"),
    (
        "postgres.retry_initial_ms",
        "first retry delay after a DB error (doubles)",
    ),
    ("postgres.retry_max_ms", "longest retry delay"),
    (
        "postgres.synchronous_commit",
        "wait for the WAL flush at each batch commit",
    ),
    (
        "postgres.sink_lanes",
        "concurrent batch transactions (< max_connections)",
    ),
    ("batch.max_records", "write a batch at this many records..."),
    (
        "batch.max_wait_ms",
        "...or when its first record waited this long",
    ),
    (
        "validation.max_future_skew_secs",
        "event times further ahead are rejected",
    ),
    (
        "retention.days",
        "daily partitions kept; older events rejected",
    ),
    ("retention.days_ahead", "daily partitions created ahead"),
    (
        "retention.maintenance_interval_secs",
        "partition upkeep period",
    ),
    (
        "http.listen",
        "address of /metrics /healthz /readyz /api/v1/*",
    ),
    ("fraud.enabled", "score transactions and raise alerts"),
    ("fraud.threshold", "score at or above which one is flagged"),
    ("fraud.disabled_rules", "rules switched off by name"),
    (
        "fraud.profile_capacity",
        "customer profiles kept in memory (read at start)",
    ),
    (
        "fraud.profile_checkpoint_ms",
        "write changed profiles this often; 0 = every batch",
    ),
    (
        "analytics.allowed_lateness_secs",
        "later events are stored but not summarised",
    ),
];

/// The bound of a setting worth knowing before `validate` names it, from [`bounds`].
fn bound(key: &str) -> Option<String> {
    Some(match key {
        "kafka.session_timeout_ms" => format!(
            "{}-{}",
            bounds::MIN_SESSION_TIMEOUT_MS,
            bounds::MAX_SESSION_TIMEOUT_MS
        ),
        "kafka.fetch_wait_max_ms" => format!("<= {}", bounds::MAX_FETCH_WAIT_MS),
        "postgres.max_connections" => format!(">= {}", bounds::MIN_MAX_CONNECTIONS),
        "postgres.sink_lanes" => format!("1-{}", bounds::MAX_SINK_LANES),
        "fraud.profile_checkpoint_ms" => format!("<= {}", bounds::MAX_PROFILE_CHECKPOINT_MS),
        "fraud.threshold" => "0-1".into(),
        _ => return None,
    })
}

/// The SETTINGS section of `sluice-worker --help`: one line per setting with its default in
/// brackets (none when the default is empty).
pub fn settings_help() -> String {
    let defaults = serde_json::to_value(WorkerConfig::default()).expect("WorkerConfig serializes");
    let width = DESCRIPTIONS.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let described: Vec<(&str, String)> = DESCRIPTIONS
        .iter()
        .map(|(key, text)| match bound(key) {
            Some(b) => (*key, format!("{text} ({b})")),
            None => (*key, text.to_string()),
        })
        .collect();
    let desc_width = described.iter().map(|(_, d)| d.len()).max().unwrap_or(0);
    let mut out = String::from(
        "SETTINGS (YAML file keys; each also settable as SLUICE_<SECTION>__<KEY>, e.g. SLUICE_KAFKA__TOPIC)\n",
    );
    for (key, description) in &described {
        let default = shown(lookup(&defaults, key).expect("described setting exists"));
        let line = if default.is_empty() {
            format!("  {key:<width$}  {description}")
        } else {
            format!("  {key:<width$}  {description:<desc_width$}  [{default}]")
        };
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn lookup<'a>(tree: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(tree, |node, part| node.get(part))
}

/// A default as a person would type it in the file (lists comma-separated).
fn shown(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(shown).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Paths of every leaf setting of the default config, in serialization order.
    fn leaves(value: &Value, prefix: &str, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    let path = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    leaves(v, &path, out);
                }
            }
            _ => out.push(prefix.to_string()),
        }
    }

    #[test]
    fn every_setting_is_described_once() {
        let mut settings = Vec::new();
        leaves(
            &serde_json::to_value(WorkerConfig::default()).unwrap(),
            "",
            &mut settings,
        );
        let mut described: Vec<String> = DESCRIPTIONS.iter().map(|(k, _)| k.to_string()).collect();
        settings.sort();
        described.sort();
        assert_eq!(described, settings);
    }

    #[test]
    fn defaults_come_from_the_config() {
        let help = settings_help();
        let line = |key: &str| {
            help.lines()
                .find(|l| l.split_whitespace().next() == Some(key))
                .unwrap_or_else(|| panic!("{key} missing from\n{help}"))
                .to_string()
        };
        let d = WorkerConfig::default();
        assert!(
            line("postgres.max_connections")
                .ends_with(&format!("[{}]", d.postgres.max_connections))
        );
        assert!(
            line("kafka.bootstrap_servers").ends_with(&format!("[{}]", d.kafka.bootstrap_servers))
        );
        assert!(line("fraud.threshold").ends_with(&format!("[{}]", d.fraud.threshold)));
        assert!(line("postgres.max_connections").contains("(>= 2)"));
        // Empty defaults show no brackets.
        assert!(!line("kafka.dlq_topic").contains('['));
        assert!(!line("fraud.disabled_rules").contains('['));
    }
}
