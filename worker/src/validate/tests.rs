//! Tests of the contract rules: every reason, the bounds, card numbers in fields.

use super::*;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

fn bounds() -> TimeBounds {
    TimeBounds::around("2026-11-25T12:00:00Z".parse().unwrap(), 30, 300)
}

fn event(over: &str) -> String {
    let mut v: serde_json::Value = serde_json::json!({
        "transaction_id": "t1", "customer_id": "c1", "merchant_id": "m1",
        "amount": 12.34, "currency": "EUR", "timestamp": "2026-11-25T11:59:00Z",
        "payment_method": "credit_card", "country": "DE"
    });
    let patch: serde_json::Value = serde_json::from_str(over).unwrap();
    for (k, val) in patch.as_object().unwrap() {
        if val.is_null() {
            v.as_object_mut().unwrap().remove(k);
        } else {
            v[k] = val.clone();
        }
    }
    v.to_string()
}

fn reason(over: &str) -> Option<Reason> {
    validate(event(over).as_bytes(), bounds())
        .err()
        .map(|r| r.reason)
}

#[test]
fn accepts_a_valid_event() {
    let v = validate(event("{}").as_bytes(), bounds()).unwrap();
    assert_eq!(v.amount_cents, 1234);
}

#[test]
fn each_rule_has_its_reason() {
    assert_eq!(reason(r#"{"amount": 0}"#), Some(Reason::InvalidAmount));
    assert_eq!(reason(r#"{"amount": -5}"#), Some(Reason::InvalidAmount));
    assert_eq!(reason(r#"{"amount": 1e12}"#), Some(Reason::InvalidAmount));
    assert_eq!(reason(r#"{"amount": 1.005}"#), Some(Reason::InvalidAmount));
    assert_eq!(reason(r#"{"amount": "NaN"}"#), Some(Reason::WrongType));
    assert_eq!(
        reason(r#"{"currency": "XYZ"}"#),
        Some(Reason::UnknownCurrency)
    );
    assert_eq!(reason(r#"{"currency": "eur"}"#), Some(Reason::InvalidField));
    assert_eq!(
        reason(r#"{"customer_id": null}"#),
        Some(Reason::MissingField)
    );
    let explicit_null = r#"{"transaction_id": "t1", "customer_id": null}"#;
    assert_eq!(
        validate(explicit_null.as_bytes(), bounds())
            .err()
            .map(|r| r.reason),
        Some(Reason::MissingField)
    );
    assert_eq!(reason(r#"{"customer_id": 7}"#), Some(Reason::WrongType));
    assert_eq!(
        reason(r#"{"payment_method": "cash"}"#),
        Some(Reason::InvalidField)
    );
    assert_eq!(
        reason(r#"{"timestamp": "2030-01-01T00:00:00Z"}"#),
        Some(Reason::FutureTimestamp)
    );
    assert_eq!(
        reason(r#"{"timestamp": "2020-01-01T00:00:00Z"}"#),
        Some(Reason::TooOld)
    );
    assert_eq!(
        reason(r#"{"timestamp": "yesterday"}"#),
        Some(Reason::InvalidTimestamp)
    );
    assert_eq!(
        reason(r#"{"device_id": "a\u0000b"}"#),
        Some(Reason::InvalidField)
    );
    assert_eq!(
        reason(r#"{"transaction_id": ""}"#),
        Some(Reason::InvalidField)
    );
    assert_eq!(reason(r#"{"items": 0}"#), Some(Reason::InvalidField));
    assert_eq!(
        reason(r#"{"account_age_days": -1}"#),
        Some(Reason::InvalidField)
    );
    assert_eq!(
        reason(r#"{"ip_address": "999.1.1.1"}"#),
        Some(Reason::InvalidField)
    );
    let bad = |b: &[u8]| validate(b, bounds()).unwrap_err().reason;
    assert_eq!(bad(b"{not json"), Reason::MalformedJson);
    assert_eq!(bad(b"\xff\xfe"), Reason::InvalidUtf8);
    assert_eq!(bad(&vec![b' '; MAX_RECORD_BYTES + 1]), Reason::TooLarge);
}

#[test]
fn masks_card_numbers_but_not_other_numbers() {
    // Raw bytes of rejected records (mask_pans): as aggressive as ever.
    let masked = mask_pans(b"pan 4111111111111111, grouped 4111-1111-1111-1111, id 1234567890123");
    let s = String::from_utf8(masked).unwrap();
    assert_eq!(
        s,
        "pan ************1111, grouped ****-****-****-1111, id 1234567890123"
    );
    // ids with dash-separated numbers are not card numbers
    assert_eq!(mask_pans(b"run-4-11-0000001365"), b"run-4-11-0000001365");
    // a PAN glued inside a longer digit run is still caught in raw bytes
    let s = String::from_utf8(mask_pans(b"x9994111111111111111y")).unwrap();
    assert!(!s.contains("4111111111111111"), "{s}");
    // ... but inside an alphanumeric token it is no card number in a valid record's field
    assert_eq!(pan::mask_card_numbers("x9994111111111111111y"), None);
    assert!(!pan::contains_card_number(b"x9994111111111111111y"));
    let v = validate(
        event(r#"{"transaction_id": "x9994111111111111111y"}"#).as_bytes(),
        bounds(),
    )
    .unwrap();
    assert_eq!(v.tx.transaction_id, "x9994111111111111111y");
}

#[test]
fn card_numbers_in_free_text_are_masked_and_in_identifiers_rejected() {
    let v = validate(
        event(r#"{"merchant_category": "card 4111111111111111"}"#).as_bytes(),
        bounds(),
    )
    .unwrap();
    assert_eq!(
        v.tx.merchant_category.as_deref(),
        Some("card ************1111")
    );
    // Until issue 8 this was stored as "dev-************1111": an identifier silently
    // changed. Now the record is rejected instead.
    let r = validate(
        event(r#"{"device_id": "dev-4111111111111111"}"#).as_bytes(),
        bounds(),
    )
    .unwrap_err();
    assert_eq!(r.reason, Reason::CardNumberInIdentifier);
    assert_eq!(r.reason.as_str(), "card_number_in_identifier");
    assert_eq!(r.detail, "device_id holds a card number");
}

#[test]
fn json_error_details_never_quote_a_card_number() {
    for over in [
        r#"{"payment_method": "4111111111111111"}"#,
        r#"{"items": "4111 1111 1111 1111"}"#,
        r#"{"channel": "x4111111111111111"}"#,
    ] {
        let r = validate(event(over).as_bytes(), bounds()).unwrap_err();
        assert!(
            !r.detail.contains("4111111111111111") && !r.detail.contains("4111 1111"),
            "{over}: {}",
            r.detail
        );
        assert!(r.detail.contains("1111"), "{}", r.detail);
    }
}

#[test]
fn the_uuid_of_issue_8_is_stored_unchanged() {
    let id = "4daa5459-0392-8523-6673-5dbc0e66b2e5";
    // The hazard is real: the old masking rewrote it.
    assert_eq!(
        pan::old_mask_pans(id.as_bytes()),
        b"4daa****-****-****-*673-5dbc0e66b2e5"
    );
    for field in IDENTIFIERS {
        let v = validate(
            event(&format!(r#"{{"{field}": "{id}"}}"#)).as_bytes(),
            bounds(),
        )
        .unwrap();
        assert_eq!(identifier(&v.tx, field), id, "{field}");
    }
}

const IDENTIFIERS: [&str; 5] = [
    "transaction_id",
    "customer_id",
    "merchant_id",
    "device_id",
    "card_fingerprint",
];

fn identifier<'a>(tx: &'a Transaction, field: &str) -> &'a str {
    match field {
        "transaction_id" => &tx.transaction_id,
        "customer_id" => &tx.customer_id,
        "merchant_id" => &tx.merchant_id,
        "device_id" => tx.device_id.as_deref().unwrap(),
        "card_fingerprint" => tx.card_fingerprint.as_deref().unwrap(),
        other => panic!("not an identifier: {other}"),
    }
}

/// Random bytes from a seeded generator: the same sequence on every run.
fn random_bytes(rng: &mut StdRng, n: usize) -> Vec<u8> {
    let mut out = vec![0; n];
    rng.fill_bytes(&mut out);
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A UUID: version 4 with its variant bits, or any 128 bits in the same shape.
fn uuid(rng: &mut StdRng, v4: bool) -> String {
    let mut b = random_bytes(rng, 16);
    if v4 {
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
    }
    let h = hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn hex_id(rng: &mut StdRng, chars: usize) -> String {
    let mut h = hex(&random_bytes(rng, chars.div_ceil(2)));
    h.truncate(chars);
    h
}

/// Base64 of `n` random bytes: standard alphabet with padding, or URL-safe (`-`, `_`)
/// without.
fn base64(rng: &mut StdRng, n: usize, url: bool) -> String {
    const STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let alphabet = if url { URL } else { STD };
    let bytes = random_bytes(rng, n);
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let v = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | u32::from(b) << (16 - 8 * i));
        for k in 0..=chunk.len() {
            out.push(char::from(alphabet[(v >> (18 - 6 * k) & 63) as usize]));
        }
        if !url {
            out.extend(std::iter::repeat_n('=', 3 - chunk.len()));
        }
    }
    out
}

/// Issue 8: random ids of every common shape, in every identifier field of a full
/// `validate()`, are neither altered nor rejected, although the old masking rewrote
/// about 1 in 5,000 UUIDs.
#[test]
fn a_million_random_ids_are_never_altered_or_rejected() {
    const N: usize = 1_000_000;
    let started = std::time::Instant::now();
    let mut rng = StdRng::seed_from_u64(0x5EED_0008);
    let (mut uuids, mut uuids_old_hit) = (0usize, 0usize);
    let (mut v4_old_hit, mut hexes, mut hex_old_hit) = (0usize, 0usize, 0usize);
    let (mut b64s, mut b64_old_hit) = (0usize, 0usize);
    let (mut altered, mut rejected) = (0usize, 0usize);
    let mut first_failure: Option<String> = None;
    for i in 0..N {
        let transaction_id = uuid(&mut rng, true);
        let device_id = uuid(&mut rng, false).to_uppercase();
        let customer_id = hex_id(&mut rng, [32, 40, 64][i % 3]);
        let merchant_id = base64(&mut rng, [16, 24, 32, 48][i % 4], i % 2 == 0);
        let card_fingerprint = if i % 2 == 0 {
            hex_id(&mut rng, [64, 40, 32][i % 3])
        } else {
            base64(&mut rng, [32, 48, 64][i % 3], i % 4 == 1)
        };
        let old_hit = |s: &str| pan::old_mask_pans(s.as_bytes()) != s.as_bytes();
        uuids += 2;
        let v4_hit = old_hit(&transaction_id);
        v4_old_hit += usize::from(v4_hit);
        uuids_old_hit += usize::from(v4_hit) + usize::from(old_hit(&device_id));
        hexes += 1 + usize::from(i % 2 == 0);
        hex_old_hit += usize::from(old_hit(&customer_id));
        b64s += 1 + usize::from(i % 2 == 1);
        b64_old_hit += usize::from(old_hit(&merchant_id));
        if i % 2 == 0 {
            hex_old_hit += usize::from(old_hit(&card_fingerprint));
        } else {
            b64_old_hit += usize::from(old_hit(&card_fingerprint));
        }
        let payload = format!(
            r#"{{"transaction_id":"{transaction_id}","customer_id":"{customer_id}","merchant_id":"{merchant_id}","amount":12.34,"currency":"EUR","timestamp":"2026-11-25T11:59:00Z","payment_method":"credit_card","country":"DE","device_id":"{device_id}","card_fingerprint":"{card_fingerprint}"}}"#
        );
        match validate(payload.as_bytes(), bounds()) {
            Ok(v) => {
                let tx = &v.tx;
                if tx.transaction_id != transaction_id
                    || tx.customer_id != customer_id
                    || tx.merchant_id != merchant_id
                    || tx.device_id.as_deref() != Some(device_id.as_str())
                    || tx.card_fingerprint.as_deref() != Some(card_fingerprint.as_str())
                {
                    altered += 1;
                    first_failure.get_or_insert(payload);
                }
            }
            Err(r) => {
                rejected += 1;
                first_failure.get_or_insert(format!("{:?}: {payload}", r.reason));
            }
        }
    }
    eprintln!(
        "{N} records, each with 2 UUIDs, 1-2 hex ids and 1-2 base64 ids in its identifier \
         fields: {uuids} UUIDs ({v4_old_hit} of the {N} v4 transaction ids and \
         {uuids_old_hit} UUIDs in all contained a Luhn run the old masking rewrote), \
         {hexes} hex ids ({hex_old_hit} old hits), {b64s} base64 ids ({b64_old_hit} old \
         hits); {altered} altered, {rejected} rejected; {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        v4_old_hit > 0,
        "the ids never exercised the hazard of the old masking"
    );
    assert_eq!(
        (altered, rejected),
        (0, 0),
        "first failure: {first_failure:?}"
    );
}

/// The test's own Luhn check, independent of `pan::luhn_ok`.
fn luhn(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0') * if i % 2 == 1 { 2 } else { 1 };
            d / 10 + d % 10
        })
        .sum();
    sum.is_multiple_of(10)
}

/// `prefix` plus the Luhn check digit.
fn with_check_digit(prefix: &str) -> String {
    (0..10)
        .map(|d| format!("{prefix}{d}"))
        .find(|s| luhn(s))
        .unwrap()
}

fn grouped(pan: &str, groups: &[usize], sep: &str) -> String {
    assert_eq!(groups.iter().sum::<usize>(), pan.len(), "{pan} {groups:?}");
    let mut parts = Vec::new();
    let mut at = 0;
    for &g in groups {
        parts.push(&pan[at..at + g]);
        at += g;
    }
    parts.join(sep)
}

/// Every digit but the last four as `*`.
fn masked(written: &str) -> String {
    let mut keep = 4;
    let mut out: Vec<char> = written.chars().rev().collect();
    for c in &mut out {
        if c.is_ascii_digit() {
            if keep > 0 {
                keep -= 1;
            } else {
                *c = '*';
            }
        }
    }
    out.into_iter().rev().collect()
}

/// Real card-number layouts (test PANs of 13–19 digits; unbroken, and with spaces and
/// dashes in the groupings cards are printed in), in every text field, at the start and
/// end of the text and next to punctuation: free text masked, identifiers rejected,
/// unknown fields never stored, raw bytes of every rejection masked.
#[test]
fn every_card_layout_is_masked_or_rejected() {
    let pans: Vec<String> = [
        "4222222222222",    // Visa, 13
        "30569309025904",   // Diners Club, 14
        "378282246310005",  // American Express, 15
        "4111111111111111", // Visa
        "4012888888881881", // Visa
        "5555555555554444", // Mastercard
        "6011111111111117", // Discover
        "6011000990139424", // Discover
        "3530111333300000", // JCB
    ]
    .into_iter()
    .map(String::from)
    .chain(
        [
            "5012345678901234",   // Maestro, 17
            "63041234567890123",  // Maestro, 18
            "622126123456789012", // UnionPay, 19
            "677112345678901234", // Maestro, 19
        ]
        .map(with_check_digit),
    )
    .collect();
    let mut layouts = Vec::new();
    for pan in &pans {
        assert!(luhn(pan), "{pan} fails Luhn");
        assert!(pan.parse::<u64>().is_ok() && (13..=19).contains(&pan.len()));
        layouts.push(pan.clone());
        let groupings: &[&[usize]] = match pan.len() {
            13 => &[&[4, 4, 4, 1], &[4, 4, 5]],
            14 => &[&[4, 6, 4], &[4, 4, 4, 2]],
            15 => &[&[4, 6, 5], &[4, 4, 4, 3]],
            16 => &[&[4, 4, 4, 4]],
            17 => &[&[4, 4, 4, 4, 1]],
            18 => &[&[4, 4, 4, 4, 2]],
            _ => &[&[4, 4, 4, 4, 3], &[6, 13]],
        };
        for g in groupings {
            layouts.push(grouped(pan, g, " "));
            layouts.push(grouped(pan, g, "-"));
        }
    }
    let contexts = [
        "{}",
        "card {}",
        "{} end",
        "({})",
        "pan:{};",
        "#{}#",
        "x-{}",
        "{}-x",
        "_{}_",
        "\"{}\"",
        "a/{}/b",
        "{}.",
        "é{}ü",
        "tab\t{}\n",
    ];
    let base = || {
        serde_json::json!({
            "transaction_id": "t1", "customer_id": "c1", "merchant_id": "m1",
            "amount": 12.34, "currency": "EUR", "timestamp": "2026-11-25T11:59:00Z",
            "payment_method": "credit_card", "country": "DE"
        })
    };
    let leaks = |bytes: &[u8], written: &str, pan: &str| {
        let text = String::from_utf8_lossy(bytes);
        text.contains(written) || text.contains(pan)
    };
    let mut checked = 0;
    for written in &layouts {
        let pan: String = written.chars().filter(char::is_ascii_digit).collect();
        for ctx in contexts {
            let text = ctx.replace("{}", written);
            let want = ctx.replace("{}", &masked(written));

            // Free text of a valid record: masked, last four kept.
            let mut e = base();
            e["merchant_category"] = text.clone().into();
            let v = validate(e.to_string().as_bytes(), bounds())
                .unwrap_or_else(|r| panic!("{text:?}: {r:?}"));
            assert_eq!(v.tx.merchant_category.as_deref(), Some(want.as_str()));

            // An unknown field of a valid record: never stored.
            let mut e = base();
            e["note"] = text.clone().into();
            let v = validate(e.to_string().as_bytes(), bounds()).unwrap();
            let stored = serde_json::to_vec(&v.tx).unwrap();
            assert!(!leaks(&stored, written, &pan), "{text:?}");

            // An identifier: the record is rejected, its raw bytes masked.
            for field in IDENTIFIERS {
                let mut e = base();
                e[field] = text.clone().into();
                let raw = e.to_string();
                let r = validate(raw.as_bytes(), bounds()).unwrap_err();
                assert_eq!(r.reason, Reason::CardNumberInIdentifier, "{field} {text:?}");
                assert!(!r.detail.contains(&pan[..6]), "{}", r.detail);
                assert!(!leaks(&mask_pans(raw.as_bytes()), written, &pan), "{raw}");
                checked += 1;
            }

            // An invalid record carrying it everywhere: its raw bytes masked.
            let mut e = base();
            e["amount"] = (-1).into();
            e["merchant_category"] = text.clone().into();
            e["device_id"] = text.clone().into();
            e["note"] = text.clone().into();
            let raw = e.to_string();
            let r = validate(raw.as_bytes(), bounds()).unwrap_err();
            assert_eq!(r.reason, Reason::InvalidAmount);
            let masked_raw = mask_pans(raw.as_bytes());
            assert!(!leaks(&masked_raw, written, &pan), "{raw}");
            let last_four = &written[masked(written).rfind('*').unwrap() + 1..];
            assert!(
                String::from_utf8_lossy(&masked_raw).contains(last_four),
                "last four kept: {last_four:?} in {raw}"
            );
            checked += 1;
        }
        // Glued inside an alphanumeric token, an unbroken run is no card number: an
        // identifier stays as sent (raw bytes would still be masked).
        if !written.contains([' ', '-']) {
            for token in [format!("ab{written}"), format!("{written}cd")] {
                let mut e = base();
                e["transaction_id"] = token.clone().into();
                let v = validate(e.to_string().as_bytes(), bounds()).unwrap();
                assert_eq!(v.tx.transaction_id, token);
                assert!(!leaks(&mask_pans(token.as_bytes()), written, &pan));
            }
        }
    }
    eprintln!(
        "{} PANs in {} layouts x {} contexts: {checked} records masked or rejected",
        pans.len(),
        layouts.len(),
        contexts.len()
    );
}
