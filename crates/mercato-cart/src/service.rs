use crate::pricing::{PricedLine, TaxRule, Totals, line_total, totals};
use crate::settings::ShopSettings;
use crate::store::{self, CartState, FreshCart};
use mercato_contracts::cart::ShippingMethod;
use mercato_contracts::cart::{Cart, CartOwner, PricedCart};
use mercato_contracts::catalog::{Catalog, ProductStatus, SkuInfo};
use mercato_contracts::inventory::Inventory;
use mercato_contracts::orders::OrderPlaced;
use mercato_contracts::promotions::{EligibleLine, Promotions, normalize_code};
use mercato_core::{Currency, Error, ErrorCode, Id, Money};
use mercato_platform::events::{EventBus, Received};
use mercato_platform::ids::IdGen;
use mercato_platform::steps::Step;
use mercato_platform::{Db, random_token};
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

/// Where a cart's catalog facts come from.
enum Facts {
    /// As product pages show them (cached; for a cart being filled).
    Shown,
    /// Read from the database with the cart (checkout).
    Read(HashMap<String, SkuInfo>),
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

    fn shipping_method(&self, code: &str) -> &ShippingMethod {
        let methods = &self.inner.shop.shipping_methods;
        methods.iter().find(|m| m.code == code).unwrap_or(&methods[0])
    }

    /// Finds the owner's active cart, creating one if needed. Returns the cart id
    /// and, for a newly created guest cart, the token the client must keep.
    async fn ensure(&self, owner: &CartOwner) -> Result<(Id, Option<String>), Error> {
        let fresh = self.fresh_cart(owner)?;
        self.inner.db.write(move |tx| fresh.ensure(tx)).await
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

    async fn find(&self, owner: &CartOwner) -> Result<Option<Id>, Error> {
        let owner = owner.clone();
        Ok(self.inner.db.lookup(move |tx| store::find_active(tx, &owner)).await?.map(|c| c.id))
    }

    async fn existing(&self, owner: &CartOwner) -> Result<Id, Error> {
        self.find(owner).await?.ok_or_else(|| Error::not_found("no cart"))
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
        let state = self.inner.db.lookup(move |tx| store::cart_state(tx, cart)).await?;
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

    async fn write_coupon(&self, cart: Id, code: Option<String>) -> Result<(), Error> {
        self.inner.db.write(move |tx| store::set_coupon(tx, cart, code.as_deref())).await
    }

    /// Retires `cart` because `order` was placed from it (checkout's last
    /// step, when the cart is known to be active). Idempotent.
    pub async fn convert(&self, cart: Id, order: Id) -> Result<(), Error> {
        self.convert_step(cart, order).run().await
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
        let active = self.inner.db.lookup(move |tx| store::is_active(tx, cart)).await?;
        if active { self.convert(cart, order).await } else { Ok(()) }
    }
}

fn out_of_stock(sku: &str, available: i64, requested: i64) -> Error {
    Error::new(ErrorCode::OutOfStock, format!("only {available} of {sku} available"))
        .with_details(serde_json::json!({ "sku": sku, "available": available, "requested": requested }))
}

#[async_trait::async_trait]
impl Cart for CartService {
    fn shipping_methods(&self) -> &[ShippingMethod] {
        &self.inner.shop.shipping_methods
    }
    /// Totals for lines priced outside a cart (a flash-sale purchase): default
    /// shipping, configured tax, no promotions.
    fn totals_for(&self, lines: &[PricedLine]) -> Result<Totals, Error> {
        let currency = self.inner.currency;
        totals(currency, lines, Money::zero(currency), &self.inner.shop.shipping_methods[0], &self.tax_rule())
    }
    /// The owner's cart priced now (an empty cart if there is none).
    async fn view(&self, owner: &CartOwner) -> Result<PricedCart, Error> {
        match self.find(owner).await? {
            Some(cart) => self.priced(cart).await,
            None => self.empty(),
        }
    }
    /// Adds `quantity` units of `sku` (on top of any already in the cart).
    async fn add(&self, owner: &CartOwner, sku: &str, quantity: i64) -> Result<(PricedCart, Option<String>), Error> {
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
                let (cart, token) = fresh.ensure(tx)?;
                let held = store::line_quantity(tx, cart, &s)?;
                let wanted = held.unwrap_or(0) + quantity;
                if wanted > max {
                    return Err(Error::field("quantity", format!("a line holds at most {max} units")));
                }
                if wanted > available {
                    return Err(out_of_stock(&s, available, wanted));
                }
                if !store::add_to_line(tx, cart, &s, quantity, max)? {
                    return Err(Error::field("quantity", format!("a line holds at most {max} units")));
                }
                let state = store::cart_state(tx, cart)?;
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
    async fn set_quantity(&self, owner: &CartOwner, sku: &str, quantity: i64) -> Result<PricedCart, Error> {
        self.check_quantity(quantity)?;
        let cart = self.existing(owner).await?;
        self.check_purchasable(sku, quantity).await?;
        let s = sku.to_string();
        let state = self
            .inner
            .db
            .write(move |tx| {
                if !store::set_line_quantity(tx, cart, &s, quantity)? {
                    return Err(Error::not_found(format!("SKU {s} is not in the cart")));
                }
                store::cart_state(tx, cart)
            })
            .await?;
        self.priced_state(cart, state, Facts::Shown).await
    }
    async fn remove(&self, owner: &CartOwner, sku: &str) -> Result<PricedCart, Error> {
        let cart = self.existing(owner).await?;
        let s = sku.to_string();
        let state = self
            .inner
            .db
            .write(move |tx| {
                if !store::remove_line(tx, cart, &s)? {
                    return Err(Error::not_found(format!("SKU {s} is not in the cart")));
                }
                store::cart_state(tx, cart)
            })
            .await?;
        self.priced_state(cart, state, Facts::Shown).await
    }
    async fn set_shipping_method(&self, owner: &CartOwner, code: &str) -> Result<(PricedCart, Option<String>), Error> {
        if !self.inner.shop.shipping_methods.iter().any(|m| m.code == code) {
            let known: Vec<&str> = self.inner.shop.shipping_methods.iter().map(|m| m.code.as_str()).collect();
            return Err(Error::field("code", format!("unknown shipping method; one of {}", known.join(", "))));
        }
        let (cart, token) = self.ensure(owner).await?;
        let c = code.to_string();
        self.inner.db.write(move |tx| store::set_shipping_method(tx, cart, &c)).await?;
        Ok((self.priced(cart).await?, token))
    }
    /// Applies a coupon code to the cart, if it applies to the cart now.
    async fn set_coupon(&self, owner: &CartOwner, code: &str) -> Result<PricedCart, Error> {
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
    async fn remove_coupon(&self, owner: &CartOwner) -> Result<PricedCart, Error> {
        let cart = self.existing(owner).await?;
        self.write_coupon(cart, None).await?;
        self.priced(cart).await
    }
    /// Moves a guest cart's lines into the customer's cart (quantities add up,
    /// capped at the line maximum) and retires the guest cart. Idempotent: a
    /// merged cart is no longer active, so a second call finds nothing.
    async fn merge_guest(&self, token: &str, customer: Id) -> Result<(), Error> {
        let guest = CartOwner::Guest(Some(token.to_string()));
        let g = guest.clone();
        let Some(guest_cart) = self.inner.db.lookup(move |tx| store::find_active(tx, &g)).await? else {
            return Ok(());
        };
        let (target, _) = self.ensure(&CartOwner::Customer(customer)).await?;
        let max = self.inner.shop.max_line_quantity;
        self.inner.db.write(move |tx| store::merge(tx, guest_cart.id, target, max)).await
    }
    /// `customer`'s active cart priced as checkout prices it (empty when
    /// there is none): the cart from this domain's database, then the current
    /// catalog facts of its SKUs from the catalog, never a cache.
    async fn checkout(&self, customer: Id) -> Result<PricedCart, Error> {
        let found = self
            .inner
            .db
            .lookup(move |tx| {
                let Some(cart) = store::find_active(tx, &CartOwner::Customer(customer))? else { return Ok(None) };
                Ok(Some((cart.id, store::cart_state(tx, cart.id)?)))
            })
            .await?;
        let Some((cart, state)) = found else { return self.empty() };
        let skus: Vec<String> = state.lines.iter().map(|(s, _)| s.clone()).collect();
        let facts = self.inner.catalog.skus(skus).await?;
        self.priced_state(cart, state, Facts::Read(facts)).await
    }
    /// [`convert`](Self::convert) as a step of a process.
    fn convert_step(&self, cart: Id, order: Id) -> Step {
        let bus = self.inner.bus.clone();
        Step::local(
            &self.inner.db,
            move |tx| store::convert(tx, cart, order),
            move |converted| {
                if converted {
                    bus.wake()
                }
            },
        )
    }
}
