//! Promotion rules. Pure: a promotion, the cart's lines and the time in; a
//! discount or the reason it does not apply out.

use mercato_core::{Currency, Error, ErrorCode, Id, Millis, Money};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "type", content = "value")]
pub enum Kind {
    /// Basis points off the eligible lines (1000 = 10%).
    Percentage(i64),
    /// Minor units off the eligible lines, at most their total.
    Fixed(i64),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "type", content = "values")]
pub enum Scope {
    All,
    /// Lines whose product is in one of these categories (or below them).
    Categories(Vec<Id>),
    Skus(Vec<String>),
}

#[derive(Debug, Clone, Serialize)]
pub struct Promotion {
    pub id: Id,
    /// None: an automatic promotion, applied without a code.
    pub code: Option<String>,
    pub name: String,
    pub kind: Kind,
    /// The cart subtotal needed, in minor units.
    pub min_subtotal: i64,
    pub scope: Scope,
    pub starts_at: Option<Millis>,
    pub ends_at: Option<Millis>,
    pub usage_limit: Option<i64>,
    pub per_customer_limit: Option<i64>,
    pub used: i64,
    pub active: bool,
    pub created_at: Millis,
}

/// What the rules need to know about one cart line.
#[derive(Debug, Clone)]
pub struct EligibleLine {
    pub sku: String,
    /// The product's category and all its ancestors.
    pub categories: Vec<Id>,
    pub line_total: i64,
}

/// A discount that applies, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Applied {
    pub promotion_id: Id,
    pub code: Option<String>,
    pub description: String,
    pub amount: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    Inactive,
    NotStarted,
    Expired,
    UsageLimitReached,
    CustomerLimitReached,
    BelowMinimum { required: i64 },
    NotApplicable,
}

impl Rejection {
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::Inactive => "inactive",
            Rejection::NotStarted => "not_started",
            Rejection::Expired => "expired",
            Rejection::UsageLimitReached => "usage_limit_reached",
            Rejection::CustomerLimitReached => "customer_limit_reached",
            Rejection::BelowMinimum { .. } => "below_minimum_subtotal",
            Rejection::NotApplicable => "not_applicable",
        }
    }

    pub fn into_error(self, code: &str, currency: Currency) -> Error {
        let message = match self {
            Rejection::Inactive => format!("coupon {code} is not active"),
            Rejection::NotStarted => format!("coupon {code} is not valid yet"),
            Rejection::Expired => format!("coupon {code} has expired"),
            Rejection::UsageLimitReached => format!("coupon {code} has been used up"),
            Rejection::CustomerLimitReached => format!("you have already used coupon {code} as often as allowed"),
            Rejection::BelowMinimum { required } => {
                format!("coupon {code} needs a subtotal of at least {}", Money::new(required, currency))
            }
            Rejection::NotApplicable => format!("coupon {code} does not apply to anything in the cart"),
        };
        Error::new(ErrorCode::CouponInvalid, message)
            .with_details(serde_json::json!({ "coupon": code, "reason": self.reason() }))
    }
}

impl Promotion {
    /// Checks the promotion against the cart (window, limits, minimum, scope)
    /// and returns its discount. `customer_uses` is how often this customer has
    /// already redeemed it.
    pub fn evaluate(&self, lines: &[EligibleLine], customer_uses: i64, now: Millis) -> Result<i64, Rejection> {
        if !self.active {
            return Err(Rejection::Inactive);
        }
        if self.starts_at.is_some_and(|s| now < s) {
            return Err(Rejection::NotStarted);
        }
        if self.ends_at.is_some_and(|e| now >= e) {
            return Err(Rejection::Expired);
        }
        if self.usage_limit.is_some_and(|l| self.used >= l) {
            return Err(Rejection::UsageLimitReached);
        }
        if self.per_customer_limit.is_some_and(|l| customer_uses >= l) {
            return Err(Rejection::CustomerLimitReached);
        }
        let subtotal: i64 = lines.iter().map(|l| l.line_total).sum();
        if subtotal < self.min_subtotal {
            return Err(Rejection::BelowMinimum { required: self.min_subtotal });
        }
        let eligible: i64 = lines.iter().filter(|l| self.covers(l)).map(|l| l.line_total).sum();
        if eligible == 0 {
            return Err(Rejection::NotApplicable);
        }
        let amount = match self.kind {
            Kind::Percentage(bp) => Money::new(eligible, Currency::USD).percent_bp(bp).map(|m| m.amount).unwrap_or(0),
            Kind::Fixed(v) => v.min(eligible),
        };
        Ok(amount)
    }

    fn covers(&self, line: &EligibleLine) -> bool {
        match &self.scope {
            Scope::All => true,
            Scope::Categories(ids) => line.categories.iter().any(|c| ids.contains(c)),
            Scope::Skus(skus) => skus.contains(&line.sku),
        }
    }

    pub fn describe(&self, currency: Currency) -> String {
        let what = match self.kind {
            Kind::Percentage(bp) => format!("{}% off", bp as f64 / 100.0),
            Kind::Fixed(v) => format!("{} off", Money::new(v, currency)),
        };
        let scope = match &self.scope {
            Scope::All => String::new(),
            Scope::Categories(_) => " selected categories".to_string(),
            Scope::Skus(_) => " selected items".to_string(),
        };
        let minimum = if self.min_subtotal > 0 {
            format!(" on orders over {}", Money::new(self.min_subtotal, currency))
        } else {
            String::new()
        };
        format!("{}: {what}{scope}{minimum}", self.name)
    }
}

/// Every automatic promotion that applies, plus the coupon (whose rejection is
/// returned so the caller can tell the customer why).
pub fn apply(
    coupon: Option<(&Promotion, i64)>,
    automatic: &[(&Promotion, i64)],
    lines: &[EligibleLine],
    now: Millis,
    currency: Currency,
) -> (Vec<Applied>, Option<Rejection>) {
    let mut applied = Vec::new();
    for (p, uses) in automatic {
        if let Ok(amount) = p.evaluate(lines, *uses, now)
            && amount > 0
        {
            applied.push(Applied { promotion_id: p.id, code: None, description: p.describe(currency), amount });
        }
    }
    let mut rejection = None;
    if let Some((p, uses)) = coupon {
        match p.evaluate(lines, uses, now) {
            Ok(amount) => applied.push(Applied {
                promotion_id: p.id,
                code: p.code.clone(),
                description: p.describe(currency),
                amount,
            }),
            Err(r) => rejection = Some(r),
        }
    }
    (applied, rejection)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn promo(kind: Kind, scope: Scope) -> Promotion {
        Promotion {
            id: Id(1),
            code: Some("SAVE".into()),
            name: "Save".into(),
            kind,
            min_subtotal: 0,
            scope,
            starts_at: None,
            ends_at: None,
            usage_limit: None,
            per_customer_limit: None,
            used: 0,
            active: true,
            created_at: 0,
        }
    }

    fn lines() -> Vec<EligibleLine> {
        vec![
            EligibleLine { sku: "A".into(), categories: vec![Id(10), Id(1)], line_total: 3000 },
            EligibleLine { sku: "B".into(), categories: vec![Id(20), Id(2)], line_total: 1005 },
        ]
    }

    #[test]
    fn percentage_and_fixed_discounts_respect_scope() {
        assert_eq!(promo(Kind::Percentage(1000), Scope::All).evaluate(&lines(), 0, 0), Ok(401)); // 400.5 rounds up
        assert_eq!(promo(Kind::Percentage(1000), Scope::Categories(vec![Id(1)])).evaluate(&lines(), 0, 0), Ok(300));
        assert_eq!(promo(Kind::Fixed(5000), Scope::Skus(vec!["B".into()])).evaluate(&lines(), 0, 0), Ok(1005));
        assert_eq!(
            promo(Kind::Fixed(500), Scope::Categories(vec![Id(99)])).evaluate(&lines(), 0, 0),
            Err(Rejection::NotApplicable)
        );
    }

    #[test]
    fn windows_limits_and_minimums_are_enforced() {
        let mut p = promo(Kind::Fixed(100), Scope::All);
        p.starts_at = Some(100);
        p.ends_at = Some(200);
        assert_eq!(p.evaluate(&lines(), 0, 99), Err(Rejection::NotStarted));
        assert_eq!(p.evaluate(&lines(), 0, 150), Ok(100));
        assert_eq!(p.evaluate(&lines(), 0, 200), Err(Rejection::Expired));
        let mut p = promo(Kind::Fixed(100), Scope::All);
        p.usage_limit = Some(3);
        p.used = 3;
        assert_eq!(p.evaluate(&lines(), 0, 0), Err(Rejection::UsageLimitReached));
        let mut p = promo(Kind::Fixed(100), Scope::All);
        p.per_customer_limit = Some(1);
        assert_eq!(p.evaluate(&lines(), 1, 0), Err(Rejection::CustomerLimitReached));
        let mut p = promo(Kind::Fixed(100), Scope::All);
        p.min_subtotal = 5000;
        assert_eq!(p.evaluate(&lines(), 0, 0), Err(Rejection::BelowMinimum { required: 5000 }));
        p.active = false;
        assert_eq!(p.evaluate(&lines(), 0, 0), Err(Rejection::Inactive));
    }

    #[test]
    fn automatic_promotions_stack_with_a_coupon_and_rejections_are_reported() {
        let mut auto = promo(Kind::Percentage(1000), Scope::Categories(vec![Id(1)]));
        auto.code = None;
        auto.id = Id(2);
        let mut coupon = promo(Kind::Fixed(100), Scope::All);
        let (applied, rejection) = apply(Some((&coupon, 0)), &[(&auto, 0)], &lines(), 0, Currency::USD);
        assert_eq!(applied.iter().map(|a| a.amount).collect::<Vec<_>>(), vec![300, 100]);
        assert!(rejection.is_none());
        coupon.ends_at = Some(0);
        let (applied, rejection) = apply(Some((&coupon, 0)), &[(&auto, 0)], &lines(), 0, Currency::USD);
        assert_eq!(applied.len(), 1);
        assert_eq!(rejection, Some(Rejection::Expired));
        assert!(auto.describe(Currency::USD).contains("10% off"));
    }
}
