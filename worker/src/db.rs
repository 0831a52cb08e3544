//! Postgres plumbing: the connection pool (each connection pinned to the pipeline's schema
//! and to UTC), migrations, daily partition upkeep, the stored offsets and the persisted
//! customer profiles.

use crate::score::ProfileRow;
use anyhow::{Context, Result};
use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, PgPool};
use std::str::FromStr;
use std::time::Duration as StdDuration;

pub async fn connect(
    url: &str,
    schema: &str,
    max_connections: u32,
    synchronous_commit: bool,
) -> Result<PgPool> {
    let options = PgConnectOptions::from_str(url)
        .context("DATABASE_URL is not a valid Postgres URL")?
        .application_name("sluice-worker");
    let schema = schema.to_owned();
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(StdDuration::from_secs(10))
        .after_connect(move |conn, _| {
            let schema = schema.clone();
            Box::pin(async move {
                // The schema is a checked identifier (WorkerConfig::validate), so formatting it in is safe.
                let sync = if synchronous_commit { "on" } else { "off" };
                // sluice.profile_checkpoints: this worker moves profiles_offset itself (see
                // migration 0005).
                let setup = format!("SET search_path TO \"{schema}\"; SET TIME ZONE 'UTC'; SET synchronous_commit = {sync}; SET sluice.profile_checkpoints = on");
                sqlx::raw_sql(AssertSqlSafe(setup)).execute(&mut *conn).await?;
                no_delay(conn).await?;
                Ok(())
            })
        })
        .connect_with(options)
        .await
        .context("connecting to Postgres")
}

/// TCP_NODELAY on this connection's socket (see [`crate::tcp_nodelay`]); where that fails,
/// the sink stores rows by INSERT instead of COPY, and says so once.
async fn no_delay(conn: &mut sqlx::PgConnection) -> Result<(), sqlx::Error> {
    // NULL over a Unix socket, which has no Nagle to turn off.
    let Some(port): Option<i32> = sqlx::query_scalar("SELECT inet_client_port()")
        .fetch_one(&mut *conn)
        .await?
    else {
        return Ok(());
    };
    let set = u16::try_from(port)
        .map_err(|_| std::io::Error::other(format!("client port {port} out of range")))
        .and_then(crate::tcp_nodelay::set_for_local_port);
    if let Err(e) = set {
        if crate::tcp_nodelay::on_every_connection() {
            tracing::warn!(error = %e, "no TCP_NODELAY on a Postgres connection: rows are stored by INSERT instead of COPY");
        }
        crate::tcp_nodelay::missing_on_a_connection();
    }
    Ok(())
}

/// Create the schema and run migrations (sqlx takes an advisory lock, so workers starting
/// together are safe; so is the schema's creation).
pub async fn migrate(pool: &PgPool, schema: &str) -> Result<()> {
    // IF NOT EXISTS does not hold between two sessions creating it at once: the loser gets
    // a unique violation on pg_namespace although the schema now exists.
    let created = sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE SCHEMA IF NOT EXISTS \"{schema}\""
    )))
    .execute(pool)
    .await;
    match created {
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23505") => {}
        other => {
            other?;
        }
    }
    sqlx::migrate!("./migrations")
        .run(pool)
        .await
        .context("running migrations")?;
    Ok(())
}

fn partition_name(day: NaiveDate) -> String {
    format!(
        "transactions_p{:04}{:02}{:02}",
        day.year(),
        day.month(),
        day.day()
    )
}

/// Storage parameters of every daily partition of `transactions` (partitions do not inherit
/// them; migration 0006 sets them on the partitions that existed): vacuum after every 100k
/// inserted rows, in small slices over the newest pages.
const PARTITION_STORAGE: &str =
    "WITH (autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 100000)";

/// Create daily partitions from `retention_days` ago to `days_ahead` from now, drop those
/// older than the retention window, and forget idempotency keys as old. Runs under an
/// advisory lock so only one worker does it at a time.
pub async fn maintain_partitions(
    pool: &PgPool,
    now: DateTime<Utc>,
    retention_days: u32,
    days_ahead: u32,
) -> Result<()> {
    let mut tx = pool.begin().await?;
    let locked: bool = sqlx::query_scalar(
        "SELECT pg_try_advisory_xact_lock(hashtext(current_schema() || '.partitions'))",
    )
    .fetch_one(&mut *tx)
    .await?;
    if !locked {
        return Ok(());
    }
    let today = now.date_naive();
    let oldest = today - Duration::days(i64::from(retention_days));
    let mut day = oldest;
    while day <= today + Duration::days(i64::from(days_ahead)) {
        let next = day + Duration::days(1);
        let ddl = format!(
            "CREATE TABLE IF NOT EXISTS {} PARTITION OF transactions FOR VALUES FROM ('{day} 00:00:00+00') TO ('{next} 00:00:00+00') {PARTITION_STORAGE}",
            partition_name(day)
        );
        sqlx::raw_sql(AssertSqlSafe(ddl)).execute(&mut *tx).await?;
        day = next;
    }
    let existing: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'transactions'::regclass",
    )
    .fetch_all(&mut *tx)
    .await?;
    let cutoff = partition_name(oldest);
    for name in existing.iter().filter(|n| n.as_str() < cutoff.as_str()) {
        tracing::info!(partition = %name, "dropping partition past retention");
        sqlx::raw_sql(AssertSqlSafe(format!("DROP TABLE {name}")))
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query("DELETE FROM transaction_ids WHERE event_time < $1")
        .bind(oldest.and_hms_opt(0, 0, 0).expect("midnight").and_utc())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// A partition's stored offset (`consumer_offsets`): the next offset to consume, `None`
/// when nothing is stored yet, and the event-time watermark reached with it. It moves in
/// the transaction that stores the rows before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredOffset {
    pub partition: i32,
    pub next: Option<i64>,
    pub watermark: Option<DateTime<Utc>>,
    /// The offset the partition's persisted customer profiles are current to; the records
    /// from there to `next` are replayed into them.
    pub profiles_offset: Option<i64>,
}

/// The stored offsets of `partitions`, creating rows with nothing stored (NULL) for new
/// ones so that every later batch can compare-and-set.
pub async fn load_stored_offsets(
    pool: &PgPool,
    group: &str,
    topic: &str,
    partitions: &[i32],
) -> Result<Vec<StoredOffset>> {
    sqlx::query(
        "INSERT INTO consumer_offsets (group_id, topic, partition)
         SELECT $1, $2, p FROM unnest($3::int[]) AS p
         ON CONFLICT DO NOTHING",
    )
    .bind(group)
    .bind(topic)
    .bind(partitions)
    .execute(pool)
    .await?;
    Ok(load_partition_state(pool, group, topic, partitions, false)
        .await?
        .0)
}

/// Whether any partition of the pipeline has a stored offset: it has started, so partitions
/// without one were added to the topic later.
pub async fn pipeline_started(pool: &PgPool, group: &str, topic: &str) -> Result<bool> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM consumer_offsets
                        WHERE group_id = $1 AND topic = $2 AND next_offset IS NOT NULL)",
    )
    .bind(group)
    .bind(topic)
    .fetch_one(pool)
    .await?)
}

/// Stores where partitions with nothing stored yet start (`starts`: partition, next offset;
/// their profiles are current there, having seen nothing),
/// so the `kafka.start_from` choice is made once per partition: a later owner resumes there
/// instead of resolving it again (`latest` again would skip what was produced in between).
/// Partitions without a row get one; a row that already holds an offset is left alone
/// (compare-and-set against NULL).
pub async fn store_start_offsets(
    pool: &PgPool,
    group: &str,
    topic: &str,
    starts: &[(i32, i64)],
) -> Result<()> {
    let (partitions, offsets): (Vec<i32>, Vec<i64>) = starts.iter().copied().unzip();
    sqlx::query(
        "INSERT INTO consumer_offsets AS o (group_id, topic, partition, next_offset, profiles_offset)
         SELECT $1, $2, v.partition, v.next, v.next FROM unnest($3::int[], $4::bigint[]) AS v(partition, next)
         ON CONFLICT (group_id, topic, partition) DO UPDATE
           SET next_offset = EXCLUDED.next_offset, profiles_offset = EXCLUDED.next_offset,
               updated_at = now()
           WHERE o.next_offset IS NULL",
    )
    .bind(group)
    .bind(topic)
    .bind(&partitions)
    .bind(&offsets)
    .execute(pool)
    .await?;
    Ok(())
}

/// The stored offsets of `partitions` and, with `profiles`, their customers' persisted
/// profiles, read in one snapshot: the profiles are exactly those current to the
/// `profiles_offset` read with them, even if another worker commits in between.
pub async fn load_partition_state(
    pool: &PgPool,
    group: &str,
    topic: &str,
    partitions: &[i32],
    profiles: bool,
) -> Result<(Vec<StoredOffset>, Vec<ProfileRow>)> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let stored: Vec<StoredOffset> = sqlx::query_as(
        "SELECT partition, next_offset AS next, watermark, profiles_offset FROM consumer_offsets
         WHERE group_id = $1 AND topic = $2 AND partition = ANY($3)",
    )
    .bind(group)
    .bind(topic)
    .bind(partitions)
    .fetch_all(&mut *tx)
    .await?;
    let profiles = if profiles {
        sqlx::query_as(
            "SELECT customer_id, partition, profile FROM customer_profiles WHERE partition = ANY($1)",
        )
        .bind(partitions)
        .fetch_all(&mut *tx)
        .await?
    } else {
        Vec::new()
    };
    tx.commit().await?;
    Ok((stored, profiles))
}

/// Persisted scoring state of these customers (evicted from memory, seen again).
pub async fn load_customer_profiles(
    pool: &PgPool,
    customers: &[String],
) -> Result<Vec<ProfileRow>> {
    Ok(sqlx::query_as(
        "SELECT customer_id, partition, profile FROM customer_profiles WHERE customer_id = ANY($1)",
    )
    .bind(customers)
    .fetch_all(pool)
    .await?)
}
