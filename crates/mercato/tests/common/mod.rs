//! Black-box harness: starts the real `mercato` binary on a temporary data dir
//! and an ephemeral port, and drives it over HTTP.
#![allow(dead_code)]

pub mod autofailover;
pub mod lab;
pub mod pg;
pub mod storm;

use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use std::future::Future;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};
use tempfile::TempDir;

pub const ADMIN_EMAIL: &str = "admin@test.local";
pub const ADMIN_PASSWORD: &str = "admin-password-123";
pub const PASSWORD: &str = "customer-password-1";
pub const CARD_OK: &str = "4242424242424242";
pub const CARD_DECLINED: &str = "4000000000000002";
pub const CARD_ASYNC: &str = "4000000000003220";

static COUNTER: AtomicU64 = AtomicU64::new(1);

/// A process-wide unique number, for unique emails, slugs, SKUs and keys.
pub fn unique() -> u64 {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

pub fn unique_str(prefix: &str) -> String {
    format!("{prefix}-{}-{}", std::process::id(), unique())
}

/// One HTTP answer: status, headers, the body parsed as JSON (Null when it is
/// not JSON) and the raw text.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
    }

    pub fn content_type(&self) -> String {
        self.header("content-type").unwrap_or_default()
    }

    /// Panics with the whole answer unless the status is `status`.
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Value {
        assert_eq!(self.status, status, "unexpected status; body: {}", self.text);
        &self.body
    }

    /// Asserts an RFC 9457 problem answer with this status and code.
    #[track_caller]
    pub fn expect_problem(&self, status: u16, code: &str) {
        assert_problem(self, status, code);
    }
}

/// Asserts `resp` is a problem document with `status` and `code`.
#[track_caller]
pub fn assert_problem(resp: &Resp, status: u16, code: &str) {
    assert_eq!(resp.status, status, "expected {status} {code}; body: {}", resp.text);
    let ct = resp.content_type();
    assert!(
        ct.starts_with("application/problem+json"),
        "expected content-type application/problem+json for {status} {code}, got '{ct}'; body: {}",
        resp.text
    );
    let b = &resp.body;
    assert_eq!(b["code"], json!(code), "problem code; body: {}", resp.text);
    assert_eq!(b["status"], json!(status), "problem status field; body: {}", resp.text);
    let ty = b["type"].as_str().unwrap_or_else(|| panic!("problem has no string `type`: {}", resp.text));
    assert!(ty.ends_with(code), "problem type '{ty}' should end with '{code}'");
    assert!(b["title"].is_string(), "problem has no string `title`: {}", resp.text);
    assert!(b["detail"].is_string(), "problem has no string `detail`: {}", resp.text);
}

/// Asserts a problem answer with this status whatever its code (for cases the
/// contract leaves the code open).
#[track_caller]
pub fn assert_problem_status(resp: &Resp, status: u16) {
    assert_eq!(resp.status, status, "expected {status}; body: {}", resp.text);
    let ct = resp.content_type();
    assert!(ct.starts_with("application/problem+json"), "expected problem+json, got '{ct}'; body: {}", resp.text);
    assert!(resp.body["code"].is_string(), "problem has no code: {}", resp.text);
    assert_eq!(resp.body["status"], json!(status), "problem status field; body: {}", resp.text);
}

/// A money value, given as `{amount,currency}` or as a bare integer.
#[track_caller]
pub fn amount(v: &Value) -> i64 {
    if let Some(n) = v.as_i64() {
        return n;
    }
    v["amount"].as_i64().unwrap_or_else(|| panic!("not a money value: {v}"))
}

/// An id, which the contract says is a JSON string of a decimal integer.
#[track_caller]
pub fn id_of(v: &Value) -> String {
    let s = v.as_str().unwrap_or_else(|| panic!("id is not a JSON string: {v}"));
    assert!(!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()), "id '{s}' is not a decimal integer string");
    s.to_string()
}

pub async fn send(rb: reqwest::RequestBuilder) -> Resp {
    let r = rb.send().await.expect("HTTP request failed");
    to_resp(r).await
}

/// Like `send`, but a transport error (server gone) is returned as `Err`.
pub async fn try_send(rb: reqwest::RequestBuilder) -> Result<Resp, String> {
    let r = rb.send().await.map_err(|e| e.to_string())?;
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let bytes = r.bytes().await.map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Ok(Resp { status, headers, body, text })
}

async fn to_resp(r: reqwest::Response) -> Resp {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let bytes = r.bytes().await.expect("reading the response body failed");
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Resp { status, headers, body, text }
}

/// Polls `f` every 100 ms until it answers true or `timeout` passes.
pub async fn poll_until<F, Fut>(timeout: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if f().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn address() -> Value {
    json!({
        "name": "Ada Lovelace",
        "line1": "12 Analytical Engine St",
        "city": "London",
        "postal_code": "N1 9GU",
        "country": "GB"
    })
}

pub struct TestServer {
    pub base_url: String,
    pub client: reqwest::Client,
    child: Option<Child>,
    data_dir: Option<TempDir>,
    env: Vec<(String, String)>,
    stderr: Arc<Mutex<String>>,
    /// Servers started on a database shared with others leave dropping it to the test.
    owns_database: bool,
    /// A private Redis when the suite runs in the stage-3 configuration.
    redis: Option<Arc<mercato_platform::redis::testing::RedisServer>>,
    /// The per-domain databases and roles of the split PostgreSQL shape.
    split: Option<Arc<SplitPostgres>>,
}

/// `MERCATO_TEST_SHAPE=split`: every domain in a database of its own.
pub fn split_shape() -> bool {
    std::env::var("MERCATO_TEST_SHAPE").as_deref() == Ok("split")
}

/// Opens a database the server was given (`postgres://...` or `sqlite:PATH`).
pub fn open_url(url: &str) -> mercato_platform::Db {
    if url.starts_with("postgres") {
        mercato_platform::Db::open_postgres(
            url,
            "test",
            &mercato_platform::db::PgOptions { pool_size: 2, statement_timeout_ms: 10_000, ..Default::default() },
        )
        .expect("opening PostgreSQL")
    } else {
        let path = std::path::PathBuf::from(url.trim_start_matches("sqlite:"));
        mercato_platform::Db::open_sqlite(&path, "test", mercato_platform::db::DbOptions::default())
            .expect("opening SQLite")
    }
}

/// `MERCATO_TEST_SHAPE=sharded` (stage 7): orders over 4 logical shards on
/// 2 databases of their own (files, or databases on the PostgreSQL server).
pub fn sharded_shape() -> bool {
    std::env::var("MERCATO_TEST_SHAPE").as_deref() == Ok("sharded")
}

const SHARDS_KEY: &str = "MERCATO_DATABASE_DOMAINS_ORDERS_SHARDS";

/// Every domain (and the platform's tables) in a PostgreSQL database of its
/// own, owned by a role of its own that may connect to nothing else: a
/// statement reaching another domain's tables fails in the database.
pub struct SplitPostgres {
    base: String,
    /// (name, database, role)
    parts: Vec<(&'static str, String, String)>,
}

impl SplitPostgres {
    pub fn create(base: &str) -> SplitPostgres {
        let tag = format!("mercato_s_{}_{}", std::process::id(), unique());
        let names = std::iter::once(mercato_platform::databases::PLATFORM)
            .chain(mercato_platform::databases::DOMAINS.iter().copied());
        let parts: Vec<_> = names.map(|n| (n, format!("{tag}_{n}"), format!("{tag}_{n}_svc"))).collect();
        let (b, p) = (base.to_string(), parts.clone());
        std::thread::spawn(move || {
            let mut client =
                postgres::Client::connect(&b, postgres::NoTls).expect("connecting to MERCATO_TEST_POSTGRES_URL");
            // One statement per call: CREATE DATABASE cannot run in the
            // implicit transaction of a multi-statement query.
            for (_, db, role) in &p {
                for sql in [
                    format!("CREATE ROLE {role} LOGIN"),
                    format!("CREATE DATABASE {db} OWNER {role}"),
                    format!("REVOKE ALL ON DATABASE {db} FROM PUBLIC"),
                ] {
                    client.batch_execute(&sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
                }
            }
        })
        .join()
        .expect("creating the split databases");
        SplitPostgres { base: base.to_string(), parts }
    }

    /// `MERCATO_DATABASE_DOMAINS_<NAME>_URL` for every part, each through its own role.
    pub fn env(&self) -> Vec<(String, String)> {
        let (prefix, _) = self.base.rsplit_once('/').expect("a database url with a path");
        let host = prefix.rsplit_once('@').map(|(_, h)| h).unwrap_or(prefix.trim_start_matches("postgres://"));
        self.parts
            .iter()
            .map(|(name, db, role)| {
                (
                    format!("MERCATO_DATABASE_DOMAINS_{}_URL", name.to_ascii_uppercase()),
                    format!("postgres://{role}@{host}/{db}"),
                )
            })
            .collect()
    }
}

impl SplitPostgres {
    /// The role through which the server reaches `part`.
    pub fn role(&self, part: &str) -> String {
        self.part(part).2.clone()
    }

    /// Runs `sql` in `part`'s database as the test's superuser (to break or
    /// mend what the server's role may do), returning the first column of
    /// each row as text.
    pub fn superuser(&self, part: &str, sql: &str) -> Vec<String> {
        let (prefix, _) = self.base.rsplit_once('/').expect("a database url with a path");
        let url = format!("{prefix}/{}", self.part(part).1);
        first_column(&url, sql)
    }

    /// Every part's name: the platform and each domain.
    pub fn names(&self) -> Vec<&'static str> {
        self.parts.iter().map(|(n, _, _)| *n).collect()
    }

    fn part(&self, name: &str) -> &(&'static str, String, String) {
        self.parts.iter().find(|(n, _, _)| *n == name).unwrap_or_else(|| panic!("no part named {name}"))
    }
}

impl Drop for SplitPostgres {
    fn drop(&mut self) {
        let (base, parts) = (self.base.clone(), std::mem::take(&mut self.parts));
        let _ = std::thread::spawn(move || {
            if let Ok(mut client) = postgres::Client::connect(&base, postgres::NoTls) {
                for (_, db, role) in parts {
                    let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
                    let _ = client.batch_execute(&format!("DROP ROLE IF EXISTS {role}"));
                }
            }
        })
        .join();
    }
}

/// Runs `sql` (one or more statements) at `url` and returns the first
/// column of each row as text.
pub fn first_column(url: &str, sql: &str) -> Vec<String> {
    try_first_column(url, sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// [`first_column`], with failure (server down, not there yet) as `Err`.
pub fn try_first_column(url: &str, sql: &str) -> Result<Vec<String>, String> {
    let (url, sql) = (url.to_string(), sql.to_string());
    // The blocking client runs a runtime of its own: keep it off the test's.
    std::thread::spawn(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls).map_err(|e| e.to_string())?;
        Ok(client
            .simple_query(&sql)
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter_map(|m| match m {
                postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or("").to_string()),
                _ => None,
            })
            .collect())
    })
    .join()
    .expect("running sql")
}

/// A PostgreSQL database for several servers at once (drop it with
/// [`SharedDatabase`]'s drop), or `None` when `MERCATO_TEST_POSTGRES_URL` is unset.
pub struct SharedDatabase(pub String);

impl SharedDatabase {
    pub fn create() -> Option<SharedDatabase> {
        postgres_database().map(SharedDatabase)
    }
}

impl Drop for SharedDatabase {
    fn drop(&mut self) {
        drop_postgres_database(&self.0);
    }
}

/// Keeps the read-your-writes token (stage 5) as a browser keeps the
/// cookie, except that tokens from concurrent requests merge, the highest
/// position per database winning, where a browser's jar would keep whichever
/// answer came last.
#[derive(Default)]
struct ReadAfterJar(Mutex<mercato_platform::db::ReadAfter>);

impl reqwest::cookie::CookieStore for ReadAfterJar {
    fn set_cookies(&self, headers: &mut dyn Iterator<Item = &reqwest::header::HeaderValue>, _: &reqwest::Url) {
        for h in headers.filter_map(|h| h.to_str().ok()) {
            let first = h.split(';').next().unwrap_or("").trim();
            if let Some(token) = first.strip_prefix("mercato_read_after=") {
                self.0.lock().unwrap().merge(&mercato_platform::db::ReadAfter::parse(token));
            }
        }
    }
    fn cookies(&self, _: &reqwest::Url) -> Option<reqwest::header::HeaderValue> {
        let token = self.0.lock().unwrap();
        if token.is_empty() {
            return None;
        }
        reqwest::header::HeaderValue::from_str(&format!("mercato_read_after={}", token.encode())).ok()
    }
}

/// The client every test server is driven with.
fn test_client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_provider(Arc::new(ReadAfterJar::default()))
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(64)
        .build()
        .expect("reqwest client")
}

/// What every test server is configured with.
fn base_env(seed: u32) -> Vec<(String, String)> {
    vec![
        ("MERCATO_SEED_PRODUCTS".into(), seed.to_string()),
        ("MERCATO_ADMIN_EMAIL".into(), ADMIN_EMAIL.into()),
        ("MERCATO_ADMIN_PASSWORD".into(), ADMIN_PASSWORD.into()),
        ("MERCATO_LOG_LEVEL".into(), "warn".into()),
    ]
}

impl TestServer {
    /// Starts a server with `seed` demo products and no extra settings.
    pub fn start(seed: u32) -> TestServer {
        Self::start_with(seed, &[])
    }

    /// Starts a server with `seed` demo products and extra `MERCATO_*` settings.
    pub fn start_with(seed: u32, extra: &[(&str, &str)]) -> TestServer {
        let dir = tempfile::Builder::new().prefix("mercato-test-").tempdir().expect("tempdir");
        let mut env = base_env(seed);
        for (k, v) in extra {
            env.retain(|(ek, _)| ek != k);
            env.push((k.to_string(), v.to_string()));
        }
        let mut split = None;
        match (std::env::var("MERCATO_TEST_POSTGRES_URL").ok().filter(|u| !u.is_empty()), split_shape()) {
            (Some(base), true) => {
                let parts = SplitPostgres::create(&base);
                env.extend(parts.env());
                split = Some(Arc::new(parts));
            }
            (Some(_), false) => {
                let url = postgres_database().expect("MERCATO_TEST_POSTGRES_URL is set");
                // Stage 5 shape: replicas of that server, the same database on each.
                if let Ok(replicas) = std::env::var("MERCATO_TEST_POSTGRES_REPLICAS") {
                    let name = url.rsplit_once('/').map_or("", |(_, n)| n);
                    let urls: Vec<String> = replicas
                        .split(',')
                        .filter(|r| !r.trim().is_empty())
                        .map(|r| format!("{}/{name}", r.trim().rsplit_once('/').map_or(r, |(p, _)| p)))
                        .collect();
                    env.push(("MERCATO_DATABASE_REPLICAS".into(), urls.join(",")));
                }
                env.push(("MERCATO_DATABASE_URL".into(), url));
            }
            (None, true) => {
                let url = format!("sqlite:{}/{{domain}}.db", dir.path().display());
                env.push(("MERCATO_DATABASE_URL".into(), url));
            }
            (None, false) => {}
        }
        if sharded_shape() {
            let shards: Vec<String> = match postgres_database() {
                Some(first) => vec![first, postgres_database().expect("a second shard database")],
                None => (0..2).map(|i| format!("sqlite:{}/orders-{i}.db", dir.path().display())).collect(),
            };
            env.push((SHARDS_KEY.into(), shards.join(",")));
            env.push(("MERCATO_ORDERS_LOGICAL_SHARDS".into(), "4".into()));
        }
        // MERCATO_TEST_REDIS=1: every server gets its own Redis as L2 cache and
        // shared store, so the whole suite also runs in the stage-3 shape.
        let redis = (std::env::var("MERCATO_TEST_REDIS").as_deref() == Ok("1")
            && !env.iter().any(|(k, _)| k == "MERCATO_CACHE_REDIS_URL"))
        .then(|| Arc::new(mercato_platform::redis::testing::RedisServer::start()));
        if let Some(r) = &redis {
            env.push(("MERCATO_CACHE_REDIS_URL".into(), r.url()));
            // A debug build on two busy cores answers Redis slower than the
            // production default allows; the breaker has tests of its own.
            if !env.iter().any(|(k, _)| k == "MERCATO_CACHE_REDIS_TIMEOUT_MS") {
                env.push(("MERCATO_CACHE_REDIS_TIMEOUT_MS".into(), "1000".into()));
            }
        }
        let mut server = Self::spawn(dir, env);
        server.redis = redis;
        server.split = split;
        server
    }

    /// Starts a server on `db`, which other servers of the test share.
    pub fn start_sharing(seed: u32, db: &SharedDatabase, extra: &[(&str, &str)]) -> TestServer {
        Self::start_on(seed, vec![("MERCATO_DATABASE_URL".into(), db.0.clone())], extra)
    }

    /// Starts a server on the split databases `parts`, which other servers of
    /// the test share.
    pub fn start_sharing_split(seed: u32, parts: &SplitPostgres, extra: &[(&str, &str)]) -> TestServer {
        Self::start_on(seed, parts.env(), extra)
    }

    pub fn start_on(seed: u32, databases: Vec<(String, String)>, extra: &[(&str, &str)]) -> TestServer {
        let dir = tempfile::Builder::new().prefix("mercato-test-").tempdir().expect("tempdir");
        let mut env = base_env(seed);
        env.extend(databases);
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let mut server = Self::spawn(dir, env);
        server.owns_database = false;
        server
    }

    /// A client of a shop this test did not start (behind a balancer the
    /// lab started): the same helpers, nothing to stop or drop.
    pub fn external(base_url: &str) -> TestServer {
        let client = test_client();
        TestServer {
            base_url: base_url.trim_end_matches('/').to_string(),
            client,
            child: None,
            data_dir: None,
            env: Vec::new(),
            stderr: Arc::new(Mutex::new(String::new())),
            owns_database: false,
            redis: None,
            split: None,
        }
    }

    /// A counter or gauge from `/metrics` (0 when absent), e.g.
    /// `mercato_cache_loads_total{cache="product"}`.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = send(self.client.get(self.url("/metrics"))).await.text;
        text.lines()
            .filter_map(|l| l.strip_prefix(series))
            .filter_map(|rest| rest.strip_prefix(' '))
            .filter_map(|v| v.trim().parse::<f64>().ok())
            .sum()
    }

    fn spawn(dir: TempDir, env: Vec<(String, String)>) -> TestServer {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mercato"));
        cmd.arg("serve")
            .env("MERCATO_LISTEN", "127.0.0.1:0")
            .env("MERCATO_DATA_DIR", dir.path())
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // nothing from the caller's environment configures the server
        for (k, _) in std::env::vars() {
            if k.starts_with("MERCATO_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("MERCATO_LISTEN", "127.0.0.1:0").env("MERCATO_DATA_DIR", dir.path());
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawning the mercato binary");

        let stderr = Arc::new(Mutex::new(String::new()));
        {
            let mut err = child.stderr.take().expect("stderr");
            let sink = stderr.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                loop {
                    match err.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            let mut s = sink.lock().unwrap();
                            // keep the tail only
                            if s.len() > 1 << 20 {
                                let cut = s.len() - (1 << 19);
                                let cut = (cut..s.len()).find(|i| s.is_char_boundary(*i)).unwrap_or(s.len());
                                s.drain(..cut);
                            }
                            s.push_str(&String::from_utf8_lossy(&buf[..n]));
                        }
                    }
                }
            });
        }
        let (tx, rx) = mpsc::channel::<String>();
        let stdout_lines = Arc::new(Mutex::new(Vec::<String>::new()));
        {
            let out = child.stdout.take().expect("stdout");
            let lines = stdout_lines.clone();
            std::thread::spawn(move || {
                let reader = BufReader::new(out);
                let mut sent = false;
                for line in reader.lines() {
                    let Ok(line) = line else { break };
                    if !sent {
                        if let Some(pos) = line.find("Mercato is running at ") {
                            let rest = &line[pos + "Mercato is running at ".len()..];
                            let url = rest.split_whitespace().next().unwrap_or("").trim_end_matches('/').to_string();
                            let _ = tx.send(url);
                            sent = true;
                        }
                        let mut l = lines.lock().unwrap();
                        if l.len() < 200 {
                            l.push(line);
                        }
                    }
                }
            });
        }
        let url = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(200));
                panic!(
                    "mercato did not print 'Mercato is running at' within 60 s.\n--- stdout ---\n{}\n--- stderr ---\n{}",
                    stdout_lines.lock().unwrap().join("\n"),
                    stderr.lock().unwrap()
                );
            }
        };
        assert!(url.starts_with("http://"), "unexpected URL in the ready line: '{url}'");
        let client = test_client();
        TestServer {
            base_url: url,
            client,
            child: Some(child),
            data_dir: Some(dir),
            env,
            stderr,
            owns_database: true,
            redis: None,
            split: None,
        }
    }

    /// The server's process id (while it runs).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Captured stderr of the server (tail).
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends SIGTERM (graceful shutdown) and waits up to `timeout` for the
    /// process to exit; returns its exit status, or None if it did not exit.
    pub fn sigterm_and_wait(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        let child = self.child.as_mut()?;
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// SIGKILLs the server (no graceful shutdown) and waits for it to die.
    pub fn sigkill(&mut self) {
        if let Some(mut child) = self.child.take() {
            sigkill_pid(child.id());
            let _ = child.wait();
        }
    }

    /// Kills this server (SIGKILL, if still running) and starts a new one on
    /// the same data dir with the same settings.
    pub fn restart(self) -> TestServer {
        self.restart_with(&[])
    }

    /// [`Self::restart`], with `changes` made to its environment.
    pub fn restart_with(mut self, changes: &[(&str, &str)]) -> TestServer {
        self.sigkill();
        let dir = self.data_dir.take().expect("data dir");
        let mut env = std::mem::take(&mut self.env);
        for (k, v) in changes {
            env.retain(|(ek, _)| ek != k);
            env.push((k.to_string(), v.to_string()));
        }
        let owns_database = self.owns_database;
        let redis = self.redis.take();
        let split = self.split.take();
        drop(self);
        let mut server = Self::spawn(dir, env);
        server.owns_database = owns_database;
        server.redis = redis;
        server.split = split;
        server
    }

    pub fn data_path(&self) -> &std::path::Path {
        self.data_dir.as_ref().expect("data dir").path()
    }

    /// Every database holding `domain`'s tables: its own, or with orders
    /// sharded (stage 7), each shard database (payments, which live with
    /// their orders, also keep their own; it may be one of those).
    pub fn open_domain_databases(&self, domain: &str) -> Vec<mercato_platform::Db> {
        let shards =
            matches!(domain, "orders" | "payments").then(|| self.env.iter().find(|(k, _)| k == SHARDS_KEY)).flatten();
        match shards {
            Some((_, urls)) if domain == "orders" => urls.split(',').map(open_url).collect(),
            Some((_, urls)) => {
                let mut dbs = vec![self.open_domain_database(domain)];
                dbs.extend(urls.split(',').map(open_url));
                dbs
            }
            None => vec![self.open_domain_database(domain)],
        }
    }

    /// The database holding `domain`'s tables, opened from the test (after
    /// stopping the server, to change what it will find when it starts again).
    pub fn open_domain_database(&self, domain: &str) -> mercato_platform::Db {
        let key = format!("MERCATO_DATABASE_DOMAINS_{}_URL", domain.to_ascii_uppercase());
        let first_shard = (domain == "orders")
            .then(|| self.env.iter().find(|(k, _)| k == SHARDS_KEY))
            .flatten()
            .map(|(_, v)| v.split(',').next().unwrap_or_default().to_string());
        let url = first_shard.or_else(|| {
            self.env
                .iter()
                .find(|(k, _)| *k == key)
                .or_else(|| self.env.iter().find(|(k, _)| k == "MERCATO_DATABASE_URL"))
                .map(|(_, url)| url.replace("{domain}", domain))
        });
        match url {
            Some(url) => open_url(&url),
            None => mercato_platform::Db::open_sqlite(
                &self.data_path().join("mercato.db"),
                "test",
                mercato_platform::db::DbOptions::default(),
            )
            .expect("opening SQLite"),
        }
    }

    /// `http://host:port` + `path` (for /healthz, /metrics, ...).
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    /// `http://host:port/api/v1` + `path`.
    pub fn api(&self, path: &str) -> String {
        format!("{}/api/v1{}", self.base_url, path)
    }

    /// A request builder on an /api/v1 path, with an optional bearer token.
    pub fn rb(&self, method: Method, path: &str, token: Option<&str>) -> reqwest::RequestBuilder {
        let rb = self.client.request(method, self.api(path));
        match token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Resp {
        send(self.rb(Method::GET, path, token)).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Resp {
        send(self.rb(Method::POST, path, token).json(&body)).await
    }

    /// POST without a body.
    pub async fn post_empty(&self, path: &str, token: Option<&str>) -> Resp {
        send(self.rb(Method::POST, path, token)).await
    }

    pub async fn put(&self, path: &str, token: Option<&str>, body: Value) -> Resp {
        send(self.rb(Method::PUT, path, token).json(&body)).await
    }

    pub async fn patch(&self, path: &str, token: Option<&str>, body: Value) -> Resp {
        send(self.rb(Method::PATCH, path, token).json(&body)).await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> Resp {
        send(self.rb(Method::DELETE, path, token)).await
    }

    /// A raw body with an explicit (or no) content type.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: &str,
        content_type: Option<&str>,
    ) -> Resp {
        let mut rb = self.rb(method, path, token).body(body.to_string());
        if let Some(ct) = content_type {
            rb = rb.header("content-type", ct);
        }
        send(rb).await
    }

    /// GET on a non-API path.
    pub async fn get_root(&self, path: &str) -> Resp {
        send(self.client.get(self.url(path))).await
    }

    // ---- auth ----

    pub async fn login(&self, email: &str, password: &str) -> Resp {
        self.post("/auth/login", None, json!({"email": email, "password": password})).await
    }

    pub async fn admin_token(&self) -> String {
        let r = self.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
        r.expect(200);
        r.body["access_token"].as_str().expect("access_token").to_string()
    }

    pub async fn register(&self, email: &str) -> Resp {
        self.post("/auth/register", None, json!({"email": email, "password": PASSWORD, "name": "Test Customer"})).await
    }

    /// Registers `email` (password `PASSWORD`) and logs in; returns the token.
    pub async fn register_and_login(&self, email: &str) -> String {
        self.register_and_login_full(email).await.0
    }

    /// Registers and logs in; returns (token, customer id).
    pub async fn register_and_login_full(&self, email: &str) -> (String, String) {
        let r = self.register(email).await;
        assert_eq!(r.status, 201, "register {email}: {}", r.text);
        self.login_customer(email).await
    }

    /// Logs an existing customer in; returns (token, customer id).
    pub async fn login_customer(&self, email: &str) -> (String, String) {
        let r = self.login(email, PASSWORD).await;
        assert_eq!(r.status, 200, "login {email}: {}", r.text);
        let token = r.body["access_token"].as_str().expect("access_token").to_string();
        let id = id_of(&r.body["customer"]["id"]);
        (token, id)
    }

    /// A fresh customer with a unique email; returns the token.
    pub async fn new_customer(&self) -> String {
        let email = format!("{}@example.com", unique_str("cust"));
        self.register_and_login(&email).await
    }

    // ---- catalog ----

    pub async fn create_category(&self, admin: &str, name: &str, parent_id: Option<&str>) -> Value {
        let mut body = json!({"name": name});
        if let Some(p) = parent_id {
            body["parent_id"] = json!(p);
        }
        let r = self.post("/admin/categories", Some(admin), body).await;
        assert_eq!(r.status, 201, "create category {name}: {}", r.text);
        r.body
    }

    /// Creates a published product with one variant per (sku, price, stock).
    pub async fn create_product(
        &self,
        admin: &str,
        category_id: &str,
        name: &str,
        variants: &[(&str, i64, i64)],
    ) -> Value {
        let variants: Vec<Value> = variants
            .iter()
            .enumerate()
            .map(|(i, (sku, price, stock))| {
                json!({
                    "sku": sku,
                    "price": {"amount": price, "currency": "USD"},
                    "options": {"size": format!("S{i}")},
                    "weight_grams": 250,
                    "stock": stock
                })
            })
            .collect();
        let r = self
            .post(
                "/admin/products",
                Some(admin),
                json!({
                    "name": name,
                    "description": format!("{name} description"),
                    "category_id": category_id,
                    "status": "published",
                    "variants": variants
                }),
            )
            .await;
        assert_eq!(r.status, 201, "create product {name}: {}", r.text);
        r.body
    }

    /// A new category and a published product with a single SKU; returns the SKU.
    pub async fn quick_sku(&self, admin: &str, price: i64, stock: i64) -> String {
        let cat = self.create_category(admin, &unique_str("Cat"), None).await;
        let sku = unique_str("SKU").to_uppercase();
        self.create_product(admin, &id_of(&cat["id"]), &unique_str("Product"), &[(&sku, price, stock)]).await;
        sku
    }

    pub async fn inventory(&self, admin: &str, sku: &str) -> Value {
        let r = self.get(&format!("/admin/inventory/{sku}"), Some(admin)).await;
        assert_eq!(r.status, 200, "inventory {sku}: {}", r.text);
        r.body
    }

    /// (available, reserved, sold)
    pub async fn stock(&self, admin: &str, sku: &str) -> (i64, i64, i64) {
        let v = self.inventory(admin, sku).await;
        (
            v["available"].as_i64().expect("available"),
            v["reserved"].as_i64().expect("reserved"),
            v["sold"].as_i64().expect("sold"),
        )
    }

    // ---- cart & orders ----

    pub async fn add_to_cart(&self, token: &str, sku: &str, quantity: i64) -> Resp {
        self.post("/cart/items", Some(token), json!({"sku": sku, "quantity": quantity})).await
    }

    pub async fn place_order(&self, token: &str, key: &str) -> Resp {
        self.place_order_with(token, key, json!({"shipping_address": address()})).await
    }

    pub async fn place_order_with(&self, token: &str, key: &str, body: Value) -> Resp {
        send(self.rb(Method::POST, "/orders", Some(token)).header("Idempotency-Key", key).json(&body)).await
    }

    /// Adds `quantity` of `sku` and places an order; returns the order (201).
    pub async fn order_one(&self, token: &str, sku: &str, quantity: i64) -> Value {
        let r = self.add_to_cart(token, sku, quantity).await;
        assert_eq!(r.status, 200, "add to cart: {}", r.text);
        let r = self.place_order(token, &unique_str("key")).await;
        assert_eq!(r.status, 201, "place order: {}", r.text);
        r.body
    }

    pub async fn pay(&self, token: &str, order_id: &str, card: &str) -> Resp {
        self.post(
            &format!("/orders/{order_id}/payments"),
            Some(token),
            json!({"method": "test_card", "card_number": card}),
        )
        .await
    }

    pub async fn order_status(&self, token: &str, order_id: &str) -> String {
        let r = self.get(&format!("/orders/{order_id}"), Some(token)).await;
        assert_eq!(r.status, 200, "get order {order_id}: {}", r.text);
        r.body["status"].as_str().expect("order status").to_string()
    }

    /// Polls until the order has `status`; returns whether it did in time.
    pub async fn wait_order_status(&self, token: &str, order_id: &str, status: &str, timeout: Duration) -> bool {
        poll_until(timeout, || async { self.order_status(token, order_id).await == status }).await
    }

    /// Follows `next_cursor` through a list endpoint (path may carry a query).
    pub async fn collect_all(&self, path: &str, token: Option<&str>) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        let sep = if path.contains('?') { '&' } else { '?' };
        for _ in 0..10_000 {
            let p = match &cursor {
                Some(c) => format!("{path}{sep}limit=100&cursor={}", urlencode(c)),
                None => format!("{path}{sep}limit=100"),
            };
            let r = self.get(&p, token).await;
            assert_eq!(r.status, 200, "list {p}: {}", r.text);
            let items = r.body["items"].as_array().unwrap_or_else(|| panic!("no items array: {}", r.text));
            out.extend(items.iter().cloned());
            match &r.body["next_cursor"] {
                Value::Null => return out,
                Value::String(c) => cursor = Some(c.clone()),
                other => panic!("next_cursor is neither null nor a string: {other}"),
            }
        }
        panic!("pagination of {path} did not end");
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let err = self.stderr();
            let tail: String = err.chars().rev().take(4000).collect::<Vec<_>>().into_iter().rev().collect();
            eprintln!("--- mercato stderr (tail) ---\n{tail}\n--- end of mercato stderr ---");
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // A restart hands the env (and so the database) to the next server.
        if self.owns_database {
            for (k, v) in &self.env {
                match k.as_str() {
                    "MERCATO_DATABASE_URL" => drop_postgres_database(v),
                    SHARDS_KEY => v.split(',').filter(|u| u.starts_with("postgres")).for_each(drop_postgres_database),
                    _ => {}
                }
            }
        }
    }
}

/// With `MERCATO_TEST_POSTGRES_URL` set (e.g. postgres://postgres@127.0.0.1/postgres),
/// every test server gets a fresh PostgreSQL database on that server instead of
/// embedded SQLite: the same suite, run against the other storage backend.
fn postgres_database() -> Option<String> {
    let base = std::env::var("MERCATO_TEST_POSTGRES_URL").ok().filter(|u| !u.is_empty())?;
    let name = format!("mercato_t_{}_{}", std::process::id(), unique());
    let (b, n) = (base.clone(), name.clone());
    // The blocking client runs its own runtime: keep it off the test's.
    std::thread::spawn(move || {
        let mut client =
            postgres::Client::connect(&b, postgres::NoTls).expect("connecting to MERCATO_TEST_POSTGRES_URL");
        client.batch_execute(&format!("CREATE DATABASE {n}")).expect("creating a test database");
    })
    .join()
    .expect("creating a test database");
    let (prefix, _) = base.rsplit_once('/').expect("a database url with a path");
    Some(format!("{prefix}/{name}"))
}

fn drop_postgres_database(url: &str) {
    let (Ok(base), Some((_, name))) = (std::env::var("MERCATO_TEST_POSTGRES_URL"), url.rsplit_once('/')) else {
        return;
    };
    let name = name.to_string();
    let _ = std::thread::spawn(move || {
        if let Ok(mut client) = postgres::Client::connect(&base, postgres::NoTls) {
            let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    })
    .join();
}

/// Percent-encodes everything but unreserved characters.
pub fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Sends SIGKILL to a process id.
pub fn sigkill_pid(pid: u32) {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
}

/// Registers and logs in `n` customers through the API, `parallel` at a time.
/// Returns (email, token, customer id) in index order.
pub async fn make_customers(
    srv: &std::sync::Arc<TestServer>,
    n: usize,
    parallel: usize,
    tag: &str,
) -> Vec<(String, String, String)> {
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(parallel));
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        let srv = srv.clone();
        let sem = sem.clone();
        let email = format!("{}-{i}@example.com", unique_str(tag));
        set.spawn(async move {
            let _permit = sem.acquire_owned().await.expect("semaphore");
            let (token, id) = srv.register_and_login_full(&email).await;
            (i, email, token, id)
        });
    }
    let mut out: Vec<Option<(String, String, String)>> = vec![None; n];
    while let Some(res) = set.join_next().await {
        let (i, email, token, id) = res.expect("customer setup task panicked");
        out[i] = Some((email, token, id));
    }
    out.into_iter().map(|c| c.expect("customer")).collect()
}

/// Logs existing customers in again, `parallel` at a time; returns tokens in order.
pub async fn relogin_customers(srv: &std::sync::Arc<TestServer>, emails: &[String], parallel: usize) -> Vec<String> {
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(parallel));
    let mut set = tokio::task::JoinSet::new();
    for (i, email) in emails.iter().enumerate() {
        let srv = srv.clone();
        let sem = sem.clone();
        let email = email.clone();
        set.spawn(async move {
            let _permit = sem.acquire_owned().await.expect("semaphore");
            (i, srv.login_customer(&email).await.0)
        });
    }
    let mut out = vec![String::new(); emails.len()];
    while let Some(res) = set.join_next().await {
        let (i, token) = res.expect("login task panicked");
        out[i] = token;
    }
    out
}
