//! Realistic-looking transaction events: a fixed population of customers (skewed activity,
//! home country, a couple of cards and devices) buying from merchants of several
//! categories, with log-normal amounts per category.

use chrono::{DateTime, SecondsFormat, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal, Zipf};
use sluice_api::{Channel, PaymentMethod, Transaction};

#[derive(Debug, Clone)]
pub struct GeneratorConfig {
    pub seed: u64,
    pub customers: usize,
    pub merchants: usize,
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
            merchants: 5_000,
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
}

struct Customer {
    id: String,
    country: &'static str,
    lat: f64,
    lon: f64,
    cards: [(String, String); 2],
    device: String,
    age_days: u32,
}

struct Merchant {
    id: String,
    category: usize,
}

const CATEGORIES: [(&str, f64, f64); 6] = [
    // name, median amount, log-sd
    ("grocery", 35.0, 0.6),
    ("electronics", 250.0, 0.9),
    ("travel", 400.0, 0.8),
    ("digital_goods", 12.0, 0.7),
    ("fashion", 70.0, 0.7),
    ("gift_cards", 50.0, 0.5),
];

const COUNTRIES: [(&str, &str, f64, f64); 8] = [
    ("US", "USD", 39.8, -98.6),
    ("DE", "EUR", 51.2, 10.4),
    ("FR", "EUR", 46.6, 2.2),
    ("GB", "GBP", 54.0, -2.5),
    ("NL", "EUR", 52.1, 5.3),
    ("CA", "CAD", 56.1, -106.3),
    ("JP", "JPY", 36.2, 138.3),
    ("BR", "BRL", -14.2, -51.9),
];

pub struct Generator {
    rng: StdRng,
    config: GeneratorConfig,
    customers: Vec<Customer>,
    merchants: Vec<Merchant>,
    activity: Zipf<f64>,
    amounts: Vec<LogNormal<f64>>,
    recent: Vec<(String, Vec<u8>, String)>,
    seq: u64,
}

impl Generator {
    pub fn new(config: GeneratorConfig) -> Self {
        let mut rng = StdRng::seed_from_u64(config.seed);
        let customers = (0..config.customers.max(1))
            .map(|i| {
                let (country, _, lat, lon) = COUNTRIES[rng.random_range(0..COUNTRIES.len())];
                let card = |rng: &mut StdRng| (format!("{:04}", rng.random_range(0..10_000)), format!("fp{:016x}", rng.random::<u64>()));
                Customer {
                    id: format!("c{i:07}"),
                    country,
                    lat: lat + rng.random_range(-3.0..3.0),
                    lon: lon + rng.random_range(-3.0..3.0),
                    cards: [card(&mut rng), card(&mut rng)],
                    device: format!("d{:012x}", rng.random::<u64>() >> 16),
                    age_days: rng.random_range(1..4000),
                }
            })
            .collect();
        let merchants = (0..config.merchants.max(1))
            .map(|i| Merchant { id: format!("m{i:05}"), category: rng.random_range(0..CATEGORIES.len()) })
            .collect();
        let amounts = CATEGORIES.iter().map(|(_, median, sd)| LogNormal::new(median.ln(), *sd).expect("valid")).collect();
        let activity = Zipf::new(config.customers.max(1) as f64, 0.8).expect("valid zipf");
        Self { rng, config, customers, merchants, activity, amounts, recent: Vec::new(), seq: 0 }
    }

    /// The next event, stamped at `now`.
    pub fn next(&mut self, now: DateTime<Utc>) -> Event {
        let roll: f64 = self.rng.random();
        if roll < self.config.duplicate_ratio && !self.recent.is_empty() {
            let (key, payload, id) = self.recent[self.rng.random_range(0..self.recent.len())].clone();
            return Event { key, payload, kind: EventKind::Duplicate, transaction_id: Some(id) };
        }
        let tx = self.transaction(now);
        if roll < self.config.duplicate_ratio + self.config.invalid_ratio {
            let payload = self.corrupt(&tx, now);
            return Event { key: tx.customer_id, payload, kind: EventKind::Invalid, transaction_id: None };
        }
        let payload = serde_json::to_vec(&tx).expect("serialisable");
        if self.recent.len() < 10_000 {
            self.recent.push((tx.customer_id.clone(), payload.clone(), tx.transaction_id.clone()));
        } else {
            let slot = self.rng.random_range(0..self.recent.len());
            self.recent[slot] = (tx.customer_id.clone(), payload.clone(), tx.transaction_id.clone());
        }
        Event { key: tx.customer_id, payload, kind: EventKind::Valid, transaction_id: Some(tx.transaction_id) }
    }

    fn transaction(&mut self, now: DateTime<Utc>) -> Transaction {
        let rng = &mut self.rng;
        let c = &self.customers[(self.activity.sample(rng) as usize).saturating_sub(1).min(self.customers.len() - 1)];
        let m = &self.merchants[rng.random_range(0..self.merchants.len())];
        let amount = (self.amounts[m.category].sample(rng).clamp(0.5, 50_000.0) * 100.0).round() / 100.0;
        let (last4, fingerprint) = &c.cards[usize::from(rng.random_bool(0.2))];
        let currency = COUNTRIES.iter().find(|x| x.0 == c.country).map_or("USD", |x| x.1);
        self.seq += 1;
        Transaction {
            transaction_id: format!("{}-{}-{:010}", self.config.id_prefix, self.config.seed, self.seq),
            customer_id: c.id.clone(),
            merchant_id: m.id.clone(),
            merchant_category: Some(CATEGORIES[m.category].0.into()),
            amount,
            currency: currency.into(),
            timestamp: now.to_rfc3339_opts(SecondsFormat::Millis, true),
            payment_method: PaymentMethod::ALL[rng.random_range(0..4)],
            channel: Some([Channel::Web, Channel::Mobile, Channel::Pos][rng.random_range(0..3)]),
            country: c.country.into(),
            shipping_country: Some(c.country.into()),
            card_last4: Some(last4.clone()),
            card_fingerprint: Some(fingerprint.clone()),
            device_id: Some(c.device.clone()),
            ip_address: Some(format!("10.{}.{}.{}", rng.random_range(0..256), rng.random_range(0..256), rng.random_range(1..255))),
            latitude: Some((c.lat * 1e4).round() / 1e4),
            longitude: Some((c.lon * 1e4).round() / 1e4),
            account_age_days: Some(c.age_days),
            items: Some(rng.random_range(1..6)),
        }
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
            // a card number glued into a field of a rejected record must be masked
            v["note"] = serde_json::json!("card 4111 1111 1111 1111");
        }
        serde_json::to_vec(&v).expect("serialisable")
    }
}
