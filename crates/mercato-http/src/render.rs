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
use mercato_catalog::{Category, Product};
use moka::sync::Cache;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Rendered {
    pub product: Arc<Product>,
    pub categories: Arc<Vec<Category>>,
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
    pub fn new(max_entries: u64, ttl: Duration) -> Self {
        // Entries are valid for at most the availability TTL; the TTL here
        // only frees memory of pages nobody asks for.
        ProductPages { pages: Cache::builder().max_capacity(max_entries).time_to_live(ttl).build(), ttl }
    }

    /// The page if it is still exactly what rendering would produce now.
    pub fn get(
        &self,
        product: &Arc<Product>,
        categories: &Arc<Vec<Category>>,
        generation: impl Fn(&str) -> u64,
    ) -> Option<Arc<Rendered>> {
        let r = self.pages.get(&product.id.0)?;
        let current = Arc::ptr_eq(&r.product, product)
            && Arc::ptr_eq(&r.categories, categories)
            && r.rendered_at.elapsed() < self.ttl
            && product.variants.iter().zip(&r.stock_generations).all(|(v, g)| generation(&v.sku) == *g);
        current.then_some(r)
    }

    pub fn put(&self, page: Rendered) -> Arc<Rendered> {
        let page = Arc::new(page);
        self.pages.insert(page.product.id.0, page.clone());
        page
    }
}
