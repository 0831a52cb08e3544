//! A deterministic simulator of e-commerce traffic with labeled fraud scenarios and hard
//! negatives, for the offline evaluation and for the load generator.
//!
//! Customers have a home, a few devices and cards, habitual merchants, waking hours and a
//! log-normal spend. Scenarios are scripts of one or more events interleaved with normal
//! traffic. Labels travel beside the events, never inside them.

use crate::features::haversine_km;
use chrono::{DateTime, SecondsFormat};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use sluice_api::{Channel, PaymentMethod, Transaction};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Fraud scenario names, as reported by the evaluation.
pub const SCENARIOS: [&str; 5] = [
    "card_testing",
    "account_takeover",
    "impossible_travel",
    "velocity_burst",
    "amount_spike",
];
/// Hard-negative names: legitimate traffic that looks like fraud.
pub const HARD_NEGATIVES: [&str; 3] = ["traveller", "habitual_big", "small_burst"];
/// Ways [`SimConfig::invalid_rate`] breaks an event (the validator's reject reasons).
pub const INVALID_KINDS: [&str; 5] = [
    "amount_not_positive",
    "unknown_currency",
    "bad_country",
    "bad_timestamp",
    "future_timestamp",
];

/// Ground truth for one event (serializable for the load generator's side file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Label {
    pub fraud: bool,
    pub scenario: Option<&'static str>,
    pub hard_negative: Option<&'static str>,
    /// Set when the event was deliberately broken; the worker should reject it.
    pub invalid: Option<&'static str>,
}

/// Share of fraud *events* per scenario (normalised; need not sum to 1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScenarioMix {
    pub card_testing: f64,
    pub account_takeover: f64,
    pub impossible_travel: f64,
    pub velocity_burst: f64,
    pub amount_spike: f64,
}

impl Default for ScenarioMix {
    fn default() -> Self {
        Self {
            card_testing: 1.0,
            account_takeover: 1.0,
            impossible_travel: 1.0,
            velocity_burst: 1.0,
            amount_spike: 1.0,
        }
    }
}

impl ScenarioMix {
    fn shares(&self) -> [f64; 5] {
        let s = [
            self.card_testing,
            self.account_takeover,
            self.impossible_travel,
            self.velocity_burst,
            self.amount_spike,
        ];
        let total: f64 = s.iter().sum();
        s.map(|x| if total > 0.0 { x / total } else { 0.0 })
    }
}

/// Who the customers are: how often each one buys, and how many are business accounts,
/// explorers or frequent travellers. Customers are drawn in proportion to their own rate,
/// so a busy customer really is busy and a quiet one buys a few times a month.
#[derive(Debug, Clone, PartialEq)]
pub struct Population {
    /// Median purchases per consumer per day.
    pub daily_median: f64,
    /// Spread of ln(daily rate) across consumers (0: every consumer buys equally often).
    pub daily_sigma: f64,
    /// Share of business accounts and resellers: 20–300 purchases a day in office hours,
    /// many suppliers, bigger baskets.
    pub business_share: f64,
    /// Share of customers who buy at a merchant new to them half the time (others 15%).
    pub explorer_share: f64,
    /// Share of customers who travel abroad about every two weeks (others every ~4 months).
    pub traveller_share: f64,
}

impl Population {
    /// Every consumer buys about `daily` times a day; no business accounts, explorers or
    /// frequent travellers (the world the first model was fitted on).
    pub fn uniform(daily: f64) -> Self {
        Self {
            daily_median: daily,
            daily_sigma: 0.0,
            business_share: 0.0,
            explorer_share: 0.0,
            traveller_share: 0.0,
        }
    }

    /// Real shops' mix: rates from a few a month to dozens a day, a few business accounts,
    /// some explorers and travellers.
    pub fn mixed(daily_median: f64) -> Self {
        Self {
            daily_median,
            daily_sigma: 1.1,
            business_share: 0.005,
            explorer_share: 0.15,
            traveller_share: 0.08,
        }
    }
}

impl Default for Population {
    fn default() -> Self {
        Self::uniform(3.0)
    }
}

/// A named traffic regime of the evaluation: a population and its size.
#[derive(Debug, Clone, PartialEq)]
pub struct Regime {
    pub name: &'static str,
    pub customers: usize,
    pub population: Population,
}

/// The evaluation's regimes, from a few thousand busy customers to a million mostly new
/// ones. [`FIT_REGIMES`] names those the model may be fitted on; the others are held out.
pub fn regimes() -> Vec<Regime> {
    let p = Population::uniform;
    vec![
        Regime {
            name: "standard",
            customers: 20_000,
            population: p(3.0),
        },
        Regime {
            name: "busy",
            customers: 2_000,
            population: Population {
                daily_sigma: 0.4,
                ..p(8.0)
            },
        },
        Regime {
            name: "quiet",
            customers: 20_000,
            population: Population {
                daily_sigma: 0.8,
                ..p(0.5)
            },
        },
        Regime {
            name: "business",
            customers: 2_000,
            population: Population {
                daily_sigma: 1.0,
                business_share: 0.3,
                ..p(3.0)
            },
        },
        Regime {
            name: "explorers",
            customers: 20_000,
            population: Population {
                daily_sigma: 0.7,
                explorer_share: 0.6,
                ..p(3.0)
            },
        },
        Regime {
            name: "travellers",
            customers: 20_000,
            population: Population {
                daily_sigma: 0.7,
                traveller_share: 0.4,
                ..p(3.0)
            },
        },
        Regime {
            name: "mixed",
            customers: 100_000,
            population: Population::mixed(1.5),
        },
        Regime {
            name: "million",
            customers: 1_000_000,
            population: Population::mixed(1.0),
        },
    ]
}

/// The regime called `name`, if [`regimes`] has one.
pub fn regime(name: &str) -> Option<Regime> {
    regimes().into_iter().find(|r| r.name == name)
}

/// Regimes the shipped model was fitted on (seed 1); every other regime, and every seed
/// but 1, is unseen by the fit.
pub const FIT_REGIMES: [&str; 4] = ["standard", "busy", "explorers", "business"];

/// What traffic to generate.
///
/// Customers buy at their own rates ([`Population`]); the caller's clock sets the pace.
/// [`Simulator::step_ms`] is the clock step at which every customer buys at its own rate:
/// the offline evaluation uses it. A real-time load generator at thousands of events per
/// second over too few customers gives each one a purchase every few seconds, which the
/// velocity features rightly find odd: size `customers` to the rate.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    pub customers: usize,
    pub population: Population,
    pub merchants: usize,
    /// Fraction of events that are fraud (0 = no fraud injected).
    pub fraud_rate: f64,
    pub mix: ScenarioMix,
    /// Whether travellers, big habitual purchases and small legitimate bursts occur.
    pub hard_negatives: bool,
    /// Fraction of events deliberately made invalid.
    pub invalid_rate: f64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            customers: 20_000,
            population: Population::default(),
            merchants: 2_000,
            fraud_rate: 0.01,
            mix: ScenarioMix::default(),
            hard_negatives: true,
            invalid_rate: 0.0,
        }
    }
}

impl SimConfig {
    /// Realistic traffic without fraud or invalid events.
    pub fn no_fraud(customers: usize) -> Self {
        Self {
            customers,
            fraud_rate: 0.0,
            ..Self::default()
        }
    }
}

struct Country {
    code: &'static str,
    currency: &'static str,
    lat: f64,
    lon: f64,
    weight: f64,
}

const fn c(code: &'static str, currency: &'static str, lat: f64, lon: f64, weight: f64) -> Country {
    Country {
        code,
        currency,
        lat,
        lon,
        weight,
    }
}

const COUNTRIES: [Country; 16] = [
    c("US", "USD", 39.8, -98.6, 30.0),
    c("GB", "GBP", 52.5, -1.5, 8.0),
    c("DE", "EUR", 51.2, 10.4, 8.0),
    c("FR", "EUR", 46.6, 2.4, 7.0),
    c("ES", "EUR", 40.4, -3.7, 5.0),
    c("IT", "EUR", 42.8, 12.6, 5.0),
    c("NL", "EUR", 52.2, 5.3, 3.0),
    c("CA", "CAD", 56.1, -106.3, 5.0),
    c("AU", "AUD", -25.3, 133.8, 4.0),
    c("JP", "JPY", 36.2, 138.3, 5.0),
    c("BR", "BRL", -14.2, -51.9, 5.0),
    c("MX", "MXN", 23.6, -102.6, 4.0),
    c("IN", "INR", 20.6, 79.0, 5.0),
    c("SG", "SGD", 1.35, 103.8, 2.0),
    c("ZA", "ZAR", -30.6, 22.9, 2.0),
    c("SE", "SEK", 60.1, 18.6, 2.0),
];

/// Category name and its typical amount relative to the customer's median spend.
const CATEGORIES: [(&str, f64); 13] = [
    ("grocery", 1.0),
    ("transit", 0.2),
    ("restaurants", 1.0),
    ("coffee", 0.2),
    ("fashion", 1.8),
    ("electronics", 3.0),
    ("travel", 5.0),
    ("digital_goods", 0.5),
    ("gift_cards", 1.5),
    ("home", 2.0),
    ("health", 1.0),
    ("entertainment", 0.8),
    ("jewelry", 5.0),
];
const GROCERY: u8 = 0;
const TRANSIT: u8 = 1;
const RESTAURANTS: u8 = 2;
const COFFEE: u8 = 3;
const FASHION: u8 = 4;
const ELECTRONICS: u8 = 5;
const TRAVEL: u8 = 6;
const DIGITAL: u8 = 7;
const GIFT_CARDS: u8 = 8;
const HOME: u8 = 9;
const ENTERTAINMENT: u8 = 11;
const JEWELRY: u8 = 12;

struct Merchant {
    id: String,
    category: u8,
}

#[derive(Clone, Copy)]
struct Card {
    fp: u64,
    method: PaymentMethod,
}

struct Trip {
    country: u8,
    lat: f64,
    lon: f64,
    start_ms: i64,
    end_ms: i64,
    home_again_ms: i64,
}

struct Customer {
    id: String,
    home: u8,
    lat: f64,
    lon: f64,
    tz: i64,
    wake: i64,
    sleep: i64,
    devices: Vec<u64>,
    cards: Vec<Card>,
    merchants: Vec<u32>,
    /// ln of the median spend.
    mu: f64,
    sigma: f64,
    created_ms: i64,
    /// Purchases per day, and the share of them at a merchant new to the customer.
    daily_rate: f64,
    explore: f64,
    trips_per_day: f64,
    big_habit: Option<(u32, f64)>,
    commuter: Option<[u32; 2]>,
    trip: Option<Trip>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    CardTesting,
    Takeover,
    ImpossibleTravel,
    VelocityBurst,
    AmountSpike,
    SmallBurst,
}

/// The remaining steps of a running scenario.
struct Script {
    kind: Kind,
    customer: u32,
    left: u16,
    step: u16,
    device: u64,
    cards: [u64; 5],
    ncards: u16,
    country: u8,
    lat: f64,
    lon: f64,
    merchant: u32,
    amount: f64,
}

/// What the event being built looks like.
struct Spec {
    merchant: u32,
    amount: f64,
    device: Option<u64>,
    card: Card,
    country: u8,
    shipping: u8,
    location: Option<(f64, f64)>,
    channel: Channel,
}

/// Seeded traffic generator. Same seed and same sequence of `now_ms` → same events.
pub struct Simulator {
    rng: SmallRng,
    cfg: SimConfig,
    customers: Vec<Customer>,
    merchants: Vec<Merchant>,
    by_category: Vec<Vec<u32>>,
    country_cdf: Vec<f64>,
    /// Running sum of the customers' daily rates: draws are proportional to rate.
    rate_cdf: Vec<f64>,
    scripts: Vec<Option<Script>>,
    free_scripts: Vec<usize>,
    queue: BinaryHeap<Reverse<(i64, u64, usize)>>,
    seq: u64,
    seed: u64,
    start_prob: [f64; 5],
    t0: Option<i64>,
}

const MIN_MS: i64 = 60_000;
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;

impl Simulator {
    pub fn new(seed: u64, cfg: SimConfig) -> Self {
        let mut rng = SmallRng::seed_from_u64(seed);
        let merchants: Vec<Merchant> = (0..cfg.merchants.max(CATEGORIES.len()))
            .map(|i| Merchant {
                id: format!("m-{i:05}"),
                category: (i % CATEGORIES.len()) as u8,
            })
            .collect();
        let mut by_category = vec![Vec::new(); CATEGORIES.len()];
        for (i, m) in merchants.iter().enumerate() {
            by_category[usize::from(m.category)].push(i as u32);
        }
        let total: f64 = COUNTRIES.iter().map(|c| c.weight).sum();
        let country_cdf = COUNTRIES
            .iter()
            .scan(0.0, |acc, c| {
                *acc += c.weight / total;
                Some(*acc)
            })
            .collect();
        let mean_len = [11.0, 2.0, 1.5, 10.0, 1.0];
        let shares = cfg.mix.shares();
        let start_prob = std::array::from_fn(|i| cfg.fraud_rate * shares[i] / mean_len[i]);
        let mut sim = Self {
            rng: SmallRng::seed_from_u64(0),
            cfg,
            customers: Vec::new(),
            merchants,
            by_category,
            country_cdf,
            rate_cdf: Vec::new(),
            scripts: Vec::new(),
            free_scripts: Vec::new(),
            queue: BinaryHeap::new(),
            seq: 0,
            seed,
            start_prob,
            t0: None,
        };
        sim.customers = (0..sim.cfg.customers.max(1))
            .map(|i| sim.make_customer(&mut rng, i))
            .collect();
        sim.rate_cdf = sim
            .customers
            .iter()
            .scan(0.0, |acc, c| {
                *acc += c.daily_rate;
                Some(*acc)
            })
            .collect();
        sim.rng = rng;
        sim
    }

    pub fn config(&self) -> &SimConfig {
        &self.cfg
    }

    /// Purchases a day over all customers (before fraud and invalid records).
    pub fn daily_events(&self) -> f64 {
        self.rate_cdf.last().copied().unwrap_or(1.0)
    }

    /// Clock step between draws at which every customer buys at its own daily rate.
    pub fn step_ms(&self) -> i64 {
        ((86_400_000.0 / self.daily_events()) as i64).max(1)
    }

    fn pick_country(&self, rng: &mut SmallRng) -> u8 {
        let u: f64 = rng.random();
        self.country_cdf
            .iter()
            .position(|c| u < *c)
            .unwrap_or(COUNTRIES.len() - 1) as u8
    }

    fn random_merchant(&self, rng: &mut SmallRng, category: u8) -> u32 {
        merchant_in(&self.by_category, rng, category)
    }

    fn merchant(&mut self, category: u8) -> u32 {
        merchant_in(&self.by_category, &mut self.rng, category)
    }

    fn make_customer(&self, rng: &mut SmallRng, i: usize) -> Customer {
        let pop = &self.cfg.population;
        let business = pop.business_share > 0.0 && rng.random_bool(pop.business_share.min(1.0));
        let explorer = pop.explorer_share > 0.0 && rng.random_bool(pop.explorer_share.min(1.0));
        let traveller = pop.traveller_share > 0.0 && rng.random_bool(pop.traveller_share.min(1.0));
        let daily_rate = if business {
            rng.random_range(20.0f64.ln()..300.0f64.ln()).exp()
        } else {
            let z: f64 = rng.sample(StandardNormal);
            (pop.daily_median.max(1e-3).ln() + pop.daily_sigma * z)
                .exp()
                .clamp(0.03, 100.0)
        };
        let home = self.pick_country(rng);
        let hc = &COUNTRIES[usize::from(home)];
        let lat = (hc.lat + rng.sample::<f64, _>(StandardNormal) * 1.5).clamp(-89.0, 89.0);
        let lon = hc.lon + rng.sample::<f64, _>(StandardNormal) * 2.0;
        let n_dev = rng.random_range(1..=3);
        let methods = [
            PaymentMethod::CreditCard,
            PaymentMethod::DebitCard,
            PaymentMethod::ApplePay,
            PaymentMethod::GooglePay,
            PaymentMethod::Paypal,
        ];
        let n_cards = rng.random_range(1..=2);
        let everyday = [
            GROCERY,
            RESTAURANTS,
            COFFEE,
            FASHION,
            HOME,
            10,
            ENTERTAINMENT,
            DIGITAL,
            ELECTRONICS,
        ];
        let mut merchants = vec![self.random_merchant(rng, GROCERY)];
        let habitual = if business { 10..=20 } else { 3..=7 };
        for _ in 0..rng.random_range(habitual) {
            let cat = everyday[rng.random_range(0..everyday.len())];
            merchants.push(self.random_merchant(rng, cat));
        }
        let commuter = rng.random_bool(0.2).then(|| {
            [
                self.random_merchant(rng, TRANSIT),
                self.random_merchant(rng, COFFEE),
            ]
        });
        if let Some(c) = commuter {
            merchants.extend(c);
        }
        let big_habit = rng.random_bool(0.1).then(|| {
            let cat = [HOME, TRAVEL, ELECTRONICS][rng.random_range(0..3)];
            let m = self.random_merchant(rng, cat);
            merchants.push(m);
            (m, rng.random_range(4.0..10.0))
        });
        let age_days = if rng.random_bool(0.04) {
            rng.random_range(0.0..30.0)
        } else {
            rng.random_range(30.0..3000.0)
        };
        let (wake, sleep) = if business {
            (rng.random_range(7..=9), rng.random_range(17..=19))
        } else {
            (rng.random_range(6..=9), rng.random_range(20..=23))
        };
        let n_dev = if business { n_dev + 1 } else { n_dev };
        let mu = if business {
            rng.random_range(40.0f64..400.0).ln()
        } else {
            rng.random_range(12.0f64..60.0).ln()
        };
        Customer {
            id: format!("c-{i:07}"),
            home,
            lat,
            lon,
            tz: (lon / 15.0).round() as i64,
            wake,
            sleep,
            devices: (0..n_dev).map(|_| rng.random()).collect(),
            cards: (0..n_cards)
                .map(|_| Card {
                    fp: rng.random(),
                    method: methods[rng.random_range(0..methods.len())],
                })
                .collect(),
            merchants,
            mu,
            sigma: rng.random_range(0.3..0.7),
            created_ms: -(age_days * DAY_MS as f64) as i64,
            daily_rate,
            explore: if explorer { 0.5 } else { 0.15 },
            trips_per_day: if traveller { 1.0 / 14.0 } else { 1.0 / 120.0 },
            big_habit,
            commuter,
            trip: None,
        }
    }

    /// The next event at about `now_ms` (scripted scenario steps come out at or after
    /// their due time), with its label. Call with a non-decreasing clock.
    pub fn next_event(&mut self, now_ms: i64) -> (Transaction, Label) {
        let t0 = *self.t0.get_or_insert(now_ms);
        if let Some(Reverse((due, _, idx))) = self.queue.peek().copied()
            && due <= now_ms
        {
            self.queue.pop();
            return self.script_step(idx, now_ms, t0);
        }
        let u: f64 = self.rng.random();
        let mut acc = 0.0;
        for (i, p) in self.start_prob.iter().enumerate() {
            acc += p;
            if u < acc {
                return self.start_scenario(i, now_ms, t0);
            }
        }
        let c = self.pick_customer(now_ms, false);
        let (tx, mut label) = self.normal_event(c, now_ms, t0);
        if self.cfg.invalid_rate > 0.0 && self.rng.random_bool(self.cfg.invalid_rate.min(1.0)) {
            let mut tx = tx;
            label.invalid = Some(self.corrupt(&mut tx, now_ms));
            return (tx, label);
        }
        (tx, label)
    }

    /// A customer drawn in proportion to its daily rate.
    fn rate_weighted(&mut self) -> usize {
        let u = self.rng.random::<f64>() * self.daily_events();
        self.rate_cdf
            .partition_point(|acc| *acc <= u)
            .min(self.customers.len() - 1)
    }

    /// A customer awake at `now_ms` and not in flight (rejection sampling, bounded), drawn
    /// by rate, or with `any_account` uniformly: fraudsters pick accounts, not shoppers.
    fn pick_customer(&mut self, now_ms: i64, any_account: bool) -> usize {
        let mut c = 0;
        // Past 12 draws the waking hours give way, never the flight.
        for attempt in 0..64 {
            c = if any_account {
                self.rng.random_range(0..self.customers.len())
            } else {
                self.rate_weighted()
            };
            let cu = &self.customers[c];
            if let Some(t) = &cu.trip
                && (now_ms < t.start_ms || (now_ms > t.end_ms && now_ms < t.home_again_ms))
            {
                continue;
            }
            let hour = (now_ms.div_euclid(HOUR_MS) + cu.tz).rem_euclid(24);
            if attempt >= 12 || (cu.wake..cu.sleep).contains(&hour) || self.rng.random_bool(0.05) {
                break;
            }
        }
        c
    }

    fn spend(&mut self, c: usize, category: u8) -> f64 {
        let cu = &self.customers[c];
        let (mu, sigma) = (cu.mu, cu.sigma);
        let z: f64 = self.rng.sample(StandardNormal);
        (mu + CATEGORIES[usize::from(category)].1.ln() + sigma * z).exp()
    }

    fn home_location(&mut self, c: usize) -> Option<(f64, f64)> {
        let cu = &self.customers[c];
        let (lat, lon) = (cu.lat, cu.lon);
        self.rng.random_bool(0.75).then(|| {
            (
                lat + self.rng.random_range(-0.1..0.1),
                lon + self.rng.random_range(-0.1..0.1),
            )
        })
    }

    fn normal_event(&mut self, c: usize, now_ms: i64, t0: i64) -> (Transaction, Label) {
        let mut label = Label::default();
        // Trip bookkeeping: abroad, back home, or leaving now.
        if let Some(t) = &self.customers[c].trip {
            if now_ms >= t.start_ms && now_ms <= t.end_ms {
                return self.trip_event(c, now_ms, t0);
            }
            if now_ms >= t.home_again_ms {
                self.customers[c].trip = None;
            }
        } else if self.cfg.hard_negatives
            && self
                .rng
                .random_bool(self.per_event(c, self.customers[c].trips_per_day))
        {
            self.start_trip(c, now_ms);
        }
        if self.cfg.hard_negatives {
            if let Some((m, mult)) = self.customers[c].big_habit
                && self.rng.random_bool(0.05)
            {
                let amount = self.customers[c].mu.exp() * mult * self.rng.random_range(0.8..1.25);
                label.hard_negative = Some("habitual_big");
                let spec = self.usual_spec(c, m, amount);
                return (self.build(c, now_ms, t0, &spec), label);
            }
            if let Some(m) = self.customers[c].commuter
                && self.rng.random_bool(0.06)
            {
                let len = self.rng.random_range(3..=7);
                let idx = self.new_script(Kind::SmallBurst, c, len);
                self.scripts[idx].as_mut().expect("just created").merchant = m[0];
                return self.script_step(idx, now_ms, t0);
            }
        }
        let cu = &self.customers[c];
        let explore = cu.explore;
        let (merchant, mut amount) = if !self.rng.random_bool(explore) {
            let m = cu.merchants[self.rng.random_range(0..cu.merchants.len())];
            (m, 0.0)
        } else {
            (self.rng.random_range(0..self.merchants.len() as u32), 0.0)
        };
        let cat = self.merchants[merchant as usize].category;
        amount += self.spend(c, cat);
        if self.rng.random_bool(0.003) {
            // A one-off big purchase somewhere new: legitimate, and unlabeled noise.
            amount *= self.rng.random_range(3.0..8.0);
        }
        // Legitimate novelty: a new phone about once a year, a new card every ~6 months.
        if self.rng.random_bool(self.per_event(c, 1.0 / 365.0)) {
            let d = self.rng.random();
            let cu = &mut self.customers[c];
            cu.devices.push(d);
            if cu.devices.len() > 3 {
                cu.devices.remove(0);
            }
        }
        if self.rng.random_bool(self.per_event(c, 1.0 / 180.0)) {
            let card = Card {
                fp: self.rng.random(),
                method: PaymentMethod::CreditCard,
            };
            let cu = &mut self.customers[c];
            cu.cards.insert(0, card);
            cu.cards.truncate(2);
        }
        let mut spec = self.usual_spec(c, merchant, amount);
        if self.rng.random_bool(0.03) {
            spec.shipping = self.rng.random_range(0..COUNTRIES.len() as u8);
        }
        (self.build(c, now_ms, t0, &spec), label)
    }

    /// Chance per purchase of something that happens `per_day` times a day.
    fn per_event(&self, c: usize, per_day: f64) -> f64 {
        (per_day / self.customers[c].daily_rate).min(0.5)
    }

    /// Known device and card, at home.
    fn usual_spec(&mut self, c: usize, merchant: u32, amount: f64) -> Spec {
        let location = self.home_location(c);
        let cu = &self.customers[c];
        let device = cu.devices[if self.rng.random_bool(0.8) {
            0
        } else {
            self.rng.random_range(0..cu.devices.len())
        }];
        let card = cu.cards[if self.rng.random_bool(0.85) {
            0
        } else {
            self.rng.random_range(0..cu.cards.len())
        }];
        let channel = if location.is_none() {
            Channel::Web
        } else if self.rng.random_bool(0.5) {
            Channel::Mobile
        } else {
            Channel::Pos
        };
        Spec {
            merchant,
            amount,
            device: (channel != Channel::Pos).then_some(device),
            card,
            country: cu.home,
            shipping: cu.home,
            location,
            channel,
        }
    }

    fn far_country(&mut self, c: usize, min_km: f64) -> u8 {
        let home = (self.customers[c].lat, self.customers[c].lon);
        for _ in 0..50 {
            let k = self.rng.random_range(0..COUNTRIES.len() as u8);
            let cc = &COUNTRIES[usize::from(k)];
            if haversine_km(home, (cc.lat, cc.lon)) >= min_km {
                return k;
            }
        }
        // Every home has a country at least this far in the table; fall back to antipodes.
        if COUNTRIES[usize::from(self.customers[c].home)].lat > 0.0 {
            8
        } else {
            2
        }
    }

    fn start_trip(&mut self, c: usize, now_ms: i64) {
        let k = self.far_country(c, 1_000.0);
        let cc = &COUNTRIES[usize::from(k)];
        let (lat, lon) = (
            cc.lat + self.rng.random_range(-1.0..1.0),
            cc.lon + self.rng.random_range(-1.0..1.0),
        );
        let km = haversine_km((self.customers[c].lat, self.customers[c].lon), (lat, lon));
        // Door to door: flight at ~750 km/h plus airports.
        let flight_ms = ((km / 750.0 + self.rng.random_range(2.0..5.0)) * HOUR_MS as f64) as i64;
        let start_ms = now_ms + flight_ms;
        let end_ms = start_ms + self.rng.random_range(DAY_MS..5 * DAY_MS);
        self.customers[c].trip = Some(Trip {
            country: k,
            lat,
            lon,
            start_ms,
            end_ms,
            home_again_ms: end_ms + flight_ms,
        });
    }

    fn trip_event(&mut self, c: usize, now_ms: i64, t0: i64) -> (Transaction, Label) {
        let (country, lat, lon) = {
            let t = self.customers[c].trip.as_ref().expect("on a trip");
            (t.country, t.lat, t.lon)
        };
        let cat = [
            TRAVEL,
            RESTAURANTS,
            RESTAURANTS,
            COFFEE,
            FASHION,
            ENTERTAINMENT,
            GROCERY,
        ][self.rng.random_range(0..7)];
        let merchant = self.merchant(cat);
        let amount = self.spend(c, cat);
        let mut spec = self.usual_spec(c, merchant, amount);
        spec.country = country;
        spec.shipping = country;
        spec.location = Some((
            lat + self.rng.random_range(-0.2..0.2),
            lon + self.rng.random_range(-0.2..0.2),
        ));
        spec.channel = Channel::Mobile;
        let cu = &self.customers[c];
        spec.device = Some(cu.devices[0]);
        let tx = self.build(c, now_ms, t0, &spec);
        (
            tx,
            Label {
                hard_negative: Some("traveller"),
                ..Label::default()
            },
        )
    }

    fn new_script(&mut self, kind: Kind, c: usize, len: u16) -> usize {
        let s = Script {
            kind,
            customer: c as u32,
            left: len,
            step: 0,
            device: 0,
            cards: [0; 5],
            ncards: 0,
            country: self.customers[c].home,
            lat: self.customers[c].lat,
            lon: self.customers[c].lon,
            merchant: 0,
            amount: 0.0,
        };
        match self.free_scripts.pop() {
            Some(i) => {
                self.scripts[i] = Some(s);
                i
            }
            None => {
                self.scripts.push(Some(s));
                self.scripts.len() - 1
            }
        }
    }

    fn schedule(&mut self, idx: usize, due_ms: i64) {
        self.seq += 1;
        self.queue.push(Reverse((due_ms, self.seq, idx)));
    }

    fn start_scenario(&mut self, which: usize, now_ms: i64, t0: i64) -> (Transaction, Label) {
        // Half the victims are any account, half drawn like shoppers (busy accounts are
        // seen, and stolen, more often).
        let any_account = self.rng.random_bool(0.5);
        let c = self.pick_customer(now_ms, any_account);
        let median = self.customers[c].mu.exp();
        let (kind, len) = match which {
            0 => (Kind::CardTesting, self.rng.random_range(6..=16)),
            1 => (Kind::Takeover, self.rng.random_range(1..=3)),
            2 => (Kind::ImpossibleTravel, self.rng.random_range(1..=2)),
            3 => (Kind::VelocityBurst, self.rng.random_range(6..=14)),
            _ => (Kind::AmountSpike, 1),
        };
        let idx = self.new_script(kind, c, len);
        let fresh_device: u64 = self.rng.random();
        let mut s = self.scripts[idx].take().expect("just created");
        s.device = fresh_device;
        match kind {
            Kind::CardTesting => {
                s.ncards = self.rng.random_range(2..=5);
                for k in 0..usize::from(s.ncards) {
                    s.cards[k] = self.rng.random();
                }
                let cat = if self.rng.random_bool(0.5) {
                    DIGITAL
                } else {
                    GIFT_CARDS
                };
                s.merchant = self.merchant(cat);
                s.amount = if self.rng.random_bool(0.5) {
                    [1.0, 0.5, 2.0, 1.99][self.rng.random_range(0..4)]
                } else {
                    0.0
                };
            }
            Kind::Takeover | Kind::ImpossibleTravel => {
                let k = self.far_country(
                    c,
                    if kind == Kind::Takeover {
                        1_500.0
                    } else {
                        3_000.0
                    },
                );
                s.country = k;
                s.lat = COUNTRIES[usize::from(k)].lat + self.rng.random_range(-1.0..1.0);
                s.lon = COUNTRIES[usize::from(k)].lon + self.rng.random_range(-1.0..1.0);
                s.amount = if kind == Kind::Takeover {
                    (median * self.rng.random_range(8.0..30.0)).max(250.0)
                } else {
                    median * self.rng.random_range(1.0..4.0)
                };
            }
            Kind::AmountSpike => {
                // Far above what this customer pays for this kind of thing.
                let cat = [ELECTRONICS, JEWELRY, TRAVEL][self.rng.random_range(0..3)];
                s.merchant = self.merchant(cat);
                let typical = median
                    * CATEGORIES[usize::from(self.merchants[s.merchant as usize].category)].1;
                s.amount = (typical * self.rng.random_range(8.0..25.0)).max(300.0);
            }
            Kind::VelocityBurst | Kind::SmallBurst => {}
        }
        self.scripts[idx] = Some(s);
        if kind == Kind::ImpossibleTravel {
            // The real customer shops at home now; the cloned card is used far away soon after.
            let delay = self.rng.random_range(10 * MIN_MS..90 * MIN_MS);
            self.schedule(idx, now_ms + delay);
            let (mut tx, label) = self.normal_event(c, now_ms, t0);
            if tx.latitude.is_none() {
                let cu = &self.customers[c];
                tx.latitude = Some(cu.lat);
                tx.longitude = Some(cu.lon);
            }
            return (tx, label);
        }
        self.script_step(idx, now_ms, t0)
    }

    fn script_step(&mut self, idx: usize, now_ms: i64, t0: i64) -> (Transaction, Label) {
        let mut s = self.scripts[idx].take().expect("scheduled script exists");
        let c = s.customer as usize;
        let median = self.customers[c].mu.exp();
        let (spec, gap_ms, scenario) = match s.kind {
            Kind::CardTesting => {
                let card_i =
                    usize::from(s.step) * usize::from(s.ncards) / usize::from(s.step + s.left);
                let amount = if s.amount > 0.0 {
                    s.amount
                } else {
                    self.rng.random_range(0.5..4.99)
                };
                let home = self.customers[c].home;
                let spec = Spec {
                    merchant: s.merchant,
                    amount,
                    device: Some(s.device),
                    card: Card {
                        fp: s.cards[card_i.min(4)],
                        method: PaymentMethod::CreditCard,
                    },
                    country: home,
                    shipping: home,
                    location: None,
                    channel: Channel::Web,
                };
                (
                    spec,
                    self.rng.random_range(2_000..12_000),
                    Some("card_testing"),
                )
            }
            Kind::Takeover => {
                let cat = [ELECTRONICS, GIFT_CARDS, JEWELRY][self.rng.random_range(0..3)];
                let merchant = self.merchant(cat);
                let card = self.customers[c].cards[0];
                let spec = Spec {
                    merchant,
                    amount: s.amount * self.rng.random_range(0.7..1.3),
                    device: Some(s.device),
                    card,
                    country: s.country,
                    shipping: if self.rng.random_bool(0.7) {
                        s.country
                    } else {
                        self.customers[c].home
                    },
                    location: Some((s.lat, s.lon)),
                    channel: Channel::Web,
                };
                (
                    spec,
                    self.rng.random_range(MIN_MS..15 * MIN_MS),
                    Some("account_takeover"),
                )
            }
            Kind::ImpossibleTravel => {
                let cat = [FASHION, ELECTRONICS, JEWELRY, RESTAURANTS][self.rng.random_range(0..4)];
                let merchant = self.merchant(cat);
                let spec = Spec {
                    merchant,
                    amount: s.amount,
                    device: None,
                    card: self.customers[c].cards[0],
                    country: s.country,
                    shipping: s.country,
                    location: Some((
                        s.lat + self.rng.random_range(-0.05..0.05),
                        s.lon + self.rng.random_range(-0.05..0.05),
                    )),
                    channel: Channel::Pos,
                };
                (
                    spec,
                    self.rng.random_range(5 * MIN_MS..30 * MIN_MS),
                    Some("impossible_travel"),
                )
            }
            Kind::VelocityBurst => {
                let cat = [ELECTRONICS, FASHION, GIFT_CARDS, DIGITAL][self.rng.random_range(0..4)];
                let merchant = self.merchant(cat);
                let amount = median * self.rng.random_range(1.0..4.0);
                let mut spec = self.usual_spec(c, merchant, amount);
                if s.step == 0 && self.rng.random_bool(0.3) {
                    s.device = self.customers[c].devices[0];
                }
                spec.device = Some(s.device);
                spec.channel = Channel::Web;
                (
                    spec,
                    self.rng.random_range(20_000..150_000),
                    Some("velocity_burst"),
                )
            }
            Kind::AmountSpike => {
                let mut spec = self.usual_spec(c, s.merchant, s.amount);
                if self.rng.random_bool(0.5) {
                    spec.device = Some(s.device);
                }
                (spec, 0, Some("amount_spike"))
            }
            Kind::SmallBurst => {
                let m = self.customers[c]
                    .commuter
                    .map_or(s.merchant, |m| m[usize::from(s.step % 2)]);
                let amount = self.rng.random_range(1.5..8.0);
                let mut spec = self.usual_spec(c, m, amount);
                spec.channel = Channel::Mobile;
                spec.device = Some(self.customers[c].devices[0]);
                (spec, self.rng.random_range(MIN_MS..8 * MIN_MS), None)
            }
        };
        let tx = self.build(c, now_ms, t0, &spec);
        s.step += 1;
        s.left -= 1;
        let label = match scenario {
            Some(name) => Label {
                fraud: true,
                scenario: Some(name),
                ..Label::default()
            },
            None => Label {
                hard_negative: Some("small_burst"),
                ..Label::default()
            },
        };
        if s.left > 0 {
            self.scripts[idx] = Some(s);
            self.schedule(idx, now_ms + gap_ms);
        } else {
            self.free_scripts.push(idx);
        }
        (tx, label)
    }

    fn build(&mut self, c: usize, now_ms: i64, t0: i64, spec: &Spec) -> Transaction {
        self.seq += 1;
        let cu = &self.customers[c];
        let m = &self.merchants[spec.merchant as usize];
        let country = &COUNTRIES[usize::from(spec.country)];
        let home = &COUNTRIES[usize::from(cu.home)];
        let fp = spec.card.fp;
        let h = fp ^ spec.device.unwrap_or(0).rotate_left(17) ^ u64::from(spec.country) << 40;
        let age_days = ((now_ms - t0 - cu.created_ms) / DAY_MS).max(0) as u32;
        Transaction {
            transaction_id: format!("t-{:x}-{:x}", self.seed, self.seq).into(),
            customer_id: cu.id.as_str().into(),
            merchant_id: m.id.as_str().into(),
            merchant_category: Some(CATEGORIES[usize::from(m.category)].0.into()),
            amount: ((spec.amount.max(0.01) * 100.0).round() / 100.0)
                .min(sluice_api::event::MAX_AMOUNT),
            currency: home.currency.into(),
            timestamp: rfc3339(now_ms).into(),
            payment_method: spec.card.method,
            channel: Some(spec.channel),
            country: country.code.into(),
            shipping_country: Some(COUNTRIES[usize::from(spec.shipping)].code.into()),
            card_last4: Some(format!("{:04}", fp % 10_000).into()),
            card_fingerprint: Some(format!("fp{fp:016x}").into()),
            device_id: spec.device.map(|d| format!("d{d:016x}").into()),
            ip_address: Some(
                format!(
                    "{}.{}.{}.{}",
                    11 + spec.country * 13,
                    (h >> 8) as u8,
                    (h >> 16) as u8,
                    (h as u8).max(1)
                )
                .into(),
            ),
            latitude: spec.location.map(|l| l.0.clamp(-90.0, 90.0)),
            longitude: spec
                .location
                .map(|l| (l.1 + 180.0).rem_euclid(360.0) - 180.0),
            account_age_days: Some(age_days),
            items: Some(1 + (self.seq % 3) as u32),
        }
    }

    fn corrupt(&mut self, tx: &mut Transaction, now_ms: i64) -> &'static str {
        let kind = INVALID_KINDS[self.rng.random_range(0..INVALID_KINDS.len())];
        match kind {
            "amount_not_positive" => tx.amount = -tx.amount,
            "unknown_currency" => tx.currency = "XYZ".into(),
            "bad_country" => tx.country = "usa".into(),
            "bad_timestamp" => tx.timestamp = "yesterday".into(),
            _ => tx.timestamp = rfc3339(now_ms + HOUR_MS).into(),
        }
        kind
    }
}

fn merchant_in(by_category: &[Vec<u32>], rng: &mut SmallRng, category: u8) -> u32 {
    let list = &by_category[usize::from(category)];
    list[rng.random_range(0..list.len())]
}

/// RFC 3339 UTC with milliseconds, as producers send it.
pub fn rfc3339(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const T0: i64 = 1_767_225_600_000; // 2026-01-01

    fn run(seed: u64, cfg: SimConfig, n: usize) -> Vec<(Transaction, Label)> {
        let mut sim = Simulator::new(seed, cfg);
        (0..n)
            .map(|i| sim.next_event(T0 + i as i64 * 1_000))
            .collect()
    }

    #[test]
    fn same_seed_same_events() {
        let a = run(7, SimConfig::default(), 2_000);
        let b = run(7, SimConfig::default(), 2_000);
        assert_eq!(a, b);
        let c = run(8, SimConfig::default(), 2_000);
        assert_ne!(a, c);
    }

    #[test]
    fn fraud_rate_and_scenarios_are_as_configured() {
        let ev = run(
            1,
            SimConfig {
                fraud_rate: 0.05,
                ..SimConfig::default()
            },
            100_000,
        );
        let fraud = ev.iter().filter(|(_, l)| l.fraud).count() as f64 / ev.len() as f64;
        assert!((0.03..0.07).contains(&fraud), "fraud rate {fraud}");
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (_, l) in &ev {
            if let Some(s) = l.scenario.or(l.hard_negative) {
                *seen.entry(s).or_default() += 1;
            }
        }
        for s in SCENARIOS.iter().chain(&HARD_NEGATIVES) {
            assert!(seen.get(s).copied().unwrap_or(0) > 20, "{s}: {seen:?}");
        }
    }

    #[test]
    fn no_fraud_mode_injects_none_and_events_are_valid() {
        for (tx, l) in run(3, SimConfig::no_fraud(1_000), 20_000) {
            assert!(!l.fraud && l.invalid.is_none());
            assert!(tx.amount > 0.0 && tx.amount <= sluice_api::event::MAX_AMOUNT);
            assert!(sluice_api::event::is_known_currency(&tx.currency));
            assert!(DateTime::parse_from_rfc3339(&tx.timestamp).is_ok());
            assert_eq!(tx.country.len(), 2);
            let json = serde_json::to_string(&tx).unwrap();
            assert!(
                !json.contains("fraud") && !json.contains("scenario"),
                "labels never inside events"
            );
        }
    }

    #[test]
    fn invalid_events_are_labeled() {
        let ev = run(
            4,
            SimConfig {
                invalid_rate: 0.1,
                fraud_rate: 0.0,
                ..SimConfig::default()
            },
            5_000,
        );
        let bad = ev.iter().filter(|(_, l)| l.invalid.is_some()).count();
        assert!((300..700).contains(&bad), "{bad}");
    }
}
