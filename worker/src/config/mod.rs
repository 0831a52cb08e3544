//! Loading [`WorkerConfig`]: defaults, then a YAML file, then `SLUICE_`-prefixed environment
//! variables (`SLUICE_KAFKA__TOPIC=orders` sets `kafka.topic`). Secrets are read from their
//! own variables only and never enter the config value, so logging the config is safe.
//! Every load, at start and on [`reload`], is checked by [`WorkerConfig::validate`].

pub mod reload;

use anyhow::{Context, Result, bail};
use serde_json::Value;
use sluice_api::WorkerConfig;
use std::path::Path;

/// Credentials and endpoints that come from Kubernetes Secrets via the environment.
#[derive(Clone)]
pub struct Secrets {
    /// Primary (read-write) Postgres URL: `DATABASE_URL`.
    pub database_url: String,
    /// Read endpoint for analytics (a streaming replica): `DATABASE_READ_URL`; the primary
    /// when unset.
    pub database_read_url: Option<String>,
    /// Optional SASL credentials: `SLUICE_KAFKA_SASL_USERNAME` / `_PASSWORD`.
    pub kafka_sasl: Option<(String, String)>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(<redacted>)")
    }
}

impl Secrets {
    pub fn from_env() -> Result<Self> {
        let database_url = std::env::var("DATABASE_URL")
            .context("DATABASE_URL is not set (the Postgres primary URL, from a Secret)")?;
        let kafka_sasl = match (
            std::env::var("SLUICE_KAFKA_SASL_USERNAME"),
            std::env::var("SLUICE_KAFKA_SASL_PASSWORD"),
        ) {
            (Ok(u), Ok(p)) => Some((u, p)),
            _ => None,
        };
        let database_read_url = std::env::var("DATABASE_READ_URL")
            .ok()
            .filter(|u| !u.is_empty());
        Ok(Self {
            database_url,
            database_read_url,
            kafka_sasl,
        })
    }
}

/// Environment variables that are secrets, not config overrides.
const SECRET_VARS: [&str; 2] = ["SLUICE_KAFKA_SASL_USERNAME", "SLUICE_KAFKA_SASL_PASSWORD"];

pub fn load(file: Option<&Path>) -> Result<WorkerConfig> {
    let mut tree = serde_json::to_value(WorkerConfig::default())?;
    if let Some(path) = file {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let from_file: Value = serde_yaml::from_str(&text)
            .with_context(|| format!("parsing {} as YAML", path.display()))?;
        merge(&mut tree, from_file);
    }
    for (key, value) in std::env::vars() {
        let Some(path) = key.strip_prefix("SLUICE_") else {
            continue;
        };
        if SECRET_VARS.contains(&key.as_str()) || !path.contains("__") && !is_top_level(path) {
            continue;
        }
        set_path(&mut tree, path, &value).with_context(|| format!("applying {key}"))?;
    }
    let config: WorkerConfig =
        serde_json::from_value(tree).context("invalid worker configuration")?;
    // The same bounds the operator checks before it renders a ConfigMap.
    config.validate().context("invalid worker configuration")?;
    Ok(config)
}

fn is_top_level(path: &str) -> bool {
    path.eq_ignore_ascii_case("PIPELINE")
}

fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// Set `a__b__c` (case-insensitive) to `raw`, keeping the type of the default value.
fn set_path(tree: &mut Value, path: &str, raw: &str) -> Result<()> {
    let mut node = tree;
    let parts: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
    for (i, part) in parts.iter().enumerate() {
        let Value::Object(map) = node else {
            bail!("{} is not a section", parts[..i].join("."))
        };
        let Some(child) = map.get_mut(part) else {
            bail!("unknown setting {}", parts[..=i].join("."))
        };
        node = child;
    }
    *node = match node {
        Value::Bool(_) => Value::Bool(raw.parse().context("expected true or false")?),
        Value::Number(_) => serde_json::from_str(raw).context("expected a number")?,
        Value::Array(_) => Value::Array(
            raw.split(',')
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.trim().into()))
                .collect(),
        ),
        _ => Value::String(raw.into()),
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_out_of_bounds_is_refused_naming_the_setting() {
        let path = std::env::temp_dir().join(format!("sluice-config-{}.yaml", std::process::id()));
        std::fs::write(&path, "postgres:\n  max_connections: 1\n").unwrap();
        let error = load(Some(&path)).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(
            format!("{error:#}").contains("postgres.max_connections"),
            "{error:#}"
        );
    }

    #[test]
    fn env_paths_set_typed_values() {
        let mut tree = serde_json::to_value(WorkerConfig::default()).unwrap();
        set_path(&mut tree, "KAFKA__TOPIC", "orders").unwrap();
        set_path(&mut tree, "BATCH__MAX_RECORDS", "100").unwrap();
        set_path(&mut tree, "FRAUD__DISABLED_RULES", "a,b").unwrap();
        assert!(set_path(&mut tree, "KAFKA__NOPE", "x").is_err());
        assert!(set_path(&mut tree, "BATCH__MAX_RECORDS", "many").is_err());
        let c: WorkerConfig = serde_json::from_value(tree).unwrap();
        assert_eq!(c.kafka.topic, "orders");
        assert_eq!(c.batch.max_records, 100);
        assert_eq!(c.fraud.disabled_rules, vec!["a", "b"]);
    }
}
