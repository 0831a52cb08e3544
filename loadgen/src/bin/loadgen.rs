//! `sluice-loadgen --rate R --duration D`: contract events for a sluice pipeline.

use anyhow::Result;
use clap::Parser;
use sluice_fraud::sim::{Population, regimes};
use sluice_loadgen::produce::BACKLOG_EVENTS_PER_SECOND;
use sluice_loadgen::{EventClock, GeneratorConfig, LoadSpec, ensure_topic, produce};
use std::time::Duration;

/// The fraud features' burst horizon: `rapid` (sluice_fraud::features) fires when one
/// customer's purchases are less than 900 s apart, stronger the shorter the gap, and the
/// shortest velocity counter decays in 60 s. A customer who buys every few minutes looks
/// like a burst on every purchase, whoever they are.
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
    /// evaluation does, ending a little before now, whatever --rate is.
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
    let (customers, population) = match &args.regime {
        Some(name) => {
            let regime = regimes()
                .into_iter()
                .find(|r| r.name == name)
                .ok_or_else(|| anyhow::anyhow!("unknown --regime {name:?}"))?;
            (
                args.customers.unwrap_or(regime.customers),
                regime.population,
            )
        }
        None => (
            args.customers.unwrap_or(100_000),
            match args.population {
                PopulationKind::Mixed => Population::mixed(args.per_customer_daily),
                PopulationKind::Uniform => Population::uniform(args.per_customer_daily),
            },
        ),
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
    println!(
        "produced={} valid={} invalid={} duplicates={} seconds={:.2} rate={:.0}/s",
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
    use super::burst_warning;

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
