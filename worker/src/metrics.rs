//! Prometheus metrics of the worker (contract §3 names; more are welcome, these stay).

use crate::batch_timing::{Stage, StageTimes};
use crate::error_events::ErrorEvents;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, exponential_buckets,
};
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct Metrics {
    pub registry: Registry,
    transactions: IntCounterVec,
    pub rejections: IntCounterVec,
    pub fraud_detected: IntCounter,
    pub processing_latency: Histogram,
    pub end_to_end_latency: Histogram,
    pub db_connections_active: IntGauge,
    pub consumer_lag: IntGaugeVec,
    /// Time lag per assigned partition (see its help text).
    pub consumer_lag_seconds: prometheus::GaugeVec,
    pub partitions_assigned: IntGauge,
    pub quality_score: prometheus::Gauge,
    pub batch_size: Histogram,
    pub batch_write_seconds: Histogram,
    /// Per committed batch, the time of each [`Stage`] (see [`crate::batch_timing`]).
    batch_stage_seconds: HistogramVec,
    /// Per committed batch, from its first record taken to its commit.
    batch_wall_seconds: Histogram,
    /// Failed batch writes in Postgres by `kind`; Kafka produce failures are not among them
    /// (they count in [`Metrics::errors`]).
    pub db_errors: IntCounterVec,
    /// `sluice_errors_total{error}` and the rate-limited log of every recovered error.
    pub errors: ErrorEvents,
    pub fenced_batches: IntCounter,
    pub late_events: IntCounter,
    pub profiles_reloaded: IntCounter,
    /// Records replayed into customer profiles persisted before the stored offset.
    pub profiles_replayed: IntCounter,
    /// Batches handed on that checkpoint the customer profiles.
    pub profile_checkpoints: IntCounter,
    /// Config file changes by `result`: `applied` or `refused` (did not load or validate).
    pub config_reloads: IntCounterVec,
    /// Records produced to the DLQ topic (delivered; a batch retried after a failed commit
    /// produces its rejected records again, and counts them again).
    pub dlq_records: IntCounter,
    /// Unix time the process started (the restart alert watches it change).
    pub process_start_time: prometheus::Gauge,
    quality_window: Mutex<QualityWindow>,
}

/// Outcome label of `sluice_transactions_total`.
#[derive(Clone, Copy)]
pub enum Outcome {
    Accepted,
    Rejected,
    Duplicate,
}

impl Metrics {
    pub fn new(pipeline: &str) -> Self {
        let registry = Registry::new_custom(
            None,
            Some([("pipeline".to_string(), pipeline.to_string())].into()),
        )
        .expect("valid registry");
        let latency_buckets = exponential_buckets(0.001, 2.0, 16).expect("buckets");
        let m = Self {
            transactions: IntCounterVec::new(
                Opts::new("sluice_transactions_total", "Records consumed, by outcome."),
                &["outcome"],
            )
            .expect("metric"),
            rejections: IntCounterVec::new(
                Opts::new("sluice_rejections_total", "Rejected records, by reason."),
                &["reason"],
            )
            .expect("metric"),
            fraud_detected: IntCounter::new("sluice_fraud_detected_total", "Transactions flagged as fraud.")
                .expect("metric"),
            processing_latency: Histogram::with_opts(
                HistogramOpts::new(
                    "sluice_processing_latency_seconds",
                    "From a record's arrival in the worker to its batch's commit.",
                )
                .buckets(latency_buckets.clone()),
            )
            .expect("metric"),
            end_to_end_latency: Histogram::with_opts(
                HistogramOpts::new(
                    "sluice_end_to_end_latency_seconds",
                    "From the Kafka record timestamp to the commit of its row.",
                )
                .buckets(latency_buckets.clone()),
            )
            .expect("metric"),
            db_connections_active: IntGauge::new("sluice_db_connections_active", "Open Postgres connections.")
                .expect("metric"),
            consumer_lag: IntGaugeVec::new(
                Opts::new("sluice_consumer_lag", "Records behind the log end, per partition."),
                &["partition"],
            )
            .expect("metric"),
            consumer_lag_seconds: prometheus::GaugeVec::new(
                Opts::new(
                    "sluice_consumer_lag_seconds",
                    "Time lag per assigned partition: now minus the Kafka timestamp of the oldest record \
                     of the partition this worker has fetched but not yet committed to Postgres, i.e. \
                     of the next unprocessed record; 0 when the worker holds no uncommitted record of \
                     the partition (caught up). Updated with the consumer statistics (every 5 s).",
                ),
                &["partition"],
            )
            .expect("metric"),
            partitions_assigned: IntGauge::new(
                "sluice_partitions_assigned",
                "Input topic partitions this worker owns (set once each assignment is in place).",
            )
            .expect("metric"),
            quality_score: prometheus::Gauge::new(
                "sluice_quality_score",
                "Accepted / all records over the last minute.",
            )
            .expect("metric"),
            batch_size: Histogram::with_opts(
                HistogramOpts::new("sluice_batch_records", "Records per committed batch.")
                    .buckets(exponential_buckets(1.0, 2.0, 16).expect("buckets")),
            )
            .expect("metric"),
            batch_write_seconds: Histogram::with_opts(
                HistogramOpts::new("sluice_batch_write_seconds", "Time to write and commit one batch.")
                    .buckets(latency_buckets.clone()),
            )
            .expect("metric"),
            batch_stage_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "sluice_batch_stage_seconds",
                    "Time of one committed batch in each stage: decode, profile_reload, score (consumer \
                     thread, summed over its records), queue (waiting for the sink), retry, then each \
                     statement of its transaction, the DLQ and alerts produce, and commit.",
                )
                .buckets(exponential_buckets(0.0001, 2.0, 18).expect("buckets")),
                &["stage"],
            )
            .expect("metric"),
            batch_wall_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "sluice_batch_wall_seconds",
                    "From the first record taken into a batch to its commit.",
                )
                .buckets(latency_buckets),
            )
            .expect("metric"),
            db_errors: IntCounterVec::new(
                Opts::new(
                    "sluice_db_errors_total",
                    "Failed batch writes in Postgres, by kind: connection, database.",
                ),
                &["kind"],
            )
            .expect("metric"),
            fenced_batches: IntCounter::new(
                "sluice_fenced_batches_total",
                "Batches discarded because another worker had moved the partition's stored offset.",
            )
            .expect("metric"),
            late_events: IntCounter::new(
                "sluice_late_events_total",
                "Stored transactions too late (past the allowed lateness) for the per-minute summaries.",
            )
            .expect("metric"),
            profiles_reloaded: IntCounter::new(
                "sluice_profiles_reloaded_total",
                "Customer profiles read back from Postgres after eviction from memory (raise fraud.profile_capacity if high).",
            )
            .expect("metric"),
            profiles_replayed: IntCounter::new(
                "sluice_profiles_replayed_total",
                "Records replayed into customer profiles after taking a partition over (the records since its profiles were last persisted).",
            )
            .expect("metric"),
            profile_checkpoints: IntCounter::new(
                "sluice_profile_checkpoints_total",
                "Batches that persisted the changed customer profiles (fraud.profile_checkpoint_ms apart, or sooner when many are dirty).",
            )
            .expect("metric"),
            config_reloads: IntCounterVec::new(
                Opts::new(
                    "sluice_config_reloads_total",
                    "Changes of the config file seen by the worker, by result: applied, or refused (the file did not load or validate; the running config stays).",
                ),
                &["result"],
            )
            .expect("metric"),
            dlq_records: IntCounter::new(
                "sluice_dlq_records_total",
                "Records produced to the DLQ topic (counted once delivered; a retried batch counts again).",
            )
            .expect("metric"),
            process_start_time: prometheus::Gauge::new(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
            )
            .expect("metric"),
            errors: ErrorEvents::new(),
            registry,
            quality_window: Mutex::new(QualityWindow::default()),
        };
        for c in [
            Box::new(m.transactions.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.rejections.clone()),
            Box::new(m.fraud_detected.clone()),
            Box::new(m.late_events.clone()),
            Box::new(m.profiles_reloaded.clone()),
            Box::new(m.profiles_replayed.clone()),
            Box::new(m.profile_checkpoints.clone()),
            Box::new(m.config_reloads.clone()),
            Box::new(m.processing_latency.clone()),
            Box::new(m.end_to_end_latency.clone()),
            Box::new(m.db_connections_active.clone()),
            Box::new(m.consumer_lag.clone()),
            Box::new(m.partitions_assigned.clone()),
            Box::new(m.quality_score.clone()),
            Box::new(m.batch_size.clone()),
            Box::new(m.batch_write_seconds.clone()),
            Box::new(m.batch_stage_seconds.clone()),
            Box::new(m.batch_wall_seconds.clone()),
            Box::new(m.db_errors.clone()),
            Box::new(m.fenced_batches.clone()),
            Box::new(m.consumer_lag_seconds.clone()),
            Box::new(m.dlq_records.clone()),
            Box::new(m.process_start_time.clone()),
            m.errors.collector(),
        ] {
            m.registry.register(c).expect("unique metric");
        }
        m.process_start_time.set(process_start_unix_seconds());
        // Every outcome and error kind exists from the start (at 0), so rates and alerts on
        // them have a series to read before the first event.
        for outcome in ["accepted", "rejected", "duplicate"] {
            m.transactions.with_label_values(&[outcome]);
        }
        for kind in crate::sink::DB_ERROR_KINDS {
            m.db_errors.with_label_values(&[kind]);
        }
        for result in ["applied", "refused"] {
            m.config_reloads.with_label_values(&[result]);
        }
        for stage in Stage::ALL {
            m.batch_stage_seconds.with_label_values(&[stage.as_str()]);
        }
        m
    }

    /// One committed batch's time split: every stage is observed (0 included), so each
    /// stage's `_count` is the number of batches and `_sum / _count` its mean.
    pub fn observe_batch(&self, times: &StageTimes, wall: Duration) {
        for stage in Stage::ALL {
            self.batch_stage_seconds
                .with_label_values(&[stage.as_str()])
                .observe(times.get(stage).as_secs_f64());
        }
        self.batch_wall_seconds.observe(wall.as_secs_f64());
    }

    pub fn count(&self, outcome: Outcome, n: u64) {
        let label = match outcome {
            Outcome::Accepted => "accepted",
            Outcome::Rejected => "rejected",
            Outcome::Duplicate => "duplicate",
        };
        self.transactions.with_label_values(&[label]).inc_by(n);
    }

    /// Feed the sliding quality window with one committed batch's counts.
    pub fn observe_quality(&self, accepted: u64, total: u64) {
        let mut w = self.quality_window.lock().expect("quality window");
        if let Some(score) = w.push(Instant::now(), accepted, total) {
            self.quality_score.set(score);
        }
    }

    pub fn render(&self) -> String {
        prometheus::TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }
}

/// When this process started, in Unix seconds: from `/proc/self/stat` (start time in clock
/// ticks after boot) and the boot time in `/proc/stat`; now, where /proc cannot say.
fn process_start_unix_seconds() -> f64 {
    let from_proc = || -> Option<f64> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command (which may hold spaces) start at state, field 3; starttime is 22.
        let after = stat.rsplit_once(')')?.1;
        let ticks: f64 = after.split_whitespace().nth(19)?.parse().ok()?;
        let btime: f64 = std::fs::read_to_string("/proc/stat")
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("btime "))?
            .trim()
            .parse()
            .ok()?;
        // USER_HZ is 100 on every Linux ABI this runs on.
        Some(btime + ticks / 100.0)
    };
    from_proc().unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    })
}

/// Accepted / total over the last minute, from per-batch counts.
#[derive(Default)]
struct QualityWindow {
    entries: VecDeque<(Instant, u64, u64)>,
    accepted: u64,
    total: u64,
}

impl QualityWindow {
    const SPAN: Duration = Duration::from_secs(60);

    fn push(&mut self, now: Instant, accepted: u64, total: u64) -> Option<f64> {
        self.entries.push_back((now, accepted, total));
        self.accepted += accepted;
        self.total += total;
        while let Some(&(t, a, n)) = self.entries.front() {
            if now.duration_since(t) <= Self::SPAN {
                break;
            }
            self.entries.pop_front();
            self.accepted -= a;
            self.total -= n;
        }
        (self.total > 0).then(|| self.accepted as f64 / self.total as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_names_are_exposed() {
        let m = Metrics::new("p");
        m.count(Outcome::Accepted, 1);
        m.consumer_lag.with_label_values(&["0"]).set(3);
        m.observe_quality(9, 10);
        let text = m.render();
        for name in [
            "sluice_transactions_total{outcome=\"accepted\",pipeline=\"p\"} 1",
            "sluice_fraud_detected_total",
            "sluice_processing_latency_seconds",
            "sluice_end_to_end_latency_seconds",
            "sluice_db_connections_active",
            "sluice_consumer_lag{partition=\"0\",pipeline=\"p\"} 3",
            "sluice_partitions_assigned{pipeline=\"p\"} 0",
            "sluice_quality_score{pipeline=\"p\"} 0.9",
            "sluice_transactions_total{outcome=\"duplicate\",pipeline=\"p\"} 0",
            "sluice_db_errors_total{kind=\"connection\",pipeline=\"p\"} 0",
            "sluice_dlq_records_total{pipeline=\"p\"} 0",
            "sluice_errors_total{error=\"dlq_produce\",pipeline=\"p\"} 0",
            "sluice_batch_stage_seconds_count{stage=\"claim_ids\",pipeline=\"p\"} 0",
            "sluice_batch_wall_seconds_count{pipeline=\"p\"} 0",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
        let start = m.process_start_time.get();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            start > now - 86_400.0 && start <= now + 1.0,
            "start {start}, now {now}"
        );
    }
}
