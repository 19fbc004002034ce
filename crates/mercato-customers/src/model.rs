//! Validated inputs and plain customer types. No I/O.

use mercato_core::Error;

pub use mercato_contracts::customers::{Customer, Principal, Role};

/// A syntactically plausible email, trimmed and lowercased. Deliverability is
/// not checked here (that needs a confirmation email).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Email, Error> {
        let s = raw.trim().to_lowercase();
        let valid = s.len() <= 254
            && s.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && local.len() <= 64
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !domain.contains("..")
            })
            && !s.chars().any(|c| c.is_whitespace() || c.is_control());
        if valid { Ok(Email(s)) } else { Err(Error::field("email", "is not a valid email address")) }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

pub fn validate_password(p: &str) -> Result<(), Error> {
    let n = p.chars().count();
    if n < 8 {
        return Err(Error::field("password", "must be at least 8 characters"));
    }
    if n > 256 {
        return Err(Error::field("password", "must be at most 256 characters"));
    }
    Ok(())
}

pub fn validate_name(n: &str) -> Result<String, Error> {
    let t = n.trim();
    if t.is_empty() {
        return Err(Error::field("name", "must not be empty"));
    }
    if t.chars().count() > 200 {
        return Err(Error::field("name", "must be at most 200 characters"));
    }
    Ok(t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(Email::parse("  Ann@Example.COM ").unwrap().as_str(), "ann@example.com");
        for bad in
            ["", "ann", "ann@", "@example.com", "ann@example", "a b@example.com", "a@b@c.com", "ann@.com", "ann@x..com"]
        {
            assert!(Email::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn passwords_and_names_have_bounds() {
        assert!(validate_password("1234567").is_err());
        assert!(validate_password("12345678").is_ok());
        assert!(validate_password(&"x".repeat(257)).is_err());
        assert!(validate_name("   ").is_err());
        assert_eq!(validate_name(" Ann ").unwrap(), "Ann");
    }
}
