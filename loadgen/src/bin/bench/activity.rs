//! What Postgres ran beside a latency phase's steady state, on its clock: checkpoints in
//! progress and autovacuum workers, sampled every 250 ms from `pg_stat_activity` on its own
//! connection, so the plot can put them under the latency per second.

use anyhow::Result;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::task::JoinHandle;

/// Something that ran from `from_s` to `to_s` seconds after the sampled span began.
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

/// Start sampling; `start` is the span's zero.
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

/// Sampled: the checkpointer is in a checkpoint while it waits on anything but its idle
/// main loop (`CheckpointerMain`); an autovacuum worker shows while it runs.
async fn sample(url: &str, start: DateTime<Utc>, stop: &AtomicBool) -> Result<Vec<Span>> {
    let mut conn = PgConnection::connect(url).await?;
    let secs = |t: DateTime<Utc>| (t - start).num_milliseconds() as f64 / 1000.0;
    let mut spans = Vec::new();
    // what → (first seen, seen on the first sample)
    let mut running: BTreeMap<String, (f64, bool)> = BTreeMap::new();
    let mut first = true;
    let close = |what: String, (from_s, at_start): (f64, bool), to_s: f64, at_end: bool| Span {
        what: match (at_start, at_end) {
            (true, true) => format!("{what} (throughout the steady state)"),
            (true, false) => format!("{what} (running when the steady state began)"),
            (false, true) => format!("{what} (still running at the end)"),
            (false, false) => what,
        },
        from_s,
        to_s,
    };
    while !stop.load(Ordering::Relaxed) {
        let seen: Vec<String> = sqlx::query_scalar(
            "SELECT CASE WHEN backend_type = 'checkpointer' THEN 'checkpoint'
                         ELSE coalesce(nullif(query, ''), 'autovacuum') END
             FROM pg_stat_activity
             WHERE backend_type = 'autovacuum worker'
                OR (backend_type = 'checkpointer' AND wait_event IS DISTINCT FROM 'CheckpointerMain')",
        )
        .fetch_all(&mut conn)
        .await?;
        let now = secs(Utc::now());
        for what in &seen {
            running.entry(what.clone()).or_insert((now, first));
        }
        let ended: Vec<String> = running
            .keys()
            .filter(|k| !seen.contains(k))
            .cloned()
            .collect();
        for what in ended {
            let since = running.remove(&what).unwrap_or((now, false));
            spans.push(close(what, since, now, false));
        }
        first = false;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let now = secs(Utc::now());
    spans.extend(
        running
            .into_iter()
            .map(|(what, since)| close(what, since, now, true)),
    );
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

/// `span`: what was sampled, e.g. "the 2000 tx/s steady state".
pub fn print(span: &str, spans: &[Span]) {
    if spans.is_empty() {
        eprintln!("   beside {span}: no checkpoint in progress, no autovacuum worker seen");
    }
    for s in spans {
        eprintln!(
            "   beside {span}: {} from {:.1}s to {:.1}s",
            s.what, s.from_s, s.to_s
        );
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}
