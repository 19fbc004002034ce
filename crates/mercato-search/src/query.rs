//! Query words to Tantivy queries.
//!
//! Every word is a required clause (AND), itself a disjunction over the searchable fields of:
//! the exact stemmed term (BM25, field-boosted), the same term one edit away for words of 5+
//! letters, and, for the last word, the plain word as a prefix. Fuzzy and prefix matches are
//! constant-scored at a fraction of the field boost; a document matching exactly also matches the
//! fuzzy and prefix clauses, so it always outscores one that only matches approximately in the
//! same field. A whole-name match adds a large bonus so that typing a product's exact name puts it
//! first even when a longer name repeats the same words.

use std::ops::Bound;

use tantivy::Term;
use tantivy::query::{
    AllQuery, BooleanQuery, BoostQuery, ConstScoreQuery, FuzzyTermQuery, Occur, Query, RangeQuery, TermQuery,
};
use tantivy::schema::{Field, IndexRecordOption};

use crate::analysis::Word;
use crate::schema::Fields;

const NAME_BOOST: f32 = 4.0;
const TAG_BOOST: f32 = 1.5;
const DESCRIPTION_BOOST: f32 = 1.0;
/// Share of the field boost a typo match gets (constant score, no BM25).
const FUZZY_SHARE: f32 = 0.3;
/// Share of the field boost a prefix match gets (constant score, no BM25).
const PREFIX_SHARE: f32 = 0.5;
/// Whole-name bonus; larger than any realistic sum of per-word BM25 scores.
const NAME_KEY_BOOST: f32 = 50.0;

/// Which fields a word is matched against.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Name, category names, option values, description.
    All,
    /// Name only (suggestions).
    Name,
}

pub(crate) fn text(f: &Fields, words: &[Word], name_key: &str, scope: Scope) -> Box<dyn Query> {
    if words.is_empty() {
        return Box::new(AllQuery);
    }
    let ranked: &[(Field, f32)] = match scope {
        Scope::All => &[
            (f.name, NAME_BOOST),
            (f.category_names, TAG_BOOST),
            (f.option_values, TAG_BOOST),
            (f.description, DESCRIPTION_BOOST),
        ],
        Scope::Name => &[(f.name, NAME_BOOST)],
    };
    let prefixed: &[(Field, f32)] = match scope {
        // Descriptions are long prose: a short prefix there would expand to thousands of terms
        // for little gain, so search-as-you-type looks at names and tags only.
        Scope::All => &[(f.name_plain, NAME_BOOST), (f.tags_plain, TAG_BOOST)],
        Scope::Name => &[(f.name_plain, NAME_BOOST)],
    };

    let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::with_capacity(words.len() + 1);
    for (i, word) in words.iter().enumerate() {
        let last = i + 1 == words.len();
        let mut any: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for &(field, boost) in ranked {
            let term = Term::from_field_text(field, &word.stem);
            if word.fuzzy() {
                let fuzzy = FuzzyTermQuery::new(term.clone(), 1, true);
                any.push((Occur::Should, Box::new(BoostQuery::new(Box::new(fuzzy), boost * FUZZY_SHARE))));
            }
            let exact = TermQuery::new(term, IndexRecordOption::WithFreqs);
            any.push((Occur::Should, Box::new(BoostQuery::new(Box::new(exact), boost))));
        }
        if last {
            for &(field, boost) in prefixed {
                let prefix = FuzzyTermQuery::new_prefix(Term::from_field_text(field, &word.plain), 0, false);
                any.push((Occur::Should, Box::new(BoostQuery::new(Box::new(prefix), boost * PREFIX_SHARE))));
            }
        }
        clauses.push((Occur::Must, Box::new(BooleanQuery::new(any))));
    }
    if !name_key.is_empty() {
        let exact_name = TermQuery::new(Term::from_field_text(f.name_key, name_key), IndexRecordOption::Basic);
        clauses.push((Occur::Should, Box::new(ConstScoreQuery::new(Box::new(exact_name), NAME_KEY_BOOST))));
    }
    Box::new(BooleanQuery::new(clauses))
}

/// Adds the price range (inclusive) as a zero-scored filter, so it never shifts relevance.
pub(crate) fn with_price(f: &Fields, text: Box<dyn Query>, min: Option<i64>, max: Option<i64>) -> Box<dyn Query> {
    if min.is_none() && max.is_none() {
        return text;
    }
    let bound = |v: Option<i64>| match v {
        Some(v) => Bound::Included(Term::from_field_i64(f.price, v)),
        None => Bound::Unbounded,
    };
    let range = ConstScoreQuery::new(Box::new(RangeQuery::new(bound(min), bound(max))), 0.0);
    Box::new(BooleanQuery::new(vec![(Occur::Must, text), (Occur::Must, Box::new(range))]))
}
