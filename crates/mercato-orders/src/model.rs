//! Order types and the order state machine. No I/O.

use mercato_core::{Error, Id, Millis, Money};
use serde::{Deserialize, Serialize};

pub use mercato_contracts::orders::OrderStatus;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Pay,
    Fulfil,
    Complete,
    Cancel,
    /// The payment window closed.
    Expire,
    /// A refund; `full` when it brings the refunded total to the order total.
    Refund {
        full: bool,
    },
}

impl Action {
    pub fn verb(self) -> &'static str {
        match self {
            Action::Pay => "pay",
            Action::Fulfil => "fulfil",
            Action::Complete => "complete",
            Action::Cancel => "cancel",
            Action::Expire => "expire",
            Action::Refund { .. } => "refund",
        }
    }
}

/// The only legal moves. Everything else is an `illegal-transition` error.
pub fn next(status: OrderStatus, action: Action) -> Result<OrderStatus, Error> {
    use Action as A;
    use OrderStatus as S;
    let to = match (status, action) {
        (S::PendingPayment, A::Pay) => S::Paid,
        (S::PendingPayment, A::Cancel | A::Expire) => S::Cancelled,
        (S::Paid, A::Fulfil) => S::Fulfilled,
        (S::Paid, A::Cancel) => S::Cancelled,
        (S::Fulfilled, A::Complete) => S::Completed,
        (s @ (S::Paid | S::Fulfilled | S::Completed), A::Refund { full }) => {
            if full {
                S::Refunded
            } else {
                s
            }
        }
        (from, action) => return Err(Error::illegal_transition(from.as_str(), action.verb())),
    };
    Ok(to)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Address {
    pub name: String,
    pub line1: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line2: Option<String>,
    pub city: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    pub postal_code: String,
    /// ISO 3166-1 alpha-2.
    pub country: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

impl Address {
    pub fn validate(mut self) -> Result<Address, Error> {
        fn required(field: &str, v: &str, max: usize) -> Result<String, Error> {
            let t = v.trim();
            if t.is_empty() || t.chars().count() > max {
                return Err(Error::field(field, format!("must be 1 to {max} characters")));
            }
            Ok(t.to_string())
        }
        self.name = required("shipping_address.name", &self.name, 200)?;
        self.line1 = required("shipping_address.line1", &self.line1, 200)?;
        self.city = required("shipping_address.city", &self.city, 100)?;
        self.postal_code = required("shipping_address.postal_code", &self.postal_code, 20)?;
        let country = self.country.trim().to_ascii_uppercase();
        if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(Error::field(
                "shipping_address.country",
                "must be an ISO 3166-1 alpha-2 code such as US or DE",
            ));
        }
        self.country = country;
        for (field, v, max) in [
            ("shipping_address.line2", &mut self.line2, 200),
            ("shipping_address.region", &mut self.region, 100),
            ("shipping_address.phone", &mut self.phone, 40),
        ] {
            if let Some(s) = v {
                if s.chars().count() > max {
                    return Err(Error::field(field, format!("must be at most {max} characters")));
                }
                if s.trim().is_empty() {
                    *v = None;
                }
            }
        }
        Ok(self)
    }
}

/// An order's line: the cart's line as checkout priced it.
pub type OrderItem = mercato_contracts::lines::PricedLine;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub from: Option<OrderStatus>,
    pub to: OrderStatus,
    pub actor: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub at: Millis,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Order {
    pub id: Id,
    pub customer_id: Id,
    pub status: OrderStatus,
    pub currency: mercato_core::Currency,
    pub items: Vec<OrderItem>,
    pub subtotal: Money,
    pub discount: Money,
    /// Each promotion that made up `discount`, as applied at checkout.
    #[serde(default)]
    pub discounts: Vec<mercato_promotions::Applied>,
    pub shipping: Money,
    pub tax: Money,
    pub total: Money,
    pub refunded: Money,
    /// None for a flash-sale purchase made without one (given before shipping).
    pub shipping_address: Option<Address>,
    /// Set when the order was bought in a flash sale: its unit belongs to the
    /// sale's allocation and returns there if the order is not paid.
    #[serde(default)]
    pub flash_sale_id: Option<Id>,
    pub shipping_method: String,
    /// When an unpaid order will be cancelled and its stock released.
    pub payment_due_at: Option<Millis>,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub history: Vec<HistoryEntry>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action as A;
    use OrderStatus as S;

    #[test]
    fn only_legal_transitions_are_allowed() {
        let all = [S::PendingPayment, S::Paid, S::Fulfilled, S::Completed, S::Cancelled, S::Refunded];
        let actions =
            [A::Pay, A::Fulfil, A::Complete, A::Cancel, A::Expire, A::Refund { full: false }, A::Refund { full: true }];
        let legal = [
            (S::PendingPayment, A::Pay, S::Paid),
            (S::PendingPayment, A::Cancel, S::Cancelled),
            (S::PendingPayment, A::Expire, S::Cancelled),
            (S::Paid, A::Fulfil, S::Fulfilled),
            (S::Paid, A::Cancel, S::Cancelled),
            (S::Fulfilled, A::Complete, S::Completed),
            (S::Paid, A::Refund { full: false }, S::Paid),
            (S::Paid, A::Refund { full: true }, S::Refunded),
            (S::Fulfilled, A::Refund { full: false }, S::Fulfilled),
            (S::Fulfilled, A::Refund { full: true }, S::Refunded),
            (S::Completed, A::Refund { full: false }, S::Completed),
            (S::Completed, A::Refund { full: true }, S::Refunded),
        ];
        for from in all {
            for action in actions {
                let expected = legal.iter().find(|(f, a, _)| *f == from && *a == action).map(|(_, _, t)| *t);
                match (next(from, action), expected) {
                    (Ok(to), Some(t)) => assert_eq!(to, t, "{from:?} + {action:?}"),
                    (Err(e), None) => assert_eq!(e.code, mercato_core::ErrorCode::IllegalTransition),
                    (got, want) => panic!("{from:?} + {action:?}: got {got:?}, want {want:?}"),
                }
            }
        }
    }

    #[test]
    fn terminal_states_stay_terminal() {
        for action in [A::Pay, A::Cancel, A::Fulfil, A::Refund { full: true }] {
            assert!(next(S::Cancelled, action).is_err());
            assert!(next(S::Refunded, action).is_err());
        }
    }

    #[test]
    fn addresses_are_validated_and_normalised() {
        let a = Address {
            name: " Ann ".into(),
            line1: "1 Main St".into(),
            line2: Some("  ".into()),
            city: "Springfield".into(),
            region: None,
            postal_code: "12345".into(),
            country: "us".into(),
            phone: None,
        };
        let v = a.clone().validate().unwrap();
        assert_eq!(v.name, "Ann");
        assert_eq!(v.country, "US");
        assert_eq!(v.line2, None);
        let mut bad = a.clone();
        bad.country = "USA".into();
        assert!(bad.validate().is_err());
        let mut bad = a;
        bad.city = " ".into();
        assert!(bad.validate().is_err());
    }
}
