//! Events for the load generator: realistic traffic from the fraud simulator (customers with
//! habits, merchants by category, a small share of labeled fraud scenarios and hard
//! negatives), plus a configurable share of contract-breaking records and byte-for-byte
//! duplicates. Labels never enter the events; they are returned beside them.

use chrono::{DateTime, SecondsFormat, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sluice_api::Transaction;
use sluice_fraud::{Label, SimConfig, Simulator};

#[derive(Debug, Clone)]
pub struct GeneratorConfig {
    pub seed: u64,
    pub customers: usize,
    /// Share of events that are injected fraud scenarios (labeled).
    pub fraud_rate: f64,
    /// Share of records that break the contract (malformed, wrong types, bad values…).
    pub invalid_ratio: f64,
    /// Share of records that repeat an earlier valid record byte for byte.
    pub duplicate_ratio: f64,
    /// Prefix of every transaction id, so runs never collide.
    pub id_prefix: String,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            customers: 100_000,
            fraud_rate: 0.01,
            invalid_ratio: 0.01,
            duplicate_ratio: 0.01,
            id_prefix: "tx".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    Valid,
    Invalid,
    Duplicate,
}

pub struct Event {
    pub key: String,
    pub payload: Vec<u8>,
    pub kind: EventKind,
    /// Transaction id of a valid or duplicate event.
    pub transaction_id: Option<String>,
    /// What the simulator meant by a valid event (fraud scenario, hard negative…).
    pub label: Option<Label>,
}

pub struct Generator {
    rng: StdRng,
    config: GeneratorConfig,
    sim: Simulator,
    recent: Vec<(String, Vec<u8>, String)>,
    seq: u64,
}

impl Generator {
    pub fn new(config: GeneratorConfig) -> Self {
        let sim = Simulator::new(
            config.seed,
            SimConfig { customers: config.customers.max(1), fraud_rate: config.fraud_rate, ..SimConfig::default() },
        );
        Self { rng: StdRng::seed_from_u64(config.seed ^ 0x5eed), config, sim, recent: Vec::new(), seq: 0 }
    }

    /// The next event, with event time `now`.
    pub fn next(&mut self, now: DateTime<Utc>) -> Event {
        let roll: f64 = self.rng.random();
        if roll < self.config.duplicate_ratio && !self.recent.is_empty() {
            let (key, payload, id) = self.recent[self.rng.random_range(0..self.recent.len())].clone();
            return Event { key, payload, kind: EventKind::Duplicate, transaction_id: Some(id), label: None };
        }
        let (mut tx, label) = self.sim.next_event(now.timestamp_millis());
        self.seq += 1;
        tx.transaction_id = format!("{}-{}-{:010}", self.config.id_prefix, self.config.seed, self.seq);
        tx.timestamp = now.to_rfc3339_opts(SecondsFormat::Millis, true);
        if roll < self.config.duplicate_ratio + self.config.invalid_ratio {
            let payload = self.corrupt(&tx, now);
            return Event { key: tx.customer_id, payload, kind: EventKind::Invalid, transaction_id: None, label: None };
        }
        let payload = serde_json::to_vec(&tx).expect("serialisable");
        let entry = (tx.customer_id.clone(), payload.clone(), tx.transaction_id.clone());
        if self.recent.len() < 10_000 {
            self.recent.push(entry);
        } else {
            let slot = self.rng.random_range(0..self.recent.len());
            self.recent[slot] = entry;
        }
        Event { key: tx.customer_id, payload, kind: EventKind::Valid, transaction_id: Some(tx.transaction_id), label: Some(label) }
    }

    /// One of the ways real producers break the contract.
    fn corrupt(&mut self, tx: &Transaction, now: DateTime<Utc>) -> Vec<u8> {
        let mut v = serde_json::to_value(tx).expect("serialisable");
        match self.rng.random_range(0..7) {
            0 => return b"{\"transaction_id\": \"broken".to_vec(),
            1 => v["amount"] = serde_json::json!(-(tx.amount)),
            2 => v["currency"] = serde_json::json!("XXZ"),
            3 => {
                v.as_object_mut().expect("object").remove("customer_id");
            }
            4 => v["amount"] = serde_json::json!(tx.amount.to_string()),
            5 => v["timestamp"] = serde_json::json!((now + chrono::Duration::days(2)).to_rfc3339()),
            _ => v["items"] = serde_json::json!(0),
        }
        if self.rng.random_bool(0.5) {
            // a card number pasted into a rejected record must never be stored unmasked
            v["note"] = serde_json::json!("card 4111 1111 1111 1111");
        }
        serde_json::to_vec(&v).expect("serialisable")
    }
}
