//! `mercato shards`: the orders' shard map, and moving a logical shard to
//! another database while the shop runs (stage 7).

use crate::config::Config;
use crate::server::open_url;
use anyhow::Context;
use mercato_platform::shards::ShardRing;

/// The ring over every database in `database.domains.orders.shards` (and
/// only those: the shop may be running on the rest), the orders' schema up
/// to date (a database just added to the list has none yet).
async fn ring(config: &Config) -> anyhow::Result<ShardRing> {
    let urls = config.database.shards_for("orders");
    let urls = if urls.is_empty() { vec![config.database.url_for("orders")] } else { urls };
    let mut dbs = Vec::new();
    for (i, url) in urls.iter().enumerate() {
        let db = open_url(config, url, &format!("orders-{i}"))?;
        db.migrate("platform", mercato_platform::MIGRATIONS).await?;
        db.migrate("orders", mercato_orders::MIGRATIONS).await?;
        db.migrate("payments", mercato_payments::MIGRATIONS).await?;
        dbs.push(db);
    }
    Ok(ShardRing::spread(dbs, config.orders.logical_shards))
}

/// Each database with the logical shards it records, one line each.
pub async fn list(config: &Config) -> anyhow::Result<String> {
    let ring = ring(config).await?;
    let table = mercato_orders::shard_table(&ring).await?;
    let mut out = String::new();
    for (i, records) in table.iter().enumerate() {
        let mut by_state: Vec<(String, Vec<i64>)> = Vec::new();
        for (shard, state) in records {
            match by_state.iter_mut().find(|(s, _)| s == state) {
                Some((_, v)) => v.push(*shard),
                None => by_state.push((state.clone(), vec![*shard])),
            }
        }
        let parts: Vec<String> = by_state.iter().map(|(s, v)| format!("{s} {}", compact(v))).collect();
        out.push_str(&format!(
            "database {}: {}\n",
            i + 1,
            if parts.is_empty() { "nothing".into() } else { parts.join("; ") }
        ));
    }
    if table.iter().all(Vec::is_empty) {
        out.push_str("(no database records its shards yet: the shop records them when it first starts)\n");
    }
    Ok(out)
}

/// `0-3,7,9-12` for a sorted list.
fn compact(v: &[i64]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j + 1 < v.len() && v[j + 1] == v[j] + 1 {
            j += 1;
        }
        parts.push(if i == j { v[i].to_string() } else { format!("{}-{}", v[i], v[j]) });
        i = j + 1;
    }
    parts.join(",")
}

/// Moves logical shard `shard` to database `to` (1-based in the shards
/// list). The destination's server reaches the source at the source's URL
/// in the list, or at `source_conninfo`.
pub async fn move_shard(
    config: &Config,
    shard: u16,
    to: usize,
    source_conninfo: Option<String>,
) -> anyhow::Result<mercato_orders::MoveReport> {
    let ring = ring(config).await?;
    let urls = config.database.shards_for("orders");
    if urls.len() < 2 {
        anyhow::bail!("database.domains.orders.shards lists fewer than two databases: there is nowhere to move to");
    }
    let conninfo = |from: usize| source_conninfo.clone().unwrap_or_else(|| urls[from].clone());
    let say = |m: &str| eprintln!("{m}");
    // A payment lives with its order: its rows move with the order's.
    let tables: Vec<(&str, &str)> =
        mercato_payments::SHARD_TABLES.iter().chain(mercato_orders::SHARD_TABLES).copied().collect();
    mercato_orders::move_shard(&ring, &tables, shard, to.checked_sub(1).unwrap_or(usize::MAX), &conninfo, &say)
        .await
        .context("moving the shard")
}

#[cfg(test)]
mod tests {
    #[test]
    fn shard_lists_read_as_ranges() {
        assert_eq!(super::compact(&[0, 1, 2, 3, 7, 9, 10]), "0-3,7,9-10");
        assert_eq!(super::compact(&[]), "");
    }
}
