//! Scoring cost per event on realistic traffic (`cargo bench -p sluice-fraud`).

use criterion::{Criterion, criterion_group};
use hdrhistogram::Histogram;
use sluice_fraud::eval::{CLOCK_START_MS, event_time_ms};
use sluice_fraud::{ProfileStore, Scorer, SimConfig, Simulator};
use std::hint::black_box;
use std::time::Instant;

/// Per-event latency distribution (criterion reports means; the bar is on p99), and the
/// encoded state size.
fn latency_percentiles() {
    let customers = 20_000;
    let mut sim = Simulator::new(
        3,
        SimConfig {
            customers,
            ..SimConfig::default()
        },
    );
    let scorer = Scorer::default();
    let mut store = ProfileStore::new(customers + 1);
    let mut hist = Histogram::<u64>::new_with_bounds(1, 10_000_000, 3).expect("valid bounds");
    for i in 0..1_000_000 {
        let (tx, _) = sim.next_event(CLOCK_START_MS + i * 1_440);
        let t = event_time_ms(&tx.timestamp).expect("simulator timestamps parse");
        let cents = (tx.amount * 100.0).round() as i64;
        let started = Instant::now();
        black_box(scorer.score(&mut store, &tx, t, cents));
        if i >= 300_000 {
            hist.saturating_record(started.elapsed().as_nanos().max(1) as u64);
        }
    }
    println!(
        "score latency per event over {} events: p50 {:.2} µs, p99 {:.2} µs, p99.9 {:.2} µs, max {:.1} µs; state {} bytes per customer",
        hist.len(),
        hist.value_at_quantile(0.5) as f64 / 1e3,
        hist.value_at_quantile(0.99) as f64 / 1e3,
        hist.value_at_quantile(0.999) as f64 / 1e3,
        hist.max() as f64 / 1e3,
        sluice_fraud::profile::ENCODED_LEN,
    );
}

fn bench(c: &mut Criterion) {
    let customers = 20_000;
    let mut sim = Simulator::new(
        1,
        SimConfig {
            customers,
            ..SimConfig::default()
        },
    );
    let events: Vec<_> = (0..200_000)
        .map(|i| {
            let (tx, _) = sim.next_event(CLOCK_START_MS + i * 1_440);
            let t = event_time_ms(&tx.timestamp).expect("simulator timestamps parse");
            let cents = (tx.amount * 100.0).round() as i64;
            (tx, t, cents)
        })
        .collect();
    let scorer = Scorer::default();
    let mut store = ProfileStore::new(customers + 1);
    // Warm every profile so the benchmark measures steady state, not first sightings.
    for (tx, t, cents) in &events[..100_000] {
        scorer.score(&mut store, tx, *t, *cents);
    }
    let tail = &events[100_000..];
    let mut i = 0;
    c.bench_function("score_one_event", |b| {
        b.iter(|| {
            let (tx, t, cents) = &tail[i % tail.len()];
            i += 1;
            black_box(scorer.score(&mut store, tx, *t, *cents))
        })
    });
    let mut sim = Simulator::new(
        2,
        SimConfig {
            customers,
            ..SimConfig::default()
        },
    );
    let mut now = CLOCK_START_MS;
    c.bench_function("simulate_one_event", |b| {
        b.iter(|| {
            now += 1_440;
            black_box(sim.next_event(now))
        })
    });
}

criterion_group!(benches, bench);

fn main() {
    benches();
    latency_percentiles();
    Criterion::default().configure_from_args().final_summary();
}
