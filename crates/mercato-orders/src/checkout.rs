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
//! `pending` record: after its lease, the sweeper moves it to `abandoned` and
//! compensates, and a retry with the key takes it over and compensates first.
//! Since 4 commits only from `pending`, an order is never placed on a
//! compensated checkout; abandoning a reservation that was never made leaves
//! a tombstone, so a late reserve of an abandoned checkout holds nothing.

use crate::model::{Address, Order, OrderItem};
use crate::service::OrdersService;
use crate::store::{self, insert_order};
use mercato_contracts::inventory::Line;
use mercato_contracts::orders::Placed;
use mercato_core::{Error, ErrorCode, Id};
use mercato_platform::steps::{self, Step};
use mercato_platform::{Db, now_ms};
use parking_lot::Mutex;
use std::sync::Arc;

/// The commit point's place in the steps of [`OrdersService::place`].
const PLACE: usize = 3;

/// Finished checkouts forgotten per write job by [`purge_checkouts`].
const PURGE_BATCH: u64 = 1_000;

/// Forgets finished checkouts that ended before `cutoff` (ms): past it, a
/// request with the same key is a new checkout, as with every other
/// Idempotency-Key. Each record keeps its whole answer (about 1.4 KB an
/// order) and nothing else removes them. Deletes in batches, so the writer is
/// never held for long; returns how many went.
pub async fn purge_checkouts(db: &Db, cutoff: i64) -> Result<u64, Error> {
    let mut total = 0;
    loop {
        // A finished checkout's lease_until is the time it finished, and
        // (state, lease_until) is indexed.
        let n = db.write(move |tx| store::purge_done_checkouts(tx, cutoff, PURGE_BATCH)).await?;
        total += n;
        if n < PURGE_BATCH {
            return Ok(total);
        }
    }
}

impl OrdersService {
    /// Turns the customer's cart into an order, at most once per key (see
    /// the module's documentation for the steps).
    pub async fn place(
        &self,
        customer: Id,
        address: Address,
        shipping_method: Option<String>,
        key: Option<String>,
        fingerprint: String,
    ) -> Result<Placed, Error> {
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
        if let Some(replay) = self.replay(customer, &key, &fingerprint).await? {
            return Ok(replay);
        }
        let cart_service = &self.inner().cart;
        if let Some(code) = &shipping_method {
            cart_service.set_shipping_method(&mercato_contracts::cart::CartOwner::Customer(customer), code).await?;
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
            if let Some(replay) = self.replay(customer, &key, &fingerprint).await? {
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
        let items: Vec<OrderItem> = cart.items.clone();
        let order_id = self.inner().ids.next()?;
        let order = self.new_order(
            order_id,
            customer,
            items,
            &cart.totals,
            cart.discounts.clone(),
            Some(address),
            None,
            cart.shipping_method.clone(),
        );
        let body = serde_json::to_string(&order).map_err(|e| Error::internal(e.to_string()))?;
        let history_id = self.inner().ids.next()?;

        // An attempt a crash left half-way is given up first (once).
        for fresh in [true, false] {
            let begun = Arc::new(Mutex::new(None));
            let steps = vec![
                self.begin_step(customer, &key, &fingerprint, order_id, begun.clone()),
                self.inner().inventory.reserve_step(order_id, &lines),
                self.inner().promotions.redeem_step(order_id, customer, &cart.discounts),
                self.place_step(customer, &key, order.clone(), history_id, cart_id, body.clone()),
                cart_service.convert_step(cart_id, order_id),
            ];
            let Err(halted) = steps::run(steps).await else { break };
            let begun = begun.lock().take();
            match begun {
                Some(store::Begun::Replay(body, order_id)) => return Ok(Placed { body, order_id, replayed: true }),
                Some(store::Begun::Abandoned(old)) if fresh => {
                    // Fenced, so it can no longer place its order; then what
                    // it held comes back before the key is used again.
                    let k = key.clone();
                    self.inner().db.write(move |tx| store::fence_checkout(tx, customer, &k, old)).await?;
                    self.release_abandoned(customer, &key, old).await?;
                }
                Some(store::Begun::Abandoned(_)) => return Err(store::in_progress(1)),
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
        Ok(Placed { body, order_id, replayed: false })
    }

    /// Step 4, the commit point: the record moves from `pending` to `done`
    /// with the answer in the transaction that writes the order; refused when
    /// the sweeper gave the attempt up (its lease ran out) and is giving back
    /// what it held.
    fn place_step(&self, customer: Id, key: &str, order: Order, history_id: Id, cart_id: Id, body: String) -> Step {
        let (key, bus) = (key.to_string(), self.inner().bus.clone());
        Step::local(
            &self.inner().db,
            move |tx| {
                if !store::finish_checkout(tx, customer, &key, order.id, &body)? {
                    return Err(store::in_progress(1));
                }
                insert_order(tx, &order, history_id, Some(cart_id), Some(&key))
            },
            move |_| bus.wake(),
        )
    }

    /// Step 1: the key's record, `pending` under `order_id`. What an earlier
    /// request with the key left (an answer to replay, an attempt to give up)
    /// goes in `begun` and stops the steps.
    fn begin_step(
        &self,
        customer: Id,
        key: &str,
        fingerprint: &str,
        order_id: Id,
        begun: Arc<Mutex<Option<store::Begun>>>,
    ) -> Step {
        let lease = self.inner().cfg.checkout_lease_ms as i64;
        let (k, f) = (key.to_string(), fingerprint.to_string());
        Step::local(
            &self.inner().db,
            move |tx| {
                let outcome = store::begin_checkout(tx, customer, &k, &f, order_id, lease)?;
                let mine = matches!(outcome, store::Begun::Mine);
                *begun.lock() = Some(outcome);
                if mine { Ok(()) } else { Err(store::in_progress(1)) }
            },
            |_| {},
        )
    }

    /// Gives back what abandoned attempt `order_id` held, then marks its
    /// record `released` (free for the key's next request). The attempt may
    /// still be running, so its stock and coupon uses are abandoned for good:
    /// a reserve or redeem it makes later holds or counts nothing. Idempotent.
    async fn release_abandoned(&self, customer: Id, key: &str, order_id: Id) -> Result<(), Error> {
        self.inner().inventory.abandon(order_id).await?;
        self.inner().promotions.abandon(order_id).await?;
        self.move_record(customer, key, order_id, "abandoned", Some("released")).await
    }

    /// Compensates this request's own checkout, refused at a step: gives back
    /// what it held and drops its record, so the key may be used again.
    /// Failures are left to the sweeper, which gives back a `pending`
    /// record's holds after its lease.
    async fn abort(&self, customer: Id, key: &str, order_id: Id) {
        let undone = async {
            self.inner().inventory.release(order_id).await?;
            self.inner().promotions.release(order_id).await?;
            self.move_record(customer, key, order_id, "pending", None).await
        };
        if let Err(e) = undone.await {
            tracing::warn!(order_id = %order_id, error = %e, "checkout compensation left to the sweeper");
        }
    }

    /// Moves the key's record of `order_id` from state `from` to `to` (None:
    /// forgets it), once its holds are back.
    async fn move_record(
        &self,
        customer: Id,
        key: &str,
        order_id: Id,
        from: &'static str,
        to: Option<&'static str>,
    ) -> Result<(), Error> {
        let k = key.to_string();
        self.inner().db.write(move |tx| store::move_checkout(tx, customer, &k, order_id, from, to)).await
    }

    /// The stored answer of a finished checkout with this key, if there is one.
    async fn replay(&self, customer: Id, key: &str, fingerprint: &str) -> Result<Option<Placed>, Error> {
        let (k, f) = (key.to_string(), fingerprint.to_string());
        Ok(match self.inner().db.lookup(move |tx| store::earlier_checkout(tx, customer, &k, &f, now_ms())).await? {
            Some(store::Earlier::Done(body, order_id)) => Some(Placed { body, order_id, replayed: true }),
            _ => None,
        })
    }

    /// Forgets finished checkouts older than the replay window of
    /// Idempotency-Keys (24 hours).
    pub async fn purge_checkouts(&self) -> Result<u64, Error> {
        purge_checkouts(&self.inner().db, now_ms() - mercato_platform::idempotency::RETENTION_MS).await
    }

    /// Gives up checkouts whose lease ran out while `pending` (a crash
    /// between their first and last step) and gives back what they held.
    pub(crate) async fn sweep_checkouts(&self, now: i64) -> Result<usize, Error> {
        // Fenced first, so a slow attempt cannot place its order while its
        // holds are given back; then every fenced record not yet released
        // (including those a failed pass left) is released. A pass with
        // nothing to do is one read.
        let (expired, mut abandoned) = self
            .inner()
            .db
            .read(move |tx| Ok((store::any_checkout_expired(tx, now)?, store::abandoned_checkouts(tx)?)))
            .await?;
        if expired {
            self.inner().db.write(move |tx| store::fence_expired_checkouts(tx, now)).await?;
            abandoned = self.inner().db.read(store::abandoned_checkouts).await?;
        }
        let n = abandoned.len();
        for (customer, key, order_id) in abandoned {
            self.release_abandoned(customer, &key, order_id).await?;
        }
        Ok(n)
    }
}
