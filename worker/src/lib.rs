//! sluice-worker: consume → validate → score → batch → sink → summarise, exactly once into
//! Postgres. The modules, in the order the data flows:
//!
//! - [`consumer`]: Kafka, partition assignment, seeking to stored offsets, acks, fencing,
//!   shutdown;
//! - [`validate`]: contract rules per record; [`pan`] tells card numbers from identifiers
//!   and masks them;
//! - [`score`]: the scoring stage seam; [`fraud`] is the stage the worker runs;
//! - [`batcher`]: takes records into the open batch, hands it on, backpressure; [`batch`]
//!   is what it hands on;
//! - [`sink`]: a batch written as concurrent Postgres transactions over disjoint partitions
//!   (rows, rejections, checkpointed profiles, summaries, stored offsets) and the DLQ /
//!   alerts topics;
//! - [`summaries`]: lateness and the per-minute summaries a batch adds.
//!
//! Around them: [`config`] (load, validate, hot reload), [`db`] (pool, migrations,
//! partitions, stored offsets), [`kafka`] (client settings), [`metrics`],
//! [`batch_timing`] (where a batch's time goes), [`raw_chunks`] (payload copies kept for
//! a possible duplicate) and [`error_events`], [`http`] (probes, metrics and the [`analytics`] read API), and
//! [`copy`] (rows in COPY format) and [`tcp_nodelay`] (what lets the sink COPY).

// Stages, in data order (kept apart so rustfmt leaves the order alone).
pub mod consumer;

pub mod validate;

pub mod pan;

pub mod score;

pub mod fraud;

pub mod batcher;

pub mod batch;

pub mod sink;

pub mod summaries;

// Around the stages.
pub mod analytics;
pub mod batch_timing;
pub mod config;
pub mod copy;
pub mod db;
pub mod error_events;
pub mod http;
pub mod kafka;
pub mod metrics;
pub mod raw_chunks;
pub mod tcp_nodelay;

use anyhow::{Context as _, Result};
use sluice_api::WorkerConfig;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// Batches queued between the consumer and the sink: one being written, one waiting, so
/// Kafka decoding overlaps the Postgres round trip without unbounded buffering.
const SINK_QUEUE: usize = 1;

pub async fn run(
    config: WorkerConfig,
    secrets: config::Secrets,
    config_path: Option<std::path::PathBuf>,
) -> Result<()> {
    let metrics = Arc::new(metrics::Metrics::new(&config.pipeline));
    let pool = db::connect(
        &secrets.database_url,
        &config.postgres.schema,
        config.postgres.max_connections,
        config.postgres.synchronous_commit,
    )
    .await?;
    db::migrate(&pool, &config.postgres.schema).await?;
    db::maintain_partitions(
        &pool,
        chrono::Utc::now(),
        config.retention.days,
        config.retention.days_ahead,
    )
    .await?;
    kafka::ensure_output_topics(&config, &secrets).await?;

    let shutdown = Arc::new(AtomicBool::new(false));
    let heartbeat = Arc::new(AtomicU64::new(chrono::Utc::now().timestamp() as u64));
    let db_ok = Arc::new(AtomicBool::new(true));
    let inflight = Arc::new(AtomicUsize::new(0));

    if secrets.database_read_url.is_none() {
        tracing::warn!("DATABASE_READ_URL is not set: analytics reads go to the primary");
    }
    let reader = analytics::connect_reader(
        secrets
            .database_read_url
            .as_deref()
            .unwrap_or(&secrets.database_url),
        &config.postgres.schema,
    )?;
    let probes = http::Probes {
        metrics: metrics.clone(),
        heartbeat: heartbeat.clone(),
        db_ok: db_ok.clone(),
        reader,
    };
    let listen = config.http.listen.clone();
    tokio::spawn(async move {
        if let Err(e) = http::serve(&listen, probes).await {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });
    tokio::spawn(maintenance(pool.clone(), config.clone(), metrics.clone()));

    let (batch_tx, batch_rx) = tokio::sync::mpsc::channel(SINK_QUEUE);
    let (ack_tx, ack_rx) = std::sync::mpsc::channel();
    let sink = sink::Sink {
        pool: pool.clone(),
        producer: kafka::producer(&config, &secrets)?,
        group: config.kafka.group_id.clone(),
        topic: config.kafka.topic.clone(),
        dlq_topic: config.kafka.dlq_topic(),
        alerts_topic: config.kafka.alerts_topic(),
        metrics: metrics.clone(),
        retry_initial: Duration::from_millis(config.postgres.retry_initial_ms),
        retry_max: Duration::from_millis(config.postgres.retry_max_ms),
        lanes: config.postgres.effective_sink_lanes(),
        overlap: 2 * config.postgres.effective_sink_lanes()
            < config.postgres.max_connections as usize,
        inflight: inflight.clone(),
        db_ok,
        fast_claims: sink::FastClaims::default(),
    };
    if sink.lanes < config.postgres.sink_lanes as usize {
        tracing::warn!(
            lanes = sink.lanes,
            asked = config.postgres.sink_lanes,
            "postgres.sink_lanes is capped at postgres.max_connections - 1"
        );
    }
    tracing::info!(
        lanes = sink.lanes,
        overlap = sink.overlap,
        "sink writes each batch in this many transactions at once, and with overlap the next batch beside it"
    );
    let sink_task = tokio::spawn(sink.run(batch_rx, ack_tx));

    let consumer = consumer::ConsumerLoop::new(
        &config,
        kafka::consumer_config(&config, &secrets),
        consumer::ConsumerParts {
            pool,
            runtime: tokio::runtime::Handle::current(),
            metrics,
            scorer: Box::new(fraud::FraudStage::new(
                sluice_fraud::Model::default(),
                &config.fraud,
            )),
            inflight,
            batches: batch_tx,
            acks: ack_rx,
            shutdown: shutdown.clone(),
            heartbeat,
            config_path,
        },
    )?;
    let poll_thread = std::thread::Builder::new()
        .name("consumer".into())
        .spawn(move || consumer.run())?;

    wait_for_signal().await;
    tracing::info!("termination requested");
    shutdown.store(true, Ordering::Relaxed);
    tokio::task::spawn_blocking(move || poll_thread.join())
        .await?
        .ok()
        .context("consumer thread panicked")?;
    sink_task.await?;
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Keep daily partitions ahead of time and drop those past retention.
async fn maintenance(pool: sqlx::PgPool, config: WorkerConfig, metrics: Arc<metrics::Metrics>) {
    let mut tick = tokio::time::interval(Duration::from_secs(
        config.retention.maintenance_interval_secs.max(1),
    ));
    tick.tick().await; // the first run happened at start-up
    loop {
        tick.tick().await;
        if let Err(e) = db::maintain_partitions(
            &pool,
            chrono::Utc::now(),
            config.retention.days,
            config.retention.days_ahead,
        )
        .await
            && let Some(suppressed) = metrics.errors.occurred(error_events::ErrorKind::Database)
        {
            tracing::warn!(error = %e, suppressed, "partition maintenance failed; will retry");
        }
    }
}
