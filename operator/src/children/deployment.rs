//! The worker Deployment: the pods that consume the topic and write to Postgres. It carries the
//! restricted Pod Security profile, gets credentials only through Secret references, and its
//! pod template holds the config hash so a config change rolls the workers.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, HTTPGetAction, KeyToPath, ObjectFieldSelector, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, ProjectedVolumeSource, ResourceRequirements, SeccompProfile,
    SecretKeySelector, SecretProjection, SecurityContext, TopologySpreadConstraint, Volume,
    VolumeMount, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::config_map::CONFIG_KEY;
use super::{CONFIG_HASH_ANNOTATION, METRICS_PORT, Names, labels, meta, selector_labels};
use crate::crd::{PipelineDeployment, SecretKeyRef};

/// Directory the config ConfigMap is mounted at.
pub const CONFIG_DIR: &str = "/etc/sluice";
/// Non-root uid/gid the workers run as (the distroless "nonroot" user).
const RUN_AS: i64 = 65532;

/// Builds the worker Deployment. `config_hash` comes from `build_config_map`.
pub fn build_deployment(pd: &PipelineDeployment, config_hash: &str) -> Deployment {
    let names = Names::of(pd);
    let w = &pd.spec.workers;
    // spec.workers.podLabels / podAnnotations first, so the operator's own win on a clash
    // (the CRD refuses the clashing keys anyway).
    let mut template_labels = w.pod_labels.clone();
    template_labels.extend(labels(pd, "worker"));
    template_labels.remove("app.kubernetes.io/managed-by");
    let mut template_annotations = w.pod_annotations.clone();
    template_annotations.extend([
        (CONFIG_HASH_ANNOTATION.to_string(), config_hash.to_string()),
        (
            "kubectl.kubernetes.io/default-container".into(),
            "worker".into(),
        ),
    ]);
    let container = Container {
        name: "worker".into(),
        image: Some(w.image.clone()),
        image_pull_policy: w.image_pull_policy.map(|p| format!("{p:?}")),
        args: Some(vec![
            "--config".into(),
            format!("{CONFIG_DIR}/{CONFIG_KEY}"),
        ]),
        env: Some(env(pd)),
        ports: Some(vec![ContainerPort {
            name: Some("metrics".into()),
            container_port: METRICS_PORT,
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        resources: Some(w.resources.clone().unwrap_or_else(default_resources)),
        readiness_probe: Some(http_probe("/readyz", 5)),
        liveness_probe: Some(http_probe("/healthz", 10)),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Capabilities::default()
            }),
            seccomp_profile: Some(runtime_default()),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(
            [
                VolumeMount {
                    name: "config".into(),
                    mount_path: CONFIG_DIR.into(),
                    read_only: Some(true),
                    ..VolumeMount::default()
                },
                VolumeMount {
                    name: "tmp".into(),
                    mount_path: "/tmp".into(),
                    ..VolumeMount::default()
                },
            ]
            .into_iter()
            .chain(kafka_tls(pd).map(|(mount, _)| mount))
            .collect(),
        ),
        ..Container::default()
    };
    Deployment {
        metadata: meta(pd, &names.worker, "worker"),
        spec: DeploymentSpec {
            // Under autoscaling the HPA owns spec.replicas: leaving it out of the apply means
            // the operator never fights the autoscaler for the field.
            replicas: if pd.autoscaled() {
                None
            } else {
                Some(w.min_replicas)
            },
            selector: LabelSelector {
                match_labels: Some(selector_labels(pd)),
                ..LabelSelector::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(1)),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(template_labels),
                    annotations: Some(template_annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(names.worker.clone()),
                    // The worker never talks to the Kubernetes API.
                    automount_service_account_token: Some(false),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(RUN_AS),
                        run_as_group: Some(RUN_AS),
                        fs_group: Some(RUN_AS),
                        seccomp_profile: Some(runtime_default()),
                        ..PodSecurityContext::default()
                    }),
                    termination_grace_period_seconds: Some(30),
                    image_pull_secrets: (!w.image_pull_secrets.is_empty())
                        .then(|| w.image_pull_secrets.clone()),
                    node_selector: (!w.node_selector.is_empty()).then(|| w.node_selector.clone()),
                    tolerations: (!w.tolerations.is_empty()).then(|| w.tolerations.clone()),
                    affinity: w.affinity.clone(),
                    topology_spread_constraints: topology_spread(pd),
                    priority_class_name: w.priority_class_name.clone(),
                    containers: vec![container],
                    volumes: Some(
                        [
                            Volume {
                                name: "config".into(),
                                config_map: Some(ConfigMapVolumeSource {
                                    name: names.config.clone(),
                                    ..ConfigMapVolumeSource::default()
                                }),
                                ..Volume::default()
                            },
                            Volume {
                                name: "tmp".into(),
                                empty_dir: Some(EmptyDirVolumeSource {
                                    size_limit: Some(Quantity("64Mi".into())),
                                    ..EmptyDirVolumeSource::default()
                                }),
                                ..Volume::default()
                            },
                        ]
                        .into_iter()
                        .chain(kafka_tls(pd).map(|(_, volume)| volume))
                        .collect(),
                    ),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        },
        status: None,
    }
}

/// `spec.workers.topologySpreadConstraints`, or when unset one soft constraint spreading this
/// pipeline's workers across nodes: losing a node then loses as few workers as possible, and
/// a cluster with fewer nodes than workers still schedules them all. `pod-template-hash` makes
/// the spread count only the current ReplicaSet's pods during a rollout.
fn topology_spread(pd: &PipelineDeployment) -> Option<Vec<TopologySpreadConstraint>> {
    match &pd.spec.workers.topology_spread_constraints {
        Some(list) if list.is_empty() => None,
        Some(list) => Some(list.clone()),
        None => Some(vec![TopologySpreadConstraint {
            max_skew: 1,
            topology_key: "kubernetes.io/hostname".into(),
            when_unsatisfiable: "ScheduleAnyway".into(),
            label_selector: Some(LabelSelector {
                match_labels: Some(selector_labels(pd)),
                ..LabelSelector::default()
            }),
            match_label_keys: Some(vec!["pod-template-hash".into()]),
            ..TopologySpreadConstraint::default()
        }]),
    }
}

/// Environment of the worker: log filter, pod name, and every credential as a Secret reference.
fn env(pd: &PipelineDeployment) -> Vec<EnvVar> {
    let s = &pd.spec;
    let mut env = vec![
        EnvVar {
            name: "RUST_LOG".into(),
            value: Some(s.workers.log_level.clone()),
            ..EnvVar::default()
        },
        EnvVar {
            name: "POD_NAME".into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.name".into(),
                    ..ObjectFieldSelector::default()
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        },
    ];
    if let Some(ext) = &s.postgres.external {
        env.push(secret_env("DATABASE_URL", &ext.primary_url));
        env.push(secret_env(
            "DATABASE_READ_URL",
            ext.read_url.as_ref().unwrap_or(&ext.primary_url),
        ));
    } else if s.postgres.cloudnativepg.is_some() {
        // CloudNativePG keeps the app user's credentials in `<cluster>-app`; its `uri` points
        // at the `-rw` service. The read URL is composed for the `-ro` service with the
        // same credentials through Kubernetes' $(VAR) expansion.
        let db = Names::of(pd).database;
        let app = format!("{db}-app");
        let key = |k: &str| SecretKeyRef {
            name: app.clone(),
            key: k.into(),
        };
        env.push(secret_env("DATABASE_URL", &key("uri")));
        env.push(secret_env("DATABASE_USER", &key("username")));
        env.push(secret_env("DATABASE_PASSWORD", &key("password")));
        env.push(EnvVar {
            name: "DATABASE_READ_URL".into(),
            value: Some(format!(
                "postgresql://$(DATABASE_USER):$(DATABASE_PASSWORD)@{}:5432/app",
                super::cnpg::read_service(pd)
            )),
            ..EnvVar::default()
        });
    }
    if let Some(sasl) = &s.kafka.sasl {
        env.push(secret_env("SLUICE_KAFKA_SASL_USERNAME", &sasl.username));
        env.push(secret_env("SLUICE_KAFKA_SASL_PASSWORD", &sasl.password));
    }
    // The mounted TLS files (kafka_tls); paths only, the PEMs stay in the Secrets.
    for (name, file, r) in kafka_tls_files(pd) {
        if r.is_some() {
            env.push(EnvVar {
                name: name.into(),
                value: Some(format!("{KAFKA_TLS_DIR}/{file}")),
                ..EnvVar::default()
            });
        }
    }
    env
}

/// Where the worker finds the Kafka TLS files.
const KAFKA_TLS_DIR: &str = "/etc/sluice/kafka-tls";

/// The worker setting, file name and Secret key of each TLS file `spec.kafka.tls` asks for.
fn kafka_tls_files(
    pd: &PipelineDeployment,
) -> [(&'static str, &'static str, Option<&SecretKeyRef>); 3] {
    let tls = pd.spec.kafka.tls.as_ref();
    [
        (
            "SLUICE_KAFKA__SSL_CA_LOCATION",
            "ca.crt",
            tls.and_then(|t| t.ca.as_ref()),
        ),
        (
            "SLUICE_KAFKA__SSL_CERTIFICATE_LOCATION",
            "tls.crt",
            tls.and_then(|t| t.client_certificate.as_ref()),
        ),
        (
            "SLUICE_KAFKA__SSL_KEY_LOCATION",
            "tls.key",
            tls.and_then(|t| t.client_key.as_ref()),
        ),
    ]
}

/// The Kafka TLS files as one read-only projected volume of the referenced Secret keys
/// (readable by the worker's group through `fsGroup`), when `spec.kafka.tls` names any.
fn kafka_tls(pd: &PipelineDeployment) -> Option<(VolumeMount, Volume)> {
    let sources: Vec<VolumeProjection> = kafka_tls_files(pd)
        .into_iter()
        .filter_map(|(_, file, r)| {
            let r = r?;
            Some(VolumeProjection {
                secret: Some(SecretProjection {
                    name: r.name.clone(),
                    items: Some(vec![KeyToPath {
                        key: r.key.clone(),
                        path: file.into(),
                        ..KeyToPath::default()
                    }]),
                    ..SecretProjection::default()
                }),
                ..VolumeProjection::default()
            })
        })
        .collect();
    if sources.is_empty() {
        return None;
    }
    Some((
        VolumeMount {
            name: "kafka-tls".into(),
            mount_path: KAFKA_TLS_DIR.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        },
        Volume {
            name: "kafka-tls".into(),
            projected: Some(ProjectedVolumeSource {
                default_mode: Some(0o440),
                sources: Some(sources),
                ..ProjectedVolumeSource::default()
            }),
            ..Volume::default()
        },
    ))
}

fn secret_env(name: &str, r: &SecretKeyRef) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: r.name.clone(),
                key: r.key.clone(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn http_probe(path: &str, period: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("metrics".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(3),
        ..Probe::default()
    }
}

fn runtime_default() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".into(),
        ..SeccompProfile::default()
    }
}

/// Requests and limits used when the spec sets none: a pod without limits is not admitted by
/// namespaces with a LimitRange/ResourceQuota and hides its real cost.
pub fn default_resources() -> ResourceRequirements {
    let q = |cpu: &str, mem: &str| {
        BTreeMap::from([
            ("cpu".into(), Quantity(cpu.into())),
            ("memory".into(), Quantity(mem.into())),
        ])
    };
    ResourceRequirements {
        requests: Some(q("250m", "256Mi")),
        limits: Some(q("1", "512Mi")),
        ..ResourceRequirements::default()
    }
}

#[cfg(test)]
mod tests;
