//! For tests of storage adapters: the same test body runs on the embedded
//! backend, or on PostgreSQL when `MERCATO_TEST_POSTGRES_URL` names a server
//! (e.g. postgres://postgres@127.0.0.1/postgres), each test in a fresh database.

use super::{Db, DbOptions};

/// A fresh, empty database for one test. The temp dir must outlive the `Db`.
pub fn fresh(dir: &std::path::Path) -> Db {
    match std::env::var("MERCATO_TEST_POSTGRES_URL").ok().filter(|u| !u.is_empty()) {
        Some(base) => {
            let name = format!(
                "mercato_s_{}_{}",
                std::process::id(),
                crate::random_token()[..10].to_ascii_lowercase().replace(['-', '_'], "x")
            );
            let (b, n) = (base.clone(), name.clone());
            // The blocking client brings its own runtime: keep it off the caller's.
            std::thread::spawn(move || {
                let mut c =
                    postgres::Client::connect(&b, postgres::NoTls).expect("connecting to MERCATO_TEST_POSTGRES_URL");
                c.batch_execute(&format!("CREATE DATABASE {n}")).expect("creating a test database");
            })
            .join()
            .expect("creating a test database");
            let (prefix, _) = base.rsplit_once('/').expect("a database url with a path");
            Db::open_postgres(
                &format!("{prefix}/{name}"),
                "test",
                &crate::db::PgOptions { statement_timeout_ms: 10_000, ..Default::default() },
            )
            .expect("opening the test database")
        }
        None => Db::open_sqlite(&dir.join("test.db"), "test", DbOptions::default()).expect("opening the test database"),
    }
}
