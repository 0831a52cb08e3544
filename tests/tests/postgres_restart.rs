//! Postgres restarted (fast shutdown) and crashed (SIGKILL) mid-stream: the worker retries
//! with backoff and nothing is lost or repeated. Runs on a Postgres cluster of its own.

use sluice_e2e::{OwnPostgres, Pipeline, Services, hack};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_survives_postgres_restarts() -> anyhow::Result<()> {
    let cluster = OwnPostgres::start("e2e-restart")?;
    let name = cluster.name.clone();
    let p = Pipeline::on(
        "pg_restart",
        4,
        &Services::from_env().brokers,
        &cluster.admin_url,
    )
    .await?;

    let producer = {
        let (p2, spec) = (p.clone(), p.load(60_000, 3_000, 3));
        tokio::spawn(async move { p2.produce(spec).await })
    };
    let w = p.worker().spawn()?;
    tokio::time::sleep(Duration::from_secs(4)).await;
    p.pool.close().await;
    hack("postgres.sh", &["restart", &name])?;
    tokio::time::sleep(Duration::from_secs(4)).await;
    hack("postgres.sh", &["kill9", &name])?;
    // Down for longer than the worker's pool acquire timeout (10 s), so a batch write surely
    // fails and is retried: a shorter outage can fall between two batches and be absorbed by
    // the pool's own reconnect, which made this test flaky. Meanwhile the records the worker
    // holds age, and its time lag (refreshed every 5 s) shows it.
    let outage = tokio::time::Instant::now() + Duration::from_secs(12);
    let mut worst_time_lag = 0.0f64;
    while tokio::time::Instant::now() < outage {
        if let Ok(m) = w.metrics().await {
            worst_time_lag = m
                .lines()
                .filter(|l| l.starts_with("sluice_consumer_lag_seconds{"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .fold(worst_time_lag, f64::max);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    hack("postgres.sh", &["start", &name])?;
    assert!(
        worst_time_lag >= 2.0,
        "sluice_consumer_lag_seconds while Postgres was down: at most {worst_time_lag}"
    );

    let summary = producer.await??;
    let p = Pipeline {
        pool: sqlx::PgPool::connect(&p.database_url).await?,
        ..p
    };
    p.wait_handled(summary.produced as i64, Duration::from_secs(120))
        .await?;
    p.assert_exactly_once(&summary.valid_ids).await?;
    let metrics = w.metrics().await?;
    let retries = metrics
        .lines()
        .filter(|l| l.starts_with("sluice_db_errors_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>();
    assert!(
        retries > 0.0,
        "the worker saw and retried database errors:\n{metrics}"
    );
    drop(cluster);
    Ok(())
}
