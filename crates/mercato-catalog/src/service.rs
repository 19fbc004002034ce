use mercato_contracts::catalog::*;
use mercato_contracts::catalog::{CategoryCreated, ProductChanged, ProductCreated, VariantPriceChanged};
use mercato_core::{Currency, Error, ErrorCode, Id, Money};
use mercato_platform::cache::{CacheHub, Tiered};
use mercato_platform::db::{Param, Row};
use mercato_platform::events::{EventBus, publish};
use mercato_platform::ids::IdGen;
use mercato_platform::{Db, Tx, now_ms, params};
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
    page_reads: mercato_platform::cache::SingleFlight<String, Option<Arc<Product>>>,
}

const TREE: &str = "all";

const PRODUCT_COLUMNS: &str =
    "id, slug, name, description, category_id, status, min_price, currency, version, created_at, updated_at";

fn money(amount: i64, currency: &str) -> Result<Money, Error> {
    Ok(Money::new(amount, currency.parse()?))
}

fn product_from(r: &Row, variants: Vec<Variant>) -> Result<Product, Error> {
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

fn variant_from(r: &Row, offset: usize) -> Result<Variant, Error> {
    Ok(Variant {
        sku: r.text(offset)?,
        options: serde_json::from_str(r.str(offset + 1)?).unwrap_or_default(),
        price: money(r.int(offset + 2)?, r.str(offset + 3)?)?,
        weight_grams: r.int(offset + 4)?,
    })
}

fn load_product(tx: &mut dyn Tx, id: Id) -> Result<Option<Product>, Error> {
    let Some(row) = tx.query_opt(&format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE id = $1"), params![id])? else {
        return Ok(None);
    };
    with_variants(tx, &row).map(Some)
}

/// The id a product reference names, if it is one; otherwise it is a slug.
fn id_reference(reference: &str) -> Option<Id> {
    reference.parse::<i64>().ok().filter(|id| *id > 0).map(Id)
}

/// A product by id, or else by slug, in the caller's transaction.
fn product_in(tx: &mut dyn Tx, id: Option<Id>, slug: &str) -> Result<Option<Product>, Error> {
    if let Some(id) = id {
        return load_product(tx, id);
    }
    let row = tx.query_opt(&format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE slug = $1"), params![slug])?;
    row.map(|row| with_variants(tx, &row)).transpose()
}

fn with_variants(tx: &mut dyn Tx, row: &Row) -> Result<Product, Error> {
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
fn skus_in(tx: &mut dyn Tx, skus: &[String]) -> Result<HashMap<String, SkuInfo>, Error> {
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

fn unique_slug(tx: &mut dyn Tx, base: &str) -> Result<String, Error> {
    let mut candidate = base.to_string();
    for n in 2..1000 {
        if tx.query_opt("SELECT 1 FROM products WHERE slug = $1", params![&candidate])?.is_none() {
            return Ok(candidate);
        }
        candidate = format!("{base}-{n}");
    }
    Err(Error::conflict("could not find a free slug; give one explicitly"))
}

fn sku_conflict(e: Error) -> Error {
    if e.code == mercato_core::ErrorCode::Conflict {
        Error::conflict("a variant with this SKU, or a product with this slug, already exists")
    } else {
        e
    }
}

impl CatalogService {
    /// Loads the membership filter of product ids before returning.
    pub async fn new(db: Db, ids: IdGen, bus: EventBus, currency: Currency, cache: &CacheHub) -> Result<Self, Error> {
        let known = crate::membership::Membership::load(&db).await?;
        Ok(CatalogService {
            inner: Arc::new(Inner {
                db,
                ids,
                bus,
                currency,
                products: cache.tiered_weighed("product", Product::heap_size),
                slugs: cache.tiered("slug"),
                tree: cache.tiered("categories"),
                tree_key: TREE.to_string(),
                listings: cache.tiered_sized("listing", (cache.options().l1_max_entries / 10).max(100)),
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

    pub fn currency(&self) -> Currency {
        self.inner.currency
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

    pub async fn categories(&self) -> Result<Arc<Vec<Category>>, Error> {
        let key = &self.inner.tree_key;
        if let Some(Some(tree)) = self.inner.tree.peek(key) {
            return Ok(tree);
        }
        let db = self.inner.db.clone();
        let load = || async move {
            db.read(|tx| {
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
                    .collect::<Result<Vec<_>, Error>>()
            })
            .await
            .map(Some)
        };
        Ok(self.inner.tree.get_or_load(key, load).await?.unwrap_or_default())
    }

    /// A category by id or slug.
    pub async fn category(&self, reference: &str) -> Result<Category, Error> {
        let by_id = reference.parse::<i64>().ok();
        let find = |cats: &[Category]| cats.iter().find(|c| Some(c.id.0) == by_id || c.slug == reference).cloned();
        if let Some(c) = find(&self.categories().await?) {
            return Ok(c);
        }
        // Created on another instance since we cached the tree: look again once.
        self.inner.tree.invalidate_local(&self.inner.tree_key);
        find(&self.categories().await?).ok_or_else(|| Error::not_found(format!("category '{reference}' not found")))
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

    /// The category and its ancestors, leaf first.
    pub async fn ancestors(&self, id: Id) -> Result<Vec<Id>, Error> {
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

    pub async fn create_category(
        &self,
        name: &str,
        slug: Option<&str>,
        parent_id: Option<Id>,
    ) -> Result<Category, Error> {
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
        self.inner
            .db
            .write(move |tx| {
                let position = tx.query_one("SELECT COUNT(*) FROM categories", params![])?.int(0)?;
                tx.execute(
                    "INSERT INTO categories (id, parent_id, slug, name, position, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
                    params![c.id, c.parent_id, &c.slug, &c.name, position, now_ms()],
                )
                .map_err(|e| sku_conflict(e.into()))?;
                publish(tx, &CategoryCreated { id: c.id })?;
                Ok(())
            })
            .await
            .map_err(|e| if e.code == mercato_core::ErrorCode::Conflict { Error::conflict("a category with this slug exists") } else { e })?;
        self.invalidate_categories().await;
        self.inner.bus.wake();
        Ok(cat)
    }

    /// A listing page; shared, since shoppers' pages come from the cache.
    pub async fn list(&self, q: ListQuery) -> Result<Arc<Page<ProductSummary>>, Error> {
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
        let limit = q.limit;
        let sort = q.sort;
        let status = q.status;
        let all = q.include_all_statuses;
        let (min_price, max_price) = (q.min_price, q.max_price);
        let rows = self
            .inner
            .db
            .read(move |tx| {
                let mut sql =
                    String::from("SELECT id, slug, name, min_price, currency, category_id FROM products WHERE 1 = 1");
                let mut args: Vec<Param<'_>> = Vec::new();
                let status_str = status.map(|s| s.as_str()).unwrap_or("published");
                if !all || status.is_some() {
                    args.push(Param::Text(status_str));
                    sql.push_str(&format!(" AND status = ${}", args.len()));
                }
                if let Some(cats) = &categories {
                    let start = args.len();
                    args.extend(cats.iter().map(|c| Param::Int(c.0)));
                    let ph: Vec<String> = (start + 1..=args.len()).map(|i| format!("${i}")).collect();
                    sql.push_str(&format!(" AND category_id IN ({})", ph.join(", ")));
                }
                if let Some(p) = min_price {
                    args.push(Param::Int(p));
                    sql.push_str(&format!(" AND min_price >= ${}", args.len()));
                }
                if let Some(p) = max_price {
                    args.push(Param::Int(p));
                    sql.push_str(&format!(" AND min_price <= ${}", args.len()));
                }
                if let Some(c) = &cursor {
                    let n = args.len();
                    match sort {
                        SortOrder::Newest => {
                            args.push(Param::Int(c.id));
                            sql.push_str(&format!(" AND id < ${}", n + 1));
                        }
                        SortOrder::PriceAsc | SortOrder::PriceDesc => {
                            args.push(Param::Int(c.price.unwrap_or(0)));
                            args.push(Param::Int(c.id));
                            let op = if sort == SortOrder::PriceAsc { ">" } else { "<" };
                            sql.push_str(&format!(" AND (min_price, id) {op} (${}, ${})", n + 1, n + 2));
                        }
                        SortOrder::Name => {
                            args.push(Param::Text(c.name.as_deref().unwrap_or("")));
                            args.push(Param::Int(c.id));
                            sql.push_str(&format!(" AND (name, id) > (${}, ${})", n + 1, n + 2));
                        }
                    }
                }
                sql.push_str(match sort {
                    SortOrder::Newest => " ORDER BY id DESC",
                    SortOrder::PriceAsc => " ORDER BY min_price, id",
                    SortOrder::PriceDesc => " ORDER BY min_price DESC, id DESC",
                    SortOrder::Name => " ORDER BY name, id",
                });
                sql.push_str(&format!(" LIMIT {}", limit + 1));
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
                    .collect::<Result<Vec<_>, Error>>()
            })
            .await?;
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
            .get_or_load(&id.0, || async move { db.lookup(move |tx| load_product(tx, id)).await })
            .await?
            .ok_or_else(|| Error::not_found("product not found"))
    }

    /// Straight from the database, for derived views (the search index) that
    /// must not index a cached copy older than the event they react to.
    pub async fn get_uncached(&self, id: Id) -> Result<Arc<Product>, Error> {
        self.inner
            .db
            .lookup(move |tx| load_product(tx, id))
            .await?
            .map(Arc::new)
            .ok_or_else(|| Error::not_found("product not found"))
    }

    /// A product by id or slug. With `published_only`, drafts and archived
    /// products are reported as not found.
    pub async fn get(&self, reference: &str, published_only: bool) -> Result<Arc<Product>, Error> {
        let id = match id_reference(reference) {
            Some(id) => id,
            None => {
                let db = self.inner.db.clone();
                let slug = reference.to_string();
                let key = slug.clone();
                let found = self
                    .inner
                    .slugs
                    .get_or_load(&key, || async move {
                        db.lookup(move |tx| {
                            tx.query_opt("SELECT id FROM products WHERE slug = $1", params![&slug])?
                                .map(|r| r.int(0))
                                .transpose()
                        })
                        .await
                    })
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
    pub async fn page_product(&self, reference: &str, published_only: bool) -> Result<Arc<Product>, Error> {
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
        let flight = reference.to_string();
        let key = flight.clone();
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
                let read = self.inner.db.lookup(move |tx| product_in(tx, by_id, &r)).await?;
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

    pub async fn create(&self, new: NewProduct) -> Result<Arc<Product>, Error> {
        let new = new.validate(self.inner.currency)?;
        self.category(&new.category_id.to_string())
            .await
            .map_err(|_| Error::field("category_id", "no such category"))?;
        let id = self.inner.ids.next()?;
        let product = self
            .inner
            .db
            .write(move |tx| {
                let slug = match &new.slug {
                    Some(s) => s.clone(),
                    None => unique_slug(tx, &slugify(&new.name))?,
                };
                insert_product(tx, id, &slug, &new, now_ms()).map_err(sku_conflict)?;
                let p = load_product(tx, id)?.ok_or_else(|| Error::internal("inserted product vanished"))?;
                publish(tx, &ProductCreated { id, status: p.status })?;
                Ok(p)
            })
            .await?;
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

    pub async fn update(&self, id: Id, patch: ProductPatch) -> Result<Arc<Product>, Error> {
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
            .write(move |tx| {
                let before = load_product(tx, id)?.ok_or_else(|| Error::not_found("product not found"))?;
                tx.execute(
                    "UPDATE products SET name = COALESCE($1, name), description = COALESCE($2, description), \
                     status = COALESCE($3, status), category_id = COALESCE($4, category_id), \
                     version = version + 1, updated_at = $5 WHERE id = $6",
                    params![
                        name.as_deref(),
                        description.as_deref(),
                        status.map(|s| s.as_str()),
                        category_id,
                        now_ms(),
                        id
                    ],
                )?;
                let after = load_product(tx, id)?.ok_or_else(|| Error::internal("updated product vanished"))?;
                publish(
                    tx,
                    &ProductChanged {
                        id,
                        status: after.status,
                        previous_status: before.status,
                        version: after.version,
                    },
                )?;
                Ok(after)
            })
            .await?;
        self.inner.bus.wake();
        self.invalidate(id).await;
        Ok(Arc::new(product))
    }

    pub async fn update_variant(&self, sku: &str, patch: VariantPatch) -> Result<Arc<Product>, Error> {
        let price = patch.price.map(|p| validate_price(p, self.inner.currency)).transpose()?;
        let weight = patch.weight_grams.map(validate_weight).transpose()?;
        let sku = sku.to_string();
        let product = self
            .inner
            .db
            .write(move |tx| {
                let row = tx
                    .query_opt("SELECT product_id, price FROM variants WHERE sku = $1", params![&sku])?
                    .ok_or_else(|| Error::not_found(format!("SKU {sku} not found")))?;
                let (product_id, old_price) = (row.id(0)?, row.int(1)?);
                tx.execute(
                    "UPDATE variants SET price = COALESCE($1, price), weight_grams = COALESCE($2, weight_grams) WHERE sku = $3",
                    params![price.map(|p| p.amount), weight, &sku],
                )?;
                tx.execute(
                    "UPDATE products SET min_price = (SELECT MIN(price) FROM variants WHERE product_id = $1), \
                     version = version + 1, updated_at = $2 WHERE id = $1",
                    params![product_id, now_ms()],
                )?;
                let after = load_product(tx, product_id)?.ok_or_else(|| Error::internal("product vanished"))?;
                match price {
                    Some(p) if p.amount != old_price => publish(
                        tx,
                        &VariantPriceChanged { product_id, sku: sku.clone(), old: old_price, new: p.amount },
                    )?,
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
            })
            .await?;
        self.inner.bus.wake();
        self.invalidate(product.id).await;
        Ok(Arc::new(product))
    }

    /// Facts about `skus` for display (a cart being filled): taken from the
    /// product cache, which every catalog write invalidates (on other
    /// instances through Redis), so a cart is as fresh as the product pages it
    /// was filled from. What the cache cannot answer is read from the
    /// database. Checkout prices with [`Self::skus`].
    pub async fn skus_shown(&self, skus: Vec<String>) -> Result<HashMap<String, SkuInfo>, Error> {
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
    pub async fn skus(&self, skus: Vec<String>) -> Result<HashMap<String, SkuInfo>, Error> {
        if skus.is_empty() {
            return Ok(HashMap::new());
        }
        self.inner.db.lookup(move |tx| skus_in(tx, &skus)).await
    }

    /// Published products in id order after `after`, fully loaded: for
    /// rebuilding derived views (the search index) in pages.
    pub async fn published_after(&self, after: Option<Id>, limit: i64) -> Result<Vec<Product>, Error> {
        self.inner
            .db
            .read(move |tx| {
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
            })
            .await
    }

    pub async fn published_count(&self) -> Result<i64, Error> {
        self.inner
            .db
            .read(|tx| tx.query_one("SELECT COUNT(*) FROM products WHERE status = 'published'", params![])?.int(0))
            .await
    }

    pub async fn product_count(&self) -> Result<i64, Error> {
        self.inner.db.read(|tx| tx.query_one("SELECT COUNT(*) FROM products", params![])?.int(0)).await
    }

    /// Bulk insert for seeding: one transaction per call, no events (a fresh
    /// catalog has no subscribers to tell; the search index is rebuilt from the
    /// tables).
    pub async fn insert_batch(&self, products: Vec<(NewProduct, String)>) -> Result<Vec<Id>, Error> {
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
                    insert_product(tx, *id, &slug, &p, now)?;
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

fn insert_product(tx: &mut dyn Tx, id: Id, slug: &str, p: &NewProduct, now: i64) -> Result<(), Error> {
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

#[async_trait::async_trait]
impl Catalog for CatalogService {
    fn currency(&self) -> Currency {
        CatalogService::currency(self)
    }
    async fn categories(&self) -> Result<Arc<Vec<Category>>, Error> {
        CatalogService::categories(self).await
    }
    async fn category(&self, reference: &str) -> Result<Category, Error> {
        CatalogService::category(self, reference).await
    }
    async fn subtree(&self, root: Id) -> Result<Vec<Id>, Error> {
        CatalogService::subtree(self, root).await
    }
    async fn ancestors(&self, id: Id) -> Result<Vec<Id>, Error> {
        CatalogService::ancestors(self, id).await
    }
    async fn create_category(&self, name: &str, slug: Option<&str>, parent_id: Option<Id>) -> Result<Category, Error> {
        CatalogService::create_category(self, name, slug, parent_id).await
    }
    async fn list(&self, q: ListQuery) -> Result<Arc<Page<ProductSummary>>, Error> {
        CatalogService::list(self, q).await
    }
    async fn get_by_id(&self, id: Id) -> Result<Arc<Product>, Error> {
        CatalogService::get_by_id(self, id).await
    }
    async fn get(&self, reference: &str, published_only: bool) -> Result<Arc<Product>, Error> {
        CatalogService::get(self, reference, published_only).await
    }
    async fn page_product(&self, reference: &str, published_only: bool) -> Result<Arc<Product>, Error> {
        CatalogService::page_product(self, reference, published_only).await
    }
    async fn create(&self, new: NewProduct) -> Result<Arc<Product>, Error> {
        CatalogService::create(self, new).await
    }
    async fn update(&self, id: Id, patch: ProductPatch) -> Result<Arc<Product>, Error> {
        CatalogService::update(self, id, patch).await
    }
    async fn update_variant(&self, sku: &str, patch: VariantPatch) -> Result<Arc<Product>, Error> {
        CatalogService::update_variant(self, sku, patch).await
    }
    async fn skus_shown(&self, skus: Vec<String>) -> Result<HashMap<String, SkuInfo>, Error> {
        CatalogService::skus_shown(self, skus).await
    }
    async fn skus(&self, skus: Vec<String>) -> Result<HashMap<String, SkuInfo>, Error> {
        CatalogService::skus(self, skus).await
    }
    async fn published_after(&self, after: Option<Id>, limit: i64) -> Result<Vec<Product>, Error> {
        CatalogService::published_after(self, after, limit).await
    }
    async fn published_count(&self) -> Result<i64, Error> {
        CatalogService::published_count(self).await
    }
    async fn product_count(&self) -> Result<i64, Error> {
        CatalogService::product_count(self).await
    }
    async fn get_uncached(&self, id: Id) -> Result<Arc<Product>, Error> {
        CatalogService::get_uncached(self, id).await
    }
    async fn insert_batch(&self, products: Vec<(NewProduct, String)>) -> Result<Vec<Id>, Error> {
        CatalogService::insert_batch(self, products).await
    }
}
