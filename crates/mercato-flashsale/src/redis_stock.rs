//! The flash-sale counter in Redis, shared by every instance.
//!
//! Per sale, three keys with one hash tag (one cluster slot, so a script may
//! touch all of them):
//!
//! - `mercato:flash:{<sale>}:sale`: the window, `quantity`, `limit`, a
//!   checksum `sum` over the granted orders, and the fence (`epoch`, a token
//!   minted per load, and `rver`, bumped by every release and
//!   reconciliation);
//! - `mercato:flash:{<sale>}:grants`: order id -> `<customer>:<granted_at>`,
//!   one field per unit taken. `granted_at` is 0 once the database is known
//!   to hold the purchase record;
//! - `mercato:flash:{<sale>}:holds`: customer id -> units held.
//!
//! Units taken are `HLEN grants`, so remaining is `quantity - HLEN`. Keying
//! grants by order (not a bare counter) makes a release exact: giving back an
//! order the counter does not hold (already given back, or never loaded
//! because a reload read the database after the release) changes nothing.
//!
//! Redis is a cache of the database here. A missing `sale` key means "not
//! loaded, or Redis lost its data": the caller reloads from the database (the
//! load script only initialises an absent sale, so racing loaders cannot
//! overwrite grants made in between) and asks again. Every key expires an
//! hour after the sale ends.

use crate::stock::{Acquire, FlashStock, Holding, IN_FLIGHT_GRACE_MS, Probe, Reconciled, SaleWindow};
use mercato_core::{Error, Id, Millis};
use mercato_platform::redis::{Redis, RedisUnavailable};
use redis::Script;
use std::sync::Arc;

/// Keys outlive the sale by this much, so late releases and reads still find
/// them; after that Redis forgets the sale by itself.
const KEEP_AFTER_END_MS: i64 = 3_600_000;

/// Shared by every script: the checksum residue of a decimal order id. Ids
/// are 63-bit, beyond the 2^53 a Lua number holds exactly, so the residue is
/// taken digit by digit (each step stays below 10^10).
const PRELUDE: &str = r#"
local P = 1000000007
local function residue(s)
  local r = 0
  for i = 1, #s do r = (r * 10 + string.byte(s, i) - 48) % P end
  return r
end
local function rebuild(grants, holds, sale)
  redis.call('DEL', holds)
  local sum, held = 0, {}
  local g = redis.call('HGETALL', grants)
  for i = 1, #g, 2 do
    sum = (sum + residue(g[i])) % P
    local c = string.match(g[i + 1], '^(%d+):')
    held[c] = (held[c] or 0) + 1
  end
  for c, n in pairs(held) do redis.call('HSET', holds, c, n) end
  redis.call('HSET', sale, 'sum', string.format('%d', sum))
end
"#;

/// KEYS: sale, grants, holds. ARGV: starts, ends, limit, quantity,
/// expire_at, epoch, then order/customer pairs of the live purchases.
const LOAD: &str = r#"
if redis.call('HEXISTS', KEYS[1], 'quantity') == 1 then return 0 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
for i = 7, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1] .. ':0') end
redis.call('HSET', KEYS[1], 'starts', ARGV[1], 'ends', ARGV[2], 'limit', ARGV[3], 'quantity', ARGV[4],
  'expire_at', ARGV[5], 'epoch', ARGV[6], 'rver', 0, 'sum', 0)
rebuild(KEYS[2], KEYS[3], KEYS[1])
for k = 1, 3 do redis.call('PEXPIREAT', KEYS[k], ARGV[5]) end
return 1
"#;

/// KEYS: sale, grants, holds. ARGV: order, customer, now.
/// Returns 0 unknown, 1 granted, 2 not started, 3 ended, 4 sold out, 5 limit.
const ACQUIRE: &str = r#"
local m = redis.call('HMGET', KEYS[1], 'starts', 'ends', 'quantity', 'limit', 'expire_at', 'sum')
if not m[3] then return 0 end
local now = tonumber(ARGV[3])
if now < tonumber(m[1]) then return 2 end
if now >= tonumber(m[2]) then return 3 end
-- The same order asking twice (a resent command) keeps its one unit.
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return 1 end
if redis.call('HLEN', KEYS[2]) >= tonumber(m[3]) then return 4 end
if tonumber(redis.call('HGET', KEYS[3], ARGV[2]) or '0') >= tonumber(m[4]) then return 5 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2] .. ':' .. ARGV[3])
redis.call('HINCRBY', KEYS[3], ARGV[2], 1)
redis.call('HSET', KEYS[1], 'sum', string.format('%d', (tonumber(m[6]) + residue(ARGV[1])) % P))
redis.call('PEXPIREAT', KEYS[2], m[5])
redis.call('PEXPIREAT', KEYS[3], m[5])
return 1
"#;

/// KEYS: sale, grants, holds. ARGV: order. Returns 1 if a unit came back.
const RELEASE: &str = r#"
if redis.call('HEXISTS', KEYS[1], 'quantity') == 0 then return 0 end
-- Even a release that finds nothing moves the fence: it may be for a
-- purchase a reconciliation's snapshot still shows as live.
redis.call('HINCRBY', KEYS[1], 'rver', 1)
local v = redis.call('HGET', KEYS[2], ARGV[1])
if not v then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
local c = string.match(v, '^(%d+):')
if redis.call('HINCRBY', KEYS[3], c, -1) <= 0 then redis.call('HDEL', KEYS[3], c) end
local sum = tonumber(redis.call('HGET', KEYS[1], 'sum'))
redis.call('HSET', KEYS[1], 'sum', string.format('%d', (sum - residue(ARGV[1]) + P) % P))
return 1
"#;

/// KEYS: sale, grants. Returns nil, or {quantity, taken, sum, fence}.
const PROBE: &str = r#"
local m = redis.call('HMGET', KEYS[1], 'quantity', 'sum', 'epoch', 'rver')
if not m[1] then return false end
return {tonumber(m[1]), redis.call('HLEN', KEYS[2]), tonumber(m[2]), m[3] .. ':' .. m[4]}
"#;

/// KEYS: sale, grants, holds. ARGV: fence, now, grace, the number of live
/// purchases, their order/customer pairs, then orders whose records are
/// released. Returns -1 if the fence moved (or the sale is not loaded), else
/// the number of grants added or dropped.
///
/// The snapshot is read from the database between the probe and this script,
/// while purchases and releases go on. Why that is safe:
///
/// - A grant the snapshot lacks is kept while younger than the grace: it is
///   a purchase between its grant and its record (granted before or after
///   the snapshot). Dropping it would free that unit for a second buyer.
/// - A grant whose record is released, or that an earlier snapshot showed
///   live (`granted_at` 0) and this one does not, is dropped at once: a
///   record only ever leaves `pending`/`active` for `released`, so its
///   release never reached Redis. That is the drift this repairs.
/// - A grant with no record at all is dropped once older than the grace:
///   its request died, or was refused by the database after a reply from
///   Redis went missing.
/// - A live purchase the counter lacks is added (Redis lost it, or the
///   database decided it while Redis was unreachable). The snapshot can only
///   be stale towards "still live" through a release after it, and every
///   release and every reconciliation moves the fence, so such a snapshot
///   aborts instead of resurrecting a released unit or undoing a newer
///   reconciliation. (A release that fails to reach Redis moves nothing;
///   the next reconciliation drops the unit it re-added.)
///
/// Even a wrong answer here cannot oversell: a unit is sold only through the
/// conditional decrement of the sale's inventory allocation, and within the
/// customer's row in `flash_holds`. A counter that grants too much costs a
/// database round trip that ends in "sold out"; one that grants too little
/// holds a unit back until the next reconciliation.
const RECONCILE: &str = r#"
local m = redis.call('HMGET', KEYS[1], 'quantity', 'epoch', 'rver', 'expire_at')
if not m[1] then return -1 end
if m[2] .. ':' .. m[3] ~= ARGV[1] then return -1 end
local now, grace = tonumber(ARGV[2]), tonumber(ARGV[3])
local live, released = {}, {}
local last = 4 + 2 * tonumber(ARGV[4])
for i = 5, last, 2 do live[ARGV[i]] = ARGV[i + 1] end
for i = last + 1, #ARGV do released[ARGV[i]] = true end
local changed = 0
local g = redis.call('HGETALL', KEYS[2])
for i = 1, #g, 2 do
  local order, at = g[i], tonumber(string.match(g[i + 1], ':(%d+)$'))
  if live[order] then
    if at ~= 0 then redis.call('HSET', KEYS[2], order, live[order] .. ':0') end
    live[order] = nil
  elseif at == 0 or released[order] or now - at >= grace then
    redis.call('HDEL', KEYS[2], order)
    changed = changed + 1
  end
end
for order, customer in pairs(live) do
  redis.call('HSET', KEYS[2], order, customer .. ':0')
  changed = changed + 1
end
rebuild(KEYS[2], KEYS[3], KEYS[1])
redis.call('HINCRBY', KEYS[1], 'rver', 1)
redis.call('PEXPIREAT', KEYS[2], m[4])
redis.call('PEXPIREAT', KEYS[3], m[4])
return changed
"#;

struct Scripts {
    load: Script,
    acquire: Script,
    release: Script,
    probe: Script,
    reconcile: Script,
}

/// The [`FlashStock`] port on a shared Redis: one script per purchase
/// attempt decides window, remaining units and the customer's count at once.
#[derive(Clone)]
pub struct RedisStock {
    redis: Redis,
    scripts: Arc<Scripts>,
}

struct Keys {
    sale: String,
    grants: String,
    holds: String,
}

fn keys(sale: Id) -> Keys {
    Keys {
        sale: format!("mercato:flash:{{{sale}}}:sale"),
        grants: format!("mercato:flash:{{{sale}}}:grants"),
        holds: format!("mercato:flash:{{{sale}}}:holds"),
    }
}

fn unavailable(_: RedisUnavailable) -> Error {
    Error::unavailable("the flash-sale counter is unavailable; try again").with_retry_after(1)
}

fn script(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}\n{body}"))
}

impl RedisStock {
    pub fn new(redis: Redis) -> Self {
        RedisStock {
            redis,
            scripts: Arc::new(Scripts {
                load: script(LOAD),
                acquire: script(ACQUIRE),
                release: script(RELEASE),
                probe: script(PROBE),
                reconcile: script(RECONCILE),
            }),
        }
    }

    /// The key names of one sale, for operators and tests.
    pub fn key_names(sale: Id) -> [String; 3] {
        let k = keys(sale);
        [k.sale, k.grants, k.holds]
    }
}

#[async_trait::async_trait]
impl FlashStock for RedisStock {
    async fn load(&self, sale: Id, window: SaleWindow, quantity: i64, live: &[Holding]) -> Result<(), Error> {
        let k = keys(sale);
        let mut inv = self.scripts.load.prepare_invoke();
        inv.key(&k.sale).key(&k.grants).key(&k.holds);
        inv.arg(window.starts_at)
            .arg(window.ends_at)
            .arg(window.per_customer_limit)
            .arg(quantity)
            .arg(window.ends_at + KEEP_AFTER_END_MS)
            .arg(mercato_platform::random_token());
        for h in live {
            inv.arg(h.order.0).arg(h.customer.0);
        }
        let loaded: i64 = self
            .redis
            .try_run("flash.load", |mut c| async move { inv.invoke_async(&mut c).await })
            .await
            .map_err(unavailable)?;
        if loaded == 1 {
            tracing::info!(sale = %sale, taken = live.len(), "flash sale loaded into redis");
        }
        Ok(())
    }

    async fn try_acquire(&self, sale: Id, order: Id, customer: Id, now: Millis) -> Result<Acquire, Error> {
        let k = keys(sale);
        let mut inv = self.scripts.acquire.prepare_invoke();
        inv.key(&k.sale).key(&k.grants).key(&k.holds).arg(order.0).arg(customer.0).arg(now);
        let code: i64 = self
            .redis
            .try_run("flash.acquire", |mut c| async move { inv.invoke_async(&mut c).await })
            .await
            .map_err(unavailable)?;
        Ok(match code {
            1 => Acquire::Granted,
            2 => Acquire::NotStarted,
            3 => Acquire::Ended,
            4 => Acquire::SoldOut,
            5 => Acquire::LimitReached,
            _ => Acquire::Unknown,
        })
    }

    async fn release(&self, sale: Id, order: Id, _customer: Id) -> Result<(), Error> {
        let k = keys(sale);
        let mut inv = self.scripts.release.prepare_invoke();
        inv.key(&k.sale).key(&k.grants).key(&k.holds).arg(order.0);
        self.redis
            .try_run("flash.release", |mut c| async move { inv.invoke_async::<i64>(&mut c).await })
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn remaining(&self, sale: Id) -> Result<Option<i64>, Error> {
        Ok(self.probe_raw(sale).await?.map(|(quantity, taken, _, _)| (quantity - taken).max(0)))
    }

    async fn probe(&self, sale: Id) -> Result<Option<Probe>, Error> {
        Ok(self.probe_raw(sale).await?.map(|(_, taken, checksum, fence)| Probe { taken, checksum, fence }))
    }

    async fn reconcile(
        &self,
        sale: Id,
        seen: &Probe,
        live: &[Holding],
        released: &[Id],
        now: Millis,
    ) -> Result<Reconciled, Error> {
        let k = keys(sale);
        let mut inv = self.scripts.reconcile.prepare_invoke();
        inv.key(&k.sale).key(&k.grants).key(&k.holds);
        inv.arg(&seen.fence).arg(now).arg(IN_FLIGHT_GRACE_MS).arg(live.len());
        for h in live {
            inv.arg(h.order.0).arg(h.customer.0);
        }
        for o in released {
            inv.arg(o.0);
        }
        let changed: i64 = self
            .redis
            .try_run("flash.reconcile", |mut c| async move { inv.invoke_async(&mut c).await })
            .await
            .map_err(unavailable)?;
        Ok(if changed < 0 { Reconciled::Skipped } else { Reconciled::Repaired(changed) })
    }
}

impl RedisStock {
    async fn probe_raw(&self, sale: Id) -> Result<Option<(i64, i64, i64, String)>, Error> {
        let k = keys(sale);
        let mut inv = self.scripts.probe.prepare_invoke();
        inv.key(&k.sale).key(&k.grants);
        self.redis
            .try_run("flash.probe", |mut c| async move { inv.invoke_async(&mut c).await })
            .await
            .map_err(unavailable)
    }
}
