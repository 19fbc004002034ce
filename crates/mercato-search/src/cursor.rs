//! Opaque pagination cursors.
//!
//! A cursor is an offset plus a fingerprint of the query it belongs to, so a cursor pasted into
//! another query is rejected instead of silently returning an arbitrary slice. Offsets (rather than
//! search-after keys) keep the adapter simple; deep pages are bounded by the result window. The
//! fingerprint is FNV-1a because it must be stable across processes and Rust releases (std's
//! `DefaultHasher` is not), and it guards against mistakes, not attackers.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mercato_core::Error;
use serde::{Deserialize, Serialize};

use crate::SearchSort;

#[derive(Serialize, Deserialize)]
struct Wire {
    /// Format version, so a later format can reject (or read) older cursors deliberately.
    v: u8,
    o: usize,
    h: String,
}

const VERSION: u8 = 1;

pub(crate) fn fingerprint(
    words_key: &str,
    category: Option<i64>,
    min: Option<i64>,
    max: Option<i64>,
    sort: SearchSort,
) -> u64 {
    let mut h = Fnv::new();
    h.bytes(words_key.as_bytes());
    h.bytes(&[0xff]);
    for part in [category, min, max] {
        match part {
            Some(v) => {
                h.bytes(&[1]);
                h.bytes(&v.to_le_bytes());
            }
            None => h.bytes(&[0]),
        }
    }
    h.bytes(&[sort as u8]);
    h.0
}

pub(crate) fn encode(offset: usize, fingerprint: u64) -> String {
    let wire = Wire { v: VERSION, o: offset, h: format!("{fingerprint:016x}") };
    // Serializing a struct of plain values cannot fail.
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&wire).unwrap_or_default())
}

pub(crate) fn decode(cursor: &str, fingerprint: u64) -> Result<usize, Error> {
    let invalid = || Error::field("cursor", "is not a cursor returned by this search");
    if cursor.len() > 256 {
        return Err(invalid());
    }
    let bytes = URL_SAFE_NO_PAD.decode(cursor.trim()).map_err(|_| invalid())?;
    let wire: Wire = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    if wire.v != VERSION {
        return Err(invalid());
    }
    if wire.h != format!("{fingerprint:016x}") {
        return Err(Error::field("cursor", "belongs to a different query; start again without a cursor"));
    }
    Ok(wire.o)
}

struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn bytes(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejection() {
        let f = fingerprint("red shoe", Some(3), None, Some(500), SearchSort::PriceAsc);
        let c = encode(40, f);
        assert_eq!(decode(&c, f).unwrap(), 40);

        let other = fingerprint("red shoe", Some(3), None, Some(500), SearchSort::PriceDesc);
        assert_ne!(f, other);
        assert!(decode(&c, other).is_err());
        // Filters that differ only in which slot holds the value must not collide.
        assert_ne!(
            fingerprint("", Some(5), None, None, SearchSort::Relevance),
            fingerprint("", None, Some(5), None, SearchSort::Relevance)
        );
        for garbage in ["", "!!!", "eyJ2IjoxfQ", &"A".repeat(10_000), "bnVsbA"] {
            assert!(decode(garbage, f).is_err(), "{garbage}");
        }
    }
}
