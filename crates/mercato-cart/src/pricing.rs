//! Cart and order totals. Pure functions over integer money.
//!
//! total = subtotal - discount + shipping + tax, where tax is a flat rate on
//! (subtotal - discount [+ shipping]) rounded half away from zero once, on the
//! whole order (not per line), as most tax authorities compute invoices.

use mercato_contracts::cart::ShippingMethod;
use mercato_core::{Currency, Error, Money};

pub use mercato_contracts::cart::Totals;
pub use mercato_contracts::lines::PricedLine;

pub struct TaxRule {
    pub rate_bp: i64,
    pub includes_shipping: bool,
}

pub fn line_total(unit: Money, quantity: i64) -> Result<Money, Error> {
    unit.checked_mul(quantity)
}

pub fn totals(
    currency: Currency,
    lines: &[PricedLine],
    discount: Money,
    shipping: &ShippingMethod,
    tax: &TaxRule,
) -> Result<Totals, Error> {
    let mut subtotal = Money::zero(currency);
    for l in lines {
        subtotal = subtotal.checked_add(l.line_total)?;
    }
    // A discount can reduce the goods to zero, never below.
    let discount = discount.min(subtotal);
    let goods = subtotal.checked_sub(discount)?;
    let shipping_cost = if lines.is_empty() || shipping.free_over.is_some_and(|t| goods.amount >= t) {
        Money::zero(currency)
    } else {
        Money::new(shipping.price, currency)
    };
    let taxable = if tax.includes_shipping { goods.checked_add(shipping_cost)? } else { goods };
    let tax_amount = taxable.percent_bp(tax.rate_bp)?;
    let total = goods.checked_add(shipping_cost)?.checked_add(tax_amount)?;
    Ok(Totals { subtotal, discount, shipping: shipping_cost, tax: tax_amount, total })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mercato_core::{Id, Options};

    fn line(unit: i64, qty: i64) -> PricedLine {
        let unit = Money::new(unit, Currency::USD);
        PricedLine {
            sku: "S".into(),
            product_id: Id(1),
            name: "n".into(),
            options: Options::default(),
            quantity: qty,
            unit_price: unit,
            line_total: line_total(unit, qty).unwrap(),
        }
    }

    fn standard() -> ShippingMethod {
        ShippingMethod { code: "standard".into(), name: "Standard".into(), price: 499, free_over: Some(5000) }
    }

    const USD: Currency = Currency::USD;

    #[test]
    fn totals_add_up_with_tax_on_goods_and_shipping() {
        let t = totals(
            USD,
            &[line(1999, 2)],
            Money::zero(USD),
            &standard(),
            &TaxRule { rate_bp: 825, includes_shipping: true },
        )
        .unwrap();
        assert_eq!(t.subtotal.amount, 3998);
        assert_eq!(t.shipping.amount, 499);
        // 8.25% of 44.97 = 3.71 (3.710025)
        assert_eq!(t.tax.amount, 371);
        assert_eq!(t.total.amount, 3998 + 499 + 371);
    }

    #[test]
    fn shipping_is_free_over_the_threshold_and_for_empty_carts() {
        let rule = TaxRule { rate_bp: 0, includes_shipping: true };
        let t = totals(USD, &[line(2500, 2)], Money::zero(USD), &standard(), &rule).unwrap();
        assert_eq!(t.shipping.amount, 0);
        // A discount that takes the goods under the threshold brings shipping back.
        let t = totals(USD, &[line(2500, 2)], Money::new(100, USD), &standard(), &rule).unwrap();
        assert_eq!(t.shipping.amount, 499);
        let t = totals(USD, &[], Money::zero(USD), &standard(), &rule).unwrap();
        assert_eq!(t.total.amount, 0);
    }

    #[test]
    fn discounts_never_make_goods_negative_and_tax_can_exclude_shipping() {
        let rule = TaxRule { rate_bp: 1000, includes_shipping: false };
        let t = totals(USD, &[line(1000, 1)], Money::new(5000, USD), &standard(), &rule).unwrap();
        assert_eq!(t.discount.amount, 1000);
        assert_eq!(t.tax.amount, 0);
        assert_eq!(t.total.amount, 499);
    }

    #[test]
    fn overflow_is_an_error_not_a_wrap() {
        let rule = TaxRule { rate_bp: 0, includes_shipping: true };
        let huge = line(i64::MAX / 2, 1);
        assert!(totals(USD, &[huge.clone(), huge.clone(), huge], Money::zero(USD), &standard(), &rule).is_err());
        assert!(line_total(Money::new(i64::MAX, USD), 2).is_err());
    }
}
