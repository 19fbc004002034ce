//! Loads the deterministic demo catalog (`mercato_demo`) through the
//! catalog and inventory services, in large transactions.

use mercato_catalog::{NewProduct, NewVariant, ProductStatus};
use mercato_core::{Currency, Id, Money};
use mercato_demo as demo;
use mercato_http::AppState;
use std::collections::HashMap;

const BATCH: u64 = 2_000;

/// Adds `count` demo products (continuing after those already present, so
/// repeated runs never collide) with `stock` units per variant.
pub async fn run(state: &AppState, count: u64, stock: i64, progress: bool) -> anyhow::Result<u64> {
    let categories = ensure_categories(state).await?;
    let start = state.catalog.product_count().await? as u64;
    let currency = state.catalog.currency();
    let bar = if progress {
        let bar = indicatif::ProgressBar::new(count);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} seeding [{bar:40}] {pos}/{len} products ({per_sec}, eta {eta})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut done = 0;
    while done < count {
        let n = BATCH.min(count - done);
        let mut products = Vec::with_capacity(n as usize);
        let mut stock_lines = Vec::new();
        for i in start + done..start + done + n {
            let p = demo::product(i);
            for v in &p.variants {
                stock_lines.push((v.sku.clone(), stock));
            }
            products.push((to_new(p, &categories, currency)?, String::new()));
        }
        // The slug travels beside the product: demo slugs are unique by construction.
        let products: Vec<(NewProduct, String)> = products
            .into_iter()
            .map(|(mut p, _)| {
                let slug = p.slug.take().unwrap_or_default();
                (p, slug)
            })
            .collect();
        state.catalog.insert_batch(products).await?;
        state.inventory.seed(stock_lines).await?;
        done += n;
        bar.set_position(done);
    }
    bar.finish_and_clear();
    Ok(done)
}

fn to_new(p: demo::DemoProduct, categories: &HashMap<usize, Id>, currency: Currency) -> anyhow::Result<NewProduct> {
    let category_id =
        *categories.get(&p.category).ok_or_else(|| anyhow::anyhow!("demo category {} missing", p.category))?;
    Ok(NewProduct {
        name: p.name,
        slug: Some(p.slug),
        description: p.description,
        category_id,
        status: ProductStatus::Published,
        variants: p
            .variants
            .into_iter()
            .map(|v| NewVariant {
                sku: v.sku,
                options: v.options.into_iter().collect(),
                price: Money::new(v.price_minor, currency),
                weight_grams: v.weight_grams,
            })
            .collect(),
    })
}

/// Creates the demo category tree (or finds it, on later runs) and maps demo
/// category keys to ids.
async fn ensure_categories(state: &AppState) -> anyhow::Result<HashMap<usize, Id>> {
    let existing = state.catalog.categories().await?;
    let by_slug: HashMap<&str, Id> = existing.iter().map(|c| (c.slug.as_str(), c.id)).collect();
    let mut map = HashMap::new();
    for c in demo::categories() {
        let id = match by_slug.get(c.slug.as_str()) {
            Some(id) => *id,
            None => {
                let parent = c.parent.and_then(|p| map.get(&p).copied());
                state.catalog.create_category(&c.name, Some(&c.slug), parent).await?.id
            }
        };
        map.insert(c.key, id);
    }
    Ok(map)
}
