//! `sluice-eval`: the offline fraud evaluation (`make eval-offline`; `make eval` runs it beside
//! the end-to-end one), and the fit that produces `fraud/model/v1.json`.

use anyhow::Context;
use clap::Parser;
use sluice_fraud::Model;
use sluice_fraud::eval::{
    EvalConfig, category_log_prices, evaluate, fit_logistic, render, training_rows,
};
use sluice_fraud::sim::SimConfig;
use std::path::PathBuf;

#[derive(Parser)]
#[command(about = "Scores labeled simulated traffic offline and reports precision/recall/PR-AUC")]
struct Args {
    /// Seed of the evaluated stream (the shipped model was fitted on another seed).
    #[arg(long, default_value_t = 2)]
    seed: u64,
    /// Events counted (after the warm-up).
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    /// Events run first to build customer history, not counted.
    #[arg(long, default_value_t = 400_000)]
    warmup: usize,
    #[arg(long, default_value_t = 20_000)]
    customers: usize,
    #[arg(long, default_value_t = 0.01)]
    fraud_rate: f64,
    #[arg(long, default_value_t = 0.5)]
    threshold: f64,
    /// Model file; the embedded v1 when absent.
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long, default_value = "target/eval/offline.json")]
    out: PathBuf,
    /// Bound the profile store (evicting idle customers, persisting and re-warming them
    /// as the worker does); unbounded when absent.
    #[arg(long)]
    store_capacity: Option<usize>,
    /// Skip the partition-move rerun.
    #[arg(long)]
    no_partition_move: bool,
    /// Weight of a fraud row in the fit relative to a legitimate one.
    #[arg(long, default_value_t = 1.0)]
    pos_weight: f64,
    /// Instead of evaluating, fit weights on `--seed` and write them to this path.
    #[arg(long)]
    fit: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let mut cfg = EvalConfig {
        seed: a.seed,
        events: a.events,
        warmup: a.warmup,
        sim: SimConfig {
            customers: a.customers,
            fraud_rate: a.fraud_rate,
            ..SimConfig::default()
        },
        ..EvalConfig::default()
    };
    cfg.fraud.threshold = a.threshold;
    cfg.store_capacity = a.store_capacity;
    if let Some(path) = a.fit {
        let mut model = Model {
            category_log_price: category_log_prices(&cfg),
            ..Model::default()
        };
        let rows = training_rows(&cfg, &model);
        (model.bias, model.weights) = fit_logistic(&rows, 1.0, a.pos_weight, 25);
        let provenance = format!(
            "L2 (lambda 1) logistic regression, fraud rows weighted {pw}, fitted on simulator seed {seed} \
             ({ev} events after {wu} warm-up, {cu} customers, fraud rate {fr}); category prices \
             estimated from the same stream. Reproduce: `sluice-eval --fit fraud/model/v1.json \
             --seed {seed} --events {ev} --pos-weight {pw}`. Evaluated by `sluice-eval` on seed 2, \
             a stream the fit never saw.",
            pw = a.pos_weight,
            seed = a.seed,
            ev = a.events,
            wu = a.warmup,
            cu = a.customers,
            fr = a.fraud_rate,
        );
        let text = serde_json::to_string_pretty(&model.to_file(&provenance))? + "\n";
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
        return Ok(());
    }
    let model = match &a.model {
        Some(p) => Model::load(p)?,
        None => Model::default(),
    };
    let report = evaluate(&cfg, model, !a.no_partition_move);
    print!("{}", render(&report));
    if let Some(dir) = a.out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&a.out, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| format!("writing {}", a.out.display()))?;
    println!("wrote {}", a.out.display());
    Ok(())
}
