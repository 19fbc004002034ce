#![allow(dead_code)] // each test binary uses a different part of the fixtures

use mercato_search::{SearchDoc, SearchEngine, SearchQuery, SearchResult, TantivyEngine};

/// (id, name) of the leaf categories and their roots.
pub const ELECTRONICS: i64 = 1;
pub const CLOTHING: i64 = 2;
pub const HOME: i64 = 3;
pub const LAPTOPS: i64 = 10;
pub const PHONES: i64 = 11;
pub const HEADPHONES: i64 = 12;
pub const ACCESSORIES: i64 = 13;
pub const TSHIRTS: i64 = 20;
pub const SHOES: i64 = 21;
pub const KITCHEN: i64 = 30;

fn path_of(leaf: i64) -> (Vec<i64>, Vec<String>) {
    let (root, root_name) = match leaf / 10 {
        1 => (ELECTRONICS, "Electronics"),
        2 => (CLOTHING, "Clothing"),
        _ => (HOME, "Home & Garden"),
    };
    let leaf_name = match leaf {
        LAPTOPS => "Laptops",
        PHONES => "Mobile Phones",
        HEADPHONES => "Headphones",
        ACCESSORIES => "Computer Accessories",
        TSHIRTS => "T-Shirts",
        SHOES => "Shoes",
        _ => "Kitchen",
    };
    (vec![root, leaf], vec![root_name.to_string(), leaf_name.to_string()])
}

pub fn doc(
    id: i64,
    name: &str,
    leaf: i64,
    options: &[&str],
    price: i64,
    created_at: i64,
    description: &str,
) -> SearchDoc {
    let (category_path, category_names) = path_of(leaf);
    SearchDoc {
        id,
        slug: name.to_lowercase().replace(|c: char| !c.is_alphanumeric(), "-"),
        name: name.to_string(),
        description: description.to_string(),
        category_id: leaf,
        category_path,
        category_names,
        option_values: options.iter().map(|s| s.to_string()).collect(),
        price,
        currency: "EUR".to_string(),
        created_at,
    }
}

/// A small, realistic catalog; ids follow creation order (`created_at = id * 1000`).
pub fn catalog() -> Vec<SearchDoc> {
    vec![
        doc(
            1,
            "Apple MacBook Air 13",
            LAPTOPS,
            &["Silver", "256 GB"],
            119_900,
            1_000,
            "Thin and light notebook with M3 chip.",
        ),
        doc(2, "Dell XPS 15 Laptop", LAPTOPS, &["Black", "512 GB"], 149_900, 2_000, "A powerful 15 inch notebook."),
        doc(3, "Neoprene Laptop Sleeve", LAPTOPS, &["Grey"], 2_500, 3_000, "Protects a 13 inch notebook."),
        doc(4, "Apple iPhone 15", PHONES, &["Black", "128 GB"], 89_900, 4_000, "The phone with a great camera."),
        doc(5, "Apple iPhone 15 Pro Max Case for iPhone 15", PHONES, &["Clear"], 1_999, 5_000, "Slim case."),
        doc(6, "Samsung Galaxy S24", PHONES, &["Violet", "256 GB"], 79_900, 6_000, "Android phone."),
        doc(
            7,
            "Sony WH-1000XM5 Wireless Headphones",
            HEADPHONES,
            &["Black", "Silver"],
            34_900,
            7_000,
            "Noise cancelling.",
        ),
        doc(8, "Classic Cotton T-Shirt", TSHIRTS, &["Black", "White", "M", "L"], 1_999, 8_000, "Soft organic cotton."),
        doc(9, "Running Shoes Pegasus", SHOES, &["Black", "42", "43"], 11_999, 9_000, "Cushioned daily trainer."),
        doc(10, "Leather Boots", SHOES, &["Brown", "42"], 15_999, 10_000, "Hand-stitched leather boots."),
        doc(11, "Chef Knife", KITCHEN, &["Steel"], 4_999, 11_000, "Forged, 20 cm blade."),
        doc(12, "Coffee Mug", KITCHEN, &["White"], 899, 12_000, "Stoneware, 300 ml."),
        doc(13, "Mechanical Keyboard", ACCESSORIES, &["Brown switches"], 9_999, 13_000, "Works great with any laptop."),
        doc(14, "Toffee Candy", KITCHEN, &[], 499, 14_000, "Sweet treat."),
    ]
}

pub async fn engine_with_catalog() -> TantivyEngine {
    let engine = TantivyEngine::in_memory().expect("in-memory engine");
    engine.upsert(catalog()).await.expect("index catalog");
    engine
}

pub fn query(q: &str) -> SearchQuery {
    SearchQuery { q: q.to_string(), limit: 20, ..Default::default() }
}

pub fn ids(result: &SearchResult) -> Vec<i64> {
    result.hits.iter().map(|h| h.id).collect()
}

pub fn sorted(mut v: Vec<i64>) -> Vec<i64> {
    v.sort_unstable();
    v
}

pub async fn search_ids(engine: &TantivyEngine, q: SearchQuery) -> Vec<i64> {
    ids(&engine.search(q).await.expect("search"))
}
