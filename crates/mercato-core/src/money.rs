//! Money is an integer count of minor units plus an ISO 4217 currency. Never a
//! float. Arithmetic is checked: an overflow is an error, not a wrap.

use crate::{Error, Result};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// An ISO 4217 alphabetic code, stored inline (three ASCII uppercase letters).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency([u8; 3]);

impl Currency {
    pub const USD: Currency = Currency(*b"USD");
    pub const EUR: Currency = Currency(*b"EUR");
    pub const CNY: Currency = Currency(*b"CNY");
    pub const JPY: Currency = Currency(*b"JPY");

    pub fn as_str(&self) -> &str {
        // Constructed only from validated ASCII uppercase letters.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }

    /// Number of minor-unit digits. Currencies not listed use 2, which is what
    /// ISO 4217 assigns to the vast majority.
    pub fn exponent(&self) -> u32 {
        match &self.0 {
            b"JPY" | b"KRW" | b"VND" | b"CLP" | b"ISK" | b"UGX" | b"XAF" | b"XOF" | b"PYG" => 0,
            b"BHD" | b"KWD" | b"OMR" | b"JOD" | b"TND" | b"LYD" | b"IQD" => 3,
            _ => 2,
        }
    }
}

impl FromStr for Currency {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let b = s.as_bytes();
        if b.len() == 3 && b.iter().all(|c| c.is_ascii_uppercase()) {
            Ok(Currency([b[0], b[1], b[2]]))
        } else {
            Err(Error::field("currency", format!("'{s}' is not an ISO 4217 code (three uppercase letters)")))
        }
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}
impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(|e: Error| serde::de::Error::custom(e.message))
    }
}

/// An amount in minor units (cents for USD, yen for JPY) of one currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    pub amount: i64,
    pub currency: Currency,
}

impl Money {
    pub const fn new(amount: i64, currency: Currency) -> Self {
        Money { amount, currency }
    }
    pub const fn zero(currency: Currency) -> Self {
        Money { amount: 0, currency }
    }

    fn same_currency(&self, other: &Money) -> Result<()> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(Error::validation(format!("cannot combine {} and {}", self.currency, other.currency)))
        }
    }

    pub fn checked_add(self, other: Money) -> Result<Money> {
        self.same_currency(&other)?;
        self.amount.checked_add(other.amount).map(|a| Money::new(a, self.currency)).ok_or_else(overflow)
    }

    pub fn checked_sub(self, other: Money) -> Result<Money> {
        self.same_currency(&other)?;
        self.amount.checked_sub(other.amount).map(|a| Money::new(a, self.currency)).ok_or_else(overflow)
    }

    pub fn checked_mul(self, quantity: i64) -> Result<Money> {
        self.amount.checked_mul(quantity).map(|a| Money::new(a, self.currency)).ok_or_else(overflow)
    }

    /// `self * basis_points / 10_000`, rounded half away from zero (the
    /// "commercial" rounding shops and tax authorities expect).
    pub fn percent_bp(self, basis_points: i64) -> Result<Money> {
        let product = (self.amount as i128) * (basis_points as i128);
        let rounded = div_round_half_away(product, 10_000);
        i64::try_from(rounded).map(|a| Money::new(a, self.currency)).map_err(|_| overflow())
    }

    pub fn min(self, other: Money) -> Money {
        if other.amount < self.amount { other } else { self }
    }

    pub fn is_negative(&self) -> bool {
        self.amount < 0
    }

    /// Split `self` across `weights` proportionally, so that the parts always
    /// add up to exactly `self` (largest-remainder method). Used to spread an
    /// order-level discount over its lines so refunds per line stay exact.
    pub fn allocate(self, weights: &[i64]) -> Result<Vec<Money>> {
        let total: i128 = weights.iter().map(|w| *w as i128).sum();
        if weights.iter().any(|w| *w < 0) {
            return Err(Error::validation("allocation weights must not be negative"));
        }
        if total == 0 {
            let mut parts = vec![Money::zero(self.currency); weights.len()];
            if let Some(first) = parts.first_mut() {
                first.amount = self.amount;
            }
            return Ok(parts);
        }
        let amount = self.amount as i128;
        let mut parts: Vec<i128> = weights.iter().map(|w| amount * (*w as i128) / total).collect();
        let mut remainders: Vec<(usize, i128)> =
            weights.iter().enumerate().map(|(i, w)| (i, (amount * (*w as i128)) % total)).collect();
        let mut left = amount - parts.iter().sum::<i128>();
        // Hand out the units lost to truncation, biggest remainder first; ties by position.
        remainders.sort_by(|a, b| b.1.abs().cmp(&a.1.abs()).then(a.0.cmp(&b.0)));
        let step = left.signum();
        let mut i = 0;
        while left != 0 {
            parts[remainders[i % remainders.len()].0] += step;
            left -= step;
            i += 1;
        }
        Ok(parts.into_iter().map(|p| Money::new(p as i64, self.currency)).collect())
    }
}

fn overflow() -> Error {
    Error::validation("amount out of range")
}

fn div_round_half_away(n: i128, d: i128) -> i128 {
    let q = n / d;
    let r = n % d;
    if 2 * r.abs() >= d.abs() { q + n.signum() * d.signum() } else { q }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let exp = self.currency.exponent();
        if exp == 0 {
            return write!(f, "{} {}", self.amount, self.currency);
        }
        let scale = 10i64.pow(exp);
        let sign = if self.amount < 0 { "-" } else { "" };
        let abs = self.amount.unsigned_abs();
        write!(f, "{sign}{}.{:0width$} {}", abs / scale as u64, abs % scale as u64, self.currency, width = exp as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(a: i64) -> Money {
        Money::new(a, Currency::USD)
    }

    #[test]
    fn currency_parsing_is_strict() {
        assert_eq!("USD".parse::<Currency>().unwrap(), Currency::USD);
        for bad in ["usd", "US", "USDD", "U$D", ""] {
            assert!(bad.parse::<Currency>().is_err(), "{bad} accepted");
        }
        assert_eq!(Currency::JPY.exponent(), 0);
        assert_eq!(Currency::USD.exponent(), 2);
        assert_eq!("KWD".parse::<Currency>().unwrap().exponent(), 3);
    }

    #[test]
    fn arithmetic_is_checked_and_currency_safe() {
        assert_eq!(usd(150).checked_add(usd(250)).unwrap(), usd(400));
        assert_eq!(usd(150).checked_sub(usd(250)).unwrap(), usd(-100));
        assert_eq!(usd(1999).checked_mul(3).unwrap(), usd(5997));
        assert!(usd(1).checked_add(Money::new(1, Currency::EUR)).is_err());
        assert!(usd(i64::MAX).checked_add(usd(1)).is_err());
        assert!(usd(i64::MAX / 2 + 1).checked_mul(2).is_err());
    }

    #[test]
    fn percentages_round_half_away_from_zero() {
        // 8.25% of $10.00 = 82.5 cents -> 83
        assert_eq!(usd(1000).percent_bp(825).unwrap(), usd(83));
        // 8.25% of $10.01 = 82.5825 -> 83
        assert_eq!(usd(1001).percent_bp(825).unwrap(), usd(83));
        // 10% of 5 cents = 0.5 -> 1
        assert_eq!(usd(5).percent_bp(1000).unwrap(), usd(1));
        // 10% of 4 cents = 0.4 -> 0
        assert_eq!(usd(4).percent_bp(1000).unwrap(), usd(0));
        // Negative amounts (refunds) round symmetrically.
        assert_eq!(usd(-5).percent_bp(1000).unwrap(), usd(-1));
        assert_eq!(usd(i64::MAX).percent_bp(10_000).unwrap(), usd(i64::MAX));
    }

    #[test]
    fn allocation_is_exact_and_proportional() {
        let parts = usd(100).allocate(&[1, 1, 1]).unwrap();
        assert_eq!(parts.iter().map(|m| m.amount).sum::<i64>(), 100);
        assert_eq!(parts.iter().map(|m| m.amount).collect::<Vec<_>>(), vec![34, 33, 33]);
        let parts = usd(1000).allocate(&[2500, 7500]).unwrap();
        assert_eq!(parts.iter().map(|m| m.amount).collect::<Vec<_>>(), vec![250, 750]);
        let parts = usd(-7).allocate(&[1, 2]).unwrap();
        assert_eq!(parts.iter().map(|m| m.amount).sum::<i64>(), -7);
        let parts = usd(5).allocate(&[0, 0]).unwrap();
        assert_eq!(parts.iter().map(|m| m.amount).sum::<i64>(), 5);
    }

    #[test]
    fn display_uses_the_currency_exponent() {
        assert_eq!(usd(123456).to_string(), "1234.56 USD");
        assert_eq!(usd(-5).to_string(), "-0.05 USD");
        assert_eq!(Money::new(500, Currency::JPY).to_string(), "500 JPY");
    }

    #[test]
    fn money_json_shape_is_amount_and_currency() {
        let json = serde_json::to_value(usd(1999)).unwrap();
        assert_eq!(json, serde_json::json!({"amount": 1999, "currency": "USD"}));
        assert!(serde_json::from_value::<Money>(serde_json::json!({"amount": 1, "currency": "usd"})).is_err());
    }
}
