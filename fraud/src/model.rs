//! The transparent model: a logistic regression over [`FEATURES`], its weights in a
//! versioned JSON file (`fraud/model/v2.json`, embedded as the default), and the
//! [`Scorer`] that turns one transaction into a [`Verdict`] with named reasons.

use crate::features::{FEATURES, Features, NUM_FEATURES, Observation};
use crate::store::ProfileStore;
use serde::{Deserialize, Serialize};
use sluice_api::Transaction;
use sluice_api::config::FraudConfig;
use smallvec::SmallVec;
use std::collections::BTreeMap;
use std::path::Path;

/// The model shipped with the crate.
pub const DEFAULT_MODEL_JSON: &str = include_str!("../model/v2.json");

/// Weights as stored on disk. Unknown or missing feature names are errors, so a model file
/// never silently scores with a feature switched off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelFile {
    pub version: String,
    /// How the weights were obtained (training seed, evaluation seed, data).
    pub provenance: String,
    pub bias: f64,
    /// A rule is named as a reason when its features add at least this much to the logit.
    pub reason_min_logit: f64,
    pub weights: BTreeMap<String, f64>,
    /// Typical ln(amount) of each merchant category relative to all purchases, estimated
    /// from traffic; unknown categories count as 0.
    #[serde(default)]
    pub category_log_price: BTreeMap<String, f64>,
}

/// Logistic model: score = σ(bias + Σ wᵢ·xᵢ).
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub version: String,
    pub bias: f64,
    pub weights: [f64; NUM_FEATURES],
    pub reason_min_logit: f64,
    pub category_log_price: BTreeMap<String, f64>,
}

impl Model {
    /// The observation of `tx` with its amount priced against its category.
    pub fn observation(
        &self,
        tx: &Transaction,
        event_time_ms: i64,
        amount_cents: i64,
    ) -> Observation {
        let price = tx
            .merchant_category
            .as_deref()
            .and_then(|c| self.category_log_price.get(c))
            .copied()
            .unwrap_or(0.0);
        Observation::new(tx, event_time_ms, amount_cents).priced(price)
    }

    pub fn from_json(text: &str) -> anyhow::Result<Self> {
        let file: ModelFile = serde_json::from_str(text)?;
        let mut weights = [0.0; NUM_FEATURES];
        for (name, w) in &file.weights {
            let i = FEATURES
                .iter()
                .position(|(n, _)| n == name)
                .ok_or_else(|| anyhow::anyhow!("model {}: unknown feature {name}", file.version))?;
            weights[i] = *w;
        }
        if let Some((n, _)) = FEATURES
            .iter()
            .find(|(n, _)| !file.weights.contains_key(*n))
        {
            anyhow::bail!("model {}: no weight for feature {n}", file.version);
        }
        Ok(Self {
            version: file.version,
            bias: file.bias,
            weights,
            reason_min_logit: file.reason_min_logit,
            category_log_price: file.category_log_price,
        })
    }

    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading model {}: {e}", path.display()))?;
        Self::from_json(&text)
    }

    pub fn to_file(&self, provenance: &str) -> ModelFile {
        ModelFile {
            version: self.version.clone(),
            provenance: provenance.to_string(),
            bias: self.bias,
            reason_min_logit: self.reason_min_logit,
            weights: FEATURES
                .iter()
                .zip(self.weights)
                .map(|((n, _), w)| (n.to_string(), w))
                .collect(),
            category_log_price: self.category_log_price.clone(),
        }
    }
}

impl Default for Model {
    fn default() -> Self {
        Self::from_json(DEFAULT_MODEL_JSON).expect("embedded model is valid")
    }
}

/// A verdict's reasons; more than four spill to the heap.
pub type Reasons = SmallVec<[&'static str; 4]>;

/// The outcome for one transaction.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// Fraud probability estimate in [0, 1].
    pub score: f64,
    /// Rules that pushed the score up most, strongest first. Inline for the usual few, so a
    /// verdict costs no allocation.
    pub reasons: Reasons,
    pub flagged: bool,
}

/// Scores transactions against their customers' profiles and updates the profiles.
#[derive(Debug, Clone)]
pub struct Scorer {
    model: Model,
    config: FraudConfig,
    enabled: [bool; NUM_FEATURES],
}

impl Scorer {
    pub fn new(model: Model, config: FraudConfig) -> Self {
        let mut s = Self {
            model,
            config: FraudConfig::default(),
            enabled: [true; NUM_FEATURES],
        };
        s.set_config(config);
        s
    }

    /// Applies new switches (threshold, disabled rules, enabled) without losing state.
    pub fn set_config(&mut self, config: FraudConfig) {
        for (i, (_, rule)) in FEATURES.iter().enumerate() {
            self.enabled[i] = !config.disabled_rules.iter().any(|r| r == rule);
        }
        self.config = config;
    }

    pub fn config(&self) -> &FraudConfig {
        &self.config
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Scores `tx` against its customer's past, then folds it into the profile (which
    /// becomes dirty). Call in partition order. When scoring is disabled the profile is
    /// still updated, so switching it back on needs no warm-up.
    pub fn score(
        &self,
        store: &mut ProfileStore,
        tx: &Transaction,
        event_time_ms: i64,
        amount_cents: i64,
    ) -> Verdict {
        let o = self.model.observation(tx, event_time_ms, amount_cents);
        let profile = store.entry(&tx.customer_id);
        let f = Features::extract(profile, &o);
        profile.observe(&o);
        if !self.config.enabled {
            return Verdict {
                score: 0.0,
                reasons: Reasons::new(),
                flagged: false,
            };
        }
        self.verdict(&f)
    }

    /// The verdict for already extracted features.
    pub fn verdict(&self, f: &Features) -> Verdict {
        let mut logit = self.model.bias;
        // Contributions per rule, in FEATURES order; on the stack, as a verdict is per event.
        let mut by_rule: SmallVec<[(&'static str, f64); NUM_FEATURES]> = SmallVec::new();
        for (i, (_, rule)) in FEATURES.iter().enumerate() {
            if !self.enabled[i] || f.x[i] == 0.0 {
                continue;
            }
            let c = self.model.weights[i] * f.x[i];
            logit += c;
            match by_rule.iter_mut().find(|(r, _)| r == rule) {
                Some(e) => e.1 += c,
                None => by_rule.push((rule, c)),
            }
        }
        let score = 1.0 / (1.0 + (-logit).exp());
        by_rule.retain(|(_, c)| *c >= self.model.reason_min_logit);
        by_rule.sort_by(|a, b| b.1.total_cmp(&a.1));
        Verdict {
            score,
            reasons: by_rule.into_iter().map(|(r, _)| r).collect(),
            flagged: score >= self.config.threshold,
        }
    }
}

impl Default for Scorer {
    fn default() -> Self {
        Self::new(Model::default(), FraudConfig::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::{CLOCK_START_MS, event_time_ms};
    use crate::sim::{SimConfig, Simulator};

    /// A customer's habitual history followed by an account takeover.
    fn history_then(takeover: bool) -> Vec<(Transaction, i64, i64)> {
        let mut sim = Simulator::new(5, SimConfig::no_fraud(1));
        let mut out = Vec::new();
        for i in 0..60 {
            let (tx, _) = sim.next_event(CLOCK_START_MS + i * 8 * 3_600_000);
            out.push(tx);
        }
        if takeover {
            let mut tx = out.last().cloned().expect("history");
            tx.transaction_id = "ato".into();
            tx.device_id = Some("d-attacker".into());
            tx.country = "BR".into();
            tx.shipping_country = Some("BR".into());
            tx.merchant_id = "m-unknown".into();
            tx.merchant_category = Some("electronics".into());
            tx.amount = 2_400.0;
            tx.latitude = Some(-23.5);
            tx.longitude = Some(-46.6);
            tx.timestamp =
                crate::sim::rfc3339(CLOCK_START_MS + 60 * 8 * 3_600_000 - 1_800_000).into();
            out.push(tx);
        }
        out.into_iter()
            .map(|tx| {
                let t = event_time_ms(&tx.timestamp).expect("valid timestamp");
                let cents = (tx.amount * 100.0).round() as i64;
                (tx, t, cents)
            })
            .collect()
    }

    fn last_verdict(scorer: &Scorer, events: &[(Transaction, i64, i64)]) -> Verdict {
        let mut store = ProfileStore::new(10);
        let mut v = None;
        for (tx, t, c) in events {
            v = Some(scorer.score(&mut store, tx, *t, *c));
        }
        v.expect("events")
    }

    #[test]
    fn embedded_model_loads_and_rejects_unknown_features() {
        let m = Model::default();
        assert_eq!(m.version, "v2");
        let mut file = m.to_file("test");
        file.weights.insert("bogus".into(), 1.0);
        assert!(Model::from_json(&serde_json::to_string(&file).unwrap()).is_err());
        file.weights.remove("bogus");
        file.weights.remove("new_device");
        assert!(Model::from_json(&serde_json::to_string(&file).unwrap()).is_err());
    }

    #[test]
    fn takeover_is_flagged_with_reasons_and_history_is_not() {
        let scorer = Scorer::default();
        let quiet = last_verdict(&scorer, &history_then(false));
        assert!(!quiet.flagged, "{quiet:?}");
        let v = last_verdict(&scorer, &history_then(true));
        assert!(v.flagged && v.score > 0.9, "{v:?}");
        assert!(
            v.reasons.contains(&"new_device_new_country_high_amount")
                || v.reasons.contains(&"new_device"),
            "{v:?}"
        );
        assert!((0.0..=1.0).contains(&v.score));
    }

    #[test]
    fn config_switches_apply_at_runtime() {
        let events = history_then(true);
        let mut scorer = Scorer::default();
        let before = last_verdict(&scorer, &events);
        let rules: Vec<String> = before.reasons.iter().map(|r| r.to_string()).collect();
        scorer.set_config(FraudConfig {
            disabled_rules: rules,
            ..FraudConfig::default()
        });
        let after = last_verdict(&scorer, &events);
        assert!(after.score < before.score);
        assert!(after.reasons.iter().all(|r| !before.reasons.contains(r)));

        scorer.set_config(FraudConfig {
            threshold: 1.1,
            ..FraudConfig::default()
        });
        assert!(!last_verdict(&scorer, &events).flagged);

        scorer.set_config(FraudConfig {
            enabled: false,
            ..FraudConfig::default()
        });
        let mut store = ProfileStore::new(10);
        let (tx, t, c) = &events[0];
        let v = scorer.score(&mut store, tx, *t, *c);
        assert_eq!((v.score, v.flagged), (0.0, false));
        assert_eq!(
            store.get(&tx.customer_id).map(|p| p.count),
            Some(1),
            "state still learns"
        );
    }

    /// A customer's verdicts do not depend on other customers' events in the partition.
    #[test]
    fn verdicts_depend_only_on_the_customers_own_past() {
        let mut sim = Simulator::new(
            9,
            SimConfig {
                customers: 50,
                fraud_rate: 0.05,
                ..SimConfig::default()
            },
        );
        let events: Vec<_> = (0..3_000)
            .map(|i| {
                let (tx, _) = sim.next_event(CLOCK_START_MS + i * 60_000);
                let t = event_time_ms(&tx.timestamp).expect("valid");
                let c = (tx.amount * 100.0).round() as i64;
                (tx, t, c)
            })
            .collect();
        let scorer = Scorer::default();
        let mut all = ProfileStore::new(100);
        let mixed: Vec<f64> = events
            .iter()
            .map(|(tx, t, c)| scorer.score(&mut all, tx, *t, *c).score)
            .collect();
        let target = &events[0].0.customer_id;
        let mut alone = ProfileStore::new(100);
        for (i, (tx, t, c)) in events.iter().enumerate() {
            if tx.customer_id == *target {
                assert_eq!(scorer.score(&mut alone, tx, *t, *c).score, mixed[i]);
            }
        }
    }
}
