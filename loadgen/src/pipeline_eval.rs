//! End-to-end fraud evaluation: what the *pipeline* stored, scored against the load
//! generator's labels side file. Same metrics as the offline evaluation
//! ([`sluice_fraud::eval`]), computed from `transactions.fraud_score` / `is_fraud` and
//! `fraud_alerts.reasons`.
//!
//! The rules-only baseline is computed on the same stream: the stored rows are replayed in
//! event-time order (a customer's events are in Kafka partition order, which for one customer
//! is event-time order) through the same feature extractor, and
//! [`baseline_rules`] reads each event's features before the event is folded into its
//! customer's profile, exactly as offline. The same replay also scores every row with the
//! model in one process, which shows whether the pipeline (batches, restarts, partition
//! moves, profile persistence) scored exactly as an uninterrupted, in-order scorer would.

use anyhow::{Context, Result, ensure};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sluice_api::Transaction;
use sluice_api::config::FraudConfig;
use sluice_api::event::CompactString;
use sluice_fraud::eval::{
    DetectorReport, HardNegative, Metrics, Outcome, baseline_rules, detector,
    false_positive_reasons, hard_negatives, reasons_by_scenario, render_quality,
};
use sluice_fraud::features::{FEATURES, Features};
use sluice_fraud::sim::{HARD_NEGATIVES, INVALID_KINDS, SCENARIOS};
use sluice_fraud::{Label, Model, ProfileStore, Scorer};
use sqlx::{PgPool, Row};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// How the baseline is computed, for the report.
pub const BASELINE_METHOD: &str = "stored rows replayed in event-time order through the fraud crate's feature extractor; \
    baseline_rules on each event's features before it joins its customer's profile (as offline)";

/// `{overall, scenarios, baseline}` of the pipeline's stored verdicts, plus what shows that
/// nothing was dropped.
#[derive(Debug, Clone, Serialize)]
pub struct PipelineReport {
    pub overall: Metrics,
    pub scenarios: BTreeMap<String, Metrics>,
    pub baseline: DetectorReport,
    pub hard_negatives: BTreeMap<String, HardNegative>,
    pub false_positive_reasons: BTreeMap<String, usize>,
    pub reasons_by_scenario: BTreeMap<String, BTreeMap<String, usize>>,
    pub counts: Counts,
    pub replay: Replay,
    pub baseline_method: &'static str,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    /// Lines of the labels file: the valid events produced (duplicates and broken records
    /// have none).
    pub labels: usize,
    /// The first labels in produce order: replayed to build history, not counted.
    pub warmup: usize,
    /// Labeled events evaluated (stored, after the warm-up).
    pub counted: usize,
    pub fraud_events: usize,
    pub stored_rows: usize,
    /// Labels without a stored row, and stored rows without a label: both should be 0.
    pub missing_rows: usize,
    pub unlabeled_rows: usize,
    /// Stored rows with no fraud score (scoring off): counted as score 0.
    pub unscored_rows: usize,
    pub flagged_rows: usize,
    pub alerts: usize,
    pub rejected: usize,
}

/// The stored verdicts against one uninterrupted, in-order replay of the same rows.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Replay {
    pub model_version: String,
    pub rows: usize,
    /// Rows whose stored score differs from the replay's by more than 1e-9.
    pub score_mismatches: usize,
    pub flag_mismatches: usize,
    pub max_abs_score_diff: f64,
}

impl PipelineReport {
    /// The table: model beside the baseline, overall and per scenario, then the counts.
    pub fn render(&self) -> String {
        let c = &self.counts;
        let r = &self.replay;
        let mut s = format!(
            "end-to-end (stored by the pipeline): {} labeled events ({} warm-up), {} counted, {} fraud\n",
            c.labels, c.warmup, c.counted, c.fraud_events
        );
        s += &render_quality(
            &self.overall,
            &self.scenarios,
            &self.baseline,
            &self.hard_negatives,
            &self.false_positive_reasons,
        );
        s += &format!(
            "rows: {} stored, {} labels missing, {} unlabeled, {} unscored; {} flagged, {} alerts, {} rejected\n",
            c.stored_rows,
            c.missing_rows,
            c.unlabeled_rows,
            c.unscored_rows,
            c.flagged_rows,
            c.alerts,
            c.rejected
        );
        s += &format!(
            "in-order replay of the stored rows ({}): {} score and {} flag mismatches (max |diff| {:.2e})\n",
            r.model_version, r.score_mismatches, r.flag_mismatches, r.max_abs_score_diff
        );
        s
    }

    /// A few lines for `make demo`: what the pipeline flagged against what was injected
    /// (counted events only), and whether labels and rows matched.
    pub fn render_summary(&self) -> String {
        let c = &self.counts;
        let m = &self.overall;
        let pct = |a: usize, b: usize| {
            if b == 0 {
                0.0
            } else {
                100.0 * a as f64 / b as f64
            }
        };
        let legitimate = c.counted.saturating_sub(m.positives);
        let flagged = m.true_positives + m.false_positives;
        let ratio = if m.positives == 0 {
            "no fraud injected".to_string()
        } else {
            format!(
                "{:.2}x the injected share",
                flagged as f64 / m.positives as f64
            )
        };
        let mut s = format!(
            "fraud against the injected labels ({} labeled events{}):\n",
            thousands(c.counted),
            if c.warmup > 0 {
                format!(" after {} warm-up", thousands(c.warmup))
            } else {
                String::new()
            }
        );
        s += &format!(
            "  injected fraud   {:>8} ({:.2}% of events)\n",
            thousands(m.positives),
            pct(m.positives, c.counted)
        );
        s += &format!(
            "  flagged          {:>8} ({:.2}% of events, {ratio})\n",
            thousands(flagged),
            pct(flagged, c.counted)
        );
        s += &format!(
            "  caught           {:>8} (recall {:.3}, precision {:.3})\n",
            thousands(m.true_positives),
            m.recall,
            m.precision
        );
        s += &format!(
            "  false alarms     {:>8} ({:.3}% of {} legitimate events)\n",
            thousands(m.false_positives),
            100.0 * m.fpr,
            thousands(legitimate)
        );
        let recalls: Vec<String> = self
            .scenarios
            .iter()
            .filter(|(_, sm)| sm.positives > 0)
            .map(|(name, sm)| {
                format!(
                    "{name} {}/{} ({:.2})",
                    sm.true_positives, sm.positives, sm.recall
                )
            })
            .collect();
        if !recalls.is_empty() {
            s += &format!("  caught by scenario: {}\n", recalls.join(", "));
        }
        let mut reasons: Vec<(&String, &usize)> = self.false_positive_reasons.iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        if !reasons.is_empty() {
            let top: Vec<String> = reasons
                .iter()
                .take(4)
                .map(|(reason, n)| format!("{reason} {}", thousands(**n)))
                .collect();
            s += &format!("  false alarms by strongest reason: {}\n", top.join(", "));
        }
        if !self.complete() {
            s += &format!(
                "  labels vs rows: {} labels without a stored row, {} stored rows without a label\n",
                c.missing_rows, c.unlabeled_rows
            );
        }
        s
    }

    /// Labels and rows match one to one.
    pub fn complete(&self) -> bool {
        self.counts.missing_rows == 0 && self.counts.unlabeled_rows == 0
    }
}

/// 1234567 → "1,234,567".
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

/// Reads a labels side file (`--labels`), in produce order.
pub fn read_labels(path: &Path) -> Result<Vec<(String, Label)>> {
    #[derive(serde::Deserialize)]
    struct Line {
        transaction_id: String,
        label: RawLabel,
    }
    #[derive(serde::Deserialize)]
    struct RawLabel {
        fraud: bool,
        scenario: Option<String>,
        hard_negative: Option<String>,
        invalid: Option<String>,
    }
    fn known(name: Option<String>, names: &[&'static str]) -> Result<Option<&'static str>> {
        name.map(|n| {
            names
                .iter()
                .copied()
                .find(|k| *k == n)
                .with_context(|| format!("unknown label name {n:?}"))
        })
        .transpose()
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            let line: Line =
                serde_json::from_str(l).with_context(|| format!("{}:{}", path.display(), i + 1))?;
            let label = Label {
                fraud: line.label.fraud,
                scenario: known(line.label.scenario, &SCENARIOS)?,
                hard_negative: known(line.label.hard_negative, &HARD_NEGATIVES)?,
                invalid: known(line.label.invalid, &INVALID_KINDS)?,
            };
            Ok((line.transaction_id, label))
        })
        .collect()
}

/// The simulator draw a load-generator transaction id carries: the generator names draw `k`
/// (counting valid and broken records, not duplicates) `{prefix}-{seed}-{k:010}`
/// ([`crate::Generator`]). `None` for ids of another shape.
pub fn draw_of(transaction_id: &str) -> Option<u64> {
    let (_, digits) = transaction_id.rsplit_once('-')?;
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// How many labels (in produce order) belong to the generator's first `draws` simulator
/// draws: with the simulated event clock those draws are exactly the events `sluice-eval`
/// runs as its warm-up of `draws` events on the same seed and population, whatever share of
/// them the generator broke or repeated.
pub fn warmup_of_draws(labels: &[(String, Label)], draws: u64) -> Result<usize> {
    let mut warmup = 0;
    let mut previous = 0;
    for (id, _) in labels {
        let draw = draw_of(id).with_context(|| {
            format!(
                "transaction id {id:?} carries no generator draw number (give --warmup instead)"
            )
        })?;
        ensure!(
            draw > previous,
            "labels are not in draw order ({id:?} after draw {previous})"
        );
        previous = draw;
        if draw <= draws {
            warmup += 1;
        }
    }
    Ok(warmup)
}

/// `make eval`'s tables from the merged report (`{regimes: {name: regime report}, …}`, see
/// `sluice-eval-e2e merge`): one line per regime, end to end beside the rules-only baseline
/// and the offline figures of the same regime, then per regime one line per scenario.
pub fn render_regimes(merged: &serde_json::Value) -> String {
    use serde_json::Value;
    use std::fmt::Write;
    let num = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    let count = |v: &Value| v.as_u64().map_or("-".to_string(), |n| n.to_string());
    let min_recall = |scenarios: &Value| {
        scenarios
            .as_object()
            .map(|m| {
                m.values()
                    .map(|s| num(&s["recall"]))
                    .fold(f64::INFINITY, f64::min)
            })
            .unwrap_or(f64::NAN)
    };
    let empty = serde_json::Map::new();
    let regimes = merged["regimes"].as_object().unwrap_or(&empty);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "fraud detection per regime, seed {}: end to end (verdicts the pipeline stored) beside the rules-only baseline on the same stream, and offline (simulator -> scorer, same seed and warm-up); model {} fitted on seed {} of {}",
        count(&merged["seed"]),
        merged["model_version"].as_str().unwrap_or("?"),
        count(&merged["fit_seed"]),
        merged["fit_regimes"]
            .as_array()
            .map(|a| a
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", "))
            .unwrap_or_default(),
    );
    let _ = writeln!(
        s,
        "{:<11} {:>3} {:>8} {:>6} | {:>6} {:>6} {:>7} {:>6} {:>6} | {:>6} {:>6} {:>7} | {:>6} {:>6} {:>7} {:>6} {:>6} | bars",
        "regime",
        "fit",
        "counted",
        "fraud",
        "prec",
        "recall",
        "fpr",
        "pr_auc",
        "min.sc",
        "b.prec",
        "b.rec",
        "b.fpr",
        "o.prec",
        "o.rec",
        "o.fpr",
        "o.auc",
        "o.min"
    );
    for (name, r) in regimes {
        let (m, b, o) = (&r["overall"], &r["baseline"]["overall"], &r["offline"]);
        let om = &o["report"]["overall"];
        let bars = r["bars"].as_object();
        let met = bars.map_or(0, |b| {
            b.values().filter(|v| v.as_bool() == Some(true)).count()
        });
        let _ = writeln!(
            s,
            "{:<11} {:>3} {:>8} {:>6} | {:>6.3} {:>6.3} {:>7.4} {:>6.3} {:>6.3} | {:>6.3} {:>6.3} {:>7.4} | {:>6.3} {:>6.3} {:>7.4} {:>6.3} {:>6.3} | {}/{}",
            name,
            match o["fitted_on"].as_bool() {
                Some(true) => "yes",
                Some(false) => "no",
                None => "?",
            },
            count(&r["counts"]["counted"]),
            count(&m["positives"]),
            num(&m["precision"]),
            num(&m["recall"]),
            num(&m["fpr"]),
            num(&m["pr_auc"]),
            min_recall(&r["scenarios"]),
            num(&b["precision"]),
            num(&b["recall"]),
            num(&b["fpr"]),
            num(&om["precision"]),
            num(&om["recall"]),
            num(&om["fpr"]),
            num(&om["pr_auc"]),
            num(&o["min_scenario_recall"]),
            met,
            bars.map_or(0, |b| b.len()),
        );
    }
    let _ = writeln!(
        s,
        "counted: events after the offline run's warm-up; min.sc: lowest scenario recall; b.*: rules-only baseline; o.*: offline, o.min its lowest scenario recall; bars: the issue's bars met (precision >= 0.90, recall >= 0.90, fpr <= 0.005, every scenario's recall >= 0.85)"
    );
    let _ = writeln!(
        s,
        "per scenario (its fraud against all legitimate events): fraud, recall, pr_auc end to end | baseline recall, pr_auc | offline fraud, recall, pr_auc"
    );
    for (name, r) in regimes {
        let _ = writeln!(
            s,
            "\n{:<18} {:>6} {:>6} {:>6} | {:>6} {:>6} | {:>6} {:>6} {:>6}",
            format!("{name}: scenario"),
            "fraud",
            "recall",
            "pr_auc",
            "b.rec",
            "b.auc",
            "o.frd",
            "o.rec",
            "o.auc"
        );
        let offline = &r["offline"]["report"]["scenarios"];
        for (scenario, m) in r["scenarios"].as_object().unwrap_or(&empty) {
            let b = &r["baseline"]["scenarios"][scenario];
            let o = &offline[scenario];
            let _ = writeln!(
                s,
                "{:<18} {:>6} {:>6.3} {:>6.3} | {:>6.3} {:>6.3} | {:>6} {:>6.3} {:>6.3}",
                scenario,
                count(&m["positives"]),
                num(&m["recall"]),
                num(&m["pr_auc"]),
                num(&b["recall"]),
                num(&b["pr_auc"]),
                count(&o["positives"]),
                num(&o["recall"]),
                num(&o["pr_auc"]),
            );
        }
        let missed: Vec<&str> = r["bars"]
            .as_object()
            .map(|b| {
                b.iter()
                    .filter(|(_, ok)| ok.as_bool() != Some(true))
                    .map(|(n, _)| n.as_str())
                    .collect()
            })
            .unwrap_or_default();
        let c = &r["counts"];
        let _ = writeln!(
            s,
            "{name}: {} labeled events ({} warm-up), {} stored rows, {} labels without a row, {} rows without a label, {} rejected; in-order replay: {} score and {} flag mismatches{}",
            count(&c["labels"]),
            count(&c["warmup"]),
            count(&c["stored_rows"]),
            count(&c["missing_rows"]),
            count(&c["unlabeled_rows"]),
            count(&c["rejected"]),
            count(&r["replay"]["score_mismatches"]),
            count(&r["replay"]["flag_mismatches"]),
            if missed.is_empty() {
                String::new()
            } else {
                format!("; bars missed: {}", missed.join(", "))
            }
        );
    }
    s
}

/// Records the pipeline has handled: stored rows plus rejections.
pub async fn handled(pool: &PgPool, schema: &str) -> Result<i64> {
    check_schema(schema)?;
    let sql = format!(
        "SELECT (SELECT count(*) FROM {schema}.transactions) + (SELECT count(*) FROM {schema}.rejected_transactions)"
    );
    Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_one(pool)
        .await?)
}

fn check_schema(schema: &str) -> Result<()> {
    ensure!(
        !schema.is_empty()
            && schema
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "schema {schema:?} is not a plain identifier"
    );
    Ok(())
}

/// Evaluates what the pipeline stored in `schema` against `labels` (in produce order); the
/// first `warmup` labels build history and are not counted. `fraud` is the configuration
/// the worker ran with (for the replay check only: the verdicts evaluated are the stored ones).
pub async fn evaluate(
    pool: &PgPool,
    schema: &str,
    labels: &[(String, Label)],
    warmup: usize,
    fraud: &FraudConfig,
) -> Result<PipelineReport> {
    check_schema(schema)?;
    let index: HashMap<&str, usize> = labels
        .iter()
        .enumerate()
        .map(|(i, (id, _))| (id.as_str(), i))
        .collect();
    ensure!(
        index.len() == labels.len(),
        "the labels file repeats transaction ids"
    );
    let top_reasons = top_alert_reasons(pool, schema).await?;
    let mut counts = Counts {
        labels: labels.len(),
        warmup: warmup.min(labels.len()),
        ..Counts::default()
    };
    counts.alerts = top_reasons.len();
    counts.rejected = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {schema}.rejected_transactions"
    )))
    .fetch_one(pool)
    .await? as usize;

    let scorer = Scorer::new(Model::default(), fraud.clone());
    let mut store = ProfileStore::new(labels.len() + 1);
    let mut replay = Replay {
        model_version: scorer.model().version.clone(),
        ..Replay::default()
    };
    let mut seen = vec![false; labels.len()];
    let mut out = Vec::with_capacity(labels.len().saturating_sub(warmup));

    // A cursor keeps client memory flat however many rows there are.
    let mut tx = pool.begin().await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DECLARE stored NO SCROLL CURSOR FOR
         SELECT transaction_id, customer_id, merchant_id, merchant_category, (amount * 100)::bigint, currency,
                event_time, payment_method, channel, country, shipping_country, card_last4, card_fingerprint,
                device_id, ip_address, latitude, longitude, account_age_days, items, fraud_score, is_fraud
         FROM {schema}.transactions ORDER BY event_time, transaction_id"
    )))
    .execute(&mut *tx)
    .await?;
    loop {
        let rows = sqlx::raw_sql("FETCH 20000 FROM stored")
            .fetch_all(&mut *tx)
            .await?;
        if rows.is_empty() {
            break;
        }
        for row in rows {
            let (tx_row, cents, event_time) = transaction(&row)?;
            let stored_score: Option<f64> = row.try_get(19)?;
            let stored_flag: bool = row.try_get(20)?;
            counts.stored_rows += 1;
            counts.unscored_rows += usize::from(stored_score.is_none());
            counts.flagged_rows += usize::from(stored_flag);

            let t = event_time.timestamp_millis();
            let o = scorer.model().observation(&tx_row, t, cents);
            let profile = store.entry(&tx_row.customer_id);
            let f = Features::extract(profile, &o);
            profile.observe(&o);
            let base = baseline_rules(&f);
            if let Some(stored) = stored_score {
                let v = scorer.verdict(&f);
                let diff = (v.score - stored).abs();
                replay.rows += 1;
                replay.score_mismatches += usize::from(diff > 1e-9);
                replay.flag_mismatches += usize::from(v.flagged != stored_flag);
                replay.max_abs_score_diff = replay.max_abs_score_diff.max(diff);
            }

            let Some(&i) = index.get(tx_row.transaction_id.as_str()) else {
                counts.unlabeled_rows += 1;
                continue;
            };
            seen[i] = true;
            if i < warmup {
                continue;
            }
            out.push(Outcome {
                score: stored_score.unwrap_or(0.0),
                flagged: stored_flag,
                baseline: base,
                label: labels[i].1,
                top_reason: top_reasons
                    .get(tx_row.transaction_id.as_str())
                    .copied()
                    .flatten(),
            });
        }
    }
    tx.commit().await?;
    counts.missing_rows = seen.iter().filter(|s| !**s).count();
    counts.counted = out.len();
    counts.fraud_events = out.iter().filter(|o| o.label.fraud).count();

    let model = detector(&out, false);
    Ok(PipelineReport {
        overall: model.overall,
        scenarios: model.scenarios,
        baseline: detector(&out, true),
        hard_negatives: hard_negatives(&out),
        false_positive_reasons: false_positive_reasons(&out),
        reasons_by_scenario: reasons_by_scenario(&out),
        counts,
        replay,
        baseline_method: BASELINE_METHOD,
    })
}

/// First (strongest) reason of every alert, as the fraud crate's static rule name.
async fn top_alert_reasons(
    pool: &PgPool,
    schema: &str,
) -> Result<HashMap<String, Option<&'static str>>> {
    let rows: Vec<(String, Option<String>)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT transaction_id, reasons[1] FROM {schema}.fraud_alerts"
    )))
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, reason)| {
            let known = reason.map(|r| {
                FEATURES
                    .iter()
                    .map(|(_, rule)| *rule)
                    .find(|k| *k == r)
                    .unwrap_or("other")
            });
            (id, known)
        })
        .collect())
}

/// A stored row as the contract event the worker scored, its amount in cents and event time.
fn transaction(row: &sqlx::postgres::PgRow) -> Result<(Transaction, i64, DateTime<Utc>)> {
    let text = |v: String| serde_json::Value::String(v);
    let s = |i: usize| row.try_get::<String, _>(i).map(CompactString::from);
    let opt = |i: usize| {
        row.try_get::<Option<String>, _>(i)
            .map(|v| v.map(CompactString::from))
    };
    let cents: i64 = row.try_get(4)?;
    let event_time: DateTime<Utc> = row.try_get(6)?;
    let payment_method: String = row.try_get(7)?;
    let channel: Option<String> = row.try_get(8)?;
    let tx = Transaction {
        transaction_id: s(0)?,
        customer_id: s(1)?,
        merchant_id: s(2)?,
        merchant_category: opt(3)?,
        amount: cents as f64 / 100.0,
        currency: s(5)?,
        timestamp: event_time.to_rfc3339().into(),
        payment_method: serde_json::from_value(text(payment_method))
            .context("stored payment_method")?,
        channel: channel
            .map(|c| serde_json::from_value(text(c)))
            .transpose()
            .context("stored channel")?,
        country: s(9)?,
        shipping_country: opt(10)?,
        card_last4: opt(11)?,
        card_fingerprint: opt(12)?,
        device_id: opt(13)?,
        ip_address: opt(14)?,
        latitude: row.try_get(15)?,
        longitude: row.try_get(16)?,
        account_age_days: row.try_get::<Option<i32>, _>(17)?.map(|d| d.max(0) as u32),
        items: row.try_get::<Option<i32>, _>(18)?.map(|d| d.max(0) as u32),
    };
    Ok((tx, cents, event_time))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every valid event's id carries its simulator draw, broken records taking a draw and
    /// duplicates none, so a warm-up of N draws is the labels of the first N draws.
    #[test]
    fn ids_carry_the_generator_draw() {
        use crate::{EventClock, EventKind, Generator, GeneratorConfig};
        let mut g = Generator::new(GeneratorConfig {
            seed: 3,
            customers: 300,
            invalid_ratio: 0.2,
            duplicate_ratio: 0.1,
            id_prefix: "eval-x".into(),
            event_clock: EventClock::Simulated,
            ..GeneratorConfig::default()
        });
        let (mut draws, mut labels, mut within_100) = (0, Vec::new(), 0);
        for _ in 0..2_000 {
            let e = g.next(Utc::now());
            if e.kind == EventKind::Duplicate {
                continue;
            }
            draws += 1;
            if let (EventKind::Valid, Some(id), Some(label)) = (e.kind, e.transaction_id, e.label) {
                assert_eq!(draw_of(&id), Some(draws), "{id}");
                within_100 += usize::from(draws <= 100);
                labels.push((id, label));
            }
        }
        assert!(labels.len() > 1_000 && within_100 < 100, "{within_100}");
        assert_eq!(
            warmup_of_draws(&labels, 100).expect("generator ids"),
            within_100
        );
        assert_eq!(warmup_of_draws(&labels, 0).expect("generator ids"), 0);
        assert_eq!(draw_of("4daa5459-0392-8523-6673-5dbc0e66b2e5"), None);
        assert_eq!(draw_of("12345"), None);
        let foreign = vec![("order-17".to_string(), labels[0].1)];
        assert_eq!(warmup_of_draws(&foreign, 100).expect("a draw"), 1);
        let uuid = vec![(
            "4daa5459-0392-8523-6673-5dbc0e66b2e5".to_string(),
            labels[0].1,
        )];
        assert!(warmup_of_draws(&uuid, 100).is_err());
    }

    /// The merged report's tables: one line per regime, end to end beside baseline and
    /// offline, then the scenarios.
    #[test]
    fn renders_regimes_beside_offline() {
        let m = |precision: f64, recall: f64| Metrics {
            precision,
            recall,
            fpr: 0.0007,
            pr_auc: 0.95,
            positives: 500,
            ..Metrics::default()
        };
        let report = PipelineReport {
            overall: m(0.93, 0.91),
            scenarios: [
                ("card_testing".to_string(), m(0.7, 0.97)),
                ("velocity_burst".to_string(), m(0.6, 0.79)),
            ]
            .into(),
            baseline: DetectorReport {
                overall: m(0.06, 0.75),
                scenarios: BTreeMap::new(),
            },
            hard_negatives: BTreeMap::new(),
            false_positive_reasons: BTreeMap::new(),
            reasons_by_scenario: BTreeMap::new(),
            counts: Counts {
                labels: 1_000,
                counted: 900,
                ..Counts::default()
            },
            replay: Replay::default(),
            baseline_method: BASELINE_METHOD,
        };
        let mut regime = serde_json::to_value(&report).expect("serialisable");
        regime["bars"] = serde_json::json!({"overall recall >= 0.90": true, "velocity_burst recall >= 0.85": false});
        regime["offline"] = serde_json::json!({
            "regime": "mixed", "fitted_on": false, "min_scenario_recall": 0.791,
            "report": {"overall": m(0.925, 0.909), "scenarios": {"card_testing": m(0.7, 0.974)}}
        });
        let merged = serde_json::json!({
            "regimes": {"mixed": regime}, "fit_regimes": ["standard", "busy"], "fit_seed": 1,
            "seed": 2, "model_version": "v2"
        });
        let s = render_regimes(&merged);
        assert!(
            s.contains("model v2 fitted on seed 1 of standard, busy"),
            "{s}"
        );
        assert!(
            s.contains("mixed        no      900    500 |  0.930  0.910  0.0007  0.950  0.790 |  0.060  0.750  0.0007 |  0.925  0.909  0.0007  0.950  0.791 | 1/2"),
            "{s}"
        );
        assert!(
            s.contains(
                "card_testing          500  0.970  0.950 |    NaN    NaN |    500  0.974  0.950"
            ),
            "{s}"
        );
        assert!(
            s.contains("bars missed: velocity_burst recall >= 0.85"),
            "{s}"
        );
    }

    #[test]
    fn summary_sets_flagged_against_injected() {
        let overall = Metrics {
            precision: 0.8,
            recall: 0.5,
            fpr: 100.0 / 98_000.0,
            positives: 2_000,
            true_positives: 1_000,
            false_positives: 250,
            ..Metrics::default()
        };
        let report = PipelineReport {
            overall,
            scenarios: BTreeMap::new(),
            baseline: DetectorReport::default(),
            hard_negatives: BTreeMap::new(),
            false_positive_reasons: [("new_device".to_string(), 200), ("rapid".to_string(), 50)]
                .into(),
            reasons_by_scenario: BTreeMap::new(),
            counts: Counts {
                labels: 100_000,
                counted: 100_000,
                ..Counts::default()
            },
            replay: Replay::default(),
            baseline_method: BASELINE_METHOD,
        };
        let s = report.render_summary();
        assert!(s.contains("(100,000 labeled events)"), "{s}");
        assert!(s.contains("2,000 (2.00% of events)"), "{s}");
        assert!(
            s.contains("1,250 (1.25% of events, 0.62x the injected share)"),
            "{s}"
        );
        assert!(
            s.contains("250 (0.102% of 98,000 legitimate events)"),
            "{s}"
        );
        assert!(
            s.contains("strongest reason: new_device 200, rapid 50"),
            "{s}"
        );
        assert!(!s.contains("labels vs rows"), "{s}");
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
