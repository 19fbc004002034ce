use crate::pricing::{PricedLine, TaxRule, Totals, line_total, totals};
use crate::settings::ShopSettings;
use mercato_contracts::cart::ShippingMethod;
use mercato_contracts::cart::{Cart, CartConverted, CartOwner, PricedCart};
use mercato_contracts::catalog::{Catalog, ProductStatus, SkuInfo};
use mercato_contracts::inventory::Inventory;
use mercato_contracts::orders::OrderPlaced;
use mercato_contracts::promotions::{EligibleLine, Promotions, normalize_code};
use mercato_core::{Currency, Error, ErrorCode, Id, Money};
use mercato_platform::events::{EventBus, Received, publish};
use mercato_platform::ids::IdGen;
use mercato_platform::{Db, Tx, now_ms, params, random_token, sha256_hex};
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Clone)]
pub struct CartService {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    ids: IdGen,
    bus: EventBus,
    catalog: Arc<dyn Catalog>,
    inventory: Arc<dyn Inventory>,
    promotions: Arc<dyn Promotions>,
    shop: ShopSettings,
    currency: Currency,
}

struct CartRow {
    id: Id,
}

/// What pricing needs of a cart, read in one transaction.
struct CartState {
    shipping_method: String,
    customer: Option<Id>,
    coupon: Option<String>,
    /// (sku, quantity), oldest line first.
    lines: Vec<(String, i64)>,
}

/// Cart `cart` as pricing needs it. Writes that change a cart read this in
/// their own transaction: the writer's pages are current and cached, while a
/// reader after any commit starts from an empty page cache (SQLite's WAL
/// readers drop it whenever the database changed), so a second read
/// transaction cost more than the write itself.
fn cart_state_in(tx: &mut dyn Tx, cart: Id) -> Result<CartState, Error> {
    let row = tx
        .query_opt("SELECT shipping_method, customer_id, coupon_code FROM carts WHERE id = $1", params![cart])?
        .ok_or_else(|| Error::not_found("no cart"))?;
    let lines = tx
        .query("SELECT sku, quantity FROM cart_lines WHERE cart_id = $1 ORDER BY added_at, sku", params![cart])?
        .iter()
        .map(|r| Ok((r.text(0)?, r.int(1)?)))
        .collect::<Result<Vec<_>, Error>>()?;
    Ok(CartState { shipping_method: row.text(0)?, customer: row.opt_int(1)?.map(Id), coupon: row.opt_text(2)?, lines })
}

/// Where a cart's catalog facts come from.
enum Facts {
    /// As product pages show them (cached; for a cart being filled).
    Shown,
    /// Read from the database with the cart (checkout).
    Read(HashMap<String, SkuInfo>),
}

/// What creating an owner's cart needs, prepared outside the transaction so
/// the body can run more than once.
struct FreshCart {
    owner: CartOwner,
    id: Id,
    default_method: String,
    token: Option<String>,
}

impl FreshCart {
    /// The owner's active cart, created if there is none; the token is returned
    /// only when this call created a guest cart.
    fn ensure_in(&self, tx: &mut dyn Tx) -> Result<(Id, Option<String>), Error> {
        if let Some(found) = find_active(tx, &self.owner)? {
            return Ok((found.id, None));
        }
        let now = now_ms();
        let (customer, token_hash) = match &self.owner {
            CartOwner::Customer(c) => (Some(*c), None),
            CartOwner::Guest(_) => (None, self.token.as_ref().map(|t| sha256_hex(t.as_bytes()))),
        };
        // ON CONFLICT: a concurrent request created this customer's cart first.
        tx.execute(
            "INSERT INTO carts (id, token_hash, customer_id, status, shipping_method, created_at, updated_at) \
             VALUES ($1, $2, $3, 'active', $4, $5, $5) ON CONFLICT DO NOTHING",
            params![self.id, token_hash.as_deref(), customer, &self.default_method, now],
        )?;
        let lookup = match &self.owner {
            CartOwner::Guest(_) => CartOwner::Guest(self.token.clone()),
            customer => customer.clone(),
        };
        let found = find_active(tx, &lookup)?.ok_or_else(|| Error::internal("cart not found after insert"))?;
        Ok((found.id, if found.id == self.id { self.token.clone() } else { None }))
    }
}

fn find_active(tx: &mut dyn Tx, owner: &CartOwner) -> Result<Option<CartRow>, Error> {
    let row = match owner {
        CartOwner::Customer(c) => {
            tx.query_opt("SELECT id FROM carts WHERE customer_id = $1 AND status = 'active'", params![*c])?
        }
        CartOwner::Guest(Some(token)) => tx.query_opt(
            "SELECT id FROM carts WHERE token_hash = $1 AND status = 'active' AND customer_id IS NULL",
            params![&sha256_hex(token.as_bytes())],
        )?,
        CartOwner::Guest(None) => None,
    };
    row.map(|r| Ok(CartRow { id: r.id(0)? })).transpose()
}

impl CartService {
    pub fn new(
        db: Db,
        ids: IdGen,
        bus: EventBus,
        catalog: Arc<dyn Catalog>,
        inventory: Arc<dyn Inventory>,
        promotions: Arc<dyn Promotions>,
        shop: ShopSettings,
    ) -> Self {
        let currency = shop.currency.parse().unwrap_or(Currency::USD);
        CartService { inner: Arc::new(Inner { db, ids, bus, catalog, inventory, promotions, shop, currency }) }
    }

    pub fn shipping_methods(&self) -> &[ShippingMethod] {
        &self.inner.shop.shipping_methods
    }

    fn shipping_method(&self, code: &str) -> &ShippingMethod {
        let methods = &self.inner.shop.shipping_methods;
        methods.iter().find(|m| m.code == code).unwrap_or(&methods[0])
    }

    /// Finds the owner's active cart, creating one if needed. Returns the cart id
    /// and, for a newly created guest cart, the token the client must keep.
    async fn ensure(&self, owner: &CartOwner) -> Result<(Id, Option<String>), Error> {
        let fresh = self.fresh_cart(owner)?;
        self.inner.db.write(move |tx| fresh.ensure_in(tx)).await
    }

    fn fresh_cart(&self, owner: &CartOwner) -> Result<FreshCart, Error> {
        Ok(FreshCart {
            owner: owner.clone(),
            id: self.inner.ids.next()?,
            default_method: self.inner.shop.shipping_methods[0].code.clone(),
            token: match owner {
                CartOwner::Guest(_) => Some(format!("mcc_{}", random_token())),
                CartOwner::Customer(_) => None,
            },
        })
    }

    fn check_quantity(&self, quantity: i64) -> Result<(), Error> {
        let max = self.inner.shop.max_line_quantity;
        if quantity < 1 || quantity > max {
            return Err(Error::field("quantity", format!("must be between 1 and {max}")));
        }
        Ok(())
    }

    /// Checks that `sku` can be bought in `quantity` (display stock: a sale is
    /// only decided at checkout, against the source of truth).
    async fn check_purchasable(&self, sku: &str, quantity: i64) -> Result<(), Error> {
        self.check_published(sku).await?;
        let available = self.available(sku).await?;
        if quantity > available {
            return Err(out_of_stock(sku, available, quantity));
        }
        Ok(())
    }

    async fn check_published(&self, sku: &str) -> Result<(), Error> {
        let info = self.inner.catalog.skus_shown(vec![sku.to_string()]).await?;
        match info.get(sku) {
            Some(i) if i.status == ProductStatus::Published => Ok(()),
            _ => Err(Error::not_found(format!("SKU {sku} not found"))),
        }
    }

    /// Units of `sku` on display as available.
    async fn available(&self, sku: &str) -> Result<i64, Error> {
        Ok(self.inner.inventory.available(&[sku.to_string()]).await?.get(sku).copied().unwrap_or(0))
    }

    /// Adds `quantity` units of `sku` (on top of any already in the cart).
    pub async fn add(
        &self,
        owner: &CartOwner,
        sku: &str,
        quantity: i64,
    ) -> Result<(PricedCart, Option<String>), Error> {
        self.check_quantity(quantity)?;
        self.check_published(sku).await?;
        // Display stock (cached); the units the line will hold are known only
        // inside the write, which checks them against it.
        let available = self.available(sku).await?;
        // Validated inside the write, so a rejected add leaves no empty cart
        // behind (the cart is created in the same transaction as its first line).
        let fresh = self.fresh_cart(owner)?;
        let (s, max, max_lines) =
            (sku.to_string(), self.inner.shop.max_line_quantity, self.inner.shop.max_cart_lines as i64);
        let (cart, token, state) = self
            .inner
            .db
            .write(move |tx| {
                let (cart, token) = fresh.ensure_in(tx)?;
                let held = tx
                    .query_opt("SELECT quantity FROM cart_lines WHERE cart_id = $1 AND sku = $2", params![cart, &s])?
                    .map(|r| r.int(0))
                    .transpose()?;
                let wanted = held.unwrap_or(0) + quantity;
                if wanted > max {
                    return Err(Error::field("quantity", format!("a line holds at most {max} units")));
                }
                if wanted > available {
                    return Err(out_of_stock(&s, available, wanted));
                }
                let now = now_ms();
                // Added to what the line holds when the row is written, not
                // to what was read: concurrent adds to one line both count.
                let changed = tx.execute(
                    "INSERT INTO cart_lines (cart_id, sku, quantity, added_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (cart_id, sku) DO UPDATE SET quantity = cart_lines.quantity + excluded.quantity \
                     WHERE cart_lines.quantity + excluded.quantity <= $5",
                    params![cart, &s, quantity, now, max],
                )?;
                if changed == 0 {
                    return Err(Error::field("quantity", format!("a line holds at most {max} units")));
                }
                tx.execute("UPDATE carts SET updated_at = $1 WHERE id = $2", params![now, cart])?;
                let state = cart_state_in(tx, cart)?;
                // Counted after the insert and after the cart row's update:
                // on PostgreSQL that update waits for any concurrent add to
                // this cart to commit, so this count includes its line.
                if held.is_none() && state.lines.len() as i64 > max_lines {
                    return Err(Error::field("sku", format!("a cart holds at most {max_lines} different items")));
                }
                Ok((cart, token, state))
            })
            .await?;
        Ok((self.priced_state(cart, state, Facts::Shown).await?, token))
    }

    pub async fn set_quantity(&self, owner: &CartOwner, sku: &str, quantity: i64) -> Result<PricedCart, Error> {
        self.check_quantity(quantity)?;
        let cart = self.existing(owner).await?;
        self.check_purchasable(sku, quantity).await?;
        let s = sku.to_string();
        let state = self
            .inner
            .db
            .write(move |tx| {
                let n = tx.execute(
                    "UPDATE cart_lines SET quantity = $1 WHERE cart_id = $2 AND sku = $3",
                    params![quantity, cart, &s],
                )?;
                if n == 0 {
                    return Err(Error::not_found(format!("SKU {s} is not in the cart")));
                }
                cart_state_in(tx, cart)
            })
            .await?;
        self.priced_state(cart, state, Facts::Shown).await
    }

    pub async fn remove(&self, owner: &CartOwner, sku: &str) -> Result<PricedCart, Error> {
        let cart = self.existing(owner).await?;
        let s = sku.to_string();
        let state = self
            .inner
            .db
            .write(move |tx| {
                let n = tx.execute("DELETE FROM cart_lines WHERE cart_id = $1 AND sku = $2", params![cart, &s])?;
                if n == 0 {
                    return Err(Error::not_found(format!("SKU {s} is not in the cart")));
                }
                cart_state_in(tx, cart)
            })
            .await?;
        self.priced_state(cart, state, Facts::Shown).await
    }

    pub async fn set_shipping_method(
        &self,
        owner: &CartOwner,
        code: &str,
    ) -> Result<(PricedCart, Option<String>), Error> {
        if !self.inner.shop.shipping_methods.iter().any(|m| m.code == code) {
            let known: Vec<&str> = self.inner.shop.shipping_methods.iter().map(|m| m.code.as_str()).collect();
            return Err(Error::field("code", format!("unknown shipping method; one of {}", known.join(", "))));
        }
        let (cart, token) = self.ensure(owner).await?;
        let c = code.to_string();
        self.inner
            .db
            .write(move |tx| Ok(tx.execute("UPDATE carts SET shipping_method = $1 WHERE id = $2", params![&c, cart])?))
            .await?;
        Ok((self.priced(cart).await?, token))
    }

    async fn find(&self, owner: &CartOwner) -> Result<Option<Id>, Error> {
        let owner = owner.clone();
        Ok(self.inner.db.lookup(move |tx| find_active(tx, &owner)).await?.map(|c| c.id))
    }

    async fn existing(&self, owner: &CartOwner) -> Result<Id, Error> {
        self.find(owner).await?.ok_or_else(|| Error::not_found("no cart"))
    }

    /// The owner's cart priced now (an empty cart if there is none).
    pub async fn view(&self, owner: &CartOwner) -> Result<PricedCart, Error> {
        match self.find(owner).await? {
            Some(cart) => self.priced(cart).await,
            None => self.empty(),
        }
    }

    fn empty(&self) -> Result<PricedCart, Error> {
        let method = &self.inner.shop.shipping_methods[0];
        Ok(PricedCart {
            id: None,
            items: vec![],
            totals: totals(self.inner.currency, &[], Money::zero(self.inner.currency), method, &self.tax_rule())?,
            currency: self.inner.currency,
            shipping_method: method.code.clone(),
            unavailable: vec![],
            discounts: vec![],
            coupon: None,
            coupon_problem: None,
        })
    }

    fn tax_rule(&self) -> TaxRule {
        TaxRule { rate_bp: self.inner.shop.tax_rate_bp, includes_shipping: self.inner.shop.tax_includes_shipping }
    }

    /// Prices cart `cart` for display: catalog facts as the product pages show
    /// them (the product cache), current promotions.
    pub async fn priced(&self, cart: Id) -> Result<PricedCart, Error> {
        self.priced_from(cart, Facts::Shown).await
    }

    /// Prices cart `cart` from catalog facts and current promotions.
    async fn priced_from(&self, cart: Id, facts: Facts) -> Result<PricedCart, Error> {
        let state = self.inner.db.lookup(move |tx| cart_state_in(tx, cart)).await?;
        self.priced_state(cart, state, facts).await
    }

    /// Prices cart `cart` as `state` describes it.
    async fn priced_state(&self, cart: Id, state: CartState, facts: Facts) -> Result<PricedCart, Error> {
        let CartState { shipping_method: method, customer, coupon, lines } = state;
        let skus = lines.iter().map(|(s, _)| s.clone()).collect();
        let info = match facts {
            Facts::Shown => self.inner.catalog.skus_shown(skus).await?,
            Facts::Read(info) => info,
        };
        let mut items = Vec::with_capacity(lines.len());
        let mut eligible = Vec::with_capacity(lines.len());
        let mut unavailable = Vec::new();
        for (sku, quantity) in lines {
            match info.get(&sku) {
                Some(i) if i.status == ProductStatus::Published => {
                    let line_total = line_total(i.price, quantity)?;
                    eligible.push(EligibleLine {
                        sku: sku.clone(),
                        categories: self.inner.catalog.ancestors(i.category_id).await?,
                        line_total: line_total.amount,
                    });
                    items.push(PricedLine {
                        line_total,
                        sku,
                        product_id: i.product_id,
                        name: i.product_name.clone(),
                        options: i.options.clone(),
                        quantity,
                        unit_price: i.price,
                    })
                }
                _ => unavailable.push(sku),
            }
        }
        let quote = if items.is_empty() {
            Default::default()
        } else {
            self.inner.promotions.quote(coupon.as_deref(), &eligible, customer).await?
        };
        let discount: i64 = quote.applied.iter().map(|a| a.amount).sum();
        let shipping = self.shipping_method(&method);
        let currency = self.inner.currency;
        let totals = totals(currency, &items, Money::new(discount, currency), shipping, &self.tax_rule())?;
        Ok(PricedCart {
            id: Some(cart),
            items,
            totals,
            currency,
            shipping_method: shipping.code.clone(),
            unavailable,
            discounts: quote.applied,
            coupon,
            coupon_problem: quote.coupon_rejection,
        })
    }

    /// Totals for lines priced outside a cart (a flash-sale purchase): default
    /// shipping, configured tax, no promotions.
    pub fn totals_for(&self, lines: &[PricedLine]) -> Result<Totals, Error> {
        let currency = self.inner.currency;
        totals(currency, lines, Money::zero(currency), &self.inner.shop.shipping_methods[0], &self.tax_rule())
    }

    /// Applies a coupon code to the cart, if it applies to the cart now.
    pub async fn set_coupon(&self, owner: &CartOwner, code: &str) -> Result<PricedCart, Error> {
        let code = normalize_code(code).map_err(|_| {
            Error::new(ErrorCode::CouponInvalid, format!("coupon {code} does not exist"))
                .with_details(serde_json::json!({ "coupon": code, "reason": "not_found" }))
        })?;
        let cart = self.existing(owner).await.map_err(|_| {
            Error::new(ErrorCode::CouponInvalid, format!("coupon {code} does not apply to an empty cart"))
                .with_details(serde_json::json!({ "coupon": code, "reason": "not_applicable" }))
        })?;
        self.write_coupon(cart, Some(code)).await?;
        let priced = self.priced(cart).await?;
        if let Some(problem) = priced.coupon_problem {
            self.write_coupon(cart, None).await?;
            return Err(problem);
        }
        Ok(priced)
    }

    pub async fn remove_coupon(&self, owner: &CartOwner) -> Result<PricedCart, Error> {
        let cart = self.existing(owner).await?;
        self.write_coupon(cart, None).await?;
        self.priced(cart).await
    }

    async fn write_coupon(&self, cart: Id, code: Option<String>) -> Result<(), Error> {
        self.inner
            .db
            .write(move |tx| {
                Ok(tx.execute("UPDATE carts SET coupon_code = $1 WHERE id = $2", params![code.as_deref(), cart])?)
            })
            .await
            .map(drop)
    }

    /// Moves a guest cart's lines into the customer's cart (quantities add up,
    /// capped at the line maximum) and retires the guest cart. Idempotent: a
    /// merged cart is no longer active, so a second call finds nothing.
    pub async fn merge_guest(&self, token: &str, customer: Id) -> Result<(), Error> {
        let guest = CartOwner::Guest(Some(token.to_string()));
        let g = guest.clone();
        let Some(guest_cart) = self.inner.db.lookup(move |tx| find_active(tx, &g)).await? else {
            return Ok(());
        };
        let (target, _) = self.ensure(&CartOwner::Customer(customer)).await?;
        let max = self.inner.shop.max_line_quantity;
        self.inner
            .db
            .write(move |tx| {
                let now = now_ms();
                let retired = tx.execute(
                    "UPDATE carts SET status = 'merged', updated_at = $1 WHERE id = $2 AND status = 'active'",
                    params![now, guest_cart.id],
                )?;
                if retired == 0 {
                    return Ok(());
                }
                let lines = tx.query("SELECT sku, quantity, added_at FROM cart_lines WHERE cart_id = $1", params![guest_cart.id])?;
                for r in lines {
                    tx.execute(
                        "INSERT INTO cart_lines (cart_id, sku, quantity, added_at) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (cart_id, sku) DO UPDATE SET quantity = CASE WHEN cart_lines.quantity + excluded.quantity > $5 \
                         THEN $5 ELSE cart_lines.quantity + excluded.quantity END",
                        params![target, &r.text(0)?, r.int(1)?.min(max), r.int(2)?, max],
                    )?;
                }
                Ok(())
            })
            .await
    }

    /// `customer`'s active cart priced as checkout prices it (empty when
    /// there is none): the cart from this domain's database, then the current
    /// catalog facts of its SKUs from the catalog, never a cache.
    pub async fn checkout(&self, customer: Id) -> Result<PricedCart, Error> {
        let found = self
            .inner
            .db
            .lookup(move |tx| {
                let Some(cart) = find_active(tx, &CartOwner::Customer(customer))? else { return Ok(None) };
                Ok(Some((cart.id, cart_state_in(tx, cart.id)?)))
            })
            .await?;
        let Some((cart, state)) = found else { return self.empty() };
        let skus: Vec<String> = state.lines.iter().map(|(s, _)| s.clone()).collect();
        let facts = self.inner.catalog.skus(skus).await?;
        self.priced_state(cart, state, Facts::Read(facts)).await
    }

    /// Retires `cart` because `order` was placed from it (checkout's last
    /// step, when the cart is known to be active). Idempotent.
    pub async fn convert(&self, cart: Id, order: Id) -> Result<(), Error> {
        if self.inner.db.write(move |tx| convert_in(tx, cart, order)).await? {
            self.inner.bus.wake();
        }
        Ok(())
    }

    /// The cart's reactions to other domains' events. Call once at start-up.
    pub fn subscribe(&self) {
        self.inner.bus.on_with(
            &self.inner,
            "cart.on-order-placed",
            &["order.placed"],
            |inner, e: Received<OrderPlaced>| async move {
                match e.data.cart_id {
                    Some(cart) => CartService { inner }.mark_converted(cart, e.data.order_id).await,
                    None => Ok(()),
                }
            },
        );
    }

    /// The `order.placed` subscriber's [`Self::convert`], the safety net for
    /// a checkout that crashed before retiring its cart: it usually has
    /// nothing to do, and a read says so without queueing a write.
    pub async fn mark_converted(&self, cart: Id, order: Id) -> Result<(), Error> {
        let active = self
            .inner
            .db
            .lookup(move |tx| {
                Ok(tx.query_opt("SELECT 1 FROM carts WHERE id = $1 AND status = 'active'", params![cart])?)
            })
            .await?;
        match active {
            Some(_) => self.convert(cart, order).await,
            None => Ok(()),
        }
    }
}

fn out_of_stock(sku: &str, available: i64, requested: i64) -> Error {
    Error::new(ErrorCode::OutOfStock, format!("only {available} of {sku} available"))
        .with_details(serde_json::json!({ "sku": sku, "available": available, "requested": requested }))
}

/// Retires `cart` because `order` was placed from it. Returns whether this
/// call retired it (false: already retired).
fn convert_in(tx: &mut dyn Tx, cart: Id, order: Id) -> Result<bool, Error> {
    let n = tx.execute(
        "UPDATE carts SET status = 'converted', order_id = $1, updated_at = $2 WHERE id = $3 AND status = 'active'",
        params![order, now_ms(), cart],
    )?;
    if n == 1 {
        publish(tx, &CartConverted { cart_id: cart, order_id: order })?;
    }
    Ok(n == 1)
}

#[async_trait::async_trait]
impl Cart for CartService {
    fn shipping_methods(&self) -> &[ShippingMethod] {
        CartService::shipping_methods(self)
    }
    fn totals_for(&self, lines: &[PricedLine]) -> Result<Totals, Error> {
        CartService::totals_for(self, lines)
    }
    async fn view(&self, owner: &CartOwner) -> Result<PricedCart, Error> {
        CartService::view(self, owner).await
    }
    async fn add(&self, owner: &CartOwner, sku: &str, quantity: i64) -> Result<(PricedCart, Option<String>), Error> {
        CartService::add(self, owner, sku, quantity).await
    }
    async fn set_quantity(&self, owner: &CartOwner, sku: &str, quantity: i64) -> Result<PricedCart, Error> {
        CartService::set_quantity(self, owner, sku, quantity).await
    }
    async fn remove(&self, owner: &CartOwner, sku: &str) -> Result<PricedCart, Error> {
        CartService::remove(self, owner, sku).await
    }
    async fn set_shipping_method(&self, owner: &CartOwner, code: &str) -> Result<(PricedCart, Option<String>), Error> {
        CartService::set_shipping_method(self, owner, code).await
    }
    async fn set_coupon(&self, owner: &CartOwner, code: &str) -> Result<PricedCart, Error> {
        CartService::set_coupon(self, owner, code).await
    }
    async fn remove_coupon(&self, owner: &CartOwner) -> Result<PricedCart, Error> {
        CartService::remove_coupon(self, owner).await
    }
    async fn merge_guest(&self, token: &str, customer: Id) -> Result<(), Error> {
        CartService::merge_guest(self, token, customer).await
    }
    async fn checkout(&self, customer: Id) -> Result<PricedCart, Error> {
        CartService::checkout(self, customer).await
    }
    async fn convert(&self, cart: Id, order: Id) -> Result<(), Error> {
        CartService::convert(self, cart, order).await
    }
}
