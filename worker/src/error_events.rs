//! Errors as named events: every error the worker recovers from by retrying or carrying on
//! counts in `sluice_errors_total{error}` and logs, at most one line per kind every
//! [`LOG_EVERY`], that line saying how many of its kind went unlogged since the last one.
//! A broker or database that is down then shows as a rate, not as a flood of log lines.

use prometheus::{IntCounterVec, Opts};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Shortest time between two log lines of one kind.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// The `error` label of `sluice_errors_total`: a fixed set, so the label stays bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Polling Kafka returned an error (broker unreachable, fetch failed).
    Poll,
    /// Taking, giving up or seeking partitions failed, or the group reported a rebalance error.
    Assignment,
    /// A Postgres round trip failed and is retried (batch write, stored offsets, profiles,
    /// partition upkeep).
    Database,
    /// A rejected record could not be produced to the DLQ topic; its batch is retried.
    DlqProduce,
    /// A fraud alert could not be produced to the alerts topic; its batch is retried.
    AlertProduce,
}

impl ErrorKind {
    pub const ALL: [Self; 5] = [
        Self::Poll,
        Self::Assignment,
        Self::Database,
        Self::DlqProduce,
        Self::AlertProduce,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Poll => "poll",
            Self::Assignment => "assignment",
            Self::Database => "database",
            Self::DlqProduce => "dlq_produce",
            Self::AlertProduce => "alert_produce",
        }
    }
}

/// When a kind last logged, and how many of it did not log since.
#[derive(Clone, Copy, Default)]
struct LogSlot {
    last: Option<Instant>,
    suppressed: u64,
}

pub struct ErrorEvents {
    counter: IntCounterVec,
    slots: Mutex<[LogSlot; ErrorKind::ALL.len()]>,
}

impl Default for ErrorEvents {
    fn default() -> Self {
        Self::new()
    }
}

impl ErrorEvents {
    pub fn new() -> Self {
        let counter = IntCounterVec::new(
            Opts::new(
                "sluice_errors_total",
                "Errors the worker recovered from, by kind: poll, assignment, database, \
                 dlq_produce, alert_produce (each also logged, at most one line per kind every 10 s).",
            ),
            &["error"],
        )
        .expect("metric");
        // Every kind exists from the start (at 0), so rates and alerts have a series to read.
        for kind in ErrorKind::ALL {
            counter.with_label_values(&[kind.as_str()]);
        }
        Self {
            counter,
            slots: Mutex::new([LogSlot::default(); ErrorKind::ALL.len()]),
        }
    }

    pub fn collector(&self) -> Box<dyn prometheus::core::Collector> {
        Box::new(self.counter.clone())
    }

    /// Count one error of `kind`. `Some(suppressed)` when the caller should log it (the
    /// first of its kind for [`LOG_EVERY`]), with how many of its kind were not logged
    /// since the last line:
    ///
    /// ```text
    /// if let Some(suppressed) = metrics.errors.occurred(ErrorKind::Poll) {
    ///     tracing::warn!(error = %e, suppressed, "Kafka poll error");
    /// }
    /// ```
    #[must_use = "log the error when this says so"]
    pub fn occurred(&self, kind: ErrorKind) -> Option<u64> {
        self.counter.with_label_values(&[kind.as_str()]).inc();
        self.should_log(kind, Instant::now())
    }

    fn should_log(&self, kind: ErrorKind, now: Instant) -> Option<u64> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let slot = &mut slots[kind as usize];
        if slot
            .last
            .is_some_and(|last| now.duration_since(last) < LOG_EVERY)
        {
            slot.suppressed += 1;
            return None;
        }
        slot.last = Some(now);
        Some(std::mem::take(&mut slot.suppressed))
    }

    pub fn count(&self, kind: ErrorKind) -> u64 {
        self.counter.with_label_values(&[kind.as_str()]).get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_logs_once_per_interval_and_reports_what_it_held_back() {
        let events = ErrorEvents::new();
        let t0 = Instant::now();
        assert_eq!(events.should_log(ErrorKind::Poll, t0), Some(0));
        assert_eq!(
            events.should_log(ErrorKind::Poll, t0 + Duration::from_secs(1)),
            None
        );
        assert_eq!(
            events.should_log(ErrorKind::Poll, t0 + Duration::from_secs(2)),
            None
        );
        assert_eq!(
            events.should_log(ErrorKind::Database, t0 + Duration::from_secs(2)),
            Some(0),
            "kinds are limited separately"
        );
        assert_eq!(events.should_log(ErrorKind::Poll, t0 + LOG_EVERY), Some(2));
        assert_eq!(events.should_log(ErrorKind::Poll, t0 + LOG_EVERY), None);
    }

    #[test]
    fn every_occurrence_counts_logged_or_not() {
        let events = ErrorEvents::new();
        for _ in 0..3 {
            let _ = events.occurred(ErrorKind::DlqProduce);
        }
        assert_eq!(events.count(ErrorKind::DlqProduce), 3);
        assert_eq!(events.count(ErrorKind::Database), 0);
    }
}
