//! Order history by month on PostgreSQL (stage 7): orders, items and
//! history are partitioned by month of order id, the shop keeps partitions
//! made three months ahead, an order of a month lands in that month's
//! partitions, and a month detached and dropped (archived) leaves the shop
//! serving, its partitions made again by the next start.

mod common;

use common::*;
use mercato_platform::ids::first_id_at;
use serde_json::json;

/// The partitions of `table`, by name.
async fn partitions(db: &mercato_platform::Db, table: &'static str) -> Vec<String> {
    db.read(move |tx| {
        let rows = tx.query(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             WHERE i.inhparent = to_regclass($1) ORDER BY 1",
            mercato_platform::params![table],
        )?;
        rows.iter().map(|r| r.text(0)).collect()
    })
    .await
    .unwrap()
}

/// The partition holding `table`'s row with `column` = `id`.
async fn partition_of(db: &mercato_platform::Db, table: &str, column: &str, id: i64) -> Option<String> {
    let sql = format!("SELECT tableoid::regclass::text FROM {table} WHERE {column} = $1 LIMIT 1");
    db.read(move |tx| tx.query_opt(&sql, mercato_platform::params![id])?.map(|r| r.text(0)).transpose()).await.unwrap()
}

/// `orders_y2027m03` style, for the month `ms` is in.
fn month_name(table: &str, ms: i64) -> String {
    let (y, m) = mercato_orders::month_of(ms);
    format!("{table}_y{y:04}m{m:02}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_are_partitioned_by_month_and_a_month_can_be_archived() {
    if std::env::var("MERCATO_TEST_POSTGRES_URL").ok().is_none_or(|u| u.is_empty()) || split_shape() || sharded_shape()
    {
        eprintln!("SKIPPED: partitions are PostgreSQL's (this runs in the PostgreSQL pass)");
        return;
    }
    let srv = TestServer::start(0);
    let admin = srv.admin_token().await;
    let sku = srv.quick_sku(&admin, 900, 50).await;
    let customer = srv.new_customer().await;
    let placed = srv.order_one(&customer, &sku, 2).await;
    let placed_id: i64 = id_of(&placed["id"]).parse().unwrap();
    let db = srv.open_domain_database("orders");

    // Every table has its partitions three months ahead, the same months.
    let now = mercato_platform::now_ms();
    let day = 24 * 3600 * 1000;
    let orders = partitions(&db, "orders").await;
    for ahead in [35, 65, 90] {
        let name = month_name("orders", now + ahead * day);
        assert!(orders.contains(&name), "no partition {name} ahead: {orders:?}");
    }
    for table in ["order_items", "order_history"] {
        let names: Vec<String> = partitions(&db, table).await.iter().map(|n| n.replacen(table, "orders", 1)).collect();
        assert_eq!(names, orders, "{table}'s months are not the orders'");
    }
    // Today's order is in a partition, its items and history with it.
    let home = partition_of(&db, "orders", "id", placed_id).await.expect("the order's row");
    assert!(orders.contains(&home), "{home} is not a partition of orders");
    let items = partition_of(&db, "order_items", "order_id", placed_id).await.expect("the order's items");
    assert_eq!(items, home.replacen("orders", "order_items", 1));

    // An order of the last month made (as a node whose clock runs ahead
    // would mint it) lands in that month's partitions.
    let last = orders.last().unwrap().clone();
    let later = (30..200).map(|d| now + d * day).find(|t| month_name("orders", *t) == last).unwrap() + day;
    let id = first_id_at(later).0 + 7;
    db.write(move |tx| {
        // A copy of today's order, minted then.
        tx.execute(
            "INSERT INTO orders (id, customer_id, status, currency, subtotal, discount, shipping, tax, total, \
             refunded, shipping_address, shipping_method, created_at, updated_at, discounts) \
             SELECT $1, customer_id, 'cancelled', currency, subtotal, discount, shipping, tax, total, refunded, \
             shipping_address, shipping_method, $2, $2, discounts FROM orders WHERE id = $3",
            mercato_platform::params![id, later, placed_id],
        )?;
        tx.execute(
            "INSERT INTO order_items (order_id, line, sku, product_id, name, options, quantity, unit_price, \
             line_total) SELECT $1, line, sku, product_id, name, options, quantity, unit_price, line_total \
             FROM order_items WHERE order_id = $2",
            mercato_platform::params![id, placed_id],
        )?;
        tx.execute(
            "INSERT INTO order_history (id, order_id, to_status, actor, at) VALUES ($1, $1, 'cancelled', 'test', $2)",
            mercato_platform::params![id, later],
        )?;
        Ok(())
    })
    .await
    .unwrap();
    for (table, column) in [("orders", "id"), ("order_items", "order_id"), ("order_history", "order_id")] {
        assert_eq!(partition_of(&db, table, column, id).await, Some(month_name(table, later)), "{table}");
    }
    // The newest order of the listing (its id is the furthest ahead).
    let newest = |r: Resp| r.expect(200)["items"][0]["id"].clone();
    assert_eq!(newest(srv.get("/admin/orders?limit=1", Some(&admin)).await), json!(id.to_string()));

    // Archiving that month: detach (children first), dump, drop. The order
    // is gone from the shop, which keeps serving. (An old month is archived
    // the same way; the last one is used here so that the next start, which
    // makes months from the end of the last, makes it again.)
    let month = month_name("orders", later);
    // A detached child keeps its foreign key to `orders`: each is dropped
    // (once dumped) before the orders' partition is detached.
    let statements: Vec<String> = ["order_history", "order_items", "orders"]
        .iter()
        .flat_map(|t| {
            let part = month.replacen("orders", t, 1);
            [format!("ALTER TABLE {t} DETACH PARTITION {part}"), format!("DROP TABLE {part}")]
        })
        .collect();
    for sql in statements {
        db.read(move |tx| Ok(tx.execute(&sql, &[])?)).await.unwrap_or_else(|e| panic!("archiving: {e}"));
    }
    assert_ne!(newest(srv.get("/admin/orders?limit=1", Some(&admin)).await), json!(id.to_string()));
    let again = srv.order_one(&customer, &sku, 1).await;
    assert_eq!(again["status"], json!("pending_payment"));
    assert_eq!(srv.get(&format!("/orders/{placed_id}"), Some(&customer)).await.status, 200);
    assert!(!partitions(&db, "orders").await.contains(&month));

    // The next start makes the month again (the shop sweeps hourly too).
    drop(db);
    let srv = srv.restart();
    let db = srv.open_domain_database("orders");
    assert!(partitions(&db, "orders").await.contains(&month), "the archived month was not made again");
    assert_eq!(srv.get(&format!("/orders/{placed_id}"), Some(&customer)).await.status, 200);
}
