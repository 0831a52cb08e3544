//! The worker configuration ConfigMap: the pipeline spec rendered as a `sluice_api::WorkerConfig`
//! YAML file, mounted by the workers at /etc/sluice/config.yaml. Secrets never appear here.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use sha2::{Digest, Sha256};
use sluice_api::WorkerConfig;
use sluice_api::config::{
    AnalyticsConfig, BatchConfig, FraudConfig, KafkaConfig, PostgresConfig, RetentionConfig,
    ValidationConfig,
};

use super::{Names, meta};
use crate::crd::PipelineDeployment;

/// File name of the config inside the ConfigMap (and the mount directory).
pub const CONFIG_KEY: &str = "config.yaml";

/// The worker config for a pipeline.
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
            ..base.kafka
        },
        postgres: PostgresConfig {
            schema: s.postgres.schema.clone(),
            max_connections: s.postgres.max_connections.max(1) as u32,
            ..base.postgres
        },
        batch: BatchConfig {
            max_records: s.workers.batch.max_records.max(1) as usize,
            max_wait_ms: s.workers.batch.max_wait_ms.max(1) as u64,
        },
        validation: ValidationConfig {
            max_future_skew_secs: s.quality.max_future_skew_seconds,
        },
        retention: RetentionConfig {
            days: s.quality.retention_days.max(1) as u32,
            ..base.retention
        },
        http: base.http,
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

/// Builds the ConfigMap and returns it with the hash of its content (for the pod template).
pub fn build_config_map(pd: &PipelineDeployment) -> (ConfigMap, String) {
    let yaml = serde_yaml::to_string(&worker_config(pd)).expect("WorkerConfig serializes");
    let hash = format!("{:x}", Sha256::digest(yaml.as_bytes()));
    let cm = ConfigMap {
        metadata: meta(pd, &Names::of(pd).config, "config"),
        data: Some(BTreeMap::from([(CONFIG_KEY.to_string(), yaml)])),
        ..ConfigMap::default()
    };
    (cm, hash[..16].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::children::testing::{BASIC, pipeline};

    #[test]
    fn renders_a_config_the_worker_accepts() {
        let pd = pipeline(BASIC);
        let (cm, hash) = build_config_map(&pd);
        let yaml = &cm.data.unwrap()[CONFIG_KEY];
        let back: WorkerConfig = serde_yaml::from_str(yaml).unwrap();
        assert_eq!(back.kafka.topic, "payments");
        assert_eq!(back.kafka.group_id, "sluice-ns-payments");
        assert_eq!(back.pipeline, "payments");
        assert_eq!(hash.len(), 16);
    }

    #[test]
    fn hash_follows_the_config() {
        let a = pipeline(BASIC);
        let mut b = a.clone();
        b.spec.workers.batch.max_records = 7;
        assert_ne!(build_config_map(&a).1, build_config_map(&b).1);
        b.spec.workers.min_replicas = 3; // not part of the config
        b.spec.workers.batch.max_records = a.spec.workers.batch.max_records;
        assert_eq!(build_config_map(&a).1, build_config_map(&b).1);
    }
}
