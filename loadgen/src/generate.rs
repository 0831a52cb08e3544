//! Events for the load generator: realistic traffic from the fraud simulator (customers with
//! habits, merchants by category, a small share of labeled fraud scenarios and hard
//! negatives), plus a configurable share of contract-breaking records and byte-for-byte
//! duplicates. Labels never enter the events; they are returned beside them.

use chrono::{DateTime, SecondsFormat, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sluice_api::Transaction;
use sluice_fraud::eval::CLOCK_START_MS;
use sluice_fraud::sim::Population;
use sluice_fraud::{Label, SimConfig, Simulator};

const DAY_MS: i64 = 86_400_000;

/// How the generator stamps event times.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum EventClock {
    /// The time the caller passes to [`Generator::next`]: the wall clock (or, for a backlog
    /// produced at full speed, a compressed span ending now). At thousands of events per
    /// second every customer then buys several times a second.
    #[default]
    Wall,
    /// The offline evaluation's clock: simulator draw k is at `origin + k × step`, with
    /// `step = 86_400_000 / (sum of the customers' daily rates)` ms, whatever the
    /// production rate, so every customer buys at its own pace. The origin is a UTC
    /// midnight, so the events are exactly those of `sluice-eval` on the same seed and
    /// population, shifted by whole days. Duplicates repeat an earlier record and take no
    /// step.
    Simulated,
}

#[derive(Debug, Clone)]
pub struct GeneratorConfig {
    pub seed: u64,
    pub customers: usize,
    /// How often each customer buys, and what kinds of customers there are.
    pub population: Population,
    /// Share of events that are injected fraud scenarios (labeled).
    pub fraud_rate: f64,
    /// Share of records that break the contract (malformed, wrong types, bad values…).
    pub invalid_ratio: f64,
    /// Share of records that repeat an earlier valid record byte for byte.
    pub duplicate_ratio: f64,
    /// Prefix of every transaction id, so runs never collide.
    pub id_prefix: String,
    /// How events are stamped with their event time.
    pub event_clock: EventClock,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            customers: 100_000,
            population: Population::default(),
            fraud_rate: 0.01,
            invalid_ratio: 0.01,
            duplicate_ratio: 0.01,
            id_prefix: "tx".into(),
            event_clock: EventClock::Wall,
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
    /// Simulated clock: (origin, step) in ms; draw `seq` is at origin + seq × step.
    clock: Option<(i64, i64)>,
}

impl Generator {
    pub fn new(config: GeneratorConfig) -> Self {
        let sim = Simulator::new(
            config.seed,
            SimConfig {
                customers: config.customers.max(1),
                population: config.population.clone(),
                fraud_rate: config.fraud_rate,
                ..SimConfig::default()
            },
        );
        // Until the producer moves it, the simulated clock starts where the offline one does.
        let clock = match config.event_clock {
            EventClock::Wall => None,
            EventClock::Simulated => Some((CLOCK_START_MS, sim.step_ms())),
        };
        Self {
            rng: StdRng::seed_from_u64(config.seed ^ 0x5eed),
            config,
            sim,
            recent: Vec::new(),
            seq: 0,
            clock,
        }
    }

    /// With the simulated clock: move its origin to the latest UTC midnight from which
    /// `draws` more simulator draws end at or before `end`. Returns the time of the first
    /// draw; `None` with the wall clock. Call it before the first event: the clock must not
    /// run backwards within a customer's history.
    pub fn end_simulated_clock_at(
        &mut self,
        draws: u64,
        end: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let (origin, step) = self.clock.as_mut()?;
        let latest = end.timestamp_millis() - (self.seq + draws) as i64 * *step;
        *origin = latest - (latest - CLOCK_START_MS).rem_euclid(DAY_MS);
        DateTime::from_timestamp_millis(*origin + (self.seq as i64 + 1) * *step)
    }

    /// Purchases a day over all customers: with the simulated clock, the draws per simulated
    /// day.
    pub fn daily_events(&self) -> f64 {
        self.sim.daily_events()
    }

    /// The next event, with event time `now` (ignored by the simulated clock).
    pub fn next(&mut self, now: DateTime<Utc>) -> Event {
        let roll: f64 = self.rng.random();
        if roll < self.config.duplicate_ratio && !self.recent.is_empty() {
            let (key, payload, id) =
                self.recent[self.rng.random_range(0..self.recent.len())].clone();
            return Event {
                key,
                payload,
                kind: EventKind::Duplicate,
                transaction_id: Some(id),
                label: None,
            };
        }
        let now = match self.clock {
            Some((origin, step)) => {
                DateTime::from_timestamp_millis(origin + (self.seq as i64 + 1) * step)
                    .expect("event time in range")
            }
            None => now,
        };
        let (mut tx, label) = self.sim.next_event(now.timestamp_millis());
        self.seq += 1;
        tx.transaction_id = format!(
            "{}-{}-{:010}",
            self.config.id_prefix, self.config.seed, self.seq
        )
        .into();
        tx.timestamp = now.to_rfc3339_opts(SecondsFormat::Millis, true).into();
        if roll < self.config.duplicate_ratio + self.config.invalid_ratio {
            // "In the future" means after the wall clock, whatever the event clock says.
            let payload = self.corrupt(&tx, now.max(Utc::now()));
            return Event {
                key: tx.customer_id.into(),
                payload,
                kind: EventKind::Invalid,
                transaction_id: None,
                label: None,
            };
        }
        let payload = serde_json::to_vec(&tx).expect("serialisable");
        let entry = (
            tx.customer_id.to_string(),
            payload.clone(),
            tx.transaction_id.to_string(),
        );
        if self.recent.len() < 10_000 {
            self.recent.push(entry);
        } else {
            let slot = self.rng.random_range(0..self.recent.len());
            self.recent[slot] = entry;
        }
        Event {
            key: tx.customer_id.into(),
            payload,
            kind: EventKind::Valid,
            transaction_id: Some(tx.transaction_id.into()),
            label: Some(label),
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
            // a card number pasted into a rejected record must never be stored unmasked
            v["note"] = serde_json::json!("card 4111 1111 1111 1111");
        }
        serde_json::to_vec(&v).expect("serialisable")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn simulated(seed: u64, duplicate_ratio: f64) -> GeneratorConfig {
        GeneratorConfig {
            seed,
            customers: 500,
            invalid_ratio: 0.0,
            duplicate_ratio,
            event_clock: EventClock::Simulated,
            ..GeneratorConfig::default()
        }
    }

    fn event_time(e: &Event) -> i64 {
        let tx: Transaction = serde_json::from_slice(&e.payload).expect("valid event");
        DateTime::parse_from_rfc3339(&tx.timestamp)
            .expect("rfc 3339")
            .timestamp_millis()
    }

    /// The simulated clock gives the offline evaluation's events, shifted by whole days, and
    /// the last one lands at most a day before the requested end.
    #[test]
    fn simulated_clock_replays_the_offline_stream_ending_before_now() {
        let end = DateTime::parse_from_rfc3339("2026-03-10T15:04:05Z")
            .expect("rfc 3339")
            .with_timezone(&Utc);
        let mut g = Generator::new(simulated(5, 0.0));
        let first = g
            .end_simulated_clock_at(2_000, end)
            .expect("simulated clock");
        let mut sim = Simulator::new(
            5,
            SimConfig {
                customers: 500,
                fraud_rate: 0.01,
                ..SimConfig::default()
            },
        );
        let step = sim.step_ms();
        let mut last = 0;
        for k in 1..=2_000 {
            let e = g.next(Utc::now());
            let offline_time = CLOCK_START_MS + k * step;
            let (offline, label) = sim.next_event(offline_time);
            let tx: Transaction = serde_json::from_slice(&e.payload).expect("valid event");
            assert_eq!(
                (tx.customer_id, tx.merchant_id, tx.amount),
                (offline.customer_id, offline.merchant_id, offline.amount)
            );
            assert_eq!(e.label, Some(label));
            let t = event_time(&e);
            assert_eq!((t - offline_time).rem_euclid(DAY_MS), 0, "whole days apart");
            if k == 1 {
                assert_eq!(t, first.timestamp_millis());
            }
            last = t;
        }
        assert!(
            last <= end.timestamp_millis() && last > end.timestamp_millis() - DAY_MS - step,
            "{last}"
        );
    }

    /// Duplicates repeat an earlier record and take no step of the clock.
    #[test]
    fn duplicates_take_no_step() {
        let mut g = Generator::new(simulated(6, 0.3));
        let step = g.sim.step_ms();
        let mut previous: Option<i64> = None;
        let mut duplicates = 0;
        for _ in 0..1_000 {
            let e = g.next(Utc::now());
            if e.kind == EventKind::Duplicate {
                duplicates += 1;
                continue;
            }
            let t = event_time(&e);
            if let Some(p) = previous {
                assert_eq!(t - p, step);
            }
            previous = Some(t);
        }
        assert!(duplicates > 200, "{duplicates}");
    }
}
