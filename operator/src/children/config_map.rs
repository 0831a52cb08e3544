//! The worker configuration ConfigMap: the pipeline spec rendered as a `sluice_api::WorkerConfig`
//! YAML file, mounted by the workers at /etc/sluice/config.yaml. Secrets never appear here.
//! A config the worker would refuse (`WorkerConfig::validate`) is never rendered.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use sha2::{Digest, Sha256};
use sluice_api::config::{
    AnalyticsConfig, BatchConfig, FraudConfig, HttpConfig, KafkaConfig, PostgresConfig,
    RetentionConfig, ValidationConfig,
};
use sluice_api::{ConfigError, WorkerConfig};

use super::{METRICS_PORT, Names, meta};
use crate::crd::PipelineDeployment;

/// File name of the config inside the ConfigMap (and the mount directory).
pub const CONFIG_KEY: &str = "config.yaml";

/// The worker config for a pipeline, unchecked. Out-of-range numbers (only an object stored
/// under an older, looser CRD has them) are kept out of range, never clamped into it, so that
/// `validate` sees them.
pub fn worker_config(pd: &PipelineDeployment) -> WorkerConfig {
    let s = &pd.spec;
    let base = WorkerConfig::default();
    WorkerConfig {
        pipeline: pd.name_any(),
        kafka: KafkaConfig {
            bootstrap_servers: s.kafka.bootstrap_servers.clone(),
            topic: s.kafka.topic.clone(),
            group_id: pd.consumer_group(),
            security_protocol: s.kafka.security_protocol.as_str().into(),
            sasl_mechanism: s
                .kafka
                .sasl
                .as_ref()
                .map_or(base.kafka.sasl_mechanism.clone(), |x| {
                    x.mechanism.as_str().into()
                }),
            start_from: s.kafka.start_from.clone(),
            ..base.kafka
        },
        postgres: PostgresConfig {
            schema: pd.schema(),
            max_connections: u32::try_from(s.postgres.max_connections).unwrap_or(0),
            ..base.postgres
        },
        batch: BatchConfig {
            max_records: usize::try_from(s.workers.batch.max_records).unwrap_or(0),
            max_wait_ms: s.workers.batch.max_wait_ms.max(1) as u64,
        },
        validation: ValidationConfig {
            max_future_skew_secs: s.quality.max_future_skew_seconds,
        },
        retention: RetentionConfig {
            days: u32::try_from(s.quality.retention_days).unwrap_or(0),
            ..base.retention
        },
        // The port the pod template and the Service name, not a second copy of the default.
        http: HttpConfig {
            listen: format!("0.0.0.0:{METRICS_PORT}"),
        },
        fraud: FraudConfig {
            enabled: s.fraud.enabled,
            threshold: s.fraud.threshold,
            disabled_rules: s.fraud.disabled_rules.clone(),
            ..base.fraud
        },
        analytics: AnalyticsConfig {
            allowed_lateness_secs: s.quality.allowed_lateness_seconds.max(0) as u64,
        },
    }
}

/// Builds the ConfigMap and returns it with the hash of its content (for the pod template);
/// refuses a config the worker would refuse.
pub fn build_config_map(pd: &PipelineDeployment) -> Result<(ConfigMap, String), ConfigError> {
    let config = worker_config(pd);
    config.validate()?;
    let yaml = serde_yaml::to_string(&config).expect("WorkerConfig serializes");
    let hash = format!("{:x}", Sha256::digest(yaml.as_bytes()));
    let cm = ConfigMap {
        metadata: meta(pd, &Names::of(pd).config, "config"),
        data: Some(BTreeMap::from([(CONFIG_KEY.to_string(), yaml)])),
        ..ConfigMap::default()
    };
    Ok((cm, hash[..16].to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::children::testing::{BASIC, pipeline};

    #[test]
    fn renders_a_config_the_worker_accepts() {
        let pd = pipeline(BASIC);
        let (cm, hash) = build_config_map(&pd).unwrap();
        let yaml = &cm.data.unwrap()[CONFIG_KEY];
        let back: WorkerConfig = serde_yaml::from_str(yaml).unwrap();
        assert_eq!(back.kafka.topic, "payments");
        assert_eq!(back.kafka.group_id, "sluice-ns-payments");
        assert_eq!(back.pipeline, "payments");
        assert_eq!(back.http.listen, "0.0.0.0:9090");
        assert_eq!(hash.len(), 16);
    }

    #[test]
    fn hash_follows_the_config() {
        let a = pipeline(BASIC);
        let mut b = a.clone();
        b.spec.workers.batch.max_records = 7;
        assert_ne!(
            build_config_map(&a).unwrap().1,
            build_config_map(&b).unwrap().1
        );
        b.spec.workers.min_replicas = 3; // not part of the config
        b.spec.workers.batch.max_records = a.spec.workers.batch.max_records;
        assert_eq!(
            build_config_map(&a).unwrap().1,
            build_config_map(&b).unwrap().1
        );
    }

    #[test]
    fn a_config_the_worker_would_refuse_is_not_rendered() {
        let mut pd = pipeline(BASIC);
        pd.spec.postgres.max_connections = 1;
        let e = build_config_map(&pd).unwrap_err();
        assert_eq!(e.field, "postgres.max_connections");
        // A negative number is refused, not wrapped or clamped into range.
        pd.spec.postgres.max_connections = -1;
        assert_eq!(
            build_config_map(&pd).unwrap_err().field,
            "postgres.max_connections"
        );
    }

    /// The CRD's bounds of every field that becomes a worker setting.
    fn crd_bound(path: &[&str], bound: &str) -> serde_json::Value {
        let crd = serde_json::to_value(crate::crd::crd()).unwrap();
        let mut node =
            &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        for p in path {
            node = &node["properties"][p];
        }
        node[bound].clone()
    }

    #[test]
    fn every_value_the_crd_accepts_at_its_bounds_renders() {
        let int = |path: &[&str], bound| crd_bound(path, bound).as_f64().unwrap() as i64;
        let float = |path: &[&str], bound| crd_bound(path, bound).as_f64().unwrap();
        let len = |path: &[&str]| crd_bound(path, "maxLength").as_u64().unwrap() as usize;
        type Edit<'a> = Box<dyn Fn(&mut PipelineDeployment) + 'a>;
        let edges: Vec<Edit> = vec![
            Box::new(|p| {
                p.spec.postgres.max_connections =
                    int(&["postgres", "maxConnections"], "minimum") as i32
            }),
            Box::new(|p| {
                p.spec.postgres.max_connections =
                    int(&["postgres", "maxConnections"], "maximum") as i32
            }),
            Box::new(|p| p.spec.postgres.schema = Some("s".repeat(len(&["postgres", "schema"])))),
            Box::new(|p| p.spec.kafka.topic = "t".repeat(len(&["kafka", "topic"]))),
            Box::new(|p| p.spec.kafka.topic = "...".into()),
            Box::new(|p| {
                p.spec.kafka.consumer_group = Some("g".repeat(len(&["kafka", "consumerGroup"])))
            }),
            Box::new(|p| {
                p.spec.workers.batch.max_records =
                    int(&["workers", "batch", "maxRecords"], "minimum") as i32
            }),
            Box::new(|p| {
                p.spec.workers.batch.max_wait_ms =
                    int(&["workers", "batch", "maxWaitMs"], "minimum") as i32
            }),
            Box::new(|p| {
                p.spec.workers.batch.max_wait_ms =
                    int(&["workers", "batch", "maxWaitMs"], "maximum") as i32
            }),
            Box::new(|p| {
                p.spec.quality.retention_days = int(&["quality", "retentionDays"], "minimum") as i32
            }),
            Box::new(|p| {
                p.spec.quality.retention_days = int(&["quality", "retentionDays"], "maximum") as i32
            }),
            Box::new(|p| {
                p.spec.quality.max_future_skew_seconds =
                    int(&["quality", "maxFutureSkewSeconds"], "minimum")
            }),
            Box::new(|p| {
                p.spec.quality.max_future_skew_seconds =
                    int(&["quality", "maxFutureSkewSeconds"], "maximum")
            }),
            Box::new(|p| {
                p.spec.quality.allowed_lateness_seconds =
                    int(&["quality", "allowedLatenessSeconds"], "minimum")
            }),
            Box::new(|p| {
                p.spec.quality.allowed_lateness_seconds =
                    int(&["quality", "allowedLatenessSeconds"], "maximum")
            }),
            Box::new(|p| p.spec.fraud.threshold = float(&["fraud", "threshold"], "minimum")),
            Box::new(|p| p.spec.fraud.threshold = float(&["fraud", "threshold"], "maximum")),
        ];
        for (i, edge) in edges.iter().enumerate() {
            let mut pd = pipeline(BASIC);
            edge(&mut pd);
            if let Err(e) = build_config_map(&pd) {
                panic!("edge {i}: the CRD accepts it, the worker would not: {e}");
            }
        }
    }

    #[test]
    fn crd_enums_are_values_the_worker_accepts() {
        let values = |path: &[&str]| -> Vec<String> {
            serde_json::from_value(crd_bound(path, "enum")).unwrap()
        };
        for p in values(&["kafka", "securityProtocol"]) {
            assert!(
                sluice_api::config::bounds::SECURITY_PROTOCOLS.contains(&p.as_str()),
                "{p}"
            );
        }
        for m in values(&["kafka", "sasl", "mechanism"]) {
            assert!(
                sluice_api::config::bounds::SASL_MECHANISMS.contains(&m.as_str()),
                "{m}"
            );
        }
    }

    #[test]
    fn crd_defaults_are_the_workers() {
        let w = WorkerConfig::default();
        let c = worker_config(&pipeline(BASIC));
        assert_eq!(c.batch, w.batch);
        assert_eq!(c.validation, w.validation);
        assert_eq!(c.analytics, w.analytics);
        assert_eq!(c.retention, w.retention);
        assert_eq!(c.fraud, w.fraud);
        // The schema alone differs: without spec.postgres.schema a pipeline has its own.
        assert_eq!(c.postgres.schema, "sluice_ns_payments");
        assert_eq!(
            PostgresConfig {
                schema: w.postgres.schema.clone(),
                ..c.postgres.clone()
            },
            w.postgres
        );
        assert_eq!(c.kafka.security_protocol, w.kafka.security_protocol);
        assert_eq!(c.kafka.sasl_mechanism, w.kafka.sasl_mechanism);
    }
}
