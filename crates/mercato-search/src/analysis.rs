//! Text analysis shared by indexing and querying.
//!
//! Two analyzers, because stemming and prefix matching do not mix: a stemmed index term is not
//! always a prefix of the word the shopper is typing ("battery" is indexed as "batteri"). Ranked
//! matching uses the stemmed analyzer; prefix matching (search-as-you-type, suggestions) runs
//! against separate fields indexed with the unstemmed one.

use tantivy::Index;
use tantivy::tokenizer::{
    AsciiFoldingFilter, Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, TextAnalyzer, TokenStream,
};

/// Lowercased, ASCII-folded, English-stemmed words.
pub(crate) const STEMMED: &str = "mercato_stemmed";
/// Lowercased, ASCII-folded words, not stemmed.
pub(crate) const PLAIN: &str = "mercato_plain";

/// Only this much of a query is looked at: longer input is either abuse or a paste accident, and
/// every word costs automaton walks over the term dictionaries.
pub(crate) const MAX_QUERY_CHARS: usize = 200;
pub(crate) const MAX_QUERY_WORDS: usize = 10;
/// Words longer than this are dropped on both sides (no real product word is this long, and long
/// tokens bloat the term dictionary).
const MAX_TOKEN_BYTES: usize = 40;
/// Words with at least this many characters also match one edit away.
pub(crate) const FUZZY_MIN_CHARS: usize = 5;

fn builder() -> tantivy::tokenizer::TextAnalyzerBuilder<impl tantivy::tokenizer::Tokenizer> {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(MAX_TOKEN_BYTES))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
}

pub(crate) fn stemmed() -> TextAnalyzer {
    builder().filter(Stemmer::new(Language::English)).build()
}

pub(crate) fn plain() -> TextAnalyzer {
    builder().build()
}

/// Tokenizers are not persisted with the index: every opened index must get them again.
pub(crate) fn register(index: &Index) {
    index.tokenizers().register(STEMMED, stemmed());
    index.tokenizers().register(PLAIN, plain());
}

/// One query word in both forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Word {
    /// As typed, lowercased and folded: used for prefix matching and the length rule.
    pub plain: String,
    /// As indexed in the ranked fields.
    pub stem: String,
}

impl Word {
    pub(crate) fn fuzzy(&self) -> bool {
        self.plain.chars().count() >= FUZZY_MIN_CHARS
    }
}

/// Cheap to build per query (the analyzers are a handful of small boxes); `TextAnalyzer` needs
/// `&mut` to tokenize, so a shared instance would need a lock on the hot path.
pub(crate) struct QueryAnalyzer {
    plain: TextAnalyzer,
    stemmed: TextAnalyzer,
}

impl QueryAnalyzer {
    pub(crate) fn new() -> Self {
        QueryAnalyzer { plain: plain(), stemmed: stemmed() }
    }

    /// The words of a query, capped to [`MAX_QUERY_CHARS`] and [`MAX_QUERY_WORDS`].
    pub(crate) fn words(&mut self, q: &str) -> Vec<Word> {
        let q = truncate_chars(q, MAX_QUERY_CHARS);
        let mut plains = Vec::new();
        let mut stream = self.plain.token_stream(q);
        while plains.len() < MAX_QUERY_WORDS && stream.advance() {
            plains.push(stream.token().text.clone());
        }
        drop(stream);
        plains
            .into_iter()
            .map(|plain| {
                let stem = {
                    let mut stream = self.stemmed.token_stream(&plain);
                    if stream.advance() { stream.token().text.clone() } else { plain.clone() }
                };
                Word { plain, stem }
            })
            .collect()
    }
}

/// A name reduced to its plain words joined by single spaces: the key of the exact-name boost,
/// so "Apple  iPhone-15" and "apple iphone 15" are the same name.
pub(crate) fn name_key(analyzer: &mut TextAnalyzer, name: &str) -> String {
    let mut key = String::new();
    let mut stream = analyzer.token_stream(truncate_chars(name, MAX_QUERY_CHARS));
    while stream.advance() {
        if !key.is_empty() {
            key.push(' ');
        }
        key.push_str(&stream.token().text);
    }
    key
}

pub(crate) fn key_of_words(words: &[Word]) -> String {
    words.iter().map(|w| w.plain.as_str()).collect::<Vec<_>>().join(" ")
}

fn truncate_chars(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_folded_stemmed_and_capped() {
        let mut a = QueryAnalyzer::new();
        let w = a.words("Crème-BRÛLÉE batteries!!");
        let plains: Vec<_> = w.iter().map(|w| w.plain.as_str()).collect();
        assert_eq!(plains, ["creme", "brulee", "batteries"]);
        assert_eq!(w[2].stem, "batteri");

        let long = "word ".repeat(50);
        assert_eq!(a.words(&long).len(), MAX_QUERY_WORDS);
        assert!(a.words("!!! ... ---").is_empty());
        // Multi-byte characters at the cut must not split a char.
        let cut = "é".repeat(300);
        assert_eq!(a.words(&cut).len(), 0, "a 200-char token is longer than the token limit");
    }

    #[test]
    fn name_key_normalizes_spacing_and_punctuation() {
        let mut p = plain();
        assert_eq!(name_key(&mut p, "Apple  iPhone-15 (Pro)"), "apple iphone 15 pro");
    }
}
