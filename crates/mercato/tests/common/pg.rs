//! A private PostgreSQL cluster for one test (own data dir, own port), for
//! tests that crash or restart the database: the shared server of
//! `MERCATO_TEST_POSTGRES_URL` must stay up for everyone else.
//!
//! The postmaster runs as a child of the test rather than through
//! `pg_ctl start`: pg_ctl leaves it to the init process, which on some
//! machines (containers, micro-VMs) never reaps, and a zombie postmaster's pid
//! in `postmaster.pid` makes the next start refuse the data dir.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// How long a (re)start may take, crash recovery included.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The directory holding `initdb` and `postgres`: the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian, Ubuntu), else one on `PATH`.
pub fn binaries() -> Option<PathBuf> {
    let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    let mut versioned: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, bin)| has_server(bin))
        .collect();
    versioned.sort();
    if let Some((_, bin)) = versioned.pop() {
        return Some(bin);
    }
    std::env::split_paths(&std::env::var_os("PATH")?).find(|dir| has_server(dir))
}

/// The uid and gid the server runs as: PostgreSQL refuses to run as root, so
/// a root test hands it to the `postgres` account; anyone else runs it as
/// themselves. `None` inside means "as we are".
pub fn server_account() -> Result<Option<(u32, u32)>, String> {
    let uid = std::fs::metadata("/proc/self").map(|m| m.uid()).map_err(|e| format!("reading /proc/self: {e}"))?;
    if uid != 0 {
        return Ok(None);
    }
    let id = |flag: &str| -> Result<u32, String> {
        let out = Command::new("id").args([flag, "postgres"]).output().map_err(|e| format!("running id: {e}"))?;
        if !out.status.success() {
            return Err("running as root and there is no `postgres` account to run PostgreSQL as".into());
        }
        String::from_utf8_lossy(&out.stdout).trim().parse().map_err(|e| format!("id {flag} postgres: {e}"))
    };
    Ok(Some((id("-u")?, id("-g")?)))
}

pub struct PgCluster {
    bin: PathBuf,
    /// Holds the data dir (`data`), the socket and the server log.
    root: TempDir,
    port: u16,
    account: Option<(u32, u32)>,
    postmaster: Option<Child>,
}

impl PgCluster {
    /// Initialises and starts a cluster. `Err` says what this machine lacks
    /// (binaries, or the account to run them as), for the test to skip;
    /// anything else going wrong is a failure, and panics.
    pub fn start_new() -> Result<PgCluster, String> {
        let bin = binaries().ok_or("PostgreSQL server binaries (initdb, postgres) not found")?;
        let account = server_account()?;
        let root = tempfile::Builder::new().prefix("mercato-pg-").tempdir().expect("tempdir");
        if let Some((uid, gid)) = account {
            std::os::unix::fs::chown(root.path(), Some(uid), Some(gid)).expect("handing the temp dir to postgres");
        }
        let port = free_port();
        let mut cluster = PgCluster { bin, root, port, account, postmaster: None };
        let out = cluster
            .command("initdb")
            .args(["-D", "data", "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"])
            .output()
            .expect("running initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cluster.start();
        Ok(cluster)
    }

    /// A streaming replica of `primary` (a base backup that follows its
    /// WAL, `pg_basebackup -R`), started.
    pub fn replica_of(primary: &PgCluster) -> PgCluster {
        let root = tempfile::Builder::new().prefix("mercato-pg-replica-").tempdir().expect("tempdir");
        if let Some((uid, gid)) = primary.account {
            std::os::unix::fs::chown(root.path(), Some(uid), Some(gid)).expect("handing the temp dir to postgres");
        }
        let mut cluster =
            PgCluster { bin: primary.bin.clone(), root, port: free_port(), account: primary.account, postmaster: None };
        let out = cluster
            .command("pg_basebackup")
            .args(["-h", "127.0.0.1", "-p", &primary.port.to_string(), "-U", "postgres"])
            .args(["-D", "data", "-R", "-X", "stream", "-c", "fast"])
            .output()
            .expect("running pg_basebackup");
        assert!(out.status.success(), "pg_basebackup failed: {}", String::from_utf8_lossy(&out.stderr));
        cluster.start();
        cluster
    }

    /// Runs `sql` as the superuser on database `postgres` and returns the
    /// first column of each row as text.
    pub fn sql(&self, sql: &str) -> Vec<String> {
        super::first_column(&self.url(), sql)
    }

    /// Changes a setting and reloads the configuration (`ALTER SYSTEM`,
    /// allowed on a standby too).
    pub fn set(&self, name: &str, value: &str) {
        self.sql(&format!("ALTER SYSTEM SET {name} = '{value}'"));
        self.sql("SELECT pg_reload_conf()");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The superuser's URL to the `postgres` database.
    pub fn url(&self) -> String {
        self.database_url("postgres")
    }

    pub fn database_url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Creates database `name` and returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        let (url, sql) = (self.url(), format!("CREATE DATABASE {name}"));
        // The blocking client runs a runtime of its own: keep it off the test's.
        std::thread::spawn(move || {
            let mut client =
                postgres::Client::connect(&url, postgres::NoTls).expect("connecting to the private cluster");
            client.batch_execute(&sql).expect("creating a database");
        })
        .join()
        .expect("creating a database");
        self.database_url(name)
    }

    /// Starts the server on the same data dir and port, and returns once it
    /// accepts connections (after crash recovery, if it was killed).
    pub fn start(&mut self) {
        assert!(self.postmaster.is_none(), "the cluster is already running");
        let log = File::options().create(true).append(true).open(self.log_path()).expect("opening the server log");
        let log2 = log.try_clone().expect("server log");
        let sockets = self.root.path().to_str().expect("utf-8 temp path").to_string();
        let mut child = self
            .command("postgres")
            .args(["-D", "data", "-p", &self.port.to_string(), "-k", &sockets])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .stdout(log)
            .stderr(log2)
            .spawn()
            .expect("spawning postgres");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("postgres exited during start ({status})\n{}", self.log_tail());
            }
            if self.accepting() {
                break;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("postgres did not accept connections within {START_TIMEOUT:?}\n{}", self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.postmaster = Some(child);
    }

    /// Fast shutdown (SIGINT): sessions are cut, the server checkpoints and exits.
    pub fn stop_fast(&mut self) {
        let Some(mut child) = self.postmaster.take() else { return };
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGINT);
        if !wait_exit(&mut child, Duration::from_secs(30)) {
            self.postmaster = Some(child);
            self.kill();
        }
    }

    /// An unclean crash: SIGKILL to the postmaster and to every process it
    /// started, as when the database host dies. The next `start` runs crash
    /// recovery from the WAL. (Backends orphaned by a lone postmaster kill
    /// would hold on to shared memory, and a start would refuse until they
    /// noticed and quit.)
    pub fn kill(&mut self) {
        let Some(mut child) = self.postmaster.take() else { return };
        let pm = child.id();
        // Frozen, the postmaster cannot fork a backend we would miss.
        let _ = kill(Pid::from_raw(pm as i32), Signal::SIGSTOP);
        let children = children_of(pm);
        let _ = kill(Pid::from_raw(pm as i32), Signal::SIGKILL);
        for &c in &children {
            let _ = kill(Pid::from_raw(c as i32), Signal::SIGKILL);
        }
        let _ = child.wait();
        // The children belong to init now, which may never reap them: gone or
        // a zombie both mean dead.
        let deadline = Instant::now() + Duration::from_secs(10);
        while children.iter().any(|&c| alive(c)) {
            assert!(Instant::now() < deadline, "postgres backends survived SIGKILL: {children:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The server log's last lines, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!("--- postgres log (tail) ---\n{}", lines[lines.len().saturating_sub(40)..].join("\n"))
    }

    fn log_path(&self) -> PathBuf {
        self.root.path().join("postgres.log")
    }

    fn accepting(&self) -> bool {
        Command::new(self.bin.join("pg_isready"))
            .args([
                "-q",
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-t",
                "1",
            ])
            .stdin(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(program));
        cmd.current_dir(self.root.path()).stdin(Stdio::null());
        for (k, _) in std::env::vars_os() {
            if k.to_str().is_some_and(|k| k.starts_with("PG")) {
                cmd.env_remove(k);
            }
        }
        if let Some((uid, gid)) = self.account {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail());
        }
        // Immediate shutdown: nothing in the throw-away data dir needs saving.
        if let Some(mut child) = self.postmaster.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGQUIT);
            if !wait_exit(&mut child, Duration::from_secs(10)) {
                self.postmaster = Some(child);
                self.kill();
            }
        }
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

pub fn wait_exit(child: &mut Child, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// `(state, ppid)` from /proc/<pid>/stat; the command name may hold spaces
/// and parentheses, so fields are counted from its closing one.
fn stat(pid: u32) -> Option<(char, u32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = text[text.rfind(')')? + 1..].split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

pub fn alive(pid: u32) -> bool {
    stat(pid).is_some_and(|(state, _)| state != 'Z' && state != 'X')
}

pub fn children_of(parent: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| stat(pid).is_some_and(|(_, ppid)| ppid == parent))
        .collect()
}
