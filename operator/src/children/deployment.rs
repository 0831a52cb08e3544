//! The worker Deployment: the pods that consume the topic and write to Postgres. It carries the
//! restricted Pod Security profile, gets credentials only through Secret references, and its
//! pod template holds the config hash so a config change rolls the workers.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, HTTPGetAction, ObjectFieldSelector, PodSecurityContext, PodSpec, PodTemplateSpec,
    Probe, ResourceRequirements, SeccompProfile, SecretKeySelector, SecurityContext, Volume,
    VolumeMount,
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
    let mut template_labels = labels(pd, "worker");
    template_labels.remove("app.kubernetes.io/managed-by");
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
        volume_mounts: Some(vec![
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
        ]),
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
                    annotations: Some(BTreeMap::from([
                        (CONFIG_HASH_ANNOTATION.into(), config_hash.into()),
                        (
                            "kubectl.kubernetes.io/default-container".into(),
                            "worker".into(),
                        ),
                    ])),
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
                    containers: vec![container],
                    volumes: Some(vec![
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
                    ]),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        },
        status: None,
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
                "postgresql://$(DATABASE_USER):$(DATABASE_PASSWORD)@{db}-ro:5432/app"
            )),
            ..EnvVar::default()
        });
    }
    if let Some(sasl) = &s.kafka.sasl {
        env.push(secret_env("SLUICE_KAFKA_SASL_USERNAME", &sasl.username));
        env.push(secret_env("SLUICE_KAFKA_SASL_PASSWORD", &sasl.password));
    }
    env
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
mod tests {
    use super::*;
    use crate::children::testing::{BASIC, pipeline};

    #[test]
    fn replicas_follow_min_without_autoscaling_and_are_left_out_with_it() {
        let mut pd = pipeline(BASIC);
        assert_eq!(build_deployment(&pd, "h").spec.replicas, Some(2));
        pd.spec.autoscaling = Some(serde_json::from_str(r#"{"enabled": true}"#).unwrap());
        let d = serde_json::to_value(build_deployment(&pd, "h")).unwrap();
        assert!(
            d["spec"].get("replicas").is_none(),
            "replicas must be absent from the applied object"
        );
    }

    #[test]
    fn pod_is_restricted_and_gets_secrets_by_reference() {
        let d = serde_json::to_value(build_deployment(&pipeline(BASIC), "abc")).unwrap();
        let pod = &d["spec"]["template"]["spec"];
        let c = &pod["containers"][0];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
        assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
        assert_eq!(
            c["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
        assert!(c["resources"]["limits"]["memory"].is_string());
        let db = c["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "DATABASE_URL")
            .unwrap();
        assert_eq!(db["valueFrom"]["secretKeyRef"]["name"], "db");
        assert_eq!(
            d["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION],
            "abc"
        );
        assert_eq!(c["args"][1], "/etc/sluice/config.yaml");
    }
}
