use crate::card;
use crate::provider::{ChargeOutcome, Provider};
use crate::store;
use mercato_contracts::payments::{PayOutcome, Payment, Payments, Refund};
use mercato_core::{Error, ErrorCode, Id, Money};
use mercato_platform::events::EventBus;
use mercato_platform::ids::IdGen;
use mercato_platform::now_ms;
use mercato_platform::shards::ShardRing;
use mercato_platform::steps::{self, Step};
use parking_lot::Mutex;
use std::sync::Arc;

#[derive(Clone)]
pub struct PaymentsService {
    inner: Arc<Inner>,
}

struct Inner {
    /// Where each order's payment lives: with the order, in its logical
    /// shard's database (one database unless orders are sharded).
    ring: ShardRing,
    ids: IdGen,
    bus: EventBus,
    provider: Arc<dyn Provider>,
}

impl PaymentsService {
    /// Payments over `ring`: the orders' ring when orders are sharded (a
    /// payment lives with its order), else [`ShardRing::single`].
    pub fn new(ring: ShardRing, ids: IdGen, bus: EventBus, provider: Arc<dyn Provider>) -> Self {
        PaymentsService { inner: Arc::new(Inner { ring, ids, bus, provider }) }
    }

    /// The logical shard of order `order`'s payment, and of every id minted
    /// for it (intent, attempt, refund), so that a provider's report on an
    /// attempt finds its payment by the attempt's id alone.
    fn shard(&self, id: Id) -> u16 {
        self.inner.ring.shard_of_id(id)
    }
}

#[async_trait::async_trait]
impl Payments for PaymentsService {
    async fn for_order(&self, order: Id) -> Result<Option<Payment>, Error> {
        Ok(self
            .inner
            .ring
            .lookup_on(self.shard(order), move |tx| store::intent_by_order(tx, order))
            .await?
            .map(|(p, _)| p))
    }
    async fn by_request(&self, order: Id, key: &str) -> Result<Option<Payment>, Error> {
        let key = key.to_string();
        self.inner.ring.lookup_on(self.shard(order), move |tx| store::by_request(tx, order, &key)).await
    }
    async fn pay(
        &self,
        order: Id,
        amount: Money,
        card_number: &str,
        request_key: Option<&str>,
        before: Vec<Step>,
        then: Vec<Step>,
    ) -> Result<PayOutcome, Error> {
        let card = card::validate(card_number)?;
        let shard = self.shard(order);
        let intent_id = self.inner.ids.next_in_shard(shard)?;
        let attempt = self.inner.ids.next_in_shard(shard)?;
        let last4 = card[card.len() - 4..].to_string();
        let request_key = request_key.map(str::to_string);
        // The caller's steps before the charge commit with the attempt's
        // start where they share its database: a refusal of either starts
        // nothing.
        let started = Arc::new(Mutex::new(None));
        let out = started.clone();
        let mut first = before;
        first.push(self.inner.ring.step_on(
            shard,
            move |tx| store::start_attempt(tx, intent_id, order, amount, attempt, &last4, request_key.as_deref()),
            move |p| *out.lock() = Some(p),
        ));
        steps::run(first).await.map_err(|h| h.error)?;
        let started = started.lock().take().ok_or_else(|| Error::internal("attempt start not reported"))?;

        let outcome = match self.inner.provider.charge(attempt, amount, &card).await {
            Ok(o) => o,
            // The intent stays `processing`; reconciliation asks the provider later.
            Err(e) => return Err(Error::unavailable(format!("payment provider unavailable: {}", e.message))),
        };
        let declined = match &outcome {
            ChargeOutcome::Pending { .. } => return Ok(PayOutcome::Processing(started)),
            ChargeOutcome::Succeeded { .. } => None,
            ChargeOutcome::Declined { code, message } => Some((code.clone(), message.clone())),
        };
        let settled = Arc::new(Mutex::new(None));
        let (out, bus) = (settled.clone(), self.inner.bus.clone());
        let mut steps = vec![self.inner.ring.step_on(
            shard,
            move |tx| store::settle(tx, attempt, &outcome),
            move |p| {
                *out.lock() = Some(p);
                bus.wake()
            },
        )];
        if declined.is_none() {
            steps.extend(then);
        }
        if let Err(halted) = steps::run(steps).await {
            if halted.committed == 0 {
                return Err(halted.error);
            }
            tracing::warn!(order = %order, error = %halted.error, "what follows the payment is left to the payment.succeeded subscriber");
        }
        let newly = settled.lock().take().flatten();
        let payment = match newly {
            Some(p) => p,
            None => self.for_order(order).await?.ok_or_else(|| Error::internal("intent vanished"))?,
        };
        match declined {
            None => Ok(PayOutcome::Succeeded(payment)),
            Some((code, message)) => Err(Error::new(ErrorCode::PaymentDeclined, message)
                .with_details(serde_json::json!({ "decline_code": code, "payment_id": payment.id }))),
        }
    }
    /// Verifies and applies a provider webhook. Returns the payment when this
    /// delivery is the one that made it succeed; duplicates return None.
    async fn handle_webhook(&self, signature: &str, body: &[u8]) -> Result<Option<Payment>, Error> {
        let event = self.inner.provider.parse_webhook(signature, body)?;
        let shard = self.shard(event.attempt_id);
        let result = self
            .inner
            .ring
            .write_on(shard, move |tx| store::apply_webhook(tx, &event.event_id, event.attempt_id, &event.outcome))
            .await?;
        self.inner.bus.wake();
        Ok(result)
    }
    /// Settles intents left `processing` by a crash or a provider outage by
    /// asking the provider what happened. Returns payments that succeeded.
    async fn reconcile(&self, older_than_ms: i64) -> Result<Vec<Payment>, Error> {
        let cutoff = now_ms() - older_than_ms;
        let serving = self.inner.ring.serving();
        let mut stuck = Vec::new();
        for db in self.inner.ring.databases() {
            stuck.extend(db.read(move |tx| store::stuck_attempts(tx, cutoff, serving)).await?);
        }
        let mut succeeded = Vec::new();
        for attempt in stuck {
            let outcome = match self.inner.provider.retrieve(attempt).await? {
                Some(ChargeOutcome::Pending { .. }) => continue,
                Some(o) => o,
                // The provider never saw the attempt: the customer may try again.
                None => ChargeOutcome::Declined {
                    code: "not_attempted".into(),
                    message: "the payment attempt did not reach the provider".into(),
                },
            };
            let settled = self.inner.ring.write_on(self.shard(attempt), move |tx| store::settle(tx, attempt, &outcome));
            if let Some(p) = settled.await? {
                succeeded.push(p);
            }
        }
        if !succeeded.is_empty() {
            self.inner.bus.wake();
        }
        Ok(succeeded)
    }
    /// Refunds `amount` (None: all that remains) of `order`'s payment.
    async fn refund(&self, order: Id, amount: Option<i64>, reason: &str) -> Result<Refund, Error> {
        let shard = self.shard(order);
        let refund_id = self.inner.ids.next_in_shard(shard)?;
        let reason = reason.to_string();
        let r = reason.clone();
        let ring = &self.inner.ring;
        let (attempt, money) =
            ring.write_on(shard, move |tx| store::begin_refund(tx, refund_id, order, amount, &r)).await?;
        let provider_result = self.inner.provider.refund(attempt, refund_id, money).await;
        let ok = provider_result.is_ok();
        ring.write_on(shard, move |tx| store::finish_refund(tx, refund_id, order, money, ok)).await?;
        provider_result?;
        self.inner.bus.wake();
        Ok(Refund { id: refund_id, order_id: order, amount: money, reason, created_at: now_ms() })
    }
}
