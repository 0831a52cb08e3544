//! The raw COPY baselines: what Postgres takes on this box, the limit the drain is held to,
//! by the same COPY the sink stores its rows with. One COPYs generated rows before the
//! drain; the others, after it, COPY the very rows the drain stored (scored, a share flagged,
//! event times as sent): its first rows into an empty copy of the schema, and all of them
//! into a copy loaded as the drain's database was before it (the replay): "the same rows
//! into the same schema" of the issue's bar, the table growing through the same sizes.

use super::{create_database, drop_database};
use anyhow::{Context, Result, ensure};
use chrono::Utc;
use futures::TryStreamExt;
use sluice_loadgen::{EventKind, Generator, GeneratorConfig};
use sluice_worker::batch::Accepted;
use sluice_worker::copy::binary::SIGNATURE;
use sluice_worker::copy::{COPY_TRANSACTIONS, copy_in, copy_transactions};
use sluice_worker::validate::{TimeBounds, validate};
use sqlx::Connection;
use std::time::Instant;

/// COPY the generator's valid rows straight into `transactions` (same indexes, same daily
/// partitions), 50,000 rows per committed COPY: what Postgres can take on this box.
pub async fn copy_baseline(db_url: &str, rows: usize) -> Result<f64> {
    let mut conn = fresh_schema(db_url, "copy_baseline").await?;
    copy_generated(&mut conn, rows).await
}

/// COPY `rows` of the generator's valid rows (the same ones every time) into `transactions`
/// on `conn`, 50,000 rows per committed COPY; rows per second.
async fn copy_generated(conn: &mut sqlx::PgConnection, rows: usize) -> Result<f64> {
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
            raw: Default::default(),
            verdict: None,
            late: false,
        });
    }
    let started = Instant::now();
    for chunk in records.chunks(50_000) {
        let mut tx = conn.begin().await?;
        copy_transactions(&mut tx, chunk).await?;
        tx.commit().await?;
    }
    Ok(rows as f64 / started.elapsed().as_secs_f64())
}

/// How the rows the drain stored are COPYed again.
pub enum Again {
    /// The first this many, into an empty schema.
    FirstRows(usize),
    /// The drain replayed: a schema loaded as the drain's was before it started
    /// (`preload_rows` generated rows, as [`copy_baseline`] COPYs them, then a `CHECKPOINT`), then every
    /// row the drain stored, in the order stored. The table grows through the same sizes as
    /// under the drain, so its indexes cost what they cost the drain.
    Replay { preload_rows: usize },
}

/// COPY the rows the drain stored in `source_url` (those whose ids start with `id_prefix`,
/// in the order stored, in binary format as Postgres itself writes them out) again, into
/// `transactions` of a database of their own (made beside `run`'s, dropped after), 50,000
/// rows per committed COPY; rows per second of those COPYs, and how many rows.
pub async fn copy_drained_again(
    admin: &mut sqlx::PgConnection,
    source_url: &str,
    run: &str,
    id_prefix: &str,
    again: Again,
) -> Result<(f64, usize)> {
    let (limit, suffix) = match again {
        Again::FirstRows(rows) => (Some(rows), "rows"),
        Again::Replay { .. } => (None, "replay"),
    };
    let chunks = drained_rows(source_url, id_prefix, limit).await?;
    let target = format!("{run}_{suffix}");
    let target_url = source_url.replace(run, &target);
    create_database(admin, &target).await?;
    let mut conn = fresh_schema(&target_url, "copy_drained_again").await?;
    if let Again::Replay { preload_rows } = again {
        copy_generated(&mut conn, preload_rows).await?;
    }
    // From checkpointed pages, as the drain started.
    sqlx::raw_sql("CHECKPOINT").execute(&mut *conn).await?;
    let tps = copy_chunks(&mut conn, &chunks).await?;
    drop(conn);
    drop_database(admin, &target).await?;
    Ok((tps, chunks.iter().map(|c| c.1).sum()))
}

/// The rows the drain stored (ids starting with `id_prefix`, at most `limit`, in the order
/// stored) in COPY binary format as Postgres writes them out, in streams of 50,000 rows.
async fn drained_rows(
    source_url: &str,
    id_prefix: &str,
    limit: Option<usize>,
) -> Result<Vec<(Vec<u8>, usize)>> {
    let mut source = sqlx::PgConnection::connect(source_url).await?;
    let columns = COPY_TRANSACTIONS
        .split_once('(')
        .and_then(|(_, rest)| rest.split_once(')'))
        .context("column list of COPY_TRANSACTIONS")?
        .0;
    let limit = limit.map_or(String::new(), |rows| format!(" LIMIT {rows}"));
    let out = format!(
        "COPY (SELECT {columns} FROM transactions WHERE starts_with(transaction_id, '{id_prefix}'){limit}) \
         TO STDOUT (FORMAT binary)"
    );
    let data: Vec<u8> = source
        .copy_out_raw(&out)
        .await?
        .try_fold(Vec::new(), |mut all, chunk| async move {
            all.extend_from_slice(&chunk);
            Ok(all)
        })
        .await?;
    let chunks = binary_copy_chunks(&data, 50_000)?;
    ensure!(
        chunks.iter().any(|c| c.1 > 0),
        "the drain stored no rows to COPY again"
    );
    Ok(chunks)
}

/// A connection to `url` with the schema migrated and today's partitions made.
async fn fresh_schema(url: &str, name: &str) -> Result<sqlx::pool::PoolConnection<sqlx::Postgres>> {
    let pool = sluice_worker::db::connect(url, name, 2, true).await?;
    sluice_worker::db::migrate(&pool, name).await?;
    sluice_worker::db::maintain_partitions(&pool, Utc::now(), 30, 3).await?;
    Ok(pool.acquire().await?)
}

/// COPY each stream into `transactions` in a transaction of its own; rows per second.
async fn copy_chunks(conn: &mut sqlx::PgConnection, chunks: &[(Vec<u8>, usize)]) -> Result<f64> {
    let started = Instant::now();
    for (chunk, _) in chunks {
        let mut tx = conn.begin().await?;
        copy_in(&mut tx, COPY_TRANSACTIONS, chunk.as_slice()).await?;
        tx.commit().await?;
    }
    let rows: usize = chunks.iter().map(|c| c.1).sum();
    Ok(rows as f64 / started.elapsed().as_secs_f64())
}

/// Split a COPY binary stream into streams of at most `per_chunk` rows each (header, rows,
/// trailer), with their row counts.
fn binary_copy_chunks(data: &[u8], per_chunk: usize) -> Result<Vec<(Vec<u8>, usize)>> {
    ensure!(data.starts_with(SIGNATURE), "not a COPY binary stream");
    let int = |at: usize, len: usize| -> Result<i64> {
        let bytes = data
            .get(at..at + len)
            .context("COPY binary stream cut short")?;
        Ok(bytes.iter().fold(0i64, |v, b| (v << 8) | i64::from(*b)))
    };
    let extension = int(SIGNATURE.len() + 4, 4)? as usize;
    let header_end = SIGNATURE.len() + 8 + extension;
    let header = &data[..header_end];
    let trailer = (-1i16).to_be_bytes();
    let mut chunks = Vec::new();
    let (mut at, mut start, mut count) = (header_end, header_end, 0);
    let mut close = |start: usize, end: usize, count: usize| {
        let mut chunk = Vec::with_capacity(header.len() + end - start + 2);
        chunk.extend_from_slice(header);
        chunk.extend_from_slice(&data[start..end]);
        chunk.extend_from_slice(&trailer);
        chunks.push((chunk, count));
    };
    loop {
        let fields = int(at, 2)? as i16;
        if fields == -1 {
            break;
        }
        at += 2;
        for _ in 0..fields {
            let len = int(at, 4)? as i32;
            at += 4 + usize::try_from(len).unwrap_or(0);
        }
        count += 1;
        if count == per_chunk {
            close(start, at, count);
            (start, count) = (at, 0);
        }
    }
    if count > 0 {
        close(start, at, count);
    }
    Ok(chunks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_streams_split_between_rows() {
        let mut data = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0".to_vec();
        let header = data.clone();
        // Three rows of two fields: a 1-byte value and a NULL.
        let row = [
            &2i16.to_be_bytes()[..],
            &1i32.to_be_bytes(),
            b"x",
            &(-1i32).to_be_bytes(),
        ]
        .concat();
        for _ in 0..3 {
            data.extend_from_slice(&row);
        }
        data.extend_from_slice(&(-1i16).to_be_bytes());
        let chunks = binary_copy_chunks(&data, 2).unwrap();
        let trailer = (-1i16).to_be_bytes();
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0], ([&header[..], &row, &row, &trailer].concat(), 2));
        assert_eq!(chunks[1], ([&header[..], &row, &trailer].concat(), 1));
    }
}
