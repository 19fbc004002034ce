//! What scenarios need, discovered or created through the public API before
//! the window opens: the catalog's products, category pages and words, SKUs
//! with stock, customers with tokens, a flash sale.

use crate::http::{Conn, Prepared, Target, bearer};
use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use hyper::header::HeaderValue;
use hyper::{Method, StatusCode};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};

fn s(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Percent-encodes a query value (unreserved characters kept).
pub fn enc(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub struct Catalog {
    /// `(id, slug)` of every product the listing returned.
    pub products: Vec<(String, String)>,
    /// Product-detail requests, by slug.
    pub detail: Vec<Prepared>,
    /// Category first pages and deep pages (through the cursor).
    pub first_pages: Vec<Prepared>,
    pub deep_pages: Vec<Prepared>,
    pub search: Vec<Prepared>,
    /// SKUs with stock (from the details of a sample of products).
    pub skus: Vec<(String, i64)>,
}

async fn get_ok(conn: &mut Conn, path: &str) -> Result<Value> {
    let (st, v) = conn.json(Method::GET, path, None, None).await?;
    if !st.is_success() {
        bail!("GET {path}: {st} {v}");
    }
    Ok(v)
}

/// Pages the whole listing once (100 per page), walks each category's pages
/// through the cursor, and samples product details for SKUs.
pub async fn discover_catalog(
    target: &Target,
    need_pages: bool,
    need_skus: bool,
    sku_sample: usize,
    max_products: usize,
) -> Result<Catalog> {
    let mut conn = Conn::new(target.clone());
    let mut products = Vec::new();
    let mut categories = BTreeSet::new();
    let mut words = BTreeSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/products?limit=100&cursor={}", enc(c)),
            None => "/api/v1/products?limit=100".to_string(),
        };
        let v = get_ok(&mut conn, &path).await?;
        let items = v["items"].as_array().ok_or_else(|| anyhow!("listing has no items: {v}"))?;
        for it in items {
            let id = s(&it["id"]).ok_or_else(|| anyhow!("product without id: {it}"))?;
            let slug = it["slug"].as_str().unwrap_or_default().to_string();
            if let Some(c) = s(&it["category_id"]) {
                categories.insert(c);
            }
            if let Some(name) = it["name"].as_str() {
                for w in name.split(|c: char| !c.is_alphanumeric()) {
                    if w.len() >= 4 && w.chars().all(|c| c.is_alphabetic()) && words.len() < 5000 {
                        words.insert(w.to_lowercase());
                    }
                }
            }
            products.push((id, slug));
        }
        cursor = v["next_cursor"].as_str().map(str::to_string);
        if cursor.is_none() || products.len() >= max_products {
            break;
        }
    }
    if products.is_empty() {
        bail!("the catalog is empty: nothing to load");
    }
    let detail = products
        .iter()
        .map(|(id, slug)| {
            let key = if slug.is_empty() { id } else { slug };
            Ok(Prepared::get(target.uri(&format!("/api/v1/products/{}", enc(key)))?))
        })
        .collect::<Result<Vec<_>>>()?;

    let mut first_pages = Vec::new();
    let mut deep_pages = Vec::new();
    if need_pages {
        for c in &categories {
            let first = format!("/api/v1/products?category={}&limit=20", enc(c));
            first_pages.push(Prepared::get(target.uri(&first)?));
            let mut v = get_ok(&mut conn, &first).await?;
            // Deep pages: follow the cursor up to 50 pages into each category.
            for _ in 0..50 {
                let Some(c2) = v["next_cursor"].as_str() else { break };
                let deep = format!("/api/v1/products?category={}&limit=20&cursor={}", enc(c), enc(c2));
                deep_pages.push(Prepared::get(target.uri(&deep)?));
                v = get_ok(&mut conn, &deep).await?;
            }
        }
    }

    let words: Vec<String> = words.into_iter().collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let mut search = Vec::new();
    if !words.is_empty() {
        for _ in 0..2000 {
            let w1 = &words[rng.random_range(0..words.len())];
            let q = if rng.random_bool(0.3) {
                let w2 = &words[rng.random_range(0..words.len())];
                format!("{w1} {w2}")
            } else {
                w1.clone()
            };
            search.push(Prepared::get(target.uri(&format!("/api/v1/search?q={}&limit=10", enc(&q)))?));
        }
    }

    let mut skus = Vec::new();
    if need_skus {
        let mut sample: Vec<&(String, String)> = products.iter().collect();
        sample.shuffle(&mut rng);
        for (id, _) in sample.into_iter().take(sku_sample) {
            let v = get_ok(&mut conn, &format!("/api/v1/products/{}", enc(id))).await?;
            for var in v["variants"].as_array().into_iter().flatten() {
                let avail = var["available"].as_i64().unwrap_or(0);
                if let Some(sku) = var["sku"].as_str()
                    && avail > 0
                {
                    skus.push((sku.to_string(), avail));
                }
            }
        }
        if skus.is_empty() {
            bail!("no SKU with stock found among {sku_sample} sampled products");
        }
    }
    Ok(Catalog { products, detail, first_pages, deep_pages, search, skus })
}

/// Registers and logs in `n` fresh customers, over `parallel` connections.
pub async fn customers(target: &Target, n: usize, parallel: usize, run_tag: &str) -> Result<Vec<HeaderValue>> {
    let parallel = parallel.clamp(1, 32).min(n.max(1));
    let mut tasks = Vec::new();
    for t in 0..parallel {
        let target = target.clone();
        let run_tag = run_tag.to_string();
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::new(target);
            let mut out = Vec::new();
            let mut i = t;
            while i < n {
                let email = format!("lg-{run_tag}-{i}@loadgen.example");
                let password = "loadgen-password-1";
                let body = json!({"email": email, "password": password, "name": format!("Loadgen {i}")});
                let (st, v) = conn.json(Method::POST, "/api/v1/auth/register", Some(&body), None).await?;
                if !st.is_success() && st != StatusCode::CONFLICT {
                    bail!("register {email}: {st} {v}");
                }
                let login = json!({"email": email, "password": password});
                let (st, v) = conn.json(Method::POST, "/api/v1/auth/login", Some(&login), None).await?;
                let token = v["access_token"].as_str().ok_or_else(|| anyhow!("login {email}: {st} {v}"))?;
                out.push((i, bearer(token)?));
                i += parallel;
            }
            Ok::<_, anyhow::Error>(out)
        }));
    }
    let mut all = Vec::with_capacity(n);
    for t in tasks {
        all.extend(t.await??);
    }
    all.sort_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, t)| t).collect())
}

pub async fn admin_token(target: &Target, email: &str, password: &str) -> Result<HeaderValue> {
    let mut conn = Conn::new(target.clone());
    let body = json!({"email": email, "password": password});
    let (st, v) = conn.json(Method::POST, "/api/v1/auth/login", Some(&body), None).await?;
    let token = v["access_token"]
        .as_str()
        .ok_or_else(|| anyhow!("admin login as {email} failed: {st} {v} (set --admin-email/--admin-password)"))?;
    bearer(token)
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Stock {
    pub available: i64,
    pub reserved: i64,
    pub sold: i64,
}

pub async fn stock(target: &Target, admin: &HeaderValue, sku: &str) -> Result<Stock> {
    let mut conn = Conn::new(target.clone());
    let (st, v) = conn.json(Method::GET, &format!("/api/v1/admin/inventory/{}", enc(sku)), None, Some(admin)).await?;
    if !st.is_success() {
        bail!("inventory of {sku}: {st} {v}");
    }
    Ok(Stock {
        available: v["available"].as_i64().unwrap_or(-1),
        reserved: v["reserved"].as_i64().unwrap_or(-1),
        sold: v["sold"].as_i64().unwrap_or(-1),
    })
}

pub struct FlashSale {
    pub id: String,
    pub sku: String,
    pub quantity: i64,
    pub stock_before: Stock,
    pub purchase: Prepared,
    pub state: Prepared,
}

/// Creates an open flash sale of `quantity` units of `sku` (raising its stock
/// first if it has too little), per-customer limit 1.
pub async fn flash_sale(target: &Target, admin: &HeaderValue, sku: &str, quantity: i64) -> Result<FlashSale> {
    let mut conn = Conn::new(target.clone());
    let before = stock(target, admin, sku).await?;
    if before.available < quantity {
        let body = json!({"available": quantity, "reason": "mercato-loadgen flash-sale setup"});
        let (st, v) =
            conn.json(Method::PUT, &format!("/api/v1/admin/inventory/{}", enc(sku)), Some(&body), Some(admin)).await?;
        if !st.is_success() {
            bail!("raising stock of {sku}: {st} {v}");
        }
    }
    let stock_before = stock(target, admin, sku).await?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() as i64;
    let body = json!({
        "sku": sku,
        "price": {"amount": 100, "currency": "USD"},
        "quantity": quantity,
        "starts_at": rfc3339(now - 1),
        "ends_at": rfc3339(now + 3600),
        "per_customer_limit": 1,
    });
    let (st, v) = conn.json(Method::POST, "/api/v1/admin/flash-sales", Some(&body), Some(admin)).await?;
    if st != StatusCode::CREATED {
        bail!("creating the flash sale: {st} {v}");
    }
    let id = s(&v["id"]).context("flash sale without id")?;
    let address = json!({"shipping_address": address()});
    Ok(FlashSale {
        purchase: Prepared {
            method: Method::POST,
            uri: target.uri(&format!("/api/v1/flash-sales/{}/purchase", enc(&id)))?,
            body: Bytes::from(address.to_string()),
        },
        state: Prepared::get(target.uri(&format!("/api/v1/flash-sales/{}", enc(&id)))?),
        id,
        sku: sku.to_string(),
        quantity,
        stock_before,
    })
}

pub async fn flash_state(target: &Target, id: &str) -> Result<HashMap<String, Value>> {
    let mut conn = Conn::new(target.clone());
    let v = get_ok(&mut conn, &format!("/api/v1/flash-sales/{}", enc(id))).await?;
    Ok(v.as_object().cloned().unwrap_or_default().into_iter().collect())
}

pub fn address() -> Value {
    json!({"name": "Load Gen", "line1": "1 Bench St", "city": "Springfield", "postal_code": "12345", "country": "US"})
}

/// Seconds since the epoch as RFC 3339 UTC (civil-from-days, no dependency).
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn encodes_query_values() {
        assert_eq!(enc("a b/c"), "a%20b%2Fc");
        assert_eq!(enc("MRC-0000001-RED"), "MRC-0000001-RED");
    }
}
