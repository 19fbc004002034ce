//! Search through the public API, fed by catalog events.

mod common;

use common::*;
use serde_json::{Value, json};
use std::time::Duration;

async fn search(srv: &TestServer, query: &str) -> Value {
    let r = srv.get(&format!("/search?{query}"), None).await;
    r.expect(200).clone()
}

fn names(result: &Value) -> Vec<String> {
    result["hits"].as_array().unwrap().iter().map(|h| h["name"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn search_ranks_tolerates_typos_counts_facets_and_follows_catalog_changes() {
    let srv = TestServer::start(0);
    let admin = srv.admin_token().await;
    let kitchen = srv.create_category(&admin, "Kitchen", None).await;
    let garden = srv.create_category(&admin, "Garden", None).await;
    let (k, g) = (id_of(&kitchen["id"]), id_of(&garden["id"]));
    for (cat, name, price) in [
        (&k, "Cast Iron Skillet", 3500),
        (&k, "Enamel Dutch Oven", 8900),
        (&k, "Skillet Lid", 1200),
        (&g, "Garden Hose Reel", 4500),
        (&g, "Iron Garden Bench", 19900),
    ] {
        srv.create_product(&admin, cat, name, &[(unique_str("SKU").to_uppercase().as_str(), price, 5)]).await;
    }
    // Published products become searchable within a second of their creation.
    let found = poll_until(Duration::from_secs(1), || async { search(&srv, "").await["total"] == json!(5) }).await;
    assert!(found, "new products not searchable within 1 s: {}", search(&srv, "").await);
    assert_eq!(search(&srv, "q=skillet").await["total"], json!(2));

    // An exact name ranks that product first.
    assert_eq!(names(&search(&srv, "q=Cast%20Iron%20Skillet").await)[0], "Cast Iron Skillet");
    // One typo in a word of 5+ letters still finds it.
    assert!(names(&search(&srv, "q=skilet").await).contains(&"Cast Iron Skillet".to_string()));
    // Prefix of the last word (search as you type) and suggestions.
    assert!(names(&search(&srv, "q=dutch%20ov").await).contains(&"Enamel Dutch Oven".to_string()));
    let s = srv.get("/search/suggest?q=gard", None).await.expect(200).clone();
    assert!(!s["suggestions"].as_array().unwrap().is_empty(), "{s}");

    // Facet counts equal the matching products per category.
    let r = search(&srv, "q=iron").await;
    assert_eq!(r["total"], json!(2));
    let facets = r["facets"]["categories"].as_array().unwrap();
    let count = |id: &str| facets.iter().find(|f| f["category_id"] == json!(id)).map(|f| f["count"].clone());
    assert_eq!(count(&k), Some(json!(1)));
    assert_eq!(count(&g), Some(json!(1)));
    let bands: u64 = r["facets"]["price_bands"].as_array().unwrap().iter().map(|b| b["count"].as_u64().unwrap()).sum();
    assert_eq!(bands, 2);
    // Filters.
    assert_eq!(search(&srv, &format!("q=iron&category={k}")).await["total"], json!(1));
    assert_eq!(search(&srv, "q=iron&max_price=5000").await["total"], json!(1));

    // A renamed product is found by its new name, and no longer by its old one, within a second.
    let hose = search(&srv, "q=hose").await["hits"][0]["id"].as_str().unwrap().to_string();
    srv.patch(
        &format!("/admin/products/{hose}"),
        Some(&admin),
        json!({"name": "Watering Wand", "description": "A brass wand for seedlings and beds."}),
    )
    .await
    .expect(200);
    let renamed = poll_until(Duration::from_secs(1), || async {
        search(&srv, "q=watering").await["total"] == json!(1) && search(&srv, "q=hose").await["total"] == json!(0)
    })
    .await;
    assert!(renamed, "rename not reflected within 1 s");
    // Archived products leave the index.
    srv.patch(&format!("/admin/products/{hose}"), Some(&admin), json!({"status": "archived"})).await.expect(200);
    assert!(
        poll_until(Duration::from_secs(1), || async { search(&srv, "q=watering").await["total"] == json!(0) }).await
    );

    // Bad input is a clear 422.
    assert_problem(&srv.get("/search?q=x&limit=0", None).await, 422, "validation");
    assert_problem(&srv.get("/search?q=x&sort=sideways", None).await, 422, "validation");
    assert_problem(&srv.get("/search?q=x&cursor=garbage", None).await, 422, "validation");
}

#[tokio::test]
async fn the_seeded_catalog_is_indexed_on_first_start() {
    let srv = TestServer::start(60);
    let total = poll_until(Duration::from_secs(10), || async { search(&srv, "").await["total"] == json!(60) }).await;
    assert!(total, "seeded products were not indexed: {}", search(&srv, "").await["total"]);
}
