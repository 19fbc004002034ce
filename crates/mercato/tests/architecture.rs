//! The crate graph the design promises (ARCHITECTURE.md): the domains stand
//! side by side on one floor, each depending on the platform and on
//! mercato-contracts (the other domains' surfaces and events) but on no other
//! domain; the processes that span domains (mercato-checkout) stand above
//! them and reach them through their surfaces only; the HTTP edge knows the
//! domains only through their surfaces. Only the binary, which wires them,
//! names their implementations.
//!
//! Inside a domain, its SQL lives in one module, `store.rs`. On PostgreSQL in
//! the split shape the per-domain roles check the other half of the rule,
//! that no domain's SQL reaches another domain's tables.

use std::path::Path;

const DOMAINS: &[&str] = &[
    "mercato-catalog",
    "mercato-inventory",
    "mercato-customers",
    "mercato-cart",
    "mercato-orders",
    "mercato-payments",
    "mercato-promotions",
    "mercato-flashsale",
    "mercato-webhooks",
];

/// The workspace crates `krate` depends on to build (not its tests).
fn dependencies(krate: &str) -> Vec<String> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(krate).join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap_or_else(|e| panic!("{}: {e}", manifest.display()));
    let mut section = String::new();
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line.to_string();
        } else if section == "[dependencies]" {
            let name = line.split(['=', '.', ' ']).next().unwrap_or("");
            if name.starts_with("mercato") {
                out.push(name.to_string());
            }
        }
    }
    out
}

#[test]
fn no_domain_crate_depends_on_another() {
    let mut crossings = Vec::new();
    for domain in DOMAINS {
        let deps = dependencies(domain);
        assert!(deps.iter().any(|d| d == "mercato-platform"), "{domain}: cannot read its manifest's dependencies");
        for dep in deps.iter().filter(|d| DOMAINS.contains(&d.as_str()) || PROCESSES.contains(&d.as_str())) {
            crossings.push(format!("{domain} -> {dep}"));
        }
    }
    assert!(crossings.is_empty(), "domains must reach each other through mercato-contracts: {crossings:?}");
}

/// The crates of the processes that span domains.
const PROCESSES: &[&str] = &["mercato-checkout"];

#[test]
fn processes_reach_domains_only_through_their_surfaces() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for process in PROCESSES {
        let deps = dependencies(process);
        assert!(deps.iter().any(|d| d == "mercato-contracts"), "{process}: cannot read its dependencies");
        let named: Vec<_> = deps.iter().filter(|d| DOMAINS.contains(&d.as_str())).collect();
        assert!(named.is_empty(), "{process} depends on domain implementations: {named:?}");
        // No tables of its own either: whatever it writes is a domain's step.
        for entry in std::fs::read_dir(root.join(process).join("src")).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(!text.contains("tx.execute(") && !text.contains("tx.query"), "{}: a statement", path.display());
        }
    }
}

/// The other domains' surfaces a domain may hold, and why. Everything else a
/// domain needs of another arrives as an event, or is a process's to do.
const HELD_SURFACES: &[(&str, &[&str])] = &[
    // Pricing a cart reads prices, stock and promotions.
    ("mercato-cart", &["Catalog", "Inventory", "Promotions"]),
];

const SURFACES: &[&str] =
    &["Catalog", "Inventory", "Customers", "Cart", "Orders", "Payments", "Promotions", "FlashSales", "Webhooks"];

#[test]
fn domains_hold_no_other_surface_than_they_need() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut held = Vec::new();
    for domain in DOMAINS {
        let allowed = HELD_SURFACES.iter().find(|(d, _)| d == domain).map_or(&[][..], |(_, s)| *s);
        for entry in std::fs::read_dir(root.join(domain).join("src")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for surface in SURFACES.iter().filter(|s| !allowed.contains(s)) {
                if text.contains(&format!("Arc<dyn {surface}>")) {
                    held.push(format!("{domain} holds {surface}"));
                }
            }
        }
    }
    assert!(held.is_empty(), "a domain holds a surface it should reach by an event or a process: {held:?}");
}

#[test]
fn the_http_edge_knows_domains_only_by_their_surfaces() {
    let deps = dependencies("mercato-http");
    assert!(deps.iter().any(|d| d == "mercato-contracts"));
    let named: Vec<_> =
        deps.iter().filter(|d| DOMAINS.contains(&d.as_str()) || PROCESSES.contains(&d.as_str())).collect();
    assert!(named.is_empty(), "mercato-http depends on domain implementations: {named:?}");
}

/// Files allowed statements besides each domain's `store.rs`: the built-in
/// test payment provider keeps its own ledger, as a real provider would on
/// its side.
const OTHER_SQL: &[&str] = &["mercato-payments/src/test_provider.rs"];

#[test]
fn each_domain_keeps_its_sql_in_its_store() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut strays = Vec::new();
    for domain in DOMAINS {
        let src = root.join(domain).join("src");
        let mut stores = 0;
        for entry in std::fs::read_dir(&src).unwrap_or_else(|e| panic!("{}: {e}", src.display())) {
            let path = entry.unwrap().path();
            let name = format!("{domain}/src/{}", path.file_name().unwrap().to_string_lossy());
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let statements = text.matches("tx.execute(").count() + text.matches("tx.query").count();
            if name.ends_with("/store.rs") {
                stores += statements;
            } else if statements > 0 && !OTHER_SQL.contains(&name.as_str()) {
                strays.push(format!("{name}: {statements}"));
            }
        }
        assert!(stores > 0, "{domain} has no statements in src/store.rs");
    }
    assert!(strays.is_empty(), "statements outside the domains' stores: {strays:?}");
}
