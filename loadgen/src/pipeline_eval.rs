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
                top_reason: top_reasons.get(&tx_row.transaction_id).copied().flatten(),
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
    let cents: i64 = row.try_get(4)?;
    let event_time: DateTime<Utc> = row.try_get(6)?;
    let payment_method: String = row.try_get(7)?;
    let channel: Option<String> = row.try_get(8)?;
    let tx = Transaction {
        transaction_id: row.try_get(0)?,
        customer_id: row.try_get(1)?,
        merchant_id: row.try_get(2)?,
        merchant_category: row.try_get(3)?,
        amount: cents as f64 / 100.0,
        currency: row.try_get(5)?,
        timestamp: event_time.to_rfc3339(),
        payment_method: serde_json::from_value(text(payment_method))
            .context("stored payment_method")?,
        channel: channel
            .map(|c| serde_json::from_value(text(c)))
            .transpose()
            .context("stored channel")?,
        country: row.try_get(9)?,
        shipping_country: row.try_get(10)?,
        card_last4: row.try_get(11)?,
        card_fingerprint: row.try_get(12)?,
        device_id: row.try_get(13)?,
        ip_address: row.try_get(14)?,
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
