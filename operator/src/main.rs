//! `sluice-operator`: serves /metrics, /healthz and the pipelines' sizing, wins the leader Lease, then runs the
//! PipelineDeployment controller until SIGTERM/SIGINT or until leadership is lost (then it
//! exits non-zero so the pod restarts and campaigns again: never two leaders at once).
//!
//! `sluice-operator self-test` instead checks an installation through the API server and exits
//! (the Helm chart's `helm test` hook; see `self_test`).

mod self_test;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client};
use sluice_operator::controller::{self, Context};
use sluice_operator::crd::PipelineDeployment;
use sluice_operator::external_metrics::{self, PipelineStatusSource, TlsSettings};
use sluice_operator::leader;
use sluice_operator::metrics::{self, Metrics};
use tracing::{info, warn};

#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "SLUICE_WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Address of /metrics, /healthz and the sizing endpoint (/api/v1/sizing/{namespace}/{name}).
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
    /// Serve the external metrics API (external.metrics.k8s.io/v1beta1, TLS) on this address
    /// for the HPAs of autoscaled pipelines. Every replica serves it, leader or not.
    #[arg(long, env = "SLUICE_EXTERNAL_METRICS_ADDR")]
    external_metrics_addr: Option<SocketAddr>,
    /// Directory with tls.crt and tls.key for that API (default: a self-signed certificate
    /// made at start).
    #[arg(long, env = "SLUICE_EXTERNAL_METRICS_CERT_DIR")]
    external_metrics_cert_dir: Option<std::path::PathBuf>,
    /// CA file that client certificates must chain to (default: the front-proxy CA in
    /// kube-system/extension-apiserver-authentication, as every aggregated API server reads it).
    #[arg(long, env = "SLUICE_EXTERNAL_METRICS_CLIENT_CA")]
    external_metrics_client_ca: Option<std::path::PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Check an installation (CRD Established, leader Lease held and fresh, external metrics
    /// APIService Available) through the API server, then exit: 0 when all pass.
    SelfTest(self_test::SelfTestArgs),
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
    if let Some(Cmd::SelfTest(test)) = &args.command {
        return self_test::run(client, test).await;
    }
    let metrics = Arc::new(Metrics::default());
    // The pipelines as a watch sees them: their status is what both the sizing endpoint (on
    // the metrics address, for KEDA) and the external metrics API (for the HPA) serve. Every
    // replica watches, leader or not.
    let (store, writer) = reflector::store();
    let api: Api<PipelineDeployment> = match &args.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let watch = reflector(writer, watcher(api, watcher::Config::default()))
        .default_backoff()
        .touched_objects()
        .for_each(|_| std::future::ready(()));
    tokio::spawn(watch);
    let addr = args.metrics_addr;
    let (m, s) = (metrics.clone(), store.clone());
    tokio::spawn(async move {
        if let Err(e) = metrics::serve(addr, m, s).await {
            warn!(error = %e, "metrics server stopped");
        }
    });
    if let Some(addr) = args.external_metrics_addr {
        let tls = external_metrics_tls(&client, &args).await?;
        let source = Arc::new(PipelineStatusSource { store });
        tokio::spawn(async move {
            if let Err(e) = external_metrics::serve(addr, tls, source).await {
                warn!(error = %e, "external metrics server stopped");
            }
        });
    }
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

/// The external metrics server's TLS: its certificate, and the CA its clients (the apiserver's
/// front proxy) must present a certificate from.
async fn external_metrics_tls(
    client: &Client,
    args: &Args,
) -> anyhow::Result<rustls::ServerConfig> {
    let cert_and_key = match &args.external_metrics_cert_dir {
        Some(dir) => Some((
            std::fs::read(dir.join("tls.crt")).context("tls.crt")?,
            std::fs::read(dir.join("tls.key")).context("tls.key")?,
        )),
        None => None,
    };
    let client_ca_pem = match &args.external_metrics_client_ca {
        Some(f) => std::fs::read(f).with_context(|| format!("reading {}", f.display()))?,
        None => {
            let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-system");
            let cm = cms
                .get("extension-apiserver-authentication")
                .await
                .context(
                    "reading kube-system/extension-apiserver-authentication for the front-proxy CA \
                 (RoleBinding to extension-apiserver-authentication-reader missing?)",
                )?;
            cm.data
                .and_then(|d| d.get("requestheader-client-ca-file").cloned())
                .context("no requestheader-client-ca-file: the apiserver runs without --requestheader-client-ca-file")?
                .into_bytes()
        }
    };
    let ns = std::env::var("POD_NAMESPACE").unwrap_or_else(|_| "sluice-system".into());
    let service = "sluice-operator-external-metrics";
    external_metrics::tls_config(&TlsSettings {
        cert_and_key,
        dns_names: vec![
            format!("{service}.{ns}.svc"),
            format!("{service}.{ns}.svc.cluster.local"),
        ],
        client_ca_pem: Some(client_ca_pem),
    })
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
