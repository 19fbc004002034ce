//! Relevance, filters, sorts, facets, pagination and input handling against a small catalog.

mod common;

use common::*;
use mercato_core::ErrorCode;
use mercato_search::{PriceBand, SearchEngine, SearchQuery, SearchSort, TantivyEngine};

#[tokio::test]
async fn exact_product_name_ranks_first() {
    let engine = engine_with_catalog().await;
    // Product 5 repeats every word of product 4's name, and more.
    for (q, want) in [("Apple iPhone 15", 4), ("apple iphone 15", 4), ("Leather Boots", 10), ("Coffee Mug", 12)] {
        let hits = search_ids(&engine, query(q)).await;
        assert_eq!(hits.first(), Some(&want), "{q}: {hits:?}");
    }
    let hits = search_ids(&engine, query("Apple iPhone 15 Pro Max Case for iPhone 15")).await;
    assert_eq!(hits, vec![5]);
}

#[tokio::test]
async fn name_matches_outrank_category_option_and_description_matches() {
    let engine = engine_with_catalog().await;
    let hits = search_ids(&engine, query("laptop")).await;
    // 2 and 3 have it in the name, 1 in its category name, 13 only in the description.
    let pos = |id| hits.iter().position(|&h| h == id).unwrap_or_else(|| panic!("{id} missing from {hits:?}"));
    assert!(pos(2) < pos(1) && pos(3) < pos(1), "{hits:?}");
    assert!(pos(1) < pos(13), "{hits:?}");

    // "brown" is an option value of 10 and a (multi-word) option value of 13; both are found.
    assert_eq!(sorted(search_ids(&engine, query("brown")).await), vec![10, 13]);
    // Category names are searchable text.
    assert_eq!(sorted(search_ids(&engine, query("kitchen")).await), vec![11, 12, 14]);
}

#[tokio::test]
async fn typos_of_long_words_match_below_exact_matches() {
    let engine = engine_with_catalog().await;
    // Substitution, transposition (one edit), deletion.
    assert!(search_ids(&engine, query("labtop")).await.contains(&2));
    assert!(search_ids(&engine, query("keybaord")).await.contains(&13));
    assert_eq!(sorted(search_ids(&engine, query("iphnoe")).await), vec![4, 5]);
    assert!(search_ids(&engine, query("samsng galaxy")).await.contains(&6));
    // Two edits is too many.
    assert!(!search_ids(&engine, query("lbatop")).await.contains(&2));

    // "coffee" is one edit from "toffee": both match, the exact one first.
    let hits = search_ids(&engine, query("coffee")).await;
    assert_eq!(hits, vec![12, 14]);

    // Words under 5 letters match exactly only (except as the last word's prefix).
    assert!(search_ids(&engine, query("mgu")).await.is_empty());
    assert!(search_ids(&engine, query("bots leather")).await.is_empty());
    assert_eq!(search_ids(&engine, query("boots leather")).await, vec![10]);
}

#[tokio::test]
async fn every_word_must_match() {
    let engine = engine_with_catalog().await;
    assert_eq!(search_ids(&engine, query("black laptop")).await, vec![2]);
    assert_eq!(search_ids(&engine, query("apple case")).await, vec![5]);
    assert_eq!(sorted(search_ids(&engine, query("black 42")).await), vec![9]);
    assert!(search_ids(&engine, query("apple boots")).await.is_empty());
}

#[tokio::test]
async fn last_word_matches_as_prefix() {
    let engine = engine_with_catalog().await;
    // 1 matches through its category "Laptops".
    assert_eq!(sorted(search_ids(&engine, query("lapt")).await), vec![1, 2, 3]);
    assert_eq!(search_ids(&engine, query("mac")).await, vec![1]);
    assert_eq!(search_ids(&engine, query("dell xp")).await, vec![2]);
    assert_eq!(sorted(search_ids(&engine, query("apple iph")).await), vec![4, 5]);
    // Only the last word is a prefix.
    assert!(search_ids(&engine, query("iph apple")).await.is_empty());
}

#[tokio::test]
async fn category_filter_matches_any_ancestor() {
    let engine = engine_with_catalog().await;
    let q = |category| SearchQuery { category: Some(category), ..query("") };
    assert_eq!(sorted(search_ids(&engine, q(ELECTRONICS)).await), vec![1, 2, 3, 4, 5, 6, 7, 13]);
    assert_eq!(sorted(search_ids(&engine, q(LAPTOPS)).await), vec![1, 2, 3]);
    assert_eq!(sorted(search_ids(&engine, q(SHOES)).await), vec![9, 10]);
    assert!(search_ids(&engine, q(999)).await.is_empty());
    let black_electronics = SearchQuery { category: Some(ELECTRONICS), ..query("black") };
    assert_eq!(sorted(search_ids(&engine, black_electronics).await), vec![2, 4, 7]);
}

#[tokio::test]
async fn price_range_is_inclusive() {
    let engine = engine_with_catalog().await;
    let q = SearchQuery { min_price: Some(1_999), max_price: Some(2_500), ..query("") };
    assert_eq!(sorted(search_ids(&engine, q).await), vec![3, 5, 8]);
    let q = SearchQuery { min_price: Some(100_000), ..query("") };
    assert_eq!(sorted(search_ids(&engine, q).await), vec![1, 2]);
    let q = SearchQuery { max_price: Some(899), ..query("") };
    assert_eq!(sorted(search_ids(&engine, q).await), vec![12, 14]);
    let q = SearchQuery { max_price: Some(5_000), ..query("apple") };
    assert_eq!(search_ids(&engine, q).await, vec![5]);
}

#[tokio::test]
async fn sorts() {
    let engine = engine_with_catalog().await;
    let all = catalog();
    let by = |sort| SearchQuery { sort, ..query("") };

    let mut want: Vec<_> = all.iter().map(|d| (d.price, -d.created_at, d.id)).collect();
    want.sort();
    let hits = engine.search(by(SearchSort::PriceAsc)).await.unwrap();
    assert_eq!(ids(&hits), want.iter().map(|w| w.2).collect::<Vec<_>>());
    let prices: Vec<_> = hits.hits.iter().map(|h| h.price).collect();
    assert!(prices.windows(2).all(|w| w[0] <= w[1]), "{prices:?}");

    let hits = engine.search(by(SearchSort::PriceDesc)).await.unwrap();
    let prices: Vec<_> = hits.hits.iter().map(|h| h.price).collect();
    assert!(prices.windows(2).all(|w| w[0] >= w[1]), "{prices:?}");
    // Equal prices (5 and 8 cost 1999): newest first.
    let pos = |id| ids(&hits).iter().position(|&h| h == id).unwrap();
    assert!(pos(8) < pos(5));

    let newest: Vec<i64> = (1..=14).rev().collect();
    assert_eq!(search_ids(&engine, by(SearchSort::Newest)).await, newest);
    // Relevance without text: every hit ties, so newest first.
    assert_eq!(search_ids(&engine, by(SearchSort::Relevance)).await, newest);

    // Text + price sort: only matches, in price order.
    let q = SearchQuery { sort: SearchSort::PriceAsc, ..query("apple") };
    assert_eq!(search_ids(&engine, q).await, vec![5, 4, 1]);
}

#[tokio::test]
async fn relevance_ties_are_broken_by_newest() {
    let engine = TantivyEngine::in_memory().unwrap();
    engine
        .upsert(vec![
            doc(1, "Enamel Mug", KITCHEN, &["Blue"], 1_200, 5_000, "Camping mug."),
            doc(2, "Enamel Mug", KITCHEN, &["Blue"], 1_200, 9_000, "Camping mug."),
            doc(3, "Enamel Mug", KITCHEN, &["Blue"], 1_200, 7_000, "Camping mug."),
        ])
        .await
        .unwrap();
    let result = engine.search(query("enamel mug")).await.unwrap();
    assert_eq!(ids(&result), vec![2, 3, 1]);
    assert!(result.hits.iter().all(|h| h.score > 0.0 && h.score == result.hits[0].score));
}

#[tokio::test]
async fn facets_count_all_matches() {
    let engine = engine_with_catalog().await;
    let all = catalog();

    // Category facet ignores the category filter (sibling counts); bands and total apply it.
    let result = engine.search(SearchQuery { category: Some(CLOTHING), limit: 1, ..query("") }).await.unwrap();
    assert_eq!(result.total, 3);
    assert_eq!(result.hits.len(), 1);
    let mut want: std::collections::BTreeMap<i64, u64> = Default::default();
    for d in &all {
        *want.entry(d.category_id).or_default() += 1;
    }
    let got: std::collections::BTreeMap<i64, u64> =
        result.facets.categories.iter().map(|c| (c.category_id, c.count)).collect();
    assert_eq!(got, want);
    // Sorted by count, then id: laptops, phones and kitchen have 3 each.
    assert_eq!(result.facets.categories[0], mercato_search::CategoryCount { category_id: LAPTOPS, count: 3 });
    let bands: Vec<u64> = result.facets.price_bands.iter().map(|b| b.count).collect();
    assert_eq!(bands, vec![0, 1, 0, 0, 2, 0]); // 1999, 11999, 15999
    assert_eq!(result.facets.price_bands[0], PriceBand { min: Some(0), max: Some(1_000), count: 0 });
    assert_eq!(result.facets.price_bands[5], PriceBand { min: Some(25_000), max: None, count: 0 });

    // Text and price filters apply to both facets.
    let q = SearchQuery { min_price: Some(10_000), category: Some(ELECTRONICS), ..query("black") };
    let result = engine.search(q).await.unwrap();
    assert_eq!(sorted(ids(&result)), vec![2, 4, 7]);
    let got: Vec<(i64, u64)> = result.facets.categories.iter().map(|c| (c.category_id, c.count)).collect();
    assert_eq!(got, vec![(LAPTOPS, 1), (PHONES, 1), (HEADPHONES, 1), (SHOES, 1)]);
    let bands: Vec<u64> = result.facets.price_bands.iter().map(|b| b.count).collect();
    assert_eq!(bands, vec![0, 0, 0, 0, 0, 3]);
    assert_eq!(result.total, 3);

    // Facets cover every match, not just the page.
    let result = engine.search(SearchQuery { limit: 2, ..query("") }).await.unwrap();
    assert_eq!(result.total, 14);
    assert_eq!(result.facets.categories.iter().map(|c| c.count).sum::<u64>(), 14);
    assert_eq!(result.facets.price_bands.iter().map(|b| b.count).sum::<u64>(), 14);
}

#[tokio::test]
async fn cursor_pages_through_everything_exactly_once() {
    let engine = engine_with_catalog().await;
    for sort in [SearchSort::Relevance, SearchSort::PriceAsc, SearchSort::PriceDesc, SearchSort::Newest] {
        let mut seen = Vec::new();
        let mut cursor = None;
        let mut pages = 0;
        loop {
            let q = SearchQuery { sort, limit: 4, cursor: cursor.take(), ..query("") };
            let page = engine.search(q).await.unwrap();
            assert_eq!(page.total, 14);
            seen.extend(ids(&page));
            pages += 1;
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(pages, 4, "{sort:?}");
        assert_eq!(seen.len(), 14, "{sort:?}");
        assert_eq!(sorted(seen), (1..=14).collect::<Vec<_>>(), "{sort:?}");
    }
    // An exactly full last page has no cursor.
    let page = engine.search(SearchQuery { limit: 14, ..query("") }).await.unwrap();
    assert!(page.next_cursor.is_none());
    let page = engine.search(SearchQuery { limit: 7, ..query("") }).await.unwrap();
    let second = SearchQuery { limit: 7, cursor: page.next_cursor.clone(), ..query("") };
    let second = engine.search(second).await.unwrap();
    assert_eq!(second.hits.len(), 7);
    assert!(second.next_cursor.is_none());

    // A cursor only works for the query it came from (page size may change).
    let cursor = page.next_cursor.unwrap();
    let ok = SearchQuery { limit: 3, cursor: Some(cursor.clone()), ..query("") };
    assert_eq!(engine.search(ok).await.unwrap().hits.len(), 3);
    for other in [
        SearchQuery { cursor: Some(cursor.clone()), ..query("apple") },
        SearchQuery { cursor: Some(cursor.clone()), category: Some(HOME), ..query("") },
        SearchQuery { cursor: Some(cursor.clone()), sort: SearchSort::PriceAsc, ..query("") },
        SearchQuery { cursor: Some(cursor.clone()), min_price: Some(1), ..query("") },
        SearchQuery { cursor: Some("garbage".into()), ..query("") },
        SearchQuery { cursor: Some(String::new()), ..query("") },
        SearchQuery { cursor: Some("x".repeat(100_000)), ..query("") },
    ] {
        let err = engine.search(other).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::Validation);
        assert_eq!(err.details.unwrap()["errors"][0]["field"], "cursor");
    }
}

#[tokio::test]
async fn invalid_input_is_a_field_error() {
    let engine = engine_with_catalog().await;
    for limit in [0, 101, usize::MAX] {
        let err = engine.search(SearchQuery { limit, ..query("apple") }).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::Validation);
        assert_eq!(err.details.unwrap()["errors"][0]["field"], "limit");
        assert!(engine.suggest("app", limit).await.is_err());
    }
    assert_eq!(engine.search(SearchQuery { limit: 100, ..query("apple") }).await.unwrap().total, 3);
    let err = engine.search(SearchQuery { min_price: Some(10), max_price: Some(9), ..query("") }).await.unwrap_err();
    assert_eq!(err.details.unwrap()["errors"][0]["field"], "max_price");
}

#[tokio::test]
async fn hostile_queries_do_not_panic() {
    let engine = engine_with_catalog().await;
    let long_word = "a".repeat(10_000);
    let many_words = "apple ".repeat(5_000);
    let unicode = "🍎📱 ÄÖÜ ß 日本語 \u{0} \u{202e}".repeat(100);
    for q in [
        "!!!???",
        "\"(((apple)))\"",
        "apple AND NOT OR -case +iphone",
        "a*b? title:foo [1 TO 5] {x} ~2 ^3 \\",
        "' OR 1=1 --",
        long_word.as_str(),
        many_words.as_str(),
        unicode.as_str(),
        "       ",
        "\n\t\r",
    ] {
        let result = engine.search(query(q)).await.unwrap_or_else(|e| panic!("{q:.40}: {e}"));
        assert!(result.hits.len() <= 20);
        engine.suggest(q, 10).await.unwrap_or_else(|e| panic!("{q:.40}: {e}"));
    }
    // Punctuation only means "no text": everything.
    assert_eq!(engine.search(query("!!!???")).await.unwrap().total, 14);
    // Words after the 10th are ignored: 11 words where only the last would fail still match.
    let q = format!("{} zzzzzzzz", "apple ".repeat(10));
    assert_eq!(engine.search(query(&q)).await.unwrap().total, 3);
    // Diacritics fold.
    assert_eq!(search_ids(&engine, query("ÇHEF KNÏFE")).await, vec![11]);
}

#[tokio::test]
async fn hits_carry_display_fields() {
    let engine = engine_with_catalog().await;
    let result = engine.search(query("Chef Knife")).await.unwrap();
    let hit = &result.hits[0];
    assert_eq!(
        (hit.id, hit.slug.as_str(), hit.name.as_str(), hit.price, hit.currency.as_str(), hit.category_id),
        (11, "chef-knife", "Chef Knife", 4_999, "EUR", KITCHEN)
    );
    assert!(hit.score > 0.0);
    let by_price = engine.search(SearchQuery { sort: SearchSort::PriceAsc, ..query("Chef Knife") }).await.unwrap();
    assert_eq!(by_price.hits[0].score, 0.0, "scores are only computed for relevance");
}

#[tokio::test]
async fn suggestions() {
    let engine = engine_with_catalog().await;
    let names = |s: Vec<mercato_search::Suggestion>| s.into_iter().map(|s| s.id).collect::<Vec<_>>();
    assert_eq!(sorted(names(engine.suggest("app", 10).await.unwrap())), vec![1, 4, 5]);
    // The shorter, exact-er name first.
    assert_eq!(names(engine.suggest("apple iph", 10).await.unwrap()), vec![4, 5]);
    assert_eq!(names(engine.suggest("Apple iPhone 15", 10).await.unwrap()).first(), Some(&4));
    // Earlier words are typo-tolerant.
    assert_eq!(sorted(names(engine.suggest("aplpe iph", 10).await.unwrap())), vec![4, 5]);
    assert_eq!(names(engine.suggest("headph", 10).await.unwrap()), vec![7]);
    assert_eq!(names(engine.suggest("running sho", 10).await.unwrap()), vec![9]);
    // Names only: "works" is only in a description, "kitchen" only a category name.
    assert!(engine.suggest("kitchen", 10).await.unwrap().is_empty());
    assert!(engine.suggest("works", 10).await.unwrap().is_empty());
    // A fully typed inflection ("laptops" is no prefix of "laptop") still matches through its stem.
    assert_eq!(sorted(names(engine.suggest("laptops", 10).await.unwrap())), vec![2, 3]);
    assert_eq!(engine.suggest("app", 2).await.unwrap().len(), 2);
    assert!(engine.suggest("", 10).await.unwrap().is_empty());
    let s = &engine.suggest("chef", 1).await.unwrap()[0];
    assert_eq!((s.id, s.slug.as_str(), s.name.as_str()), (11, "chef-knife", "Chef Knife"));
}
