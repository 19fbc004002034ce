//! [`TantivyEngine`]: the embedded adapter.
//!
//! Reads go straight to a shared `IndexReader` (lock-free; each search takes a cheap snapshot
//! `Searcher`) and run on tokio's blocking pool, since a search over a large result set is CPU work
//! that must not stall the HTTP runtime. Writes go through the single writer thread (see
//! `writer.rs`), which batches them into commits.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

use mercato_core::Error;
use tantivy::directory::MmapDirectory;
use tantivy::schema::Value;
use tantivy::{Index, IndexReader, ReloadPolicy, Searcher, TantivyDocument, TantivyError};
use tokio::sync::oneshot;

use crate::analysis::{self, QueryAnalyzer};
use crate::collector::{Candidate, PageCollector};
use crate::query::{self, Scope};
use crate::schema::{self, Fields};
use crate::writer::{Op, Request, Writer, internal};
use crate::{
    CategoryCount, Facets, Hit, MAX_LIMIT, PRICE_BANDS, PriceBand, SearchDoc, SearchEngine, SearchQuery, SearchResult,
    SearchSort, Suggestion, cursor,
};

/// Memory the writer may buffer before it flushes a segment on its own. The
/// allocator keeps what the writer once used, so this is paid in idle RSS for
/// good; 20 MB indexes 100k products in seconds all the same.
pub const WRITER_HEAP_BYTES: usize = 20_000_000;
/// Deepest result reachable by paging (offset + limit). Deeper pages cost a heap of this size per
/// query and nobody reads them; the last page before it has no `next_cursor`.
pub const MAX_RESULT_WINDOW: usize = 10_000;
/// Decompressed doc-store blocks kept per reader: hits of popular queries stay hot.
const DOC_STORE_CACHE_BLOCKS: usize = 256;

/// The embedded search engine. Cheap to share behind an `Arc`; dropping it stops the writer thread
/// (after its last commit) and releases the index directory lock.
pub struct TantivyEngine {
    inner: Arc<Inner>,
    tx: Option<mpsc::Sender<Request>>,
    writer_thread: Option<JoinHandle<()>>,
}

struct Inner {
    reader: IndexReader,
    fields: Fields,
    commits: Arc<AtomicU64>,
}

impl TantivyEngine {
    /// Creates or opens an index in `dir` (created if missing). Fails if another engine holds the
    /// directory, or if the index there was built with a different schema (delete it and reindex).
    pub fn open(dir: &Path) -> Result<TantivyEngine, Error> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::internal(format!("search index: create {}: {e}", dir.display())))?;
        let directory = MmapDirectory::open(dir)
            .map_err(|e| Error::internal(format!("search index: open {}: {e}", dir.display())))?;
        let (schema, fields) = schema::build();
        let index = Index::open_or_create(directory, schema).map_err(|e| match e {
            TantivyError::SchemaError(_) => Error::internal(format!(
                "search index at {} has a different schema: delete the directory and reindex ({e})",
                dir.display()
            )),
            e => internal(&format!("open {}", dir.display()), e),
        })?;
        Self::start(index, fields)
    }

    /// An index that lives and dies with this value (tests, development).
    pub fn in_memory() -> Result<TantivyEngine, Error> {
        let (schema, fields) = schema::build();
        Self::start(Index::create_in_ram(schema), fields)
    }

    /// Number of commits since this engine started; for metrics and to check write batching.
    pub fn commits(&self) -> u64 {
        self.inner.commits.load(Ordering::Relaxed)
    }

    fn start(index: Index, fields: Fields) -> Result<TantivyEngine, Error> {
        analysis::register(&index);
        let reader = index
            .reader_builder()
            // Reloaded by the writer after each commit, so a returned write is visible at once.
            .reload_policy(ReloadPolicy::Manual)
            .doc_store_cache_num_blocks(DOC_STORE_CACHE_BLOCKS)
            .try_into()
            .map_err(|e| internal("open reader", e))?;
        // One indexing thread: the machine has two cores and searches need the other.
        let index_writer = index.writer_with_num_threads(1, WRITER_HEAP_BYTES).map_err(|e| match e {
            TantivyError::LockFailure(..) => {
                Error::internal(format!("search index: the directory is in use by another writer: {e}"))
            }
            e => internal("open writer", e),
        })?;
        let commits = Arc::new(AtomicU64::new(0));
        let (tx, rx) = mpsc::channel();
        let writer = Writer { writer: index_writer, reader: reader.clone(), fields, commits: commits.clone() };
        let writer_thread = std::thread::Builder::new()
            .name("search-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| Error::internal(format!("search index: spawn writer thread: {e}")))?;
        Ok(TantivyEngine {
            inner: Arc::new(Inner { reader, fields, commits }),
            tx: Some(tx),
            writer_thread: Some(writer_thread),
        })
    }

    async fn write(&self, op: Op) -> Result<(), Error> {
        let stopped = || Error::internal("search index: the writer thread has stopped");
        let (reply, answer) = oneshot::channel();
        self.tx.as_ref().ok_or_else(stopped)?.send(Request { op, reply }).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Inner) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || work(&inner))
            .await
            .map_err(|e| Error::internal(format!("search task failed: {e}")))?
    }
}

impl Drop for TantivyEngine {
    fn drop(&mut self) {
        // Closing the channel lets the writer finish its batch and exit; joining makes sure the
        // directory lock is released before a new engine opens the same directory.
        drop(self.tx.take());
        if let Some(thread) = self.writer_thread.take()
            && thread.join().is_err()
        {
            tracing::error!("search writer thread panicked");
        }
    }
}

fn check_limit(limit: usize) -> Result<(), Error> {
    if limit == 0 || limit > MAX_LIMIT {
        return Err(Error::field("limit", format!("must be between 1 and {MAX_LIMIT}")));
    }
    Ok(())
}

impl Inner {
    fn search(&self, q: SearchQuery) -> Result<SearchResult, Error> {
        check_limit(q.limit)?;
        if let (Some(min), Some(max)) = (q.min_price, q.max_price)
            && min > max
        {
            return Err(Error::field("max_price", "must not be below min_price"));
        }
        let words = QueryAnalyzer::new().words(&q.q);
        let words_key = analysis::key_of_words(&words);
        let fingerprint = cursor::fingerprint(&words_key, q.category, q.min_price, q.max_price, q.sort);
        let offset = match &q.cursor {
            Some(c) => cursor::decode(c, fingerprint)?,
            None => 0,
        };
        if offset >= MAX_RESULT_WINDOW {
            return Err(Error::field("cursor", "is beyond the last reachable page"));
        }
        let keep = (offset + q.limit).min(MAX_RESULT_WINDOW);

        let text = query::text(&self.fields, &words, &words_key, Scope::All);
        let query = query::with_price(&self.fields, text, q.min_price, q.max_price);
        let collector = PageCollector {
            sort: q.sort,
            scored: q.sort == SearchSort::Relevance && !words.is_empty(),
            category: q.category,
            keep,
        };
        let searcher = self.reader.searcher();
        let fruit = searcher.search(&query, &collector).map_err(|e| internal("search", e))?;

        let page = fruit.top.get(offset..).unwrap_or_default();
        let hits = page.iter().map(|c| self.hit(&searcher, c)).collect::<Result<Vec<_>, _>>()?;
        let next_cursor =
            (keep < MAX_RESULT_WINDOW && (keep as u64) < fruit.total).then(|| cursor::encode(keep, fingerprint));

        let mut categories: Vec<CategoryCount> =
            fruit.categories.into_iter().map(|(category_id, count)| CategoryCount { category_id, count }).collect();
        categories.sort_unstable_by(|a, b| b.count.cmp(&a.count).then(a.category_id.cmp(&b.category_id)));
        let price_bands = PRICE_BANDS
            .iter()
            .enumerate()
            .map(|(i, &min)| PriceBand { min: Some(min), max: PRICE_BANDS.get(i + 1).copied(), count: fruit.bands[i] })
            .collect();

        Ok(SearchResult { hits, total: fruit.total, facets: Facets { categories, price_bands }, next_cursor })
    }

    fn suggest(&self, prefix: &str, limit: usize) -> Result<Vec<Suggestion>, Error> {
        check_limit(limit)?;
        let words = QueryAnalyzer::new().words(prefix);
        if words.is_empty() {
            return Ok(Vec::new());
        }
        let query = query::text(&self.fields, &words, &analysis::key_of_words(&words), Scope::Name);
        let collector = PageCollector { sort: SearchSort::Relevance, scored: true, category: None, keep: limit };
        let searcher = self.reader.searcher();
        let fruit = searcher.search(&query, &collector).map_err(|e| internal("suggest", e))?;
        fruit
            .top
            .iter()
            .map(|c| self.hit(&searcher, c).map(|h| Suggestion { id: h.id, slug: h.slug, name: h.name }))
            .collect()
    }

    fn hit(&self, searcher: &Searcher, c: &Candidate) -> Result<Hit, Error> {
        let doc: TantivyDocument = searcher.doc(c.addr).map_err(|e| internal("load hit", e))?;
        let f = &self.fields;
        let text = |field| doc.get_first(field).and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        let int = |field| doc.get_first(field).and_then(|v| v.as_i64()).unwrap_or_default();
        Ok(Hit {
            id: int(f.id),
            slug: text(f.slug),
            name: text(f.name),
            price: int(f.price),
            currency: text(f.currency),
            category_id: int(f.category_id),
            score: c.score,
        })
    }
}

#[async_trait::async_trait]
impl SearchEngine for TantivyEngine {
    async fn upsert(&self, docs: Vec<SearchDoc>) -> Result<(), Error> {
        if docs.is_empty() {
            return Ok(());
        }
        self.write(Op::Upsert(docs)).await
    }

    async fn delete(&self, ids: Vec<i64>) -> Result<(), Error> {
        if ids.is_empty() {
            return Ok(());
        }
        self.write(Op::Delete(ids)).await
    }

    async fn search(&self, query: SearchQuery) -> Result<SearchResult, Error> {
        self.blocking(move |inner| inner.search(query)).await
    }

    async fn suggest(&self, prefix: &str, limit: usize) -> Result<Vec<Suggestion>, Error> {
        let prefix = prefix.to_owned();
        self.blocking(move |inner| inner.suggest(&prefix, limit)).await
    }

    async fn clear(&self) -> Result<(), Error> {
        self.write(Op::Clear).await
    }

    async fn count(&self) -> Result<u64, Error> {
        Ok(self.inner.reader.searcher().num_docs())
    }
}
