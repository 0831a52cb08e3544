//! The raw COPY baseline: what Postgres takes on this box, the limit the drain is held to,
//! by the same COPY the sink stores its rows with.

use anyhow::Result;
use chrono::Utc;
use sluice_loadgen::{EventKind, Generator, GeneratorConfig};
use sluice_worker::batch::Accepted;
use sluice_worker::copy::copy_transactions;
use sluice_worker::validate::{TimeBounds, validate};
use sqlx::Connection;
use std::time::Instant;

/// COPY the generator's valid rows straight into `transactions` (same indexes, same daily
/// partitions), 50,000 rows per committed COPY: what Postgres can take on this box.
pub async fn copy_baseline(db_url: &str, rows: usize) -> Result<f64> {
    let pool = sluice_worker::db::connect(db_url, "copy_baseline", 2, true).await?;
    sluice_worker::db::migrate(&pool, "copy_baseline").await?;
    sluice_worker::db::maintain_partitions(&pool, Utc::now(), 30, 3).await?;
    let mut generator = Generator::new(GeneratorConfig {
        seed: 42,
        invalid_ratio: 0.0,
        duplicate_ratio: 0.0,
        id_prefix: "copy".into(),
        ..GeneratorConfig::default()
    });
    let now = Utc::now();
    let bounds = TimeBounds::around(now, 30, 300);
    let mut records = Vec::with_capacity(rows);
    while records.len() < rows {
        let e = generator.next(now);
        if e.kind != EventKind::Valid {
            continue;
        }
        let valid = validate(&e.payload, bounds)
            .map_err(|r| anyhow::anyhow!("generator made an invalid event: {r:?}"))?;
        records.push(Accepted {
            valid,
            partition: (records.len() % 8) as i32,
            offset: records.len() as i64,
            kafka_timestamp: now,
            received_at: Instant::now(),
            raw: Vec::new(),
            verdict: None,
            late: false,
        });
    }
    let mut conn = pool.acquire().await?;
    let started = Instant::now();
    for chunk in records.chunks(50_000) {
        let mut tx = conn.begin().await?;
        copy_transactions(&mut tx, chunk).await?;
        tx.commit().await?;
    }
    Ok(rows as f64 / started.elapsed().as_secs_f64())
}
