//! Features of one event against its customer's past. Extraction reads the profile as it
//! was *before* the event, so a verdict depends only on the customer's earlier events;
//! [`crate::profile::Profile::observe`] folds the event in afterwards.

use crate::hash::tag;
use crate::profile::{
    BURST_TAU_S, NEW_CARD_TAU_S, NOVELTY_TAU_S, PLACE_KM, Profile, VELOCITY_TAU_S,
};
use sluice_api::Transaction;

/// Amounts below this (major units) count as "small" for card-testing bursts.
pub const SMALL_AMOUNT: f64 = 5.0;

/// The parts of a transaction the features use, hashed once.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub time_ms: i64,
    pub amount: f64,
    /// ln(amount) relative to the merchant category's typical price (see
    /// [`Observation::priced`]), so a laptop is not an outlier just for not being coffee.
    pub log_amount: f64,
    pub small: bool,
    pub merchant: u16,
    pub category: Option<u16>,
    pub device: Option<u16>,
    pub country: u16,
    pub shipping_differs: bool,
    pub card: Option<u16>,
    pub location: Option<(f64, f64)>,
    pub account_age_days: Option<u32>,
    /// UTC hour of day of the event.
    pub hour: u8,
}

impl Observation {
    /// `time_ms` and `amount_cents` come from the validator, which already parsed them.
    pub fn new(tx: &Transaction, time_ms: i64, amount_cents: i64) -> Self {
        let amount = amount_cents as f64 / 100.0;
        Self {
            time_ms,
            amount,
            log_amount: amount.max(0.01).ln(),
            small: amount < SMALL_AMOUNT,
            merchant: tag(&tx.merchant_id),
            category: tx.merchant_category.as_deref().map(tag),
            device: tx.device_id.as_deref().map(tag),
            country: tag(&tx.country),
            shipping_differs: tx
                .shipping_country
                .as_ref()
                .is_some_and(|s| *s != tx.country),
            card: tx
                .card_fingerprint
                .as_deref()
                .or(tx.card_last4.as_deref())
                .map(tag),
            location: tx.latitude.zip(tx.longitude),
            account_age_days: tx.account_age_days,
            hour: (time_ms.div_euclid(3_600_000).rem_euclid(24)) as u8,
        }
    }
}

impl Observation {
    /// Expresses the amount relative to its category's typical log price.
    pub fn priced(mut self, category_log_price: f64) -> Self {
        self.log_amount -= category_log_price;
        self
    }
}

/// Feature names in vector order, each with the rule (reason) it reports under. Rule names
/// are stable: they appear in alerts and in `disabled_rules`.
pub const FEATURES: [(&str, &str); NUM_FEATURES] = [
    ("velocity_minute", "velocity_minute"),
    ("velocity_hour", "velocity_hour"),
    ("velocity_day", "velocity_day"),
    ("velocity_new_merchant", "velocity_burst"),
    ("rapid_repeat", "velocity_burst"),
    ("rapid_new_merchant", "velocity_burst"),
    ("amount_spike", "amount_spike"),
    ("amount_spike_new_merchant", "amount_spike"),
    ("amount_above_peak", "amount_spike"),
    ("new_merchant", "new_merchant"),
    ("new_category", "new_category"),
    ("new_device", "new_device"),
    ("new_country", "new_country"),
    ("new_card", "new_card"),
    (
        "new_device_new_country_high_amount",
        "new_device_new_country_high_amount",
    ),
    ("recent_novelty", "recent_novelty"),
    ("recent_novelty_new", "recent_novelty"),
    (
        "recent_novelty_high_amount",
        "new_device_new_country_high_amount",
    ),
    ("impossible_travel", "impossible_travel"),
    ("impossible_travel_new_country", "impossible_travel"),
    ("billing_shipping_mismatch", "billing_shipping_mismatch"),
    ("card_testing", "card_testing"),
    ("card_testing_new_cards", "card_testing"),
    ("small_amount_new_device", "card_testing"),
    ("new_account", "new_account"),
    ("unusual_hour", "unusual_hour"),
];

pub const NUM_FEATURES: usize = 26;

/// Plain measurements behind the features, for reports and the rules-only baseline.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Raw {
    /// Events of this customer in roughly the last minute / hour, before this one.
    pub velocity_minute: f64,
    pub velocity_hour: f64,
    pub amount: f64,
    /// Speed implied by the previous located event, km/h (0 when under 300 km apart).
    pub travel_kmh: f64,
    /// Small amounts in roughly the last minute, before this one.
    pub small_burst: f64,
    pub new_device: bool,
    pub new_country: bool,
}

/// The model's input vector plus the raw measurements.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Features {
    pub x: [f64; NUM_FEATURES],
    pub raw: Raw,
}

/// Great-circle distance in km.
pub fn haversine_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (la1, lo1, la2, lo2) = (
        a.0.to_radians(),
        a.1.to_radians(),
        b.0.to_radians(),
        b.1.to_radians(),
    );
    let h = ((la2 - la1) / 2.0).sin().powi(2)
        + la1.cos() * la2.cos() * ((lo2 - lo1) / 2.0).sin().powi(2);
    2.0 * 6_371.0 * h.sqrt().min(1.0).asin()
}

fn flag(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

impl Features {
    /// Features of `o` given the customer's state before it.
    pub fn extract(p: &Profile, o: &Observation) -> Self {
        let t = o.time_ms;
        let m = p.maturity();
        let seen = p.count > 0;

        // Velocity beyond what this customer's own long-run rate predicts, so a customer
        // who always buys often is not flagged for it.
        let lifetime_s = ((t / 1000) - i64::from(p.first_seen_s)).max(3_600) as f64;
        let rate = f64::from(p.count) / lifetime_s;
        let mut vel = [0.0; 3];
        let mut excess = [0.0; 3];
        for k in 0..3 {
            vel[k] = f64::from(p.velocity[k]) * p.decay(t, VELOCITY_TAU_S[k]);
            excess[k] = (vel[k] - rate * VELOCITY_TAU_S[k]).max(0.0).ln_1p();
        }

        // Minutes-apart purchases at new places are a burst; hours apart are a day out.
        let gap_s = ((t - p.last_ms).max(0) as f64 / 1_000.0).max(1.0);
        let rapid = if seen {
            (900.0 / gap_s).ln().clamp(0.0, 5.0) * m
        } else {
            0.0
        };

        let amount_m = (f64::from(p.count) / 5.0).min(1.0);
        let sd = (f64::from(p.amount_var) + 0.09).sqrt();
        let z = if seen {
            (o.log_amount - f64::from(p.amount_mean)) / sd
        } else {
            0.0
        };
        let spike = (z - 1.5).clamp(0.0, 8.0) * amount_m;
        let above_peak = if seen {
            (o.log_amount - f64::from(p.amount_peak)).clamp(0.0, 5.0) * amount_m
        } else {
            0.0
        };

        let new_merchant = m * flag(!p.merchants.contains(o.merchant));
        let new_category = m * flag(o.category.is_some_and(|c| !p.categories.contains(c)));
        let device_new = o.device.is_some_and(|d| !p.devices.contains(d));
        let new_device = m * flag(device_new);
        let country_new = !p.countries.contains(o.country);
        let new_country = m * flag(country_new);
        let card_new = o.card.is_some_and(|c| !p.cards.contains(c));
        let new_card = m * flag(card_new);
        let high_amount = ((z - 1.0) / 2.0).clamp(0.0, 1.0) * amount_m;

        // Speed from the last place, and from the one before it (a second event abroad
        // right after the first is as impossible as the first).
        let mut travel_kmh: f64 = 0.0;
        if let Some(here) = o.location {
            for (ms, lat, lon) in [
                (p.located_ms, p.lat, p.lon),
                (p.prev_located_ms, p.prev_lat, p.prev_lon),
            ] {
                if ms == 0 {
                    continue;
                }
                let km = haversine_km((f64::from(lat), f64::from(lon)), here);
                let hours = ((t - ms).max(0) as f64 / 3.6e6).max(1.0 / 60.0);
                if km > PLACE_KM {
                    travel_kmh = travel_kmh.max(km / hours);
                }
            }
        }
        let impossible = (travel_kmh / 800.0).max(1.0).log2().min(4.0);

        let small_burst = if seen {
            f64::from(p.small_burst) * p.decay(t, BURST_TAU_S)
        } else {
            0.0
        };
        let card_testing = flag(o.small) * small_burst.ln_1p();
        let new_cards = if seen {
            f64::from(p.new_cards) * p.decay(t, NEW_CARD_TAU_S)
        } else {
            0.0
        };
        let card_testing_new_cards = flag(card_new && seen) * new_cards.ln_1p();

        let novelty = if seen {
            (f64::from(p.recent_novelty) * p.decay(t, NOVELTY_TAU_S)).ln_1p()
        } else {
            0.0
        };
        let any_new = new_merchant.max(new_device).max(new_country).max(new_card);

        let new_account = o
            .account_age_days
            .map_or(0.0, |d| (30.0 - f64::from(d)).max(0.0) / 30.0);
        let total: f64 = p.hours.iter().map(|h| f64::from(*h)).sum();
        let unusual_hour = if p.count >= 10 {
            let ph = (f64::from(p.hours[usize::from(o.hour)]) + 0.5) / (total + 12.0);
            (-(ph * 24.0).ln()).clamp(0.0, 4.0)
        } else {
            0.0
        };

        let x = [
            excess[0],
            excess[1],
            excess[2],
            excess[1] * new_merchant,
            rapid,
            rapid * new_merchant,
            spike,
            spike * new_merchant,
            above_peak,
            new_merchant,
            new_category,
            new_device,
            new_country,
            new_card,
            new_device * new_country * high_amount,
            novelty,
            novelty * any_new,
            novelty * high_amount,
            impossible,
            impossible * new_country,
            flag(o.shipping_differs),
            card_testing,
            card_testing_new_cards,
            flag(o.small) * new_device,
            new_account,
            unusual_hour,
        ];
        let raw = Raw {
            velocity_minute: vel[0],
            velocity_hour: vel[1],
            amount: o.amount,
            travel_kmh,
            small_burst,
            new_device: seen && device_new,
            new_country: seen && country_new,
        };
        Self { x, raw }
    }

    /// Value of the named feature (tests and reports).
    pub fn get(&self, name: &str) -> Option<f64> {
        FEATURES
            .iter()
            .position(|(n, _)| *n == name)
            .map(|i| self.x[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_api::PaymentMethod;

    const MIN: i64 = 60_000;
    const DAY: i64 = 86_400_000;

    fn tx(merchant: &str, device: &str, country: &str, loc: (f64, f64)) -> Transaction {
        Transaction {
            transaction_id: "t".into(),
            customer_id: "c".into(),
            merchant_id: merchant.into(),
            merchant_category: Some("grocery".into()),
            amount: 0.0,
            currency: "EUR".into(),
            timestamp: String::new(),
            payment_method: PaymentMethod::CreditCard,
            channel: None,
            country: country.into(),
            shipping_country: Some(country.into()),
            card_last4: Some("4242".into()),
            card_fingerprint: Some("fp1".into()),
            device_id: Some(device.into()),
            ip_address: None,
            latitude: Some(loc.0),
            longitude: Some(loc.1),
            account_age_days: Some(400),
            items: None,
        }
    }

    const PARIS: (f64, f64) = (48.86, 2.35);
    const TOKYO: (f64, f64) = (35.68, 139.69);

    /// A customer with 20 days of one purchase a day at the same shop.
    fn habitual() -> Profile {
        let mut p = Profile::default();
        for d in 0..20 {
            let t = tx("m1", "d1", "FR", PARIS);
            p.observe(&Observation::new(&t, d * DAY + 9 * 3_600_000, 3_000));
        }
        p
    }

    #[test]
    fn haversine_matches_known_distance() {
        let km = haversine_km(PARIS, TOKYO);
        assert!((km - 9_712.0).abs() < 30.0, "{km}");
    }

    #[test]
    fn a_habitual_purchase_has_no_novelty() {
        let p = habitual();
        let f = Features::extract(
            &p,
            &Observation::new(
                &tx("m1", "d1", "FR", PARIS),
                20 * DAY + 9 * 3_600_000,
                3_100,
            ),
        );
        for name in [
            "new_merchant",
            "new_device",
            "new_country",
            "amount_spike",
            "impossible_travel",
            "velocity_minute",
            "unusual_hour",
        ] {
            assert_eq!(f.get(name), Some(0.0), "{name}");
        }
    }

    #[test]
    fn takeover_shows_new_device_country_and_high_amount() {
        let p = habitual();
        let f = Features::extract(
            &p,
            &Observation::new(
                &tx("m9", "d9", "JP", TOKYO),
                19 * DAY + 10 * 3_600_000,
                90_000,
            ),
        );
        assert_eq!(f.get("new_device"), Some(1.0));
        assert_eq!(f.get("new_country"), Some(1.0));
        assert!(f.get("new_device_new_country_high_amount").unwrap() > 0.9);
        assert!(f.get("amount_spike_new_merchant").unwrap() > 2.0);
        assert!(
            f.get("impossible_travel").unwrap() > 1.0,
            "Paris → Tokyo in an hour"
        );
    }

    #[test]
    fn plausible_travel_is_not_impossible() {
        let p = habitual();
        let f = Features::extract(
            &p,
            &Observation::new(
                &tx("m9", "d1", "JP", TOKYO),
                19 * DAY + 9 * 3_600_000 + 20 * 3_600_000,
                3_000,
            ),
        );
        assert_eq!(f.get("impossible_travel"), Some(0.0));
        assert!(f.raw.travel_kmh > 0.0 && f.raw.travel_kmh < 800.0);
    }

    #[test]
    fn card_testing_burst_builds_up() {
        let mut p = habitual();
        let start = 19 * DAY + 12 * 3_600_000;
        let mut last = 0.0;
        for i in 0..6 {
            let mut t = tx("m7", "d7", "FR", PARIS);
            t.card_fingerprint = Some(format!("stolen{}", i / 2));
            let o = Observation::new(&t, start + i * 5_000, 100);
            let f = Features::extract(&p, &o);
            if i > 0 {
                assert!(
                    f.get("card_testing").unwrap() > last,
                    "burst grows at event {i}"
                );
                assert!(f.get("velocity_minute").unwrap() > 0.0);
            }
            last = f.get("card_testing").unwrap();
            p.observe(&o);
        }
        assert!(last > 1.5);
        assert!(p.new_cards > 2.0);
    }

    #[test]
    fn velocity_decays_after_quiet_time() {
        let mut p = habitual();
        let t0 = 19 * DAY + 12 * 3_600_000;
        for i in 0..5 {
            p.observe(&Observation::new(
                &tx("m1", "d1", "FR", PARIS),
                t0 + i * MIN / 4,
                3_000,
            ));
        }
        let busy = Features::extract(
            &p,
            &Observation::new(&tx("m1", "d1", "FR", PARIS), t0 + 2 * MIN, 3_000),
        );
        let later = Features::extract(
            &p,
            &Observation::new(&tx("m1", "d1", "FR", PARIS), t0 + 3 * 3_600_000, 3_000),
        );
        assert!(busy.get("velocity_minute").unwrap() > 0.5);
        assert_eq!(later.get("velocity_minute"), Some(0.0));
        assert!(later.raw.velocity_hour < busy.raw.velocity_hour);
    }
}
