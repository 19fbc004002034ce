//! The orders service: its handle on the domain's database, and the
//! domain's surface ([`Orders`]). It reaches no other domain: the processes
//! that span domains (checkout, paying, cancelling, refunding) are
//! `mercato-checkout`'s, and call this surface for the orders' part. Every
//! statement on the domain's tables is in `store`.
//!
//! A checkout's record under its Idempotency-Key goes `pending` (the first
//! step, with a lease) → `done` (the commit point, in the transaction that
//! writes the order). An attempt that stops half-way stays `pending` until
//! its lease runs out; then it is fenced to `abandoned` (it can no longer
//! place its order), its holds are given back, and it is marked `released`,
//! which frees the key. A refused attempt, compensated at once, forgets its
//! record.

use crate::model::{Action, HistoryEntry, Order, OrderStatus, next};
use crate::settings::OrdersSettings;
use crate::store::{self, insert_order, load_order, transition};
use mercato_contracts::orders::{Abandoned, AdminFilter, Begun, CancelledBy, Draft, Marked, Orders, Payable, Placed};
use mercato_core::{Currency, Error, ErrorCode, Id, Millis, Money};
use mercato_platform::events::EventBus;
use mercato_platform::ids::IdGen;
use mercato_platform::steps::Step;
use mercato_platform::{Db, now_ms};
use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Clone)]
pub struct OrdersService {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    ids: IdGen,
    bus: EventBus,
    cfg: OrdersSettings,
    currency: Currency,
}

impl OrdersService {
    pub fn new(db: Db, ids: IdGen, bus: EventBus, cfg: OrdersSettings, currency: Currency) -> Self {
        OrdersService { inner: Arc::new(Inner { db, ids, bus, cfg, currency }) }
    }

    async fn load(&self, id: Id) -> Result<Order, Error> {
        self.inner.db.lookup(move |tx| load_order(tx, id)).await?.ok_or_else(|| Error::not_found("order not found"))
    }

    /// An order to show (not to decide on): a replica may serve it, once it
    /// has this client's own writes.
    async fn show(&self, id: Id) -> Result<Order, Error> {
        let db = &self.inner.db;
        db.lookup_replica(move |tx| load_order(tx, id)).await?.ok_or_else(|| Error::not_found("order not found"))
    }

    /// Moves order `id` by `action` (see `store::transition`).
    async fn move_order(
        &self,
        id: Id,
        action: Action,
        required_from: Option<OrderStatus>,
        actor: &str,
        note: Option<String>,
    ) -> Result<(OrderStatus, OrderStatus), Error> {
        let hid = self.inner.ids.next()?;
        let actor = actor.to_string();
        let r = self
            .inner
            .db
            .write(move |tx| transition(tx, hid, id, action, required_from, &actor, note.as_deref()))
            .await?;
        self.inner.bus.wake();
        Ok(r)
    }
}

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

#[async_trait::async_trait]
impl Orders for OrdersService {
    async fn get(&self, id: Id) -> Result<Order, Error> {
        self.show(id).await
    }

    async fn get_for(&self, customer: Id, id: Id) -> Result<Order, Error> {
        let order = self.show(id).await?;
        if order.customer_id != customer {
            return Err(Error::not_found("order not found"));
        }
        Ok(order)
    }

    async fn list(
        &self,
        filter: AdminFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<(Vec<Order>, Option<String>), Error> {
        if limit == 0 || limit > 100 {
            return Err(Error::field("limit", "must be between 1 and 100"));
        }
        let before = match cursor {
            Some(c) => {
                Some(c.parse::<i64>().map_err(|_| Error::field("cursor", "is not a cursor this listing returned"))?)
            }
            None => None,
        };
        self.inner
            .db
            .read_replica(move |tx| {
                let ids = store::list_ids(tx, &filter, before, limit + 1)?;
                let more = ids.len() > limit;
                let mut orders = Vec::with_capacity(limit);
                for id in ids.into_iter().take(limit) {
                    if let Some(o) = load_order(tx, id)? {
                        orders.push(o);
                    }
                }
                let next = if more { orders.last().map(|o| o.id.to_string()) } else { None };
                Ok((orders, next))
            })
            .await
    }

    async fn fulfil(&self, id: Id) -> Result<Order, Error> {
        self.move_order(id, Action::Fulfil, None, "admin", None).await?;
        self.load(id).await
    }

    async fn complete(&self, id: Id) -> Result<Order, Error> {
        self.move_order(id, Action::Complete, None, "admin", None).await?;
        self.load(id).await
    }

    fn draft(&self, id: Id, d: Draft) -> Order {
        let now = now_ms();
        Order {
            id,
            customer_id: d.customer_id,
            status: OrderStatus::PendingPayment,
            currency: self.inner.currency,
            items: d.items,
            subtotal: d.totals.subtotal,
            discount: d.totals.discount,
            discounts: d.discounts,
            shipping: d.totals.shipping,
            tax: d.totals.tax,
            total: d.totals.total,
            refunded: Money::zero(self.inner.currency),
            shipping_address: d.shipping_address,
            flash_sale_id: d.flash_sale_id,
            shipping_method: d.shipping_method,
            payment_due_at: Some(now + (self.inner.cfg.payment_timeout_secs as i64) * 1000),
            created_at: now,
            updated_at: now,
            history: vec![HistoryEntry {
                from: None,
                to: OrderStatus::PendingPayment,
                actor: "customer".into(),
                note: d.flash_sale_id.map(|_| "flash sale".into()),
                at: now,
            }],
        }
    }

    async fn replay(&self, customer: Id, key: &str, fingerprint: &str) -> Result<Option<Placed>, Error> {
        let (k, f) = (key.to_string(), fingerprint.to_string());
        Ok(match self.inner.db.lookup(move |tx| store::earlier_checkout(tx, customer, &k, &f, now_ms())).await? {
            Some(store::Earlier::Done(body, order_id)) => {
                // Read back rather than committed now: it may be a commit
                // whose wait for the standby was cut short, which a failover
                // would discard. Acknowledge only what would survive one.
                self.inner.db.confirm_durable().await?;
                Some(Placed { body, order_id, replayed: true })
            }
            _ => None,
        })
    }

    fn begin_step(
        &self,
        customer: Id,
        key: &str,
        fingerprint: &str,
        order_id: Id,
        begun: Arc<Mutex<Option<Begun>>>,
    ) -> Step {
        let lease = self.inner.cfg.checkout_lease_ms as i64;
        let (k, f) = (key.to_string(), fingerprint.to_string());
        Step::local(
            &self.inner.db,
            move |tx| {
                let outcome = store::begin_checkout(tx, customer, &k, &f, order_id, lease)?;
                let mine = outcome == Begun::Mine;
                *begun.lock() = Some(outcome);
                if mine { Ok(()) } else { Err(store::in_progress(1)) }
            },
            |_| {},
        )
    }

    fn place_step(&self, customer: Id, key: &str, order: Order, cart_id: Id, body: String) -> Result<Step, Error> {
        let (key, bus, history_id) = (key.to_string(), self.inner.bus.clone(), self.inner.ids.next()?);
        Ok(Step::local(
            &self.inner.db,
            move |tx| {
                // Refused when the sweeper gave the attempt up (its lease ran
                // out) and is giving back what it held.
                if !store::finish_checkout(tx, customer, &key, order.id, &body)? {
                    return Err(store::in_progress(1));
                }
                insert_order(tx, &order, history_id, Some(cart_id), Some(&key))
            },
            move |_| bus.wake(),
        ))
    }

    fn place_flash_step(&self, order: Order) -> Result<Step, Error> {
        let (bus, history_id) = (self.inner.bus.clone(), self.inner.ids.next()?);
        Ok(Step::local(
            &self.inner.db,
            move |tx| {
                if !store::exists(tx, order.id)? {
                    insert_order(tx, &order, history_id, None, None)?;
                }
                Ok(())
            },
            move |_| bus.wake(),
        ))
    }

    fn claim_lease(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.inner.cfg.checkout_lease_ms)
    }

    async fn renew_checkout(&self, customer: Id, key: &str, order_id: Id) -> Result<(), Error> {
        let (k, lease) = (key.to_string(), self.inner.cfg.checkout_lease_ms as i64);
        self.inner.db.write(move |tx| store::renew_checkout(tx, customer, &k, order_id, lease)).await
    }

    async fn fence_checkout(&self, customer: Id, key: &str, order_id: Id) -> Result<(), Error> {
        let k = key.to_string();
        self.inner.db.write(move |tx| store::fence_checkout(tx, customer, &k, order_id)).await
    }

    async fn forget_checkout(&self, customer: Id, key: &str, order_id: Id) -> Result<(), Error> {
        let k = key.to_string();
        self.inner.db.write(move |tx| store::move_checkout(tx, customer, &k, order_id, "pending", None)).await
    }

    async fn release_checkout(&self, customer: Id, key: &str, order_id: Id) -> Result<(), Error> {
        let k = key.to_string();
        self.inner
            .db
            .write(move |tx| store::move_checkout(tx, customer, &k, order_id, "abandoned", Some("released")))
            .await
    }

    async fn abandoned_checkouts(&self, now: Millis) -> Result<Vec<Abandoned>, Error> {
        // Fenced first, so a slow attempt cannot place its order while its
        // holds are given back; then every fenced record not yet released
        // (including those a failed pass left) is listed.
        let db = &self.inner.db;
        let (expired, mut abandoned) =
            db.read(move |tx| Ok((store::any_checkout_expired(tx, now)?, store::abandoned_checkouts(tx)?))).await?;
        if expired {
            db.write(move |tx| store::fence_expired_checkouts(tx, now)).await?;
            abandoned = db.read(store::abandoned_checkouts).await?;
        }
        Ok(abandoned.into_iter().map(|(customer_id, key, order_id)| Abandoned { customer_id, key, order_id }).collect())
    }

    async fn purge_checkouts(&self) -> Result<u64, Error> {
        purge_checkouts(&self.inner.db, now_ms() - mercato_platform::idempotency::RETENTION_MS).await
    }

    async fn payable(&self, id: Id) -> Result<Option<Payable>, Error> {
        // Only what paying needs: the items and history of a full load are
        // two more queries on every payment.
        self.inner.db.lookup(move |tx| store::payable(tx, id)).await
    }

    fn lease_payment_step(&self, id: Id, leased: Arc<AtomicBool>) -> Step {
        let lease = self.inner.cfg.checkout_lease_ms as i64;
        Step::local(
            &self.inner.db,
            move |tx| store::lease_payment(tx, id, lease),
            move |_| leased.store(true, Ordering::Release),
        )
    }

    async fn release_payment_lease(&self, id: Id) -> Result<(), Error> {
        self.inner.db.write(move |tx| store::release_payment_lease_in(tx, id)).await
    }

    async fn renew_payment_lease(&self, id: Id) -> Result<(), Error> {
        let lease = self.inner.cfg.checkout_lease_ms as i64;
        self.inner.db.write(move |tx| store::renew_payment_lease(tx, id, lease)).await
    }

    fn mark_paid_step(&self, id: Id, marked: Arc<Marked>) -> Result<Step, Error> {
        let (hid, bus, seen) = (self.inner.ids.next()?, self.inner.bus.clone(), marked.clone());
        Ok(Step::local(
            &self.inner.db,
            move |tx| {
                let outcome = store::paid_in(tx, hid, id)?;
                *seen.seen.lock() = outcome;
                Ok(outcome)
            },
            move |outcome| {
                *marked.settled.lock() = Some(outcome);
                bus.wake()
            },
        ))
    }

    async fn status(&self, id: Id) -> Result<Option<OrderStatus>, Error> {
        self.inner.db.lookup(move |tx| store::status(tx, id)).await
    }

    async fn refundable(&self, id: Id, amount: Option<i64>) -> Result<i64, Error> {
        let order = self.load(id).await?;
        let remaining = order.total.amount - order.refunded.amount;
        let amount = amount.unwrap_or(remaining);
        if amount <= 0 || amount > remaining {
            return Err(Error::field(
                "amount",
                format!("must be between 1 and {remaining} (the amount not yet refunded)"),
            ));
        }
        next(order.status, Action::Refund { full: amount == remaining })?;
        Ok(amount)
    }

    async fn record_refund(&self, id: Id, amount: i64) -> Result<(), Error> {
        let hid = self.inner.ids.next()?;
        self.inner.db.write(move |tx| store::add_refunded(tx, hid, id, amount)).await?;
        self.inner.bus.wake();
        Ok(())
    }

    async fn cancel(&self, id: Id, by: CancelledBy) -> Result<OrderStatus, Error> {
        let (required, actor, note) = match by {
            CancelledBy::Customer => (Some(OrderStatus::PendingPayment), "customer", None),
            CancelledBy::Admin { reason } => (None, "admin", reason),
        };
        Ok(self.move_order(id, Action::Cancel, required, actor, note).await?.0)
    }

    async fn expire(&self, id: Id) -> Result<bool, Error> {
        match self.move_order(id, Action::Expire, None, "system", Some("payment window closed".into())).await {
            Ok(_) => Ok(true),
            Err(e) if e.code == ErrorCode::IllegalTransition => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn overdue(&self, now: Millis) -> Result<Vec<Id>, Error> {
        self.inner.db.read(move |tx| store::overdue(tx, now)).await
    }

    async fn flash_sale_of(&self, id: Id) -> Result<Option<Id>, Error> {
        self.inner.db.lookup(move |tx| store::flash_sale_of(tx, id)).await
    }
}
