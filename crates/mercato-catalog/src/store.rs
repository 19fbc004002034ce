//! The catalog's SQL: every statement on its tables (categories, products,
//! variants), each running in the caller's transaction. Caching and
//! invalidation stay with the service.

use mercato_contracts::catalog::*;
use mercato_core::{Error, Id, Money};
use mercato_platform::db::{Param, Row};
use mercato_platform::events::publish;
use mercato_platform::{Tx, now_ms, params};
use std::collections::HashMap;

pub(crate) const PRODUCT_COLUMNS: &str =
    "id, slug, name, description, category_id, status, min_price, currency, version, created_at, updated_at";

pub(crate) fn money(amount: i64, currency: &str) -> Result<Money, Error> {
    Ok(Money::new(amount, currency.parse()?))
}

pub(crate) fn product_from(r: &Row, variants: Vec<Variant>) -> Result<Product, Error> {
    Ok(Product {
        id: r.id(0)?,
        slug: r.text(1)?,
        name: r.text(2)?,
        description: r.text(3)?,
        category_id: r.id(4)?,
        status: ProductStatus::parse(r.str(5)?)?,
        price: money(r.int(6)?, r.str(7)?)?,
        variants,
        version: r.int(8)?,
        created_at: r.int(9)?,
        updated_at: r.int(10)?,
    })
}

pub(crate) fn variant_from(r: &Row, offset: usize) -> Result<Variant, Error> {
    Ok(Variant {
        sku: r.text(offset)?,
        options: serde_json::from_str(r.str(offset + 1)?).unwrap_or_default(),
        price: money(r.int(offset + 2)?, r.str(offset + 3)?)?,
        weight_grams: r.int(offset + 4)?,
    })
}

pub(crate) fn load_product(tx: &mut dyn Tx, id: Id) -> Result<Option<Product>, Error> {
    let Some(row) = tx.query_opt(&format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE id = $1"), params![id])? else {
        return Ok(None);
    };
    with_variants(tx, &row).map(Some)
}

/// The id a product reference names, if it is one; otherwise it is a slug.
pub(crate) fn product_in(tx: &mut dyn Tx, id: Option<Id>, slug: &str) -> Result<Option<Product>, Error> {
    if let Some(id) = id {
        return load_product(tx, id);
    }
    let row = tx.query_opt(&format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE slug = $1"), params![slug])?;
    row.map(|row| with_variants(tx, &row)).transpose()
}

pub(crate) fn with_variants(tx: &mut dyn Tx, row: &Row) -> Result<Product, Error> {
    let id = row.id(0)?;
    let variants = tx
        .query(
            "SELECT sku, options, price, currency, weight_grams FROM variants WHERE product_id = $1 ORDER BY position",
            params![id],
        )?
        .iter()
        .map(|r| variant_from(r, 0))
        .collect::<Result<Vec<_>, _>>()?;
    product_from(row, variants)
}

/// Current catalog facts of `skus` (those that exist).
pub(crate) fn skus_in(tx: &mut dyn Tx, skus: &[String]) -> Result<HashMap<String, SkuInfo>, Error> {
    let mut out = HashMap::with_capacity(skus.len());
    if skus.is_empty() {
        return Ok(out);
    }
    let ph: Vec<String> = (1..=skus.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT v.sku, v.options, v.price, v.currency, v.weight_grams, p.id, p.name, p.status, p.category_id \
         FROM variants v JOIN products p ON p.id = v.product_id WHERE v.sku IN ({})",
        ph.join(", ")
    );
    let args: Vec<Param<'_>> = skus.iter().map(|s| Param::Text(s)).collect();
    for r in tx.query(&sql, &args)? {
        let v = variant_from(&r, 0)?;
        out.insert(
            v.sku.clone(),
            SkuInfo {
                sku: v.sku,
                product_id: r.id(5)?,
                category_id: r.id(8)?,
                product_name: r.text(6)?,
                status: ProductStatus::parse(r.str(7)?)?,
                options: v.options,
                price: v.price,
                weight_grams: v.weight_grams,
            },
        );
    }
    Ok(out)
}

/// `sku`'s facts as `product` states them, if it still has that variant.
pub(crate) fn unique_slug(tx: &mut dyn Tx, base: &str) -> Result<String, Error> {
    let mut candidate = base.to_string();
    for n in 2..1000 {
        if tx.query_opt("SELECT 1 FROM products WHERE slug = $1", params![&candidate])?.is_none() {
            return Ok(candidate);
        }
        candidate = format!("{base}-{n}");
    }
    Err(Error::conflict("could not find a free slug; give one explicitly"))
}

pub(crate) fn sku_conflict(e: Error) -> Error {
    if e.code == mercato_core::ErrorCode::Conflict {
        Error::conflict("a variant with this SKU, or a product with this slug, already exists")
    } else {
        e
    }
}

pub(crate) fn insert_product(tx: &mut dyn Tx, id: Id, slug: &str, p: &NewProduct, now: i64) -> Result<(), Error> {
    let min_price = p.variants.iter().map(|v| v.price.amount).min().unwrap_or(0);
    let currency = p.variants[0].price.currency;
    tx.execute(
        &format!("INSERT INTO products ({PRODUCT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9, $9)"),
        params![id, slug, &p.name, &p.description, p.category_id, p.status.as_str(), min_price, currency.as_str(), now],
    )?;
    for (pos, v) in p.variants.iter().enumerate() {
        let options = serde_json::to_string(&v.options).unwrap_or_else(|_| "{}".into());
        tx.execute(
            "INSERT INTO variants (sku, product_id, options, price, currency, weight_grams, position) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            params![&v.sku, id, &options, v.price.amount, v.price.currency.as_str(), v.weight_grams, pos as i64],
        )?;
    }
    Ok(())
}

/// Every category, in tree order.
pub(crate) fn categories(tx: &mut dyn Tx) -> Result<Vec<Category>, Error> {
    tx.query("SELECT id, parent_id, slug, name, position FROM categories ORDER BY position, id", params![])?
        .iter()
        .map(|r| {
            Ok(Category {
                id: r.id(0)?,
                parent_id: r.opt_int(1)?.map(Id),
                slug: r.text(2)?,
                name: r.text(3)?,
                position: r.int(4)?,
            })
        })
        .collect()
}

/// Inserts category `c` last among its siblings, with its event.
pub(crate) fn insert_category(tx: &mut dyn Tx, c: &Category) -> Result<(), Error> {
    let position = tx.query_one("SELECT COUNT(*) FROM categories", params![])?.int(0)?;
    tx.execute(
        "INSERT INTO categories (id, parent_id, slug, name, position, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        params![c.id, c.parent_id, &c.slug, &c.name, position, now_ms()],
    )
    .map_err(|e| sku_conflict(e.into()))?;
    publish(tx, &CategoryCreated { id: c.id })?;
    Ok(())
}

/// One more listing row than `q.limit` (to tell whether a next page
/// exists), in categories `categories` when given, after `cursor`.
pub(crate) fn list(
    tx: &mut dyn Tx,
    q: &ListQuery,
    categories: Option<&[Id]>,
    cursor: Option<&Cursor>,
) -> Result<Vec<ProductSummary>, Error> {
    let mut sql = String::from("SELECT id, slug, name, min_price, currency, category_id FROM products WHERE 1 = 1");
    let mut args: Vec<Param<'_>> = Vec::new();
    let status_str = q.status.map(|s| s.as_str()).unwrap_or("published");
    if !q.include_all_statuses || q.status.is_some() {
        args.push(Param::Text(status_str));
        sql.push_str(&format!(" AND status = ${}", args.len()));
    }
    if let Some(cats) = categories {
        let start = args.len();
        args.extend(cats.iter().map(|c| Param::Int(c.0)));
        let ph: Vec<String> = (start + 1..=args.len()).map(|i| format!("${i}")).collect();
        sql.push_str(&format!(" AND category_id IN ({})", ph.join(", ")));
    }
    if let Some(p) = q.min_price {
        args.push(Param::Int(p));
        sql.push_str(&format!(" AND min_price >= ${}", args.len()));
    }
    if let Some(p) = q.max_price {
        args.push(Param::Int(p));
        sql.push_str(&format!(" AND min_price <= ${}", args.len()));
    }
    if let Some(c) = cursor {
        let n = args.len();
        match q.sort {
            SortOrder::Newest => {
                args.push(Param::Int(c.id));
                sql.push_str(&format!(" AND id < ${}", n + 1));
            }
            SortOrder::PriceAsc | SortOrder::PriceDesc => {
                args.push(Param::Int(c.price.unwrap_or(0)));
                args.push(Param::Int(c.id));
                let op = if q.sort == SortOrder::PriceAsc { ">" } else { "<" };
                sql.push_str(&format!(" AND (min_price, id) {op} (${}, ${})", n + 1, n + 2));
            }
            SortOrder::Name => {
                args.push(Param::Text(c.name.as_deref().unwrap_or("")));
                args.push(Param::Int(c.id));
                sql.push_str(&format!(" AND (name, id) > (${}, ${})", n + 1, n + 2));
            }
        }
    }
    sql.push_str(match q.sort {
        SortOrder::Newest => " ORDER BY id DESC",
        SortOrder::PriceAsc => " ORDER BY min_price, id",
        SortOrder::PriceDesc => " ORDER BY min_price DESC, id DESC",
        SortOrder::Name => " ORDER BY name, id",
    });
    sql.push_str(&format!(" LIMIT {}", q.limit + 1));
    let rows = tx.query(&sql, &args)?;
    rows.iter()
        .map(|r| {
            Ok(ProductSummary {
                id: r.id(0)?,
                slug: r.text(1)?,
                name: r.text(2)?,
                price: money(r.int(3)?, r.str(4)?)?,
                category_id: r.id(5)?,
            })
        })
        .collect()
}

pub(crate) fn id_by_slug(tx: &mut dyn Tx, slug: &str) -> Result<Option<i64>, Error> {
    tx.query_opt("SELECT id FROM products WHERE slug = $1", params![slug])?.map(|r| r.int(0)).transpose()
}

/// Inserts validated product `new` as `id` (a free slug from its name if it
/// has none), with its event.
pub(crate) fn create(tx: &mut dyn Tx, id: Id, new: &NewProduct) -> Result<Product, Error> {
    let slug = match &new.slug {
        Some(s) => s.clone(),
        None => unique_slug(tx, &slugify(&new.name))?,
    };
    insert_product(tx, id, &slug, new, now_ms()).map_err(sku_conflict)?;
    let p = load_product(tx, id)?.ok_or_else(|| Error::internal("inserted product vanished"))?;
    publish(tx, &ProductCreated { id, status: p.status })?;
    Ok(p)
}

/// Changes the given fields of product `id`, with its event.
pub(crate) fn update(
    tx: &mut dyn Tx,
    id: Id,
    name: Option<&str>,
    description: Option<&str>,
    status: Option<ProductStatus>,
    category_id: Option<Id>,
) -> Result<Product, Error> {
    let before = load_product(tx, id)?.ok_or_else(|| Error::not_found("product not found"))?;
    tx.execute(
        "UPDATE products SET name = COALESCE($1, name), description = COALESCE($2, description), \
         status = COALESCE($3, status), category_id = COALESCE($4, category_id), \
         version = version + 1, updated_at = $5 WHERE id = $6",
        params![name, description, status.map(|s| s.as_str()), category_id, now_ms(), id],
    )?;
    let after = load_product(tx, id)?.ok_or_else(|| Error::internal("updated product vanished"))?;
    publish(tx, &ProductChanged { id, status: after.status, previous_status: before.status, version: after.version })?;
    Ok(after)
}

/// Changes variant `sku`'s price and weight; its product's minimum price
/// and version follow, with the event that says what changed.
pub(crate) fn update_variant(
    tx: &mut dyn Tx,
    sku: &str,
    price: Option<Money>,
    weight: Option<i64>,
) -> Result<Product, Error> {
    let row = tx
        .query_opt("SELECT product_id, price FROM variants WHERE sku = $1", params![sku])?
        .ok_or_else(|| Error::not_found(format!("SKU {sku} not found")))?;
    let (product_id, old_price) = (row.id(0)?, row.int(1)?);
    tx.execute(
        "UPDATE variants SET price = COALESCE($1, price), weight_grams = COALESCE($2, weight_grams) WHERE sku = $3",
        params![price.map(|p| p.amount), weight, sku],
    )?;
    tx.execute(
        "UPDATE products SET min_price = (SELECT MIN(price) FROM variants WHERE product_id = $1), \
         version = version + 1, updated_at = $2 WHERE id = $1",
        params![product_id, now_ms()],
    )?;
    let after = load_product(tx, product_id)?.ok_or_else(|| Error::internal("product vanished"))?;
    match price {
        Some(p) if p.amount != old_price => {
            publish(tx, &VariantPriceChanged { product_id, sku: sku.to_string(), old: old_price, new: p.amount })?
        }
        _ => publish(
            tx,
            &ProductChanged {
                id: product_id,
                status: after.status,
                previous_status: after.status,
                version: after.version,
            },
        )?,
    }
    Ok(after)
}

/// Up to `limit` published products in id order after `after`, with
/// their variants (two queries for the page).
pub(crate) fn published_after(tx: &mut dyn Tx, after: Option<Id>, limit: i64) -> Result<Vec<Product>, Error> {
    let rows = tx.query(
        &format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE status = 'published' AND id > $1 ORDER BY id LIMIT $2"),
        params![after.map(|a| a.0).unwrap_or(0), limit],
    )?;
    let (Some(first), Some(last)) = (rows.first(), rows.last()) else { return Ok(vec![]) };
    let (lo, hi) = (first.int(0)?, last.int(0)?);
    let mut variants: HashMap<i64, Vec<Variant>> = HashMap::new();
    for r in tx.query(
        "SELECT product_id, sku, options, price, currency, weight_grams FROM variants \
         WHERE product_id >= $1 AND product_id <= $2 ORDER BY product_id, position",
        params![lo, hi],
    )? {
        variants.entry(r.int(0)?).or_default().push(variant_from(&r, 1)?);
    }
    rows.iter().map(|r| product_from(r, variants.remove(&r.int(0)?).unwrap_or_default())).collect()
}

/// Ids of products changed at or after `since` (ms), in id order after `after`.
pub(crate) fn changed_since(tx: &mut dyn Tx, since: i64, after: Option<Id>, limit: i64) -> Result<Vec<Id>, Error> {
    tx.query(
        "SELECT id FROM products WHERE updated_at >= $1 AND id > $2 ORDER BY id LIMIT $3",
        params![since, after.map(|a| a.0).unwrap_or(0), limit],
    )?
    .iter()
    .map(|r| Ok(Id(r.int(0)?)))
    .collect()
}

pub(crate) fn published_count(tx: &mut dyn Tx) -> Result<i64, Error> {
    tx.query_one("SELECT COUNT(*) FROM products WHERE status = 'published'", params![])?.int(0)
}

pub(crate) fn product_count(tx: &mut dyn Tx) -> Result<i64, Error> {
    tx.query_one("SELECT COUNT(*) FROM products", params![])?.int(0)
}

/// Ids of every product from `from` on.
pub(crate) fn product_ids_from(tx: &mut dyn Tx, from: Id) -> Result<Vec<i64>, Error> {
    tx.query("SELECT id FROM products WHERE id >= $1", params![from])?.iter().map(|r| r.int(0)).collect()
}
