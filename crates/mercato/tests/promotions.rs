//! Coupons and automatic promotions through the public API: discount lines in
//! the cart, clear errors for coupons that do not apply, and usage limits that
//! hold under concurrent checkouts.

mod common;

use common::*;
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::task::JoinSet;

async fn promotion(srv: &TestServer, admin: &str, body: Value) -> Value {
    let r = srv.post("/admin/promotions", Some(admin), body).await;
    assert_eq!(r.status, 201, "create promotion: {}", r.text);
    r.body
}

#[tokio::test]
async fn coupons_show_discount_lines_and_invalid_ones_are_refused_clearly() {
    let srv = TestServer::start(0);
    let admin = srv.admin_token().await;
    let shoes = srv.create_category(&admin, &unique_str("Shoes"), None).await;
    let books = srv.create_category(&admin, &unique_str("Books"), None).await;
    let shoe_sku = unique_str("SHOE").to_uppercase();
    let book_sku = unique_str("BOOK").to_uppercase();
    srv.create_product(&admin, &id_of(&shoes["id"]), "Runner", &[(shoe_sku.as_str(), 8000, 10)]).await;
    srv.create_product(&admin, &id_of(&books["id"]), "Novel", &[(book_sku.as_str(), 2000, 10)]).await;

    promotion(
        &srv,
        &admin,
        json!({"code": "shoes10", "name": "Shoe week", "kind": "percentage", "value": 1000,
        "scope": "categories", "scope_values": [id_of(&shoes["id"])]}),
    )
    .await;
    promotion(
        &srv,
        &admin,
        json!({"code": "OLD5", "name": "Last year", "kind": "fixed", "value": 500,
        "starts_at": "2020-01-01T00:00:00Z", "ends_at": "2021-01-01T00:00:00Z"}),
    )
    .await;
    promotion(
        &srv,
        &admin,
        json!({"code": "BIG20", "name": "Big basket", "kind": "fixed", "value": 2000, "min_subtotal": 50000}),
    )
    .await;
    // An automatic promotion: no code, applies by itself.
    promotion(
        &srv,
        &admin,
        json!({"name": "Book club", "kind": "percentage", "value": 500,
        "scope": "categories", "scope_values": [id_of(&books["id"])]}),
    )
    .await;

    let alice = srv.new_customer().await;
    // A coupon on an empty cart does not apply.
    assert_problem(&srv.post("/cart/coupon", Some(&alice), json!({"code": "SHOES10"})).await, 422, "coupon-invalid");
    srv.add_to_cart(&alice, &book_sku, 1).await.expect(200);
    let cart = srv.get("/cart", Some(&alice)).await;
    let cart = cart.expect(200);
    assert_eq!(cart["discounts"].as_array().unwrap().len(), 1, "the automatic book promotion applies: {cart}");
    assert_eq!(amount(&cart["totals"]["discount"]), 100);

    // Out of scope: only a book in the cart.
    let r = srv.post("/cart/coupon", Some(&alice), json!({"code": "shoes10"})).await;
    assert_problem(&r, 422, "coupon-invalid");
    assert_eq!(r.body["reason"], json!("not_applicable"), "{}", r.text);
    // Expired.
    let r = srv.post("/cart/coupon", Some(&alice), json!({"code": "OLD5"})).await;
    assert_problem(&r, 422, "coupon-invalid");
    assert_eq!(r.body["reason"], json!("expired"));
    // Below its minimum subtotal.
    let r = srv.post("/cart/coupon", Some(&alice), json!({"code": "BIG20"})).await;
    assert_eq!(r.body["reason"], json!("below_minimum_subtotal"), "{}", r.text);
    // Unknown.
    let r = srv.post("/cart/coupon", Some(&alice), json!({"code": "NOPE-NOPE"})).await;
    assert_problem(&r, 422, "coupon-invalid");
    assert_eq!(r.body["reason"], json!("not_found"));
    // None of the refused coupons stuck to the cart.
    assert_eq!(srv.get("/cart", Some(&alice)).await.body["coupon"], Value::Null);

    // In scope: 10% of the shoe only, beside the automatic 5% of the book.
    srv.add_to_cart(&alice, &shoe_sku, 1).await.expect(200);
    let r = srv.post("/cart/coupon", Some(&alice), json!({"code": "shoes10"})).await;
    let cart = r.expect(200);
    assert_eq!(cart["coupon"], json!("SHOES10"));
    let discounts: Vec<i64> = cart["discounts"].as_array().unwrap().iter().map(|d| amount(&d["amount"])).collect();
    assert_eq!(discounts.iter().sum::<i64>(), 800 + 100, "{cart}");
    assert!(
        cart["discounts"].as_array().unwrap().iter().all(|d| d["description"].as_str().is_some_and(|s| !s.is_empty()))
    );
    assert_eq!(
        amount(&cart["totals"]["total"]),
        10000 - 900 + amount(&cart["totals"]["shipping"]) + amount(&cart["totals"]["tax"])
    );

    // The order keeps the discount lines, and the coupon counts one use.
    let order = srv.place_order(&alice, &unique_str("k")).await;
    let order = order.expect(201);
    assert_eq!(amount(&order["discount"]), 900);
    assert_eq!(order["discounts"].as_array().unwrap().len(), 2);
    let promos = srv.get("/admin/promotions", Some(&admin)).await.body;
    let shoes10 = promos["items"].as_array().unwrap().iter().find(|p| p["code"] == json!("SHOES10")).unwrap().clone();
    assert_eq!(shoes10["used"], json!(1));

    // Cancelling the unpaid order gives the use back.
    let id = id_of(&order["id"]);
    srv.post_empty(&format!("/orders/{id}/cancel"), Some(&alice)).await.expect(200);
    let back = poll_until(std::time::Duration::from_secs(3), || async {
        let promos = srv.get("/admin/promotions", Some(&admin)).await.body;
        promos["items"].as_array().unwrap().iter().any(|p| p["code"] == json!("SHOES10") && p["used"] == json!(0))
    })
    .await;
    assert!(back, "the cancelled order's coupon use was not released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_usage_limit_of_100_admits_at_most_100_orders_under_200_concurrent_checkouts() {
    let srv = Arc::new(TestServer::start_with(0, &[("MERCATO_AUTH_ARGON2_MEMORY_KIB", "1024")]));
    let admin = srv.admin_token().await;
    let sku = srv.quick_sku(&admin, 1000, 1000).await;
    promotion(
        &srv,
        &admin,
        json!({"code": "FIRST100", "name": "First hundred", "kind": "fixed", "value": 300, "usage_limit": 100}),
    )
    .await;
    let customers = make_customers(&srv, 200, 8, "limit").await;
    for (_, token, _) in &customers {
        srv.add_to_cart(token, &sku, 1).await.expect(200);
        srv.post("/cart/coupon", Some(token), json!({"code": "FIRST100"})).await.expect(200);
    }
    let mut set = JoinSet::new();
    for (_, token, _) in customers {
        let srv = srv.clone();
        set.spawn(async move { srv.place_order(&token, &unique_str("k")).await });
    }
    let (mut placed, mut refused) = (0, 0);
    while let Some(r) = set.join_next().await {
        let r = r.unwrap();
        match r.status {
            201 => {
                assert_eq!(amount(&r.body["discount"]), 300);
                placed += 1;
            }
            422 => {
                assert_problem(&r, 422, "coupon-invalid");
                assert_eq!(r.body["reason"], json!("usage_limit_reached"), "{}", r.text);
                refused += 1;
            }
            other => panic!("unexpected {other}: {}", r.text),
        }
    }
    assert_eq!((placed, refused), (100, 100));
    let promos = srv.get("/admin/promotions", Some(&admin)).await.body;
    assert_eq!(promos["items"][0]["used"], json!(100));
    // Refused checkouts reserved nothing.
    assert_eq!(srv.stock(&admin, &sku).await, (900, 100, 0));
}

#[tokio::test]
async fn a_per_customer_limit_holds_across_orders() {
    let srv = TestServer::start(0);
    let admin = srv.admin_token().await;
    let sku = srv.quick_sku(&admin, 1000, 50).await;
    promotion(
        &srv,
        &admin,
        json!({"code": "ONCE", "name": "Once each", "kind": "fixed", "value": 100, "per_customer_limit": 1}),
    )
    .await;
    let bob = srv.new_customer().await;
    srv.add_to_cart(&bob, &sku, 1).await.expect(200);
    srv.post("/cart/coupon", Some(&bob), json!({"code": "ONCE"})).await.expect(200);
    srv.place_order(&bob, &unique_str("k")).await.expect(201);
    srv.add_to_cart(&bob, &sku, 1).await.expect(200);
    let r = srv.post("/cart/coupon", Some(&bob), json!({"code": "ONCE"})).await;
    assert_problem(&r, 422, "coupon-invalid");
    assert_eq!(r.body["reason"], json!("customer_limit_reached"));
}
