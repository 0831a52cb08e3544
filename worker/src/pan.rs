//! Card numbers (PANs): finding and masking them, in two strengths.
//!
//! **Precise** ([`contains_card_number`], [`mask_card_numbers`]) is for the fields of valid
//! records. A card number is a run of 13–19 digits that
//! - is bounded on both sides by a character that is not an ASCII letter or digit (or by the
//!   start or end of the text),
//! - is written unbroken or in one of the groupings card numbers are printed in
//!   ([`is_card_grouping`]), groups separated by a single space or a single dash,
//! - passes the Luhn check.
//!
//! So a digit run inside a hex or alphanumeric token (a UUID, a hash, base64, `x4111…1y`) is
//! not a card number. For UUIDs that is structural, not luck: the only digit runs bounded by
//! non-alphanumerics in a UUID are whole groups of 8, 4, 4, 4 and 12 characters, and no
//! grouping made of consecutive UUID groups is a card grouping (a unit test checks every
//! one). Bytes outside ASCII count as boundaries: next to a card number they rather mean
//! free text than an identifier, and masking too much there is the safe side.
//!
//! **Aggressive** ([`mask_pans`]) is for the raw bytes of rejected records (DLQ,
//! `rejected_transactions`). Contract §1 requires every run of 13–19 digits that passes
//! the Luhn check to be masked there, wherever it sits: the bytes may not even be UTF-8 or
//! JSON, a card number may be glued to other characters or hidden in a longer digit run, and
//! nothing in them is an identifier anyone looks up (the rejection row keeps the
//! `transaction_id` of a duplicate in its own column). It masks everything the precise
//! definition finds, plus every Luhn-valid window of 13–19 digits inside any digit run, plus
//! card groupings whatever stands next to them.
//!
//! Both keep the last four digits and replace the other digits with `*`; separators stay.

/// Most groups a card grouping has (4-4-4-4-3).
const MAX_GROUPS: usize = 5;

/// At least this many digits before any text can hold a card number.
const MIN_DIGITS: usize = 13;

/// Does `text` hold a card number (the precise definition)?
pub fn contains_card_number(text: &[u8]) -> bool {
    if !enough_digits(text) {
        return false;
    }
    let mut found = false;
    candidates(text, true, |_, _| {
        found = true;
        false
    });
    found
}

/// `text` with every card number (the precise definition) masked, or `None` when it holds
/// none. Only ASCII digits change, so the result is valid UTF-8 like its input.
pub fn mask_card_numbers(text: &str) -> Option<String> {
    if !enough_digits(text.as_bytes()) {
        return None;
    }
    let mut out: Option<Vec<u8>> = None;
    candidates(text.as_bytes(), true, |start, end| {
        let out = out.get_or_insert_with(|| text.as_bytes().to_vec());
        mask_span(out, start, end);
        true
    });
    out.map(|bytes| String::from_utf8(bytes).expect("only ASCII digits were replaced"))
}

/// Mask card numbers in the raw bytes of a rejected record, aggressively (see the module
/// doc): every Luhn-valid window of 13–19 digits in any digit run, every card grouping
/// whatever stands next to it, and everything [`mask_card_numbers`] masks. Works on bytes,
/// so it also covers payloads that are not valid UTF-8.
pub fn mask_pans(bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    if !enough_digits(bytes) {
        return out;
    }
    mask_digit_runs(bytes, &mut out, is_card_grouping);
    // Unbounded candidates include every bounded one, so this covers the precise definition.
    candidates(bytes, false, |start, end| {
        mask_span(&mut out, start, end);
        true
    });
    out
}

/// The groupings card numbers are written in, as digits per group. A single group is an
/// unbroken run.
pub fn is_card_grouping(lens: &[usize]) -> bool {
    matches!(
        lens,
        [13..=19]
            // 16 digits (Visa, Mastercard, Discover, JCB, UnionPay) and 17–19
            | [4, 4, 4, 4]
            | [4, 4, 4, 4, 1..=3]
            // 13–15 digits as 4-4-4-n (13-digit Visa: 4-4-4-1) or 4-4-5
            | [4, 4, 4, 1..=3]
            | [4, 4, 5]
            // American Express (15) and Diners Club (14)
            | [4, 6, 5]
            | [4, 6, 4]
            // 19 digits (Maestro, UnionPay)
            | [6, 13]
    )
}

fn enough_digits(bytes: &[u8]) -> bool {
    bytes.iter().filter(|b| b.is_ascii_digit()).count() >= MIN_DIGITS
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

fn is_separator(b: u8) -> bool {
    b == b' ' || b == b'-'
}

/// Call `found(start, end)` for every byte span that is a card grouping passing Luhn,
/// starting at the first digit of a digit run and ending after the last digit of one. With
/// `bounded`, only spans with no ASCII letter or digit right before or after them. Spans may
/// overlap (each start is tried with every grouping that fits). Stops when `found` returns
/// false.
fn candidates(bytes: &[u8], bounded: bool, mut found: impl FnMut(usize, usize) -> bool) {
    let n = bytes.len();
    let mut i = 0;
    while i < n {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        // Up to MAX_GROUPS digit groups from here, each joined by one space or dash.
        let mut lens = [0usize; MAX_GROUPS];
        let mut ends = [0usize; MAX_GROUPS];
        let mut groups = 0;
        let mut j = start;
        loop {
            let group_start = j;
            while j < n && bytes[j].is_ascii_digit() {
                j += 1;
            }
            lens[groups] = j - group_start;
            ends[groups] = j;
            groups += 1;
            if groups == MAX_GROUPS
                || !(j + 1 < n && is_separator(bytes[j]) && bytes[j + 1].is_ascii_digit())
            {
                break;
            }
            j += 1;
        }
        let open_before = start == 0 || !is_token_byte(bytes[start - 1]);
        if !bounded || open_before {
            for k in (1..=groups).rev() {
                let end = ends[k - 1];
                let open_after = end == n || !is_token_byte(bytes[end]);
                if is_card_grouping(&lens[..k])
                    && (!bounded || open_after)
                    && luhn_ok(digits_of(&bytes[start..end]))
                    && !found(start, end)
                {
                    return;
                }
            }
        }
        // The next digit group (if any) is the next start.
        i = ends[0];
    }
}

fn digits_of(bytes: &[u8]) -> impl DoubleEndedIterator<Item = u32> + '_ {
    bytes
        .iter()
        .filter(|b| b.is_ascii_digit())
        .map(|b| u32::from(b - b'0'))
}

/// Replace every digit in `out[start..end]` but the last four with `*`.
fn mask_span(out: &mut [u8], start: usize, end: usize) {
    let mut keep = 4;
    for b in out[start..end].iter_mut().rev() {
        if b.is_ascii_digit() {
            if keep > 0 {
                keep -= 1;
            } else {
                *b = b'*';
            }
        }
    }
}

/// The long-standing raw-byte masking (now with the wider grouping list): digit groups
/// separated by exactly one space or dash form a chain; a chain in a card grouping is masked
/// as one, otherwise every group on its own ([`mask_run`]).
fn mask_digit_runs(bytes: &[u8], out: &mut [u8], grouping: fn(&[usize]) -> bool) {
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let mut groups: Vec<Vec<usize>> = vec![Vec::new()];
        let mut j = i;
        while j < bytes.len() {
            if bytes[j].is_ascii_digit() {
                groups.last_mut().expect("non-empty").push(j);
                j += 1;
            } else if is_separator(bytes[j]) && bytes.get(j + 1).is_some_and(u8::is_ascii_digit) {
                groups.push(Vec::new());
                j += 1;
            } else {
                break;
            }
        }
        let lens: Vec<usize> = groups.iter().map(Vec::len).collect();
        if groups.len() > 1 && grouping(&lens) {
            mask_run(&groups.concat(), bytes, out);
        } else {
            for g in &groups {
                mask_run(g, bytes, out);
            }
        }
        i = j;
    }
}

/// Within one run, mask every window of 13–19 consecutive digits that passes Luhn, so a
/// card number glued to other digits is caught too.
fn mask_run(digits: &[usize], bytes: &[u8], out: &mut [u8]) {
    if digits.len() < MIN_DIGITS {
        return;
    }
    let value = |k: usize| u32::from(bytes[digits[k]] - b'0');
    let mut start = 0;
    while start + MIN_DIGITS <= digits.len() {
        let mut matched = None;
        for len in (MIN_DIGITS..=19.min(digits.len() - start)).rev() {
            if luhn_ok((start..start + len).map(value)) {
                matched = Some(len);
                break;
            }
        }
        match matched {
            Some(len) => {
                for &pos in &digits[start..start + len - 4] {
                    out[pos] = b'*';
                }
                start += len;
            }
            None => start += 1,
        }
    }
}

/// The Luhn check over digits given most significant first.
pub fn luhn_ok(digits: impl DoubleEndedIterator<Item = u32>) -> bool {
    let sum: u32 = digits
        .rev()
        .enumerate()
        .map(|(i, d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// The raw-byte masking before card numbers were told apart from identifiers: digit chains
/// in the old groupings, Luhn windows anywhere. Tests use it to show that the hazard it had
/// (rewriting UUIDs) is really exercised.
#[cfg(test)]
pub(crate) fn old_mask_pans(bytes: &[u8]) -> Vec<u8> {
    fn old_grouping(lens: &[usize]) -> bool {
        match lens {
            [4, 6, 5] | [4, 6, 4] => true,
            [4, 4, 4, 4] => true,
            [4, 4, 4, 4, last] => (1..=3).contains(last),
            _ => false,
        }
    }
    let mut out = bytes.to_vec();
    mask_digit_runs(bytes, &mut out, old_grouping);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn precise(s: &str) -> String {
        mask_card_numbers(s).unwrap_or_else(|| s.to_owned())
    }

    fn raw(s: &str) -> String {
        String::from_utf8(mask_pans(s.as_bytes())).unwrap()
    }

    #[test]
    fn no_grouping_of_whole_uuid_groups_is_a_card_grouping() {
        let uuid = [8usize, 4, 4, 4, 12];
        for a in 0..uuid.len() {
            for b in a + 1..=uuid.len() {
                assert!(!is_card_grouping(&uuid[a..b]), "{:?}", &uuid[a..b]);
            }
        }
    }

    #[test]
    fn precise_needs_boundaries_and_groupings() {
        assert_eq!(precise("4111111111111111"), "************1111");
        assert_eq!(precise("pan:4111111111111111;"), "pan:************1111;");
        assert_eq!(precise("4111 1111 1111 1111"), "**** **** **** 1111");
        assert_eq!(precise("3782-822463-10005"), "****-******-*0005");
        // inside an alphanumeric token: not a card number
        assert_eq!(precise("x9994111111111111111y"), "x9994111111111111111y");
        assert_eq!(precise("a4111111111111111"), "a4111111111111111");
        assert_eq!(precise("4111111111111111b"), "4111111111111111b");
        // the UUID of issue 8
        let uuid = "4daa5459-0392-8523-6673-5dbc0e66b2e5";
        assert_eq!(precise(uuid), uuid);
        assert!(!contains_card_number(uuid.as_bytes()));
        assert_ne!(old_mask_pans(uuid.as_bytes()), uuid.as_bytes());
        // not a card grouping, or not Luhn
        assert_eq!(precise("41111-11111-111111"), "41111-11111-111111");
        assert_eq!(precise("4111111111111112"), "4111111111111112");
        // too long a run is not a card number (and 20 digits is no card)
        assert_eq!(precise("41111111111111111111"), "41111111111111111111");
        // a card number inside a longer dash chain, bounded by the dashes
        assert_eq!(
            precise("ref 2024-4111-1111-1111-1111"),
            "ref 2024-****-****-****-1111"
        );
        // double separators break a grouping
        assert_eq!(precise("4111  1111  1111  1111"), "4111  1111  1111  1111");
    }

    #[test]
    fn raw_masking_is_a_superset() {
        assert!(!raw("x9994111111111111111y").contains("4111111111111111"));
        assert!(!raw("x4111-1111-1111-1111y").contains("4111-1111"));
        assert!(!raw("t2024-4111-1111-1111-1111").contains("4111-1111"));
        assert!(!raw("t4111-1111-1111-1111-2024").contains("4111-1111"));
        assert!(!raw("t4222 2222 22222").contains("4222 2222"));
        assert_eq!(raw("id 1234567890123"), "id 1234567890123");
        assert_eq!(raw("run-4-11-0000001365"), "run-4-11-0000001365");
    }
}
