//! `mercato-loadgen`: drives a Mercato server through its public HTTP API and
//! reports throughput, latency percentiles (HDR histogram) and errors by
//! status. See `--help`, and `bench/run` for the whole suite.

mod http;
mod setup;
mod work;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::Parser;
use http::{Prepared, Target};
use hyper::Method;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use work::{Plan, Rec, Scenario, SkuRequests, Window, Worker};

#[derive(Parser, Debug)]
#[command(name = "mercato-loadgen", version, about = "Load generator for Mercato's public HTTP API")]
struct Args {
    /// What to run.
    #[arg(value_enum)]
    scenario: Scenario,
    /// Base URL of the server (for `static`: the full URL to GET).
    #[arg(long, default_value = "http://127.0.0.1:8080", env = "MERCATO_LOADGEN_URL")]
    url: String,
    /// Concurrent keep-alive connections (one task each).
    #[arg(short, long, default_value_t = 64)]
    connections: usize,
    /// Open loop: total request (iteration) rate per second; latency is then
    /// measured from each intended send time. Without it: closed loop.
    #[arg(long)]
    rate: Option<f64>,
    /// Warm-up before the measured window (e.g. 5s, 500ms).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    warmup: Duration,
    /// Measured window.
    #[arg(short, long, default_value = "20s", value_parser = parse_duration)]
    duration: Duration,
    /// Runtime threads: 1 is a current-thread runtime.
    #[arg(short, long, default_value_t = 1)]
    threads: usize,
    /// Print one JSON result object on stdout (and nothing else there).
    #[arg(long)]
    json: bool,
    /// flash-sale: distinct customers buying.
    #[arg(long, default_value_t = 1000)]
    customers: usize,
    /// flash-sale: units on sale.
    #[arg(long, default_value_t = 100)]
    sale_quantity: i64,
    /// Admin credentials (flash-sale creates the sale and reads inventory).
    #[arg(long, env = "MERCATO_ADMIN_EMAIL", default_value = "admin@mercato.local")]
    admin_email: String,
    #[arg(long, env = "MERCATO_ADMIN_PASSWORD", default_value = "", hide_env_values = true)]
    admin_password: String,
    /// Products whose details are read to find SKUs with stock (cart, checkout).
    #[arg(long, default_value_t = 2000)]
    sku_sample: usize,
    /// Stop discovering the catalog after this many products.
    #[arg(long, default_value_t = 2_000_000)]
    max_products: usize,
    /// Server process to sample (CPU% and RSS from /proc) during the window.
    #[arg(long)]
    server_pid: Option<u32>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num.trim().parse().map_err(|_| format!("bad duration {s:?} (try 5s, 500ms, 2m)"))?;
    if !(0.0..=86_400.0).contains(&(v * mult)) {
        return Err(format!("duration {s:?} out of range"));
    }
    Ok(Duration::from_secs_f64(v * mult))
}

fn main() {
    let args = Args::parse();
    let rt = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(args.threads).enable_all().build()
    };
    let rt = rt.expect("tokio runtime");
    match rt.block_on(run(args)) {
        Ok(ok) => std::process::exit(if ok { 0 } else { 1 }),
        Err(e) => {
            eprintln!("mercato-loadgen: {e:#}");
            std::process::exit(2);
        }
    }
}

fn log(msg: &str) {
    eprintln!("[loadgen] {msg}");
}

/// `utime + stime` of a process in clock ticks (USER_HZ, 100 on Linux).
fn proc_cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After "pid (comm) ", state is field 3; utime and stime are fields 14 and 15.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn proc_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

async fn run(args: Args) -> Result<bool> {
    let target = Target::parse(&args.url)?;
    let scenario = args.scenario;
    let connections = args.connections.max(1);
    let run_tag =
        format!("{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() % 0xffff_ffff);
    let setup_started = Instant::now();

    // ---- setup, through the API, before the window ----
    let needs_catalog = scenario != Scenario::Static;
    let needs_skus = matches!(scenario, Scenario::Cart | Scenario::Checkout | Scenario::Mixed | Scenario::FlashSale);
    let needs_pages = matches!(scenario, Scenario::CatalogPage | Scenario::Mixed);
    let catalog = if needs_catalog {
        log("discovering the catalog (paging the listing)...");
        let sample = if scenario == Scenario::FlashSale { 20 } else { args.sku_sample };
        let c = setup::discover_catalog(&target, needs_pages, needs_skus, sample, args.max_products).await?;
        log(&format!(
            "catalog: {} products, {} category first pages, {} deep pages, {} search queries, {} SKUs with stock",
            c.products.len(),
            c.first_pages.len(),
            c.deep_pages.len(),
            c.search.len(),
            c.skus.len()
        ));
        Some(c)
    } else {
        None
    };
    let mut skus = Vec::new();
    if let Some(c) = &catalog
        && needs_skus
    {
        for (sku, _) in &c.skus {
            let item = |q: i64| Bytes::from(json!({"sku": sku, "quantity": q}).to_string());
            let set_uri = target.uri(&format!("/api/v1/cart/items/{}", setup::enc(sku)))?;
            let set = |q: i64| Prepared {
                method: Method::PUT,
                uri: set_uri.clone(),
                body: Bytes::from(json!({"quantity": q}).to_string()),
            };
            skus.push(SkuRequests {
                add: Prepared { method: Method::POST, uri: target.uri("/api/v1/cart/items")?, body: item(1) },
                set: [set(1), set(2), set(3)],
            });
        }
    }
    let n_customers = match scenario {
        Scenario::Cart | Scenario::Checkout | Scenario::Mixed => connections,
        Scenario::FlashSale => args.customers.max(1),
        _ => 0,
    };
    let customers = if n_customers > 0 {
        log(&format!("registering and logging in {n_customers} customers..."));
        let t = Instant::now();
        let c = setup::customers(&target, n_customers, connections.min(8), &run_tag).await?;
        log(&format!("{} customers ready in {:.1}s", c.len(), t.elapsed().as_secs_f64()));
        c
    } else {
        Vec::new()
    };
    let mut admin = None;
    let flash = if scenario == Scenario::FlashSale {
        let token = setup::admin_token(&target, &args.admin_email, &args.admin_password).await?;
        let c = catalog.as_ref().context("catalog")?;
        let sku = c.skus.iter().max_by_key(|(_, a)| *a).map(|(s, _)| s.clone()).context("no SKU")?;
        let sale = setup::flash_sale(&target, &token, &sku, args.sale_quantity).await?;
        log(&format!("flash sale {} created: {} units of {}", sale.id, sale.quantity, sale.sku));
        admin = Some(token);
        Some(sale)
    } else {
        None
    };
    let static_req = if scenario == Scenario::Static {
        Some(Prepared::get(if target.prefix.is_empty() { target.uri("/")? } else { target.uri("")? }))
    } else {
        None
    };
    let place_order = Some(Prepared {
        method: Method::POST,
        uri: target.uri("/api/v1/orders")?,
        body: Bytes::from(json!({"shipping_address": setup::address()}).to_string()),
    });
    let setup_secs = setup_started.elapsed().as_secs_f64();
    let plan = Arc::new(Plan {
        scenario,
        catalog,
        static_req,
        skus,
        customers,
        flash,
        place_order,
        pay_body: Bytes::from_static(br#"{"method":"test_card","card_number":"4242424242424242"}"#),
        target: target.clone(),
        run_tag,
    });

    // ---- the load ----
    let t0 = Instant::now() + Duration::from_millis(20);
    let window = Window { start: t0 + args.warmup, end: t0 + args.warmup + args.duration };
    let progress = Arc::new(AtomicU64::new(0));
    let interval = match args.rate {
        Some(r) if r > 0.0 => Some(Duration::from_secs_f64(connections as f64 / r)),
        Some(_) => bail!("--rate must be positive"),
        None => None,
    };
    let mut tasks = Vec::with_capacity(connections);
    for i in 0..connections {
        // Open loop: stagger the connections' schedules across one interval.
        let first = t0 + interval.map(|iv| iv.mul_f64(i as f64 / connections as f64)).unwrap_or_default();
        let w = Worker::new(plan.clone(), window, progress.clone(), interval, first, i, connections);
        tasks.push(tokio::spawn(w.run()));
    }

    let total = args.warmup + args.duration;
    let bar = if std::io::stderr().is_terminal() {
        let b = ProgressBar::new(total.as_millis() as u64);
        b.set_style(
            ProgressStyle::with_template("{spinner} {prefix:>8} [{bar:30}] {elapsed_precise}  {msg}")
                .expect("template")
                .progress_chars("=> "),
        );
        b
    } else {
        ProgressBar::hidden()
    };
    let pid = args.server_pid;
    let mut cpu_start = None;
    let mut rss_max = 0u64;
    let mut rss_sum = 0u64;
    let mut rss_n = 0u64;
    let mut last = (Instant::now(), 0u64);
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = Instant::now();
        if let Some(pid) = pid {
            if now >= window.start && cpu_start.is_none() {
                cpu_start = proc_cpu_ticks(pid).map(|t| (now, t));
            }
            if now >= window.start
                && now <= window.end
                && let Some(r) = proc_rss_kib(pid)
            {
                rss_max = rss_max.max(r);
                rss_sum += r;
                rss_n += 1;
            }
        }
        let done = progress.load(Ordering::Relaxed);
        let rps = (done - last.1) as f64 / now.duration_since(last.0).as_secs_f64();
        last = (now, done);
        bar.set_prefix(if now < window.start { "warm-up" } else { "measure" });
        bar.set_position(now.saturating_duration_since(t0).as_millis().min(total.as_millis()) as u64);
        bar.set_message(format!("{rps:>9.0} req/s"));
        if now >= window.end {
            break;
        }
    }
    let cpu = match (pid, cpu_start) {
        (Some(pid), Some((t, ticks))) => proc_cpu_ticks(pid).map(|end| {
            let secs = Instant::now().duration_since(t).as_secs_f64();
            (end.saturating_sub(ticks)) as f64 / 100.0 / secs * 100.0
        }),
        _ => None,
    };
    bar.finish_and_clear();
    let mut rec = Rec::new();
    for t in tasks {
        rec.merge(&t.await?);
    }

    // ---- flash-sale verification ----
    let mut ok = true;
    let mut extra = json!({});
    if let (Some(sale), Some(admin)) = (&plan.flash, &admin) {
        let state = setup::flash_state(&target, &sale.id).await?;
        let after = setup::stock(&target, admin, &sale.sku).await?;
        let b = &sale.stock_before;
        let remaining = state.get("remaining").and_then(Value::as_i64);
        let sold_via_inventory = (after.reserved + after.sold) - (b.reserved + b.sold);
        let checks = [
            ("purchases answered 201 == quantity", rec.flash_wins as i64 == sale.quantity),
            ("sale remaining == 0", remaining == Some(0)),
            ("inventory available fell by quantity", b.available - after.available == sale.quantity),
            ("inventory reserved+sold rose by quantity", sold_via_inventory == sale.quantity),
        ];
        ok = checks.iter().all(|(_, c)| *c);
        let sold_out_ms = rec.last_win.map(|t| t.saturating_duration_since(window.start).as_secs_f64() * 1000.0);
        let first_409_ms = rec.first_sold_out.map(|t| t.saturating_duration_since(window.start).as_secs_f64() * 1000.0);
        extra = json!({
            "flash_sale": {
                "id": sale.id, "sku": sale.sku, "quantity": sale.quantity, "customers": plan.customers.len(),
                "wins": rec.flash_wins, "remaining": remaining, "state": state.get("state"),
                "stock_before": b, "stock_after": after,
                "time_to_sell_out_ms": sold_out_ms, "first_sold_out_409_ms": first_409_ms,
                "checks": checks.iter().map(|(n, c)| json!({"check": n, "ok": c})).collect::<Vec<_>>(),
                "verified": ok,
            }
        });
    }

    // ---- report ----
    let secs = args.duration.as_secs_f64();
    let h = &rec.hist;
    let q = |p: f64| h.value_at_quantile(p) as f64 / 1000.0;
    let mut statuses = serde_json::Map::new();
    let mut errors = serde_json::Map::new();
    let expected = |code: u16| match scenario {
        Scenario::FlashSale => (200..300).contains(&code) || code == 409 || code == 403,
        _ => (200..300).contains(&code),
    };
    for (code, n) in rec.status.iter().enumerate().filter(|(_, n)| **n > 0) {
        statuses.insert(code.to_string(), json!(n));
        if !expected(code as u16) {
            errors.insert(code.to_string(), json!(n));
        }
    }
    if rec.io_errors > 0 {
        errors.insert("io".into(), json!(rec.io_errors));
    }
    let error_total: u64 = errors.values().filter_map(Value::as_u64).sum();
    let result = json!({
        "scenario": scenario.name(),
        "url": args.url,
        "mode": if args.rate.is_some() { "open" } else { "closed" },
        "rate": args.rate,
        "connections": connections,
        "threads": args.threads,
        "warmup_s": args.warmup.as_secs_f64(),
        "duration_s": secs,
        "setup_s": setup_secs,
        "requests": rec.requests,
        "iterations": rec.iterations,
        "throughput_rps": rec.requests as f64 / secs,
        "iterations_per_s": rec.iterations as f64 / secs,
        "latency_ms": {
            "p50": q(0.50), "p90": q(0.90), "p99": q(0.99), "p999": q(0.999),
            "max": h.max() as f64 / 1000.0, "mean": h.mean() / 1000.0,
        },
        "status": statuses,
        "errors": errors,
        "error_total": error_total,
        "first_io_error": rec.first_io_error,
        "server": pid.map(|p| json!({
            "pid": p, "cpu_percent": cpu,
            "rss_max_kib": rss_max, "rss_mean_kib": rss_sum.checked_div(rss_n),
        })),
        "extra": extra,
    });
    if args.json {
        println!("{result}");
    } else {
        println!(
            "{} ({} loop{}, {} connections, {} thread(s), {:.0}s window after {:.0}s warm-up)",
            scenario.name(),
            if args.rate.is_some() { "open" } else { "closed" },
            args.rate.map(|r| format!(" at {r} req/s")).unwrap_or_default(),
            connections,
            args.threads,
            secs,
            args.warmup.as_secs_f64()
        );
        println!(
            "  requests    {:>10}   throughput {:>10.1} req/s   iterations {:>8.1}/s",
            rec.requests,
            rec.requests as f64 / secs,
            rec.iterations as f64 / secs
        );
        println!(
            "  latency ms  p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
            q(0.5),
            q(0.9),
            q(0.99),
            q(0.999),
            h.max() as f64 / 1000.0
        );
        println!("  status      {}", Value::Object(statuses));
        println!("  errors      {} {}", error_total, Value::Object(errors));
        if let Some(e) = &rec.first_io_error {
            println!("  first I/O error: {e}");
        }
        if let Some(s) = result.get("server").filter(|s| !s.is_null()) {
            println!("  server      {s}");
        }
        if let Some(f) = extra.get("flash_sale") {
            println!("  flash sale  {f:#}");
        }
    }
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("x").is_err());
    }

    #[test]
    fn targets() {
        let t = Target::parse("http://127.0.0.1:9/shop/").unwrap();
        assert_eq!(t.uri("/api/v1/products").unwrap().to_string(), "/shop/api/v1/products");
        assert_eq!(t.host, "127.0.0.1:9");
        assert!(Target::parse("https://x").is_err());
    }
}
