//! Keeps the search index in step with the catalog: a subscriber turns product
//! events into index writes, and `reindex` rebuilds it from the tables.

use mercato_catalog::{Product, ProductStatus};
use mercato_core::{Error, Id};
use mercato_http::AppState;
use mercato_search::SearchDoc;

/// The search document for a product, with its category path and names.
pub async fn doc_for(state: &AppState, p: &Product) -> Result<SearchDoc, Error> {
    let mut path = state.catalog.ancestors(p.category_id).await?;
    path.reverse();
    let cats = state.catalog.categories().await?;
    let names = path.iter().filter_map(|id| cats.iter().find(|c| c.id == *id).map(|c| c.name.clone())).collect();
    let mut option_values: Vec<String> =
        p.variants.iter().flat_map(|v| v.options.values().map(str::to_string)).collect();
    option_values.sort();
    option_values.dedup();
    Ok(SearchDoc {
        id: p.id.0,
        slug: p.slug.clone(),
        name: p.name.clone(),
        description: p.description.clone(),
        category_id: p.category_id.0,
        category_path: path.iter().map(|c| c.0).collect(),
        category_names: names,
        option_values,
        price: p.price.amount,
        currency: p.price.currency.to_string(),
        created_at: p.created_at,
    })
}

/// Brings one product's index entry up to date (published: indexed; otherwise
/// removed). Idempotent, so at-least-once event delivery is harmless.
pub async fn refresh(state: &AppState, id: Id) -> Result<(), Error> {
    match state.catalog.get_uncached(id).await {
        Ok(p) if p.status == ProductStatus::Published => state.search.upsert(vec![doc_for(state, &p).await?]).await?,
        Ok(_) => state.search.delete(vec![id.0]).await?,
        Err(e) if e.code == mercato_core::ErrorCode::NotFound => state.search.delete(vec![id.0]).await?,
        Err(e) => return Err(e),
    }
    // After the index changed, never before: a search between the two would
    // cache the old answer again.
    state.search_results.invalidate_all().await;
    Ok(())
}

/// Rebuilds the whole index from the catalog, in pages.
pub async fn reindex(state: &AppState, progress: bool) -> Result<u64, Error> {
    let total = state.catalog.product_count().await? as u64;
    let bar = if progress {
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} indexing [{bar:40}] {pos}/{len} products ({per_sec}, eta {eta})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    state.search.clear().await?;
    let mut after = None;
    let mut done = 0u64;
    loop {
        let page = state.catalog.published_after(after, 5_000).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        let mut docs = Vec::with_capacity(page.len());
        for p in &page {
            docs.push(doc_for(state, p).await?);
        }
        done += docs.len() as u64;
        state.search.upsert(docs).await?;
        state.search_results.invalidate_all().await;
        bar.set_position(done);
    }
    bar.finish_and_clear();
    Ok(done)
}

/// The file in `data_dir` where this instance's index records the commit
/// time of the last catalog event it applied.
const FOLLOWED: &str = "search-index.followed";

/// Events are applied in outbox order, not commit-time order, and other
/// instances' clocks differ a little: look this far before the recorded
/// time when catching up.
const CATCH_UP_MARGIN_MS: i64 = 60_000;

/// How far the index has followed the catalog, as recorded in `data_dir`.
pub fn followed(data_dir: &std::path::Path) -> Option<i64> {
    std::fs::read_to_string(data_dir.join(FOLLOWED)).ok()?.trim().parse().ok()
}

/// Records `at` (an event's commit time) as followed; written under a
/// temporary name and renamed, so a crash leaves the old value or the new.
pub fn record_followed(data_dir: &std::path::Path, at: i64) -> std::io::Result<()> {
    let tmp = data_dir.join(format!("{FOLLOWED}.tmp"));
    std::fs::write(&tmp, at.to_string())?;
    std::fs::rename(&tmp, data_dir.join(FOLLOWED))
}

/// Brings the index up to date with what changed while this instance was
/// down: the projection that follows the outbox starts at the head when the
/// instance starts, so catalog changes committed in between (through other
/// instances) are looked at again here. Idempotent, like `refresh`.
pub async fn catch_up(state: &AppState, since: i64) -> Result<u64, Error> {
    let since = since - CATCH_UP_MARGIN_MS;
    let mut after = None;
    let mut done = 0;
    loop {
        let ids = state.catalog.changed_since(since, after, 1_000).await?;
        let Some(last) = ids.last() else { break };
        after = Some(*last);
        for id in ids {
            refresh(state, id).await?;
            done += 1;
        }
    }
    Ok(done)
}
