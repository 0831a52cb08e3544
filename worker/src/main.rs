use anyhow::Result;
use clap::Parser;
use std::path::PathBuf;

const SETTINGS: &str = "\
SETTINGS (YAML file keys; each also settable as SLUICE_<SECTION>__<KEY>, e.g. SLUICE_KAFKA__TOPIC)
  pipeline                         name used as the `pipeline` metric label       [default]
  kafka.bootstrap_servers          comma-separated broker list                     [127.0.0.1:9092]
  kafka.topic                      input topic of transactions                     [transactions]
  kafka.group_id                   consumer group shared by the pipeline's workers [sluice]
  kafka.dlq_topic                  rejected records; empty = <topic>.dlq
  kafka.alerts_topic               fraud alerts; empty = <topic>.alerts
  kafka.security_protocol          PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL     [PLAINTEXT]
  kafka.sasl_mechanism             PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512           [PLAIN]
  kafka.session_timeout_ms         how long a dead worker keeps its partitions     [10000]
  kafka.fetch_wait_max_ms          broker fetch wait; bounds latency at low rates  [10]
  postgres.schema                  schema of the pipeline's tables                 [sluice]
  postgres.max_connections         pool size (>= 2)                                [4]
  postgres.retry_initial_ms        first retry delay after a DB error (doubles)    [100]
  postgres.retry_max_ms            longest retry delay                             [5000]
  batch.max_records                write a batch at this many records...           [5000]
  batch.max_wait_ms                ...or when its first record waited this long    [20]
  validation.max_future_skew_secs  event times further ahead are rejected          [300]
  retention.days                   daily partitions kept; older events rejected    [30]
  retention.days_ahead             daily partitions created ahead                  [3]
  retention.maintenance_interval_secs  partition upkeep period                     [3600]
  http.listen                      address of /metrics /healthz /readyz /api/v1/*  [0.0.0.0:9090]
  analytics.allowed_lateness_secs  later events are stored but not summarised     [600]
  fraud.enabled | fraud.threshold | fraud.disabled_rules   fraud scoring switches

SECRETS (environment only, normally from Kubernetes Secrets; never logged)
  DATABASE_URL                     Postgres primary, e.g. postgres://user:pass@host:5432/db
  DATABASE_READ_URL                read endpoint (replica) for /api/v1 analytics  [DATABASE_URL]
  SLUICE_KAFKA_SASL_USERNAME / SLUICE_KAFKA_SASL_PASSWORD   Kafka SASL credentials

LOGGING
  RUST_LOG                         tracing filter, e.g. info,sluice_worker=debug [info]";

/// Consume transactions from Kafka, validate and score them, and land them in Postgres
/// exactly once (rows and consumed offsets commit in one transaction).
#[derive(Parser)]
#[command(name = "sluice-worker", version, after_long_help = SETTINGS, after_help = "See --help for every setting.")]
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
