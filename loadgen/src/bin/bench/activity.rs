//! What Postgres ran beside the latency phase, on the phase's clock: checkpoints and
//! autovacuum workers, sampled every 250 ms from its own connection, so the plot can put
//! them under the latency per second.

use anyhow::Result;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::task::JoinHandle;

/// Something that ran from `from_s` to `to_s` seconds after the phase start.
#[derive(Clone, Debug)]
pub struct Span {
    pub what: String,
    pub from_s: f64,
    pub to_s: f64,
}

pub struct Watch {
    stop: Arc<AtomicBool>,
    task: JoinHandle<Result<Vec<Span>>>,
}

/// Start sampling; `start` is the phase's zero.
pub fn watch(admin_url: String, start: DateTime<Utc>) -> Watch {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let task = tokio::spawn(async move { sample(&admin_url, start, &flag).await });
    Watch { stop, task }
}

impl Watch {
    /// Stop sampling; a failed sampler gives no spans (reported, not fatal).
    pub async fn finish(self) -> Vec<Span> {
        self.stop.store(true, Ordering::Relaxed);
        match self.task.await {
            Ok(Ok(spans)) => spans,
            Ok(Err(e)) => {
                eprintln!("   warning: Postgres activity sampler failed: {e:#}");
                Vec::new()
            }
            Err(e) => {
                eprintln!("   warning: Postgres activity sampler panicked: {e}");
                Vec::new()
            }
        }
    }
}

/// A checkpoint shows in `pg_stat_bgwriter` when it ends; its write + sync time place its
/// start. An autovacuum worker shows in `pg_stat_activity` while it runs.
async fn sample(url: &str, start: DateTime<Utc>, stop: &AtomicBool) -> Result<Vec<Span>> {
    let mut conn = PgConnection::connect(url).await?;
    let secs = |t: DateTime<Utc>| (t - start).num_milliseconds() as f64 / 1000.0;
    let mut spans = Vec::new();
    let mut running: BTreeMap<String, f64> = BTreeMap::new();
    let mut last: Option<(f64, f64, f64)> = None;
    while !stop.load(Ordering::Relaxed) {
        sqlx::raw_sql("SELECT pg_stat_clear_snapshot()")
            .execute(&mut conn)
            .await?;
        let (timed, requested, ms): (f64, f64, f64) = sqlx::query_as(
            "SELECT checkpoints_timed::float8, checkpoints_req::float8,
                    (checkpoint_write_time + checkpoint_sync_time)::float8 FROM pg_stat_bgwriter",
        )
        .fetch_one(&mut conn)
        .await?;
        let vacuums: Vec<String> = sqlx::query_scalar(
            "SELECT coalesce(query, 'autovacuum') FROM pg_stat_activity
             WHERE backend_type = 'autovacuum worker'",
        )
        .fetch_all(&mut conn)
        .await?;
        let now = secs(Utc::now());
        if let Some((t0, r0, ms0)) = last
            && timed + requested > t0 + r0
        {
            let kind = if requested > r0 { "requested" } else { "timed" };
            spans.push(Span {
                what: format!("checkpoint ({kind})"),
                from_s: now - (ms - ms0) / 1000.0,
                to_s: now,
            });
        }
        last = Some((timed, requested, ms));
        for v in &vacuums {
            running.entry(v.clone()).or_insert(now);
        }
        let ended: Vec<String> = running
            .keys()
            .filter(|k| !vacuums.contains(k))
            .cloned()
            .collect();
        for k in ended {
            let from_s = running.remove(&k).unwrap_or(now);
            spans.push(Span {
                what: k,
                from_s,
                to_s: now,
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let now = secs(Utc::now());
    spans.extend(running.into_iter().map(|(what, from_s)| Span {
        what: format!("{what} (still running)"),
        from_s,
        to_s: now,
    }));
    Ok(spans)
}

pub fn to_json(spans: &[Span]) -> Value {
    json!(
        spans
            .iter()
            .map(|s| json!({"what": s.what, "from_s": round1(s.from_s), "to_s": round1(s.to_s)}))
            .collect::<Vec<_>>()
    )
}

pub fn print(spans: &[Span]) {
    if spans.is_empty() {
        eprintln!("   beside the latency phase: no checkpoint ended, no autovacuum worker seen");
    }
    for s in spans {
        eprintln!(
            "   beside the latency phase: {} from {:.1}s to {:.1}s",
            s.what, s.from_s, s.to_s
        );
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}
