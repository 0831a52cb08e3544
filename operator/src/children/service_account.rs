//! The workers' ServiceAccount: an identity of their own (not the namespace `default`), with
//! no API token mounted, since the worker never calls the Kubernetes API.

use k8s_openapi::api::core::v1::ServiceAccount;

use super::{Names, meta};
use crate::crd::PipelineDeployment;

pub fn build_service_account(pd: &PipelineDeployment) -> ServiceAccount {
    ServiceAccount {
        metadata: meta(pd, &Names::of(pd).worker, "worker"),
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    }
}
