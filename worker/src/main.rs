use anyhow::Result;
use clap::Parser;
use std::path::PathBuf;

/// What `--help` prints after the options: the settings (from `sluice_api`, defaults
/// included) and what comes from the environment only.
fn settings_help() -> String {
    format!("{}\n{ENVIRONMENT}", sluice_api::settings_help())
}

const ENVIRONMENT: &str = "\
SECRETS (environment only, normally from Kubernetes Secrets; never logged)
  DATABASE_URL                     Postgres primary, e.g. postgres://user:pass@host:5432/db
  DATABASE_READ_URL                read endpoint (replica) for /api/v1 analytics  [DATABASE_URL]
  SLUICE_KAFKA_SASL_USERNAME / SLUICE_KAFKA_SASL_PASSWORD   Kafka SASL credentials

LOGGING
  RUST_LOG                         tracing filter, e.g. info,sluice_worker=debug [info]";

/// Consume transactions from Kafka, validate and score them, and land them in Postgres
/// exactly once (rows and consumed offsets commit in one transaction).
#[derive(Parser)]
#[command(name = "sluice-worker", version, after_long_help = settings_help(), after_help = "See --help for every setting.")]
struct Args {
    /// YAML configuration file (the operator mounts it at /etc/sluice/config.yaml).
    #[arg(long, env = "SLUICE_CONFIG")]
    config: Option<PathBuf>,
    /// Print the effective configuration (file + environment, no secrets) and exit.
    #[arg(long)]
    print_config: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .json()
        .with_current_span(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let config = sluice_worker::config::load(args.config.as_deref())?;
    if args.print_config {
        print!("{}", serde_yaml::to_string(&config)?);
        return Ok(());
    }
    let secrets = sluice_worker::config::Secrets::from_env()?;
    tracing::info!(pipeline = %config.pipeline, topic = %config.kafka.topic, group = %config.kafka.group_id, "starting sluice-worker");
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(sluice_worker::run(config, secrets, args.config))
}
