//! End-to-end latency of the rows of one span of a latency phase (`ingested_at - Kafka
//! timestamp`, rows chosen by Kafka timestamp): the distribution, and percentiles per second
//! of the span so a tail can be matched to the moment it happened.

use super::activity::{self, Span};
use super::round2;
use anyhow::{Result, ensure};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::PgPool;

/// Latency percentiles of the rows produced in one second of the phase.
pub struct PerSecond {
    pub second: f64,
    pub rows: usize,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

pub struct Latencies {
    /// Every row's latency (ms), sorted.
    pub sorted_ms: Vec<f64>,
    pub per_second: Vec<PerSecond>,
}

impl Latencies {
    /// The rows produced in `[from, to)` (Kafka timestamp); seconds count from `from`.
    pub async fn read(pool: &PgPool, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Self> {
        let rows: Vec<(f64, f64)> = sqlx::query_as(
            "SELECT extract(epoch FROM kafka_timestamp - $1)::float8,
                    extract(epoch FROM ingested_at - kafka_timestamp)::float8 * 1000
             FROM sluice.transactions WHERE kafka_timestamp >= $1 AND kafka_timestamp < $2
             ORDER BY 1",
        )
        .bind(from)
        .bind(to)
        .fetch_all(pool)
        .await?;
        ensure!(!rows.is_empty(), "no rows produced between {from} and {to}");
        let mut per_second = Vec::new();
        let mut bucket: Vec<f64> = Vec::new();
        let mut second = rows[0].0.floor();
        for &(t, ms) in &rows {
            if t.floor() != second {
                per_second.push(percentiles(second, &mut bucket));
                bucket.clear();
                second = t.floor();
            }
            bucket.push(ms);
        }
        per_second.push(percentiles(second, &mut bucket));
        let mut sorted_ms: Vec<f64> = rows.iter().map(|r| r.1).collect();
        sorted_ms.sort_by(f64::total_cmp);
        Ok(Self {
            sorted_ms,
            per_second,
        })
    }

    /// The `q` quantile of every row (nearest rank, as the report always computed it).
    pub fn pct(&self, q: f64) -> f64 {
        quantile(&self.sorted_ms, q)
    }

    /// `{p50, p95, p99, max}` in ms, plus the rows they are over.
    pub fn summary_json(&self) -> Value {
        json!({
            "p50": round2(self.pct(0.50)), "p95": round2(self.pct(0.95)), "p99": round2(self.pct(0.99)),
            "max": round2(self.sorted_ms.last().copied().unwrap_or(0.0)), "rows": self.sorted_ms.len(),
        })
    }

    pub fn per_second_json(&self, beside: &[Span]) -> Value {
        json!({
            "measured_as": "per second of the steady state by Kafka timestamp: rows produced in that second and their latency percentiles (ms)",
            "beside": activity::to_json(beside),
            "beside_means": "checkpoints in progress (checkpointer not idle) and autovacuum workers seen in pg_stat_activity every 250 ms from the steady state's start until its rows were all handled, seconds on the same clock",
            "seconds": self.per_second.iter().map(|p| json!({
                "s": p.second, "rows": p.rows, "p50": round2(p.p50), "p95": round2(p.p95), "p99": round2(p.p99), "max": round2(p.max),
            })).collect::<Vec<_>>(),
        })
    }
}

fn percentiles(second: f64, ms: &mut [f64]) -> PerSecond {
    ms.sort_by(f64::total_cmp);
    PerSecond {
        second,
        rows: ms.len(),
        p50: quantile(ms, 0.50),
        p95: quantile(ms, 0.95),
        p99: quantile(ms, 0.99),
        max: ms.last().copied().unwrap_or(0.0),
    }
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}
