//! The crate graph the design promises (ARCHITECTURE.md): the domains stand
//! side by side on one floor, each depending on the platform and on
//! mercato-contracts (the other domains' surfaces and events) but on no other
//! domain; the HTTP edge knows the domains only through their surfaces. Only
//! the binary, which wires them, names their implementations.
//!
//! On PostgreSQL in the split shape the per-domain roles check the other half
//! of the rule, that no domain's SQL reaches another domain's tables.

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
        for dep in deps.iter().filter(|d| DOMAINS.contains(&d.as_str())) {
            crossings.push(format!("{domain} -> {dep}"));
        }
    }
    assert!(crossings.is_empty(), "domains must reach each other through mercato-contracts: {crossings:?}");
}

#[test]
fn the_http_edge_knows_domains_only_by_their_surfaces() {
    let deps = dependencies("mercato-http");
    assert!(deps.iter().any(|d| d == "mercato-contracts"));
    let named: Vec<_> = deps.iter().filter(|d| DOMAINS.contains(&d.as_str())).collect();
    assert!(named.is_empty(), "mercato-http depends on domain implementations: {named:?}");
}
