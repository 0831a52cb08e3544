//! `sluice-eval-e2e` (run by `make eval`, once per traffic regime): scores what the pipeline
//! stored against the load generator's labels side file, beside a rules-only baseline on the
//! same stream and the offline figures of the same regime, and writes one regime's report
//! ({overall, scenarios, baseline, …, offline}). `plan` tells `make eval` what to produce
//! for a regime so that the warm-up and counted events are the offline ones; `merge` joins
//! the regimes' reports into `target/eval/report.json` ({regimes: {name: report}, …}) and
//! prints the tables.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use sluice_api::config::FraudConfig;
use sluice_fraud::eval::Metrics;
use sluice_fraud::{SimConfig, Simulator};
use sluice_loadgen::pipeline_eval::{
    PipelineReport, evaluate, handled, read_labels, render_regimes, warmup_of_draws,
};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    about = "Precision/recall/FPR/PR-AUC of the fraud verdicts a sluice pipeline stored, per scenario and overall",
    subcommand_negates_reqs = true,
    args_conflicts_with_subcommands = true
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    #[arg(long, env = "DATABASE_URL", required = true)]
    database_url: Option<String>,
    /// Schema of the pipeline's tables.
    #[arg(long, default_value = "sluice")]
    schema: String,
    /// Labels side file written by `sluice-loadgen --labels`.
    #[arg(long, default_value = "target/eval/labels.jsonl")]
    labels: PathBuf,
    /// First labels (produce order) that only build customer history.
    #[arg(long, default_value_t = 400_000)]
    warmup: usize,
    /// Instead of --warmup: the labels of the generator's first N simulator draws (broken
    /// records included, duplicates not) build history, as `sluice-eval`'s warm-up of N
    /// events does on the same seed and population. Needs the generator's transaction ids.
    #[arg(long, conflicts_with = "warmup")]
    warmup_draws: Option<u64>,
    /// Wait until the pipeline has handled this many records (stored + rejected) first.
    #[arg(long)]
    expect_handled: Option<i64>,
    #[arg(long, default_value_t = 1800)]
    timeout_secs: u64,
    /// Give up when the handled count has not moved for this long (a dead worker).
    #[arg(long, default_value_t = 120)]
    stall_secs: u64,
    /// `sluice-eval`'s report: the --regime's entry is embedded under "offline" and compared.
    #[arg(long)]
    offline: Option<PathBuf>,
    /// Traffic regime of the stream (as `sluice-loadgen --regime`); needed with --offline
    /// when that report holds more than one regime.
    #[arg(long)]
    regime: Option<String>,
    #[arg(long, default_value = "target/eval/report.json")]
    out: PathBuf,
    /// `make demo`'s compact form: flagged against injected fraud, precision, recall and
    /// false alarms, in a few lines. Writes no report, and evaluates what landed even when
    /// the wait for --expect-handled gives up (saying so).
    #[arg(long)]
    summary: bool,
}

#[derive(Subcommand)]
enum Command {
    /// What `make eval` produces for one regime, as shell assignments: the offline run's
    /// warm-up (`warmup_draws`) and counted `events`, the `customers`, the records to produce
    /// (`count`, duplicates included, so that the draws cover both), the simulated days they
    /// span and the worker's `retention_days` that keeps the oldest of them.
    Plan {
        /// `sluice-eval`'s report (seed, customers, warm-up and events per regime).
        #[arg(long)]
        offline: PathBuf,
        #[arg(long)]
        regime: String,
        /// `sluice-loadgen --duplicate-ratio`: duplicates take no draw.
        #[arg(long, default_value_t = 0.01)]
        duplicate_ratio: f64,
    },
    /// Joins regime reports into one ({regimes: {name: report}, fit_regimes, fit_seed, seed,
    /// model_version}) and prints the tables; fails when a regime's labels and stored rows
    /// do not match one to one.
    Merge {
        /// `sluice-eval`'s report, for the fit's provenance.
        #[arg(long)]
        offline: PathBuf,
        #[arg(long, default_value = "target/eval/report.json")]
        out: PathBuf,
        /// Regime reports written by `sluice-eval-e2e --regime R --out …`.
        #[arg(required = true)]
        reports: Vec<PathBuf>,
    },
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn write_json(path: &Path, json: &serde_json::Value) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, serde_json::to_string_pretty(json)? + "\n")
        .with_context(|| format!("writing {}", path.display()))
}

/// The entry of `regime` in `sluice-eval`'s report ({regimes: [...]}); with no regime named,
/// the only entry.
fn offline_entry<'a>(
    offline: &'a serde_json::Value,
    regime: Option<&str>,
) -> Result<&'a serde_json::Value> {
    let entries = offline["regimes"]
        .as_array()
        .context("the offline report has no \"regimes\" (run sluice-eval)")?;
    match regime {
        Some(name) => entries
            .iter()
            .find(|e| e["regime"] == name)
            .with_context(|| format!("the offline report has no regime {name:?}")),
        None if entries.len() == 1 => Ok(&entries[0]),
        None => anyhow::bail!(
            "the offline report holds {} regimes: give --regime",
            entries.len()
        ),
    }
}

fn plan(offline: &Path, regime: &str, duplicate_ratio: f64) -> Result<()> {
    anyhow::ensure!(
        (0.0..1.0).contains(&duplicate_ratio),
        "--duplicate-ratio must be in [0, 1)"
    );
    let report = read_json(offline)?;
    let entry = offline_entry(&report, Some(regime))?;
    let field = |v: &serde_json::Value, what: &str| {
        v.as_u64()
            .with_context(|| format!("offline report: {regime} has no {what}"))
    };
    let seed = field(&report["seed"], "seed")?;
    let warmup = field(&entry["warmup_events"], "warmup_events")?;
    let events = field(&entry["report"]["events"], "report.events")?;
    let customers = field(&entry["customers"], "customers")? as usize;
    let population = sluice_fraud::sim::regime(regime)
        .with_context(|| format!("unknown regime {regime:?}"))?
        .population;
    let daily = Simulator::new(
        seed,
        SimConfig {
            customers,
            population,
            ..SimConfig::default()
        },
    )
    .daily_events();
    let draws = warmup + events;
    let count = (draws as f64 / (1.0 - duplicate_ratio)).ceil() as u64;
    let days = draws as f64 / daily;
    // Whole days of event time back from now, plus the part day the stream ends in.
    let retention = (days.ceil() as u64 + 2).max(30);
    println!("seed={seed}");
    println!("warmup_draws={warmup}");
    println!("events={events}");
    println!("customers={customers}");
    println!("count={count}");
    println!("daily_events={daily:.0}");
    println!("simulated_days={days:.1}");
    println!("retention_days={retention}");
    Ok(())
}

fn merge(offline: &Path, out: &Path, reports: &[PathBuf]) -> Result<()> {
    let offline = read_json(offline)?;
    let mut regimes = serde_json::Map::new();
    let mut incomplete = Vec::new();
    for path in reports {
        let report = read_json(path)?;
        let name = report["regime"]
            .as_str()
            .with_context(|| format!("{} names no regime", path.display()))?
            .to_string();
        let c = &report["counts"];
        if c["missing_rows"] != 0 || c["unlabeled_rows"] != 0 {
            incomplete.push(format!(
                "{name} ({} labels without a row, {} rows without a label)",
                c["missing_rows"], c["unlabeled_rows"]
            ));
        }
        anyhow::ensure!(
            regimes.insert(name.clone(), report).is_none(),
            "two reports of regime {name}"
        );
    }
    let json = serde_json::json!({
        "regimes": regimes,
        "fit_regimes": offline["fit_regimes"],
        "fit_seed": offline["fit_seed"],
        "seed": offline["seed"],
        "model_version": offline["model_version"],
    });
    print!("{}", render_regimes(&json));
    write_json(out, &json)?;
    println!("wrote {}", out.display());
    anyhow::ensure!(
        incomplete.is_empty(),
        "labels and stored rows differ: {}",
        incomplete.join("; ")
    );
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let a = Args::parse();
    match &a.command {
        Some(Command::Plan {
            offline,
            regime,
            duplicate_ratio,
        }) => return plan(offline, regime, *duplicate_ratio),
        Some(Command::Merge {
            offline,
            out,
            reports,
        }) => return merge(offline, out, reports),
        None => {}
    }
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(a.database_url.as_deref().context("--database-url")?)
        .await?;
    if let Some(expected) = a.expect_handled {
        let started = Instant::now();
        let mut last = Instant::now();
        let (mut moved_at, mut previous) = (Instant::now(), -1);
        loop {
            let n = handled(&pool, &a.schema).await.unwrap_or(0);
            if n >= expected {
                eprintln!(
                    "handled {n} of {expected} records in {:.0}s",
                    started.elapsed().as_secs_f64()
                );
                break;
            }
            if n != previous {
                (moved_at, previous) = (Instant::now(), n);
            }
            let gave_up = if started.elapsed() >= Duration::from_secs(a.timeout_secs) {
                Some(format!(
                    "only {n} of {expected} records handled within {} s",
                    a.timeout_secs
                ))
            } else if moved_at.elapsed() >= Duration::from_secs(a.stall_secs) {
                Some(format!(
                    "stalled at {n} of {expected} handled records for {} s (is the worker running?)",
                    a.stall_secs
                ))
            } else {
                None
            };
            if let Some(why) = gave_up {
                anyhow::ensure!(a.summary, "{why}");
                eprintln!("warning: {why}; evaluating what landed");
                break;
            }
            if last.elapsed() > Duration::from_secs(15) {
                eprintln!("handled {n} of {expected} records");
                last = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let labels = read_labels(&a.labels)?;
    let warmup = match a.warmup_draws {
        Some(draws) => warmup_of_draws(&labels, draws)?,
        None => a.warmup,
    };
    let report = evaluate(&pool, &a.schema, &labels, warmup, &FraudConfig::default()).await?;
    if a.summary {
        print!("{}", report.render_summary());
        return Ok(());
    }
    print!("{}", report.render());
    let bars = bars(&report);
    println!("{}", bars.0);

    let mut json = serde_json::to_value(&report)?;
    json["bars"] = bars.1;
    if let Some(regime) = &a.regime {
        json["regime"] = regime.as_str().into();
    }
    if let Some(draws) = a.warmup_draws {
        json["counts"]["warmup_draws"] = draws.into();
    }
    if let Some(path) = &a.offline {
        let offline = read_json(path)?;
        let entry = offline_entry(&offline, a.regime.as_deref())?;
        println!("{}", compare(&report.overall, &entry["report"]["overall"]));
        if a.regime.is_none() {
            json["regime"] = entry["regime"].clone();
        }
        json["offline"] = entry.clone();
    }
    write_json(&a.out, &json)?;
    println!("wrote {}", a.out.display());
    anyhow::ensure!(
        report.complete(),
        "labels and stored rows differ: {} labels without a row, {} rows without a label",
        report.counts.missing_rows,
        report.counts.unlabeled_rows
    );
    Ok(())
}

/// The bars: overall precision ≥ 0.90 and recall ≥ 0.90 at FPR ≤ 0.5 %, every
/// scenario's recall ≥ 0.85.
fn bars(r: &PipelineReport) -> (String, serde_json::Value) {
    let mut checks = vec![
        (
            "overall precision >= 0.90".to_string(),
            r.overall.precision >= 0.90,
        ),
        (
            "overall recall >= 0.90".to_string(),
            r.overall.recall >= 0.90,
        ),
        ("overall fpr <= 0.005".to_string(), r.overall.fpr <= 0.005),
    ];
    for (name, m) in &r.scenarios {
        checks.push((format!("{name} recall >= 0.85"), m.recall >= 0.85));
    }
    let failed: Vec<&str> = checks
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(n, _)| n.as_str())
        .collect();
    let line = if failed.is_empty() {
        format!("bars: all {} met", checks.len())
    } else {
        format!(
            "bars: {} of {} met; missed: {}",
            checks.len() - failed.len(),
            checks.len(),
            failed.join(", ")
        )
    };
    (
        line,
        serde_json::Value::Object(checks.into_iter().map(|(n, ok)| (n, ok.into())).collect()),
    )
}

fn compare(e2e: &Metrics, offline: &serde_json::Value) -> String {
    let o = |k: &str| offline[k].as_f64().unwrap_or(f64::NAN);
    format!(
        "overall, end-to-end vs offline: precision {:.4} vs {:.4}, recall {:.4} vs {:.4}, fpr {:.5} vs {:.5}, pr_auc {:.4} vs {:.4}",
        e2e.precision,
        o("precision"),
        e2e.recall,
        o("recall"),
        e2e.fpr,
        o("fpr"),
        e2e.pr_auc,
        o("pr_auc")
    )
}
