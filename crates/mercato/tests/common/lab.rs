//! Driving `deploy/lab` from a test: bring a stage up on real components,
//! list and kill what it started, and a mixed load of shoppers who retry as
//! real clients do, recording what they saw.

use super::*;
use std::collections::HashMap;

/// One stage brought up by `deploy/lab` in a private directory, taken down
/// (and its logs shown, if the test failed) on drop.
pub struct Lab {
    stage: u32,
    dir: tempfile::TempDir,
    port: u16,
    /// The `key=value` lines `deploy/lab up` printed.
    pub out: HashMap<String, String>,
}

/// The tools stage `stage` needs that this machine lacks.
pub fn missing_tools(stage: u32) -> Vec<&'static str> {
    let mut tools = vec!["nginx", "haproxy", "redis-server", "redis-cli", "curl", "psql"];
    if stage == 8 {
        tools.extend(["keepalived", "dnsmasq", "dig", "ip"]);
    }
    let mut missing: Vec<&'static str> = tools
        .into_iter()
        .filter(|t| {
            !Command::new("sh")
                .arg("-c")
                .arg(format!("command -v {t}"))
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .collect();
    let pg = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dirs| dirs.flatten().any(|d| d.path().join("bin/initdb").is_file()))
        .unwrap_or(false);
    if !pg {
        missing.push("PostgreSQL server binaries (initdb)");
    }
    missing
}

/// Whether this run is to bring stage `stage` up (`MERCATO_TEST_LAB=1` and
/// every tool at hand); says why not when it is not.
pub fn lab_enabled(stage: u32) -> bool {
    if std::env::var("MERCATO_TEST_LAB").as_deref() != Ok("1") {
        eprintln!(
            "SKIPPED: set MERCATO_TEST_LAB=1 to bring stage {stage} up with deploy/lab and break it (as .ci/run does)"
        );
        return false;
    }
    let missing = missing_tools(stage);
    if !missing.is_empty() {
        eprintln!("SKIPPED: stage {stage} needs {}", missing.join(", "));
        return false;
    }
    true
}

impl Lab {
    /// `deploy/lab up <stage>` with this test's binary and a small catalog.
    pub fn up(stage: u32, port: u16) -> Lab {
        let mut lab = Lab {
            stage,
            dir: tempfile::Builder::new().prefix("mercato-lab-").tempdir().unwrap(),
            port,
            out: HashMap::new(),
        };
        let text = lab.run(&["up", &stage.to_string()]);
        assert!(text.trim_end().lines().last().unwrap_or("").starts_with("url="), "url= is not the last line: {text}");
        lab.out = text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect();
        lab
    }

    /// A `key=value` that `up` printed (`url`, `haproxy`, `site_a`...).
    pub fn value(&self, key: &str) -> String {
        self.out.get(key).cloned().unwrap_or_else(|| panic!("deploy/lab up printed no {key}=: {:?}", self.out))
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/lab"));
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("MERCATO_")) {
            cmd.env_remove(k);
        }
        cmd.args(args)
            .env("MERCATO_BIN", env!("CARGO_BIN_EXE_mercato"))
            .env("MERCATO_LAB_DIR", self.dir.path())
            .env("MERCATO_LAB_PORT", self.port.to_string())
            // Stage 8's networks: not the default, so a lab a developer has
            // up is not in the way.
            .env("MERCATO_LAB_NET", "10.81")
            .env("MERCATO_SEED_PRODUCTS", "50")
            .env("MERCATO_ADMIN_EMAIL", ADMIN_EMAIL)
            .env("MERCATO_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("MERCATO_LOG_LEVEL", "warn")
            // A debug build on two busy cores: Redis answers slower than the
            // production default allows.
            .env("MERCATO_CACHE_REDIS_TIMEOUT_MS", "1000");
        cmd
    }

    pub fn run(&self, args: &[&str]) -> String {
        let out = self.command(args).output().expect("running deploy/lab");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "deploy/lab {args:?} failed\n--- stdout ---\n{text}\n--- stderr ---\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    }

    /// `deploy/lab restart <stage> <name>`, off the test's runtime.
    pub async fn restart(&self, name: &str) {
        let cmd = self.command(&["restart", &self.stage.to_string(), name]);
        let out = tokio::task::spawn_blocking(move || {
            let mut c = cmd;
            c.output().expect("deploy/lab restart")
        })
        .await
        .unwrap();
        assert!(out.status.success(), "restart {name}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// The pid of a process the lab started, by the name `status` gives it.
    pub fn pid(&self, name: &str) -> Option<u32> {
        self.run(&["status", &self.stage.to_string()])
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")).and_then(|p| p.trim().parse().ok()))
    }

    /// SIGKILLs the process and its group (an nginx master with its workers).
    pub fn kill(&self, name: &str) {
        let pid = self.pid(name).unwrap_or_else(|| panic!("{name} is not running"));
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let logs = self.dir.path().join(format!("stage-{}/logs", self.stage));
            for entry in std::fs::read_dir(&logs).into_iter().flatten().flatten() {
                let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
                let tail: String = text.chars().rev().take(2000).collect::<Vec<_>>().into_iter().rev().collect();
                eprintln!("--- {} (tail) ---\n{tail}", entry.file_name().to_string_lossy());
            }
        }
        let _ = self.command(&["down", &self.stage.to_string()]).output();
    }
}

/// What the shoppers saw.
#[derive(Default)]
pub struct Seen {
    /// When each first attempt failed (transport error or 5xx), and what it was.
    pub failures: Vec<(Instant, String)>,
    /// (customer token, order id) of every order acknowledged as paid.
    pub paid: Vec<(String, String)>,
    pub requests: u64,
    /// The longest a client was told to come back later (a keyed request or
    /// payment still held by an instance that died, until its claim lapses).
    pub longest_in_progress: Duration,
}

/// One request as a client makes it: on a transport error or a 5xx it
/// records the failure and tries again, with the same Idempotency-Key where
/// it sent one; told to come back later (409 with Retry-After), it waits and
/// asks again. It gives up after 120 s.
async fn call(
    seen: &Mutex<Seen>,
    build: impl Fn() -> reqwest::RequestBuilder,
    what: &str,
) -> Result<serde_json::Value, String> {
    let start = Instant::now();
    let mut first = true;
    let mut waiting_since: Option<Instant> = None;
    loop {
        let r = build().send().await;
        seen.lock().unwrap().requests += 1;
        let failure = match r {
            Ok(r) if r.status().is_server_error() => format!("{what}: {}", r.status()),
            Ok(r) if r.status() == 409 && r.headers().contains_key("retry-after") => {
                let since = *waiting_since.get_or_insert_with(Instant::now);
                {
                    let mut s = seen.lock().unwrap();
                    s.longest_in_progress = s.longest_in_progress.max(since.elapsed());
                }
                if start.elapsed() > Duration::from_secs(120) {
                    return Err(format!("{what}: still in progress after 120 s"));
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Ok(r) if r.status().is_client_error() => {
                let status = r.status();
                return Err(format!("{what}: {status} {}", r.text().await.unwrap_or_default()));
            }
            Ok(r) => return Ok(r.json().await.unwrap_or(serde_json::Value::Null)),
            Err(e) => format!("{what}: {e:?}"),
        };
        if first {
            seen.lock().unwrap().failures.push((Instant::now(), failure.clone()));
            first = false;
        }
        if start.elapsed() > Duration::from_secs(120) {
            return Err(format!("gave up after 120 s: {failure}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A shopper's loop until `stop`: a product page, a cart add, a keyed
/// checkout and a keyed payment, through `client` at `entry`.
async fn shopper(
    client: reqwest::Client,
    entry: String,
    token: String,
    sku: String,
    slug: String,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    let api = |p: &str| format!("{entry}/api/v1{p}");
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let page = call(&seen, || client.get(api(&format!("/products/{slug}"))), "product page").await;
        assert!(page.is_ok(), "{page:?}");
        let add = call(
            &seen,
            || client.post(api("/cart/items")).bearer_auth(&token).json(&json!({"sku": sku, "quantity": 1})),
            "cart add",
        )
        .await;
        assert!(add.is_ok(), "{add:?}");
        let key = unique_str("order");
        let order = call(
            &seen,
            || {
                client
                    .post(api("/orders"))
                    .bearer_auth(&token)
                    .header("Idempotency-Key", &key)
                    .json(&json!({"shipping_address": address()}))
            },
            "place order",
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let id = id_of(&order["id"]);
        let key = unique_str("pay");
        call(
            &seen,
            || {
                client
                    .post(api(&format!("/orders/{id}/payments")))
                    .bearer_auth(&token)
                    .header("Idempotency-Key", &key)
                    .json(&json!({"method": "test_card", "card_number": CARD_OK}))
            },
            "pay",
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        seen.lock().unwrap().paid.push((token.clone(), id));
    }
}

/// Shoppers running `shopper` against one SKU until `finish`.
pub struct Load {
    sku: String,
    slug: String,
    pub seen: Arc<Mutex<Seen>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    shoppers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub fn new(sku: &str, slug: &str) -> Load {
        Load {
            sku: sku.to_string(),
            slug: slug.to_string(),
            seen: Default::default(),
            stop: Default::default(),
            shoppers: Vec::new(),
        }
    }

    /// Starts one more shopper, customer `token`, through `client` at `entry`.
    pub fn add(&mut self, client: reqwest::Client, entry: String, token: String) {
        let (sku, slug, seen, stop) = (self.sku.clone(), self.slug.clone(), self.seen.clone(), self.stop.clone());
        self.shoppers.push(tokio::spawn(shopper(client, entry, token, sku, slug, seen, stop)));
    }

    pub fn paid(&self) -> usize {
        self.seen.lock().unwrap().paid.len()
    }

    /// Stops every shopper after its current round; what they saw.
    pub async fn finish(self) -> Seen {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for s in self.shoppers {
            s.await.expect("a shopper failed");
        }
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

/// After the load: each customer has exactly the orders it was told about,
/// every one paid, and the SKU's stock is conserved with every paid unit sold.
pub async fn assert_nothing_lost_or_doubled(shop: &TestServer, admin: &str, sku: &str, initial: i64, seen: &Seen) {
    let mut by_customer: HashMap<&str, Vec<&str>> = HashMap::new();
    for (token, id) in &seen.paid {
        by_customer.entry(token).or_default().push(id);
    }
    for (token, acked) in &by_customer {
        let listed = shop.collect_all("/orders", Some(token)).await;
        let mut ids: Vec<String> = listed.iter().map(|o| id_of(&o["id"])).collect();
        let mut acked: Vec<String> = acked.iter().map(|s| s.to_string()).collect();
        ids.sort();
        acked.sort();
        assert_eq!(ids, acked, "a customer's orders are not exactly the acknowledged ones");
        assert!(listed.iter().all(|o| o["status"] == "paid"), "an acknowledged payment is not recorded: {listed:?}");
    }
    let units = seen.paid.len() as i64;
    let settled = poll_until(Duration::from_secs(20), || async {
        let (available, reserved, sold) = shop.stock(admin, sku).await;
        available + reserved + sold == initial && sold >= units && reserved == 0
    })
    .await;
    let (available, reserved, sold) = shop.stock(admin, sku).await;
    assert!(
        settled,
        "stock: available {available} reserved {reserved} sold {sold}, initial {initial}, paid orders {units}"
    );
}
