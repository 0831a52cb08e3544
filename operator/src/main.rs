//! `sluice-operator`: serves /metrics and /healthz, wins the leader Lease, then runs the
//! PipelineDeployment controller until SIGTERM/SIGINT or until leadership is lost (then it
//! exits non-zero so the pod restarts and campaigns again: never two leaders at once).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use kube::Client;
use sluice_operator::controller::{self, Context};
use sluice_operator::leader;
use sluice_operator::metrics::{self, Metrics};
use tracing::{info, warn};

#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "SLUICE_WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Address of /metrics and /healthz.
    #[arg(long, env = "SLUICE_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Turn leader election off (only for a single replica, e.g. local development).
    #[arg(long, env = "SLUICE_NO_LEADER_ELECTION")]
    no_leader_election: bool,
    /// Name of the leader Lease.
    #[arg(long, default_value = "sluice-operator")]
    lease_name: String,
    /// Namespace of the leader Lease (default: the pod's namespace, else the watched one, else `default`).
    #[arg(long, env = "POD_NAMESPACE")]
    lease_namespace: Option<String>,
    /// Seconds a leader keeps the Lease without renewing it.
    #[arg(long, default_value_t = 15)]
    lease_duration: u64,
    /// This replica's identity in the Lease (default: pod name, else host name + pid).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube=warn".into()),
        )
        .init();
    let args = Args::parse();
    let client = Client::try_default()
        .await
        .context("kubernetes client (KUBECONFIG or in-cluster config)")?;
    let metrics = Arc::new(Metrics::default());
    let addr = args.metrics_addr;
    let m = metrics.clone();
    tokio::spawn(async move {
        if let Err(e) = metrics::serve(addr, m).await {
            warn!(error = %e, "metrics server stopped");
        }
    });
    let identity = args.identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
    let ctx = Arc::new(Context::new(
        client.clone(),
        metrics.clone(),
        Some(identity.clone()),
    ));

    if args.no_leader_election {
        metrics.leader.set(1);
        controller::run(ctx, args.namespace, shutdown_signal()).await;
        return Ok(());
    }
    let lease_ns = args
        .lease_namespace
        .clone()
        .or(args.namespace.clone())
        .unwrap_or_else(|| "default".into());
    let mut election = leader::campaign(
        client,
        &lease_ns,
        &args.lease_name,
        &identity,
        args.lease_duration,
    )
    .await?;
    // A standby is healthy: it is ready to take over.
    metrics
        .healthy
        .store(true, std::sync::atomic::Ordering::Relaxed);
    info!(%identity, lease = %args.lease_name, namespace = %lease_ns, "waiting for leadership");
    tokio::select! {
        res = election.is_leader.wait_for(|l| *l) => { res.context("lease manager stopped")?; }
        _ = shutdown_signal() => return Ok(()),
    }
    info!(%identity, "became leader");
    metrics.leader.set(1);
    let mut lost = election.is_leader.clone();
    let lost_leadership = async move {
        let _ = lost.wait_for(|l| !*l).await;
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<bool>();
    let stop = async move {
        let lost = tokio::select! {
            _ = lost_leadership => true,
            _ = shutdown_signal() => false,
        };
        let _ = stop_tx.send(lost);
    };
    controller::run(ctx, args.namespace, stop).await;
    metrics.leader.set(0);
    let lost = stop_rx.await.unwrap_or(false);
    drop(election.is_leader);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), election.task).await;
    if lost {
        anyhow::bail!("lost leadership; exiting so a fresh process campaigns again");
    }
    info!("shut down, lease released");
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
