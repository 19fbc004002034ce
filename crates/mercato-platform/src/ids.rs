//! Time-ordered 63-bit ids: 41 bits of milliseconds since 2025-01-01, 10 bits of
//! node, 12 bits of sequence. The node number is leased from the database so
//! that two instances never mint the same id, without any coordinator.

use crate::{Db, now_ms, params};
use mercato_core::{Error, Id};
use parking_lot::Mutex;
use std::sync::Arc;

const EPOCH_MS: i64 = 1_735_689_600_000; // 2025-01-01T00:00:00Z
const NODE_BITS: u32 = 10;
const SEQ_BITS: u32 = 12;
const MAX_NODE: i64 = (1 << NODE_BITS) - 1;
const MAX_SEQ: i64 = (1 << SEQ_BITS) - 1;
const LEASE_MS: i64 = 60_000;

/// When `id` was minted, in Unix milliseconds (read back from its top bits).
pub fn minted_at_ms(id: Id) -> i64 {
    (id.0 >> (NODE_BITS + SEQ_BITS)) + EPOCH_MS
}

/// The smallest id minted at or after `unix_ms`.
pub fn first_id_at(unix_ms: i64) -> Id {
    Id((unix_ms - EPOCH_MS).max(0) << (NODE_BITS + SEQ_BITS))
}

#[derive(Clone)]
pub struct IdGen {
    node: i64,
    state: Arc<Mutex<(i64, i64)>>, // (last ms, sequence)
}

impl IdGen {
    /// A generator for a fixed node, for tests and single-use tools.
    pub fn with_node(node: i64) -> IdGen {
        IdGen { node: node & MAX_NODE, state: Arc::new(Mutex::new((0, 0))) }
    }

    /// Leases a free node number in `db` and keeps the lease alive in the
    /// background for as long as the process runs.
    pub async fn lease(db: &Db) -> Result<IdGen, Error> {
        let holder = crate::random_token();
        let h = holder.clone();
        let node = db
            .write(move |tx| {
                let now = now_ms();
                let free = tx
                    .query_opt("SELECT node FROM id_nodes WHERE expires_at < $1 ORDER BY node LIMIT 1", params![now])?;
                let node = match free {
                    Some(row) => row.int(0)?,
                    None => {
                        let next =
                            tx.query_one("SELECT COALESCE(MAX(node) + 1, 0) FROM id_nodes", params![])?.int(0)?;
                        if next > MAX_NODE {
                            return Err(Error::unavailable("all 1024 id nodes are leased"));
                        }
                        next
                    }
                };
                tx.execute(
                    "INSERT INTO id_nodes (node, holder, expires_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (node) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at",
                    params![node, &h, now + LEASE_MS],
                )?;
                Ok(node)
            })
            .await?;
        let db = db.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis((LEASE_MS / 3) as u64)).await;
                let h = holder.clone();
                let renewed = db
                    .write(move |tx| {
                        Ok(tx.execute(
                            "UPDATE id_nodes SET expires_at = $1 WHERE node = $2 AND holder = $3",
                            params![now_ms() + LEASE_MS, node, &h],
                        )?)
                    })
                    .await;
                match renewed {
                    Ok(1) => {}
                    Ok(_) => tracing::error!(node, "id node lease was taken over; ids may collide"),
                    Err(e) => tracing::warn!(node, error = %e, "could not renew id node lease"),
                }
            }
        });
        Ok(IdGen::with_node(node))
    }

    pub fn node(&self) -> i64 {
        self.node
    }

    pub fn next(&self) -> Id {
        let mut state = self.state.lock();
        let mut now = (now_ms() - EPOCH_MS).max(state.0); // never step back with the clock
        if now == state.0 {
            if state.1 >= MAX_SEQ {
                // Sequence exhausted in this millisecond: borrow the next one.
                now += 1;
                state.1 = 0;
            } else {
                state.1 += 1;
            }
        } else {
            state.1 = 0;
        }
        state.0 = now;
        Id((now << (NODE_BITS + SEQ_BITS)) | (self.node << SEQ_BITS) | state.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_increasing_and_carry_the_node() {
        let g = IdGen::with_node(7);
        let mut last = 0;
        for _ in 0..20_000 {
            let id = g.next().0;
            assert!(id > last);
            assert_eq!((id >> SEQ_BITS) & MAX_NODE, 7);
            last = id;
        }
        let other = IdGen::with_node(8);
        assert_ne!(g.next(), other.next());
    }
}
