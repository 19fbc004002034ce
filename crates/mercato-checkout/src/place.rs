//! Checkout: a process across domains, run as a saga keyed by the order id.
//!
//! No transaction spans two domains, so each domain may live in a database of
//! its own. The steps, each idempotent on the order id:
//!
//! 1. **begin** (orders): the Idempotency-Key's record, state `pending`, with
//!    the order id and a lease. It names what a crash left behind.
//! 2. **reserve** stock (inventory), all lines or none.
//! 3. **redeem** promotion uses (promotions), all or none.
//! 4. **place** (orders), the commit point: the record moves from `pending`
//!    to `done` with the answer, conditionally, in the transaction that writes
//!    the order, its items, history and `order.placed`.
//! 5. **retire** the cart (cart); the `order.placed` subscriber repeats it
//!    after a crash.
//!
//! The steps are listed once and run by [`steps::run`]: when orders,
//! inventory, promotions and cart share a database they commit as one
//! transaction (a refusal rolls all of them back, and the compensation below
//! finds nothing to give back); otherwise each commits on its own.
//!
//! A refusal at 2 or 3 compensates (stock and uses released, the record
//! dropped, so the key can be retried). A crash between 1 and 4 leaves a
//! `pending` record: after its lease, the sweeper has the orders domain
//! fence it (`abandoned`) and compensates, and a retry with the key takes it
//! over and compensates first. Since 4 commits only from `pending`, an order
//! is never placed on a compensated checkout; abandoning a reservation that
//! was never made leaves a tombstone, so a late reserve of an abandoned
//! checkout holds nothing.

use crate::CheckoutService;
use mercato_contracts::cart::CartOwner;
use mercato_contracts::inventory::Line;
use mercato_contracts::orders::{Address, Begun, Draft, Placed};
use mercato_core::{Error, ErrorCode, Id};
use mercato_platform::{KeepAlive, steps};
use parking_lot::Mutex;
use std::sync::Arc;

/// The commit point's place in the steps of a checkout.
const PLACE: usize = 3;

fn in_progress() -> Error {
    Error::new(ErrorCode::IdempotencyInProgress, "a request with this Idempotency-Key is in progress")
        .with_retry_after(1)
}

impl CheckoutService {
    /// Turns the customer's cart into an order, at most once per key.
    pub(crate) async fn place_order(
        &self,
        customer: Id,
        address: Address,
        shipping_method: Option<String>,
        key: Option<String>,
        fingerprint: String,
    ) -> Result<Placed, Error> {
        let (orders, cart_service) = (&self.inner.orders, &self.inner.cart);
        let address = address.validate()?;
        let key = match key {
            Some(k) if k.is_empty() || k.len() > 255 => {
                return Err(Error::validation("Idempotency-Key must be 1 to 255 characters"));
            }
            Some(k) => k,
            None => format!("auto-{}", mercato_platform::random_token()),
        };
        // A repeated request is answered from its record before the cart is
        // looked at (the first one emptied it).
        if let Some(replay) = orders.replay(customer, &key, &fingerprint).await? {
            return Ok(replay);
        }
        if let Some(code) = &shipping_method {
            cart_service.set_shipping_method(&CartOwner::Customer(customer), code).await?;
        }
        let cart = cart_service.checkout(customer).await?;
        if !cart.unavailable.is_empty() {
            return Err(Error::conflict(format!(
                "no longer available: {}; remove them from the cart",
                cart.unavailable.join(", ")
            ))
            .with_details(serde_json::json!({ "unavailable": cart.unavailable })));
        }
        let Some(cart_id) = cart.id.filter(|_| !cart.items.is_empty()) else {
            // A concurrent request with this key may have placed the order
            // (and emptied the cart) since the first look.
            if let Some(replay) = orders.replay(customer, &key, &fingerprint).await? {
                return Ok(replay);
            }
            return Err(Error::new(ErrorCode::EmptyCart, "the cart is empty"));
        };
        // A coupon that stopped applying since it was added is an error, not a
        // silent price change: the customer confirms the new total first.
        if let Some(problem) = cart.coupon_problem.clone() {
            return Err(problem);
        }
        let lines: Vec<Line> = cart.items.iter().map(|l| Line { sku: l.sku.clone(), quantity: l.quantity }).collect();
        let order_id = orders.new_order_id(customer)?;
        let order = orders.draft(
            order_id,
            Draft {
                customer_id: customer,
                items: cart.items.clone(),
                totals: cart.totals,
                discounts: cart.discounts.clone(),
                shipping_address: Some(address),
                shipping_method: cart.shipping_method.clone(),
                flash_sale_id: None,
            },
        );
        let body = serde_json::to_string(&order).map_err(|e| Error::internal(e.to_string()))?;

        // The key's record is leased briefly and renewed while this runs:
        // should this process die, the sweeper gives the attempt up (and a
        // retry may take the key over) within one lease.
        let renewal = {
            let (orders, key) = (orders.clone(), key.clone());
            KeepAlive::start(orders.claim_lease() / 3, "checkout record", move || {
                let (orders, key) = (orders.clone(), key.clone());
                async move { orders.renew_checkout(customer, &key, order_id).await }
            })
        };
        let outcome: Result<Option<Placed>, Error> = async {
            // An attempt a crash left half-way is given up first (once).
            for fresh in [true, false] {
                let begun = Arc::new(Mutex::new(None));
                let steps = vec![
                    orders.begin_step(customer, &key, &fingerprint, order_id, begun.clone()),
                    self.inner.inventory.reserve_step(order_id, &lines),
                    self.inner.promotions.redeem_step(order_id, customer, &cart.discounts),
                    orders.place_step(customer, &key, order.clone(), cart_id, body.clone())?,
                    cart_service.convert_step(cart_id, order_id),
                ];
                let Err(halted) = steps::run(steps).await else { break };
                let begun = begun.lock().take();
                match begun {
                    Some(Begun::Replay(body, order_id)) => {
                        // Through `replay`, which confirms the record durable.
                        let replay = orders.replay(customer, &key, &fingerprint).await?;
                        return Ok(Some(replay.unwrap_or(Placed { body, order_id, replayed: true })));
                    }
                    Some(Begun::Abandoned(old)) if fresh => {
                        // Fenced, so it can no longer place its order; then what
                        // it held comes back before the key is used again.
                        orders.fence_checkout(customer, &key, old).await?;
                        self.release_abandoned(customer, &key, old).await?;
                    }
                    Some(Begun::Abandoned(_)) => return Err(in_progress()),
                    _ if halted.committed > PLACE => {
                        // The order.placed subscriber retires the cart.
                        tracing::warn!(order_id = %order_id, error = %halted.error, "retiring the cart left to the order.placed subscriber");
                        break;
                    }
                    // The outcome is unknown: a retry with the key finds the
                    // record, done, or pending until the sweeper gives it back.
                    _ if halted.may_have_committed(PLACE) => return Err(halted.error),
                    _ => {
                        self.abort(customer, &key, order_id).await;
                        return Err(halted.error);
                    }
                }
            }
            Ok(None)
        }
        .await;
        renewal.stop().await;
        if let Some(replay) = outcome? {
            return Ok(replay);
        }
        Ok(Placed { body, order_id, replayed: false })
    }

    /// Gives back what abandoned attempt `order_id` held, then has its
    /// record marked released (free for the key's next request). The attempt
    /// may still be running, so its stock and coupon uses are abandoned for
    /// good: a reserve or redeem it makes later holds or counts nothing.
    /// Idempotent.
    pub(crate) async fn release_abandoned(&self, customer: Id, key: &str, order_id: Id) -> Result<(), Error> {
        self.inner.inventory.abandon(order_id).await?;
        self.inner.promotions.abandon(order_id).await?;
        self.inner.orders.release_checkout(customer, key, order_id).await
    }

    /// Compensates this request's own checkout, refused at a step: gives back
    /// what it held and drops its record, so the key may be used again.
    /// Failures are left to the sweeper, which gives back a `pending`
    /// record's holds after its lease.
    async fn abort(&self, customer: Id, key: &str, order_id: Id) {
        let undone = async {
            self.inner.inventory.release(order_id).await?;
            self.inner.promotions.release(order_id).await?;
            self.inner.orders.forget_checkout(customer, key, order_id).await
        };
        if let Err(e) = undone.await {
            tracing::warn!(order_id = %order_id, error = %e, "checkout compensation left to the sweeper");
        }
    }
}
