//! `sluice-loadgen --rate R --duration D`: contract events for a sluice pipeline.

use anyhow::Result;
use clap::Parser;
use sluice_fraud::sim::{Population, regime};
use sluice_fraud::{SimConfig, Simulator};
use sluice_loadgen::produce::{BACKLOG_EVENTS_PER_SECOND, planned_events};
use sluice_loadgen::{EventClock, GeneratorConfig, LoadSpec, ensure_topic, produce};
use std::time::Duration;

/// The gap under which purchases look like a burst to the fraud features, whoever the
/// customer is. Their pace starts from a prior of 3 purchases a day (`sluice_fraud::profile::
/// prior`), at which a gap of 900 s scores a rapid repeat of -ln(3/86 400 × 900) ≈ 3.5, and
/// a population that buys every few minutes never builds a pace of its own within a run.
const RAPID_GAP_S: f64 = 900.0;

/// With wall-clock event times, the average customer buys every `customers / rate` seconds
/// (a backlog at full speed is stamped at `BACKLOG_EVENTS_PER_SECOND`). Under the `rapid`
/// horizon every customer is a velocity burst: one line saying so, with a population that is
/// not.
fn burst_warning(rate: u64, count: Option<u64>, customers: usize) -> Option<String> {
    let events_per_s = match (rate, count) {
        (_, Some(0)) => return None,
        (0, Some(_)) => BACKLOG_EVENTS_PER_SECOND,
        (0, None) => return None, // as fast as the broker takes them: no rate to judge by
        (r, _) => r as f64,
    };
    let gap_s = customers.max(1) as f64 / events_per_s;
    (gap_s < RAPID_GAP_S).then(|| {
        format!(
            "warning: {customers} customers at {events_per_s:.0} events/s with wall-clock event times means each customer buys every {gap_s:.0} s on average, inside the fraud model's {RAPID_GAP_S:.0} s velocity window: every customer is a velocity burst and alerts will be inflated; use --customers {} or more, or --event-clock simulated",
            (events_per_s * RAPID_GAP_S).ceil() as u64
        )
    })
}

/// The population size at which `events` draws of the simulated event clock span about
/// `days` simulated days of each customer's life: `events / (days × mean daily rate)`. The
/// mean rate (well above the median for a mixed population, whose business accounts buy
/// dozens of times a day) is measured on the customers the simulator would build for this
/// seed: customer i is the same whatever the population's size.
fn customers_for_days(seed: u64, population: &Population, events: u64, days: f64) -> usize {
    let per_day = events as f64 / days;
    let probe =
        ((per_day / population.daily_median.max(1e-3)).ceil() as usize).clamp(1_000, 2_000_000);
    let sim = Simulator::new(
        seed,
        SimConfig {
            customers: probe,
            population: population.clone(),
            ..SimConfig::default()
        },
    );
    let mean_daily = sim.daily_events() / probe as f64;
    ((per_day / mean_daily).round() as usize).max(1)
}

/// Produce realistic transaction events (keyed by customer) to Kafka at a steady rate.
#[derive(Parser)]
#[command(name = "sluice-loadgen", version)]
struct Args {
    /// Kafka bootstrap servers.
    #[arg(long, env = "KAFKA_BOOTSTRAP", default_value = "127.0.0.1:9092")]
    brokers: String,
    /// Topic to produce to (created with --partitions if missing).
    #[arg(long, default_value = "transactions")]
    topic: String,
    /// Partitions for a topic that does not exist yet.
    #[arg(long, default_value_t = 8)]
    partitions: i32,
    /// Events per second; 0 produces as fast as possible.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// How long to run, e.g. 60s, 5m, 500ms.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Stop after this many events.
    #[arg(long)]
    count: Option<u64>,
    /// Seed of the generator: the same seed gives the same events.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Number of distinct customers (default 100,000, or the --regime's size).
    #[arg(long)]
    customers: Option<usize>,
    /// With `--event-clock simulated`, instead of --customers: size the population so that
    /// the stream (--count, or --rate × --duration) spans about this many simulated days of
    /// each customer's life, e.g. 3.5, so customers have history and buy at their own pace.
    #[arg(long, conflicts_with = "customers")]
    simulated_days: Option<f64>,
    /// Share of events that are injected fraud scenarios (0..1), labeled in --labels.
    #[arg(long, default_value_t = 0.01)]
    fraud_rate: f64,
    /// Write each valid event's label (fraud scenario or not) as JSON lines to this file.
    #[arg(long)]
    labels: Option<std::path::PathBuf>,
    /// Share of records that break the contract (0..1).
    #[arg(long, default_value_t = 0.01)]
    invalid_ratio: f64,
    /// Share of records repeating an earlier one (0..1).
    #[arg(long, default_value_t = 0.01)]
    duplicate_ratio: f64,
    /// Prefix of transaction ids, so separate runs never collide.
    #[arg(long, default_value = "tx")]
    id_prefix: String,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
    /// Event times: `wall` stamps each event when it is produced; `simulated` spaces the
    /// simulator's draws so that every customer buys at its own daily rate, as the offline
    /// evaluation does, ending a little before now, whatever --rate is (which still paces
    /// production on the wall clock). See --simulated-days.
    #[arg(long, value_enum, default_value_t = ClockKind::Wall)]
    event_clock: ClockKind,
    /// Median purchases per customer per day (each customer's own rate is drawn around it).
    #[arg(long, default_value_t = 3.0)]
    per_customer_daily: f64,
    /// Who the customers are: `mixed` (rates from a few a month to dozens a day, some
    /// business accounts, explorers and travellers) or `uniform` (everyone at
    /// --per-customer-daily).
    #[arg(long, value_enum, default_value_t = PopulationKind::Mixed)]
    population: PopulationKind,
    /// One of the fraud evaluation's traffic regimes (standard, busy, quiet, business,
    /// explorers, travellers, mixed, million): its population and size, instead of
    /// --population and --per-customer-daily.
    #[arg(long)]
    regime: Option<String>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum PopulationKind {
    Mixed,
    Uniform,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ClockKind {
    Wall,
    Simulated,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(
        s.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len()),
    );
    let n: f64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("unknown unit in {s:?} (use ms, s, m, h)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.duration.is_some() || args.count.is_some(),
        "give --duration or --count"
    );
    anyhow::ensure!(
        (0.0..=1.0).contains(&(args.invalid_ratio + args.duplicate_ratio)),
        "ratios must sum to at most 1"
    );
    anyhow::ensure!(
        args.per_customer_daily > 0.0,
        "--per-customer-daily must be positive"
    );
    let (default_customers, population) = match &args.regime {
        Some(name) => {
            let regime =
                regime(name).ok_or_else(|| anyhow::anyhow!("unknown --regime {name:?}"))?;
            (regime.customers, regime.population)
        }
        None => (
            100_000,
            match args.population {
                PopulationKind::Mixed => Population::mixed(args.per_customer_daily),
                PopulationKind::Uniform => Population::uniform(args.per_customer_daily),
            },
        ),
    };
    let customers = match (args.customers, args.simulated_days) {
        (Some(n), _) => n,
        (None, Some(days)) => {
            anyhow::ensure!(
                matches!(args.event_clock, ClockKind::Simulated),
                "--simulated-days needs --event-clock simulated"
            );
            anyhow::ensure!(days > 0.0, "--simulated-days must be positive");
            let events = planned_events(args.count, args.duration, args.rate)
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    anyhow::anyhow!("--simulated-days needs --count, or --rate and --duration")
                })?;
            customers_for_days(args.seed, &population, events, days)
        }
        (None, None) => default_customers,
    };
    ensure_topic(&args.brokers, &args.topic, args.partitions).await?;
    let event_clock = match args.event_clock {
        ClockKind::Wall => {
            if let Some(warning) = burst_warning(args.rate, args.count, customers) {
                eprintln!("{warning}");
            }
            EventClock::Wall
        }
        ClockKind::Simulated => EventClock::Simulated,
    };
    let spec = LoadSpec {
        brokers: args.brokers,
        topic: args.topic,
        rate: args.rate,
        duration: args.duration,
        count: args.count,
        generator: GeneratorConfig {
            seed: args.seed,
            customers,
            population,
            fraud_rate: args.fraud_rate,
            invalid_ratio: args.invalid_ratio,
            duplicate_ratio: args.duplicate_ratio,
            id_prefix: args.id_prefix,
            event_clock,
        },
        progress: !args.quiet,
        collect_ids: false,
        labels: args.labels,
    };
    let summary = tokio::task::spawn_blocking(move || produce(&spec)).await??;
    // With the simulated clock, how much of the customers' lives the stream covered (its
    // draws: every valid and invalid record, not the duplicates).
    let simulated = summary
        .daily_events
        .map(|daily| {
            format!(
                " daily_events={daily:.0} simulated_days={:.2}",
                (summary.valid + summary.invalid) as f64 / daily
            )
        })
        .unwrap_or_default();
    println!(
        "produced={} valid={} invalid={} duplicates={} seconds={:.2} rate={:.0}/s customers={customers}{simulated}",
        summary.produced,
        summary.valid,
        summary.invalid,
        summary.duplicates,
        summary.elapsed.as_secs_f64(),
        summary.produced as f64 / summary.elapsed.as_secs_f64().max(1e-9)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{Population, SimConfig, Simulator, burst_warning, customers_for_days};

    /// The demo's sizing: 300,000 events over 3.5 simulated days of the mixed population
    /// (median 3 a day, mean about 6) is some 14,000 customers, and the population built
    /// from that size does span about 3.5 days.
    #[test]
    fn sizes_the_population_to_a_span_of_simulated_days() {
        let population = Population::mixed(3.0);
        let n = customers_for_days(1, &population, 300_000, 3.5);
        assert!((12_000..17_000).contains(&n), "{n}");
        let sim = Simulator::new(
            1,
            SimConfig {
                customers: n,
                population,
                ..SimConfig::default()
            },
        );
        let days = 300_000.0 / sim.daily_events();
        assert!((days - 3.5).abs() < 0.1, "{days}");
        // Everyone at the median: the median is the mean.
        let uniform = customers_for_days(1, &Population::uniform(3.0), 300_000, 5.0);
        assert_eq!(uniform, 20_000);
    }

    #[test]
    fn warns_when_every_customer_is_a_burst() {
        // The old demo: 100,000 customers at 5,000/s buy every 20 s.
        let w = burst_warning(5_000, None, 100_000).expect("a warning");
        assert!(
            w.contains("every 20 s") && w.contains("--customers 4500000"),
            "{w}"
        );
        assert!(burst_warning(5_000, None, 4_500_000).is_none());
        // A full-speed backlog is stamped at 2,000/s.
        assert!(burst_warning(0, Some(1_000), 1_000_000).is_some());
        assert!(burst_warning(0, Some(1_000), 2_000_000).is_none());
        // Nothing produced (topic creation only), or no rate to judge by.
        assert!(burst_warning(1, Some(0), 1).is_none());
        assert!(burst_warning(0, None, 1).is_none());
    }
}
