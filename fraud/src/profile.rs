//! A customer's online state: everything the features need from the customer's past, in a
//! fixed layout that encodes to [`ENCODED_LEN`] bytes (≤ 256) so the worker can persist it
//! as `bytea` in its batch transaction and warm it back when it gains a partition.
//!
//! The in-memory fields have exactly the encoded types (f32, 16-bit tags), so
//! encode → decode is lossless and a partition move cannot change a verdict.

use crate::features::Observation;

/// Layout version, first byte of every encoding. Bump on any layout change: a worker
/// refuses other versions and starts that customer afresh.
pub const VERSION: u8 = 3;

/// Time constants of the decayed velocity counters: one minute, one hour, one day.
pub const VELOCITY_TAU_S: [f64; 3] = [60.0, 3_600.0, 86_400.0];
/// Time constant of the small-amount burst counter (card testing: seconds apart).
pub const BURST_TAU_S: f64 = 60.0;
/// Time constant of the first-seen-card counter.
pub const NEW_CARD_TAU_S: f64 = 3_600.0;
/// Time constant of the recent-novelty counter (new merchants, devices, countries, cards).
pub const NOVELTY_TAU_S: f64 = 3_600.0;
/// Time constant of the short purchase and novelty counters.
pub const SHORT_TAU_S: f64 = 300.0;
/// Distance beyond which a located event counts as a different place (km).
pub const PLACE_KM: f64 = 300.0;
/// Per-event pull of the amount peak back toward the mean, so one old outlier fades.
const PEAK_RETAIN: f32 = 0.98;
/// Events after which the amount statistics stop weighting history more (EW window).
const AMOUNT_WINDOW: f32 = 50.0;
/// Pseudo-events of a flat day in the hour-of-day profile.
const HOUR_PRIOR_EVENTS: f64 = 30.0;
/// Events after which a customer's novelty rates stop weighting history more.
const HABIT_WINDOW: f32 = 50.0;

/// What a customer without history is assumed to be like: the cold-start prior every
/// habit starts from and is pulled toward while the customer has few events
/// ([`PRIOR_WEIGHT`] pseudo-events).
pub mod prior {
    /// Purchases a day, counted as [`DAYS`] days of history.
    pub const DAILY_RATE: f64 = 3.0;
    pub const DAYS: f64 = 0.25;
    /// Shares of purchases at a merchant, on a device, in a country, with a card new to
    /// the customer.
    pub const NEW_MERCHANT: f32 = 0.3;
    pub const NEW_DEVICE: f32 = 0.1;
    pub const NEW_COUNTRY: f32 = 0.03;
    pub const NEW_CARD: f32 = 0.05;
    /// ln(amount) priced against its category (see `Observation::priced`), and its
    /// spread across customers.
    pub const LOG_AMOUNT: f32 = 3.3;
    pub const LOG_AMOUNT_VAR: f32 = 0.6;
}
/// Pseudo-events of prior in the novelty and amount estimates: enough that a burst of
/// purchases cannot teach a new customer's profile that bursts are normal.
pub const PRIOR_WEIGHT: f32 = 10.0;

/// A small set of 16-bit tags with hit counters. When full, a new tag replaces the least
/// used one, so habitual members survive a stream of one-off visits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagSet<const N: usize> {
    tags: [u16; N],
    hits: [u8; N],
}

impl<const N: usize> Default for TagSet<N> {
    fn default() -> Self {
        Self {
            tags: [0; N],
            hits: [0; N],
        }
    }
}

impl<const N: usize> TagSet<N> {
    pub const ENCODED_LEN: usize = 3 * N;

    pub fn contains(&self, tag: u16) -> bool {
        self.tags.contains(&tag)
    }

    /// Hits recorded for `tag` (0 when absent); halved over time, so a relative measure.
    pub fn hits(&self, tag: u16) -> u8 {
        self.tags
            .iter()
            .position(|t| *t == tag)
            .map_or(0, |i| self.hits[i])
    }

    pub fn len(&self) -> usize {
        self.tags.iter().filter(|t| **t != 0).count()
    }

    /// Whether `tag` is the member with the most hits.
    pub fn is_main(&self, tag: u16) -> bool {
        let hits = self.hits(tag);
        hits > 0 && self.hits.iter().all(|h| *h <= hits)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records a visit; returns whether `tag` was new.
    pub fn insert(&mut self, tag: u16) -> bool {
        if let Some(i) = self.tags.iter().position(|t| *t == tag) {
            if self.hits[i] == u8::MAX {
                self.hits.iter_mut().for_each(|h| *h = (*h).div_ceil(2));
            }
            self.hits[i] += 1;
            return false;
        }
        // Empty slots have 0 hits, so min_by_key picks them first.
        let victim = (0..N).min_by_key(|i| self.hits[*i]).unwrap_or(0);
        self.tags[victim] = tag;
        self.hits[victim] = 1;
        true
    }

    fn write(&self, out: &mut Vec<u8>) {
        for (t, h) in self.tags.iter().zip(&self.hits) {
            out.extend_from_slice(&t.to_le_bytes());
            out.push(*h);
        }
    }

    fn read(r: &mut Reader<'_>) -> Self {
        let mut s = Self::default();
        for i in 0..N {
            s.tags[i] = u16::from_le_bytes(r.take());
            s.hits[i] = r.take::<1>()[0];
        }
        s
    }
}

/// One customer's state. Times are event times (ms since the Unix epoch).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Profile {
    /// Event time of the first event seen, in seconds.
    pub first_seen_s: u32,
    /// Event time of the latest event; decayed counters are as of this instant.
    pub last_ms: i64,
    /// Events seen (saturating).
    pub count: u32,
    /// Decayed event counts over a minute, an hour and a day.
    pub velocity: [f32; 3],
    /// Decayed count of small amounts over ~a minute.
    pub small_burst: f32,
    /// Decayed count of first-seen cards over ~an hour.
    pub new_cards: f32,
    /// Exponentially weighted mean and variance of ln(amount).
    pub amount_mean: f32,
    pub amount_var: f32,
    /// A slowly fading maximum of ln(amount): how big this customer's big purchases are.
    pub amount_peak: f32,
    /// Decayed count of first-seen merchants, devices, countries and cards over ~an hour.
    pub recent_novelty: f32,
    /// Decayed counts of purchases and of novel ones over ~five minutes: a burst inside a
    /// busy customer's ordinary hour.
    pub short_events: f32,
    pub short_novelty: f32,
    /// Decayed money spent over ~five minutes, in units of this customer's usual purchase.
    pub short_spend: f32,
    /// Exponentially weighted share of purchases at a new merchant, on a new device, in a
    /// new country, with a new card: how novel this customer usually is.
    pub novelty_rates: [f32; 4],
    /// Time (0 = never) and place of the latest event that carried a location.
    pub located_ms: i64,
    pub lat: f32,
    pub lon: f32,
    /// The place before the current one (over [`PLACE_KM`] away), and when it was last seen:
    /// catches a second event far away right after the first one.
    pub prev_located_ms: i64,
    pub prev_lat: f32,
    pub prev_lon: f32,
    /// Events per UTC hour of day, halved when one saturates.
    pub hours: [u8; 24],
    pub merchants: TagSet<16>,
    pub categories: TagSet<8>,
    pub devices: TagSet<4>,
    pub countries: TagSet<4>,
    pub cards: TagSet<4>,
    /// The device most recently first seen (after the first event), and when, in seconds
    /// (0: none): a stolen card's new phone keeps being used through a burst, long after
    /// its first purchase was judged as a new device.
    pub fresh_device: u16,
    pub fresh_device_s: u32,
}

const PRIOR_NOVELTY: [f32; 4] = [
    prior::NEW_MERCHANT,
    prior::NEW_DEVICE,
    prior::NEW_COUNTRY,
    prior::NEW_CARD,
];

/// Bytes of an encoded [`Profile`].
pub const ENCODED_LEN: usize = 1 // version
    + 4 // first_seen_s
    + 8 // last_ms
    + 4 // count
    + 12 // velocity
    + 13 * 4 // burst, new cards, amount mean/var/peak, novelty (hour, 5 min), spend, 4 rates
    + 2 * 16 // two located places
    + 24 // hours
    + TagSet::<16>::ENCODED_LEN
    + TagSet::<8>::ENCODED_LEN
    + 3 * TagSet::<4>::ENCODED_LEN
    + 2 + 4; // fresh device and when

const _: () = assert!(
    ENCODED_LEN <= 256,
    "a profile must persist in at most 256 bytes"
);

/// Why persisted bytes could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    UnknownVersion(u8),
    Length(usize),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UnknownVersion(v) => write!(f, "unknown profile version {v}"),
            Self::Length(n) => write!(f, "profile of {n} bytes, expected {ENCODED_LEN}"),
        }
    }
}

impl std::error::Error for DecodeError {}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const K: usize>(&mut self) -> [u8; K] {
        let (head, rest) = self.0.split_at(K);
        self.0 = rest;
        head.try_into().expect("length checked before reading")
    }
    fn f32(&mut self) -> f32 {
        f32::from_le_bytes(self.take())
    }
}

impl Profile {
    /// Events seen so far, as a confidence in [0, 1] for "new X" features: a customer with
    /// little history has not had the chance to show habits.
    pub fn maturity(&self) -> f64 {
        (f64::from(self.count) / 8.0).min(1.0)
    }

    /// This customer's usual purchases per second at `now_ms`: events over lifetime, with
    /// [`prior::DAYS`] of prior history at [`prior::DAILY_RATE`]. A lifetime average, so a
    /// burst barely moves it, and a habitually busy customer's own rate after a day or two.
    pub fn usual_rate(&self, now_ms: i64) -> f64 {
        let lifetime_s = if self.count == 0 {
            0.0
        } else {
            ((now_ms / 1000) - i64::from(self.first_seen_s)).max(0) as f64
        };
        let prior_s = prior::DAYS * 86_400.0;
        // The last hour's purchases do not count: a burst must not teach a new customer's
        // pace that bursts are its habit.
        let recent = f64::from(self.velocity[1]) * self.decay(now_ms, VELOCITY_TAU_S[1]);
        let settled = (f64::from(self.count) - recent).max(0.0);
        (settled + prior::DAILY_RATE * prior::DAYS) / (lifetime_s + prior_s)
    }

    /// A purchase of ln-amount `log_amount` in units of this customer's usual purchase (1
    /// before any history), capped so one outlier does not dominate.
    pub fn relative_spend(&self, log_amount: f64) -> f64 {
        if self.count == 0 {
            return 1.0;
        }
        (log_amount - f64::from(self.amount_mean)).min(3.0).exp()
    }

    /// Whether `o` is at a merchant, on a device, in a country, with a card new to this
    /// customer (an event without a device or card is not new in those).
    pub fn novel_in(&self, o: &Observation) -> [bool; 4] {
        [
            !self.merchants.contains(o.merchant),
            o.device.is_some_and(|d| !self.devices.contains(d)),
            !self.countries.contains(o.country),
            o.card.is_some_and(|c| !self.cards.contains(c)),
        ]
    }

    /// Usual share of purchases at a new merchant, device, country and card.
    pub fn novelty(&self) -> [f64; 4] {
        if self.count == 0 {
            PRIOR_NOVELTY.map(f64::from)
        } else {
            self.novelty_rates.map(f64::from)
        }
    }

    /// Decay factor of a counter with time constant `tau_s` from `last_ms` to `now_ms`.
    pub fn decay(&self, now_ms: i64, tau_s: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let dt = (now_ms - self.last_ms).max(0) as f64 / 1000.0;
        (-dt / tau_s).exp()
    }

    /// Folds one event into the state. Called after the event was scored.
    pub fn observe(&mut self, o: &Observation) {
        let first = self.count == 0;
        if first {
            self.first_seen_s = (o.time_ms / 1000).clamp(0, i64::from(u32::MAX)) as u32;
        }
        let novel = self.novel_in(o);
        let device_new = novel[1];
        self.observe_habits(novel, first);
        let decays = VELOCITY_TAU_S.map(|tau| self.decay_for(o.time_ms, tau, first));
        for (v, d) in self.velocity.iter_mut().zip(decays) {
            *v = (f64::from(*v) * d + 1.0) as f32;
        }
        let small = if o.small { 1.0 } else { 0.0 };
        self.small_burst = (f64::from(self.small_burst)
            * self.decay_for(o.time_ms, BURST_TAU_S, first)
            + small) as f32;
        let card_new = if novel[3] && !first { 1.0 } else { 0.0 };
        self.new_cards = (f64::from(self.new_cards)
            * self.decay_for(o.time_ms, NEW_CARD_TAU_S, first)
            + card_new) as f32;

        let novel = if first {
            0.0
        } else {
            novel.iter().filter(|b| **b).count() as f64
        };
        self.recent_novelty = (f64::from(self.recent_novelty)
            * self.decay_for(o.time_ms, NOVELTY_TAU_S, first)
            + novel) as f32;
        let short = self.decay_for(o.time_ms, SHORT_TAU_S, first);
        self.short_events = (f64::from(self.short_events) * short + 1.0) as f32;
        self.short_novelty = (f64::from(self.short_novelty) * short + novel) as f32;
        self.short_spend =
            (f64::from(self.short_spend) * short + self.relative_spend(o.log_amount)) as f32;

        // Exponentially weighted Welford on ln(amount).
        let n = (self.count as f32 + 1.0).min(AMOUNT_WINDOW);
        let alpha = 1.0 / n;
        let x = o.log_amount as f32;
        let d = x - self.amount_mean;
        self.amount_mean += alpha * d;
        self.amount_var = (1.0 - alpha) * (self.amount_var + alpha * d * d);
        self.amount_peak = if first {
            x
        } else {
            x.max(self.amount_mean + (self.amount_peak - self.amount_mean) * PEAK_RETAIN)
        };

        if let Some((lat, lon)) = o.location {
            let last = (f64::from(self.lat), f64::from(self.lon));
            if self.located_ms > 0 && crate::features::haversine_km(last, (lat, lon)) > PLACE_KM {
                self.prev_located_ms = self.located_ms;
                self.prev_lat = self.lat;
                self.prev_lon = self.lon;
            }
            self.located_ms = o.time_ms;
            self.lat = lat as f32;
            self.lon = lon as f32;
        }
        let h = &mut self.hours[usize::from(o.hour)];
        if *h == u8::MAX {
            self.hours.iter_mut().for_each(|h| *h /= 2);
        }
        self.hours[usize::from(o.hour)] += 1;
        self.merchants.insert(o.merchant);
        if let Some(c) = o.category {
            self.categories.insert(c);
        }
        if let Some(d) = o.device {
            self.devices.insert(d);
            if device_new && !first {
                self.fresh_device = d;
                self.fresh_device_s = (o.time_ms / 1000).clamp(1, i64::from(u32::MAX)) as u32;
            }
        }
        self.countries.insert(o.country);
        if let Some(c) = o.card {
            self.cards.insert(c);
        }
        self.count = self.count.saturating_add(1);
        self.last_ms = self.last_ms.max(o.time_ms);
    }

    /// How much busier than its daily average this customer is at `hour` (UTC), from its
    /// hour-of-day histogram around that hour, trusted as far as its history reaches (a
    /// day of purchases does not yet say much about an hour never seen).
    pub fn hour_factor(&self, hour: u8) -> f64 {
        let total: f64 = self.hours.iter().map(|h| f64::from(*h)).sum();
        if total == 0.0 {
            return 1.0;
        }
        let h = usize::from(hour);
        let around: f64 = [(h + 23) % 24, h, (h + 1) % 24]
            .iter()
            .map(|i| f64::from(self.hours[*i]))
            .sum();
        let own = 24.0 * around / (3.0 * total);
        let trust = total / (total + HOUR_PRIOR_EVENTS);
        (trust * own + (1.0 - trust)).clamp(0.25, 4.0)
    }

    /// Novelty habits, starting from the cold-start prior; `novel` is [`Profile::novel_in`]
    /// of the event being folded in.
    fn observe_habits(&mut self, novel: [bool; 4], first: bool) {
        if first {
            self.novelty_rates = PRIOR_NOVELTY;
            return;
        }
        let alpha = 1.0 / (self.count as f32 + PRIOR_WEIGHT).min(HABIT_WINDOW);
        for (r, x) in self.novelty_rates.iter_mut().zip(novel) {
            *r += alpha * (if x { 1.0 } else { 0.0 } - *r);
        }
    }

    fn decay_for(&self, now_ms: i64, tau_s: f64, first: bool) -> f64 {
        if first {
            0.0
        } else {
            self.decay(now_ms, tau_s)
        }
    }

    /// The persisted form: [`VERSION`] then fixed little-endian fields.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(ENCODED_LEN);
        out.push(VERSION);
        out.extend_from_slice(&self.first_seen_s.to_le_bytes());
        out.extend_from_slice(&self.last_ms.to_le_bytes());
        out.extend_from_slice(&self.count.to_le_bytes());
        for v in self.velocity {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for v in [
            self.small_burst,
            self.new_cards,
            self.amount_mean,
            self.amount_var,
            self.amount_peak,
            self.recent_novelty,
            self.short_events,
            self.short_novelty,
            self.short_spend,
        ]
        .into_iter()
        .chain(self.novelty_rates)
        {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for (ms, lat, lon) in [
            (self.located_ms, self.lat, self.lon),
            (self.prev_located_ms, self.prev_lat, self.prev_lon),
        ] {
            out.extend_from_slice(&ms.to_le_bytes());
            out.extend_from_slice(&lat.to_le_bytes());
            out.extend_from_slice(&lon.to_le_bytes());
        }
        out.extend_from_slice(&self.hours);
        self.merchants.write(&mut out);
        self.categories.write(&mut out);
        self.devices.write(&mut out);
        self.countries.write(&mut out);
        self.cards.write(&mut out);
        out.extend_from_slice(&self.fresh_device.to_le_bytes());
        out.extend_from_slice(&self.fresh_device_s.to_le_bytes());
        debug_assert_eq!(out.len(), ENCODED_LEN);
        out
    }

    /// Loads a persisted profile; refuses other versions rather than misreading them.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        match bytes.first() {
            Some(&VERSION) => {}
            Some(&v) => return Err(DecodeError::UnknownVersion(v)),
            None => return Err(DecodeError::Length(0)),
        }
        if bytes.len() != ENCODED_LEN {
            return Err(DecodeError::Length(bytes.len()));
        }
        let mut r = Reader(&bytes[1..]);
        let first_seen_s = u32::from_le_bytes(r.take());
        let last_ms = i64::from_le_bytes(r.take());
        let count = u32::from_le_bytes(r.take());
        let velocity = [r.f32(), r.f32(), r.f32()];
        let (small_burst, new_cards, amount_mean, amount_var) =
            (r.f32(), r.f32(), r.f32(), r.f32());
        let (amount_peak, recent_novelty) = (r.f32(), r.f32());
        let (short_events, short_novelty, short_spend) = (r.f32(), r.f32(), r.f32());
        let novelty_rates = [r.f32(), r.f32(), r.f32(), r.f32()];
        let located_ms = i64::from_le_bytes(r.take());
        let (lat, lon) = (r.f32(), r.f32());
        let prev_located_ms = i64::from_le_bytes(r.take());
        let (prev_lat, prev_lon) = (r.f32(), r.f32());
        let hours = r.take();
        Ok(Self {
            first_seen_s,
            last_ms,
            count,
            velocity,
            small_burst,
            new_cards,
            amount_mean,
            amount_var,
            amount_peak,
            recent_novelty,
            short_events,
            short_novelty,
            short_spend,
            novelty_rates,
            located_ms,
            lat,
            lon,
            prev_located_ms,
            prev_lat,
            prev_lon,
            hours,
            merchants: TagSet::read(&mut r),
            categories: TagSet::read(&mut r),
            devices: TagSet::read(&mut r),
            countries: TagSet::read(&mut r),
            cards: TagSet::read(&mut r),
            fresh_device: u16::from_le_bytes(r.take()),
            fresh_device_s: u32::from_le_bytes(r.take()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_set_keeps_habitual_members_under_churn() {
        let mut s = TagSet::<4>::default();
        for _ in 0..5 {
            assert!(!s.insert(7) || s.hits(7) == 1);
        }
        for t in 100..200 {
            assert!(s.insert(t));
        }
        assert!(s.contains(7), "a habitual tag survives one-off visits");
        assert_eq!(s.len(), 4);
    }

    #[test]
    fn a_burst_does_not_teach_a_new_customer_its_pace() {
        use sluice_api::{PaymentMethod, Transaction};
        const DAY: i64 = 86_400_000;
        let tx = |merchant: &str| Transaction {
            transaction_id: "t".into(),
            customer_id: "c".into(),
            merchant_id: merchant.into(),
            merchant_category: None,
            amount: 0.0,
            currency: "EUR".into(),
            timestamp: Default::default(),
            payment_method: PaymentMethod::CreditCard,
            channel: None,
            country: "FR".into(),
            shipping_country: None,
            card_last4: None,
            card_fingerprint: Some("fp".into()),
            device_id: Some("d".into()),
            ip_address: None,
            latitude: None,
            longitude: None,
            account_age_days: None,
            items: None,
        };
        // A new customer's first purchase, then ten more a minute apart.
        let mut p = Profile::default();
        p.observe(&Observation::new(&tx("m0"), 10 * DAY, 3_000));
        let before = p.usual_rate(10 * DAY + 60_000);
        for i in 1..=10 {
            p.observe(&Observation::new(
                &tx(&format!("x{i}")),
                10 * DAY + i * 60_000,
                3_000,
            ));
        }
        // The lifetime average would be 11.75 purchases over a quarter day and 11 minutes,
        // 45 a day; the burst's own hour barely counts.
        let after = p.usual_rate(10 * DAY + 11 * 60_000);
        let lifetime_average = 11.75 / (0.25 * 86_400.0 + 660.0);
        assert!(
            after < lifetime_average / 5.0 && after < 2.5 * before,
            "{} a day, was {}",
            after * 86_400.0,
            before * 86_400.0
        );
        // Once the hour has passed, the purchases are history like any other.
        let settled = p.usual_rate(10 * DAY + 6 * 3_600_000);
        assert!(settled > 3.0 * before, "{}", settled * 86_400.0);
    }

    #[test]
    fn tag_set_halves_instead_of_overflowing() {
        let mut s = TagSet::<2>::default();
        s.insert(1);
        s.insert(2);
        for _ in 0..600 {
            s.insert(1);
        }
        assert!(s.contains(2));
        assert!(s.hits(1) > s.hits(2));
    }

    #[test]
    fn encode_decode_round_trip_is_lossless_on_simulated_customers() {
        use crate::eval::{CLOCK_START_MS, event_time_ms};
        use crate::sim::{SimConfig, Simulator};
        let mut sim = Simulator::new(
            11,
            SimConfig {
                customers: 200,
                ..SimConfig::default()
            },
        );
        let mut profiles = std::collections::HashMap::<String, Profile>::new();
        for i in 0..20_000 {
            let (tx, _) = sim.next_event(CLOCK_START_MS + i * 30_000);
            let o = Observation::new(
                &tx,
                event_time_ms(&tx.timestamp).unwrap(),
                (tx.amount * 100.0) as i64,
            );
            profiles
                .entry(tx.customer_id.to_string())
                .or_default()
                .observe(&o);
        }
        for p in profiles.values() {
            let bytes = p.encode();
            assert!(bytes.len() <= 256);
            assert_eq!(bytes[0], VERSION);
            assert_eq!(&Profile::decode(&bytes).unwrap(), p);
        }
    }

    #[test]
    fn in_memory_state_is_as_small_as_the_encoding() {
        assert!(
            std::mem::size_of::<Profile>() <= 256,
            "{}",
            std::mem::size_of::<Profile>()
        );
    }

    #[test]
    fn decode_rejects_other_versions_and_lengths() {
        let mut b = Profile::default().encode();
        assert_eq!(b.len(), ENCODED_LEN);
        assert_eq!(Profile::decode(&b[..10]), Err(DecodeError::Length(10)));
        b[0] = 9;
        assert_eq!(Profile::decode(&b), Err(DecodeError::UnknownVersion(9)));
    }
}
