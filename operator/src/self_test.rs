//! `sluice-operator self-test`: checks through the API server that an installation works, for
//! the Helm chart's `helm test` hook (it needs no cluster DNS and no Service routing, only the
//! API server):
//!
//! - the PipelineDeployment CRD is `Established`;
//! - the leader Lease is held and fresh (renewed within its duration), so one replica is
//!   reconciling;
//! - (with `--external-metrics`) the APIService `v1beta1.external.metrics.k8s.io` is
//!   `Available`, i.e. the API server reaches the operator's external metrics server.
//!
//! Each check is retried until `--timeout` (a freshly installed operator may still be
//! campaigning); then the ones still failing are printed and the exit code is non-zero.

use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::jiff::Timestamp;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use kube::{Api, Client};

/// Arguments of `sluice-operator self-test`.
#[derive(Args, Debug, Clone)]
pub struct SelfTestArgs {
    /// Name of the CRD that must be Established.
    #[arg(long, default_value = "pipelinedeployments.sluice.dev")]
    pub crd: String,
    /// Namespace of the leader Lease (default: the pod's namespace).
    #[arg(long, env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// Name of the leader Lease.
    #[arg(long, default_value = "sluice-operator")]
    pub lease_name: String,
    /// Skip the Lease check (leader election turned off).
    #[arg(long)]
    pub no_lease: bool,
    /// Also require the external metrics APIService to be Available.
    #[arg(long)]
    pub external_metrics: bool,
    /// Name of that APIService.
    #[arg(long, default_value = "v1beta1.external.metrics.k8s.io")]
    pub api_service: String,
    /// Seconds to keep retrying before reporting failure.
    #[arg(long, default_value_t = 90)]
    pub timeout: u64,
}

/// Runs the checks until all pass or the timeout; prints one line per check.
pub async fn run(client: Client, args: &SelfTestArgs) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout);
    loop {
        let results = check_all(&client, args).await;
        let failed = results.iter().filter(|(_, r)| r.is_err()).count();
        if failed == 0 || tokio::time::Instant::now() >= deadline {
            for (name, r) in &results {
                match r {
                    Ok(detail) => println!("ok    {name}: {detail}"),
                    Err(e) => println!("FAIL  {name}: {e:#}"),
                }
            }
            if failed > 0 {
                bail!(
                    "{failed} of {} checks failed after {}s",
                    results.len(),
                    args.timeout
                );
            }
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn check_all(
    client: &Client,
    args: &SelfTestArgs,
) -> Vec<(&'static str, anyhow::Result<String>)> {
    let mut results = vec![("crd", check_crd(client, &args.crd).await)];
    if !args.no_lease {
        let ns = args.lease_namespace.as_deref().unwrap_or("default");
        results.push(("lease", check_lease(client, ns, &args.lease_name).await));
    }
    if args.external_metrics {
        results.push((
            "external-metrics",
            check_api_service(client, &args.api_service).await,
        ));
    }
    results
}

/// A kube error as one short line: the API server's message for API errors (not the whole
/// Status object).
fn short(e: kube::Error) -> anyhow::Error {
    match e {
        kube::Error::Api(s) => anyhow::anyhow!("{} ({}, HTTP {})", s.message, s.reason, s.code),
        e => e.into(),
    }
}

async fn check_crd(client: &Client, name: &str) -> anyhow::Result<String> {
    let crd = Api::<CustomResourceDefinition>::all(client.clone())
        .get(name)
        .await
        .map_err(short)
        .with_context(|| format!("reading CustomResourceDefinition {name}"))?;
    let established = crd
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "Established");
    match established {
        Some(c) if c.status == "True" => Ok(format!("{name} Established")),
        Some(c) => bail!(
            "{name} not Established: {} {}",
            c.reason.unwrap_or_default(),
            c.message.unwrap_or_default()
        ),
        None => bail!("{name} has no Established condition yet"),
    }
}

async fn check_lease(client: &Client, ns: &str, name: &str) -> anyhow::Result<String> {
    let lease = Api::<Lease>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .map_err(short)
        .with_context(|| format!("reading Lease {ns}/{name} (is the operator running?)"))?;
    let spec = lease.spec.unwrap_or_default();
    let holder = spec
        .holder_identity
        .filter(|h| !h.is_empty())
        .with_context(|| format!("Lease {ns}/{name} is not held by any replica"))?;
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(0));
    let renewed = spec
        .renew_time
        .or(spec.acquire_time)
        .with_context(|| format!("Lease {ns}/{name} held by {holder} was never renewed"))?
        .0;
    let age = Timestamp::now().as_second() - renewed.as_second();
    if age > duration {
        bail!(
            "Lease {ns}/{name} held by {holder} is stale: renewed {age}s ago, duration {duration}s"
        );
    }
    Ok(format!(
        "Lease {ns}/{name} held by {holder}, renewed {age}s ago (duration {duration}s)"
    ))
}

async fn check_api_service(client: &Client, name: &str) -> anyhow::Result<String> {
    let svc = Api::<APIService>::all(client.clone())
        .get(name)
        .await
        .map_err(short)
        .with_context(|| format!("reading APIService {name}"))?;
    let available = svc
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "Available");
    match available {
        Some(c) if c.status == "True" => Ok(format!("APIService {name} Available")),
        Some(c) => bail!(
            "APIService {name} not Available: {} {}",
            c.reason.unwrap_or_default(),
            c.message.unwrap_or_default()
        ),
        None => bail!("APIService {name} has no Available condition yet"),
    }
}
