//! The metrics Service: a stable name for Prometheus (ServiceMonitor) to find the workers'
//! /metrics endpoints. Headless, since nothing load-balances to it.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{METRICS_PORT, Names, meta, selector_labels};
use crate::crd::PipelineDeployment;

pub fn build_service(pd: &PipelineDeployment) -> Service {
    Service {
        metadata: meta(pd, &Names::of(pd).metrics, "metrics"),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            selector: Some(selector_labels(pd)),
            ports: Some(vec![ServicePort {
                name: Some("metrics".into()),
                port: METRICS_PORT,
                target_port: Some(IntOrString::String("metrics".into())),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}
