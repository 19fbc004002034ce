//! The index layout.
//!
//! Filters, sorts and facets read columnar fast fields (price, category, created_at), never
//! stored documents: the stored part is only what a hit shows, read for the page alone.
//! Descriptions are indexed but not stored, which keeps the doc store (and its cache) small.

use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, Schema, TantivyDocument, TextFieldIndexing, TextOptions,
};
use tantivy::tokenizer::TextAnalyzer;

use crate::SearchDoc;
use crate::analysis::{self, PLAIN, STEMMED};

#[derive(Debug, Clone, Copy)]
pub(crate) struct Fields {
    pub id: Field,
    pub slug: Field,
    /// Ranked, stemmed.
    pub name: Field,
    /// Unstemmed words of the name, for prefix matching.
    pub name_plain: Field,
    /// The whole normalized name as one term, for the exact-name boost.
    pub name_key: Field,
    pub category_id: Field,
    /// Multi-valued: every id on the category path.
    pub category_path: Field,
    pub category_names: Field,
    pub option_values: Field,
    /// Unstemmed category names and option values, for prefix matching.
    pub tags_plain: Field,
    pub description: Field,
    pub price: Field,
    pub currency: Field,
    pub created_at: Field,
}

pub(crate) const F_ID: &str = "id";
pub(crate) const F_CATEGORY_ID: &str = "category_id";
pub(crate) const F_CATEGORY_PATH: &str = "category_path";
pub(crate) const F_PRICE: &str = "price";
pub(crate) const F_CREATED_AT: &str = "created_at";

pub(crate) fn build() -> (Schema, Fields) {
    let ranked = |stored: bool| {
        let opts = TextOptions::default().set_indexing_options(
            TextFieldIndexing::default().set_tokenizer(STEMMED).set_index_option(IndexRecordOption::WithFreqs),
        );
        if stored { opts.set_stored() } else { opts }
    };
    // Prefix-only fields need no frequencies or norms: their matches are constant-scored.
    let plain = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(PLAIN)
            .set_index_option(IndexRecordOption::Basic)
            .set_fieldnorms(false),
    );
    let key = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer("raw")
            .set_index_option(IndexRecordOption::Basic)
            .set_fieldnorms(false),
    );

    let mut b = Schema::builder();
    let fields = Fields {
        // Indexed so that an upsert can delete the previous version by term.
        id: b.add_i64_field(F_ID, INDEXED | FAST | STORED),
        slug: b.add_text_field("slug", STORED),
        name: b.add_text_field("name", ranked(true)),
        name_plain: b.add_text_field("name_plain", plain.clone()),
        name_key: b.add_text_field("name_key", key),
        category_id: b.add_i64_field(F_CATEGORY_ID, FAST | STORED),
        category_path: b.add_i64_field(F_CATEGORY_PATH, FAST),
        category_names: b.add_text_field("category_names", ranked(false)),
        option_values: b.add_text_field("option_values", ranked(false)),
        tags_plain: b.add_text_field("tags_plain", plain),
        description: b.add_text_field("description", ranked(false)),
        price: b.add_i64_field(F_PRICE, FAST | STORED),
        currency: b.add_text_field("currency", STORED),
        created_at: b.add_i64_field(F_CREATED_AT, FAST),
    };
    (b.build(), fields)
}

/// Turns a [`SearchDoc`] into an index document. `plain` is the unstemmed analyzer, used to build
/// the exact-name key the same way queries build theirs.
pub(crate) fn to_document(f: &Fields, plain: &mut TextAnalyzer, d: &SearchDoc) -> TantivyDocument {
    let mut doc = TantivyDocument::new();
    doc.add_i64(f.id, d.id);
    doc.add_text(f.slug, &d.slug);
    doc.add_text(f.name, &d.name);
    doc.add_text(f.name_plain, &d.name);
    let key = analysis::name_key(plain, &d.name);
    if !key.is_empty() {
        doc.add_text(f.name_key, key);
    }
    doc.add_i64(f.category_id, d.category_id);
    for id in &d.category_path {
        doc.add_i64(f.category_path, *id);
    }
    // The leaf may be missing from a carelessly built path; filtering by it must still work.
    if !d.category_path.contains(&d.category_id) {
        doc.add_i64(f.category_path, d.category_id);
    }
    for name in &d.category_names {
        doc.add_text(f.category_names, name);
        doc.add_text(f.tags_plain, name);
    }
    for value in &d.option_values {
        doc.add_text(f.option_values, value);
        doc.add_text(f.tags_plain, value);
    }
    doc.add_text(f.description, &d.description);
    doc.add_i64(f.price, d.price);
    doc.add_text(f.currency, &d.currency);
    doc.add_i64(f.created_at, d.created_at);
    doc
}
