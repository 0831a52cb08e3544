//! Analytics reads go to the read endpoint: a real streaming replica (pg_basebackup, hot
//! standby). The worker writes only to the primary; its /api/v1 reads run only on the
//! replica, shown by pg_stat_statements and pg_stat_activity on both servers.

use serde_json::Value;
use sluice_e2e::{OwnPostgres, Pipeline, Services, get, wait_for};
use sqlx::PgPool;
use std::time::Duration;

/// The JSON body of a GET on the worker, failing on anything but 200.
async fn get_json(port: u16, path: &str) -> anyhow::Result<Value> {
    let body = get(port, path)
        .await?
        .ok()
        .map_err(|e| e.context(format!("GET {path}")))?;
    Ok(serde_json::from_str(&body)?)
}

/// Calls of statements matching `pattern` on one server.
async fn calls(pool: &PgPool, pattern: &str) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_statements
         WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND query ~* $1",
    )
    .bind(pattern)
    .fetch_one(pool)
    .await?)
}

async fn sessions(pool: &PgPool, application: &str) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1",
    )
    .bind(application)
    .fetch_one(pool)
    .await?)
}

const ANALYTICS_READ: &str =
    r"^\s*SELECT .* FROM (analytics_summaries|quality_rates|fraud_alerts)\M";
const WRITE: &str = r"^\s*(INSERT|UPDATE|DELETE|COPY)\M";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_reads_hit_the_replica_and_writes_never_do() -> anyhow::Result<()> {
    let cluster = OwnPostgres::start("e2e-replica")?;
    let p = Pipeline::on(
        "read_replica",
        4,
        &Services::from_env().brokers,
        &cluster.admin_url,
    )
    .await?;
    sqlx::query("CREATE EXTENSION pg_stat_statements")
        .execute(&p.pool)
        .await?;

    let replica_url = cluster.replica(&p.name)?;
    let replica = PgPool::connect(&replica_url).await?;
    let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(&replica)
        .await?;
    assert!(in_recovery, "the read endpoint is a standby");

    let w = p.worker().env("DATABASE_READ_URL", &replica_url).spawn()?;
    let summary = p.produce(p.load(20_000, 5_000, 11)).await?;
    p.wait_handled(summary.produced as i64, Duration::from_secs(90))
        .await?;
    let stored = p.scalar("SELECT count(*) FROM sluice.transactions").await?;
    let flagged = p.scalar("SELECT count(*) FROM sluice.fraud_alerts").await?;
    sqlx::query("SELECT pg_stat_statements_reset()")
        .execute(&p.pool)
        .await?;

    // The replica has replayed everything once the summaries it serves count every row.
    let range = "since=2000-01-01T00:00:00Z&until=2100-01-01T00:00:00Z";
    wait_for(
        "the replica's summaries to count every row",
        Duration::from_secs(30),
        || async {
            let rows = get_json(w.port, &format!("/api/v1/summaries?{range}")).await?;
            let counted: i64 = rows
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["transaction_count"].as_i64().unwrap())
                .sum();
            anyhow::Ok(counted == stored)
        },
    )
    .await?;
    let quality = get_json(w.port, &format!("/api/v1/quality?{range}")).await?;
    let received: i64 = quality
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["received_count"].as_i64().unwrap())
        .sum();
    assert_eq!(
        received as u64, summary.produced,
        "quality counts every record"
    );
    let alerts = get_json(w.port, "/api/v1/alerts?open=false&limit=1000").await?;
    assert_eq!(
        alerts.as_array().unwrap().len() as i64,
        flagged.min(1000),
        "alerts listed from the replica"
    );
    let by_method = get_json(
        w.port,
        &format!("/api/v1/summaries?{range}&dimension=payment_method"),
    )
    .await?;
    assert!(
        by_method
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["dimension"] == "payment_method")
    );

    // Where the statements ran.
    assert!(
        calls(&replica, ANALYTICS_READ).await? >= 4,
        "analytics reads ran on the replica"
    );
    assert_eq!(
        calls(&p.pool, ANALYTICS_READ).await?,
        0,
        "no analytics read ran on the primary"
    );
    assert_eq!(
        calls(&replica, WRITE).await?,
        0,
        "no write ran on the replica"
    );
    assert!(sessions(&replica, "sluice-analytics").await? >= 1);
    assert_eq!(
        sessions(&replica, "sluice-worker").await?,
        0,
        "the write pool never connects to the replica"
    );
    assert_eq!(
        sessions(&p.pool, "sluice-analytics").await?,
        0,
        "the read pool never connects to the primary"
    );

    // Writes keep flowing to the primary while the replica serves reads.
    let more = p.produce(p.load(2_000, 2_000, 12)).await?;
    p.wait_handled(
        (summary.produced + more.produced) as i64,
        Duration::from_secs(60),
    )
    .await?;
    assert!(
        calls(&p.pool, r"^\s*INSERT INTO transaction_ids").await? > 0,
        "new batches written to the primary"
    );
    assert_eq!(calls(&replica, WRITE).await?, 0);
    replica.close().await;
    Ok(())
}
