//! Postgres restarted (fast shutdown) and crashed (SIGKILL) mid-stream: the worker retries
//! with backoff and nothing is lost or repeated. Runs on a Postgres cluster of its own.

use sluice_e2e::{OwnPostgres, Pipeline, Services, hack, metrics, wait_for};
use sqlx::{Connection, PgConnection};
use std::time::Duration;

/// Records handled (stored or rejected), on a connection of its own: the test holds none
/// open across the restarts.
async fn handled(database_url: &str) -> anyhow::Result<i64> {
    let mut c = PgConnection::connect(database_url).await?;
    Ok(sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM sluice.transactions) + (SELECT count(*) FROM sluice.rejected_transactions)",
    )
    .fetch_one(&mut c)
    .await?)
}

/// Wait until more than `than` records are handled: the worker writes (again).
async fn writing(database_url: &str, than: i64, after: &str) -> anyhow::Result<i64> {
    wait_for(
        &format!("the worker to store records {after}"),
        Duration::from_secs(60),
        || async {
            let n = handled(database_url).await?;
            anyhow::Ok((n > than).then_some(n))
        },
    )
    .await
}

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
    let before_restart = writing(&p.database_url, 0, "at all").await?;
    p.pool.close().await;
    hack("postgres.sh", &["restart", &name])?;
    let before_crash = writing(&p.database_url, before_restart, "after the restart").await?;
    eprintln!("{before_restart} records before the restart, {before_crash} before the crash");
    hack("postgres.sh", &["kill9", &name])?;
    // Down for longer than the worker's pool acquire timeout (10 s), so a batch write surely
    // fails and is retried: a shorter outage can fall between two batches and be absorbed by
    // the pool's own reconnect, which made this test flaky. Meanwhile the records the worker
    // holds age, and its time lag (refreshed every 5 s) shows it.
    let outage = tokio::time::Instant::now() + Duration::from_secs(12);
    let mut worst_time_lag = 0.0f64;
    while tokio::time::Instant::now() < outage {
        if let Ok(m) = w.metrics().await {
            worst_time_lag = metrics::max(&m, "sluice_consumer_lag_seconds", &[])
                .map_or(worst_time_lag, |lag| lag.max(worst_time_lag));
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
    let retries = metrics::sum(&metrics, "sluice_db_errors_total", &[]);
    assert!(
        retries > 0.0,
        "the worker saw and retried database errors:\n{metrics}"
    );
    drop(cluster);
    Ok(())
}
