//! The catalog's request and response types and the rules that validate
//! them. No I/O.

use mercato_core::{Currency, Error, Id, Millis, Money, Options};
use serde::{Deserialize, Serialize};

use super::ProductStatus;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Category {
    pub id: Id,
    pub parent_id: Option<Id>,
    pub slug: String,
    pub name: String,
    pub position: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Variant {
    pub sku: String,
    pub options: Options,
    pub price: Money,
    pub weight_grams: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Product {
    pub id: Id,
    pub slug: String,
    pub name: String,
    pub description: String,
    pub category_id: Id,
    pub status: ProductStatus,
    /// The lowest variant price: what listings show and sort by.
    pub price: Money,
    pub variants: Vec<Variant>,
    pub version: i64,
    pub created_at: Millis,
    pub updated_at: Millis,
}

impl Product {
    /// Its variants' SKUs, in order.
    pub fn skus(&self) -> Vec<String> {
        self.variants.iter().map(|v| v.sku.clone()).collect()
    }

    /// Bytes this product holds, for caches bounded by memory.
    pub fn heap_size(&self) -> usize {
        std::mem::size_of::<Product>()
            + self.slug.capacity()
            + self.name.capacity()
            + self.description.capacity()
            + self.variants.capacity() * std::mem::size_of::<Variant>()
            + self.variants.iter().map(|v| v.sku.capacity() + v.options.heap_size()).sum::<usize>()
    }
}

/// A listing row: enough to draw a product card.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProductSummary {
    pub id: Id,
    pub slug: String,
    pub name: String,
    pub price: Money,
    pub category_id: Id,
}

/// What the cart and checkout need to know about one SKU.
#[derive(Debug, Clone)]
pub struct SkuInfo {
    pub sku: String,
    pub product_id: Id,
    pub category_id: Id,
    pub product_name: String,
    pub status: ProductStatus,
    pub options: Options,
    pub price: Money,
    pub weight_grams: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SortOrder {
    #[default]
    Newest,
    PriceAsc,
    PriceDesc,
    Name,
}

impl SortOrder {
    pub fn parse(s: &str) -> Result<Self, Error> {
        match s {
            "newest" => Ok(SortOrder::Newest),
            "price_asc" => Ok(SortOrder::PriceAsc),
            "price_desc" => Ok(SortOrder::PriceDesc),
            "name" => Ok(SortOrder::Name),
            other => Err(Error::field("sort", format!("'{other}' is not one of newest, price_asc, price_desc, name"))),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub category: Option<String>,
    pub min_price: Option<i64>,
    pub max_price: Option<i64>,
    pub sort: SortOrder,
    pub limit: usize,
    pub cursor: Option<String>,
    /// Admin listings see every status; `None` means published only.
    pub status: Option<ProductStatus>,
    pub include_all_statuses: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewVariant {
    pub sku: String,
    pub options: Options,
    pub price: Money,
    pub weight_grams: i64,
}

#[derive(Debug, Clone)]
pub struct NewProduct {
    pub name: String,
    pub slug: Option<String>,
    pub description: String,
    pub category_id: Id,
    pub status: ProductStatus,
    pub variants: Vec<NewVariant>,
}

#[derive(Debug, Clone, Default)]
pub struct ProductPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub status: Option<ProductStatus>,
    pub category_id: Option<Id>,
}

#[derive(Debug, Clone, Default)]
pub struct VariantPatch {
    pub price: Option<Money>,
    pub weight_grams: Option<i64>,
}

pub fn validate_name(name: &str) -> Result<String, Error> {
    let t = name.trim();
    if t.is_empty() || t.chars().count() > 200 {
        return Err(Error::field("name", "must be 1 to 200 characters"));
    }
    Ok(t.to_string())
}

pub fn validate_description(d: &str) -> Result<String, Error> {
    if d.chars().count() > 20_000 {
        return Err(Error::field("description", "must be at most 20000 characters"));
    }
    Ok(d.trim().to_string())
}

/// Slugs are lowercase words joined by single hyphens and contain at least one
/// letter, so a slug can never be mistaken for a numeric id in a URL.
pub fn validate_slug(s: &str) -> Result<String, Error> {
    let ok = !s.is_empty()
        && s.len() <= 120
        && s.split('-').all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
        && s.bytes().any(|b| b.is_ascii_lowercase());
    if ok {
        Ok(s.to_string())
    } else {
        Err(Error::field("slug", "must be lowercase words of a-z and 0-9 joined by '-', with at least one letter"))
    }
}

pub fn slugify(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let mut out = out.trim_end_matches('-').to_string();
    out.truncate(100);
    let out = out.trim_end_matches('-').to_string();
    if out.bytes().any(|b| b.is_ascii_lowercase()) {
        out
    } else {
        format!("product-{out}").trim_end_matches('-').to_string()
    }
}

pub fn validate_sku(s: &str) -> Result<String, Error> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && s.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(s.to_string())
    } else {
        Err(Error::field("sku", "must be 1-64 characters of A-Z, a-z, 0-9, '-', '_', '.'"))
    }
}

pub fn validate_price(price: Money, shop: Currency) -> Result<Money, Error> {
    if price.currency != shop {
        return Err(Error::field("price.currency", format!("must be the shop currency {shop}")));
    }
    if price.amount < 0 || price.amount > 100_000_000_000 {
        return Err(Error::field("price.amount", "must be between 0 and 100000000000"));
    }
    Ok(price)
}

pub fn validate_weight(w: i64) -> Result<i64, Error> {
    if !(0..=1_000_000_000).contains(&w) {
        return Err(Error::field("weight_grams", "must be between 0 and 1000000000"));
    }
    Ok(w)
}

pub fn validate_options(o: &Options) -> Result<(), Error> {
    if o.len() > 10 || o.iter().any(|(k, v)| k.is_empty() || k.len() > 50 || v.len() > 100) {
        return Err(Error::field("options", "at most 10 options, names 1-50 and values up to 100 characters"));
    }
    Ok(())
}

impl NewProduct {
    pub fn validate(mut self, shop: Currency) -> Result<Self, Error> {
        self.name = validate_name(&self.name)?;
        self.description = validate_description(&self.description)?;
        self.slug = match self.slug.take() {
            Some(s) => Some(validate_slug(&s)?),
            None => None,
        };
        if self.variants.is_empty() || self.variants.len() > 100 {
            return Err(Error::field("variants", "a product needs 1 to 100 variants"));
        }
        let mut seen = std::collections::HashSet::new();
        for v in &mut self.variants {
            v.sku = validate_sku(&v.sku)?;
            if !seen.insert(v.sku.clone()) {
                return Err(Error::field("variants", format!("SKU {} appears twice", v.sku)));
            }
            validate_price(v.price, shop)?;
            validate_weight(v.weight_grams)?;
            validate_options(&v.options)?;
        }
        Ok(self)
    }
}

/// The opaque keyset cursor: where the previous page ended, for one sort order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    pub sort: SortOrder,
    pub price: Option<i64>,
    pub name: Option<String>,
    pub id: i64,
}

impl Cursor {
    pub fn encode(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }
    pub fn decode(s: &str, sort: SortOrder) -> Result<Cursor, Error> {
        use base64::Engine;
        let bad = || Error::field("cursor", "is not a cursor this listing returned");
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).map_err(|_| bad())?;
        let c: Cursor = serde_json::from_slice(&bytes).map_err(|_| bad())?;
        let complete = match c.sort {
            SortOrder::Newest => true,
            SortOrder::PriceAsc | SortOrder::PriceDesc => c.price.is_some(),
            SortOrder::Name => c.name.is_some(),
        };
        if c.sort != sort || !complete {
            return Err(bad());
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert_eq!(slugify("Linen Relaxed-Fit Shirt!"), "linen-relaxed-fit-shirt");
        assert_eq!(slugify("  Café  Crème "), "caf-cr-me");
        assert_eq!(slugify("2024"), "product-2024");
        assert!(validate_slug("linen-shirt-2").is_ok());
        for bad in ["", "Linen", "linen--shirt", "-linen", "12345", "linen shirt"] {
            assert!(validate_slug(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn new_products_are_validated() {
        let usd = Currency::USD;
        let variant = |sku: &str, amount: i64, cur: Currency| NewVariant {
            sku: sku.into(),
            options: Options::default(),
            price: Money::new(amount, cur),
            weight_grams: 100,
        };
        let base = NewProduct {
            name: " Shirt ".into(),
            slug: None,
            description: String::new(),
            category_id: Id(1),
            status: ProductStatus::Draft,
            variants: vec![variant("SKU-1", 1999, usd)],
        };
        assert_eq!(base.clone().validate(usd).unwrap().name, "Shirt");
        let mut p = base.clone();
        p.variants.clear();
        assert!(p.validate(usd).is_err());
        let mut p = base.clone();
        p.variants = vec![variant("SKU-1", 1, usd), variant("SKU-1", 2, usd)];
        assert!(p.validate(usd).is_err());
        let mut p = base.clone();
        p.variants = vec![variant("SKU-1", 1, Currency::EUR)];
        assert!(p.validate(usd).is_err());
        let mut p = base;
        p.variants = vec![variant("bad sku", 1, usd)];
        assert!(p.validate(usd).is_err());
    }

    #[test]
    fn cursors_round_trip_and_are_bound_to_their_sort() {
        let c = Cursor { sort: SortOrder::PriceAsc, price: Some(1999), name: None, id: 42 };
        let s = c.encode();
        assert_eq!(Cursor::decode(&s, SortOrder::PriceAsc).unwrap(), c);
        assert!(Cursor::decode(&s, SortOrder::Newest).is_err());
        assert!(Cursor::decode("garbage!", SortOrder::Newest).is_err());
    }
}
