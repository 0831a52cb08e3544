//! Input, processing and per-worker rates from a sliding window of lag samples.
//!
//! Each sample holds two counters read from Kafka — Σ log end offsets (grows with every record
//! produced) and Σ group positions (grows with every record the workers commit) — plus the
//! ready workers. Over the window:
//!
//! ```text
//! input rate      = Δ Σ end      / Δt        (records/s)
//! processing rate = Δ Σ position / Δt        (records/s)
//! per-worker rate = processing rate / min(workers, partitions)
//! ```
//!
//! The processing rate is the difference of the window's first and last samples: the trailing
//! Kafka commits (the worker mirrors its Postgres offsets to Kafka a moment after the fact)
//! shift both ends alike and cost only a few percent over a window of a minute. End offsets do
//! not trail, so [`Rates::input`] is taken over the latest [`RateConfig::min_span`] only — a
//! burst shows in full at the next sample instead of diluted over the window — and
//! [`Rates::input_window`] is the window's average. Unknown readings are not samples: they are
//! skipped, never counted as 0.
//!
//! **Busy-ness caveat.** Processing rate ÷ workers is the workers' *capacity* only while they
//! had records waiting the whole time; a group idling at a low input rate processes exactly the
//! input, which says nothing about how fast it could go. So the per-worker rate is measured
//! only over the latest run of samples with the same worker count, none taken during a
//! rebalance, in which every sample's lag was at least [`RateConfig::busy_lag_seconds`] of
//! processing (and [`RateConfig::busy_lag_records`]) — more than the records in flight between
//! fetch and commit. Otherwise the last trustworthy per-worker rate is kept and reported as
//! not fresh.

use std::collections::VecDeque;

/// One reading, reduced to what the rates need.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Seconds on a monotonic clock (any origin, same for all samples of a window).
    pub at: f64,
    /// Σ log end offsets.
    pub end: i64,
    /// Σ positions, `max(committed, log start)`.
    pub position: i64,
    /// Total lag (`end − position`).
    pub lag: i64,
    /// Ready workers.
    pub workers: u32,
    /// Partitions of the topic (workers beyond them idle).
    pub partitions: u32,
    /// Whether the group was rebalancing when sampled.
    pub rebalancing: bool,
}

/// Window and busy-ness thresholds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateConfig {
    /// Samples older than this (seconds before the newest) are dropped.
    pub window: f64,
    /// Shortest span (seconds) a rate is computed over.
    pub min_span: f64,
    /// The group counts as busy if every sample's lag is at least this many seconds of its
    /// processing rate (records between fetch and Kafka commit — the batch wait plus the
    /// asynchronous commit, well under a second — always show as lag; 3 s leaves a wide margin
    /// while still seeing a backlog that drains within the interval as busy) …
    pub busy_lag_seconds: f64,
    /// … and at least this many records.
    pub busy_lag_records: i64,
}

impl Default for RateConfig {
    fn default() -> Self {
        Self {
            window: 60.0,
            min_span: 10.0,
            busy_lag_seconds: 3.0,
            busy_lag_records: 1_000,
        }
    }
}

/// Records per second one worker processes when it has work.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PerWorkerRate {
    pub records_per_sec: f64,
    /// Workers (capped at partitions) it was measured with.
    pub workers: u32,
    /// Sample time ([`Sample::at`]) of the end of the measurement.
    pub measured_at: f64,
    /// Whether it was measured over the current window (else it is the last trustworthy one).
    pub fresh: bool,
}

/// The rates over the current window.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Rates {
    /// Records/s produced over the latest span of at least [`RateConfig::min_span`] (from the
    /// newest sample back to the first one that far back); `None` until the window spans it.
    pub input: Option<f64>,
    /// Records/s produced over the whole window.
    pub input_window: Option<f64>,
    /// Records/s committed by the group.
    pub processing: Option<f64>,
    /// Whether the latest interval measured the workers' capacity (see the module docs).
    pub busy: bool,
    /// The last trustworthy per-worker rate, if one was ever measured.
    pub per_worker: Option<PerWorkerRate>,
    /// Seconds the window spans.
    pub span: f64,
}

/// Sliding window of samples of one pipeline.
#[derive(Debug, Clone)]
pub struct RateWindow {
    config: RateConfig,
    samples: VecDeque<Sample>,
    trusted: Option<PerWorkerRate>,
}

impl RateWindow {
    pub fn new(config: RateConfig) -> Self {
        Self {
            config,
            samples: VecDeque::new(),
            trusted: None,
        }
    }

    pub fn config(&self) -> &RateConfig {
        &self.config
    }

    /// Adds a sample (from a known reading) and returns the rates. A sample whose counters went
    /// backwards (topic recreated) or whose clock did not advance restarts the window.
    pub fn push(&mut self, s: Sample) -> Rates {
        if let Some(last) = self.samples.back()
            && (s.at <= last.at || s.end < last.end || s.position < last.position)
        {
            self.samples.clear();
        }
        self.samples.push_back(s);
        while let Some(first) = self.samples.front()
            && s.at - first.at > self.config.window
        {
            self.samples.pop_front();
        }
        self.measure_per_worker();
        self.rates()
    }

    /// The rates of the current window.
    pub fn rates(&self) -> Rates {
        let (Some(first), Some(last)) = (self.samples.front(), self.samples.back()) else {
            return Rates {
                per_worker: self.trusted.map(stale),
                ..Rates::default()
            };
        };
        let span = last.at - first.at;
        let (input_window, processing) = if span >= self.config.min_span {
            (
                Some((last.end - first.end) as f64 / span),
                Some((last.position - first.position) as f64 / span),
            )
        } else {
            (None, None)
        };
        let input = self
            .samples
            .iter()
            .rev()
            .find(|s| last.at - s.at >= self.config.min_span)
            .map(|s| (last.end - s.end) as f64 / (last.at - s.at));
        let fresh = self.trusted.filter(|t| t.measured_at == last.at);
        Rates {
            input,
            input_window,
            processing,
            busy: fresh.is_some(),
            per_worker: fresh.or(self.trusted.map(stale)),
            span,
        }
    }

    /// The last trustworthy per-worker rate, kept across idle spells.
    pub fn per_worker(&self) -> Option<PerWorkerRate> {
        self.trusted
    }

    /// Restores a per-worker rate measured earlier (e.g. kept in the status across an operator
    /// restart), reported as not fresh until the window measures one itself.
    pub fn restore_per_worker(&mut self, rate: PerWorkerRate) {
        if self.trusted.is_none() {
            self.trusted = Some(stale(rate));
        }
    }

    /// Measures the per-worker rate over the latest busy run of samples, if there is one.
    fn measure_per_worker(&mut self) {
        let Some(last) = self.samples.back().copied() else {
            return;
        };
        let workers = last.workers.min(last.partitions);
        if workers == 0 || last.rebalancing {
            return;
        }
        // The latest run with the same worker count, not rebalancing.
        let run_start = self
            .samples
            .iter()
            .rposition(|s| s.workers.min(s.partitions) != workers || s.rebalancing)
            .map_or(0, |i| i + 1);
        let run: Vec<Sample> = self.samples.iter().skip(run_start).copied().collect();
        let first = run[0];
        let span = last.at - first.at;
        if span < self.config.min_span {
            return;
        }
        let processing = (last.position - first.position) as f64 / span;
        let floor =
            (self.config.busy_lag_seconds * processing).max(self.config.busy_lag_records as f64);
        if processing <= 0.0 || run.iter().any(|s| (s.lag as f64) < floor) {
            return;
        }
        self.trusted = Some(PerWorkerRate {
            records_per_sec: processing / workers as f64,
            workers,
            measured_at: last.at,
            fresh: true,
        });
    }
}

fn stale(p: PerWorkerRate) -> PerWorkerRate {
    PerWorkerRate { fresh: false, ..p }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at: f64, end: i64, position: i64, workers: u32) -> Sample {
        Sample {
            at,
            end,
            position,
            lag: end - position,
            workers,
            partitions: 12,
            rebalancing: false,
        }
    }

    #[test]
    fn idle_group_gives_rates_but_no_capacity() {
        let mut w = RateWindow::new(RateConfig::default());
        // 2 000 records/s in, all processed, ~1 s of commit trail (2 000 records of lag):
        // below 3 s × 2 000 = 6 000, so not busy.
        w.push(sample(0.0, 100_000, 98_000, 2));
        w.push(sample(15.0, 130_000, 128_000, 2));
        let r = w.push(sample(30.0, 160_000, 158_000, 2));
        assert_eq!(r.input, Some(2_000.0));
        assert_eq!(r.processing, Some(2_000.0));
        assert!(!r.busy);
        assert_eq!(r.per_worker, None);
    }

    #[test]
    fn busy_group_measures_per_worker_rate_and_keeps_it() {
        let mut w = RateWindow::new(RateConfig::default());
        // 20 000/s in, 3 workers process 7 500/s together: lag grows 12 500/s from 50 000.
        w.push(sample(0.0, 1_000_000, 950_000, 3));
        let r = w.push(sample(15.0, 1_300_000, 1_062_500, 3));
        assert_eq!(r.input, Some(20_000.0));
        assert_eq!(r.processing, Some(7_500.0));
        // Lag 50 000 and 237 500, both ≥ 3 s × 7 500 = 22 500: capacity, 7 500 ÷ 3.
        assert!(r.busy);
        let p = r.per_worker.unwrap();
        assert_eq!((p.records_per_sec, p.workers, p.fresh), (2_500.0, 3, true));
        // The input drops to 2 000/s; the backlog drains at 7 500 − 2 000 = 5 500/s.
        w.push(sample(30.0, 1_330_000, 1_175_000, 3)); // lag 155 000
        let r = w.push(sample(45.0, 1_360_000, 1_287_500, 3)); // lag 72 500
        assert!(r.busy);
        assert_eq!(r.per_worker.unwrap().records_per_sec, 2_500.0);
        // Caught up within the next interval (lag 1 000 is commits in flight): the workers
        // idled part of it, so 6 767/s over it is not their capacity; 2 500/s is kept.
        let r = w.push(sample(60.0, 1_390_000, 1_389_000, 3));
        assert!(!r.busy);
        let p = r.per_worker.unwrap();
        assert_eq!(
            (p.records_per_sec, p.measured_at, p.fresh),
            (2_500.0, 45.0, false)
        );
    }

    #[test]
    fn worker_count_change_and_rebalance_restart_the_measurement() {
        let mut w = RateWindow::new(RateConfig::default());
        w.push(sample(0.0, 0, 0, 2));
        // Scaled to 4 and rebalancing at 15 s: no per-worker rate over the mixed interval.
        let mut s = sample(15.0, 300_000, 60_000, 4);
        s.rebalancing = true;
        assert_eq!(w.push(s).per_worker, None);
        // The interval after a rebalancing sample may still hold the pause: not used either.
        assert_eq!(w.push(sample(30.0, 600_000, 180_000, 4)).per_worker, None);
        // 30..45 s: 4 workers commit 120 000 in 15 s = 8 000/s ÷ 4.
        let r = w.push(sample(45.0, 900_000, 300_000, 4));
        assert_eq!(r.per_worker.unwrap().records_per_sec, 2_000.0);
        // The window's rates still span all four samples: 900 000 / 45 s in.
        assert_eq!(r.input_window, Some(20_000.0));
    }

    #[test]
    fn counters_going_backwards_restart_the_window() {
        let mut w = RateWindow::new(RateConfig::default());
        w.push(sample(0.0, 1_000, 1_000, 1));
        let r = w.push(sample(15.0, 10, 10, 1));
        assert_eq!((r.input, r.span), (None, 0.0));
    }

    #[test]
    fn old_samples_leave_the_window() {
        let mut w = RateWindow::new(RateConfig::default());
        w.push(sample(0.0, 0, 0, 1));
        w.push(sample(50.0, 50_000, 50_000, 1));
        // At 100 s the 0 s sample is 100 s old (> 60 s window): rate over 50..100 s only.
        let r = w.push(sample(100.0, 150_000, 150_000, 1));
        assert_eq!((r.span, r.input_window), (50.0, Some(2_000.0)));
    }

    #[test]
    fn input_rate_shows_a_burst_at_once() {
        let mut w = RateWindow::new(RateConfig::default());
        // 2 000/s for 45 s, then 20 000/s for 15 s.
        for (at, end) in [(0.0, 0), (15.0, 30_000), (30.0, 60_000), (45.0, 90_000)] {
            w.push(sample(at, end, end, 1));
        }
        let r = w.push(sample(60.0, 390_000, 100_000, 1));
        // Latest 15 s: 300 000 / 15 = 20 000/s; the window's average: 390 000 / 60 = 6 500/s.
        assert_eq!(r.input, Some(20_000.0));
        assert_eq!(r.input_window, Some(6_500.0));
    }
}
