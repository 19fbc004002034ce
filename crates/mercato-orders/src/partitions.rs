//! Order history by month on PostgreSQL: `orders`, `order_items` and
//! `order_history` are partitioned by range of order id (migration 8), and
//! this keeps a partition ready for each month ahead. An order id's high
//! bits are its minting time ([`first_id_at`]), so a month is a range of
//! ids, and an order's items and history sit in its own month's partitions:
//! a month can be detached and archived as a whole (README, "Sharded
//! orders"). The embedded database has no partitions.

use crate::store;
use mercato_core::Error;
use mercato_platform::Db;
use mercato_platform::db::Dialect;
use mercato_platform::ids::first_id_at;
use mercato_platform::now_ms;

/// The partitioned tables, children last (the order a month's partitions
/// are detached in is the reverse).
pub const PARTITIONED: &[&str] = &["orders", "order_items", "order_history"];

/// How far ahead partitions are made: a shop that starts or sweeps at least
/// once in this time never inserts into a month without one.
const AHEAD_MS: i64 = 92 * 24 * 3600 * 1000;

/// Makes the monthly partitions that are missing from the end of the last
/// one up to [`AHEAD_MS`] from now, in `db`; their names. Nothing on the
/// embedded database, or before migration 8.
pub async fn ensure_partitions(db: &Db) -> Result<Vec<String>, Error> {
    if db.dialect() != Dialect::Postgres {
        return Ok(Vec::new());
    }
    let until = now_ms() + AHEAD_MS;
    db.write(move |tx| {
        if !store::partitioned(tx)? {
            return Ok(Vec::new());
        }
        // One instance at a time: two adding the same month would collide.
        store::lock_partitions(tx)?;
        let mut made = Vec::new();
        let Some(mut from) = store::partitions_end(tx)? else { return Ok(made) };
        loop {
            let (y, m) = month_of(mercato_platform::ids::time_of(from));
            let start = month_start_ms(y, m);
            if start > until {
                return Ok(made);
            }
            let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            let to = first_id_at(month_start_ms(ny, nm)).0;
            for table in PARTITIONED {
                let name = format!("{table}_y{y:04}m{m:02}");
                store::create_partition(tx, table, &name, from, to)?;
                made.push(name);
            }
            from = to;
        }
    })
    .await
}

/// The (year, month) of UTC time `ms` (milliseconds since 1970).
pub fn month_of(ms: i64) -> (i64, u32) {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    (i64::from(t.year()), u32::from(u8::from(t.month())))
}

/// Milliseconds since 1970 at the start of month `m` of year `y`, UTC.
fn month_start_ms(y: i64, m: u32) -> i64 {
    let month = time::Month::try_from(m as u8).unwrap_or(time::Month::January);
    let date = time::Date::from_calendar_date(y as i32, month, 1).unwrap_or(time::Date::MIN);
    date.midnight().assume_utc().unix_timestamp() * 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_are_found_and_started_in_utc() {
        assert_eq!(month_of(0), (1970, 1));
        assert_eq!(month_of(1_735_689_600_000), (2025, 1));
        assert_eq!(month_of(1_735_689_600_000 - 1), (2024, 12));
        assert_eq!(month_start_ms(2025, 1), 1_735_689_600_000);
        assert_eq!(month_start_ms(2024, 3), 1_709_251_200_000);
        assert_eq!(month_of(month_start_ms(2024, 2) + 28 * 86_400_000), (2024, 2), "2024 is a leap year");
        for (y, m) in [(2026, 12), (2027, 1), (2100, 2)] {
            assert_eq!(month_of(month_start_ms(y, m)), (y, m));
        }
    }

    #[test]
    fn the_migration_cuts_months_where_ids_do() {
        // Migration 8 writes the id of a time in SQL; it must be the one
        // the id generator mints.
        let sql = crate::MIGRATIONS.iter().find(|m| m.version == 8).unwrap().sql;
        assert!(sql.contains("- 1735689600000) << 22"));
        assert_eq!(first_id_at(1_735_689_600_000).0, 0);
        assert_eq!(first_id_at(1_735_689_600_001).0, 1 << 22);
        assert_eq!(mercato_platform::ids::time_of(first_id_at(1_800_000_000_000).0), 1_800_000_000_000);
    }
}
