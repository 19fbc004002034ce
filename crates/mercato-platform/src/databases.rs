//! Where each domain's tables live (stage 6, business-level databases).
//!
//! Every domain reads and writes only its own tables, through the [`Db`] this
//! map gives it, and no transaction spans two domains: so a domain can be
//! moved to a database of its own by configuration. By default every domain
//! shares one database, and the map hands the same handle to all of them.
//!
//! The platform's own tables (node-id leases, generated settings, stored
//! Idempotency-Key answers) live in the [`PLATFORM`] database. The outbox and
//! inbox live in every database, beside the writes whose events they carry.

use crate::Db;
use std::sync::Arc;

/// The home of the platform's shared tables, in configuration and docs.
pub const PLATFORM: &str = "platform";

/// The domains, as named in `[database.domains.<name>]` and the docs. Their
/// order is part of the event-id encoding (see [`Databases::sources`]): only
/// append.
pub const DOMAINS: &[&str] =
    &["catalog", "inventory", "customers", "cart", "orders", "payments", "promotions", "flashsale", "webhooks"];

/// How many outboxes event ids can tell apart (see [`Databases::sources`]).
pub const SOURCES: i64 = 16;

/// The database of every domain. Cheap to clone.
#[derive(Clone)]
pub struct Databases {
    /// Index 0 is the platform's, then [`DOMAINS`] in order.
    homes: Arc<Vec<Db>>,
    /// Domains whose logical shards are spread over several databases
    /// (stage 7), with those databases in ring order; the first is also the
    /// domain's home.
    rings: Arc<Vec<(&'static str, Vec<Db>)>>,
}

impl Databases {
    /// Every domain in `db` (the default).
    pub fn single(db: Db) -> Databases {
        Databases { homes: Arc::new(vec![db; DOMAINS.len() + 1]), rings: Arc::default() }
    }

    /// Spreads `domain`'s logical shards over `dbs` (the first being the
    /// domain's home already). Each database has an outbox whose events
    /// must be told apart, and event ids have room for [`SOURCES`]: shard
    /// databases that are no domain's home may number up to `SOURCES` less
    /// the names (6).
    pub fn with_ring(mut self, domain: &'static str, dbs: Vec<Db>) -> Result<Databases, String> {
        assert!(dbs.first().is_some_and(|d| d.same(self.of(domain))), "a ring starts at the domain's home");
        let mut rings = (*self.rings).clone();
        rings.retain(|(d, _)| *d != domain);
        rings.push((domain, dbs));
        self.rings = Arc::new(rings);
        // Shard databases take the source numbers after the names'.
        let extra = self.sources().iter().filter(|(s, _)| *s >= self.homes.len() as i64).count() as i64;
        let room = SOURCES - self.homes.len() as i64;
        if extra > room {
            return Err(format!("{extra} shard databases beyond the domains' own; at most {room} are supported"));
        }
        Ok(self)
    }

    /// The databases `domain`'s logical shards are spread over, in ring
    /// order: its home alone unless it is sharded.
    pub fn ring(&self, domain: &str) -> Vec<Db> {
        match self.rings.iter().find(|(d, _)| *d == domain) {
            Some((_, dbs)) => dbs.clone(),
            None => vec![self.of(domain).clone()],
        }
    }

    /// Each domain in the database `open` gives for its name (and the
    /// platform's tables in `open(PLATFORM)`). `open` is called once per name;
    /// it should hand out one handle for names that share a database.
    pub fn open<E>(mut open: impl FnMut(&'static str) -> Result<Db, E>) -> Result<Databases, E> {
        let mut homes = Vec::with_capacity(DOMAINS.len() + 1);
        homes.push(open(PLATFORM)?);
        for d in DOMAINS {
            homes.push(open(d)?);
        }
        Ok(Databases { homes: Arc::new(homes), rings: Arc::default() })
    }

    fn index(domain: &str) -> usize {
        if domain == PLATFORM {
            return 0;
        }
        1 + DOMAINS
            .iter()
            .position(|d| *d == domain)
            .unwrap_or_else(|| panic!("'{domain}' is not a domain (a bug in the wiring)"))
    }

    /// The database holding `domain`'s tables.
    pub fn of(&self, domain: &str) -> &Db {
        &self.homes[Self::index(domain)]
    }

    /// The database holding the platform's shared tables.
    pub fn platform(&self) -> &Db {
        &self.homes[0]
    }

    /// Each distinct database once, with its source number: the index of the
    /// first name it serves (0 for the one holding the platform's tables),
    /// then for shard databases that are no domain's home, the numbers after
    /// the names, in ring order. Event ids are `outbox sequence * SOURCES +
    /// source`, unique across databases, since no two databases share a
    /// number.
    pub fn sources(&self) -> Vec<(i64, Db)> {
        let mut out: Vec<(i64, Db)> = Vec::new();
        for (i, db) in self.homes.iter().enumerate() {
            if !out.iter().any(|(_, seen)| seen.same(db)) {
                out.push((i as i64, db.clone()));
            }
        }
        let mut next = self.homes.len() as i64;
        for (_, dbs) in self.rings.iter() {
            for db in dbs {
                if !out.iter().any(|(_, seen)| seen.same(db)) {
                    out.push((next, db.clone()));
                    next += 1;
                }
            }
        }
        out
    }

    /// The domains (and the platform) whose tables are in `db`.
    pub fn served_by(&self, db: &Db) -> Vec<&'static str> {
        std::iter::once(PLATFORM)
            .chain(DOMAINS.iter().copied())
            .filter(|name| self.of(name).same(db) || self.ring(name).iter().any(|d| d.same(db)))
            .collect()
    }

    /// True when some domain has a database of its own.
    pub fn is_split(&self) -> bool {
        self.sources().len() > 1
    }
}
