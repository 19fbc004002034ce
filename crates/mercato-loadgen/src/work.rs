//! The load itself: one task per connection, each with its own connection,
//! random generator and recorder, merged once the window is over.

use crate::http::{Conn, Prepared, Target};
use crate::setup::{Catalog, FlashSale, enc};
use bytes::Bytes;
use hdrhistogram::Histogram;
use hyper::header::HeaderValue;
use hyper::{Method, StatusCode};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    ProductDetail,
    CatalogPage,
    Search,
    Cart,
    Checkout,
    Mixed,
    FlashSale,
    Static,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::ProductDetail => "product-detail",
            Scenario::CatalogPage => "catalog-page",
            Scenario::Search => "search",
            Scenario::Cart => "cart",
            Scenario::Checkout => "checkout",
            Scenario::Mixed => "mixed",
            Scenario::FlashSale => "flash-sale",
            Scenario::Static => "static",
        }
    }
}

/// Cart requests for one SKU, built before the window.
pub struct SkuRequests {
    pub add: Prepared,
    /// `PUT /cart/items/{sku}` with quantity 1, 2, 3.
    pub set: [Prepared; 3],
}

/// Everything the workers share, read-only.
pub struct Plan {
    pub scenario: Scenario,
    pub catalog: Option<Catalog>,
    pub static_req: Option<Prepared>,
    pub skus: Vec<SkuRequests>,
    /// Cart, checkout and mixed: one customer per connection. Flash sale: all
    /// customers, spread over the connections.
    pub customers: Vec<HeaderValue>,
    pub flash: Option<FlashSale>,
    pub place_order: Option<Prepared>,
    pub pay_body: Bytes,
    pub target: Target,
    pub run_tag: String,
}

#[derive(Clone, Copy)]
pub struct Window {
    pub start: Instant,
    pub end: Instant,
}

/// What one worker measured (merged across workers at the end).
pub struct Rec {
    pub hist: Histogram<u64>,
    pub status: Vec<u64>,
    pub io_errors: u64,
    pub requests: u64,
    pub iterations: u64,
    pub flash_wins: u64,
    pub last_win: Option<Instant>,
    pub first_sold_out: Option<Instant>,
    pub first_io_error: Option<String>,
}

impl Rec {
    pub fn new() -> Self {
        Rec {
            // Microseconds, 1 us to 100 s, 3 significant digits.
            hist: Histogram::new_with_bounds(1, 100_000_000, 3).expect("valid bounds"),
            status: vec![0; 600],
            io_errors: 0,
            requests: 0,
            iterations: 0,
            flash_wins: 0,
            last_win: None,
            first_sold_out: None,
            first_io_error: None,
        }
    }

    pub fn merge(&mut self, o: &Rec) {
        self.hist.add(&o.hist).expect("same bounds");
        for (a, b) in self.status.iter_mut().zip(&o.status) {
            *a += b;
        }
        self.io_errors += o.io_errors;
        self.requests += o.requests;
        self.iterations += o.iterations;
        self.flash_wins += o.flash_wins;
        self.last_win = self.last_win.max(o.last_win);
        self.first_sold_out = match (self.first_sold_out, o.first_sold_out) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if self.first_io_error.is_none() {
            self.first_io_error.clone_from(&o.first_io_error);
        }
    }
}

pub struct Worker {
    pub conn: Conn,
    pub rng: SmallRng,
    pub rec: Rec,
    pub plan: Arc<Plan>,
    pub window: Window,
    pub progress: Arc<AtomicU64>,
    /// Open loop: time between this worker's sends; `None` for closed loop.
    pub interval: Option<Duration>,
    pub first_send: Instant,
    pub index: usize,
    pub connections: usize,
    /// SKUs in this connection's cart (cart and mixed scenarios).
    cart_lines: Vec<usize>,
    next_customer: usize,
    seq: u64,
}

impl Worker {
    pub fn new(
        plan: Arc<Plan>,
        window: Window,
        progress: Arc<AtomicU64>,
        interval: Option<Duration>,
        first_send: Instant,
        index: usize,
        connections: usize,
    ) -> Self {
        Worker {
            conn: Conn::new(plan.target.clone()),
            rng: SmallRng::seed_from_u64(0x5eed ^ index as u64),
            rec: Rec::new(),
            plan,
            window,
            progress,
            interval,
            first_send,
            index,
            connections,
            cart_lines: Vec::new(),
            next_customer: index,
            seq: 0,
        }
    }

    pub async fn run(mut self) -> Rec {
        let mut next = self.first_send;
        loop {
            let intended = match self.interval {
                Some(iv) => {
                    let t = next;
                    next += iv;
                    if t >= self.window.end {
                        break;
                    }
                    tokio::time::sleep_until(t.into()).await;
                    t
                }
                None => {
                    let t = Instant::now();
                    if t >= self.window.end {
                        break;
                    }
                    t
                }
            };
            let in_window = intended >= self.window.start;
            self.iteration(intended).await;
            if in_window && Instant::now() <= self.window.end {
                self.rec.iterations += 1;
            }
        }
        self.rec
    }

    fn customer(&self) -> Option<&HeaderValue> {
        let c = &self.plan.customers;
        if c.is_empty() { None } else { Some(&c[self.index % c.len()]) }
    }

    /// Sends one request and records it. `since` is when the latency clock
    /// started (the intended send time of an open-loop iteration's first
    /// request, otherwise the actual send time).
    async fn go(
        &mut self,
        req: &Prepared,
        auth: Option<HeaderValue>,
        key: Option<HeaderValue>,
        keep_body: bool,
        since: Option<Instant>,
    ) -> Option<(StatusCode, Bytes)> {
        let sent = Instant::now();
        let since = since.unwrap_or(sent);
        let r = self.conn.send(req, auth.as_ref(), key, keep_body).await;
        let done = Instant::now();
        self.progress.fetch_add(1, Ordering::Relaxed);
        let counted = since >= self.window.start && done <= self.window.end;
        match r {
            Ok(reply) => {
                if counted {
                    let us = done.duration_since(since).as_micros().clamp(1, 100_000_000) as u64;
                    self.rec.hist.saturating_record(us);
                    self.rec.status[usize::from(reply.status.as_u16()).min(599)] += 1;
                    self.rec.requests += 1;
                }
                Some((reply.status, reply.body))
            }
            Err(e) => {
                if counted {
                    self.rec.io_errors += 1;
                    if self.rec.first_io_error.is_none() {
                        self.rec.first_io_error = Some(format!("{e:#}"));
                    }
                }
                None
            }
        }
    }

    async fn iteration(&mut self, intended: Instant) {
        let since = self.interval.map(|_| intended);
        let plan = self.plan.clone();
        match plan.scenario {
            Scenario::Static => {
                let req = plan.static_req.as_ref().expect("static request");
                self.go(req, None, None, false, since).await;
            }
            Scenario::ProductDetail => self.detail(since).await,
            Scenario::CatalogPage => self.catalog_page(since).await,
            Scenario::Search => self.search(since).await,
            Scenario::Cart => self.cart(since).await,
            Scenario::Checkout => self.checkout(since).await,
            Scenario::FlashSale => self.flash(since).await,
            Scenario::Mixed => {
                let r: f64 = self.rng.random();
                if r < 0.35 {
                    self.detail(since).await
                } else if r < 0.70 {
                    self.catalog_page(since).await
                } else if r < 0.85 {
                    self.search(since).await
                } else if r < 0.95 {
                    self.cart(since).await
                } else {
                    self.checkout(since).await
                }
            }
        }
    }

    async fn detail(&mut self, since: Option<Instant>) {
        let plan = self.plan.clone();
        let d = &plan.catalog.as_ref().expect("catalog").detail;
        let req = &d[self.rng.random_range(0..d.len())];
        self.go(req, None, None, false, since).await;
    }

    async fn catalog_page(&mut self, since: Option<Instant>) {
        let plan = self.plan.clone();
        let c = plan.catalog.as_ref().expect("catalog");
        // Half first pages, half deep pages (when the categories have any).
        let pages = if c.deep_pages.is_empty() || self.rng.random_bool(0.5) { &c.first_pages } else { &c.deep_pages };
        let req = &pages[self.rng.random_range(0..pages.len())];
        self.go(req, None, None, false, since).await;
    }

    async fn search(&mut self, since: Option<Instant>) {
        let plan = self.plan.clone();
        let s = &plan.catalog.as_ref().expect("catalog").search;
        let req = &s[self.rng.random_range(0..s.len())];
        self.go(req, None, None, false, since).await;
    }

    async fn cart(&mut self, since: Option<Instant>) {
        let plan = self.plan.clone();
        let auth = self.customer().cloned();
        if self.cart_lines.len() < 5 || (self.cart_lines.len() < 30 && self.rng.random_bool(0.5)) {
            let i = self.rng.random_range(0..plan.skus.len());
            if let Some((st, _)) = self.go(&plan.skus[i].add, auth, None, false, since).await
                && st.is_success()
            {
                self.cart_lines.push(i);
            }
        } else {
            let i = self.cart_lines[self.rng.random_range(0..self.cart_lines.len())];
            let q = self.rng.random_range(0..3);
            self.go(&plan.skus[i].set[q], auth, None, false, since).await;
        }
    }

    async fn checkout(&mut self, since: Option<Instant>) {
        let plan = self.plan.clone();
        let auth = self.customer().cloned();
        for k in 0..2 {
            let i = self.rng.random_range(0..plan.skus.len());
            let since = if k == 0 { since } else { None };
            match self.go(&plan.skus[i].add, auth.clone(), None, false, since).await {
                Some((st, _)) if st.is_success() => {}
                _ => return,
            }
        }
        self.seq += 1;
        let key = HeaderValue::from_str(&format!("lg-{}-{}-{}", plan.run_tag, self.index, self.seq)).ok();
        let order = plan.place_order.as_ref().expect("order request");
        let Some((st, body)) = self.go(order, auth.clone(), key, true, None).await else { return };
        self.cart_lines.clear(); // the order took the cart
        if st != StatusCode::CREATED {
            return;
        }
        let id = serde_json::from_slice::<serde_json::Value>(&body).ok().and_then(|v| match &v["id"] {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        });
        let Some(id) = id else { return };
        let Ok(uri) = plan.target.uri(&format!("/api/v1/orders/{}/payments", enc(&id))) else { return };
        let pay = Prepared { method: Method::POST, uri, body: plan.pay_body.clone() };
        self.go(&pay, auth, None, false, None).await;
    }

    async fn flash(&mut self, since: Option<Instant>) {
        let plan = self.plan.clone();
        let sale = plan.flash.as_ref().expect("flash sale");
        if Instant::now() < self.window.start {
            // Warm-up reads the sale: buying would spend units before the window.
            self.go(&sale.state, None, None, false, since).await;
            return;
        }
        // This connection's customers: index, index + C, index + 2C, ...
        let n = plan.customers.len();
        let auth = plan.customers[self.next_customer % n].clone();
        self.next_customer += self.connections;
        if self.next_customer >= n {
            self.next_customer = self.index % n.max(1);
        }
        self.seq += 1;
        let key = HeaderValue::from_str(&format!("lg-{}-f{}-{}", plan.run_tag, self.index, self.seq)).ok();
        if let Some((st, _)) = self.go(&sale.purchase, Some(auth), key, false, since).await {
            let now = Instant::now();
            if st == StatusCode::CREATED {
                self.rec.flash_wins += 1;
                self.rec.last_win = self.rec.last_win.max(Some(now));
            } else if st == StatusCode::CONFLICT && self.rec.first_sold_out.is_none() {
                self.rec.first_sold_out = Some(now);
            }
        }
    }
}
