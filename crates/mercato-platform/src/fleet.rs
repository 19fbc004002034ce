//! Background jobs that must run on one instance of the fleet at a time (the
//! order sweeper, purges, the test provider's webhooks): each takes a lease
//! in a database every instance shares before it runs, renews it with every
//! run, and hands it on when its instance drains. A second instance finds the
//! lease held and waits; if the holder dies, the lease lapses and one of the
//! others takes the job over. The job itself must still write conditionally:
//! a lease can lapse in the middle of a run (a long pause, a partition).

use crate::{Db, now_ms, release_lease, try_lease};
use mercato_core::Error;
use std::time::Duration;

pub struct FleetJob {
    db: Db,
    name: &'static str,
    holder: String,
    ttl: Duration,
    /// Until when, by this instance's clock, it may run the job: short of
    /// what the lease says by a third, so it stops before another may start.
    held_until: i64,
    /// When to write the lease again: a third of its length after the last
    /// try, so frequent jobs do not write it on every run.
    next_try: i64,
}

impl FleetJob {
    /// `ttl` must exceed the time between two runs, or the lease lapses
    /// between them and the job wanders from instance to instance.
    pub fn new(db: Db, name: &'static str, holder: &str, ttl: Duration) -> FleetJob {
        FleetJob { db, name, holder: holder.to_string(), ttl, held_until: 0, next_try: 0 }
    }

    /// Takes or renews the lease; true if this instance is to run the job now.
    pub async fn acquire(&mut self) -> Result<bool, Error> {
        let ttl = self.ttl.as_millis() as i64;
        let now = now_ms();
        if now < self.next_try {
            return Ok(now < self.held_until);
        }
        // A holder renews at a third of the lease; the others look once a
        // second at most, which bounds the takeover after a hand-on.
        self.next_try = now + (ttl / 3).min(1_000);
        let held = match try_lease(&self.db, self.name, &self.holder, ttl).await {
            Ok(held) => held,
            Err(e) => {
                // Unsure whether the renewal landed: act as if it did not.
                self.held_until = 0;
                return Err(e);
            }
        };
        if held != (self.held_until > now) {
            tracing::info!(job = self.name, held, "fleet job lease changed hands");
        }
        self.held_until = if held { now + ttl * 2 / 3 } else { 0 };
        if held {
            self.next_try = now + ttl / 3;
        }
        metrics::gauge!("fleet_job_held", "job" => self.name).set(if held { 1.0 } else { 0.0 });
        Ok(held)
    }

    /// Runs `job` if this instance holds the lease, counting the runs.
    pub async fn run<F, Fut>(&mut self, job: F) -> Result<bool, Error>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        if !self.acquire().await? {
            return Ok(false);
        }
        job().await;
        metrics::counter!("fleet_job_runs_total", "job" => self.name).increment(1);
        Ok(true)
    }

    /// Hands the lease on (the instance is draining).
    pub async fn release(&mut self) {
        if self.held_until == 0 {
            return;
        }
        self.held_until = 0;
        self.next_try = 0;
        metrics::gauge!("fleet_job_held", "job" => self.name).set(0.0);
        if let Err(e) = release_lease(&self.db, self.name, &self.holder).await {
            tracing::warn!(job = self.name, error = %e, "could not hand the job's lease on; it lapses instead");
        }
    }

    /// Runs `job` every `every` on whichever instance holds the lease, until
    /// `stop`; a run in progress is finished, never cut.
    pub async fn every<F, Fut>(mut self, every: Duration, stop: crate::CancellationToken, mut job: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(every) => {}
            }
            if let Err(e) = self.run(&mut job).await {
                tracing::warn!(job = self.name, error = %e, "could not take the job's lease");
            }
        }
        self.release().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn db() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open_sqlite(&dir.path().join("f.db"), "f", crate::db::DbOptions::default()).unwrap();
        db.migrate("platform", crate::MIGRATIONS).await.unwrap();
        (dir, db)
    }

    #[tokio::test]
    async fn one_holder_runs_the_job_until_it_hands_it_on() {
        let (_dir, db) = db().await;
        let ttl = Duration::from_secs(3);
        let mut a = FleetJob::new(db.clone(), "t.job", "a", ttl);
        let mut b = FleetJob::new(db.clone(), "t.job", "b", ttl);
        let (ran_a, ran_b) = (std::cell::Cell::new(0), std::cell::Cell::new(0));
        for _ in 0..5 {
            a.run(|| async { ran_a.set(ran_a.get() + 1) }).await.unwrap();
            b.run(|| async { ran_b.set(ran_b.get() + 1) }).await.unwrap();
        }
        assert_eq!((ran_a.get(), ran_b.get()), (5, 0), "only the first holder runs the job");
        a.release().await;
        // The other instance looks again within a second, not when the lease would have run out.
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        assert!(b.run(|| async {}).await.unwrap(), "released: the other instance takes it over");
        assert!(!a.acquire().await.unwrap(), "and keeps it while it renews");
    }

    #[tokio::test]
    async fn a_dead_holders_lease_lapses_to_another_instance() {
        let (_dir, db) = db().await;
        let ttl = Duration::from_millis(300);
        let mut a = FleetJob::new(db.clone(), "t.job", "a", ttl);
        let mut b = FleetJob::new(db.clone(), "t.job", "b", ttl);
        assert!(a.acquire().await.unwrap());
        assert!(!b.acquire().await.unwrap());
        // `a` dies: it neither renews nor releases.
        tokio::time::sleep(Duration::from_millis(450)).await;
        assert!(b.acquire().await.unwrap(), "the lapsed lease goes to the instance still alive");
    }
}
