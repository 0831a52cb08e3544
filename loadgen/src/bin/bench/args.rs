//! `sluice-bench`'s command line.

use clap::Parser;
use sluice_loadgen::EventClock;
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "sluice-bench")]
pub struct Args {
    #[arg(long, env = "KAFKA_BOOTSTRAP")]
    pub brokers: String,
    /// Admin URL of the Postgres cluster (a fresh database is created in it).
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
    /// Events pre-produced before the worker starts.
    #[arg(long, default_value_t = 1_000_000)]
    pub backlog: u64,
    /// Event times of the backlog. `wall`: the moment each event is produced, so the whole
    /// backlog spans seconds, every customer buys many times a second and velocity rules flag
    /// about a third of it (an alert storm). `simulated`: ~3 purchases per customer per day,
    /// as in `make eval` (about 1% flagged), over the days before now: the traffic a
    /// pipeline that was down that long would find waiting.
    #[arg(long, env = "BENCH_BACKLOG_CLOCK", default_value = "wall", value_parser = ["simulated", "wall"])]
    pub backlog_clock: String,
    /// Events of each warm-up round drained (into a database dropped after) before the
    /// measured backlog drain, so the broker runs warmed as a long-running one would; 0
    /// skips the warm-up.
    #[arg(long, env = "BENCH_WARMUP_EVENTS", default_value_t = 1_000_000)]
    pub warmup_events: u64,
    /// Most warm-up rounds: they go on until the broker's JIT compiler threads used at most
    /// 0.05 cores through a round's drain, or this many rounds ran.
    #[arg(long, env = "BENCH_WARMUP_ROUNDS", default_value_t = 3)]
    pub warmup_rounds: u32,
    /// Drains of the backlog, each with its replay by raw COPY (the bar's ratio): the first
    /// on the bench database, the others on databases of their own ([`super::drain_pairs`]);
    /// the report pools them.
    #[arg(long, env = "BENCH_DRAIN_PAIRS", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    pub drain_pairs: u32,
    /// Rows for the raw COPY baseline.
    #[arg(long, default_value_t = 300_000)]
    pub copy_rows: usize,
    /// Offered rate of the first latency phase (`latency_ms` in the report).
    #[arg(long, default_value_t = 2_000)]
    pub latency_rate: u64,
    /// Offered rate of the second latency phase; 0 skips it.
    #[arg(long, env = "BENCH_LATENCY_RATE_HIGH", default_value_t = 10_000)]
    pub latency_rate_high: u64,
    /// Steady-state seconds of each latency phase (after its warm-up).
    #[arg(long, default_value_t = 30)]
    pub latency_seconds: u64,
    /// Seconds each latency phase offers its rate before the steady state: reported apart
    /// as the start-up.
    #[arg(long, default_value_t = 10)]
    pub latency_warmup_seconds: u64,
    /// `VACUUM (ANALYZE)` the bench database before each latency phase, so the maintenance
    /// the backlog drain left owing (a 1M-row table's first autovacuum) is paid before the
    /// phase, not during it; `false` leaves it to autovacuum.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub latency_vacuum_first: bool,
    #[arg(long, default_value_t = 8)]
    pub partitions: i32,
    /// Events per drain of the scoring off/on comparison; 0 skips the comparison.
    #[arg(long, env = "BENCH_SCORING_COMPARE_EVENTS", default_value_t = 250_000)]
    pub scoring_compare_events: u64,
    /// Rounds of the comparison; a round drains once with scoring off and once with it on,
    /// in the order off,on | on,off | off,on … so a steady drift of the machine cancels out.
    #[arg(long, env = "BENCH_SCORING_COMPARE_ROUNDS", default_value_t = 2)]
    pub scoring_compare_rounds: u32,
    /// Event times of the comparison's stream. `simulated`: ~3 purchases per customer per
    /// day, as in `make eval` (about 1% flagged). `wall`: the backlog's compressed span, where
    /// every customer buys many times a minute and velocity rules flag ~9%.
    #[arg(long, env = "BENCH_SCORING_COMPARE_CLOCK", default_value = "simulated", value_parser = ["simulated", "wall"])]
    pub scoring_compare_clock: String,
    /// Events per drain of the scaling curve; 0 skips it. Producing them takes about 3 s of
    /// each drain: enough events that the span after that stays several seconds long.
    #[arg(long, env = "BENCH_SCALING_EVENTS", default_value_t = 500_000)]
    pub scaling_events: u64,
    /// Partition counts the scaling curve drains one worker over (one topic each).
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8")]
    pub scaling_partitions: Vec<i32>,
    /// Worker counts the scaling curve tries on the largest partition count.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    pub scaling_workers: Vec<usize>,
    /// Directory of the sluice-worker binary.
    #[arg(long, env = "SLUICE_BIN_DIR")]
    pub bin_dir: PathBuf,
    #[arg(long, default_value = "target/bench")]
    pub out: PathBuf,
}

impl Args {
    /// The URL of database `name` in the cluster of `--database-url`.
    pub fn database_url_of(&self, name: &str) -> String {
        let base = &self.database_url[..self.database_url.rfind('/').expect("db url has a path")];
        format!("{base}/{name}")
    }
}

/// The generator's event clock named by `--backlog-clock` or `--scoring-compare-clock`.
pub fn event_clock(name: &str) -> EventClock {
    match name {
        "wall" => EventClock::Wall,
        _ => EventClock::Simulated,
    }
}

/// How the latency phases' headings name the vacuum before them.
pub fn vacuum_first(args: &Args) -> &'static str {
    if args.latency_vacuum_first {
        "VACUUM (ANALYZE), "
    } else {
        ""
    }
}
