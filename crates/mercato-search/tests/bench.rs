//! Latency of the embedded engine on a 100k-product catalog. Ignored by default (it takes about a
//! minute in release mode); run with
//! `cargo test -p mercato-search --release --test bench -- --ignored --nocapture`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mercato_search::{SearchDoc, SearchEngine, SearchQuery, SearchSort, TantivyEngine};

const DOCS: i64 = 100_000;
const QUERIES: usize = 500;

/// Deterministic, dependency-free generator (xorshift64*).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &'a [&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const BRANDS: &[&str] = &[
    "Apple", "Samsung", "Sony", "Dell", "Lenovo", "Asus", "Acer", "Bosch", "Philips", "Nike", "Adidas", "Puma",
    "Levis", "Ikea", "Tefal", "Braun", "Canon", "Nikon", "Garmin", "Logitech", "Razer", "Anker", "Xiaomi", "Huawei",
    "Zara",
];
const TYPES: &[&str] = &[
    "Laptop",
    "Phone",
    "Tablet",
    "Headphones",
    "Speaker",
    "Camera",
    "Watch",
    "Keyboard",
    "Mouse",
    "Monitor",
    "Charger",
    "Shirt",
    "Jacket",
    "Sneakers",
    "Boots",
    "Jeans",
    "Dress",
    "Backpack",
    "Kettle",
    "Blender",
    "Toaster",
    "Lamp",
    "Chair",
    "Desk",
    "Pillow",
    "Blanket",
    "Knife",
    "Pan",
    "Mug",
    "Bottle",
];
const ADJECTIVES: &[&str] = &[
    "Wireless",
    "Classic",
    "Premium",
    "Compact",
    "Portable",
    "Ergonomic",
    "Vintage",
    "Ultra",
    "Smart",
    "Organic",
    "Waterproof",
    "Lightweight",
    "Professional",
    "Mini",
    "Pro",
    "Max",
    "Slim",
    "Heavy",
    "Soft",
    "Digital",
];
const COLORS: &[&str] = &["Black", "White", "Silver", "Red", "Blue", "Green", "Grey", "Brown", "Pink", "Gold"];
const SIZES: &[&str] = &["XS", "S", "M", "L", "XL", "38", "40", "42", "44", "128 GB", "256 GB", "512 GB", "1 TB"];
const PROSE: &[&str] = &[
    "the",
    "a",
    "with",
    "for",
    "and",
    "durable",
    "design",
    "everyday",
    "use",
    "comfortable",
    "quality",
    "material",
    "battery",
    "life",
    "fast",
    "charging",
    "perfect",
    "gift",
    "travel",
    "home",
    "office",
    "outdoor",
    "sport",
    "stylish",
    "modern",
    "reliable",
    "performance",
    "sound",
    "display",
    "resolution",
    "stainless",
    "steel",
    "cotton",
    "leather",
    "recycled",
    "easy",
    "clean",
    "warranty",
    "included",
    "season",
    "collection",
    "limited",
    "edition",
    "best",
    "seller",
];

fn catalog() -> Vec<SearchDoc> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    // 6 roots x 20 leaves.
    (0..DOCS)
        .map(|id| {
            let root = rng.below(6) as i64 + 1;
            let leaf = root * 100 + rng.below(20) as i64;
            let kind = rng.pick(TYPES);
            let name = format!("{} {} {} {}", rng.pick(BRANDS), rng.pick(ADJECTIVES), kind, rng.below(900) + 100);
            let description: Vec<&str> = (0..20 + rng.below(30)).map(|_| rng.pick(PROSE)).collect();
            SearchDoc {
                id,
                slug: format!("p-{id}"),
                name,
                description: description.join(" "),
                category_id: leaf,
                category_path: vec![root, leaf],
                category_names: vec![format!("Department {root}"), format!("{kind}s {leaf}")],
                option_values: (0..1 + rng.below(4))
                    .map(|i| if i % 2 == 0 { rng.pick(COLORS) } else { rng.pick(SIZES) }.to_string())
                    .collect(),
                price: 100 + rng.below(100_000) as i64,
                currency: "EUR".into(),
                created_at: 1_700_000_000_000 + id * 1_000,
            }
        })
        .collect()
}

const KINDS: [&str; 10] = [
    "product type",
    "brand + type",
    "typo",
    "3-letter prefix",
    "empty (browse)",
    "colour + adjective + type",
    "brand + 2-letter prefix",
    "description word",
    "adjective + brand typo",
    "brand",
];

/// Query `i` is of kind `i % 10`, see [`KINDS`].
fn queries() -> Vec<SearchQuery> {
    let mut rng = Rng(42);
    let typo = |w: &str, rng: &mut Rng| {
        let mut c: Vec<char> = w.to_lowercase().chars().collect();
        let i = 1 + rng.below(c.len() - 2);
        c.swap(i, i + 1);
        c.into_iter().collect::<String>()
    };
    (0..QUERIES)
        .map(|i| {
            let q = match i % 10 {
                0 => rng.pick(TYPES).to_string(),
                1 => format!("{} {}", rng.pick(BRANDS), rng.pick(TYPES)),
                2 => typo(
                    rng.pick(TYPES.iter().copied().filter(|t| t.len() >= 5).collect::<Vec<_>>().as_slice()),
                    &mut rng,
                ),
                3 => rng.pick(TYPES)[..3].to_lowercase(),
                4 => String::new(),
                5 => format!("{} {} {}", rng.pick(COLORS), rng.pick(ADJECTIVES), rng.pick(TYPES)),
                6 => format!("{} {}", rng.pick(BRANDS), &rng.pick(TYPES)[..2]),
                7 => rng.pick(PROSE).to_string(),
                8 => format!("{} {}", rng.pick(ADJECTIVES), typo(rng.pick(BRANDS), &mut rng)),
                _ => rng.pick(BRANDS).to_string(),
            };
            let root = rng.below(6) as i64 + 1;
            SearchQuery {
                q,
                category: match rng.below(4) {
                    0 => Some(root),
                    1 => Some(root * 100 + rng.below(20) as i64),
                    _ => None,
                },
                min_price: (rng.below(4) == 0).then(|| rng.below(20_000) as i64),
                max_price: (rng.below(4) == 0).then(|| 30_000 + rng.below(70_000) as i64),
                sort: [SearchSort::Relevance, SearchSort::Relevance, SearchSort::PriceAsc, SearchSort::Newest]
                    [rng.below(4)],
                limit: [10, 20, 24, 48][rng.below(4)],
                cursor: None,
            }
        })
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run in release mode with --ignored --nocapture"]
async fn latency_100k() {
    let engine = Arc::new(TantivyEngine::in_memory().unwrap());
    let docs = catalog();
    let started = Instant::now();
    for chunk in docs.chunks(10_000) {
        engine.upsert(chunk.to_vec()).await.unwrap();
    }
    eprintln!(
        "indexed {} docs in {:.1?} ({} commits)",
        engine.count().await.unwrap(),
        started.elapsed(),
        engine.commits()
    );

    let queries = queries();
    // Warm up caches (automaton builders, doc store blocks) the way a running server would be.
    for q in queries.iter().take(50) {
        engine.search(q.clone()).await.unwrap();
    }

    let mut latencies = Vec::with_capacity(queries.len());
    let mut by_kind: Vec<Vec<Duration>> = vec![Vec::new(); 10];
    let mut totals = 0u64;
    let mut second_pages = 0;
    for (i, q) in queries.iter().enumerate() {
        let t = Instant::now();
        let r = engine.search(q.clone()).await.unwrap();
        latencies.push(t.elapsed());
        by_kind[i % 10].push(t.elapsed());
        totals += r.total;
        // Every tenth query also fetches its second page, like a shopper scrolling.
        if second_pages * 10 < latencies.len() && r.next_cursor.is_some() {
            let t = Instant::now();
            engine.search(SearchQuery { cursor: r.next_cursor, ..q.clone() }).await.unwrap();
            latencies.push(t.elapsed());
            second_pages += 1;
        }
    }
    latencies.sort();
    eprintln!(
        "sequential: {} searches, median {:.2?}, p90 {:.2?}, p99 {:.2?}, max {:.2?} (avg total {} matches)",
        latencies.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.9),
        percentile(&latencies, 0.99),
        latencies.last().unwrap(),
        totals / queries.len() as u64
    );

    for (kind, mut l) in by_kind.into_iter().enumerate() {
        l.sort();
        eprintln!(
            "  kind {kind} ({}): median {:.2?}, max {:.2?}, e.g. {:?}",
            KINDS[kind],
            percentile(&l, 0.5),
            l.last().unwrap(),
            queries[kind].q
        );
    }

    let mut suggest = Vec::new();
    for q in queries.iter().filter(|q| !q.q.is_empty()).take(200) {
        let t = Instant::now();
        engine.suggest(&q.q, 8).await.unwrap();
        suggest.push(t.elapsed());
    }
    suggest.sort();
    eprintln!(
        "suggest: {} calls, median {:.2?}, p99 {:.2?}",
        suggest.len(),
        percentile(&suggest, 0.5),
        percentile(&suggest, 0.99)
    );

    // Throughput with two concurrent clients (one per core), each running the whole query set.
    let started = Instant::now();
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let engine = engine.clone();
            let queries = queries.clone();
            tokio::spawn(async move {
                let mut l = Vec::with_capacity(queries.len());
                for q in queries {
                    let t = Instant::now();
                    engine.search(q).await.unwrap();
                    l.push(t.elapsed());
                }
                l
            })
        })
        .collect();
    let mut all = Vec::new();
    for c in clients {
        all.extend(c.await.unwrap());
    }
    let elapsed = started.elapsed();
    all.sort();
    eprintln!(
        "2 clients: {} searches in {:.2?} = {:.0} q/s, median {:.2?}, p99 {:.2?}",
        all.len(),
        elapsed,
        all.len() as f64 / elapsed.as_secs_f64(),
        percentile(&all, 0.5),
        percentile(&all, 0.99)
    );
}
