//! Reconcile failures, each naming the step and the child that failed.

use std::fmt;

/// What was being done to a child when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The server-side apply (or, for the worker Deployment, the autoscaling floor's patch).
    Apply,
    /// Reading the stored child back for its status.
    Read,
    /// Looking up or deleting a child that is no longer wanted.
    Prune,
}

impl Step {
    /// Prefix of the metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Apply => "apply",
            Self::Read => "read",
            Self::Prune => "prune",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Apply => "apply",
            Self::Read => "read",
            Self::Prune => "delete",
        })
    }
}

/// A reconcile failure, naming the step that failed; `kind()` is the metric label.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A step on one child. `kind` is a kind name fixed in the code (`Desired` / `Unwanted`),
    /// never one read from the cluster, so the labels stay a bounded set.
    #[error("failed to {step} {kind} {name}: {source}")]
    Child {
        kind: &'static str,
        name: String,
        step: Step,
        source: kube::Error,
    },
    #[error("failed to patch status: {0}")]
    Status(#[source] kube::Error),
    /// Patching the pipeline's own metadata: its finalizer or the created-topics annotation.
    #[error("failed to patch the pipeline's metadata: {0}")]
    Finalizer(#[source] kube::Error),
    /// Listing the namespace's pipelines (to find one sharing this one's schema).
    #[error("failed to list pipelines: {0}")]
    ListPipelines(#[source] kube::Error),
    #[error("object has no namespace")]
    NoNamespace,
}

impl Error {
    /// The `error` label of the failure metric: `<step>_<kind>` for a child (`apply_deployment`,
    /// `read_cluster`, `prune_servicemonitor`, …), else `status` or `invalid_object`. (Topic
    /// failures do not fail the reconcile; they are counted as `topic` where they happen.)
    pub fn kind(&self) -> String {
        match self {
            Self::Child { kind, step, .. } => {
                format!("{}_{}", step.label(), kind.to_ascii_lowercase())
            }
            Self::Status(_) => "status".into(),
            Self::Finalizer(_) => "metadata".into(),
            Self::ListPipelines(_) => "list_pipelines".into(),
            Self::NoNamespace => "invalid_object".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_labels_name_the_step_and_the_child() {
        let source = || kube::Error::SerdeError(serde_json::from_str::<()>("x").unwrap_err());
        let child = |step, kind: &'static str| Error::Child {
            kind,
            name: "n".into(),
            step,
            source: source(),
        };
        assert_eq!(child(Step::Apply, "Deployment").kind(), "apply_deployment");
        assert_eq!(child(Step::Read, "Cluster").kind(), "read_cluster");
        assert_eq!(
            child(Step::Prune, "ServiceMonitor").kind(),
            "prune_servicemonitor"
        );
        assert_eq!(
            child(Step::Apply, "PodDisruptionBudget").kind(),
            "apply_poddisruptionbudget"
        );
        assert_eq!(Error::Status(source()).kind(), "status");
        assert_eq!(Error::NoNamespace.kind(), "invalid_object");
        assert!(
            child(Step::Prune, "ConfigMap")
                .to_string()
                .starts_with("failed to delete ConfigMap n: ")
        );
    }
}
