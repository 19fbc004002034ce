//! Signed webhooks, both ways (the test payment provider's deliveries to us,
//! and our deliveries to subscribers): `t=<unix seconds>,v1=<hex
//! HMAC-SHA256 of "<t>.<body>">`. Signing the timestamp with the body lets a
//! receiver reject replays of old deliveries without remembering every one.

use hmac::{Hmac, Mac};
use mercato_core::{Error, ErrorCode};
use sha2::Sha256;

pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    format!("t={timestamp},v1={}", hex::encode(mac(secret, timestamp, body).finalize().into_bytes()))
}

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Checks `header` against `body`; `now` and `tolerance` are in seconds. The
/// comparison is constant-time.
pub fn verify(secret: &[u8], header: &str, body: &[u8], now: i64, tolerance: i64) -> Result<(), Error> {
    let invalid = |m: &str| Error::new(ErrorCode::InvalidSignature, m.to_string());
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => timestamp = v.parse::<i64>().ok(),
            Some(("v1", v)) => signatures.push(v),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or_else(|| invalid("signature header has no timestamp"))?;
    if (now - timestamp).abs() > tolerance {
        return Err(invalid("signature timestamp is outside the tolerance window"));
    }
    for sig in signatures {
        let Ok(bytes) = hex::decode(sig) else { continue };
        if mac(secret, timestamp, body).verify_slice(&bytes).is_ok() {
            return Ok(());
        }
    }
    Err(invalid("no valid signature"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_reject_tampering_and_replays() {
        let secret = b"whsec_test";
        let body = br#"{"id":"evt_1"}"#;
        let header = sign(secret, 1_000, body);
        assert!(verify(secret, &header, body, 1_010, 300).is_ok());
        assert!(verify(secret, &header, br#"{"id":"evt_2"}"#, 1_010, 300).is_err());
        assert!(verify(b"other", &header, body, 1_010, 300).is_err());
        assert!(verify(secret, &header, body, 1_000 + 301, 300).is_err());
        assert!(verify(secret, "v1=00", body, 1_000, 300).is_err());
    }
}
