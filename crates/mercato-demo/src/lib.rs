//! Deterministic demo catalogue, used to fill an empty shop on first start and by
//! `mercato seed --products N`.
//!
//! Every product is a pure function of its index: a splitmix64 stream seeded from the index drives
//! every choice over static, category-specific word pools. Nothing depends on `HashMap` order, the
//! OS, floats or the Rust version, so the same index yields the same product on every machine and
//! every run. Seeding can therefore be resumed, split across threads or compared between runs, and a
//! million products take seconds because no product depends on any other.
//!
//! It knows no catalog type, only plain values (prices in minor units, categories by key), so it
//! depends on nothing; turning them into the catalog's `NewProduct` is the seeder's job
//! (`crates/mercato/src/seed.rs`).

use Part::*;

/// A node of the demo category tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoCategory {
    /// Index into the `Vec` returned by [`categories`].
    pub key: usize,
    /// Key of the parent; `None` for a top-level department.
    pub parent: Option<usize>,
    /// Unique, lowercase `a-z`, `0-9` and `-`.
    pub slug: String,
    pub name: String,
}

/// One purchasable variant of a demo product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoVariant {
    /// Unique across all products: `MRC-<index, 7+ digits>[-<option code>...]`, at most 40 chars.
    pub sku: String,
    /// `(option, value)` pairs such as `("color", "Black")`; empty for single-variant products.
    pub options: Vec<(String, String)>,
    /// Price in minor units (cents).
    pub price_minor: i64,
    pub weight_grams: i64,
}

/// A demo product; see [`product`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoProduct {
    /// Unique across all indexes because it ends in `-<index>`.
    pub slug: String,
    pub name: String,
    pub description: String,
    /// Key of a leaf category from [`categories`].
    pub category: usize,
    /// One to four variants.
    pub variants: Vec<DemoVariant>,
}

/// The demo category tree: departments first, then their leaves, so parents always precede children
/// and a leaf's key is a constant offset from its position in `LEAVES`.
pub fn categories() -> Vec<DemoCategory> {
    let departments = DEPARTMENTS.iter().enumerate().map(|(key, d)| DemoCategory {
        key,
        parent: None,
        slug: d.slug.to_string(),
        name: d.name.to_string(),
    });
    let leaves = LEAVES.iter().enumerate().map(|(i, l)| DemoCategory {
        key: DEPARTMENTS.len() + i,
        parent: Some(l.department),
        slug: l.slug.to_string(),
        name: l.name.to_string(),
    });
    departments.chain(leaves).collect()
}

/// The demo product at `index`; a pure function of `index`, valid for any `u64`.
pub fn product(index: u64) -> DemoProduct {
    // Round-robin over leaves keeps every category equally stocked for any N, however small.
    let leaf_index = (index % LEAVES.len() as u64) as usize;
    let leaf = &LEAVES[leaf_index];
    let mut rng = Rng::new(index);
    let group = &leaf.groups[rng.below(leaf.groups.len())];
    let words = Words {
        brand: rng.pick(DEPARTMENTS[leaf.department].brands),
        adj: rng.pick(group.adjs),
        mat: rng.pick(group.mats),
        noun: rng.pick(group.nouns),
        extra: if leaf.extras.is_empty() { "" } else { rng.pick(leaf.extras) },
    };
    let name = render_name(rng.pick(leaf.names), &words, &mut rng);
    let mut slug = String::with_capacity(name.len() + 12);
    push_slug(&mut slug, &name);
    slug.push('-');
    push_number(&mut slug, index, 0);
    let description = describe(leaf, &words, &name, &mut rng);
    let variants = variants(index, group, &mut rng);
    DemoProduct { slug, name, description, category: DEPARTMENTS.len() + leaf_index, variants }
}

// ---------------------------------------------------------------------------------------------
// Generation
// ---------------------------------------------------------------------------------------------

const MAX_VARIANTS: usize = 4;
const DESCRIPTION_MIN: usize = 150;
const DESCRIPTION_MAX: usize = 400;
/// Changing the seed reshuffles the whole demo catalogue; keep it fixed so screenshots, docs and
/// bug reports made against demo data stay reproducible.
const SEED: u64 = 0x4d45_5243_4154_4f00;

/// splitmix64: its output is fixed by definition, unlike `std`'s hashers whose algorithm may change
/// between releases, and it costs a handful of instructions per draw.
struct Rng(u64);

impl Rng {
    fn new(index: u64) -> Self {
        // Mixing the seed once makes streams of neighbouring indexes unrelated.
        let mut seeder = Rng(index ^ SEED);
        Rng(seeder.next_u64())
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` via multiply-shift, which avoids the bias and the division of `%`.
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

/// The words drawn for one product; names and descriptions share them so they agree.
struct Words {
    brand: &'static str,
    adj: &'static str,
    mat: &'static str,
    noun: &'static str,
    extra: &'static str,
}

fn render_name(parts: &[Part], words: &Words, rng: &mut Rng) -> String {
    let mut out = String::with_capacity(64);
    for part in parts {
        if !matches!(part, Glue(_)) && !out.is_empty() {
            out.push(' ');
        }
        match *part {
            Brand => out.push_str(words.brand),
            Adj => out.push_str(words.adj),
            Mat => out.push_str(words.mat),
            Noun => out.push_str(words.noun),
            Extra => out.push_str(words.extra),
            Word(s) | Glue(s) => out.push_str(s),
            Num(lo, hi, step) => {
                push_number(&mut out, lo + step * rng.below(((hi - lo) / step + 1) as usize) as u64, 0)
            }
            Code(letters, lo, hi) => {
                out.push(char::from(letters.as_bytes()[rng.below(letters.len())]));
                push_number(&mut out, lo + rng.below((hi - lo + 1) as usize) as u64, 0);
            }
        }
    }
    out
}

/// Intro and use sentences, plus a care note when there is room: the note gives variety and
/// practical detail, but the description must stay within 150-400 characters.
fn describe(leaf: &Leaf, words: &Words, name: &str, rng: &mut Rng) -> String {
    let mut out = String::with_capacity(DESCRIPTION_MAX + 64);
    fill(&mut out, rng.pick(leaf.intros), words, name);
    out.push(' ');
    fill(&mut out, rng.pick(leaf.uses), words, name);
    let two_sentences = out.len();
    if rng.below(3) > 0 || two_sentences < DESCRIPTION_MIN {
        out.push(' ');
        fill(&mut out, rng.pick(leaf.care), words, name);
        if out.len() > DESCRIPTION_MAX && two_sentences >= DESCRIPTION_MIN {
            out.truncate(two_sentences);
        }
    }
    out
}

/// Expands `{t}` (product name), `{b}` (brand or author) and `{a}`, `{m}`, `{n}` (adjective,
/// material or feature, noun; lowered because they sit mid-sentence).
fn fill(out: &mut String, template: &str, words: &Words, name: &str) {
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        match rest.as_bytes()[open + 1] {
            b't' => out.push_str(name),
            b'b' => out.push_str(words.brand),
            b'a' => push_lower(out, words.adj),
            b'm' => push_lower(out, words.mat),
            b'n' => push_lower(out, words.noun),
            other => unreachable!("unknown placeholder {{{}}} in demo template", char::from(other)),
        }
        rest = &rest[open + 3..];
    }
    out.push_str(rest);
}

/// Lowercases capitalised words ("Cast Iron" -> "cast iron") but keeps acronyms, codes and single
/// letters ("OLED", "VG-10", "Vitamin C", "T-Shirt") as they are written. Phrases that already start
/// in lowercase are sentence-ready feature text and are copied verbatim ("... and Wi-Fi 7").
fn push_lower(out: &mut String, text: &str) {
    if text.starts_with(|c: char| c.is_ascii_lowercase()) {
        out.push_str(text);
        return;
    }
    for (i, word) in text.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        for (j, segment) in word.split('-').enumerate() {
            if j > 0 {
                out.push('-');
            }
            let capitalised = segment.len() > 1 && !segment[1..].bytes().any(|b| b.is_ascii_uppercase());
            if capitalised {
                out.push(char::from(segment.as_bytes()[0].to_ascii_lowercase()));
                out.push_str(&segment[1..]);
            } else {
                out.push_str(segment);
            }
        }
    }
}

/// Same rules as the catalogue's `slugify`, except apostrophes vanish ("chefs-knife", not
/// "chef-s-knife").
fn push_slug(out: &mut String, text: &str) {
    let mut separator = false;
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            if separator && !out.is_empty() {
                out.push('-');
            }
            separator = false;
            out.push(c.to_ascii_lowercase());
        } else if c != '\'' {
            separator = true;
        }
    }
}

/// Decimal digits, zero-padded to `width`, without going through `fmt` on the hot path.
fn push_number(out: &mut String, mut n: u64, width: usize) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for _ in digits.len() - start..width {
        out.push('0');
    }
    out.extend(digits[start..].iter().map(|&d| char::from(d)));
}

fn variants(index: u64, group: &Group, rng: &mut Rng) -> Vec<DemoVariant> {
    let base_price = base_price(group.price, rng);
    let (lo, hi) = group.grams;
    // Weights on a 5 g grid look like measured values rather than random numbers.
    let base_grams = lo + 5 * rng.below(((hi - lo) / 5 + 1) as usize) as i64;

    let want = 1 + rng.below(MAX_VARIANTS);
    let (counts, total) = match group.axes {
        [] => ([1, 1], 1),
        [a] => {
            let n = want.min(a.opts.len());
            ([n, 1], n)
        }
        [a, b] => {
            let (la, lb) = (a.opts.len(), b.opts.len());
            let counts = if want == MAX_VARIANTS && rng.below(3) == 0 {
                [2, 2]
            } else if rng.below(2) == 0 {
                let nb = want.min(lb);
                [want.div_ceil(nb).min(la), nb]
            } else {
                let na = want.min(la);
                [na, want.div_ceil(na).min(lb)]
            };
            (counts, want.min(counts[0] * counts[1]))
        }
        _ => unreachable!("demo groups have at most two option axes"),
    };
    let mut starts = [0; 2];
    for (k, axis) in group.axes.iter().enumerate() {
        // Sizes and capacities come as a consecutive run (S, M, L); colours may wrap around.
        starts[k] = if axis.ordered { rng.below(axis.opts.len() - counts[k] + 1) } else { rng.below(axis.opts.len()) };
    }

    (0..total)
        .map(|v| {
            let picks = [v / counts[1], v % counts[1]];
            let mut sku = String::with_capacity(24);
            sku.push_str("MRC-");
            push_number(&mut sku, index, 7);
            let mut options = Vec::with_capacity(group.axes.len());
            let (mut price_minor, mut weight_grams) = (base_price, base_grams);
            for (k, axis) in group.axes.iter().enumerate() {
                let opt = &axis.opts[(starts[k] + picks[k]) % axis.opts.len()];
                sku.push('-');
                sku.push_str(opt.code);
                options.push((axis.key.to_string(), opt.label.to_string()));
                price_minor += opt.price;
                weight_grams += opt.grams;
            }
            DemoVariant { sku, options, price_minor, weight_grams }
        })
        .collect()
}

/// A price between roughly `lo` and `hi` whole units with a retail ending (mostly .99, some .49 and
/// round numbers), skewed toward the cheap end as real assortments are.
fn base_price((lo, hi): (i64, i64), rng: &mut Rng) -> i64 {
    let span = (hi - lo + 1) as usize;
    let units = lo - 1 + rng.below(span).min(rng.below(span)) as i64;
    match rng.below(20) {
        0..=11 => units * 100 + 99,
        12..=15 => units * 100 + 49,
        16..=18 => (units + 1) * 100,
        _ => units * 100 + 95,
    }
}

// ---------------------------------------------------------------------------------------------
// Catalogue data
// ---------------------------------------------------------------------------------------------

struct Department {
    slug: &'static str,
    name: &'static str,
    /// Invented brand names (authors for books), shared by the department's leaves.
    brands: &'static [&'static str],
}

struct Leaf {
    department: usize,
    slug: &'static str,
    name: &'static str,
    /// Name templates; repeating one makes it proportionally more likely.
    names: &'static [&'static [Part]],
    /// Fills the `Extra` slot of names: sizes, capacities, suffixes.
    extras: &'static [&'static str],
    /// Product families whose words only make sense together (no "cast iron yoga mat").
    groups: &'static [Group],
    intros: &'static [&'static str],
    uses: &'static [&'static str],
    care: &'static [&'static str],
}

struct Group {
    adjs: &'static [&'static str],
    /// Materials, key ingredients or features, depending on the category.
    mats: &'static [&'static str],
    nouns: &'static [&'static str],
    /// At most two; the first varies slowest in SKU order (colour before size).
    axes: &'static [Axis],
    /// Base price range in whole currency units.
    price: (i64, i64),
    grams: (i64, i64),
}

#[derive(Clone, Copy)]
enum Part {
    Brand,
    Adj,
    Mat,
    Noun,
    Extra,
    /// A fixed word, preceded by a space.
    Word(&'static str),
    /// Punctuation attached to the previous word.
    Glue(&'static str),
    /// A number in `lo..=hi` on a grid of `step`.
    Num(u64, u64, u64),
    /// A model code: one of the letters followed by a number in `lo..=hi`.
    Code(&'static str, u64, u64),
}

struct Axis {
    key: &'static str,
    ordered: bool,
    opts: &'static [Opt],
}

struct Opt {
    label: &'static str,
    /// Uppercase `A-Z0-9`, unique within its axis, at most 5 chars so SKUs stay short.
    code: &'static str,
    /// Added to the base price; multiples of 100 keep the retail ending.
    price: i64,
    grams: i64,
}

const fn opt(label: &'static str, code: &'static str, price: i64, grams: i64) -> Opt {
    Opt { label, code, price, grams }
}

const fn plain(label: &'static str, code: &'static str) -> Opt {
    opt(label, code, 0, 0)
}

const WOMEN: usize = 0;
const MEN: usize = 1;
const ELECTRONICS: usize = 2;
const HOME: usize = 3;
const SPORTS: usize = 4;
const BEAUTY: usize = 5;
const TOYS: usize = 6;
const BOOKS: usize = 7;

static DEPARTMENTS: &[Department] = &[
    Department {
        slug: "women",
        name: "Women",
        brands: &[
            "Solenne",
            "Ilvara",
            "Averine",
            "Mirelle",
            "Odelle",
            "Veradine",
            "Saffra",
            "Calla Rue",
            "Linnet",
            "Maison Oriel",
            "Wren & Willow",
            "Elodie Park",
        ],
    },
    Department {
        slug: "men",
        name: "Men",
        brands: &[
            "Northgate",
            "Calder",
            "Ashby Row",
            "Bramwell",
            "Oakhurst",
            "Halden",
            "Thorne & Co",
            "Wexley",
            "Kestrel Lane",
            "Greyfield",
            "Redwick",
            "Marlow Supply",
        ],
    },
    Department {
        slug: "electronics",
        name: "Electronics",
        brands: &[
            "Aurora", "Voltix", "Nexora", "Lumetra", "Quantiq", "Pixelon", "Zentro", "Auralis", "Orbix", "Helion",
            "Vektra", "Sonaris",
        ],
    },
    Department {
        slug: "home-kitchen",
        name: "Home & Kitchen",
        brands: &[
            "Hearthwell",
            "Copperleaf",
            "Linden & Loom",
            "Ironvale",
            "Maplecrest",
            "Fernhill",
            "Stonebrook",
            "Alder Home",
            "Kitchara",
            "Brightnook",
            "Oak & Ember",
            "Saltmarsh",
        ],
    },
    Department {
        slug: "sports-outdoors",
        name: "Sports & Outdoors",
        brands: &[
            "Trailborn",
            "Summitra",
            "Peakward",
            "Altivo",
            "Kinetra",
            "Ridgewell",
            "Boundline",
            "Coastrun",
            "Everpace",
            "Granitefox",
            "Northpeak",
            "Velocita",
        ],
    },
    Department {
        slug: "beauty",
        name: "Beauty",
        brands: &[
            "Velvetine",
            "Aurelle",
            "Botanica Vera",
            "Dewlyn",
            "Petalune",
            "Siravie",
            "Olea Rose",
            "Maison Calla",
            "Glowen",
            "Lirael",
            "Fernwood Apothecary",
            "Solis Skin",
        ],
    },
    Department {
        slug: "toys-games",
        name: "Toys & Games",
        brands: &[
            "Tumbletots",
            "Brickwise",
            "Wondernook",
            "Puzzlewick",
            "Hoppity Lane",
            "Jollyfox",
            "Kitebright",
            "Marblemoss",
            "Pinwheel & Co",
            "Tiny Atlas",
            "Little Lantern",
            "Playsmith",
        ],
    },
    Department {
        slug: "books",
        name: "Books",
        brands: &[
            "Clara Whitfield",
            "Jonah Reyes",
            "Amara Osei",
            "Elliot Marsh",
            "Priya Natarajan",
            "Tomas Lindqvist",
            "Hannah Cole",
            "Mateo Alvarez",
            "Ruth Okafor",
            "Samuel Hart",
            "Ingrid Solberg",
            "Nadia Haddad",
            "Owen Gallagher",
            "Mei Lin Zhao",
            "Felix Brandt",
            "Grace Adeyemi",
        ],
    },
];

// Name templates shared by many leaves.
const BAMN: &[Part] = &[Brand, Adj, Mat, Noun];
const BMAN: &[Part] = &[Brand, Mat, Adj, Noun];
const BMN: &[Part] = &[Brand, Mat, Noun];
const BAN: &[Part] = &[Brand, Adj, Noun];
const BAMNX: &[Part] = &[Brand, Adj, Mat, Noun, Extra];
const BMNX: &[Part] = &[Brand, Mat, Noun, Extra];
const BANX: &[Part] = &[Brand, Adj, Noun, Extra];

// Option axes.
const APPAREL_COLORS: Axis = Axis {
    key: "color",
    ordered: false,
    opts: &[
        plain("Black", "BLK"),
        plain("White", "WHT"),
        plain("Navy", "NVY"),
        plain("Heather Grey", "HGR"),
        plain("Olive", "OLV"),
        plain("Sand", "SND"),
        plain("Burgundy", "BUR"),
        plain("Sky Blue", "SKY"),
        plain("Charcoal", "CHR"),
        plain("Ivory", "IVR"),
        plain("Forest Green", "FGR"),
        plain("Terracotta", "TER"),
    ],
};
const APPAREL_SIZES: Axis = Axis {
    key: "size",
    ordered: true,
    opts: &[
        opt("XS", "XS", 0, 0),
        opt("S", "S", 0, 10),
        opt("M", "M", 0, 20),
        opt("L", "L", 0, 35),
        opt("XL", "XL", 0, 50),
        opt("XXL", "XXL", 0, 65),
    ],
};
const BASIC_SIZES: Axis = Axis {
    key: "size",
    ordered: true,
    opts: &[opt("S", "S", 0, 0), opt("M", "M", 0, 5), opt("L", "L", 0, 10), opt("XL", "XL", 0, 15)],
};
const DENIM_COLORS: Axis = Axis {
    key: "color",
    ordered: false,
    opts: &[
        plain("Light Wash", "LTW"),
        plain("Mid Wash", "MDW"),
        plain("Dark Indigo", "IND"),
        plain("Washed Black", "WBK"),
        plain("Ecru", "ECR"),
        plain("Washed Grey", "WGR"),
    ],
};
const WOMEN_WAIST: Axis = Axis {
    key: "size",
    ordered: true,
    opts: &[
        opt("24", "W24", 0, 0),
        opt("26", "W26", 0, 15),
        opt("28", "W28", 0, 30),
        opt("30", "W30", 0, 45),
        opt("32", "W32", 0, 60),
        opt("34", "W34", 0, 75),
    ],
};
const MEN_WAIST: Axis = Axis {
    key: "size",
    ordered: true,
    opts: &[
        opt("28", "W28", 0, 0),
        opt("30", "W30", 0, 15),
        opt("32", "W32", 0, 30),
        opt("34", "W34", 0, 45),
        opt("36", "W36", 0, 60),
        opt("38", "W38", 0, 75),
    ],
};
const SHOE_COLORS: Axis = Axis {
    key: "color",
    ordered: false,
    opts: &[
        plain("Black", "BLK"),
        plain("Dark Brown", "DBR"),
        plain("Tan", "TAN"),
        plain("Cognac", "COG"),
        plain("Burgundy", "BUR"),
        plain("Navy", "NVY"),
        plain("Stone", "STN"),
        plain("Taupe", "TPE"),
    ],
};
const WOMEN_SHOE_SIZES: Axis = Axis {
    key: "size",
    ordered: true,
    opts: &[
        opt("EU 36", "36", 0, 0),
        opt("EU 37", "37", 0, 15),
        opt("EU 38", "38", 0, 30),
        opt("EU 39", "39", 0, 45),
        opt("EU 40", "40", 0, 60),
        opt("EU 41", "41", 0, 75),
    ],
};
const MEN_SHOE_SIZES: Axis = Axis {
    key: "size",
    ordered: true,
    opts: &[
        opt("EU 40", "40", 0, 0),
        opt("EU 41", "41", 0, 15),
        opt("EU 42", "42", 0, 30),
        opt("EU 43", "43", 0, 45),
        opt("EU 44", "44", 0, 60),
        opt("EU 45", "45", 0, 75),
        opt("EU 46", "46", 0, 90),
    ],
};
const RUNNING_SHOE_SIZES: Axis = Axis {
    key: "size",
    ordered: true,
    opts: &[
        opt("EU 37", "37", 0, 0),
        opt("EU 38", "38", 0, 10),
        opt("EU 39", "39", 0, 20),
        opt("EU 40", "40", 0, 30),
        opt("EU 41", "41", 0, 40),
        opt("EU 42", "42", 0, 50),
        opt("EU 43", "43", 0, 60),
        opt("EU 44", "44", 0, 70),
        opt("EU 45", "45", 0, 80),
        opt("EU 46", "46", 0, 90),
    ],
};
const LEATHER_COLORS: Axis = Axis {
    key: "color",
    ordered: false,
    opts: &[
        plain("Black", "BLK"),
        plain("Tan", "TAN"),
        plain("Cognac", "COG"),
        plain("Taupe", "TPE"),
        plain("Burgundy", "BUR"),
        plain("Cream", "CRM"),
        plain("Olive", "OLV"),
        plain("Chocolate Brown", "CHB"),
    ],
};
const PACK_COLORS: Axis = Axis {
    key: "color",
    ordered: false,
    opts: &[
        plain("Black", "BLK"),
        plain("Navy", "NVY"),
        plain("Grey Marl", "GRM"),
        plain("Assorted Stripes", "AST"),
        plain("Black and Grey", "BKG"),
        plain("Earth Tones", "ERT"),
    ],
};
const TECH_COLORS: Axis = Axis {
    key: "color",
    ordered: false,
    opts: &[
        plain("Black", "BLK"),
        plain("Silver", "SLV"),
        plain("Graphite", "GPH"),
        plain("Frost White", "WHT"),
        plain("Midnight Blue", "MBL"),
        plain("Sage Green", "SGE"),
        plain("Rose Pink", "ROS"),
    ],
};
const LAPTOP_STORAGE: Axis = Axis {
    key: "storage",
    ordered: true,
    opts: &[
        plain("256 GB SSD", "256G"),
        opt("512 GB SSD", "512G", 10_000, 0),
        opt("1 TB SSD", "1T", 25_000, 0),
        opt("2 TB SSD", "2T", 50_000, 0),
    ],
};
const PHONE_STORAGE: Axis = Axis {
    key: "storage",
    ordered: true,
    opts: &[
        plain("128 GB", "128G"),
        opt("256 GB", "256G", 10_000, 0),
        opt("512 GB", "512G", 25_000, 0),
        opt("1 TB", "1T", 45_000, 0),
    ],
};
const WATCH_SIZES: Axis =
    Axis { key: "size", ordered: true, opts: &[plain("41 mm", "41MM"), opt("45 mm", "45MM", 3_000, 8)] };
const CAMERA_BUNDLES: Axis = Axis {
    key: "bundle",
    ordered: true,
    opts: &[plain("Standard", "STD"), opt("Travel Kit", "TRVL", 5_000, 180), opt("Creator Kit", "CRTR", 12_000, 420)],
};
const COOKWARE_SIZES: Axis = Axis {
    key: "size",
    ordered: true,
    opts: &[
        plain("20 cm", "20CM"),
        opt("24 cm", "24CM", 1_000, 300),
        opt("28 cm", "28CM", 2_000, 600),
        opt("32 cm", "32CM", 3_000, 900),
    ],
};
const HOME_COLORS: Axis = Axis {
    key: "color",
    ordered: false,
    opts: &[
        plain("White", "WHT"),
        plain("Oatmeal", "OAT"),
        plain("Sage", "SGE"),
        plain("Dusty Pink", "DPK"),
        plain("Slate Grey", "SLT"),
        plain("Navy", "NVY"),
        plain("Terracotta", "TER"),
        plain("Charcoal", "CHR"),
    ],
};
const BED_SIZES: Axis = Axis {
    key: "size",
    ordered: true,
    opts: &[
        plain("Single", "SGL"),
        opt("Double", "DBL", 1_000, 200),
        opt("King", "KNG", 2_000, 400),
        opt("Super King", "SKG", 3_000, 600),
    ],
};
const LAMP_SHADES: Axis = Axis {
    key: "shade",
    ordered: false,
    opts: &[
        plain("White Linen", "WLN"),
        plain("Natural Linen", "NLN"),
        plain("Charcoal Fabric", "CHF"),
        opt("Opal Glass", "OPL", 1_000, 400),
        opt("Smoked Glass", "SMK", 1_000, 400),
    ],
};
const TABLEWARE_SETS: Axis = Axis {
    key: "quantity",
    ordered: true,
    opts: &[
        plain("Set of 2", "S2"),
        opt("Set of 4", "S4", 1_000, 600),
        opt("Set of 6", "S6", 2_000, 1_200),
        opt("Set of 8", "S8", 3_000, 1_800),
    ],
};
const SPORT_COLORS: Axis = Axis {
    key: "color",
    ordered: false,
    opts: &[
        plain("Black", "BLK"),
        plain("Ocean Blue", "OCN"),
        plain("Sage", "SGE"),
        plain("Lilac", "LIL"),
        plain("Coral", "CRL"),
        plain("Graphite", "GPH"),
        plain("Volt Yellow", "VLT"),
    ],
};
const WEIGHTS: Axis = Axis {
    key: "weight",
    ordered: true,
    opts: &[
        plain("4 kg", "4KG"),
        opt("8 kg", "8KG", 1_500, 4_000),
        opt("12 kg", "12KG", 3_000, 8_000),
        opt("16 kg", "16KG", 4_500, 12_000),
        opt("20 kg", "20KG", 6_000, 16_000),
    ],
};
const OUTDOOR_COLORS: Axis = Axis {
    key: "color",
    ordered: false,
    opts: &[
        plain("Olive", "OLV"),
        plain("Sand", "SND"),
        plain("Burnt Orange", "ORG"),
        plain("Slate Blue", "SLB"),
        plain("Forest Green", "FGR"),
        plain("Charcoal", "CHR"),
    ],
};
const SLEEP_SIZES: Axis = Axis {
    key: "size",
    ordered: true,
    opts: &[plain("Regular", "REG"), opt("Long", "LNG", 1_000, 120), opt("Wide Long", "WDL", 2_000, 250)],
};
const HELMET_SIZES: Axis = Axis {
    key: "size",
    ordered: true,
    opts: &[plain("S (51-55 cm)", "S"), opt("M (55-59 cm)", "M", 0, 20), opt("L (59-63 cm)", "L", 0, 40)],
};
const SKIN_SIZES: Axis = Axis {
    key: "size",
    ordered: true,
    opts: &[
        plain("15 ml", "15ML"),
        opt("30 ml", "30ML", 800, 30),
        opt("50 ml", "50ML", 1_500, 60),
        opt("100 ml", "100ML", 2_800, 120),
    ],
};
const LIP_SHADES: Axis = Axis {
    key: "shade",
    ordered: false,
    opts: &[
        plain("Nude", "NUD"),
        plain("Rosewood", "RSW"),
        plain("Coral", "CRL"),
        plain("Berry", "BRY"),
        plain("Mauve", "MAV"),
        plain("Brick Red", "BRK"),
        plain("Peach", "PCH"),
        plain("Plum", "PLM"),
    ],
};
const EYE_SHADES: Axis = Axis {
    key: "shade",
    ordered: false,
    opts: &[plain("Jet Black", "JBK"), plain("Brown-Black", "BBK"), plain("Soft Brown", "SBR"), plain("Taupe", "TPE")],
};
const FACE_SHADES: Axis = Axis {
    key: "shade",
    ordered: true,
    opts: &[
        plain("Fair", "FR"),
        plain("Light", "LT"),
        plain("Light-Medium", "LM"),
        plain("Medium", "MD"),
        plain("Tan", "TN"),
        plain("Deep", "DP"),
        plain("Rich Deep", "RD"),
    ],
};
const HAIR_SIZES: Axis = Axis {
    key: "size",
    ordered: true,
    opts: &[plain("250 ml", "250ML"), opt("500 ml", "500ML", 600, 270), opt("1 L", "1L", 1_400, 800)],
};
const FRAGRANCE_SIZES: Axis = Axis {
    key: "size",
    ordered: true,
    opts: &[plain("30 ml", "30ML"), opt("50 ml", "50ML", 2_000, 60), opt("100 ml", "100ML", 4_500, 150)],
};
const BATH_SIZES: Axis = Axis {
    key: "size",
    ordered: true,
    opts: &[plain("Travel Size", "TRVL"), opt("Regular", "REG", 400, 150), opt("Large", "LRG", 900, 350)],
};
const EDITIONS: Axis =
    Axis { key: "edition", ordered: true, opts: &[plain("Standard", "STD"), opt("Deluxe", "DLX", 1_500, 400)] };
const PUZZLE_PIECES: Axis = Axis {
    key: "pieces",
    ordered: true,
    opts: &[
        plain("500", "P500"),
        opt("1000", "P1000", 300, 150),
        opt("1500", "P1500", 600, 300),
        opt("2000", "P2000", 900, 450),
    ],
};
const PLUSH_SIZES: Axis = Axis {
    key: "size",
    ordered: true,
    opts: &[
        plain("Small (20 cm)", "SM"),
        opt("Medium (30 cm)", "MD", 500, 120),
        opt("Large (45 cm)", "LG", 1_200, 350),
    ],
};
const KIDS_COLORS: Axis = Axis {
    key: "color",
    ordered: false,
    opts: &[
        plain("Red", "RED"),
        plain("Sky Blue", "SKY"),
        plain("Mint", "MNT"),
        plain("Sunshine Yellow", "YLW"),
        plain("Pink", "PNK"),
        plain("Navy", "NVY"),
    ],
};
const BOOK_FORMATS: Axis = Axis {
    key: "format",
    ordered: true,
    opts: &[plain("Paperback", "PB"), opt("Hardcover", "HC", 800, 250), opt("Large Print", "LP", 400, 150)],
};
const KIDS_BOOK_FORMATS: Axis = Axis {
    key: "format",
    ordered: true,
    opts: &[plain("Paperback", "PB"), opt("Hardcover", "HC", 500, 150), opt("Board Book", "BB", 200, 100)],
};

// Care and after-sales notes, shared by related leaves.
const APPAREL_CARE: &[&str] = &[
    "Machine wash cold on a gentle cycle with similar colours and line dry to keep the shape.",
    "Wash inside out at 30 degrees, skip the tumble dryer and cool iron if needed.",
    "Pre-washed to minimise shrinkage, so the fit you try on is the fit you keep.",
    "Made in an audited factory that pays fair wages and uses low-impact dyes.",
];
const FOOTWEAR_CARE: &[&str] = &[
    "Brush off dirt after each wear and treat with a protective spray before the first outing.",
    "If they get wet, stuff them with paper and let them dry naturally away from radiators.",
    "Backed by a one-year guarantee against sole separation and stitching faults.",
];
const OUTERWEAR_CARE: &[&str] = &[
    "Check the care label: most styles can be spot cleaned, while wool pieces should be dry cleaned.",
    "Hang it on a broad hanger between wears to keep the shoulders in shape.",
    "Backed by a two-year guarantee on zips, seams and fastenings.",
];
const BAG_CARE: &[&str] = &[
    "Wipe clean with a soft, damp cloth and store it in the dust bag provided to keep its shape.",
    "Comes with a one-year warranty covering hardware, seams and straps.",
];
const ELECTRONICS_CARE: &[&str] = &[
    "Covered by a two-year limited warranty, with firmware updates delivered over the air.",
    "Ships with a USB-C cable and a quick-start guide in recyclable, plastic-free packaging.",
    "Register it online to extend the warranty by a further year at no extra cost.",
];
const COOKWARE_CARE: &[&str] = &[
    "Hand wash with warm water and dry thoroughly before storing.",
    "Suitable for gas, electric, ceramic and induction hobs, and oven-safe up to 260 degrees.",
    "Backed by a lifetime warranty against manufacturing defects.",
];
const BEDDING_CARE: &[&str] = &[
    "Machine wash at 40 degrees and tumble dry on low; it gets softer with every wash.",
    "Independently tested for harmful substances and delivered in a reusable cotton bag.",
    "Iron on a medium setting while slightly damp for a crisp finish, or leave it relaxed.",
];
const LIGHTING_CARE: &[&str] = &[
    "Takes a standard E27 bulb up to 60 W; a warm-white LED bulb is included.",
    "Dust with a dry microfibre cloth, and switch off at the mains before cleaning.",
    "Hardwired fittings should be installed by a qualified electrician.",
];
const KNIFE_CARE: &[&str] = &[
    "Hand wash and dry immediately; never put it in the dishwasher.",
    "Hone it regularly and sharpen on a whetstone once or twice a year to keep the edge keen.",
    "Arrives in a gift box with a protective blade guard.",
];
const TABLEWARE_CARE: &[&str] = &[
    "Dishwasher safe; avoid sudden temperature changes, such as pouring boiling water into a cold piece.",
    "Each piece is finished by hand, so small variations in colour and texture make every set unique.",
    "Packed in recyclable cardboard with pulp inserts so everything arrives safely.",
];
const RUNNING_CARE: &[&str] = &[
    "Hand wash with mild soap and air dry; remove the insoles to speed things up.",
    "Expect around 600 to 800 kilometres of running before the midsole needs replacing.",
    "Backed by a 60-day trial: run in them, and if they do not suit you, send them back.",
];
const SPORT_CARE: &[&str] = &[
    "Rinse or wipe down after use, air dry out of direct sunlight and store somewhere cool.",
    "Backed by a two-year warranty and a 60-day trial, no questions asked.",
    "Made with recycled or responsibly sourced materials wherever performance allows.",
];
const BEAUTY_CARE: &[&str] = &[
    "Dermatologically tested, vegan and never tested on animals.",
    "Patch test before first use and store away from direct sunlight.",
    "Packaged in recyclable materials, with refills available for the most popular sizes.",
];
const FRAGRANCE_CARE: &[&str] = &[
    "Store away from heat and direct sunlight to keep the scent true.",
    "Blended and bottled in small batches using responsibly sourced essential oils.",
    "Vegan and never tested on animals.",
];
const TOY_CARE: &[&str] = &[
    "Not suitable for children under 3 years: contains small parts.",
    "Printed with vegetable-based inks on board from responsibly managed forests.",
    "Meets EN 71 toy safety standards and ships in plastic-free packaging.",
];
const PLUSH_CARE: &[&str] = &[
    "Machine washable at 30 degrees in a laundry bag; reshape while damp and air dry.",
    "Tested to EN 71 toy safety standards and suitable from birth.",
    "Packed in a recyclable gift box with no plastic windows.",
];
const OUTDOOR_TOY_CARE: &[&str] = &[
    "Adult assembly required; always supervise young children during play.",
    "Wipe clean with a damp cloth and store indoors over winter to make it last.",
    "Tested to EN 71 toy safety standards.",
];
const BOOK_NOTES: &[&str] = &[
    "Printed on paper from responsibly managed forests.",
    "Includes a reading group guide and an exclusive interview with the author.",
    "Large print editions are set in a clear 16-point typeface.",
];
const COOKBOOK_NOTES: &[&str] = &[
    "Printed on paper from responsibly managed forests.",
    "Every recipe includes metric and imperial measurements.",
    "The sewn binding lets the book lie open on the kitchen counter.",
];
const KIDS_BOOK_NOTES: &[&str] = &[
    "Printed with child-safe inks on paper from responsibly managed forests.",
    "Sturdy pages and rounded corners stand up to enthusiastic little hands.",
];

static LEAVES: &[Leaf] = &[
    // ----------------------------------------------------------------------------- Women
    Leaf {
        department: WOMEN,
        slug: "womens-dresses",
        name: "Women's Dresses",
        names: &[BAMN, BAMNX, BMNX],
        extras: &[
            "with Pockets",
            "with Tie Waist",
            "with Puff Sleeves",
            "with Side Slit",
            "with Button Front",
            "with Smocked Bodice",
        ],
        groups: &[Group {
            adjs: &[
                "Flowing",
                "Tailored",
                "Relaxed",
                "Pleated",
                "Tiered",
                "Belted",
                "Ruffled",
                "Minimalist",
                "Floral",
                "Square-Neck",
                "V-Neck",
                "Sleeveless",
            ],
            mats: &["Linen", "Organic Cotton", "Crepe", "Satin", "Viscose", "Cotton Poplin", "Jersey", "Chiffon"],
            nouns: &[
                "Wrap Dress",
                "Midi Dress",
                "Maxi Dress",
                "Shirt Dress",
                "Slip Dress",
                "Sundress",
                "Tea Dress",
                "Shift Dress",
                "Mini Dress",
            ],
            axes: &[APPAREL_COLORS, APPAREL_SIZES],
            price: (35, 189),
            grams: (220, 650),
        }],
        intros: &[
            "{b} cuts this {n} from {m} that drapes softly and moves easily from a morning meeting to dinner with friends.",
            "Made from breathable {m}, the {a} {n} has a clean-finished hem, a concealed side zip and a shape that flatters without fuss.",
            "The {t} is lined where it matters and finished with French seams, so it feels as good as it looks.",
        ],
        uses: &[
            "Wear it with sandals on warm afternoons or layer a knit over it when the evenings turn cool.",
            "It is an easy choice for weddings, garden parties and long weekends away, and it packs without fuss.",
            "Style it with trainers for the weekend or with heels and a blazer for the office.",
        ],
        care: APPAREL_CARE,
    },
    Leaf {
        department: WOMEN,
        slug: "womens-tops",
        name: "Women's Tops & Blouses",
        names: &[BAMN, BAMN, BAMNX],
        extras: &["with Tie Neck", "with Balloon Sleeves", "with Lace Trim", "with Pintucks", "with Keyhole Back"],
        groups: &[Group {
            adjs: &[
                "Relaxed",
                "Cropped",
                "Puff-Sleeve",
                "Sleeveless",
                "Draped",
                "Oversized",
                "Fitted",
                "Embroidered",
                "Lightweight",
                "Classic",
                "Wrap-Front",
            ],
            mats: &[
                "Silk",
                "Linen",
                "Cotton Voile",
                "Modal",
                "Ribbed Jersey",
                "Organic Cotton",
                "Georgette",
                "Bamboo Jersey",
                "Crinkle Cotton",
            ],
            nouns: &[
                "Blouse",
                "Button-Up Shirt",
                "Camisole",
                "Knit Top",
                "Tunic",
                "Peplum Top",
                "Boat-Neck Top",
                "Tank Top",
                "Wrap Top",
            ],
            axes: &[APPAREL_COLORS, APPAREL_SIZES],
            price: (19, 119),
            grams: (100, 350),
        }],
        intros: &[
            "The {a} {n} from {b} is made from {m}, with a fit that skims rather than clings.",
            "Soft {m} gives this {a} {n} a fluid feel and keeps it looking polished all day.",
            "The {t} is finished with tonal buttons, neat seams and a curved hem that sits well tucked in or loose.",
        ],
        uses: &[
            "Tuck it into tailored trousers for work or wear it with denim and sandals at the weekend.",
            "It layers neatly under a blazer or cardigan, so it works from the first cool morning to late summer.",
            "An easy travel piece that rolls into a carry-on and comes out ready to wear.",
        ],
        care: APPAREL_CARE,
    },
    Leaf {
        department: WOMEN,
        slug: "womens-jeans-trousers",
        name: "Women's Jeans & Trousers",
        names: &[BAMN, BAMN, BAN],
        extras: &[],
        groups: &[
            Group {
                adjs: &[
                    "High-Rise",
                    "Mid-Rise",
                    "Cropped",
                    "Vintage-Wash",
                    "Raw-Hem",
                    "Relaxed",
                    "Slim",
                    "Ankle-Length",
                    "Distressed",
                    "Sculpting",
                ],
                mats: &[
                    "Stretch Denim",
                    "Rigid Denim",
                    "Organic Cotton Denim",
                    "Recycled Denim",
                    "Comfort-Stretch Denim",
                    "Selvedge Denim",
                ],
                nouns: &[
                    "Jeans",
                    "Straight-Leg Jeans",
                    "Skinny Jeans",
                    "Mom Jeans",
                    "Flared Jeans",
                    "Wide-Leg Jeans",
                    "Bootcut Jeans",
                    "Barrel Jeans",
                ],
                axes: &[DENIM_COLORS, WOMEN_WAIST],
                price: (29, 149),
                grams: (450, 800),
            },
            Group {
                adjs: &[
                    "High-Rise",
                    "Pleated",
                    "Tailored",
                    "Cropped",
                    "Relaxed",
                    "Ankle-Length",
                    "Paperbag-Waist",
                    "Pull-On",
                ],
                mats: &["Cotton Twill", "Wool Blend", "Linen Blend", "Corduroy", "Lyocell", "Crepe", "Ponte Jersey"],
                nouns: &[
                    "Wide-Leg Trousers",
                    "Culottes",
                    "Cigarette Trousers",
                    "Cargo Trousers",
                    "Palazzo Trousers",
                    "Chinos",
                    "Joggers",
                ],
                axes: &[APPAREL_COLORS, WOMEN_WAIST],
                price: (29, 129),
                grams: (300, 700),
            },
        ],
        intros: &[
            "{b} cuts the {n} from {m} and shapes them with a flattering rise and a clean, modern line through the leg.",
            "These {a} {n} in {m} hold their shape from the first wear to the fiftieth, with reinforced seams and deep pockets.",
            "The {t} have a comfortable waistband, belt loops and a hem that looks right with flats or heels.",
        ],
        uses: &[
            "Pair them with a crisp shirt for the office or a knit and trainers for the weekend.",
            "They move with you through a long day of commuting, sitting and walking without bagging at the knee.",
            "Choose your usual waist size; the fit is true to size with a little give after the first few wears.",
        ],
        care: APPAREL_CARE,
    },
    Leaf {
        department: WOMEN,
        slug: "womens-shoes",
        name: "Women's Shoes",
        names: &[BAMN, BAMN, BMN],
        extras: &[],
        groups: &[Group {
            adjs: &[
                "Pointed-Toe",
                "Cushioned",
                "Lightweight",
                "Classic",
                "Platform",
                "Slip-On",
                "Padded",
                "Water-Resistant",
                "Square-Toe",
                "Almond-Toe",
                "Low-Heel",
            ],
            mats: &[
                "Suede",
                "Full-Grain Leather",
                "Patent Leather",
                "Vegan Leather",
                "Nubuck",
                "Soft Calf Leather",
                "Croc-Effect Leather",
            ],
            nouns: &[
                "Ankle Boots",
                "Ballet Flats",
                "Loafers",
                "Block-Heel Sandals",
                "Sneakers",
                "Mules",
                "Chelsea Boots",
                "Knee-High Boots",
                "Slingback Pumps",
            ],
            axes: &[SHOE_COLORS, WOMEN_SHOE_SIZES],
            price: (39, 229),
            grams: (400, 1300),
        }],
        intros: &[
            "{b} crafts the {n} from {m} on a comfortable last, with a cushioned footbed that softens with every step.",
            "These {a} {n} pair {m} uppers with a grippy rubber sole and a soft lining that will not rub.",
            "The {t} are set on a flexible, cushioned sole that feels broken in from the first wear.",
        ],
        uses: &[
            "Wear them with cropped trousers and a blazer during the week or with a slip dress on a night out.",
            "Comfortable enough for a day on your feet in the city and smart enough for the office.",
            "True to size; if you are between sizes, we recommend going up for a roomier fit.",
        ],
        care: FOOTWEAR_CARE,
    },
    Leaf {
        department: WOMEN,
        slug: "womens-coats-jackets",
        name: "Women's Coats & Jackets",
        names: &[BAMN, BAMN, BMN],
        extras: &[],
        groups: &[
            Group {
                adjs: &[
                    "Double-Breasted",
                    "Belted",
                    "Tailored",
                    "Oversized",
                    "Single-Breasted",
                    "Collarless",
                    "Classic",
                    "Longline",
                ],
                mats: &["Wool Blend", "Boiled Wool", "Cotton Gabardine", "Cashmere Blend", "Recycled Wool", "Tweed"],
                nouns: &["Wrap Coat", "Blazer", "Trench Coat", "Car Coat", "Overcoat", "Peacoat"],
                axes: &[APPAREL_COLORS, APPAREL_SIZES],
                price: (79, 349),
                grams: (700, 1800),
            },
            Group {
                adjs: &["Hooded", "Insulated", "Waterproof", "Packable", "Longline", "Cropped", "Lightweight"],
                mats: &[
                    "Recycled Nylon",
                    "Waxed Cotton",
                    "Ripstop Polyester",
                    "Water-Repellent Cotton",
                    "Technical Shell",
                ],
                nouns: &["Puffer Jacket", "Parka", "Quilted Jacket", "Rain Jacket", "Gilet", "Anorak"],
                axes: &[APPAREL_COLORS, APPAREL_SIZES],
                price: (59, 299),
                grams: (350, 1500),
            },
            Group {
                adjs: &["Cropped", "Oversized", "Boxy", "Classic", "Relaxed", "Collarless"],
                mats: &["Denim", "Faux Leather", "Suede", "Corduroy", "Faux Shearling"],
                nouns: &["Denim Jacket", "Biker Jacket", "Bomber Jacket", "Shacket", "Trucker Jacket"],
                axes: &[APPAREL_COLORS, APPAREL_SIZES],
                price: (49, 249),
                grams: (500, 1400),
            },
        ],
        intros: &[
            "{b} makes this {n} from {m}, with a smooth lining, deep pockets and a collar that stands up to a cold wind.",
            "The {a} {n} is cut from {m} and sized to layer over a chunky knit without feeling bulky.",
            "The {t} is finished with a smooth lining, an inside pocket and adjustable cuffs.",
        ],
        uses: &[
            "Throw it on over tailoring for the commute or over a hoodie for weekend walks.",
            "It earns its place from the first cold snap of autumn to the last chilly evenings of spring.",
            "Choose your usual size for a neat fit over light layers, or size up for a roomier silhouette.",
        ],
        care: OUTERWEAR_CARE,
    },
    Leaf {
        department: WOMEN,
        slug: "womens-bags",
        name: "Women's Bags",
        names: &[BAMN, BAMN, BMNX],
        extras: &[
            "with Chain Strap",
            "with Detachable Strap",
            "with Laptop Sleeve",
            "with Gold Hardware",
            "with Magnetic Closure",
            "with Coin Pouch",
        ],
        groups: &[Group {
            adjs: &[
                "Structured",
                "Slouchy",
                "Quilted",
                "Mini",
                "Oversized",
                "Zip-Top",
                "Convertible",
                "Everyday",
                "Minimalist",
                "Classic",
            ],
            mats: &[
                "Pebbled Leather",
                "Vegan Leather",
                "Canvas",
                "Suede",
                "Woven Straw",
                "Recycled Nylon",
                "Croc-Embossed Leather",
                "Smooth Leather",
            ],
            nouns: &[
                "Tote Bag",
                "Crossbody Bag",
                "Shoulder Bag",
                "Clutch",
                "Bucket Bag",
                "Backpack",
                "Belt Bag",
                "Satchel",
                "Hobo Bag",
                "Weekender Bag",
            ],
            axes: &[LEATHER_COLORS],
            price: (29, 299),
            grams: (250, 1300),
        }],
        intros: &[
            "{b} makes this {n} from {m} with a roomy main compartment, an inside zip pocket and smooth, polished hardware.",
            "The {a} {n} in {m} holds your phone, wallet, keys and a paperback without losing its shape.",
            "Lined in recycled cotton twill, the {t} is built to be carried every day for years.",
        ],
        uses: &[
            "Wear it on the shoulder for errands and commutes, then carry it to dinner without a second thought.",
            "An adjustable strap lets you carry it the way that suits the day, from hands-free to dressed-up.",
            "A thoughtful gift that works with almost every outfit and every season.",
        ],
        care: BAG_CARE,
    },
    // ----------------------------------------------------------------------------- Men
    Leaf {
        department: MEN,
        slug: "mens-shirts",
        name: "Men's Shirts",
        names: &[BMAN, BAMN],
        extras: &[],
        groups: &[Group {
            adjs: &[
                "Slim-Fit",
                "Regular-Fit",
                "Relaxed-Fit",
                "Tailored",
                "Garment-Dyed",
                "Non-Iron",
                "Classic",
                "Washed",
                "Everyday",
                "Stretch",
            ],
            mats: &[
                "Linen",
                "Oxford Cotton",
                "Brushed Flannel",
                "Poplin",
                "Chambray",
                "Organic Cotton",
                "Cotton Twill",
                "Seersucker",
                "Corduroy",
            ],
            nouns: &[
                "Shirt",
                "Dress Shirt",
                "Overshirt",
                "Camp-Collar Shirt",
                "Button-Down Shirt",
                "Work Shirt",
                "Long-Sleeve Shirt",
                "Short-Sleeve Shirt",
                "Utility Shirt",
            ],
            axes: &[APPAREL_COLORS, APPAREL_SIZES],
            price: (25, 139),
            grams: (180, 420),
        }],
        intros: &[
            "{b} cuts this {n} from {m} with a soft collar, a curved hem and tonal buttons that are stitched to stay.",
            "The {a} {n} in {m} keeps its shape through long days and looks better with every wash.",
            "The {t} has a back pleat for ease of movement, a single chest pocket and neatly felled seams.",
        ],
        uses: &[
            "Wear it buttoned with chinos for the office or open over a T-shirt at the weekend.",
            "It works under a blazer on Monday and with shorts on Saturday.",
            "Take your usual size; the fit is designed to tuck in neatly or sit well untucked.",
        ],
        care: APPAREL_CARE,
    },
    Leaf {
        department: MEN,
        slug: "mens-t-shirts-polos",
        name: "Men's T-Shirts & Polos",
        names: &[BAMN, BAMN, BMN],
        extras: &[],
        groups: &[Group {
            adjs: &[
                "Lightweight",
                "Midweight",
                "Slim-Fit",
                "Relaxed",
                "Vintage-Wash",
                "Essential",
                "Boxy",
                "Performance",
                "Everyday",
                "Classic",
                "Garment-Dyed",
            ],
            mats: &[
                "Organic Cotton",
                "Pima Cotton",
                "Slub Cotton",
                "Merino Wool",
                "Cotton Jersey",
                "Pique Cotton",
                "Bamboo Blend",
                "Recycled Cotton",
            ],
            nouns: &[
                "Crew-Neck T-Shirt",
                "V-Neck T-Shirt",
                "Pocket T-Shirt",
                "Polo Shirt",
                "Long-Sleeve T-Shirt",
                "Raglan T-Shirt",
                "Henley",
                "Tank Top",
            ],
            axes: &[APPAREL_COLORS, APPAREL_SIZES],
            price: (12, 69),
            grams: (140, 320),
        }],
        intros: &[
            "{b} knits this {n} from {m} that feels soft from the first wear and holds its colour wash after wash.",
            "The {a} {n} is made from {m} with a taped neckline that will not stretch out of shape.",
            "The {t} has a clean shoulder seam, a slightly longer back and reinforced side seams.",
        ],
        uses: &[
            "Wear it on its own in summer or as a base layer under shirts and knitwear when the temperature drops.",
            "Easy to pair with jeans, chinos or shorts, it is the building block of a dependable wardrobe.",
            "Order your usual size for a regular fit, or size up for a relaxed, boxy look.",
        ],
        care: APPAREL_CARE,
    },
    Leaf {
        department: MEN,
        slug: "mens-trousers-jeans",
        name: "Men's Trousers & Jeans",
        names: &[BAMN, BAMN, BAN],
        extras: &[],
        groups: &[
            Group {
                adjs: &[
                    "Slim",
                    "Tapered",
                    "Straight-Leg",
                    "Relaxed",
                    "Athletic-Fit",
                    "Vintage-Wash",
                    "Rinse-Wash",
                    "Classic",
                    "Distressed",
                ],
                mats: &[
                    "Selvedge Denim",
                    "Stretch Denim",
                    "Rigid Denim",
                    "Organic Cotton Denim",
                    "Recycled Denim",
                    "Raw Denim",
                ],
                nouns: &["Jeans", "Five-Pocket Jeans", "Carpenter Jeans", "Workwear Jeans", "Denim Trousers"],
                axes: &[DENIM_COLORS, MEN_WAIST],
                price: (35, 159),
                grams: (550, 900),
            },
            Group {
                adjs: &["Slim", "Tapered", "Relaxed", "Pleated", "Flat-Front", "Washed", "Tailored", "Classic"],
                mats: &["Cotton Twill", "Ripstop", "Wool Blend", "Corduroy", "Canvas", "Linen Blend", "Stretch Cotton"],
                nouns: &[
                    "Chinos",
                    "Cargo Trousers",
                    "Joggers",
                    "Dress Trousers",
                    "Carpenter Trousers",
                    "Shorts",
                    "Drawstring Trousers",
                ],
                axes: &[APPAREL_COLORS, MEN_WAIST],
                price: (29, 139),
                grams: (350, 800),
            },
        ],
        intros: &[
            "{b} cuts the {n} from {m} with a mid rise, a clean line through the leg and a little room in the seat.",
            "These {a} {n} in {m} are built with bar-tacked pockets and triple-stitched seams that last for years.",
            "The {t} have a comfortable waistband, a hidden coin pocket and a hem ready to roll or cuff.",
        ],
        uses: &[
            "Wear them with a T-shirt and trainers at the weekend or with an oxford shirt and loafers for the office.",
            "They keep their shape through long days of commuting, sitting and walking.",
            "Sized by waist; choose your usual size for a fit that settles in after the first few wears.",
        ],
        care: APPAREL_CARE,
    },
    Leaf {
        department: MEN,
        slug: "mens-shoes",
        name: "Men's Shoes",
        names: &[BAMN, BAMN, BMN],
        extras: &[],
        groups: &[Group {
            adjs: &[
                "Classic",
                "Cushioned",
                "Lightweight",
                "Water-Resistant",
                "Welted",
                "Minimalist",
                "Round-Toe",
                "Hand-Finished",
                "Rubber-Soled",
                "Leather-Soled",
            ],
            mats: &[
                "Full-Grain Leather",
                "Suede",
                "Nubuck",
                "Waxed Leather",
                "Calfskin",
                "Vegan Leather",
                "Pebble-Grain Leather",
            ],
            nouns: &[
                "Derby Shoes",
                "Oxford Shoes",
                "Chelsea Boots",
                "Penny Loafers",
                "Sneakers",
                "Boat Shoes",
                "Desert Boots",
                "Brogues",
                "Monk-Strap Shoes",
                "Chukka Boots",
            ],
            axes: &[SHOE_COLORS, MEN_SHOE_SIZES],
            price: (49, 279),
            grams: (700, 1500),
        }],
        intros: &[
            "{b} makes the {n} from {m} on a classic last, with a leather lining and an insole that moulds to your foot.",
            "These {a} {n} combine {m} uppers with a stitched sole that can be replaced when the time comes.",
            "The {t} have a padded heel counter and a flexible sole that needs almost no breaking in.",
        ],
        uses: &[
            "Dress them up with tailoring or down with dark denim; they look right either way.",
            "Built for long days on your feet, from the morning commute to evenings out.",
            "True to size for most feet; if you have a wide foot, consider going up a size.",
        ],
        care: FOOTWEAR_CARE,
    },
    Leaf {
        department: MEN,
        slug: "mens-coats-jackets",
        name: "Men's Coats & Jackets",
        names: &[BAMN, BAMN, BMN],
        extras: &[],
        groups: &[
            Group {
                adjs: &[
                    "Double-Breasted",
                    "Single-Breasted",
                    "Tailored",
                    "Classic",
                    "Unstructured",
                    "Longline",
                    "Relaxed",
                ],
                mats: &["Wool Blend", "Cashmere Blend", "Recycled Wool", "Tweed", "Boiled Wool", "Herringbone Wool"],
                nouns: &["Overcoat", "Peacoat", "Car Coat", "Blazer", "Topcoat"],
                axes: &[APPAREL_COLORS, APPAREL_SIZES],
                price: (89, 399),
                grams: (800, 2000),
            },
            Group {
                adjs: &["Hooded", "Insulated", "Waterproof", "Packable", "Lightweight", "Storm-Proof", "Three-Layer"],
                mats: &[
                    "Recycled Nylon",
                    "Waxed Cotton",
                    "Ripstop Polyester",
                    "Water-Repellent Cotton",
                    "Technical Shell",
                    "Recycled Polyester",
                ],
                nouns: &["Parka", "Puffer Jacket", "Rain Jacket", "Field Jacket", "Gilet", "Anorak", "Shell Jacket"],
                axes: &[APPAREL_COLORS, APPAREL_SIZES],
                price: (59, 349),
                grams: (400, 1700),
            },
            Group {
                adjs: &["Classic", "Relaxed", "Boxy", "Cropped", "Washed", "Unlined"],
                mats: &["Denim", "Suede", "Corduroy", "Cotton Canvas", "Moleskin"],
                nouns: &["Bomber Jacket", "Harrington Jacket", "Trucker Jacket", "Chore Jacket", "Work Jacket"],
                axes: &[APPAREL_COLORS, APPAREL_SIZES],
                price: (49, 249),
                grams: (600, 1400),
            },
        ],
        intros: &[
            "{b} makes this {n} in {m}, with two hand-warmer pockets and an inside pocket sized for your phone.",
            "The {a} {n} is made from {m} and cut with enough room to wear over a heavy knit.",
            "The {t} has adjustable cuffs, an inside pocket and a collar that turns up against the wind.",
        ],
        uses: &[
            "Wear it over a suit on workdays and over a hoodie at the weekend.",
            "Light enough for brisk autumn mornings and warm enough for a damp winter commute.",
            "Order your usual size for a trim fit over a shirt, or size up to layer over thicker knitwear.",
        ],
        care: OUTERWEAR_CARE,
    },
    Leaf {
        department: MEN,
        slug: "mens-socks-underwear",
        name: "Men's Socks & Underwear",
        names: &[BAMNX, BAMNX, BMN],
        extras: &["2-Pack", "3-Pack", "5-Pack", "7-Pack"],
        groups: &[
            Group {
                adjs: &[
                    "Cushioned",
                    "Ribbed",
                    "Breathable",
                    "Striped",
                    "Patterned",
                    "Moisture-Wicking",
                    "Everyday",
                    "Reinforced",
                    "Thermal",
                ],
                mats: &[
                    "Merino Wool",
                    "Combed Cotton",
                    "Bamboo Viscose",
                    "Organic Cotton",
                    "Wool Blend",
                    "Recycled Nylon",
                    "Cashmere Blend",
                ],
                nouns: &[
                    "Crew Socks",
                    "Ankle Socks",
                    "Dress Socks",
                    "Hiking Socks",
                    "No-Show Socks",
                    "Running Socks",
                    "Boot Socks",
                    "Bed Socks",
                ],
                axes: &[PACK_COLORS, BASIC_SIZES],
                price: (5, 15),
                grams: (50, 250),
            },
            Group {
                adjs: &[
                    "Breathable",
                    "Soft-Touch",
                    "Seamless",
                    "Everyday",
                    "Anti-Chafe",
                    "Classic",
                    "Lightweight",
                    "Moisture-Wicking",
                ],
                mats: &["Organic Cotton", "Cotton Stretch", "Micro Modal", "Bamboo Viscose", "Merino Wool"],
                nouns: &["Boxer Briefs", "Trunks", "Boxer Shorts", "Briefs"],
                axes: &[PACK_COLORS, BASIC_SIZES],
                price: (12, 45),
                grams: (80, 400),
            },
        ],
        intros: &[
            "{b} knits the {n} from {m} with reinforced stress points, so they last far longer than the usual multipack.",
            "These {a} {n} use {m} that stays soft, breathes well and keeps its shape after countless washes.",
            "The {t} have flat seams and a comfortable band that stays put without digging in.",
        ],
        uses: &[
            "Comfortable all day in the office, on a long walk or on a long-haul flight.",
            "Stock up once: the pack covers the week and keeps its shape and colour wash after wash.",
            "Choose your usual size; the stretch yarn adapts to a range of shapes and sizes.",
        ],
        care: APPAREL_CARE,
    },
    // ----------------------------------------------------------------------------- Electronics
    Leaf {
        department: ELECTRONICS,
        slug: "laptops",
        name: "Laptops",
        names: &[&[Brand, Adj, Extra, Noun], &[Brand, Adj, Code("SXGK", 3, 9), Extra, Noun]],
        extras: &["13.3\"", "14\"", "15.6\"", "16\"", "17.3\""],
        groups: &[Group {
            adjs: &[
                "Nova", "Vertex", "Zephyr", "Orion", "Pulse", "Apex", "Nimbus", "Stratos", "Flux", "Atlas", "Horizon",
                "Quasar",
            ],
            mats: &[
                "a 2.8K OLED display",
                "a colour-accurate IPS display",
                "an all-day 70 Wh battery",
                "a backlit keyboard and a glass trackpad",
                "two full-speed USB-C ports and Wi-Fi 7",
                "a machined aluminium chassis",
                "a 165 Hz display and dedicated graphics",
                "32 GB of fast memory",
                "a 1080p webcam with a privacy shutter",
            ],
            nouns: &[
                "Laptop",
                "Ultrabook",
                "Notebook",
                "2-in-1 Laptop",
                "Gaming Laptop",
                "Creator Laptop",
                "Business Laptop",
            ],
            axes: &[TECH_COLORS, LAPTOP_STORAGE],
            price: (499, 2499),
            grams: (1100, 2800),
        }],
        intros: &[
            "The {t} pairs {m} with a fast multi-core processor that handles everything from spreadsheets to photo edits.",
            "{b} built this {n} around {m}, quiet cooling and a keyboard that is genuinely comfortable to type on.",
            "Highlights of the {t} include {m}, fast solid-state storage and enough memory for heavy multitasking.",
        ],
        uses: &[
            "Light enough to carry between meetings, lectures and cafes, with fast charging that tops up over lunch.",
            "It handles video calls, coding, streaming and light gaming without breaking a sweat.",
            "Choose the storage that suits you; every configuration ships with the operating system preinstalled.",
        ],
        care: ELECTRONICS_CARE,
    },
    Leaf {
        department: ELECTRONICS,
        slug: "smartphones",
        name: "Smartphones",
        names: &[&[Brand, Adj, Num(5, 15, 1), Noun], &[Brand, Adj, Num(5, 15, 1), Extra, Noun]],
        extras: &["Pro", "Plus", "Lite", "Max", "Mini", "Ultra", "Neo"],
        groups: &[Group {
            adjs: &["Lumo", "Pico", "Sierra", "Vela", "Mira", "Terra", "Aria", "Kite", "Neon", "Onyx", "Prism", "Rio"],
            mats: &[
                "a 6.7-inch 120 Hz AMOLED display",
                "a triple camera with a 50 MP main sensor",
                "a 5,000 mAh battery with 67 W fast charging",
                "an IP68 rating for water and dust resistance",
                "stereo speakers and Wi-Fi 6E",
                "a titanium frame and a toughened glass back",
                "a 200 MP camera with optical zoom",
                "seven years of software updates",
            ],
            nouns: &["Smartphone", "5G Smartphone", "Rugged Smartphone", "Compact Smartphone", "Foldable Smartphone"],
            axes: &[TECH_COLORS, PHONE_STORAGE],
            price: (199, 1299),
            grams: (160, 260),
        }],
        intros: &[
            "The {t} brings {m} to a slim, well-balanced body that sits comfortably in one hand.",
            "{b} designed this {n} with {m}, a fast eight-core chip and a clean interface free of bloatware.",
            "Highlights of the {t} include {m}, a bright always-on display and all-day battery life.",
        ],
        uses: &[
            "Shoot sharp photos at night, stream in high resolution and switch between apps without a stutter.",
            "Dual SIM and eSIM support make it an easy companion for travel and for separating work from home.",
            "Choose your storage and colour; every model comes unlocked and works with all major networks.",
        ],
        care: ELECTRONICS_CARE,
    },
    Leaf {
        department: ELECTRONICS,
        slug: "headphones-earbuds",
        name: "Headphones & Earbuds",
        names: &[&[Brand, Code("QHXA", 10, 99), Adj, Noun], &[Brand, Code("QHXA", 10, 99), Adj, Noun], BAN],
        extras: &[],
        groups: &[
            Group {
                adjs: &[
                    "Noise-Cancelling",
                    "Sweat-Resistant",
                    "Compact",
                    "Low-Latency",
                    "Hi-Res",
                    "Lightweight",
                    "Waterproof",
                ],
                mats: &[
                    "adaptive active noise cancellation",
                    "up to 32 hours of battery life with the case",
                    "multipoint wireless pairing",
                    "secure-fit ear wings",
                    "an IPX5 sweat rating",
                    "spatial audio with head tracking",
                    "10 mm dynamic drivers",
                ],
                nouns: &["Wireless Earbuds", "Sport Earbuds", "True Wireless Earbuds", "Open-Ear Earbuds"],
                axes: &[TECH_COLORS],
                price: (29, 279),
                grams: (40, 90),
            },
            Group {
                adjs: &[
                    "Noise-Cancelling",
                    "Foldable",
                    "Hi-Res",
                    "Wireless",
                    "Lightweight",
                    "Closed-Back",
                    "Open-Back",
                ],
                mats: &[
                    "40 mm custom drivers",
                    "up to 60 hours of playback",
                    "memory-foam ear cushions",
                    "adaptive active noise cancellation",
                    "a detachable 3.5 mm cable",
                    "multipoint wireless pairing",
                ],
                nouns: &[
                    "Over-Ear Headphones",
                    "On-Ear Headphones",
                    "Studio Headphones",
                    "Monitor Headphones",
                    "Travel Headphones",
                ],
                axes: &[TECH_COLORS],
                price: (39, 449),
                grams: (180, 380),
            },
        ],
        intros: &[
            "{b} tuned the {n} for rich, detailed sound and gave them {m}.",
            "With {m}, the {t} make long listening sessions, calls and commutes noticeably more comfortable.",
            "Inside the {t} you will find {m}, fast charging and a companion app with a customisable equaliser.",
        ],
        uses: &[
            "Use them on the train, at the gym or at your desk; a quick tap pauses the music when someone speaks to you.",
            "Ten minutes of charging gives roughly two hours of listening, so a flat battery is never a long wait.",
            "Clear microphones with wind reduction keep your voice crisp on calls, even outdoors.",
        ],
        care: ELECTRONICS_CARE,
    },
    Leaf {
        department: ELECTRONICS,
        slug: "smartwatches-trackers",
        name: "Smartwatches & Fitness Trackers",
        names: &[&[Brand, Adj, Num(2, 9, 1), Noun], &[Brand, Adj, Extra, Noun]],
        extras: &["Pro", "Lite", "Sport", "Solar", "Plus", "Trail"],
        groups: &[Group {
            adjs: &[
                "Pulse", "Stride", "Vital", "Core", "Active", "Trek", "Luna", "Halo", "Sprint", "Ridge", "Flow",
                "Summit",
            ],
            mats: &[
                "continuous heart-rate and sleep tracking",
                "built-in GPS and offline maps",
                "an always-on AMOLED display",
                "up to 14 days of battery life",
                "contactless payments",
                "blood-oxygen monitoring",
                "a sapphire crystal lens and a titanium bezel",
                "water resistance to 50 metres",
            ],
            nouns: &[
                "Smartwatch",
                "Fitness Tracker",
                "GPS Sports Watch",
                "Hybrid Smartwatch",
                "Fitness Band",
                "Running Watch",
                "Outdoor Watch",
            ],
            axes: &[TECH_COLORS, WATCH_SIZES],
            price: (49, 599),
            grams: (25, 80),
        }],
        intros: &[
            "The {t} pairs {m} with more than a hundred sport modes and automatic workout detection.",
            "{b} packed {m} into this {n}, along with smart notifications and a battery that lasts for days.",
            "Light and comfortable enough to wear overnight, the {t} offers {m} and detailed recovery insights.",
        ],
        uses: &[
            "Track runs, rides, swims and strength sessions, then review trends in the free app with no subscription.",
            "It works with both major phone platforms and syncs automatically whenever your phone is nearby.",
            "Swap the quick-release strap in seconds to go from a sweaty workout to the office.",
        ],
        care: ELECTRONICS_CARE,
    },
    Leaf {
        department: ELECTRONICS,
        slug: "cameras",
        name: "Cameras",
        names: &[&[Brand, Adj, Code("ZRXK", 10, 90), Noun], &[Brand, Code("ZRXK", 10, 90), Noun]],
        extras: &[],
        groups: &[Group {
            adjs: &[
                "Vista", "Optima", "Lumen", "Iris", "Kestrel", "Falcon", "Summit", "Halo", "Ember", "Polar", "Sierra",
                "Trek",
            ],
            mats: &[
                "a 24 MP back-illuminated sensor",
                "in-body image stabilisation",
                "4K video at 60 frames per second",
                "a flip-out touchscreen",
                "fast hybrid autofocus with eye tracking",
                "a weather-sealed magnesium body",
                "a bright f/1.8 lens",
                "waterproofing to 10 metres without a housing",
            ],
            nouns: &[
                "Mirrorless Camera",
                "Compact Camera",
                "Action Camera",
                "Instant Camera",
                "Vlogging Camera",
                "360 Camera",
                "Full-Frame Camera",
                "Bridge Camera",
            ],
            axes: &[CAMERA_BUNDLES],
            price: (99, 2199),
            grams: (120, 900),
        }],
        intros: &[
            "The {t} combines {m} with fast, accurate autofocus that keeps moving subjects sharp.",
            "{b} designed this {n} around {m}, intuitive controls and a grip that feels secure in one hand.",
            "Highlights of the {t} include {m}, wireless image transfer and USB-C charging on the go.",
        ],
        uses: &[
            "Capture travel, family moments and fast-paced sport, then share straight to your phone over Wi-Fi.",
            "It is equally at home shooting stills and video, with clean audio from the built-in microphones.",
            "Pick the bundle that fits your plans; the creator kit adds a spare battery, a grip and a fast memory card.",
        ],
        care: ELECTRONICS_CARE,
    },
    Leaf {
        department: ELECTRONICS,
        slug: "speakers-soundbars",
        name: "Speakers & Soundbars",
        names: &[BAN, &[Brand, Code("SBX", 10, 90), Adj, Noun]],
        extras: &[],
        groups: &[
            Group {
                adjs: &["Waterproof", "Rugged", "Compact", "Floating", "Bass-Heavy", "Wireless"],
                mats: &[
                    "360-degree sound",
                    "an IP67 waterproof rating",
                    "up to 24 hours of playback",
                    "a built-in power bank",
                    "stereo pairing with a second speaker",
                    "twin passive bass radiators",
                ],
                nouns: &["Portable Speaker", "Party Speaker", "Outdoor Speaker", "Mini Speaker"],
                axes: &[TECH_COLORS],
                price: (29, 299),
                grams: (300, 2500),
            },
            Group {
                adjs: &["Wireless", "Room-Filling", "High-Fidelity", "Multi-Room", "Slim", "Voice-Controlled"],
                mats: &[
                    "virtual surround sound",
                    "a built-in voice assistant",
                    "an HDMI eARC connection",
                    "multi-room streaming over Wi-Fi",
                    "a wireless subwoofer",
                    "automatic room calibration",
                ],
                nouns: &["Soundbar", "Smart Speaker", "Bookshelf Speaker", "Home Speaker"],
                axes: &[TECH_COLORS],
                price: (79, 699),
                grams: (900, 6000),
            },
        ],
        intros: &[
            "The {t} delivers {m} with clear vocals and punchy bass at any volume.",
            "{b} built this {n} around {m}, a durable fabric grille and controls you can use without looking.",
            "Setting up the {t} takes a minute, and {m} makes it an easy upgrade to everyday listening.",
        ],
        uses: &[
            "Stream from your phone, tablet or TV, and keep the music going from the kitchen to the garden.",
            "Perfect for film nights, podcasts while you cook and playlists on weekend trips.",
            "Free updates add features over time, including a custom equaliser and new streaming services.",
        ],
        care: ELECTRONICS_CARE,
    },
    // ----------------------------------------------------------------------------- Home & Kitchen
    Leaf {
        department: HOME,
        slug: "cookware",
        name: "Cookware",
        names: &[BAMN, BAMN, BMN],
        extras: &[],
        groups: &[Group {
            adjs: &[
                "Induction-Ready",
                "Heavy-Duty",
                "Professional",
                "Classic",
                "Oven-Safe",
                "Deep",
                "Everyday",
                "Chef's",
                "Family-Size",
            ],
            mats: &[
                "Cast Iron",
                "Enamelled Cast Iron",
                "Stainless Steel",
                "Carbon Steel",
                "Hard-Anodised Aluminium",
                "Copper-Core Stainless Steel",
                "Ceramic-Coated Aluminium",
            ],
            nouns: &["Skillet", "Frying Pan", "Saucepan", "Saute Pan", "Stockpot", "Wok", "Grill Pan", "Braiser"],
            axes: &[COOKWARE_SIZES],
            price: (24, 249),
            grams: (900, 4500),
        }],
        intros: &[
            "{b} makes this {n} from {m} that heats evenly, holds its temperature and sears without hot spots.",
            "The {a} {n} in {m} has a long, stay-cool handle and a helper handle for lifting it when it is full.",
            "The {t} goes from hob to oven to table and is made for years of daily cooking.",
        ],
        uses: &[
            "Use it for searing, sauteing, simmering and braising, from quick weeknight dinners to slow Sunday cooking.",
            "Generously sized for family meals, yet just as good for a single fried egg on a quiet morning.",
            "Choose the size that suits your household; the larger sizes are ideal for batch cooking.",
        ],
        care: COOKWARE_CARE,
    },
    Leaf {
        department: HOME,
        slug: "bedding",
        name: "Bedding",
        names: &[BAMN, BAMN, BMN],
        extras: &[],
        groups: &[Group {
            adjs: &[
                "Stonewashed",
                "Breathable",
                "Hotel-Quality",
                "Lightweight",
                "Cooling",
                "All-Season",
                "Soft-Touch",
                "Classic",
                "Relaxed",
                "Waffle-Texture",
            ],
            mats: &[
                "Long-Staple Cotton",
                "Washed Linen",
                "Organic Cotton",
                "Bamboo Lyocell",
                "Cotton Flannel",
                "Cotton Percale",
                "Cotton Sateen",
                "Seersucker Cotton",
                "Linen-Cotton Blend",
            ],
            nouns: &[
                "Duvet Cover Set",
                "Sheet Set",
                "Fitted Sheet",
                "Pillowcase Pair",
                "Quilt",
                "Bedspread",
                "Flat Sheet",
                "Duvet Cover",
            ],
            axes: &[HOME_COLORS, BED_SIZES],
            price: (19, 249),
            grams: (400, 3000),
        }],
        intros: &[
            "{b} weaves this {n} from {m} that feels cool in summer and cosy in winter, and softens with every wash.",
            "The {a} {n} in {m} is finished with generous hems and double-stitched seams that keep it looking neat for years.",
            "The {t} brings an easy, hotel-style calm to the bedroom, night after night.",
        ],
        uses: &[
            "Layer it with a chunky throw and extra cushions for a bed that invites a slow Sunday morning.",
            "Breathable fibres help regulate temperature, so you sleep comfortably whether you run hot or cold.",
            "Mix and match with other colours from the range to create a look that is entirely your own.",
        ],
        care: BEDDING_CARE,
    },
    Leaf {
        department: HOME,
        slug: "lighting",
        name: "Lighting",
        names: &[BAMN, BAMN, BMN],
        extras: &[],
        groups: &[Group {
            adjs: &[
                "Dimmable",
                "Adjustable",
                "Mid-Century",
                "Industrial",
                "Minimalist",
                "Sculptural",
                "Swing-Arm",
                "Classic",
                "Modern",
                "Globe",
            ],
            mats: &[
                "Brushed Brass",
                "Solid Oak",
                "Ceramic",
                "Marble",
                "Matte Metal",
                "Walnut",
                "Concrete",
                "Antique Bronze",
            ],
            nouns: &[
                "Table Lamp",
                "Floor Lamp",
                "Pendant Light",
                "Wall Light",
                "Desk Lamp",
                "Bedside Lamp",
                "Arc Floor Lamp",
                "Ceiling Light",
                "Tripod Lamp",
            ],
            axes: &[LAMP_SHADES],
            price: (29, 399),
            grams: (600, 7000),
        }],
        intros: &[
            "{b} pairs {m} with a softly diffused shade, so this {n} casts a warm, even glow across the room.",
            "The {a} {n} in {m} works with standard dimmer switches and smart bulbs, from bright task light to a low glow.",
            "The {t} looks as good switched off as it does switched on, and it is built to last for decades.",
        ],
        uses: &[
            "Use it to light a reading corner, a sideboard or a home office where overhead light feels too harsh.",
            "Warm light in the evening helps the whole room feel calmer and more inviting.",
            "Pair two for symmetry on either side of a bed or sofa.",
        ],
        care: LIGHTING_CARE,
    },
    Leaf {
        department: HOME,
        slug: "kitchen-knives",
        name: "Kitchen Knives",
        names: &[BMNX, BAMNX, BANX],
        extras: &["16 cm", "18 cm", "20 cm", "21 cm", "23 cm"],
        groups: &[Group {
            adjs: &[
                "Forged",
                "Hand-Sharpened",
                "Full-Tang",
                "Professional",
                "Ultra-Sharp",
                "Hollow-Edge",
                "Balanced",
                "Lightweight",
                "Hammered",
            ],
            mats: &[
                "High-Carbon Stainless Steel",
                "Damascus Steel",
                "VG-10 Steel",
                "X50CrMoV15 Steel",
                "Carbon Steel",
                "Ceramic",
                "Powder Steel",
            ],
            nouns: &[
                "Chef's Knife",
                "Santoku Knife",
                "Bread Knife",
                "Carving Knife",
                "Nakiri Knife",
                "Slicing Knife",
                "Gyuto Knife",
                "Utility Knife",
            ],
            axes: &[],
            price: (19, 249),
            grams: (120, 350),
        }],
        intros: &[
            "{b} makes this {n} from {m} and hand-hones the edge to a keen 15-degree angle on each side.",
            "The {a} {n} has a blade of {m} and a contoured wooden handle that stays comfortable through hours of prep.",
            "The {t} holds its edge through months of daily chopping, slicing and dicing.",
        ],
        uses: &[
            "Use it for everything from paper-thin tomato slices to finely chopped herbs and crusty loaves.",
            "Perfectly balanced at the bolster, it gives you control and reduces fatigue during long prep sessions.",
            "A lasting gift for keen home cooks and a dependable workhorse for professionals.",
        ],
        care: KNIFE_CARE,
    },
    Leaf {
        department: HOME,
        slug: "tableware",
        name: "Tableware",
        names: &[BAMN, BAMN, BMN],
        extras: &[],
        groups: &[
            Group {
                adjs: &[
                    "Reactive-Glaze",
                    "Hand-Thrown",
                    "Rustic",
                    "Scalloped",
                    "Matte",
                    "Stackable",
                    "Everyday",
                    "Organic-Shape",
                    "Rimmed",
                ],
                mats: &[
                    "Stoneware",
                    "Porcelain",
                    "Bone China",
                    "Speckled Stoneware",
                    "Terracotta",
                    "Enamelware",
                    "Glazed Earthenware",
                ],
                nouns: &[
                    "Dinner Plates",
                    "Side Plates",
                    "Pasta Bowls",
                    "Cereal Bowls",
                    "Coffee Mugs",
                    "Espresso Cups",
                    "Salad Bowls",
                    "Serving Bowls",
                ],
                axes: &[TABLEWARE_SETS],
                price: (15, 119),
                grams: (500, 2500),
            },
            Group {
                adjs: &["Fluted", "Stackable", "Ribbed", "Stemless", "Classic", "Everyday", "Tinted"],
                mats: &["Recycled Glass", "Crystal Glass", "Borosilicate Glass", "Hand-Blown Glass"],
                nouns: &["Tumblers", "Wine Glasses", "Highball Glasses", "Water Glasses", "Coupe Glasses"],
                axes: &[TABLEWARE_SETS],
                price: (12, 89),
                grams: (400, 1500),
            },
        ],
        intros: &[
            "{b} makes the {n} from {m} with a smooth finish and a satisfying weight in the hand.",
            "These {a} {n} in {m} bring quiet, everyday beauty to weeknight dinners and long weekend lunches.",
            "The {t} are durable enough for daily use and handsome enough for guests.",
        ],
        uses: &[
            "Mix them with pieces you already own, or build a full table setting over time from the same range.",
            "They stack neatly in the cupboard and go straight from the dishwasher back to the table.",
            "A thoughtful housewarming or wedding gift for anyone setting up a new home.",
        ],
        care: TABLEWARE_CARE,
    },
    // ----------------------------------------------------------------------------- Sports & Outdoors
    Leaf {
        department: SPORTS,
        slug: "running-shoes",
        name: "Running Shoes",
        names: &[&[Brand, Adj, Num(1, 12, 1), Noun], &[Brand, Adj, Num(1, 12, 1), Noun], BAN],
        extras: &[],
        groups: &[Group {
            adjs: &[
                "Glide", "Surge", "Drift", "Rally", "Swift", "Vapor", "Pacer", "Zenith", "Comet", "Tempo", "Flux",
                "Cadence",
            ],
            mats: &[
                "a responsive nitrogen-infused foam midsole",
                "a breathable engineered mesh upper",
                "a grippy rubber outsole with 4 mm lugs",
                "a carbon-fibre plate for a snappy toe-off",
                "a plush, high-stack midsole",
                "a wide, stable base and firm arch support",
                "a recycled knit upper",
            ],
            nouns: &[
                "Running Shoes",
                "Trail Running Shoes",
                "Racing Shoes",
                "Training Shoes",
                "Stability Running Shoes",
                "Cushioned Running Shoes",
            ],
            axes: &[SPORT_COLORS, RUNNING_SHOE_SIZES],
            price: (59, 219),
            grams: (450, 700),
        }],
        intros: &[
            "{b} built the {n} with {m}, so every stride feels smooth from the first kilometre to the last.",
            "The {t} combine {m} with a secure heel lockdown and a roomy toe box.",
            "With {m}, these {n} strike a balance between soft cushioning and lively energy return.",
        ],
        uses: &[
            "Use them for easy recovery runs, long weekend miles and the occasional tempo session.",
            "Reflective details keep you visible on early-morning and late-evening runs.",
            "They fit true to size; runners with wide feet may prefer to go up a size.",
        ],
        care: RUNNING_CARE,
    },
    Leaf {
        department: SPORTS,
        slug: "fitness-yoga",
        name: "Fitness & Yoga",
        names: &[BAMN],
        extras: &[],
        groups: &[
            Group {
                adjs: &["Non-Slip", "Extra-Thick", "Eco-Friendly", "Lightweight", "Textured", "Studio", "Foldable"],
                mats: &["Natural Rubber", "Cork", "TPE Foam", "Recycled PU", "Jute"],
                nouns: &["Yoga Mat", "Exercise Mat", "Travel Yoga Mat", "Pilates Mat", "Hot Yoga Mat"],
                axes: &[SPORT_COLORS],
                price: (19, 119),
                grams: (700, 2800),
            },
            Group {
                adjs: &["Competition", "Heavy-Duty", "Home Gym", "Compact", "Pro", "Ergonomic"],
                mats: &[
                    "Cast Iron",
                    "Rubber-Coated Steel",
                    "Neoprene-Coated Iron",
                    "Chrome Steel",
                    "Powder-Coated Iron",
                ],
                nouns: &["Kettlebell", "Dumbbell", "Weight Plate", "Hex Dumbbell"],
                axes: &[WEIGHTS],
                price: (19, 79),
                grams: (4000, 4400),
            },
            Group {
                adjs: &["Heavy-Duty", "Non-Snap", "Progressive", "Travel", "Colour-Coded"],
                mats: &["Natural Latex", "Woven Fabric", "TPE"],
                nouns: &["Resistance Band Set", "Loop Band Set", "Pull-Up Band", "Glute Band Set"],
                axes: &[],
                price: (9, 39),
                grams: (150, 900),
            },
            Group {
                adjs: &["Textured", "Firm", "Deep-Tissue", "Compact", "Travel"],
                mats: &["EVA Foam", "Cork", "High-Density Foam", "Natural Rubber"],
                nouns: &["Foam Roller", "Massage Ball Set", "Yoga Block Pair", "Massage Stick"],
                axes: &[SPORT_COLORS],
                price: (9, 59),
                grams: (200, 1200),
            },
        ],
        intros: &[
            "{b} makes this {n} from {m} that stands up to daily workouts without slipping, cracking or losing its shape.",
            "The {a} {n} in {m} was developed with coaches and physiotherapists to support safe, controlled training.",
            "The {t} is the kind of kit you reach for every single session, whatever your level.",
        ],
        uses: &[
            "Use it for strength circuits, mobility work, yoga flows and rehab exercises at home or in the gym.",
            "Compact enough to store under a bed or in a cupboard, so a full workout never needs much space.",
            "A free library of guided follow-along sessions is included, from beginner to advanced.",
        ],
        care: SPORT_CARE,
    },
    Leaf {
        department: SPORTS,
        slug: "camping-hiking",
        name: "Camping & Hiking",
        names: &[BAMN, BAMN, BMN],
        extras: &[],
        groups: &[
            Group {
                adjs: &[
                    "Freestanding",
                    "Three-Season",
                    "Four-Season",
                    "Ultralight",
                    "Quick-Pitch",
                    "Storm-Rated",
                    "Two-Person",
                    "Family",
                ],
                mats: &[
                    "Ripstop Nylon",
                    "Silicone-Coated Nylon",
                    "Polyester",
                    "Recycled Polyester",
                    "Polycotton Canvas",
                ],
                nouns: &[
                    "Dome Tent",
                    "Backpacking Tent",
                    "Tunnel Tent",
                    "Trekking Pole Tent",
                    "Bell Tent",
                    "Bivy Shelter",
                ],
                axes: &[OUTDOOR_COLORS],
                price: (59, 599),
                grams: (900, 9000),
            },
            Group {
                adjs: &["Lightweight", "Compressible", "Three-Season", "Cold-Weather", "Packable", "Ultralight"],
                mats: &[
                    "Responsibly Sourced Down",
                    "Synthetic Insulation",
                    "Recycled Polyester",
                    "Ripstop Nylon",
                    "Merino Wool",
                ],
                nouns: &["Sleeping Bag", "Sleeping Pad", "Camping Quilt", "Sleeping Bag Liner"],
                axes: &[SLEEP_SIZES],
                price: (39, 399),
                grams: (300, 2200),
            },
            Group {
                adjs: &["Compact", "Ultralight", "Nesting", "Packable", "Backcountry", "Folding"],
                mats: &["Titanium", "Hard-Anodised Aluminium", "Stainless Steel"],
                nouns: &["Camp Stove", "Cook Set", "Camping Mug", "Camping Kettle", "Spork Set", "Pot Set"],
                axes: &[],
                price: (12, 149),
                grams: (60, 900),
            },
        ],
        intros: &[
            "{b} builds this {n} from {m} to survive wind, rain and years of being stuffed into a pack.",
            "The {a} {n} uses {m} to keep weight down without giving up strength or comfort at camp.",
            "The {t} packs small and sets up quickly, even with cold hands at the end of a long day.",
        ],
        uses: &[
            "Take it on weekend campouts, long-distance treks and festival fields alike.",
            "Every part has been field-tested on mountain trips in wind, rain and sub-zero nights.",
            "Pack it with confidence: it ships with a storage sack and a lifetime guarantee on workmanship.",
        ],
        care: SPORT_CARE,
    },
    Leaf {
        department: SPORTS,
        slug: "cycling",
        name: "Cycling",
        names: &[BAMN, BAMN, BAN],
        extras: &[],
        groups: &[
            Group {
                adjs: &["Aero", "Breathable", "Lightweight", "Thermal", "Race-Fit", "Endurance", "Reflective"],
                mats: &["Recycled Polyester", "Merino Blend", "Elastane Blend", "Windproof Softshell"],
                nouns: &["Cycling Jersey", "Cycling Gilet", "Cycling Jacket", "Base Layer", "Bib Short"],
                axes: &[SPORT_COLORS, APPAREL_SIZES],
                price: (29, 199),
                grams: (100, 450),
            },
            Group {
                adjs: &["Ventilated", "Aero", "Lightweight", "Reflective", "Low-Profile"],
                mats: &["Polycarbonate", "Carbon-Reinforced", "Recycled Polycarbonate"],
                nouns: &[
                    "Road Helmet",
                    "Mountain Bike Helmet",
                    "Commuter Helmet",
                    "Gravel Helmet",
                    "Kids' Bike Helmet",
                ],
                axes: &[SPORT_COLORS, HELMET_SIZES],
                price: (39, 249),
                grams: (220, 450),
            },
            Group {
                adjs: &["Rechargeable", "USB-C", "High-Lumen", "Waterproof", "Compact", "Daytime-Visible"],
                mats: &["Aluminium", "Polycarbonate", "Anodised Aluminium"],
                nouns: &["Bike Light Set", "Front Bike Light", "Rear Bike Light", "Helmet Light"],
                axes: &[],
                price: (15, 119),
                grams: (30, 300),
            },
        ],
        intros: &[
            "{b} designs this {n} in {m} for riders who want comfort and performance on long days in the saddle.",
            "The {a} {n} uses {m} to stay light and tough, with details refined over thousands of test kilometres.",
            "The {t} has been tested on cobbles, gravel and wet winter commutes.",
        ],
        uses: &[
            "Ready for fast group rides, solo training and everyday commuting in all weather.",
            "Reflective accents add visibility in low light, when drivers need the most help seeing you.",
            "Light enough to forget about until you need it, and tough enough for years of riding.",
        ],
        care: SPORT_CARE,
    },
    Leaf {
        department: SPORTS,
        slug: "backpacks-travel",
        name: "Backpacks & Travel Bags",
        names: &[BAMNX, BMNX, BANX],
        extras: &["18 L", "20 L", "24 L", "28 L", "30 L", "32 L", "35 L", "40 L"],
        groups: &[Group {
            adjs: &[
                "Waterproof",
                "Lightweight",
                "Weatherproof",
                "Packable",
                "Ventilated",
                "Expandable",
                "Minimalist",
                "Anti-Theft",
                "Convertible",
            ],
            mats: &["Ripstop Nylon", "Recycled Polyester", "Waxed Canvas", "Ballistic Nylon", "Tarpaulin"],
            nouns: &[
                "Hiking Backpack",
                "Daypack",
                "Travel Backpack",
                "Duffel Bag",
                "Rolltop Backpack",
                "Commuter Backpack",
                "Carry-On Backpack",
            ],
            axes: &[OUTDOOR_COLORS],
            price: (29, 249),
            grams: (400, 1900),
        }],
        intros: &[
            "{b} makes this {n} from {m} with a padded back panel, quick-access pockets and smooth, lockable zips.",
            "The {a} {n} in {m} keeps your kit dry, organised and comfortable to carry from dawn to dusk.",
            "The {t} has padded straps, a grab handle on top and room for a full day of gear.",
        ],
        uses: &[
            "Take it on day hikes, city breaks and weekend getaways; the smaller sizes fit under most airline seats.",
            "Internal organisers keep chargers, snacks and a water bottle exactly where you expect them.",
            "Compression straps cinch it down when it is half full, so it never feels floppy.",
        ],
        care: SPORT_CARE,
    },
    // ----------------------------------------------------------------------------- Beauty
    Leaf {
        department: BEAUTY,
        slug: "skincare",
        name: "Skincare",
        names: &[BAMN, BAMN, BMN],
        extras: &[],
        groups: &[Group {
            adjs: &[
                "Hydrating",
                "Brightening",
                "Soothing",
                "Firming",
                "Renewing",
                "Fragrance-Free",
                "Gentle",
                "Barrier-Repair",
                "Balancing",
                "Plumping",
            ],
            mats: &[
                "Hyaluronic Acid",
                "Vitamin C",
                "Niacinamide",
                "Retinol",
                "Ceramide",
                "Squalane",
                "Peptide",
                "Green Tea",
                "Rosehip",
                "Centella",
                "Bakuchiol",
            ],
            nouns: &[
                "Face Serum",
                "Moisturiser",
                "Night Cream",
                "Eye Cream",
                "Gel Cleanser",
                "Toner",
                "Face Oil",
                "Sleeping Mask",
                "Gel Cream",
                "Day Cream",
            ],
            axes: &[SKIN_SIZES],
            price: (9, 89),
            grams: (60, 250),
        }],
        intros: &[
            "{b} formulates this {n} with {m} to leave skin soft, comfortable and visibly healthier within weeks.",
            "The {a} {n} combines {m} with a lightweight texture that sinks in quickly and layers well under makeup.",
            "The {t} suits every skin type, including sensitive and breakout-prone skin.",
        ],
        uses: &[
            "Apply a small amount morning and night to cleansed skin, then follow with sunscreen during the day.",
            "Free from fragrance, parabens and drying alcohols, it is gentle enough for daily use.",
            "Most people notice smoother, brighter skin within four weeks of daily use.",
        ],
        care: BEAUTY_CARE,
    },
    Leaf {
        department: BEAUTY,
        slug: "makeup",
        name: "Makeup",
        names: &[&[Brand, Adj, Noun, Word("with"), Mat], &[Brand, Extra, Adj, Noun]],
        extras: &["Bloom", "Velvet Hour", "Muse", "Daydream", "Icon", "Soft Focus", "Afterglow", "Bare", "Editorial"],
        groups: &[
            Group {
                adjs: &["Long-Wear", "Matte", "Satin", "Sheer", "Creamy", "Hydrating", "Velvet", "Glossy"],
                mats: &["Shea Butter", "Jojoba Oil", "Vitamin E", "Hyaluronic Acid", "Rosehip Oil", "Mango Butter"],
                nouns: &["Lipstick", "Lip Gloss", "Lip Liner", "Lip Tint", "Cream Blush", "Powder Blush", "Lip Balm"],
                axes: &[LIP_SHADES],
                price: (8, 39),
                grams: (10, 60),
            },
            Group {
                adjs: &["Volumising", "Lengthening", "Waterproof", "Smudge-Proof", "Precision", "Long-Wear"],
                mats: &["Argan Oil", "Castor Oil", "Vitamin E", "Panthenol"],
                nouns: &["Mascara", "Liquid Eyeliner", "Brow Pencil", "Gel Eyeliner", "Kohl Pencil", "Brow Gel"],
                axes: &[EYE_SHADES],
                price: (7, 32),
                grams: (8, 40),
            },
            Group {
                adjs: &["Lightweight", "Buildable", "Dewy", "Matte", "Long-Wear", "Natural-Finish", "Radiant"],
                mats: &["Hyaluronic Acid", "Niacinamide", "SPF 30", "Squalane", "Vitamin E"],
                nouns: &["Foundation", "Concealer", "Tinted Moisturiser", "Skin Tint", "Cushion Foundation"],
                axes: &[FACE_SHADES],
                price: (12, 49),
                grams: (30, 120),
            },
        ],
        intros: &[
            "{b} blends this {n} with {m} for colour that looks fresh for hours without drying or settling into lines.",
            "The {a} {n} glides on easily, builds from a subtle wash to bold impact and is enriched with {m}.",
            "The {t} stays comfortable from morning coffee to evening plans.",
        ],
        uses: &[
            "Apply with fingertips for a soft, diffused look or with a brush for more precision.",
            "The slim, travel-friendly packaging slips into any bag for quick touch-ups.",
            "Shades are developed and tested on a wide range of skin tones, so there is a match for everyone.",
        ],
        care: BEAUTY_CARE,
    },
    Leaf {
        department: BEAUTY,
        slug: "hair-care",
        name: "Hair Care",
        names: &[BAMN, BAMN, BMN],
        extras: &[],
        groups: &[Group {
            adjs: &[
                "Volumising",
                "Repairing",
                "Smoothing",
                "Curl-Defining",
                "Clarifying",
                "Colour-Protecting",
                "Moisturising",
                "Strengthening",
                "Sulphate-Free",
            ],
            mats: &[
                "Argan Oil",
                "Coconut",
                "Keratin",
                "Rosemary",
                "Tea Tree",
                "Biotin",
                "Shea Butter",
                "Rice Protein",
                "Aloe Vera",
            ],
            nouns: &[
                "Shampoo",
                "Conditioner",
                "Hair Mask",
                "Leave-In Conditioner",
                "Hair Oil",
                "Styling Cream",
                "Scalp Scrub",
                "Hair Serum",
            ],
            axes: &[HAIR_SIZES],
            price: (6, 45),
            grams: (120, 400),
        }],
        intros: &[
            "{b} formulates this {n} with {m} to nourish and protect hair without weighing it down.",
            "The {a} {n} is powered by {m} and works for straight, wavy, curly and coily hair alike.",
            "The {t} leaves hair softer, shinier and easier to manage from the first use.",
        ],
        uses: &[
            "Work it through damp hair from mid-lengths to ends, leave for a minute, then rinse or style as usual.",
            "Safe for colour-treated and chemically straightened hair, and free from silicones and parabens.",
            "The salon-quality formula is made in small batches and smells subtly fresh rather than perfumed.",
        ],
        care: BEAUTY_CARE,
    },
    Leaf {
        department: BEAUTY,
        slug: "fragrance",
        name: "Fragrance",
        names: &[BAMN],
        extras: &[],
        groups: &[Group {
            adjs: &[
                "Midnight", "Golden", "Wild", "Velvet", "Salted", "Sunlit", "Smoked", "White", "Coastal", "Secret",
                "Hidden", "Silk",
            ],
            mats: &[
                "Fig",
                "Oud",
                "Vetiver",
                "Neroli",
                "Jasmine",
                "Amber",
                "Sandalwood",
                "Bergamot",
                "Tuberose",
                "Cedar",
                "Vanilla",
                "Iris",
                "Pink Pepper",
                "Orange Blossom",
            ],
            nouns: &["Eau de Parfum", "Eau de Toilette", "Body Mist", "Perfume Oil", "Cologne", "Extrait de Parfum"],
            axes: &[FRAGRANCE_SIZES],
            price: (19, 149),
            grams: (150, 350),
        }],
        intros: &[
            "{b} built this {n} around {m}, softened with clean musk and a dry, woody base that lingers on skin.",
            "Opening with bright citrus, the {t} settles into a heart of {m} before drying down to soft musk.",
            "Luminous and intimate, the {t} is made to be worn every day rather than saved for best.",
        ],
        uses: &[
            "Spray onto pulse points at the wrist and neck, or mist over clothes for a softer, longer-lasting trail.",
            "Wear it from the office to late dinners; the scent develops gently over six to eight hours.",
            "Presented in a weighted glass bottle, it makes an elegant gift for birthdays and anniversaries.",
        ],
        care: FRAGRANCE_CARE,
    },
    Leaf {
        department: BEAUTY,
        slug: "bath-body",
        name: "Bath & Body",
        names: &[BAMN, BAMN, BMN],
        extras: &[],
        groups: &[Group {
            adjs: &[
                "Nourishing",
                "Exfoliating",
                "Calming",
                "Invigorating",
                "Ultra-Rich",
                "Softening",
                "Gentle",
                "Uplifting",
                "Restoring",
            ],
            mats: &[
                "Lavender",
                "Eucalyptus",
                "Shea Butter",
                "Coconut Milk",
                "Oat",
                "Sea Salt",
                "Grapefruit",
                "Rose",
                "Cocoa Butter",
                "Sandalwood",
                "Fig Leaf",
            ],
            nouns: &[
                "Body Wash",
                "Body Lotion",
                "Body Scrub",
                "Hand Cream",
                "Bath Salts",
                "Body Butter",
                "Bath Oil",
                "Shower Gel",
                "Hand Wash",
            ],
            axes: &[BATH_SIZES],
            price: (6, 39),
            grams: (120, 500),
        }],
        intros: &[
            "{b} makes this {n} with {m} and a blend of plant oils that leave skin soft, supple and lightly scented.",
            "The {a} {n} pairs {m} with skin-loving glycerin for a moment of calm at the start or end of the day.",
            "The {t} turns an everyday routine into a small, restorative ritual.",
        ],
        uses: &[
            "Use it daily in the shower or bath, and keep one by the sink for a quick moment of self-care.",
            "Suitable for all skin types, including dry and sensitive skin, and kind enough for everyday use.",
            "It makes a lovely gift alongside a candle and a good book.",
        ],
        care: BEAUTY_CARE,
    },
    // ----------------------------------------------------------------------------- Toys & Games
    Leaf {
        department: TOYS,
        slug: "board-card-games",
        name: "Board & Card Games",
        names: &[&[Brand, Adj, Noun, Extra]],
        extras: &[
            "Strategy Game",
            "Card Game",
            "Family Board Game",
            "Cooperative Board Game",
            "Party Game",
            "Dice Game",
            "Deck-Building Game",
            "Tile-Laying Game",
        ],
        groups: &[Group {
            adjs: &[
                "Lantern",
                "Dragon",
                "Star",
                "Copper",
                "Jungle",
                "Pirate",
                "Garden",
                "Castle",
                "Rocket",
                "Meadow",
                "Thunder",
                "Shadow",
                "Crystal",
                "Harbour",
                "Clockwork",
                "Ember",
            ],
            mats: &[
                "wooden tokens",
                "linen-finish cards",
                "a double-sided board",
                "custom engraved dice",
                "sturdy cardboard tiles",
                "sculpted miniatures",
            ],
            nouns: &[
                "Quest",
                "Kingdoms",
                "Tiles",
                "Traders",
                "Rush",
                "Heist",
                "Expedition",
                "Builders",
                "Duel",
                "Bazaar",
                "Voyage",
                "Legends",
                "Frontier",
                "Empire",
            ],
            axes: &[EDITIONS],
            price: (12, 69),
            grams: (300, 2500),
        }],
        intros: &[
            "{t} is a game for two to six players that is quick to learn but rewards new strategies every time you play.",
            "Beautifully illustrated and packed with {m}, {t} turns any evening into a friendly competition.",
            "Inside the box you will find {m}, a clear illustrated rulebook and quick-reference cards for every player.",
        ],
        uses: &[
            "Games last 30 to 60 minutes, making it perfect for family nights, holidays and rainy weekends.",
            "Easy enough for children aged eight and up, yet deep enough to keep adults coming back.",
            "A solo mode and variant rules keep it fresh long after the first game.",
        ],
        care: TOY_CARE,
    },
    Leaf {
        department: TOYS,
        slug: "building-sets",
        name: "Building Sets",
        names: &[&[Brand, Adj, Noun, Extra, Glue(","), Num(120, 1500, 10), Word("Pieces")], &[Brand, Adj, Noun, Extra]],
        extras: &["Building Set", "Construction Kit", "Brick Set", "Building Kit"],
        groups: &[
            Group {
                adjs: &["Space", "Galactic", "Lunar", "Orbital", "Cosmic"],
                mats: &["sturdy interlocking bricks", "working hinges and gears", "glow-in-the-dark pieces"],
                nouns: &["Rocket", "Space Station", "Planetary Rover", "Space Shuttle", "Satellite", "Launch Pad"],
                axes: &[],
                price: (9, 149),
                grams: (200, 3000),
            },
            Group {
                adjs: &["City", "Downtown", "Harbour", "Rescue", "Metro"],
                mats: &["sturdy interlocking bricks", "rolling wheels and opening doors", "six poseable figures"],
                nouns: &["Fire Station", "Police Car", "Tugboat", "Train Station", "Tow Truck", "Tower Crane"],
                axes: &[],
                price: (9, 129),
                grams: (200, 2800),
            },
            Group {
                adjs: &["Medieval", "Enchanted", "Royal", "Dragon's", "Knight's"],
                mats: &["sturdy interlocking bricks", "a working drawbridge", "four poseable figures"],
                nouns: &["Castle", "Watchtower", "Drawbridge", "Market Square", "Wizard's Tower"],
                axes: &[],
                price: (12, 149),
                grams: (300, 3000),
            },
            Group {
                adjs: &["Jungle", "Safari", "Arctic", "Deep Sea", "Dinosaur"],
                mats: &[
                    "bricks made from plant-based plastic",
                    "moving parts and animal figures",
                    "sturdy interlocking bricks",
                ],
                nouns: &["Expedition Base", "Research Vessel", "Treehouse", "Explorer Camp", "Submarine"],
                axes: &[],
                price: (9, 119),
                grams: (200, 2500),
            },
        ],
        intros: &[
            "{t} comes with {m} and step-by-step illustrated instructions that make the build satisfying, not frustrating.",
            "Young builders follow the instructions to create the {a} {n}, then take it apart and invent something new.",
            "Made with {m}, this {a} {n} set rewards patience with a model that looks great on display.",
        ],
        uses: &[
            "Compatible with other standard building bricks, so it slots straight into an existing collection.",
            "A calm, screen-free project for a rainy afternoon, and a proud display piece once finished.",
            "Recommended for ages six and up; younger children will enjoy building it with a grown-up.",
        ],
        care: TOY_CARE,
    },
    Leaf {
        department: TOYS,
        slug: "jigsaw-puzzles",
        name: "Jigsaw Puzzles",
        names: &[&[Brand, Adj, Noun, Extra]],
        extras: &["Jigsaw Puzzle", "Puzzle", "Jigsaw"],
        groups: &[Group {
            adjs: &[
                "Sunset",
                "Autumn",
                "Vintage",
                "Alpine",
                "Coastal",
                "Botanical",
                "Watercolour",
                "Starry",
                "Snowy",
                "Midsummer",
                "Cosy",
                "Spring",
            ],
            mats: &[
                "thick blue-board pieces",
                "recycled board pieces",
                "precision-cut pieces",
                "glare-free, linen-finish pieces",
                "uniquely shaped pieces",
            ],
            nouns: &[
                "Harbour",
                "Village",
                "Library",
                "Garden",
                "Lighthouse",
                "Market",
                "Forest",
                "World Map",
                "Bookshop",
                "Cafe",
                "Greenhouse",
                "Railway Station",
            ],
            axes: &[PUZZLE_PIECES],
            price: (12, 39),
            grams: (350, 900),
        }],
        intros: &[
            "{t} features a richly detailed illustration printed on {m} that lock together with a satisfying click.",
            "Every piece of {t} is cut cleanly, so there is no dust in the box and no gaps in the finished picture.",
            "The {a} {n} scene comes to life across {m}, with plenty of detail to keep every section interesting.",
        ],
        uses: &[
            "A poster of the finished image is included to help you sort the pieces and plan your approach.",
            "Perfect for slow evenings, family weekends and anyone looking for a relaxing break from screens.",
            "Choose your piece count: 500 for a relaxed afternoon, 2000 for a real challenge.",
        ],
        care: TOY_CARE,
    },
    Leaf {
        department: TOYS,
        slug: "plush-toys",
        name: "Plush Toys",
        names: &[BAMNX, BANX],
        extras: &["Plush Toy", "Soft Toy", "Stuffed Animal", "Plush"],
        groups: &[Group {
            adjs: &["Cuddly", "Sleepy", "Snuggly", "Huggable", "Giggly", "Fluffy", "Baby", "Cheeky", "Dreamy"],
            mats: &["Organic Cotton", "Faux Fur", "Velour", "Cotton Knit", "Recycled Fleece", "Corduroy"],
            nouns: &[
                "Bunny", "Bear", "Fox", "Elephant", "Sloth", "Penguin", "Dragon", "Unicorn", "Owl", "Octopus",
                "Dinosaur", "Hedgehog", "Lion", "Whale",
            ],
            axes: &[PLUSH_SIZES],
            price: (9, 59),
            grams: (80, 400),
        }],
        intros: &[
            "{b} makes this {n} from {m} that is extra soft to the touch and stitched to survive years of hugs.",
            "The {a} {n} has embroidered eyes instead of plastic parts, so it is safe from birth.",
            "The {t} is filled with recycled fibres and sized perfectly for little arms.",
        ],
        uses: &[
            "A comforting companion for bedtime, car journeys and first days at nursery.",
            "It makes a memorable gift for new babies, birthdays and anyone who still loves a good cuddle.",
            "Each one comes with a little name tag so your child can make it their own.",
        ],
        care: PLUSH_CARE,
    },
    Leaf {
        department: TOYS,
        slug: "outdoor-play",
        name: "Outdoor Play",
        names: &[BAMN, BAN],
        extras: &[],
        groups: &[
            Group {
                adjs: &["Adjustable", "Lightweight", "Foldable", "First", "Beginner", "Sturdy"],
                mats: &["Aluminium", "Lightweight Steel", "Powder-Coated Steel"],
                nouns: &["Balance Bike", "Kick Scooter", "Tricycle", "Ride-On Tractor"],
                axes: &[KIDS_COLORS],
                price: (29, 149),
                grams: (2000, 6000),
            },
            Group {
                adjs: &["Classic", "Giant", "Family", "Tournament", "Traditional"],
                mats: &["Pine Wood", "Beech Wood", "Birch Wood", "Rubberwood"],
                nouns: &[
                    "Croquet Set",
                    "Ring Toss Game",
                    "Tumbling Tower",
                    "Kubb Set",
                    "Bean Bag Toss",
                    "Garden Skittles",
                ],
                axes: &[],
                price: (19, 99),
                grams: (1500, 8000),
            },
            Group {
                adjs: &["Deluxe", "Mini", "Activity", "Splash", "Sturdy"],
                mats: &["Recycled Plastic", "Plant-Based Plastic", "BPA-Free Plastic"],
                nouns: &["Sandpit Set", "Water Table", "Bubble Machine", "Beach Toy Set"],
                axes: &[KIDS_COLORS],
                price: (9, 79),
                grams: (300, 4000),
            },
        ],
        intros: &[
            "{b} builds this {n} from {m} that stands up to muddy gardens, sandy beaches and enthusiastic play.",
            "The {a} {n} is made from {m} and designed to get children outside, moving and laughing.",
            "The {t} sets up in minutes and packs away neatly at the end of the day.",
        ],
        uses: &[
            "Ideal for back gardens, parks, picnics and holidays, and fun for the whole family.",
            "It builds balance, coordination and confidence while children simply think they are playing.",
            "Weather-resistant finishes mean it can live outside through the summer.",
        ],
        care: OUTDOOR_TOY_CARE,
    },
    // ----------------------------------------------------------------------------- Books
    Leaf {
        department: BOOKS,
        slug: "fiction",
        name: "Fiction",
        names: &[
            &[Word("The"), Adj, Noun, Word("of"), Extra],
            &[Word("The"), Adj, Noun, Word("of"), Extra],
            &[Word("The"), Adj, Noun, Word("of"), Extra],
            &[Word("The"), Adj, Noun],
            &[Noun, Word("of"), Extra],
        ],
        extras: &[
            "Ashes",
            "Salt",
            "Small Mercies",
            "Wren Island",
            "the North",
            "Tomorrow",
            "Broken Things",
            "Lost Time",
            "the Valley",
            "Falling Stars",
            "Second Chances",
            "Quiet Hours",
            "the Lake",
            "Paper Birds",
            "Evening Light",
            "the Marsh",
        ],
        groups: &[Group {
            adjs: &[
                "Silent",
                "Last",
                "Forgotten",
                "Hidden",
                "Lost",
                "Quiet",
                "Burning",
                "Winter",
                "Secret",
                "Distant",
                "Golden",
                "Paper",
                "Glass",
                "Midnight",
                "Borrowed",
                "Wandering",
                "Summer",
                "Painted",
                "Unfinished",
                "Empty",
                "Little",
                "Drowned",
            ],
            mats: &[
                "family, grief and forgiveness",
                "first love and the weight of secrets",
                "ambition and belonging",
                "memory and the stories we inherit",
                "friendship across a lifetime",
                "courage in the face of loss",
                "home and the meaning of starting over",
            ],
            nouns: &[
                "Orchard",
                "Lighthouse",
                "Garden",
                "House",
                "River",
                "Daughter",
                "Letters",
                "Orchestra",
                "Bookshop",
                "Island",
                "Season",
                "Shore",
                "Memory",
                "Cartographer",
                "Hours",
                "Sister",
                "Harvest",
                "Kingdom",
                "Tide",
                "Keeper",
                "Song",
            ],
            axes: &[BOOK_FORMATS],
            price: (8, 24),
            grams: (250, 650),
        }],
        intros: &[
            "{b} returns with {t}, a luminous novel about {m} that unfolds over one unforgettable summer.",
            "In {t}, {b} weaves together three generations of one family in a story about {m}.",
            "Tender, funny and quietly devastating, {t} is a novel about {m} from the acclaimed author {b}.",
        ],
        uses: &[
            "Perfect for book clubs, long train journeys and anyone who loves character-driven storytelling.",
            "Readers call it the kind of book you press into a friend's hands the moment you finish it.",
            "Shortlisted for several prizes, it has been translated into more than twenty languages.",
        ],
        care: BOOK_NOTES,
    },
    Leaf {
        department: BOOKS,
        slug: "mystery-thriller",
        name: "Mystery & Thriller",
        names: &[
            &[Word("The"), Adj, Noun, Word("at"), Extra],
            &[Word("The"), Adj, Noun, Word("at"), Extra],
            &[Word("The"), Adj, Noun, Word("at"), Extra],
            &[Word("The"), Adj, Noun],
            &[Word("The"), Noun, Word("at"), Extra],
        ],
        extras: &[
            "Blackwater",
            "the Moors",
            "Harrow Lane",
            "Midnight",
            "the Lake House",
            "Ashford Hall",
            "Raven Point",
            "the Old Mill",
            "Marsh End",
            "Greyhaven",
            "the Harbour",
            "Wolf Creek",
        ],
        groups: &[Group {
            adjs: &[
                "Dead",
                "Silent",
                "Cold",
                "Last",
                "Buried",
                "Deadly",
                "Broken",
                "Hollow",
                "Crooked",
                "Vanishing",
                "Perfect",
                "Quiet",
                "Final",
                "Sleeping",
                "Locked",
                "Missing",
            ],
            mats: &[
                "a detective haunted by an old case",
                "a missing sister",
                "a disputed family fortune",
                "a small town with too many secrets",
                "a marriage built on lies",
                "a cold case that refuses to stay buried",
            ],
            nouns: &[
                "Witness",
                "Alibi",
                "Confession",
                "Verdict",
                "Stranger",
                "Lie",
                "Debt",
                "Inheritance",
                "Passenger",
                "Guest",
                "Detective",
                "Room",
                "Widow",
                "Suspect",
                "Signal",
                "Secret",
            ],
            axes: &[BOOK_FORMATS],
            price: (8, 24),
            grams: (250, 650),
        }],
        intros: &[
            "{b} delivers another gripping read in {t}, a twisting story involving {m}.",
            "{t} is a tense, atmospheric mystery about {m}, from bestselling author {b}.",
            "In {t}, {b} builds a slow-burning puzzle around {m}, with a final twist few readers will see coming.",
        ],
        uses: &[
            "Short chapters and relentless pacing make it the perfect one-more-chapter read.",
            "Ideal for fans of classic whodunits and modern psychological suspense alike.",
            "Read it on holiday, on the commute, or in one sitting with the lights on.",
        ],
        care: BOOK_NOTES,
    },
    Leaf {
        department: BOOKS,
        slug: "cookbooks",
        name: "Cookbooks",
        names: &[
            &[Adj, Noun, Glue(":"), Num(50, 200, 5), Word("Recipes for"), Extra],
            &[Adj, Noun, Glue(":"), Num(50, 200, 5), Word("Recipes for"), Extra],
            &[Adj, Noun, Glue(":"), Num(50, 200, 5), Word("Recipes for"), Extra],
            &[Word("The"), Adj, Noun, Word("Cookbook")],
        ],
        extras: &[
            "Busy Weeknights",
            "Every Season",
            "Family Gatherings",
            "the Home Cook",
            "Slow Sundays",
            "Small Kitchens",
            "Sharing",
            "Healthy Living",
            "Beginners",
            "Entertaining",
        ],
        groups: &[Group {
            adjs: &[
                "Simple",
                "Seasonal",
                "Plant-Based",
                "Slow",
                "Weeknight",
                "Coastal",
                "Mediterranean",
                "Modern",
                "Rustic",
                "Everyday",
                "Sunday",
                "One-Pan",
                "Vegetarian",
                "Fresh",
                "Family",
            ],
            mats: &[
                "seasonal vegetables",
                "pantry staples",
                "slow-cooked comfort food",
                "bright, fresh flavours",
                "baking from scratch",
                "food made for sharing",
            ],
            nouns: &[
                "Suppers", "Kitchen", "Baking", "Feasts", "Bowls", "Breads", "Salads", "Soups", "Desserts", "Table",
                "Grilling", "Cooking", "Pasta", "Roasts",
            ],
            axes: &[BOOK_FORMATS],
            price: (12, 35),
            grams: (500, 1200),
        }],
        intros: &[
            "In {t}, {b} shares the recipes that have fed friends and family for years, built around {m}.",
            "{t} is a warm, practical cookbook from {b}, with dishes built on {m} and clear, reliable methods.",
            "{b} turns {m} into generous, unfussy food in {t}, with a photograph for every recipe.",
        ],
        uses: &[
            "Each recipe lists prep and cooking times, and most need nothing more than a good pan and an oven.",
            "Ideal for confident cooks and beginners alike, with tips on shopping, storage and leftovers.",
            "A beautiful gift for housewarmings, birthdays and anyone learning to cook.",
        ],
        care: COOKBOOK_NOTES,
    },
    Leaf {
        department: BOOKS,
        slug: "childrens-books",
        name: "Children's Books",
        names: &[
            &[Adj, Noun, Word("and"), Extra],
            &[Adj, Noun, Word("and"), Extra],
            &[Word("The"), Adj, Noun, Word("Who"), Mat],
            &[Word("The"), Adj, Noun, Word("Who"), Mat],
            &[Word("The"), Adj, Noun],
        ],
        extras: &[
            "the Big Storm",
            "the Missing Hat",
            "the Rainbow Bridge",
            "the Midnight Feast",
            "the Giant Pumpkin",
            "the Snowy Day",
            "the Lost Balloon",
            "the Noisy Night",
            "the Birthday Surprise",
            "the Wishing Star",
            "the Great Race",
            "the Secret Door",
        ],
        groups: &[Group {
            adjs: &[
                "Sleepy", "Brave", "Little", "Curious", "Grumpy", "Giggly", "Tiny", "Magic", "Noisy", "Hungry",
                "Clever", "Shy", "Busy", "Wobbly",
            ],
            mats: &[
                "Couldn't Sleep",
                "Wanted to Fly",
                "Lost a Sock",
                "Loved Books",
                "Was Afraid of the Dark",
                "Wanted a Friend",
                "Said Sorry",
                "Hated Baths",
                "Counted to Ten",
                "Learned to Share",
                "Could Not Stop Sneezing",
                "Wanted to Be Big",
            ],
            nouns: &[
                "Dragon", "Bear", "Penguin", "Fox", "Robot", "Owl", "Elephant", "Hedgehog", "Dinosaur", "Bunny",
                "Tractor", "Octopus", "Mouse", "Giraffe",
            ],
            axes: &[KIDS_BOOK_FORMATS],
            price: (5, 16),
            grams: (150, 500),
        }],
        intros: &[
            "{t} is a warm, funny picture book by {b}, with bright illustrations on every page.",
            "In {t}, {b} tells a gentle story about friendship, kindness and being brave when things feel big.",
            "Bursting with colour and rhyme, {t} by {b} has become a bedtime favourite for families everywhere.",
        ],
        uses: &[
            "Perfect for reading aloud to children aged two to six, with plenty to spot on every spread.",
            "Short, rhythmic sentences make it a great first book for children who are starting to read alone.",
            "A lovely gift for birthdays, new siblings and the first day of school.",
        ],
        care: KIDS_BOOK_NOTES,
    },
    Leaf {
        department: BOOKS,
        slug: "science-nature",
        name: "Science & Nature",
        names: &[
            &[Word("The"), Adj, Word("Life of"), Noun, Glue(":"), Extra],
            &[Word("Of"), Noun, Word("and"), Mat, Glue(":"), Extra],
        ],
        extras: &[
            "How Nature Works",
            "A Natural History",
            "What They Teach Us About Ourselves",
            "A Journey Through Deep Time",
            "The Science of Everyday Wonders",
            "Notes from the Field",
            "A New History of Life on Earth",
            "The Hidden Networks That Shape Our World",
            "Discoveries from the Frontiers of Science",
            "A Field Guide for the Curious",
            "Why It Matters Now",
            "An Illustrated Exploration",
        ],
        groups: &[Group {
            adjs: &[
                "Secret",
                "Hidden",
                "Inner",
                "Remarkable",
                "Wild",
                "Invisible",
                "Curious",
                "Extraordinary",
                "Restless",
                "Ancient",
                "Private",
                "Unseen",
            ],
            mats: &[
                "Mountains",
                "Mushrooms",
                "Tides",
                "Forests",
                "Feathers",
                "Atoms",
                "Ice",
                "Light",
                "Seeds",
                "Storms",
                "Stone",
                "Rain",
            ],
            nouns: &[
                "Fungi",
                "Octopuses",
                "Trees",
                "Rivers",
                "Bees",
                "Clouds",
                "Stars",
                "Microbes",
                "Birds",
                "Glaciers",
                "Moths",
                "Whales",
                "Oceans",
                "Soil",
                "Ants",
                "Volcanoes",
            ],
            axes: &[BOOK_FORMATS],
            price: (10, 30),
            grams: (300, 800),
        }],
        intros: &[
            "In {t}, {b} takes readers on an eye-opening journey into a world most of us walk past every day.",
            "{t} is an accessible, beautifully written exploration of the natural world from scientist and writer {b}.",
            "Drawing on decades of research and fieldwork, {b} shows in {t} how much we still have to learn.",
        ],
        uses: &[
            "Clear explanations and striking illustrations make complex science a pleasure to read.",
            "Perfect for curious readers, students and anyone who loves the outdoors.",
            "Named a book of the year by several reviewers, it will change the way you see the world around you.",
        ],
        care: BOOK_NOTES,
    },
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};
    use std::time::Instant;

    fn leaf_keys() -> HashSet<usize> {
        let cats = categories();
        let parents: HashSet<usize> = cats.iter().filter_map(|c| c.parent).collect();
        cats.iter().map(|c| c.key).filter(|k| !parents.contains(k)).collect()
    }

    #[test]
    fn deterministic() {
        let indexes = (0..2_000).chain([10_000, 123_456, 999_999, 1 << 40, u64::MAX]);
        for i in indexes {
            assert_eq!(product(i), product(i), "index {i}");
        }
        assert_eq!(categories(), categories());
    }

    #[test]
    fn categories_form_a_two_level_tree() {
        let cats = categories();
        assert!((40..=60).contains(&cats.len()), "{} categories", cats.len());
        let slugs: HashSet<&str> = cats.iter().map(|c| c.slug.as_str()).collect();
        assert_eq!(slugs.len(), cats.len(), "category slugs must be unique");
        let top = cats.iter().filter(|c| c.parent.is_none()).count();
        assert!((7..=10).contains(&top), "{top} departments");
        for (i, c) in cats.iter().enumerate() {
            assert_eq!(c.key, i);
            assert!(valid_slug(&c.slug), "{:?}", c.slug);
            assert!(!c.name.is_empty());
            if let Some(p) = c.parent {
                assert!(p < i, "parent of {:?} must come first", c.slug);
                assert!(cats[p].parent.is_none(), "the tree has two levels");
            }
        }
        for dept in cats.iter().filter(|c| c.parent.is_none()) {
            let leaves = cats.iter().filter(|c| c.parent == Some(dept.key)).count();
            assert!((4..=7).contains(&leaves), "{} has {leaves} leaves", dept.slug);
        }
    }

    fn valid_slug(s: &str) -> bool {
        !s.is_empty()
            && s.len() <= 120
            && s.split('-').all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
            && s.bytes().any(|b| b.is_ascii_lowercase())
    }

    #[test]
    fn slugs_and_skus_are_unique_and_well_formed() {
        let mut slugs = HashSet::new();
        let mut skus = HashSet::new();
        let big = [999_999, 1_000_000, 9_999_999, 10_000_000, u64::MAX];
        for i in (0..50_000).chain(big) {
            let p = product(i);
            assert!(valid_slug(&p.slug), "{:?}", p.slug);
            assert!(p.slug.ends_with(&format!("-{i}")), "{:?}", p.slug);
            assert!(slugs.insert(p.slug.clone()), "duplicate slug {:?}", p.slug);
            for v in &p.variants {
                assert!(v.sku.len() <= 40, "{:?}", v.sku);
                assert!(v.sku.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-'));
                assert!(!v.sku.ends_with('-') && !v.sku.contains("--"), "{:?}", v.sku);
                assert!(skus.insert(v.sku.clone()), "duplicate SKU {:?}", v.sku);
            }
        }
    }

    #[test]
    fn products_use_leaf_categories_evenly() {
        let leaves = leaf_keys();
        let mut counts: HashMap<usize, usize> = HashMap::new();
        for i in 0..10_000 {
            let p = product(i);
            assert!(leaves.contains(&p.category), "{} is not a leaf", p.category);
            *counts.entry(p.category).or_default() += 1;
        }
        assert_eq!(counts.len(), leaves.len(), "every leaf gets products");
        let (min, max) = (counts.values().min().unwrap(), counts.values().max().unwrap());
        assert!(max - min <= 1, "uneven spread {min}..{max}");
    }

    #[test]
    fn variants_are_sane() {
        for i in 0..20_000 {
            let p = product(i);
            assert!((1..=MAX_VARIANTS).contains(&p.variants.len()), "{}", p.name);
            let combos: HashSet<_> = p.variants.iter().map(|v| v.options.clone()).collect();
            assert_eq!(combos.len(), p.variants.len(), "repeated option combination in {}", p.name);
            for v in &p.variants {
                assert!(v.weight_grams > 0);
                assert!(v.options.iter().all(|(k, val)| !k.is_empty() && !val.is_empty()));
                assert_eq!(v.options.len(), p.variants[0].options.len());
            }
        }
    }

    #[test]
    fn prices_are_realistic_per_department() {
        // Whole-currency bounds a shopper would find plausible for each department.
        let bounds = [
            (WOMEN, 15, 400),
            (MEN, 4, 450),
            (ELECTRONICS, 25, 3_000),
            (HOME, 10, 450),
            (SPORTS, 8, 650),
            (BEAUTY, 5, 200),
            (TOYS, 8, 200),
            (BOOKS, 4, 50),
        ];
        let cats = categories();
        let mut retail_endings = 0;
        let mut total = 0;
        for i in 0..50_000 {
            let p = product(i);
            let department = cats[p.category].parent.expect("products live in leaf categories");
            let (d, lo, hi) = bounds[department];
            assert_eq!(d, department);
            for v in &p.variants {
                assert!(v.price_minor > 0);
                assert!((lo * 100..=hi * 100).contains(&v.price_minor), "{} at {}", p.name, v.price_minor);
                match cats[p.category].slug.as_str() {
                    "laptops" => assert!(v.price_minor >= 49_800, "{} at {}", p.name, v.price_minor),
                    "mens-socks-underwear" if p.name.contains("Socks") => {
                        assert!((449..=1_500).contains(&v.price_minor), "{} at {}", p.name, v.price_minor)
                    }
                    _ => {}
                }
                total += 1;
                if [99, 49, 0].contains(&(v.price_minor % 100)) {
                    retail_endings += 1;
                }
            }
        }
        assert!(retail_endings * 100 >= total * 90, "{retail_endings} of {total} end in 99, 49 or 00");
    }

    #[test]
    fn text_is_clean() {
        let mut names = HashSet::new();
        let mut words = HashSet::new();
        for i in 0..10_000 {
            let p = product(i);
            for text in [&p.name, &p.description] {
                assert!(text.is_ascii(), "{text:?}");
                assert!(!text.contains("  ") && text.trim() == text, "{text:?}");
                assert!(!text.contains('{') && !text.contains('}'), "{text:?}");
                words.extend(
                    text.split(|c: char| !c.is_ascii_alphabetic()).filter(|w| w.len() > 2).map(str::to_ascii_lowercase),
                );
            }
            let len = p.description.len();
            assert!((DESCRIPTION_MIN..=DESCRIPTION_MAX).contains(&len), "{len}: {}", p.description);
            assert!(p.description.ends_with('.'), "{}", p.description);
            names.insert(p.name);
        }
        assert!(names.len() >= 9_500, "only {} distinct names in 10,000 products", names.len());
        assert!(words.len() >= 600, "only {} distinct words", words.len());
    }

    #[test]
    fn static_data_is_consistent() {
        for leaf in LEAVES {
            assert!(!leaf.groups.is_empty() && !leaf.names.is_empty(), "{}", leaf.slug);
            assert!(!leaf.intros.is_empty() && !leaf.uses.is_empty() && !leaf.care.is_empty(), "{}", leaf.slug);
            let needs_extra = leaf.names.iter().any(|n| n.iter().any(|p| matches!(p, Extra)));
            assert_eq!(needs_extra, !leaf.extras.is_empty(), "{}: extras without use or use without extras", leaf.slug);
            for template in leaf.intros.iter().chain(leaf.uses).chain(leaf.care) {
                let mut rest = *template;
                while let Some(open) = rest.find('{') {
                    let key = &rest[open..open + 3];
                    assert!(["{t}", "{b}", "{a}", "{m}", "{n}"].contains(&key), "{}: {template}", leaf.slug);
                    rest = &rest[open + 3..];
                }
            }
            for group in leaf.groups {
                assert!(!group.adjs.is_empty() && !group.mats.is_empty() && !group.nouns.is_empty());
                assert!(group.axes.len() <= 2, "{}", leaf.slug);
                assert!(0 < group.price.0 && group.price.0 <= group.price.1, "{}", leaf.slug);
                assert!(0 < group.grams.0 && group.grams.0 <= group.grams.1, "{}", leaf.slug);
                for axis in group.axes {
                    let codes: HashSet<&str> = axis.opts.iter().map(|o| o.code).collect();
                    assert_eq!(codes.len(), axis.opts.len(), "{}: duplicate codes", axis.key);
                    assert!(axis.opts.len() >= 2, "{}", axis.key);
                    for o in axis.opts {
                        assert!(!o.code.is_empty() && o.code.len() <= 5, "{}", o.code);
                        assert!(o.code.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()), "{}", o.code);
                        assert!(o.price >= 0 && o.price % 100 == 0 && o.grams >= 0, "{}", o.code);
                    }
                }
            }
        }
    }

    #[test]
    fn helpers() {
        let mut s = String::new();
        push_lower(&mut s, "Cast Iron VG-10 T-Shirt Vitamin C OLED Chef's");
        assert_eq!(s, "cast iron VG-10 T-shirt vitamin C OLED chef's");
        s.clear();
        push_lower(&mut s, "stereo speakers and Wi-Fi 6E");
        assert_eq!(s, "stereo speakers and Wi-Fi 6E");
        s.clear();
        push_slug(&mut s, "Aurora Nova 14\" Chef's  Knife & Co.");
        assert_eq!(s, "aurora-nova-14-chefs-knife-co");
        s.clear();
        push_number(&mut s, 123, 7);
        push_number(&mut s, 0, 0);
        push_number(&mut s, u64::MAX, 7);
        assert_eq!(s, format!("00001230{}", u64::MAX));
    }

    #[test]
    fn generation_is_fast() {
        // Not a benchmark: a tripwire for accidental quadratic work or heavy allocation.
        let n: u64 = if cfg!(debug_assertions) { 100_000 } else { 1_000_000 };
        let start = Instant::now();
        let mut variants = 0;
        for i in 0..n {
            variants += product(i).variants.len();
        }
        let elapsed = start.elapsed();
        eprintln!("generated {n} demo products ({variants} variants) in {elapsed:?}");
        assert!(elapsed.as_secs() < 120, "{n} products took {elapsed:?}");
    }
}
