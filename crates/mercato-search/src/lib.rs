//! Product search for Mercato: the [`SearchEngine`] port and [`TantivyEngine`], its embedded adapter.
//!
//! Why a port: stage 1 runs as one process, so the index lives next to the binary (Tantivy, in a
//! directory or in memory) and costs no extra service. Later stages swap in an external engine
//! (Meilisearch, OpenSearch) behind the same trait; callers (the HTTP edge, the catalog event
//! subscriber that keeps the index fresh, the reindex job) only ever see the types in this file.
//!
//! Why the index is not the source of truth: everything in a [`SearchDoc`] is derived from the
//! catalog, so losing or clearing the index loses nothing; a full reindex (`clear` + `upsert`)
//! rebuilds it. That is also why an index whose schema does not match this code is reported as an
//! error rather than migrated: delete the directory and reindex.
//!
//! Semantics every adapter must keep (the embedded one is tested against them):
//! - the text query matches a product only if every query word matches (exact or, for words of 5+
//!   letters, one typo away); the last word also matches as a prefix, for search-as-you-type;
//! - the category facet ignores the category filter (so a UI can show sibling counts), while the
//!   price bands and `total` apply it;
//! - cursors are bound to the query they came from;
//! - a write is visible to search when its call returns.

mod analysis;
mod collector;
mod cursor;
mod engine;
mod query;
mod schema;
mod writer;

use mercato_core::Error;

pub use engine::{MAX_RESULT_WINDOW, TantivyEngine, WRITER_HEAP_BYTES};

/// Largest page a caller may ask for.
pub const MAX_LIMIT: usize = 100;

/// What the index knows about one product. Built by the catalog from a product, its variants and
/// its category path; replaced whole on every change.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchDoc {
    /// Product id.
    pub id: i64,
    pub slug: String,
    pub name: String,
    pub description: String,
    /// The product's (leaf) category.
    pub category_id: i64,
    /// Root..=leaf category ids, so a filter on any ancestor matches.
    pub category_path: Vec<i64>,
    /// Names of root..=leaf, searchable text.
    pub category_names: Vec<String>,
    /// Variant option values, e.g. `["Black", "M", "128 GB"]`, searchable text.
    pub option_values: Vec<String>,
    /// Lowest variant price, minor units.
    pub price: i64,
    pub currency: String,
    /// Epoch milliseconds.
    pub created_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SearchSort {
    /// Best match first; ties (and every hit of an empty query) newest first.
    #[default]
    Relevance,
    PriceAsc,
    PriceDesc,
    Newest,
}

#[derive(Debug, Clone, Default)]
pub struct SearchQuery {
    /// Free text. Empty (or only punctuation) means every product, with filters applied.
    /// Only the first 200 characters and the first 10 words are used.
    pub q: String,
    /// Any category id on the product's path (an ancestor or the leaf itself).
    pub category: Option<i64>,
    /// Inclusive, minor units.
    pub min_price: Option<i64>,
    /// Inclusive, minor units.
    pub max_price: Option<i64>,
    pub sort: SearchSort,
    /// 1..=100.
    pub limit: usize,
    /// Opaque, from a previous [`SearchResult::next_cursor`] of the same query.
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub id: i64,
    pub slug: String,
    pub name: String,
    pub price: i64,
    pub currency: String,
    pub category_id: i64,
    /// Relevance score; only meaningful (non-zero) for [`SearchSort::Relevance`] with a text query.
    pub score: f32,
}

/// Matching products per leaf category, over all matches (not just the page).
#[derive(Debug, Clone, PartialEq)]
pub struct CategoryCount {
    pub category_id: i64,
    pub count: u64,
}

/// A price band: `min` inclusive, `max` exclusive, `None` = open.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceBand {
    pub min: Option<i64>,
    pub max: Option<i64>,
    pub count: u64,
}

/// Facet counts over every match.
///
/// `categories` applies the text query and the price filter but NOT the category filter, so a UI
/// that has drilled into one category can still show how many matches its siblings have. It is
/// sorted by count (descending), then category id. `price_bands` applies every filter, including
/// the category, and always lists the six bands of [`PRICE_BANDS`] in order, empty ones included.
#[derive(Debug, Clone, PartialEq)]
pub struct Facets {
    pub categories: Vec<CategoryCount>,
    pub price_bands: Vec<PriceBand>,
}

/// Lower bounds (minor units) of the price bands; each band ends where the next starts, the last
/// is open. Prices below 0 fall in no band.
pub const PRICE_BANDS: [i64; 6] = [0, 1_000, 2_500, 5_000, 10_000, 25_000];

#[derive(Debug, Clone, PartialEq)]
pub struct SearchResult {
    pub hits: Vec<Hit>,
    /// Exact number of matches with every filter applied.
    pub total: u64,
    pub facets: Facets,
    /// `None` on the last page (or at [`MAX_RESULT_WINDOW`]).
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Suggestion {
    pub id: i64,
    pub slug: String,
    pub name: String,
}

/// The search port: the embedded adapter [`TantivyEngine`], and later an external engine adapter.
#[async_trait::async_trait]
pub trait SearchEngine: Send + Sync {
    /// Insert or replace documents by id. When this returns, the change is visible to search (it
    /// has been committed and the reader reloaded).
    async fn upsert(&self, docs: Vec<SearchDoc>) -> Result<(), Error>;
    /// Remove documents by id; unknown ids are ignored. Visible when this returns.
    async fn delete(&self, ids: Vec<i64>) -> Result<(), Error>;
    async fn search(&self, query: SearchQuery) -> Result<SearchResult, Error>;
    /// Autocomplete: products whose name has a word starting with the last word of `prefix` (and
    /// contains the earlier words, typo-tolerant as in search), best first. `limit` is 1..=100.
    async fn suggest(&self, prefix: &str, limit: usize) -> Result<Vec<Suggestion>, Error>;
    /// Remove everything (before a full reindex). Visible when this returns.
    async fn clear(&self) -> Result<(), Error>;
    /// Number of documents currently visible to search.
    async fn count(&self) -> Result<u64, Error>;
}
