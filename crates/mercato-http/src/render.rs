//! Product pages as served bytes. A page is the product, its category and
//! each variant's displayed availability, rendered to JSON with its ETag;
//! rendering (building the DTO, serializing, hashing) was a large share of a
//! cached product request, so the bytes are kept while every input is
//! provably the same: the same product and category-tree values (the caches
//! hand out new `Arc`s whenever they reload), no availability invalidation
//! for its SKUs since, and younger than the displayed-availability TTL. No
//! freshness rule changes: the page is as fresh as the caches it is made of.

use bytes::Bytes;
use http::HeaderValue;
use mercato_contracts::catalog::{Category, Product};
use moka::sync::Cache;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

pub struct Rendered {
    /// Weak, so that a page outliving its product in the product cache does
    /// not keep the product's strings and variants alive (on a large catalog
    /// that doubled the memory of the two caches). The allocation itself stays
    /// while the page does, so its address cannot be reused by a newer value
    /// and pointer equality still means "the same value".
    pub product: Weak<Product>,
    pub categories: Weak<Vec<Category>>,
    pub stock_generations: Vec<u64>,
    pub rendered_at: Instant,
    pub body: Bytes,
    pub etag: HeaderValue,
}

pub struct ProductPages {
    pages: Cache<i64, Arc<Rendered>>,
    /// The displayed-availability TTL (`InventoryService::shown_ttl`).
    ttl: Duration,
}

impl ProductPages {
    /// Pages are bounded by memory (`max_bytes`), like the product cache.
    pub fn new(max_bytes: u64, ttl: Duration) -> Self {
        // Entries are valid for at most the availability TTL; the TTL here
        // only frees memory of pages nobody asks for.
        let pages = Cache::builder()
            .max_capacity(max_bytes)
            // The page, its ETag and generations, and moka's bookkeeping.
            .weigher(|_: &i64, r: &Arc<Rendered>| {
                u32::try_from(256 + r.body.len() + r.stock_generations.len() * 8).unwrap_or(u32::MAX)
            })
            .time_to_live(ttl)
            .build();
        ProductPages { pages, ttl }
    }

    /// The page if it is still exactly what rendering would produce now.
    pub fn get(
        &self,
        product: &Arc<Product>,
        categories: &Arc<Vec<Category>>,
        generation: impl Fn(&str) -> u64,
    ) -> Option<Arc<Rendered>> {
        let r = self.pages.get(&product.id.0)?;
        let current = std::ptr::eq(r.product.as_ptr(), Arc::as_ptr(product))
            && std::ptr::eq(r.categories.as_ptr(), Arc::as_ptr(categories))
            && r.rendered_at.elapsed() < self.ttl
            && product.variants.iter().zip(&r.stock_generations).all(|(v, g)| generation(&v.sku) == *g);
        current.then_some(r)
    }

    /// The page of `product`: the kept one while its inputs are unchanged,
    /// otherwise `render`'s bytes, kept with what they were made of. The
    /// stock generations and the clock are read before `render` reads
    /// anything, so a stock write during rendering makes the page stale at
    /// once rather than pinning what it replaced.
    pub async fn page<F, Fut>(
        &self,
        product: &Arc<Product>,
        categories: &Arc<Vec<Category>>,
        generation: impl Fn(&str) -> u64,
        render: F,
    ) -> Result<Arc<Rendered>, mercato_core::Error>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Bytes, mercato_core::Error>>,
    {
        if let Some(page) = self.get(product, categories, &generation) {
            return Ok(page);
        }
        let rendered_at = Instant::now();
        let stock_generations: Vec<u64> = product.variants.iter().map(|v| generation(&v.sku)).collect();
        let body = render().await?;
        let etag = etag_of(&body);
        let page = Arc::new(Rendered {
            product: Arc::downgrade(product),
            categories: Arc::downgrade(categories),
            stock_generations,
            rendered_at,
            body,
            etag,
        });
        self.pages.insert(product.id.0, page.clone());
        Ok(page)
    }
}

/// A strong ETag: the body's 64-bit hash.
pub fn etag_of(body: &[u8]) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{:016x}\"", xxhash_rust::xxh3::xxh3_64(body)))
        .expect("hex digits are a valid header value")
}
