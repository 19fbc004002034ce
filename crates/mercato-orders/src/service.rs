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
use futures_util::future::try_join_all;
use mercato_contracts::orders::{Abandoned, AdminFilter, Begun, CancelledBy, Draft, Marked, Orders, Payable, Placed};
use mercato_core::{Currency, Error, ErrorCode, Id, Millis, Money};
use mercato_platform::events::EventBus;
use mercato_platform::ids::IdGen;
use mercato_platform::shards::{INCOMING, Records, SERVING, Serving, ShardRing, merge_newest};
use mercato_platform::steps::Step;
use mercato_platform::{Db, now_ms};
use parking_lot::{Mutex, RwLock};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Clone)]
pub struct OrdersService {
    inner: Arc<Inner>,
}

struct Inner {
    /// Where each logical shard's orders live: one database unless orders
    /// are sharded (stage 7).
    ring: ShardRing,
    ids: IdGen,
    bus: EventBus,
    cfg: OrdersSettings,
    currency: Currency,
    /// Per database: whether it holds orders from before order ids carried
    /// their customer's shard, which a customer's history must ask too.
    legacy: RwLock<Vec<bool>>,
}

impl OrdersService {
    /// Orders over `ring`'s databases; [`ShardRing::single`] for one.
    pub fn new(ring: ShardRing, ids: IdGen, bus: EventBus, cfg: OrdersSettings, currency: Currency) -> Self {
        let legacy = RwLock::new(vec![false; ring.databases().len()]);
        OrdersService { inner: Arc::new(Inner { ring, ids, bus, cfg, currency, legacy }) }
    }

    /// Reads the shard map from the databases again and routes by it, and
    /// finds which databases hold orders from before ids carried their
    /// customer's shard. Called at start (after [`check_shards`]).
    pub async fn remap(&self) -> Result<(), Error> {
        let ring = &self.inner.ring;
        ring.remap().await?;
        if ring.can_move() {
            let since = try_join_all(ring.databases().iter().map(|db| db.read(store::shards_since))).await?;
            let first = since.into_iter().flatten().min().map(mercato_platform::ids::first_id_at);
            let mut legacy = Vec::with_capacity(ring.databases().len());
            for db in ring.databases() {
                legacy.push(match first {
                    Some(id) => db.read(move |tx| store::any_order_before(tx, id)).await?,
                    None => false,
                });
            }
            *self.inner.legacy.write() = legacy;
        }
        Ok(())
    }

    /// Makes the monthly partitions missing ahead in every orders database
    /// (PostgreSQL; see `partitions`); their names.
    pub async fn ensure_partitions(&self) -> Result<Vec<String>, Error> {
        let mut made = Vec::new();
        for db in self.inner.ring.databases() {
            made.extend(crate::partitions::ensure_partitions(db).await?);
        }
        Ok(made)
    }

    /// The logical shard of order `id`.
    fn shard_of_order(&self, id: Id) -> u16 {
        self.inner.ring.shard_of_id(id)
    }

    /// The logical shard of `customer`'s orders and checkout records.
    fn shard_of_customer(&self, customer: Id) -> u16 {
        self.inner.ring.shard_of_customer(customer)
    }

    fn serving(&self) -> Serving {
        self.inner.ring.serving()
    }

    async fn load(&self, id: Id) -> Result<Order, Error> {
        self.inner
            .ring
            .lookup_on(self.shard_of_order(id), move |tx| load_order(tx, id))
            .await?
            .ok_or_else(|| Error::not_found("order not found"))
    }

    /// An order to show (not to decide on): a replica may serve it, once it
    /// has this client's own writes.
    async fn show(&self, id: Id) -> Result<Order, Error> {
        self.inner
            .ring
            .lookup_replica_on(self.shard_of_order(id), move |tx| load_order(tx, id))
            .await?
            .ok_or_else(|| Error::not_found("order not found"))
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
            .ring
            .write_on(self.shard_of_order(id), move |tx| {
                transition(tx, hid, id, action, required_from, &actor, note.as_deref())
            })
            .await?;
        self.inner.bus.wake();
        Ok(r)
    }
}

/// Where the databases of `ring` say each logical shard is, and places the
/// ring there. A shop's databases seen for the first time record the even
/// spread (or, for a database that already held orders, every shard: it was
/// a shop's one database). Refuses to start when the records disagree with
/// the configuration: a changed `orders.logical_shards` (ids carry their
/// shard), a shard no configured database serves (a database left out of
/// the list, or a move stopped half-way), or one served twice.
pub async fn check_shards(ring: &ShardRing) -> Result<(), Error> {
    let logical = i64::from(ring.logical());
    let mut map = Records::read(ring).await?;
    if map.records.iter().all(Vec::is_empty) {
        let mut with_orders = Vec::new();
        for (i, db) in ring.databases().iter().enumerate() {
            if db.read(store::any_order).await? {
                with_orders.push(i);
            }
        }
        let spread = ShardRing::spread(ring.databases().to_vec(), ring.logical());
        for (i, db) in ring.databases().iter().enumerate() {
            let shards: Vec<i64> = match &with_orders[..] {
                [] => spread.shards_in(db).into_iter().map(i64::from).collect(),
                [one] if *one == i => (0..logical).collect(),
                [_] => Vec::new(),
                _ => {
                    return Err(Error::validation(
                        "several orders databases hold orders but none records its logical shards: \
                         list only the database that held every order, then move shards with `mercato shards move`",
                    ));
                }
            };
            db.write(move |tx| store::record_shards(tx, &shards, logical)).await?;
        }
        map = Records::read(ring).await?;
    }
    for (i, records) in map.records.iter().enumerate() {
        if let Some((_, other, _)) = records.iter().find(|(_, l, _)| *l != logical) {
            return Err(Error::validation(format!(
                "orders.logical_shards is {logical}, but orders database {} was written with {other}: order ids \
                 carry their shard, so the number of logical shards cannot change",
                i + 1
            )));
        }
    }
    let twice: Vec<i64> = (0..logical).filter(|&s| map.in_state(s, SERVING).len() > 1).collect();
    if !twice.is_empty() {
        return Err(Error::validation(format!("logical shards {} are served by two orders databases", ranges(&twice))));
    }
    let homeless: Vec<i64> = (0..logical).filter(|&s| map.in_state(s, SERVING).is_empty()).collect();
    if !homeless.is_empty() {
        let moving: Vec<i64> = homeless.iter().copied().filter(|&s| !map.in_state(s, INCOMING).is_empty()).collect();
        return Err(Error::validation(if moving.is_empty() {
            format!(
                "no configured orders database serves logical shards {}: list every database that holds orders \
                 in database.domains.orders.shards",
                ranges(&homeless)
            )
        } else {
            format!(
                "logical shards {} were being moved when the move stopped: run the same `mercato shards move` \
                 again to finish it",
                ranges(&moving)
            )
        }));
    }
    ring.place(map.homes_or(ring.logical(), &ring.homes()));
    Ok(())
}

/// `0-127` style, for messages.
fn ranges(shards: &[i64]) -> String {
    match (shards.first(), shards.last()) {
        (Some(a), Some(b)) if b - a + 1 == shards.len() as i64 => format!("{a}-{b}"),
        (Some(_), Some(_)) => format!("{shards:?}"),
        _ => "none".into(),
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
        // A customer's orders are in one database (and, for orders placed
        // before ids carried their shard, in any that holds such orders);
        // the rest may be in all.
        let ring = &self.inner.ring;
        let filter_customer = filter.customer_id;
        let dbs: Vec<Db> = match filter.customer_id {
            Some(c) => {
                let home = ring.for_customer(c);
                let legacy = self.inner.legacy.read();
                let mut dbs = vec![home.clone()];
                dbs.extend(
                    ring.databases()
                        .iter()
                        .zip(legacy.iter())
                        .filter(|(d, l)| **l && !d.same(home))
                        .map(|(d, _)| d.clone()),
                );
                dbs
            }
            None => ring.databases().to_vec(),
        };
        let serving = self.serving();
        if let [db] = &dbs[..] {
            let page = move |tx: &mut dyn mercato_platform::Tx| {
                let ids = store::list_ids(tx, &filter, before, limit + 1, serving)?;
                let more = ids.len() > limit;
                let mut orders = Vec::with_capacity(limit);
                for id in ids.into_iter().take(limit) {
                    if let Some(o) = load_order(tx, id)? {
                        orders.push(o);
                    }
                }
                let next = if more { orders.last().map(|o| o.id.to_string()) } else { None };
                Ok((orders, next))
            };
            // A customer's page, from the database serving their shard now:
            // a database that no longer does would answer an empty page.
            return match filter_customer {
                Some(c) => {
                    let shard = self.shard_of_customer(c);
                    ring.on_shard(shard, |db| {
                        let body = ring.fenced_read(shard, page.clone());
                        async move { db.read_replica(body).await }
                    })
                    .await
                }
                None => db.read_replica(page).await,
            };
        }
        // Scatter-gather: each database's newest ids past the cursor, a
        // k-way merge, then the chosen orders loaded where they are. Ids are
        // unique and time-ordered across databases, so the last one shown
        // is a cursor that neither skips nor repeats while orders arrive.
        let lists = try_join_all(dbs.iter().enumerate().map(|(i, db)| {
            let filter = filter.clone();
            async move {
                let ids = db.read_replica(move |tx| store::list_ids(tx, &filter, before, limit + 1, serving)).await?;
                Ok::<_, Error>(ids.into_iter().map(|id| (id, i)).collect::<Vec<_>>())
            }
        }))
        .await?;
        let (page, more) = merge_newest(lists, limit, |(id, _)| *id);
        let loads = try_join_all(dbs.iter().enumerate().map(|(i, db)| {
            let ids: Vec<Id> = page.iter().filter(|(_, at)| *at == i).map(|(id, _)| *id).collect();
            async move {
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                db.read_replica(move |tx| {
                    let mut found = Vec::with_capacity(ids.len());
                    for &id in &ids {
                        found.extend(load_order(tx, id)?);
                    }
                    Ok(found)
                })
                .await
            }
        }))
        .await?;
        let mut orders: Vec<Order> = loads.into_iter().flatten().collect();
        orders.sort_by_key(|o| std::cmp::Reverse(o.id));
        let next = if more { page.last().map(|(id, _)| id.to_string()) } else { None };
        Ok((orders, next))
    }

    async fn fulfil(&self, id: Id) -> Result<Order, Error> {
        self.move_order(id, Action::Fulfil, None, "admin", None).await?;
        self.load(id).await
    }

    async fn complete(&self, id: Id) -> Result<Order, Error> {
        self.move_order(id, Action::Complete, None, "admin", None).await?;
        self.load(id).await
    }

    fn new_order_id(&self, customer: Id) -> Result<Id, Error> {
        self.inner.ids.next_in_shard(self.inner.ring.shard_of_customer(customer))
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
        let shard = self.shard_of_customer(customer);
        self.inner
            .ring
            .on_shard(shard, |db| {
                let (k, f) = (k.clone(), f.clone());
                let body = self
                    .inner
                    .ring
                    .fenced_read(shard, move |tx| store::earlier_checkout(tx, customer, &k, &f, now_ms()));
                async move {
                    Ok(match db.lookup(body).await? {
                        Some(store::Earlier::Done(body, order_id)) => {
                            // Read back rather than committed now: it may be a
                            // commit whose wait for the standby was cut short,
                            // which a failover would discard. Acknowledge only
                            // what would survive one.
                            db.confirm_durable().await?;
                            Some(Placed { body, order_id, replayed: true })
                        }
                        _ => None,
                    })
                }
            })
            .await
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
        self.inner.ring.step_on(
            self.shard_of_customer(customer),
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
        Ok(self.inner.ring.step_on(
            self.shard_of_customer(customer),
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
        Ok(self.inner.ring.step_on(
            self.shard_of_order(order.id),
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
        self.inner
            .ring
            .write_on(self.shard_of_customer(customer), move |tx| {
                store::renew_checkout(tx, customer, &k, order_id, lease)
            })
            .await
    }

    async fn fence_checkout(&self, customer: Id, key: &str, order_id: Id) -> Result<(), Error> {
        let k = key.to_string();
        self.inner
            .ring
            .write_on(self.shard_of_customer(customer), move |tx| store::fence_checkout(tx, customer, &k, order_id))
            .await
    }

    async fn forget_checkout(&self, customer: Id, key: &str, order_id: Id) -> Result<(), Error> {
        let k = key.to_string();
        self.inner
            .ring
            .write_on(self.shard_of_customer(customer), move |tx| {
                store::move_checkout(tx, customer, &k, order_id, "pending", None)
            })
            .await
    }

    async fn release_checkout(&self, customer: Id, key: &str, order_id: Id) -> Result<(), Error> {
        let k = key.to_string();
        self.inner
            .ring
            .write_on(self.shard_of_customer(customer), move |tx| {
                store::move_checkout(tx, customer, &k, order_id, "abandoned", Some("released"))
            })
            .await
    }

    async fn abandoned_checkouts(&self, now: Millis) -> Result<Vec<Abandoned>, Error> {
        // Fenced first, so a slow attempt cannot place its order while its
        // holds are given back; then every fenced record not yet released
        // (including those a failed pass left) is listed.
        let (mut all, serving) = (Vec::new(), self.serving());
        for db in self.inner.ring.databases() {
            let (expired, mut abandoned) = db
                .read(move |tx| {
                    Ok((store::any_checkout_expired(tx, now, serving)?, store::abandoned_checkouts(tx, serving)?))
                })
                .await?;
            if expired {
                db.write(move |tx| store::fence_expired_checkouts(tx, now, serving)).await?;
                abandoned = db.read(move |tx| store::abandoned_checkouts(tx, serving)).await?;
            }
            all.extend(abandoned);
        }
        Ok(all.into_iter().map(|(customer_id, key, order_id)| Abandoned { customer_id, key, order_id }).collect())
    }

    async fn purge_checkouts(&self) -> Result<u64, Error> {
        let cutoff = now_ms() - mercato_platform::idempotency::RETENTION_MS;
        let mut total = 0;
        for db in self.inner.ring.databases() {
            total += purge_checkouts(db, cutoff).await?;
        }
        Ok(total)
    }

    async fn payable(&self, id: Id) -> Result<Option<Payable>, Error> {
        // Only what paying needs: the items and history of a full load are
        // two more queries on every payment.
        self.inner.ring.lookup_on(self.shard_of_order(id), move |tx| store::payable(tx, id)).await
    }

    fn lease_payment_step(&self, id: Id, leased: Arc<AtomicBool>) -> Step {
        let lease = self.inner.cfg.checkout_lease_ms as i64;
        self.inner.ring.step_on(
            self.shard_of_order(id),
            move |tx| store::lease_payment(tx, id, lease),
            move |_| leased.store(true, Ordering::Release),
        )
    }

    async fn release_payment_lease(&self, id: Id) -> Result<(), Error> {
        self.inner.ring.write_on(self.shard_of_order(id), move |tx| store::release_payment_lease_in(tx, id)).await
    }

    async fn renew_payment_lease(&self, id: Id) -> Result<(), Error> {
        let lease = self.inner.cfg.checkout_lease_ms as i64;
        self.inner.ring.write_on(self.shard_of_order(id), move |tx| store::renew_payment_lease(tx, id, lease)).await
    }

    fn mark_paid_step(&self, id: Id, marked: Arc<Marked>) -> Result<Step, Error> {
        let (hid, bus, seen) = (self.inner.ids.next()?, self.inner.bus.clone(), marked.clone());
        Ok(self.inner.ring.step_on(
            self.shard_of_order(id),
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
        self.inner.ring.lookup_on(self.shard_of_order(id), move |tx| store::status(tx, id)).await
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
        self.inner.ring.write_on(self.shard_of_order(id), move |tx| store::add_refunded(tx, hid, id, amount)).await?;
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
        let (mut all, serving) = (Vec::new(), self.serving());
        for db in self.inner.ring.databases() {
            all.extend(db.read(move |tx| store::overdue(tx, now, serving)).await?);
        }
        Ok(all)
    }

    async fn flash_sale_of(&self, id: Id) -> Result<Option<Id>, Error> {
        self.inner.ring.lookup_on(self.shard_of_order(id), move |tx| store::flash_sale_of(tx, id)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mercato_platform::ids::shard_of;
    use mercato_platform::shards::shard_of_customer;

    #[tokio::test]
    async fn an_order_id_carries_its_customers_logical_shard() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open_sqlite(&dir.path().join("o.db"), "orders", Default::default()).unwrap();
        let cfg = OrdersSettings { logical_shards: 4, ..OrdersSettings::default() };
        let ring = ShardRing::single(db, cfg.logical_shards);
        let orders = OrdersService::new(ring, IdGen::with_node(2), EventBus::new(), cfg, Currency::USD);
        let mut seen = [false; 4];
        for c in 1..200 {
            let customer = Id(c * 7_919);
            let id = orders.new_order_id(customer).unwrap();
            let shard = shard_of(id);
            assert_eq!(shard, shard_of_customer(customer, 4));
            seen[usize::from(shard)] = true;
            // another of the same customer's orders lands in the same shard
            assert_eq!(shard_of(orders.new_order_id(customer).unwrap()), shard);
        }
        assert!(seen.iter().all(|s| *s), "customers spread over every logical shard");
    }
}
