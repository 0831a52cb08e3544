//! Leader election on a `coordination.k8s.io` Lease (kube-lease-manager: server-side apply,
//! tolerant of clock skew), so two operator replicas never reconcile at once.

use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseParams};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A running election: `is_leader` flips as the lease is won or lost. Dropping the receiver
/// releases the lease.
pub struct Election {
    pub is_leader: watch::Receiver<bool>,
    pub task: JoinHandle<kube_lease_manager::Result<kube_lease_manager::LeaseManager>>,
}

pub async fn campaign(
    client: Client,
    namespace: &str,
    lease: &str,
    identity: &str,
    duration_secs: u64,
) -> anyhow::Result<Election> {
    let grace = (duration_secs / 3).max(1);
    let manager = LeaseManagerBuilder::new(client, lease)
        .with_namespace(namespace)
        .with_parameters(
            LeaseParams::new(identity, duration_secs, grace)
                .with_field_manager(format!("sluice-operator-lease-{identity}")),
        )
        .build()
        .await?;
    let (is_leader, task) = manager.watch().await;
    Ok(Election { is_leader, task })
}
