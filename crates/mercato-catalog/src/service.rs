use crate::store;
use mercato_contracts::catalog::*;
use mercato_core::{Currency, Error, ErrorCode, Id, Millis};
use mercato_platform::cache::{CacheHub, Tiered};
use mercato_platform::events::EventBus;
use mercato_platform::ids::IdGen;
use mercato_platform::{Db, now_ms};
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Clone)]
pub struct CatalogService {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    ids: IdGen,
    bus: EventBus,
    currency: Currency,
    /// Product by id (L1 + shared L2), invalidated on every write to it.
    products: Tiered<i64, Product>,
    slugs: Tiered<String, i64>,
    /// The whole category tree under one key: it is small and read by every page.
    tree: Tiered<String, Vec<Category>>,
    /// The tree's one key, kept so the hot path does not allocate it.
    tree_key: String,
    /// Shoppers' listing pages by query. Any product or category write may
    /// change any page, so writes flush them all (`invalidate_all`).
    listings: Tiered<String, Page<ProductSummary>>,
    /// Ids of every product that exists, so that requests for ids that were
    /// never minted stop here instead of reaching the database.
    known: crate::membership::Membership,
    /// Which product a SKU belongs to, for answering display lookups from the
    /// product cache. Never trusted alone: the cached product must still list
    /// the SKU, or the lookup goes to the database.
    sku_products: moka::sync::Cache<String, i64>,
    /// Product pages' reads that miss every cache, by reference (see
    /// `page_product`): concurrent misses for one product share one read.
    page_reads: mercato_platform::cache::SingleFlight<(String, u64, u64), Option<Arc<Product>>>,
}

const TREE: &str = "all";

/// A product by id, or else by slug, in the caller's transaction.
fn sku_info(product: &Product, sku: &str) -> Option<SkuInfo> {
    let v = product.variants.iter().find(|v| v.sku == sku)?;
    Some(SkuInfo {
        sku: v.sku.clone(),
        product_id: product.id,
        category_id: product.category_id,
        product_name: product.name.clone(),
        status: product.status,
        options: v.options.clone(),
        price: v.price,
        weight_grams: v.weight_grams,
    })
}

fn id_reference(reference: &str) -> Option<Id> {
    reference.parse::<i64>().ok().filter(|id| *id > 0).map(Id)
}

impl CatalogService {
    /// Loads the membership filter of product ids before returning.
    pub async fn new(db: Db, ids: IdGen, bus: EventBus, currency: Currency, cache: &CacheHub) -> Result<Self, Error> {
        let known = crate::membership::Membership::load(&db).await?;
        let products = cache.tiered_weighed("product", Product::heap_size);
        let slugs = cache.tiered("slug");
        let tree = cache.tiered("categories");
        let listings = cache.tiered_sized("listing", (cache.options().l1_max_entries / 10).max(100));
        products.reads_from(&db);
        slugs.reads_from(&db);
        tree.reads_from(&db);
        listings.reads_from(&db);
        Ok(CatalogService {
            inner: Arc::new(Inner {
                db,
                ids,
                bus,
                currency,
                products,
                slugs,
                tree,
                tree_key: TREE.to_string(),
                listings,
                known,
                sku_products: moka::sync::Cache::new(cache.options().l1_max_entries * 2),
                page_reads: Default::default(),
            }),
        })
    }

    /// Keeps the membership filter up to date with products other instances
    /// create (this instance adds its own at once).
    pub fn spawn_upkeep(&self) {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(crate::membership::REFRESH).await;
                if let Err(e) = this.inner.known.refresh(&this.inner.db).await {
                    tracing::warn!(error = %e, "refreshing the product membership filter failed");
                }
            }
        });
    }

    /// Drops cached copies of a product and every listing page, after each
    /// write of this service. Other instances hear of it through Redis (the
    /// cache hub), not through events: with several instances an event is
    /// relayed by only one of them.
    async fn invalidate(&self, id: Id) {
        self.inner.products.invalidate(&id.0).await;
        self.inner.listings.invalidate_all().await;
    }

    async fn invalidate_categories(&self) {
        self.inner.tree.invalidate(&self.inner.tree_key).await;
        self.inner.listings.invalidate_all().await;
    }

    /// The category and all its descendants.
    pub async fn subtree(&self, root: Id) -> Result<Vec<Id>, Error> {
        let cats = self.categories().await?;
        let mut out = vec![root];
        let mut i = 0;
        while i < out.len() {
            let parent = out[i];
            out.extend(cats.iter().filter(|c| c.parent_id == Some(parent)).map(|c| c.id));
            i += 1;
        }
        Ok(out)
    }

    async fn list_uncached(&self, q: ListQuery) -> Result<Page<ProductSummary>, Error> {
        if q.limit == 0 || q.limit > 100 {
            return Err(Error::field("limit", "must be between 1 and 100"));
        }
        if let (Some(a), Some(b)) = (q.min_price, q.max_price)
            && a > b
        {
            return Err(Error::field("min_price", "must not exceed max_price"));
        }
        let cursor = q.cursor.as_deref().map(|c| Cursor::decode(c, q.sort)).transpose()?;
        let categories = match &q.category {
            Some(reference) => Some(self.subtree(self.category(reference).await?.id).await?),
            None => None,
        };
        let (limit, sort) = (q.limit, q.sort);
        let rows =
            self.inner.db.read_replica(move |tx| store::list(tx, &q, categories.as_deref(), cursor.as_ref())).await?;
        let mut items = rows;
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|last| {
                Cursor {
                    sort,
                    price: matches!(sort, SortOrder::PriceAsc | SortOrder::PriceDesc).then_some(last.price.amount),
                    name: (sort == SortOrder::Name).then(|| last.name.clone()),
                    id: last.id.0,
                }
                .encode()
            })
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    pub async fn get_by_id(&self, id: Id) -> Result<Arc<Product>, Error> {
        if !self.inner.known.may_exist(id) {
            metrics::counter!("mercato_cache_filtered_total", "cache" => "product").increment(1);
            return Err(Error::not_found("product not found"));
        }
        let db = self.inner.db.clone();
        self.inner
            .products
            .get_or_load(&id.0, || async move { db.lookup_replica(move |tx| store::load_product(tx, id)).await })
            .await?
            .ok_or_else(|| Error::not_found("product not found"))
    }

    /// The product `reference` names, if the caches know it: `Some(None)` for
    /// a cached "does not exist".
    fn cached(&self, reference: &str, by_id: Option<Id>) -> Option<Option<Arc<Product>>> {
        let id = match by_id {
            Some(id) => id.0,
            None => match self.inner.slugs.peek(&reference.to_string())? {
                None => return Some(None),
                Some(id) => *id,
            },
        };
        let p = self.inner.products.peek(&id)?;
        // A product whose slug changed since the slug was cached: read again.
        match p {
            Some(p) if by_id.is_none() && p.slug != reference => None,
            p => Some(p),
        }
    }
}

#[async_trait::async_trait]
impl Catalog for CatalogService {
    fn currency(&self) -> Currency {
        self.inner.currency
    }
    async fn categories(&self) -> Result<Arc<Vec<Category>>, Error> {
        let key = &self.inner.tree_key;
        if let Some(Some(tree)) = self.inner.tree.peek(key) {
            return Ok(tree);
        }
        let db = self.inner.db.clone();
        let load = || async move { db.read_replica(store::categories).await.map(Some) };
        Ok(self.inner.tree.get_or_load(key, load).await?.unwrap_or_default())
    }
    /// A category by id or slug.
    async fn category(&self, reference: &str) -> Result<Category, Error> {
        let by_id = reference.parse::<i64>().ok();
        let find = |cats: &[Category]| cats.iter().find(|c| Some(c.id.0) == by_id || c.slug == reference).cloned();
        if let Some(c) = find(&self.categories().await?) {
            return Ok(c);
        }
        // Created on another instance since we cached the tree: look again once.
        self.inner.tree.invalidate_local(&self.inner.tree_key);
        find(&self.categories().await?).ok_or_else(|| Error::not_found(format!("category '{reference}' not found")))
    }
    /// The category and its ancestors, leaf first.
    async fn ancestors(&self, id: Id) -> Result<Vec<Id>, Error> {
        let cats = self.categories().await?;
        let mut out = Vec::new();
        let mut current = Some(id);
        while let Some(c) = current {
            if out.contains(&c) || out.len() > 32 {
                break; // a cycle would be a bug; never loop forever on it
            }
            out.push(c);
            current = cats.iter().find(|x| x.id == c).and_then(|x| x.parent_id);
        }
        Ok(out)
    }
    async fn create_category(&self, name: &str, slug: Option<&str>, parent_id: Option<Id>) -> Result<Category, Error> {
        let name = validate_name(name)?;
        let slug = match slug {
            Some(s) => validate_slug(s)?,
            None => slugify(&name),
        };
        if let Some(p) = parent_id {
            self.category(&p.to_string()).await.map_err(|_| Error::field("parent_id", "no such category"))?;
        }
        let id = self.inner.ids.next()?;
        let cat = Category { id, parent_id, slug, name, position: 0 };
        let c = cat.clone();
        self.inner.db.write(move |tx| store::insert_category(tx, &c)).await.map_err(|e| {
            if e.code == mercato_core::ErrorCode::Conflict {
                Error::conflict("a category with this slug exists")
            } else {
                e
            }
        })?;
        self.invalidate_categories().await;
        self.inner.bus.wake();
        Ok(cat)
    }
    /// A listing page; shared, since shoppers' pages come from the cache.
    async fn list(&self, q: ListQuery) -> Result<Arc<Page<ProductSummary>>, Error> {
        if q.include_all_statuses {
            return self.list_uncached(q).await.map(Arc::new); // admin listings are always current
        }
        let key = format!(
            "{}|{:?}|{:?}|{:?}|{}|{}",
            q.category.as_deref().unwrap_or(""),
            q.min_price,
            q.max_price,
            q.sort,
            q.limit,
            q.cursor.as_deref().unwrap_or("")
        );
        let this = self.clone();
        let page =
            self.inner.listings.get_or_load(&key, || async move { this.list_uncached(q).await.map(Some) }).await?;
        Ok(page.unwrap_or_else(|| Arc::new(Page { items: vec![], next_cursor: None })))
    }
    /// A product by id or slug. With `published_only`, drafts and archived
    /// products are reported as not found.
    async fn get(&self, reference: &str, published_only: bool) -> Result<Arc<Product>, Error> {
        let id = match id_reference(reference) {
            Some(id) => id,
            None => {
                let db = self.inner.db.clone();
                let slug = reference.to_string();
                let key = slug.clone();
                let found = self
                    .inner
                    .slugs
                    .get_or_load(
                        &key,
                        || async move { db.lookup_replica(move |tx| store::id_by_slug(tx, &slug)).await },
                    )
                    .await?;
                Id(*found.ok_or_else(|| Error::not_found("product not found"))?)
            }
        };
        let product = self.get_by_id(id).await?;
        if published_only && product.status != ProductStatus::Published {
            return Err(Error::not_found("product not found"));
        }
        if id_reference(reference).is_none() && product.slug != reference {
            // A stale slug mapping (the slug changed): look again.
            self.inner.slugs.invalidate(&reference.to_string()).await;
            return Err(Error::not_found("product not found"));
        }
        Ok(product)
    }
    /// Like [`get`](Self::get), for a product page: a product in no cache is
    /// read with its variants in one read of the database, found by slug or
    /// id (one trip instead of two), and concurrent misses for one reference
    /// share that read. With a shared L2 this is [`get`](Self::get), so the
    /// L2 still shields a shared database from every instance's misses.
    async fn page_product(&self, reference: &str, published_only: bool) -> Result<Arc<Product>, Error> {
        let by_id = id_reference(reference);
        let shown = |p: Option<Arc<Product>>| match p {
            Some(p) if !published_only || p.status == ProductStatus::Published => Ok(p),
            _ => Err(Error::not_found("product not found")),
        };
        if let Some(cached) = self.cached(reference, by_id) {
            return shown(cached);
        }
        if let Some(id) = by_id
            && !self.inner.known.may_exist(id)
        {
            metrics::counter!("mercato_cache_filtered_total", "cache" => "product").increment(1);
            return Err(Error::not_found("product not found"));
        }
        if self.inner.products.shared() {
            return self.get(reference, published_only).await;
        }
        // A caller arriving after an invalidation does not join a read that
        // began before it.
        let key = reference.to_string();
        let flight = (key.clone(), self.inner.slugs.ticket(), self.inner.products.ticket());
        let product = self
            .inner
            .page_reads
            .run(&flight, || async move {
                // A caller that missed just before the previous read stored
                // its result finds it here.
                if let Some(cached) = self.cached(&key, by_id) {
                    return Ok(cached);
                }
                let tickets = (self.inner.slugs.ticket(), self.inner.products.ticket());
                let r = key.clone();
                // Which product this finds is learnt from the read, so a
                // replica must have seen every invalidation seen here.
                let floor = self.inner.slugs.floor_any().max(self.inner.products.floor_any());
                let db = &self.inner.db;
                let read = mercato_platform::db::fill(
                    db.name().into(),
                    floor,
                    db.lookup_replica(move |tx| store::product_in(tx, by_id, &r)),
                )
                .await?;
                metrics::counter!("mercato_cache_loads_total", "cache" => "product").increment(1);
                let Some(product) = read else {
                    if by_id.is_none() {
                        self.inner.slugs.adopt(&key, None, tickets.0);
                    }
                    return Ok(None);
                };
                let id = product.id.0;
                let product = self.inner.products.adopt(&id, Some(product), tickets.1);
                if by_id.is_none() {
                    self.inner.slugs.adopt(&key, Some(id), tickets.0);
                }
                Ok(product)
            })
            .await?;
        shown(product)
    }
    async fn create(&self, new: NewProduct) -> Result<Arc<Product>, Error> {
        let new = new.validate(self.inner.currency)?;
        self.category(&new.category_id.to_string())
            .await
            .map_err(|_| Error::field("category_id", "no such category"))?;
        let id = self.inner.ids.next()?;
        let product = self.inner.db.write(move |tx| store::create(tx, id, &new)).await?;
        self.inner.bus.wake();
        self.inner.known.insert(id);
        // A "not found" for this slug may be cached, here or in Redis.
        self.inner.slugs.invalidate(&product.slug).await;
        let product = Arc::new(product);
        // The same invalidation as any product write: listings may now show it.
        self.invalidate(id).await;
        self.inner.products.prime(&id.0, product.clone());
        Ok(product)
    }
    async fn update(&self, id: Id, patch: ProductPatch) -> Result<Arc<Product>, Error> {
        let name = patch.name.as_deref().map(validate_name).transpose()?;
        let description = patch.description.as_deref().map(validate_description).transpose()?;
        if let Some(c) = patch.category_id {
            self.category(&c.to_string()).await.map_err(|_| Error::field("category_id", "no such category"))?;
        }
        let status = patch.status;
        let category_id = patch.category_id;
        let product = self
            .inner
            .db
            .write(move |tx| store::update(tx, id, name.as_deref(), description.as_deref(), status, category_id))
            .await?;
        self.inner.bus.wake();
        self.invalidate(id).await;
        Ok(Arc::new(product))
    }
    async fn update_variant(&self, sku: &str, patch: VariantPatch) -> Result<Arc<Product>, Error> {
        let price = patch.price.map(|p| validate_price(p, self.inner.currency)).transpose()?;
        let weight = patch.weight_grams.map(validate_weight).transpose()?;
        let sku = sku.to_string();
        let product = self.inner.db.write(move |tx| store::update_variant(tx, &sku, price, weight)).await?;
        self.inner.bus.wake();
        self.invalidate(product.id).await;
        Ok(Arc::new(product))
    }
    /// Facts about `skus` for display (a cart being filled): taken from the
    /// product cache, which every catalog write invalidates (on other
    /// instances through Redis), so a cart is as fresh as the product pages it
    /// was filled from. What the cache cannot answer is read from the
    /// database. Checkout prices with [`Self::skus`].
    async fn skus_shown(&self, skus: Vec<String>) -> Result<HashMap<String, SkuInfo>, Error> {
        let mut out = HashMap::with_capacity(skus.len());
        let mut uncached = Vec::new();
        for sku in skus {
            let product = self.inner.sku_products.get(&sku);
            match product.and_then(|p| self.inner.products.peek(&p).flatten()).and_then(|p| sku_info(&p, &sku)) {
                Some(info) => {
                    out.insert(sku, info);
                }
                None => uncached.push((sku, product)),
            }
        }
        // A few products of known SKUs are loaded into the product cache, so
        // that the next pricing of these lines (every add answers the priced
        // cart) is answered from memory; many (a long cart after eviction)
        // are read with the unknown SKUs in one query rather than one load
        // per line.
        let mut missing = Vec::new();
        let few = uncached.len() <= 4;
        for (sku, product) in uncached {
            let loaded = match product {
                Some(id) if few => match self.get_by_id(Id(id)).await {
                    Ok(p) => sku_info(&p, &sku),
                    // A product deleted since: the join below decides.
                    Err(e) if e.code == ErrorCode::NotFound => None,
                    Err(e) => return Err(e),
                },
                _ => None,
            };
            match loaded {
                Some(info) => {
                    out.insert(sku, info);
                }
                None => missing.push(sku),
            }
        }
        if !missing.is_empty() {
            metrics::counter!("mercato_cache_loads_total", "cache" => "sku").increment(1);
            for (sku, info) in self.skus(missing).await? {
                self.inner.sku_products.insert(sku.clone(), info.product_id.0);
                out.insert(sku, info);
            }
        }
        Ok(out)
    }
    /// Current facts about `skus` (missing SKUs are simply absent), always
    /// from the database, for decisions a cache must not make (a flash sale's
    /// SKU, an admin's stock change, the prices checkout charges).
    async fn skus(&self, skus: Vec<String>) -> Result<HashMap<String, SkuInfo>, Error> {
        if skus.is_empty() {
            return Ok(HashMap::new());
        }
        self.inner.db.lookup(move |tx| store::skus_in(tx, &skus)).await
    }
    /// Published products in id order after `after`, fully loaded: for
    /// rebuilding derived views (the search index) in pages.
    async fn published_after(&self, after: Option<Id>, limit: i64) -> Result<Vec<Product>, Error> {
        self.inner.db.read_replica_current(move |tx| store::published_after(tx, after, limit)).await
    }
    async fn changed_since(&self, since: Millis, after: Option<Id>, limit: i64) -> Result<Vec<Id>, Error> {
        self.inner.db.read_replica_current(move |tx| store::changed_since(tx, since, after, limit)).await
    }
    async fn published_count(&self) -> Result<i64, Error> {
        self.inner.db.read(store::published_count).await
    }
    async fn product_count(&self) -> Result<i64, Error> {
        self.inner.db.read(store::product_count).await
    }
    /// Straight from the database, for derived views (the search index) that
    /// must not index a cached copy older than the event they react to.
    async fn get_uncached(&self, id: Id) -> Result<Arc<Product>, Error> {
        self.inner
            .db
            .lookup(move |tx| store::load_product(tx, id))
            .await?
            .map(Arc::new)
            .ok_or_else(|| Error::not_found("product not found"))
    }
    /// Bulk insert for seeding: one transaction per call, no events (a fresh
    /// catalog has no subscribers to tell; the search index is rebuilt from the
    /// tables).
    async fn insert_batch(&self, products: Vec<(NewProduct, String)>) -> Result<Vec<Id>, Error> {
        let currency = self.inner.currency;
        let ids: Vec<Id> = products.iter().map(|_| self.inner.ids.next()).collect::<Result<_, _>>()?;
        let out = ids.clone();
        let mut batch = Some(products);
        self.inner
            .db
            .write(move |tx| {
                let products = batch.take().ok_or_else(|| Error::internal("batch retried"))?;
                let now = now_ms();
                for ((p, slug), id) in products.into_iter().zip(&ids) {
                    let p = p.validate(currency)?;
                    store::insert_product(tx, *id, &slug, &p, now)?;
                }
                Ok(())
            })
            .await?;
        for id in &out {
            self.inner.known.insert(*id);
        }
        Ok(out)
    }
}
