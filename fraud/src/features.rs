//! Features of one event against its customer's past. Extraction reads the profile as it
//! was *before* the event, so a verdict depends only on the customer's earlier events;
//! [`crate::profile::Profile::observe`] folds the event in afterwards.

use crate::hash::tag;
use crate::profile::{
    BURST_TAU_S, NEW_CARD_TAU_S, NOVELTY_TAU_S, PLACE_KM, PRIOR_WEIGHT, Profile, SHORT_TAU_S,
    VELOCITY_TAU_S, prior,
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
    ("new_device_new_merchant", "new_device"),
    ("novel_share", "velocity_burst"),
    ("short_novelty", "velocity_burst"),
    ("short_novel_share", "velocity_burst"),
    ("amount_tail", "amount_spike"),
    ("fresh_device", "new_device"),
    ("fresh_device_new_merchant", "velocity_burst"),
    ("settled_short_novelty", "velocity_burst"),
    ("settled_recent_novelty", "velocity_burst"),
    ("settled_velocity_hour", "velocity_burst"),
    ("novel_chain", "velocity_burst"),
    ("burst_spend", "velocity_burst"),
];

pub const NUM_FEATURES: usize = 38;

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

/// How surprising a (decayed) count is when `expected` were usual: the Chernoff exponent
/// of the Poisson upper tail, -ln P(X ≥ count) ≈ k·ln(k/λ) − (k − λ). A log-likelihood,
/// so three purchases in an hour from a customer who buys monthly weighs far more than
/// ten from one who buys hourly.
fn excess_over(count: f64, expected: f64) -> f64 {
    let lambda = expected.max(0.01);
    if count <= lambda {
        return 0.0;
    }
    (count * (count / lambda).ln() - (count - lambda)).min(15.0)
}

fn flag(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

impl Features {
    /// Features of `o` given the customer's state before it. Each is judged against the
    /// customer's own habits (pace, novelty rates, amounts), which start from the
    /// cold-start prior of [`crate::profile::prior`] and move to the customer's own as
    /// history builds, so a habitually busy customer is not flagged for being busy and a
    /// quiet one is noticed when they burst.
    pub fn extract(p: &Profile, o: &Observation) -> Self {
        let t = o.time_ms;
        let m = p.maturity();
        let seen = p.count > 0;

        // Velocity beyond what this customer's own pace predicts, as Poisson tail surprise
        // ([`excess_over`]), so a busy customer's ordinary ups and downs stay small. The pace of the day is the lifetime pace; within the hour it is scaled by how
        // much of the customer's buying happens at this hour (office hours, evenings).
        let daily_rate = p.usual_rate(t);
        let usual_rate = daily_rate * p.hour_factor(o.hour);
        let mut vel = [0.0; 3];
        let mut excess = [0.0; 3];
        for k in 0..3 {
            vel[k] = f64::from(p.velocity[k]) * p.decay(t, VELOCITY_TAU_S[k]);
            let rate = if k == 2 { daily_rate } else { usual_rate };
            excess[k] = excess_over(vel[k], rate * VELOCITY_TAU_S[k]);
        }

        // How unlikely a gap this short is at the customer's usual pace: -ln P(gap ≤ g).
        let gap_s = ((t - p.last_ms).max(0) as f64 / 1_000.0).max(1.0);
        let rapid = if seen {
            (-(usual_rate * gap_s).ln()).clamp(0.0, 8.0)
        } else {
            0.0
        };

        // Amounts against the customer's own, pulled toward the population while the
        // customer has few purchases.
        let n = f64::from(p.count.min(50));
        let w = n / (n + f64::from(PRIOR_WEIGHT));
        let mean = w * f64::from(p.amount_mean) + (1.0 - w) * f64::from(prior::LOG_AMOUNT);
        let var = w * f64::from(p.amount_var) + (1.0 - w) * f64::from(prior::LOG_AMOUNT_VAR);
        let z = (o.log_amount - mean) / (var + 0.09).sqrt();
        let spike = (z - 1.5).clamp(0.0, 8.0);
        let amount_m = (f64::from(p.count) / 5.0).min(1.0);
        let above_peak = if seen {
            (o.log_amount - f64::from(p.amount_peak)).clamp(0.0, 5.0) * amount_m
        } else {
            0.0
        };
        let high_amount = ((z - 1.0) / 2.0).clamp(0.0, 1.0);

        // Novelty as surprise: -ln(this customer's usual share of such purchases).
        let rates = p.novelty();
        let usual_novelty: f64 = rates.iter().sum();
        let novel = p.novel_in(o);
        let [_, device_new, country_new, card_new] = novel;
        let surprise: [f64; 4] = std::array::from_fn(|k| {
            if seen && novel[k] {
                -rates[k].max(0.01).ln()
            } else {
                0.0
            }
        });
        let unusual: [f64; 4] = std::array::from_fn(|k| {
            if seen && novel[k] {
                1.0 - rates[k]
            } else {
                0.0
            }
        });
        let [new_merchant, new_device, new_country, new_card] = surprise;
        let new_category = m * flag(o.category.is_some_and(|c| !p.categories.contains(c)));

        // Speed from the last place, and from the one before it. Away from the customer's main country both the last place and the one before
        // count: a second purchase abroad right after the first is as impossible as the
        // first. At home only the last place counts, and not even that when it is a
        // return (A → B → A): the odd one out was B, judged when it happened.
        let mut travel_kmh: f64 = 0.0;
        if let Some(here) = o.location {
            let returning = p.prev_located_ms > 0
                && haversine_km((f64::from(p.prev_lat), f64::from(p.prev_lon)), here) <= PLACE_KM;
            let at_home = p.countries.is_main(o.country);
            for (i, (ms, lat, lon)) in [
                (p.located_ms, p.lat, p.lon),
                (p.prev_located_ms, p.prev_lat, p.prev_lon),
            ]
            .into_iter()
            .enumerate()
            {
                if ms == 0 || (at_home && (i == 1 || returning)) {
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

        // Novel purchases in the last hour beyond what this customer's novelty rates and
        // usual pace predict.
        let recent_novel = if seen {
            f64::from(p.recent_novelty) * p.decay(t, NOVELTY_TAU_S)
        } else {
            0.0
        };
        let novelty = excess_over(recent_novel, usual_rate * NOVELTY_TAU_S * usual_novelty);
        let any_new = unusual.iter().copied().fold(0.0, f64::max);
        // Share of the last hour's purchases that were novel, beyond this customer's usual
        // share, weighed by how many purchases there were: a run of purchases all at new
        // places stands out at any pace, a run at the usual shops does not.
        let novel_share = if seen {
            let share = recent_novel / (vel[1] + 1.0);
            (share - usual_novelty).max(0.0) * (vel[1].min(5.0) / 5.0)
        } else {
            0.0
        };
        // The same over five minutes, where a burst inside a busy customer's ordinary hour
        // still stands out.
        let (short_novelty, short_novel_share, short_novel) = if seen {
            let d = p.decay(t, SHORT_TAU_S);
            let events = f64::from(p.short_events) * d;
            let novel = f64::from(p.short_novelty) * d;
            (
                excess_over(novel, usual_rate * SHORT_TAU_S * usual_novelty),
                (novel / (events + 1.0) - usual_novelty).max(0.0) * (events.min(3.0) / 3.0),
                novel,
            )
        } else {
            (0.0, 0.0, 0.0)
        };
        // A chain at home: a new merchant for this customer, moments after other novel
        // purchases, sooner than its pace makes likely. Its second link is the first sign of
        // a burst; abroad, a traveller's every shop is new, so only home counts.
        let at_home = flag(p.countries.is_main(o.country));
        let novel_chain = at_home * unusual[0] * (rapid / 4.0).min(1.0) * short_novel.min(1.0);

        // A device this customer first used within the last hour, from a customer who
        // rarely changes devices: the new device of a burst keeps counting after its first
        // purchase, which alone looks like one new-phone purchase.
        let fresh_device = match o.device {
            Some(d) if seen && !device_new && d == p.fresh_device && p.fresh_device_s > 0 => {
                let age_s = (t / 1000 - i64::from(p.fresh_device_s)).max(0) as f64;
                (-age_s / NOVELTY_TAU_S).exp() * (1.0 - rates[1]) * m
            }
            _ => 0.0,
        };

        // How established the customer was before the last hour: a burst's own purchases
        // must not make a new customer look established, and an established customer's
        // burst is judged with its whole history behind it.
        let settled = (f64::from(p.count) - vel[1]).max(0.0);
        let settled_m = (settled / 10.0).min(1.0);

        // Money spent over the last five minutes, this purchase included, in units of the
        // customer's usual purchase, as surprise at its usual pace: a burst spends several
        // purchases' worth in minutes.
        let burst_spend = if seen {
            let spend =
                f64::from(p.short_spend) * p.decay(t, SHORT_TAU_S) + p.relative_spend(o.log_amount);
            excess_over(spend, usual_rate * SHORT_TAU_S + 1.0)
        } else {
            0.0
        };

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
            excess[1] * unusual[0],
            rapid,
            rapid * unusual[0],
            spike,
            spike * unusual[0],
            above_peak,
            new_merchant,
            new_category,
            new_device,
            new_country,
            new_card,
            unusual[1] * unusual[2] * high_amount,
            novelty,
            novelty * any_new,
            novelty * high_amount,
            impossible,
            impossible * new_country,
            flag(o.shipping_differs),
            card_testing,
            card_testing_new_cards,
            flag(o.small) * unusual[1],
            new_account,
            unusual_hour,
            unusual[1] * unusual[0],
            novel_share,
            short_novelty,
            short_novel_share,
            // Log-normal tails fall off as z²: far out, each step counts for more.
            spike * spike / 4.0,
            fresh_device,
            fresh_device * unusual[0],
            short_novelty * settled_m,
            novelty * settled_m,
            excess[1] * settled_m,
            novel_chain,
            burst_spend,
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
            timestamp: Default::default(),
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
        // Surprise: -ln of this customer's (small) share of purchases on new devices / abroad.
        assert!(
            f.get("new_device").unwrap() > 2.0,
            "{:?}",
            f.get("new_device")
        );
        assert!(
            f.get("new_country").unwrap() > 2.0,
            "{:?}",
            f.get("new_country")
        );
        assert!(f.get("new_device_new_country_high_amount").unwrap() > 0.8);
        assert!(f.get("amount_spike_new_merchant").unwrap() > 2.0);
        assert!(
            f.get("impossible_travel").unwrap() > 1.0,
            "Paris → Tokyo in an hour"
        );
    }

    /// A customer making `n` purchases `gap` apart at three usual merchants, or, with
    /// `explore_every` k, at a new one every k-th purchase.
    fn customer_with(gap: i64, n: i64, explore_every: Option<i64>) -> Profile {
        let mut p = Profile::default();
        for i in 0..n {
            let m = match explore_every {
                Some(k) if i % k == 0 => format!("new{i}"),
                _ => format!("m{}", i % 3),
            };
            let t = tx(&m, "d1", "FR", PARIS);
            p.observe(&Observation::new(&t, i * gap, 3_000));
        }
        p
    }

    #[test]
    fn a_busy_customer_is_not_flagged_for_its_usual_pace() {
        // Every 10 minutes for 3 days (office-hours businesses look like this), then one
        // more 10 minutes later: no excess velocity, no rapid repeat.
        let busy = customer_with(10 * MIN, 432, None);
        let next = Observation::new(&tx("m1", "d1", "FR", PARIS), 432 * 10 * MIN, 3_000);
        let f = Features::extract(&busy, &next);
        assert!(f.get("velocity_hour").unwrap() < 0.5, "{f:?}");
        assert!(f.get("rapid_repeat").unwrap() < 0.5, "{f:?}");
        // The same pace from a customer who buys every 3 days is a burst.
        let mut quiet = customer_with(3 * DAY, 10, None);
        let t0 = 10 * 3 * DAY;
        for i in 0..5 {
            quiet.observe(&Observation::new(
                &tx("m1", "d1", "FR", PARIS),
                t0 + i * 10 * MIN,
                3_000,
            ));
        }
        let f = Features::extract(
            &quiet,
            &Observation::new(&tx("m1", "d1", "FR", PARIS), t0 + 50 * MIN, 3_000),
        );
        assert!(f.get("velocity_hour").unwrap() > 3.0, "{f:?}");
        assert!(f.get("rapid_repeat").unwrap() > 3.0, "{f:?}");
    }

    #[test]
    fn a_new_merchant_surprises_less_from_a_customer_who_often_tries_new_ones() {
        let habitual = customer_with(DAY, 60, None);
        let explorer = customer_with(DAY, 60, Some(2));
        let o = Observation::new(&tx("brand-new", "d1", "FR", PARIS), 60 * DAY, 3_000);
        let h = Features::extract(&habitual, &o)
            .get("new_merchant")
            .unwrap();
        let e = Features::extract(&explorer, &o)
            .get("new_merchant")
            .unwrap();
        assert!(h > 2.0 && e < 1.0, "habitual {h}, explorer {e}");
    }

    #[test]
    fn a_burst_does_not_teach_a_new_customer_that_bursts_are_normal() {
        // Two purchases a week apart, then eight at new merchants a minute apart.
        let mut p = customer_with(7 * DAY, 2, None);
        let t0 = 8 * DAY;
        let mut last = None;
        for i in 0..8 {
            let o = Observation::new(
                &tx(&format!("x{i}"), "d1", "FR", PARIS),
                t0 + i * MIN,
                3_000,
            );
            last = Some(Features::extract(&p, &o));
            p.observe(&o);
        }
        let f = last.expect("burst");
        assert!(f.get("rapid_repeat").unwrap() > 5.0, "{f:?}");
        assert!(f.get("recent_novelty").unwrap() > 5.0, "{f:?}");
        assert!(f.get("new_merchant").unwrap() > 0.3, "{f:?}");
    }

    #[test]
    fn a_burst_on_a_new_device_keeps_counting_after_its_first_purchase() {
        let mut p = habitual();
        let t0 = 20 * DAY + 12 * 3_600_000;
        let first = Observation::new(&tx("x0", "d9", "FR", PARIS), t0, 6_000);
        let f = Features::extract(&p, &first);
        assert!(f.get("new_device").unwrap() > 2.0, "{f:?}");
        assert_eq!(f.get("fresh_device"), Some(0.0), "new, not yet fresh");
        p.observe(&first);
        // A minute later on the same new phone, at another new shop.
        let second = Observation::new(&tx("x1", "d9", "FR", PARIS), t0 + MIN, 6_000);
        let f = Features::extract(&p, &second);
        assert_eq!(f.get("new_device"), Some(0.0));
        assert!(f.get("fresh_device").unwrap() > 0.8, "{f:?}");
        assert!(f.get("fresh_device_new_merchant").unwrap() > 0.7, "{f:?}");
        assert!(f.get("novel_chain").unwrap() > 0.5, "{f:?}");
        assert!(f.get("burst_spend").unwrap() > 1.0, "{f:?}");
        p.observe(&second);
        // A week later the phone is simply one of the customer's devices.
        let later = Observation::new(&tx("m1", "d9", "FR", PARIS), t0 + 7 * DAY, 3_000);
        assert!(Features::extract(&p, &later).get("fresh_device").unwrap() < 1e-3);
    }

    #[test]
    fn a_run_of_new_shops_counts_at_home_not_on_a_trip() {
        let mut p = habitual();
        let t0 = 20 * DAY + 12 * 3_600_000;
        for (i, (country, place)) in [("FR", PARIS), ("JP", TOKYO)].into_iter().enumerate() {
            let t = t0 + i as i64 * 2 * DAY;
            let a = Observation::new(&tx(&format!("a{i}"), "d1", country, place), t, 3_000);
            p.observe(&a);
            let b = Observation::new(&tx(&format!("b{i}"), "d1", country, place), t + MIN, 3_000);
            let chain = Features::extract(&p, &b).get("novel_chain").unwrap();
            assert_eq!(chain > 0.5, country == "FR", "{country}: {chain}");
            p.observe(&b);
        }
    }

    #[test]
    fn a_cloned_card_abroad_is_impossible_each_time_the_way_home_is_not() {
        // Paris at home, Tokyo (the clone), Paris again (the owner), Tokyo again.
        let mut p = habitual();
        let t0 = 19 * DAY + 12 * 3_600_000;
        let steps = [
            ("FR", PARIS, 0, false),
            ("JP", TOKYO, 10, true),
            ("FR", PARIS, 20, false),
            ("JP", TOKYO, 30, true),
        ];
        for (country, place, minutes, impossible) in steps {
            let o = Observation::new(&tx("m1", "d1", country, place), t0 + minutes * MIN, 3_000);
            let f = Features::extract(&p, &o);
            assert_eq!(
                f.get("impossible_travel").unwrap() > 1.0,
                impossible,
                "{country} at +{minutes} min: {:?}",
                f.raw
            );
            p.observe(&o);
        }
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
            t.card_fingerprint = Some(format!("stolen{}", i / 2).into());
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
