//! The flash-sale purchase: the flash-sale domain's counter decides who may
//! buy (losers cost no database write), then a winner's purchase is
//! written domain by domain, each step idempotent on the order id minted
//! before the counter was asked:
//!
//! 1. **record** (flash sale): a `pending` purchase record under the
//!    Idempotency-Key, within the customer's limit.
//! 2. **split** (inventory): one unit moves from the sale's allocation into
//!    the order's own reservation; refused when the allocation is empty, so
//!    a wrong counter never oversells.
//! 3. **place** (orders): the `pending_payment` order at the sale price.
//! 4. **activate** (flash sale): the record is `active`.
//!
//! A refusal at 2 or 3 gives the unit back to the allocation, releases the
//! record and returns the counter's grant. A crash leaves a `pending`
//! record: the sweeper activates it if its order exists, and undoes it
//! otherwise. An unpaid order cancelled later returns its unit to the sale.
//! Creating a sale is a process too: its units are reserved from inventory
//! first, so a sale never sells stock that is not there.

use crate::CheckoutService;
use mercato_contracts::catalog::ProductStatus;
use mercato_contracts::flashsale::{FlashSale, NewFlashSale, Purchase, PurchaseState, sold_out};
use mercato_contracts::inventory::Line;
use mercato_contracts::orders::{Address, Draft, Order, OrderItem};
use mercato_core::{Error, ErrorCode, Id};
use mercato_platform::now_ms;

impl CheckoutService {
    pub(crate) async fn create_sale(&self, new: NewFlashSale) -> Result<FlashSale, Error> {
        let flash = &self.inner.flash;
        flash.check(&new)?;
        match self.inner.catalog.skus(vec![new.sku.clone()]).await?.get(&new.sku) {
            Some(i) if i.status == ProductStatus::Published => {}
            _ => return Err(Error::not_found(format!("SKU {} not found", new.sku))),
        }
        let id = self.inner.ids.next()?;
        self.inner.inventory.reserve(id, &[Line { sku: new.sku.clone(), quantity: new.quantity }]).await?;
        match flash.open(id, new).await {
            Ok(sale) => Ok(sale),
            Err(e) => {
                self.inner.inventory.release(id).await?;
                Err(e)
            }
        }
    }

    pub(crate) async fn purchase(
        &self,
        sale_id: Id,
        customer: Id,
        key: &str,
        address: Option<Address>,
    ) -> Result<(Order, bool), Error> {
        if key.is_empty() || key.len() > 255 {
            return Err(Error::validation("Idempotency-Key (1 to 255 characters) is required"));
        }
        let flash = &self.inner.flash;
        if let Some((order_id, state)) = flash.earlier(sale_id, customer, key).await? {
            return match state {
                PurchaseState::Pending => {
                    Err(Error::new(ErrorCode::IdempotencyInProgress, "this purchase is still being processed")
                        .with_retry_after(1))
                }
                _ => Ok((self.inner.orders.get(order_id).await?, true)),
            };
        }
        // Minted before asking the counter: grants are keyed by order, so a
        // release (or a reconciliation) gives back exactly this unit.
        let order_id = self.inner.orders.new_order_id(customer)?;
        let admission = flash.admit(sale_id, order_id, customer).await?;
        let purchase = Purchase { order_id, sale_id, customer_id: customer };
        match self.complete(&admission.sale, purchase, key, address).await {
            Ok(order) => Ok((order, false)),
            Err(e) => {
                if admission.counted {
                    flash.give_back(purchase).await;
                }
                Err(e)
            }
        }
    }

    async fn complete(
        &self,
        sale: &FlashSale,
        purchase: Purchase,
        key: &str,
        address: Option<Address>,
    ) -> Result<Order, Error> {
        let (flash, inventory) = (&self.inner.flash, &self.inner.inventory);
        let order_id = purchase.order_id;
        flash.record(purchase, sale.per_customer_limit, key).await?;
        let undo = || async {
            inventory.merge_back(order_id, sale.id).await?;
            flash.release(order_id, PurchaseState::Pending).await.map(drop)
        };
        if let Err(e) = inventory.split(sale.id, order_id, &sale.sku, 1).await {
            undo().await?;
            return Err(if e.code == ErrorCode::OutOfStock { sold_out() } else { e });
        }
        let order = match self.flash_order(sale, purchase, address).await {
            Ok(order) => order,
            Err(e) => {
                undo().await?;
                return Err(e);
            }
        };
        flash.activate(order_id).await?;
        Ok(order)
    }

    /// Writes the purchase's order: its one unit at the sale price, with the
    /// shop's default shipping. Idempotent on the order id.
    async fn flash_order(&self, sale: &FlashSale, p: Purchase, address: Option<Address>) -> Result<Order, Error> {
        let address = address.map(Address::validate).transpose()?;
        let info = self.inner.catalog.skus(vec![sale.sku.clone()]).await?;
        let info = info.get(&sale.sku).ok_or_else(|| Error::not_found(format!("SKU {} not found", sale.sku)))?;
        let item = OrderItem {
            sku: sale.sku.clone(),
            product_id: info.product_id,
            name: info.product_name.clone(),
            options: info.options.clone(),
            quantity: 1,
            unit_price: sale.price,
            line_total: sale.price,
        };
        let cart = &self.inner.cart;
        let totals = cart.totals_for(std::slice::from_ref(&item))?;
        let shipping_method = cart.shipping_methods()[0].code.clone();
        let order = self.inner.orders.draft(
            p.order_id,
            Draft {
                customer_id: p.customer_id,
                items: vec![item],
                totals,
                discounts: vec![],
                shipping_address: address,
                shipping_method,
                flash_sale_id: Some(p.sale_id),
            },
        );
        // The id was minted for this purchase alone: an order already there
        // is this one, written by an earlier try of the same call.
        self.inner.orders.place_flash_step(order.clone())?.run().await?;
        Ok(order)
    }

    /// An unpaid flash order was cancelled or expired: its unit goes back to
    /// the sale (or to general stock if the sale is over). Idempotent; the
    /// reaction to `order.cancelled`.
    pub async fn on_order_cancelled(&self, order: Id) -> Result<(), Error> {
        if let Some(p) = self.inner.flash.release(order, PurchaseState::Active).await? {
            self.inner.inventory.merge_back(order, p.sale_id).await?;
            self.inner.flash.give_back(p).await;
        }
        Ok(())
    }

    /// Finishes or undoes purchases a crash left pending, and returns the
    /// unsold allocation of ended sales to general stock.
    pub(crate) async fn sweep_flash(&self) -> Result<(), Error> {
        let flash = &self.inner.flash;
        for p in flash.stale_pending().await? {
            if self.inner.orders.get(p.order_id).await.is_ok() {
                flash.activate(p.order_id).await?;
            } else {
                self.inner.inventory.merge_back(p.order_id, p.sale_id).await?;
                if let Some(p) = flash.release(p.order_id, PurchaseState::Pending).await? {
                    flash.give_back(p).await;
                }
            }
        }
        for sale in flash.close_ended(now_ms()).await? {
            self.inner.inventory.release(sale).await?;
        }
        Ok(())
    }
}
