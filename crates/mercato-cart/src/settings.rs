//! The cart's settings, the `[shop]` section: the shop's currency, tax and
//! shipping methods, which price every cart and order, and the cart's limits.
use mercato_contracts::cart::ShippingMethod;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShopSettings {
    /// The one currency prices are kept in (ISO 4217).
    pub currency: String,
    /// Tax on (subtotal - discount [+ shipping]), in basis points (825 = 8.25%).
    pub tax_rate_bp: i64,
    pub tax_includes_shipping: bool,
    /// Most units of one SKU in a cart line.
    pub max_line_quantity: i64,
    /// Most distinct lines in a cart.
    pub max_cart_lines: usize,
    /// Flat-rate shipping methods; the first is the default.
    pub shipping_methods: Vec<ShippingMethod>,
}

impl Default for ShopSettings {
    fn default() -> Self {
        ShopSettings {
            currency: "USD".into(),
            tax_rate_bp: 0,
            tax_includes_shipping: true,
            max_line_quantity: 100,
            max_cart_lines: 100,
            shipping_methods: vec![
                ShippingMethod {
                    code: "standard".into(),
                    name: "Standard (3-5 days)".into(),
                    price: 499,
                    free_over: Some(5000),
                },
                ShippingMethod {
                    code: "express".into(),
                    name: "Express (next day)".into(),
                    price: 1499,
                    free_over: None,
                },
            ],
        }
    }
}

impl ShopSettings {
    /// The rules a configuration must keep, each error naming its key.
    pub fn validate(&self) -> Result<(), String> {
        self.currency.parse::<mercato_core::Currency>().map_err(|e| format!("shop.currency: {}", e.message))?;
        if self.shipping_methods.is_empty() {
            return Err("shop.shipping_methods: at least one method is needed".into());
        }
        if !(0..=10_000).contains(&self.tax_rate_bp) {
            return Err("shop.tax_rate_bp: must be between 0 and 10000".into());
        }
        if self.max_line_quantity < 1 {
            return Err("shop.max_line_quantity: must be at least 1".into());
        }
        Ok(())
    }

    pub fn currency(&self) -> mercato_core::Currency {
        self.currency.parse().unwrap_or(mercato_core::Currency::USD)
    }
}
