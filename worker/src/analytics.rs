//! Analytics reads: per-minute summaries, data quality and the alert queue, served over HTTP
//! from the read endpoint (`DATABASE_READ_URL`, a streaming replica) so they never load the
//! primary that takes the batch writes. The pool's sessions are read-only: even pointed at
//! a primary by mistake, it cannot write.

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use std::str::FromStr;
use std::time::Duration;

/// The `application_name` of analytics sessions, so a DBA can tell them apart.
pub const APPLICATION_NAME: &str = "sluice-analytics";

/// Lazily connected: a replica that is down (or still catching up) must not stop the
/// worker; the endpoints answer 503 until it is back.
pub fn connect_reader(url: &str, schema: &str) -> Result<PgPool> {
    let options = PgConnectOptions::from_str(url)
        .context("DATABASE_READ_URL is not a valid Postgres URL")?
        .application_name(APPLICATION_NAME)
        .options([
            ("search_path", schema),
            ("TimeZone", "UTC"),
            ("default_transaction_read_only", "on"),
        ]);
    Ok(PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with(options))
}

/// A time range of periods; both ends optional (default: the last hour).
#[derive(Debug, Default, Deserialize)]
pub struct Range {
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// `all` (default), `merchant_category` or `payment_method`.
    pub dimension: Option<String>,
}

impl Range {
    fn bounds(&self) -> (DateTime<Utc>, DateTime<Utc>) {
        let until = self.until.unwrap_or_else(Utc::now);
        (
            self.since.unwrap_or(until - chrono::Duration::hours(1)),
            until,
        )
    }
}

#[derive(Debug, Serialize, PartialEq, sqlx::FromRow)]
pub struct Summary {
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub dimension: String,
    pub dimension_value: String,
    pub transaction_count: i64,
    pub total_amount: f64,
    pub avg_amount: f64,
    pub fraud_count: i64,
}

/// Per-minute summaries of one dimension, oldest first.
pub async fn summaries(pool: &PgPool, range: &Range) -> Result<Vec<Summary>, sqlx::Error> {
    let (since, until) = range.bounds();
    let dimension = range.dimension.as_deref().unwrap_or("all");
    sqlx::query_as(
        "SELECT period_start, period_end, dimension, dimension_value, transaction_count,
                total_amount::float8 AS total_amount,
                coalesce(total_amount::float8 / NULLIF(transaction_count, 0), 0) AS avg_amount, fraud_count
         FROM analytics_summaries
         WHERE dimension = $1 AND period_start >= $2 AND period_start < $3
         ORDER BY period_start, dimension_value",
    )
    .bind(dimension)
    .bind(since)
    .bind(until)
    .fetch_all(pool)
    .await
}

#[derive(Debug, Serialize, PartialEq, sqlx::FromRow)]
pub struct Quality {
    pub period_start: DateTime<Utc>,
    pub received_count: i64,
    pub null_rate: f64,
    pub invalid_rate: f64,
    pub duplicate_rate: f64,
    pub late_rate: f64,
    pub quality_score: f64,
}

/// Per-minute data quality rates (`quality_rates`), oldest first.
pub async fn quality(pool: &PgPool, range: &Range) -> Result<Vec<Quality>, sqlx::Error> {
    let (since, until) = range.bounds();
    sqlx::query_as(
        "SELECT period_start, received_count, null_rate, invalid_rate, duplicate_rate, late_rate, quality_score
         FROM quality_rates
         WHERE period_start >= $1 AND period_start < $2 AND received_count > 0
         ORDER BY period_start",
    )
    .bind(since)
    .bind(until)
    .fetch_all(pool)
    .await
}

#[derive(Debug, Default, Deserialize)]
pub struct AlertQuery {
    /// At most this many (default 100, capped at 1000).
    pub limit: Option<i64>,
    /// Only alerts not yet investigated (default true).
    pub open: Option<bool>,
}

#[derive(Debug, Serialize, PartialEq, sqlx::FromRow)]
pub struct Alert {
    pub transaction_id: String,
    pub customer_id: String,
    pub alert_timestamp: DateTime<Utc>,
    pub event_time: DateTime<Utc>,
    pub score: f64,
    pub reasons: Vec<String>,
    pub investigated: bool,
}

/// The analysts' queue: newest alerts first.
pub async fn alerts(pool: &PgPool, query: &AlertQuery) -> Result<Vec<Alert>, sqlx::Error> {
    // Two texts, so the open queue uses the partial index `fraud_alerts_open`.
    let sql = if query.open.unwrap_or(true) {
        "SELECT transaction_id, customer_id, alert_timestamp, event_time, score, reasons, investigated
         FROM fraud_alerts WHERE NOT investigated
         ORDER BY alert_timestamp DESC LIMIT $1"
    } else {
        "SELECT transaction_id, customer_id, alert_timestamp, event_time, score, reasons, investigated
         FROM fraud_alerts
         ORDER BY alert_timestamp DESC LIMIT $1"
    };
    sqlx::query_as(sql)
        .bind(query.limit.unwrap_or(100).clamp(1, 1000))
        .fetch_all(pool)
        .await
}
