//! Stable hashing for compact sets. Profiles are persisted and reloaded by other worker
//! processes, so fingerprints must not depend on a per-process random seed (unlike std's
//! `RandomState`): FNV-1a is stable, fast on short ids and good enough for 16-bit tags.

/// 64-bit FNV-1a of `bytes`.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A non-zero 16-bit tag for `s`; zero marks an empty slot in a [`crate::profile::TagSet`].
pub fn tag(s: &str) -> u16 {
    let h = fnv1a(s.as_bytes());
    match (h >> 48) as u16 ^ (h as u16) {
        0 => 1,
        t => t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_stable_and_non_zero() {
        // Pinned: a change here would make every persisted profile forget its history.
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_ne!(tag(""), 0);
        assert_eq!(tag("m-00042"), tag("m-00042"));
        assert_ne!(tag("m-00042"), tag("m-00043"));
    }
}
