//! Card number checks done before a provider is ever called.

use mercato_core::Error;

/// Digits only (spaces and dashes allowed as separators), 12-19 long, Luhn-valid.
pub fn validate(number: &str) -> Result<String, Error> {
    let digits: String = number.chars().filter(|c| *c != ' ' && *c != '-').collect();
    if digits.len() < 12 || digits.len() > 19 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::field("card_number", "must be 12 to 19 digits"));
    }
    if !luhn(&digits) {
        return Err(Error::field("card_number", "is not a valid card number (checksum)"));
    }
    Ok(digits)
}

fn luhn(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = (b - b'0') as u32;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_accepts_test_cards_and_rejects_typos() {
        assert!(validate("4242424242424242").is_ok());
        assert!(validate("4242 4242 4242 4242").is_ok());
        assert!(validate("4000000000000002").is_ok());
        assert!(validate("4000000000003220").is_ok());
        assert!(validate("4242424242424241").is_err());
        assert!(validate("4242").is_err());
        assert!(validate("4242abcd42424242").is_err());
    }
}
