//! One pass over the matches computes everything a result page needs: the exact total, both
//! facets and the top `offset + limit` hits in the requested order.
//!
//! Why one custom collector instead of Tantivy's `TopDocs` + `Count` + aggregations: the category
//! facet must ignore the category filter while everything else applies it. Running the text query
//! once without the category filter and checking the category path from a fast field per match
//! gives both views in a single walk of the postings, reading only columnar fast fields (never
//! stored documents) and allocating nothing proportional to the index size.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use std::sync::Arc;
use tantivy::collector::{Collector, SegmentCollector};

use tantivy::columnar::{Column, ColumnIndex, ColumnValues};
use tantivy::{DocAddress, DocId, Score, SegmentOrdinal, SegmentReader};

use crate::schema::{F_CATEGORY_ID, F_CATEGORY_PATH, F_CREATED_AT, F_ID, F_PRICE};
use crate::{PRICE_BANDS, SearchSort};

/// Sort key, larger is better: (primary, tie-break, tie-break). The last component is always
/// the product id so the order is total and pages never overlap.
type Key = (i64, i64, i64);

#[derive(Debug, Clone, Copy)]
pub(crate) struct Candidate {
    pub key: Key,
    pub score: Score,
    pub addr: DocAddress,
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl Eq for Candidate {}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key.cmp(&other.key)
    }
}

/// Category ids are already well-spread integers; SipHash per match would dominate the facet cost.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_i64(&mut self, n: i64) {
        self.0 = (n as u64 ^ self.0).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

pub(crate) type CategoryCounts = HashMap<i64, u64, BuildHasherDefault<IdHasher>>;

#[derive(Debug, Default)]
pub(crate) struct Fruit {
    pub total: u64,
    pub categories: CategoryCounts,
    pub bands: [u64; PRICE_BANDS.len()],
    /// Best first, at most `keep`.
    pub top: Vec<Candidate>,
}

pub(crate) struct PageCollector {
    pub sort: SearchSort,
    /// Whether the query's scores mean anything (relevance sort with a text query).
    pub scored: bool,
    pub category: Option<i64>,
    /// How many of the best matches to keep: offset + limit.
    pub keep: usize,
}

pub(crate) struct PageSegmentCollector {
    segment: SegmentOrdinal,
    sort: SearchSort,
    category: Option<i64>,
    keep: usize,
    id: Single,
    category_id: Single,
    category_path: Column<i64>,
    price: Single,
    created_at: Single,
    heap: BinaryHeap<Reverse<Candidate>>,
    fruit: Fruit,
}

fn column(reader: &SegmentReader, name: &str) -> tantivy::Result<Column<i64>> {
    Ok(reader.fast_fields().column_opt::<i64>(name)?.unwrap_or_else(|| Column::build_empty_column(reader.max_doc())))
}

/// A single-valued fast field. Every document has every single-valued field, so the column is
/// normally dense and a value is one bit-unpacking away; going through `Column::first` would
/// build a row-id iterator per read, which shows up when a query matches the whole catalog.
enum Single {
    Dense(Arc<dyn ColumnValues<i64>>),
    Sparse(Column<i64>),
}

impl Single {
    fn open(reader: &SegmentReader, name: &str) -> tantivy::Result<Single> {
        let column = column(reader, name)?;
        Ok(match column.index {
            ColumnIndex::Full => Single::Dense(column.values),
            _ => Single::Sparse(column),
        })
    }

    #[inline]
    fn get(&self, doc: DocId) -> i64 {
        match self {
            Single::Dense(values) => values.get_val(doc),
            Single::Sparse(column) => column.first(doc).unwrap_or_default(),
        }
    }
}

/// Maps a score to an integer with the same order (IEEE-754 sign-magnitude to two's complement).
fn score_key(score: Score) -> i64 {
    let bits = score.to_bits() as i32;
    i64::from(if bits < 0 { bits ^ i32::MAX } else { bits })
}

pub(crate) fn band_of(price: i64) -> Option<usize> {
    if price < PRICE_BANDS[0] {
        return None;
    }
    Some(PRICE_BANDS.iter().rposition(|&lo| price >= lo).unwrap_or(0))
}

impl Collector for PageCollector {
    type Fruit = Fruit;
    type Child = PageSegmentCollector;

    fn for_segment(&self, segment: SegmentOrdinal, reader: &SegmentReader) -> tantivy::Result<PageSegmentCollector> {
        // Without scores every relevance key ties and falls through to (newest, id): sorting by
        // newest directly gives the same order and lets the primary key reject most matches.
        let sort = if self.sort == SearchSort::Relevance && !self.scored { SearchSort::Newest } else { self.sort };
        Ok(PageSegmentCollector {
            segment,
            sort,
            category: self.category,
            keep: self.keep,
            id: Single::open(reader, F_ID)?,
            category_id: Single::open(reader, F_CATEGORY_ID)?,
            category_path: column(reader, F_CATEGORY_PATH)?,
            price: Single::open(reader, F_PRICE)?,
            created_at: Single::open(reader, F_CREATED_AT)?,
            heap: BinaryHeap::with_capacity(self.keep.min(1024) + 1),
            fruit: Fruit::default(),
        })
    }

    fn requires_scoring(&self) -> bool {
        self.scored
    }

    fn merge_fruits(&self, fruits: Vec<Fruit>) -> tantivy::Result<Fruit> {
        let mut out = Fruit::default();
        for f in fruits {
            out.total += f.total;
            for (k, v) in f.categories {
                *out.categories.entry(k).or_default() += v;
            }
            for (acc, v) in out.bands.iter_mut().zip(f.bands) {
                *acc += v;
            }
            out.top.extend(f.top);
        }
        out.top.sort_unstable_by(|a, b| b.cmp(a));
        out.top.truncate(self.keep);
        Ok(out)
    }
}

impl SegmentCollector for PageSegmentCollector {
    type Fruit = Fruit;

    fn collect(&mut self, doc: DocId, score: Score) {
        let category_id = self.category_id.get(doc);
        *self.fruit.categories.entry(category_id).or_default() += 1;
        if let Some(wanted) = self.category
            && !self.category_path.values_for_doc(doc).any(|c| c == wanted)
        {
            return;
        }
        let price = self.price.get(doc);
        if let Some(band) = band_of(price) {
            self.fruit.bands[band] += 1;
        }
        self.fruit.total += 1;
        if self.keep == 0 {
            return;
        }

        let primary = match self.sort {
            SearchSort::Relevance => score_key(score),
            // Bitwise not reverses the order without overflowing at i64::MIN.
            SearchSort::PriceAsc => !price,
            SearchSort::PriceDesc => price,
            SearchSort::Newest => self.created_at.get(doc),
        };
        // Most matches of a large result set lose on the primary key alone; skip their other reads.
        if self.heap.len() >= self.keep
            && let Some(Reverse(worst)) = self.heap.peek()
            && primary < worst.key.0
        {
            return;
        }
        let id = self.id.get(doc);
        let key = match self.sort {
            SearchSort::Newest => (primary, id, 0),
            _ => (primary, self.created_at.get(doc), id),
        };
        let candidate = Candidate { key, score, addr: DocAddress::new(self.segment, doc) };
        if self.heap.len() < self.keep {
            self.heap.push(Reverse(candidate));
        } else if let Some(mut worst) = self.heap.peek_mut()
            && candidate.key > worst.0.key
        {
            *worst = Reverse(candidate);
        }
    }

    fn harvest(mut self) -> Fruit {
        self.fruit.top = self.heap.into_iter().map(|Reverse(c)| c).collect();
        self.fruit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_keys_keep_float_order() {
        let scores = [-3.5f32, -0.0, 0.0, 0.001, 1.0, 7.25, 1e9];
        for pair in scores.windows(2) {
            assert!(score_key(pair[0]) <= score_key(pair[1]), "{pair:?}");
        }
    }

    #[test]
    fn bands_are_min_inclusive_max_exclusive() {
        assert_eq!(band_of(-1), None);
        assert_eq!(band_of(0), Some(0));
        assert_eq!(band_of(999), Some(0));
        assert_eq!(band_of(1_000), Some(1));
        assert_eq!(band_of(2_499), Some(1));
        assert_eq!(band_of(24_999), Some(4));
        assert_eq!(band_of(25_000), Some(5));
        assert_eq!(band_of(i64::MAX), Some(5));
    }
}
