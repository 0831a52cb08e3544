//! `sluice-eval-e2e` (run by `make eval`): scores what the pipeline stored against the load
//! generator's labels side file, beside a rules-only baseline on the same stream, and writes
//! `target/eval/report.json` ({overall, scenarios, baseline, …, offline}).

use anyhow::{Context, Result};
use clap::Parser;
use sluice_api::config::FraudConfig;
use sluice_fraud::eval::Metrics;
use sluice_loadgen::pipeline_eval::{PipelineReport, evaluate, handled, read_labels};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    about = "Precision/recall/FPR/PR-AUC of the fraud verdicts a sluice pipeline stored, per scenario and overall"
)]
struct Args {
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    /// Schema of the pipeline's tables.
    #[arg(long, default_value = "sluice")]
    schema: String,
    /// Labels side file written by `sluice-loadgen --labels`.
    #[arg(long, default_value = "target/eval/labels.jsonl")]
    labels: PathBuf,
    /// First labels (produce order) that only build customer history.
    #[arg(long, default_value_t = 400_000)]
    warmup: usize,
    /// Wait until the pipeline has handled this many records (stored + rejected) first.
    #[arg(long)]
    expect_handled: Option<i64>,
    #[arg(long, default_value_t = 1800)]
    timeout_secs: u64,
    /// Give up when the handled count has not moved for this long (a dead worker).
    #[arg(long, default_value_t = 120)]
    stall_secs: u64,
    /// `sluice-eval`'s report, embedded under "offline" and compared.
    #[arg(long)]
    offline: Option<PathBuf>,
    #[arg(long, default_value = "target/eval/report.json")]
    out: PathBuf,
    /// `make demo`'s compact form: flagged against injected fraud, precision, recall and
    /// false alarms, in a few lines. Writes no report, and evaluates what landed even when
    /// the wait for --expect-handled gives up (saying so).
    #[arg(long)]
    summary: bool,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let a = Args::parse();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&a.database_url)
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
    let report = evaluate(&pool, &a.schema, &labels, a.warmup, &FraudConfig::default()).await?;
    if a.summary {
        print!("{}", report.render_summary());
        return Ok(());
    }
    print!("{}", report.render());
    let bars = bars(&report);
    println!("{}", bars.0);

    let mut json = serde_json::to_value(&report)?;
    json["bars"] = bars.1;
    if let Some(path) = &a.offline {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let offline: serde_json::Value = serde_json::from_str(&text)?;
        println!("{}", compare(&report.overall, &offline["overall"]));
        json["offline"] = offline;
    }
    if let Some(dir) = a.out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&a.out, serde_json::to_string_pretty(&json)? + "\n")
        .with_context(|| format!("writing {}", a.out.display()))?;
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
