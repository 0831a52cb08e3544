//! Workers of a new pipeline starting at the same moment on a fresh database (a Deployment
//! scaled out before its first pod ran) all come up. `CREATE SCHEMA IF NOT EXISTS` does not
//! hold between two sessions: the one that waited on the other's uncommitted schema gets a
//! unique violation once it commits. Here the other session is the test's own, so the race
//! is lost every time rather than once in a while.

use sluice_e2e::Pipeline;
use sqlx::{Connection, PgConnection};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_loses_the_race_to_create_the_schema_runs_on() -> anyhow::Result<()> {
    let p = Pipeline::new("concurrent_start", 2).await?;
    let mut other = PgConnection::connect(&p.database_url).await?;
    let mut creating = other.begin().await?;
    sqlx::query("CREATE SCHEMA IF NOT EXISTS sluice")
        .execute(&mut *creating)
        .await?;
    let mut worker = p.worker().spawn()?;
    // The worker's own CREATE SCHEMA now waits on this transaction.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    creating.commit().await?;

    let summary = p.produce(p.load(2_000, 0, 11)).await?;
    p.assert_all_landed_once(&summary, Duration::from_secs(60))
        .await?;
    assert!(
        worker.process.exited()?.is_none(),
        "the worker exited:\n{}",
        worker.log()
    );
    Ok(())
}
