//! Postgres's own view of each bench phase: checkpoints (`pg_stat_bgwriter`), WAL written
//! (`pg_current_wal_lsn` difference, `pg_stat_wal`), vacuum and analyze runs and row writes on
//! the sluice tables (`pg_stat_user_tables`, partitions summed into their parent), and
//! `pg_stat_statements` for the statements the phase ran. Snapshots before and after the phase;
//! the report is their difference.
//!
//! The cumulative statistics (not `pg_stat_statements`, not the WAL position) reach the views
//! when a backend flushes them: at the latest about 10 s after it went idle, so a phase
//! boundary can move up to that much of them into the next phase.

use anyhow::Result;
use serde_json::{Value, json};
use sqlx::{PgConnection, Row};
use std::collections::BTreeMap;

const BGWRITER: [&str; 8] = [
    "checkpoints_timed",
    "checkpoints_req",
    "checkpoint_write_time",
    "checkpoint_sync_time",
    "buffers_checkpoint",
    "buffers_clean",
    "buffers_backend",
    "buffers_backend_fsync",
];
const WAL: [&str; 5] = [
    "wal_records",
    "wal_fpi",
    "wal_buffers_full",
    "wal_write",
    "wal_sync",
];
const TABLE: [&str; 7] = [
    "autovacuum_count",
    "autoanalyze_count",
    "vacuum_count",
    "analyze_count",
    "n_tup_ins",
    "n_tup_upd",
    "n_tup_hot_upd",
];

#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    wal_lsn: f64,
    cluster: BTreeMap<&'static str, f64>,
    /// parent table → counters; plus `n_dead_tup` (a level, not a counter).
    tables: BTreeMap<String, BTreeMap<&'static str, f64>>,
    dead: BTreeMap<String, f64>,
    /// queryid → (label, calls, total exec ms, rows, WAL bytes)
    statements: BTreeMap<i64, (String, [f64; 4])>,
    statements_error: Option<String>,
}

/// `CREATE EXTENSION pg_stat_statements` where `admin` is connected (its view is cluster
/// wide); the server must preload the library (hack/postgres.sh does).
pub async fn enable_statements(admin: &mut PgConnection) -> Result<()> {
    sqlx::raw_sql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .execute(admin)
        .await?;
    Ok(())
}

/// `VACUUM (ANALYZE)` the database `db` is connected to; seconds it took.
pub async fn vacuum_analyze(db: &mut PgConnection) -> Result<f64> {
    let started = std::time::Instant::now();
    sqlx::raw_sql("VACUUM (ANALYZE)").execute(&mut *db).await?;
    Ok(started.elapsed().as_secs_f64())
}

/// `CHECKPOINT`, then wait (up to 5 s) until the checkpointer has published its figures:
/// it does so after waking the waiting backend, and a snapshot taken in between would
/// count this checkpoint in the phase that follows.
pub async fn checkpoint(admin: &mut PgConnection) -> Result<()> {
    const REQUESTED: &str = "SELECT checkpoints_req::float8 FROM pg_stat_bgwriter";
    sqlx::raw_sql("SELECT pg_stat_clear_snapshot()")
        .execute(&mut *admin)
        .await?;
    let before: f64 = sqlx::query_scalar(REQUESTED).fetch_one(&mut *admin).await?;
    sqlx::raw_sql("CHECKPOINT").execute(&mut *admin).await?;
    for _ in 0..50 {
        sqlx::raw_sql("SELECT pg_stat_clear_snapshot()")
            .execute(&mut *admin)
            .await?;
        let now: f64 = sqlx::query_scalar(REQUESTED).fetch_one(&mut *admin).await?;
        if now > before {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    eprintln!("   warning: the CHECKPOINT's statistics did not show within 5 s");
    Ok(())
}

/// Cluster-wide figures from `admin`, table figures from `db` (the phase's database).
pub async fn snapshot(
    admin: &mut PgConnection,
    db: &mut PgConnection,
    dbname: &str,
) -> Result<Snapshot> {
    let mut s = Snapshot::default();
    // A fresh snapshot of the cumulative statistics in each session.
    sqlx::raw_sql("SELECT pg_stat_clear_snapshot()")
        .execute(&mut *admin)
        .await?;
    sqlx::raw_sql("SELECT pg_stat_clear_snapshot()")
        .execute(&mut *db)
        .await?;
    s.wal_lsn = sqlx::query_scalar("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::float8")
        .fetch_one(&mut *admin)
        .await?;
    let cols = |names: &[&str]| {
        names
            .iter()
            .map(|n| format!("{n}::float8"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {}, {} FROM pg_stat_bgwriter, pg_stat_wal",
        cols(&BGWRITER),
        cols(&WAL)
    )))
    .fetch_one(&mut *admin)
    .await?;
    for (i, name) in BGWRITER.iter().chain(WAL.iter()).enumerate() {
        s.cluster.insert(name, row.try_get::<f64, _>(i)?);
    }
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT coalesce(p.relname, t.relname)::text, {}, sum(n_dead_tup)::float8
         FROM pg_stat_user_tables t
         LEFT JOIN pg_inherits i ON i.inhrelid = t.relid
         LEFT JOIN pg_class p ON p.oid = i.inhparent
         WHERE t.schemaname = 'sluice' GROUP BY 1",
        TABLE
            .iter()
            .map(|n| format!("sum({n})::float8"))
            .collect::<Vec<_>>()
            .join(", ")
    )))
    .fetch_all(&mut *db)
    .await?;
    for r in rows {
        let name: String = r.try_get(0)?;
        let mut m = BTreeMap::new();
        for (i, n) in TABLE.iter().enumerate() {
            m.insert(*n, r.try_get::<f64, _>(i + 1)?);
        }
        s.dead.insert(name.clone(), r.try_get(TABLE.len() + 1)?);
        s.tables.insert(name, m);
    }
    let statements = sqlx::query(
        "SELECT queryid, min(query), sum(calls)::float8, sum(total_exec_time)::float8,
                sum(rows)::float8, sum(wal_bytes)::float8
         FROM pg_stat_statements
         WHERE dbid = (SELECT oid FROM pg_database WHERE datname = $1) AND queryid IS NOT NULL
         GROUP BY queryid",
    )
    .bind(dbname)
    .fetch_all(&mut *admin)
    .await;
    match statements {
        Ok(rows) => {
            for r in rows {
                let id: i64 = r.try_get(0)?;
                let text: String = r.try_get(1)?;
                let v = [r.try_get(2)?, r.try_get(3)?, r.try_get(4)?, r.try_get(5)?];
                s.statements.insert(id, (label(&text), v));
            }
        }
        Err(e) => s.statements_error = Some(e.to_string()),
    }
    Ok(s)
}

/// The sink's statement (named as its `sluice_batch_stage_seconds` stage); every other
/// statement (DDL, partition upkeep, reads, the bench's own) counts as `other`.
fn label(query: &str) -> String {
    let q = query.split_whitespace().collect::<Vec<_>>().join(" ");
    const NAMES: [(&str, &str); 13] = [
        ("INSERT INTO transaction_ids", "claim_ids"),
        // The array INSERT, used where a connection has no TCP_NODELAY.
        ("INSERT INTO transactions ", "insert_rows"),
        ("INSERT INTO analytics_summaries", "summaries"),
        ("INSERT INTO quality_summaries", "quality"),
        ("INSERT INTO fraud_alerts", "insert_alerts"),
        ("INSERT INTO rejected_transactions", "insert_rejected"),
        ("INSERT INTO customer_profiles", "upsert_profiles"),
        ("UPDATE consumer_offsets", "move_offsets"),
        // The sink's rows, and in the COPY baseline's view the baseline itself.
        ("COPY transactions", "insert_rows (COPY)"),
        ("COPY transaction_ids", "claim_ids (COPY)"),
        ("COPY fraud_alerts", "insert_alerts (COPY)"),
        ("BEGIN", "begin"),
        ("COMMIT", "commit"),
    ];
    NAMES
        .iter()
        .find(|(prefix, _)| q.starts_with(prefix))
        .map_or("other", |(_, n)| n)
        .to_string()
}

/// What Postgres did between two snapshots.
pub fn delta(before: &Snapshot, after: &Snapshot, seconds: f64) -> Value {
    let d = |k: &str| {
        after.cluster.get(k).copied().unwrap_or(0.0) - before.cluster.get(k).copied().unwrap_or(0.0)
    };
    let wal_bytes = after.wal_lsn - before.wal_lsn;
    let tables: serde_json::Map<String, Value> = after
        .tables
        .iter()
        .map(|(name, now)| {
            let was = before.tables.get(name);
            let mut m: serde_json::Map<String, Value> = TABLE
                .iter()
                .map(|k| {
                    let v = now[k] - was.and_then(|w| w.get(k)).copied().unwrap_or(0.0);
                    (k.to_string(), json!(v))
                })
                .collect();
            m.insert("n_dead_tup_at_end".into(), json!(after.dead.get(name)));
            (name.clone(), Value::Object(m))
        })
        .collect();
    let mut by_label: BTreeMap<&str, [f64; 4]> = BTreeMap::new();
    for (id, (label, now)) in &after.statements {
        let was = before.statements.get(id).map_or([0.0; 4], |w| w.1);
        let sum = by_label.entry(label).or_default();
        for i in 0..4 {
            sum[i] += now[i] - was[i];
        }
    }
    let mut statements: Vec<(&str, [f64; 4])> =
        by_label.into_iter().filter(|(_, v)| v[0] > 0.0).collect();
    statements.sort_by(|a, b| b.1[1].total_cmp(&a.1[1]));
    json!({
        "phase_seconds": (seconds * 10.0).round() / 10.0,
        "checkpoints": {
            "timed": d("checkpoints_timed"), "requested": d("checkpoints_req"),
            "buffers_written": d("buffers_checkpoint"),
            "write_time_ms": d("checkpoint_write_time").round(), "sync_time_ms": d("checkpoint_sync_time").round(),
        },
        "bgwriter_buffers_clean": d("buffers_clean"),
        "backend_buffers_written": d("buffers_backend"),
        "backend_fsyncs": d("buffers_backend_fsync"),
        "wal": {
            "bytes": wal_bytes, "mb_per_s": ((wal_bytes / 1e6 / seconds.max(1e-9)) * 10.0).round() / 10.0,
            "records": d("wal_records"), "full_page_images": d("wal_fpi"),
            "buffers_full": d("wal_buffers_full"), "writes": d("wal_write"), "syncs": d("wal_sync"),
        },
        "tables": tables,
        "statements": statements.iter().map(|(label, v)| json!({
            "statement": label, "calls": v[0], "total_exec_ms": v[1].round(),
            "mean_exec_ms": ((v[1] / v[0].max(1.0)) * 1000.0).round() / 1000.0,
            "rows": v[2], "wal_bytes": v[3],
        })).collect::<Vec<_>>(),
        "statements_error": after.statements_error,
    })
}

/// The printed view of one phase (from [`delta`]'s JSON); `brief`: the first line only.
pub fn print(phase: &str, v: &Value, brief: bool) {
    let f = |p: &str| v.pointer(p).and_then(Value::as_f64).unwrap_or(0.0);
    eprintln!(
        "== postgres during {phase} ({:.0}s): checkpoints {} timed + {} requested ({} buffers, write {:.0} ms, sync {:.0} ms); WAL {:.1} MB ({:.1} MB/s, {} full-page images); backends wrote {} buffers",
        f("/phase_seconds"),
        f("/checkpoints/timed"),
        f("/checkpoints/requested"),
        f("/checkpoints/buffers_written"),
        f("/checkpoints/write_time_ms"),
        f("/checkpoints/sync_time_ms"),
        f("/wal/bytes") / 1e6,
        f("/wal/mb_per_s"),
        f("/wal/full_page_images"),
        f("/backend_buffers_written"),
    );
    if brief {
        return;
    }
    if let Some(tables) = v["tables"].as_object() {
        for (name, t) in tables {
            let g = |k: &str| t[k].as_f64().unwrap_or(0.0);
            if g("n_tup_ins") + g("n_tup_upd") + g("autovacuum_count") + g("autoanalyze_count")
                == 0.0
            {
                continue;
            }
            eprintln!(
                "   table {name:<22} autovacuum {} autoanalyze {}  inserted {} updated {} (hot {})  dead at end {}",
                g("autovacuum_count"),
                g("autoanalyze_count"),
                g("n_tup_ins"),
                g("n_tup_upd"),
                g("n_tup_hot_upd"),
                t["n_dead_tup_at_end"].as_f64().unwrap_or(0.0),
            );
        }
    }
    if let Some(e) = v["statements_error"].as_str() {
        eprintln!("   pg_stat_statements unavailable: {e}");
    }
    for s in v["statements"].as_array().into_iter().flatten() {
        let g = |k: &str| s[k].as_f64().unwrap_or(0.0);
        eprintln!(
            "   stmt {:<22} calls {:>6}  mean {:>8.3} ms  total {:>7.0} ms  rows {:>8}  WAL {:>6.1} MB",
            s["statement"].as_str().unwrap_or(""),
            g("calls"),
            g("mean_exec_ms"),
            g("total_exec_ms"),
            g("rows"),
            g("wal_bytes") / 1e6,
        );
    }
}

pub fn meaning() -> Value {
    json!(
        "per phase, differences of Postgres's statistics views over the phase: checkpoints from pg_stat_bgwriter (cluster wide: every database of the bench's server); wal.bytes from pg_current_wal_lsn (exact), the other wal fields from pg_stat_wal; tables from pg_stat_user_tables of the phase's database (daily partitions summed into their parent; n_dead_tup_at_end is a level); statements from pg_stat_statements of the phase's database, by total execution time (execution only: a COMMIT's WAL flush is not in it). The cumulative views lag up to ~10 s behind an idle backend, so a phase boundary can move that much of them into the next phase"
    )
}
