//! A pg_auto_failover formation for one test: a monitor and PostgreSQL nodes
//! (a primary and standbys, synchronous by the engine's default), each node
//! a `pg_autoctl` keeper with its own data dir and port, run as children of
//! the test. The failover itself is the engine's; the test only kills
//! nodes and watches the monitor.

use super::pg::{alive, binaries, children_of, free_port, server_account, wait_exit};
use super::try_first_column;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// The monitor's checks, tightened from its defaults (a node is declared
/// unhealthy after 20 s, a primary that cannot be reached is waited for
/// 30 s before its standby is promoted) so a failover takes seconds.
const MONITOR_SETTINGS: &[(&str, &str)] = &[
    ("pgautofailover.health_check_period", "1000"),
    ("pgautofailover.health_check_retry_delay", "500"),
    ("pgautofailover.health_check_max_retries", "1"),
    ("pgautofailover.node_considered_unhealthy_timeout", "3000"),
    ("pgautofailover.primary_demote_timeout", "5000"),
];

const FORM_TIMEOUT: Duration = Duration::from_secs(120);

struct Node {
    name: String,
    port: u16,
    dir: PathBuf,
    keeper: Option<Child>,
}

pub struct Formation {
    bin: PathBuf,
    autoctl: PathBuf,
    root: TempDir,
    account: Option<(u32, u32)>,
    /// The database superuser: initdb names it after the account running it.
    user: String,
    monitor: Node,
    nodes: Vec<Node>,
}

impl Formation {
    /// A monitor, then `nodes` nodes one after the other (the first becomes
    /// the primary), each with database `dbname`, returned once the first is
    /// `primary` and the others `secondary`. `Err` says what this machine
    /// lacks, for the test to skip.
    pub fn start(nodes: usize, dbname: &str) -> Result<Formation, String> {
        let bin = binaries().ok_or("PostgreSQL server binaries not found")?;
        let autoctl = ["/usr/bin/pg_autoctl", "/usr/lib/postgresql/15/bin/pg_autoctl"]
            .iter()
            .map(PathBuf::from)
            .chain(std::iter::once(bin.join("pg_autoctl")))
            .find(|p| p.is_file())
            .ok_or("pg_autoctl not found (apt-get install postgresql-15-auto-failover)")?;
        let account = server_account()?;
        let user = match account {
            Some(_) => "postgres".to_string(),
            None => std::env::var("USER").map_err(|_| "USER is not set")?,
        };
        let root = tempfile::Builder::new().prefix("mercato-paf-").tempdir().expect("tempdir");
        let node =
            |name: &str| Node { name: name.into(), port: free_port(), dir: root.path().join(name), keeper: None };
        let monitor = node("monitor");
        let nodes: Vec<Node> = (1..=nodes).map(|i| node(&format!("node{i}"))).collect();
        let mut f = Formation { bin, autoctl, root, account, user, monitor, nodes };
        if let Some((uid, gid)) = f.account {
            std::os::unix::fs::chown(f.root.path(), Some(uid), Some(gid)).expect("chown");
        }
        for n in std::iter::once(&f.monitor).chain(&f.nodes) {
            std::fs::create_dir_all(&n.dir).expect("node dir");
            if let Some((uid, gid)) = f.account {
                std::os::unix::fs::chown(&n.dir, Some(uid), Some(gid)).expect("chown");
            }
        }

        let pgctl = f.bin.join("pg_ctl").display().to_string();
        let args: Vec<String> = [
            "create",
            "monitor",
            "--pgctl",
            &pgctl,
            "--pgdata",
            &f.monitor.dir.join("data").display().to_string(),
            "--pgport",
            &f.monitor.port.to_string(),
            "--hostname",
            "127.0.0.1",
            "--auth",
            "trust",
            "--no-ssl",
            "--run",
        ]
        .map(String::from)
        .to_vec();
        f.monitor.keeper = Some(f.spawn(&f.monitor, &args));
        let monitor_url = f.monitor_url();
        f.wait("the monitor to answer", || {
            try_first_column(&monitor_url, "SELECT count(*) FROM pgautofailover.node").is_ok()
        });
        for (name, value) in MONITOR_SETTINGS {
            try_first_column(&monitor_url, &format!("ALTER SYSTEM SET {name} = {value}"))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        try_first_column(&monitor_url, "SELECT pg_reload_conf()").expect("reloading the monitor");

        for i in 0..f.nodes.len() {
            let n = &f.nodes[i];
            let monitor =
                format!("postgres://autoctl_node@127.0.0.1:{}/pg_auto_failover?sslmode=disable", f.monitor.port);
            let args: Vec<String> = vec![
                "create".into(),
                "postgres".into(),
                "--pgctl".into(),
                pgctl.clone(),
                "--pgdata".into(),
                n.dir.join("data").display().to_string(),
                "--pgport".into(),
                n.port.to_string(),
                "--hostname".into(),
                "127.0.0.1".into(),
                "--name".into(),
                n.name.clone(),
                "--dbname".into(),
                dbname.into(),
                "--monitor".into(),
                monitor,
                "--auth".into(),
                "trust".into(),
                "--no-ssl".into(),
                "--run".into(),
            ];
            let child = f.spawn(n, &args);
            f.nodes[i].keeper = Some(child);
            let want = if i == 0 { "single" } else { "secondary" };
            let name = f.nodes[i].name.clone();
            f.wait(&format!("{name} to be {want}"), || f.state(&name).is_some_and(|(r, g)| r == want && g == want));
        }
        if f.nodes.len() > 1 {
            let name = f.nodes[0].name.clone();
            f.wait("node1 to be primary", || f.state(&name).is_some_and(|(r, g)| r == "primary" && g == "primary"));
        }
        Ok(f)
    }

    /// Every node, for a client that must find whichever is the primary.
    pub fn url(&self, dbname: &str) -> String {
        let hosts: Vec<String> = self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        format!("postgres://{}@{}/{dbname}?target_session_attrs=read-write", self.user, hosts.join(","))
    }

    pub fn node_url(&self, i: usize, dbname: &str) -> String {
        format!("postgres://{}@127.0.0.1:{}/{dbname}", self.user, self.nodes[i].port)
    }

    fn monitor_url(&self) -> String {
        format!("postgres://{}@127.0.0.1:{}/pg_auto_failover", self.user, self.monitor.port)
    }

    /// `(reported, goal)` state of node `name`, as the monitor has it.
    pub fn state(&self, name: &str) -> Option<(String, String)> {
        let sql =
            format!("SELECT reportedstate || ' ' || goalstate FROM pgautofailover.node WHERE nodename = '{name}'");
        let rows = try_first_column(&self.monitor_url(), &sql).ok()?;
        let row = rows.first()?;
        let (r, g) = row.split_once(' ')?;
        Some((r.to_string(), g.to_string()))
    }

    /// Every node's name and states, for messages.
    pub fn describe(&self) -> String {
        self.nodes.iter().map(|n| format!("{}: {:?}", n.name, self.state(&n.name))).collect::<Vec<_>>().join(", ")
    }

    pub fn name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// Kills node `i` as a host dying would: its keeper, its PostgreSQL and
    /// every process they started, at once (SIGKILL). A keeper left alive
    /// would restart its PostgreSQL, which is another fault.
    pub fn kill(&mut self, i: usize) {
        let Some(mut keeper) = self.nodes[i].keeper.take() else { return };
        kill_tree(keeper.id());
        let _ = keeper.wait();
    }

    /// Freezes (SIGSTOP) node `i`'s WAL senders: from now on its standbys
    /// receive nothing, as when the link to them stalls. A synchronous
    /// commit waits; an asynchronous one is acknowledged with its WAL on
    /// this node alone. Killing the node ends them too.
    pub fn stall_replication(&self, i: usize) -> usize {
        let pids = try_first_column(&self.node_url(i, "postgres"), "SELECT pid FROM pg_stat_replication")
            .unwrap_or_else(|e| panic!("listing {}'s WAL senders: {e}", self.nodes[i].name));
        for pid in &pids {
            let pid: i32 = pid.parse().expect("a pid");
            let _ = kill(Pid::from_raw(pid), Signal::SIGSTOP);
        }
        pids.len()
    }

    /// Starts node `i`'s keeper again (`pg_autoctl run`): it asks the
    /// monitor what it is now and rejoins as a standby if it was replaced.
    pub fn restart(&mut self, i: usize) {
        assert!(self.nodes[i].keeper.is_none(), "{} is running", self.nodes[i].name);
        let pgdata = self.nodes[i].dir.join("data").display().to_string();
        let child = self.spawn(&self.nodes[i], &["run".into(), "--pgdata".into(), pgdata]);
        self.nodes[i].keeper = Some(child);
    }

    /// Waits until `ok`, or panics with the formation's state and logs.
    pub fn wait(&self, what: &str, mut ok: impl FnMut() -> bool) {
        let deadline = Instant::now() + FORM_TIMEOUT;
        while !ok() {
            assert!(
                Instant::now() < deadline,
                "waited {FORM_TIMEOUT:?} for {what}: {}\n{}",
                self.describe(),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The keepers' logs' last lines.
    pub fn logs(&self) -> String {
        std::iter::once(&self.monitor)
            .chain(&self.nodes)
            .map(|n| {
                let text = std::fs::read_to_string(n.dir.join("keeper.log")).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                format!("--- {} (tail) ---\n{}", n.name, lines[lines.len().saturating_sub(25)..].join("\n"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn spawn(&self, node: &Node, args: &[String]) -> Child {
        let log = File::options().create(true).append(true).open(node.dir.join("keeper.log")).expect("keeper log");
        let log2 = log.try_clone().expect("keeper log");
        let mut cmd = Command::new(&self.autoctl);
        cmd.args(args).current_dir(&node.dir).stdin(Stdio::null()).stdout(log).stderr(log2);
        for (k, _) in std::env::vars_os() {
            if k.to_str().is_some_and(|k| k.starts_with("PG") || k.starts_with("XDG_")) {
                cmd.env_remove(k);
            }
        }
        // pg_autoctl keeps its configuration and state under these.
        let home = node.dir.display().to_string();
        cmd.env("HOME", &home)
            .env("XDG_CONFIG_HOME", format!("{home}/config"))
            .env("XDG_DATA_HOME", format!("{home}/share"))
            .env("XDG_RUNTIME_DIR", format!("{home}/run"))
            .env("PATH", format!("{}:/usr/bin:/bin", self.bin.display()));
        if let Some((uid, gid)) = self.account {
            cmd.uid(uid).gid(gid);
        }
        cmd.spawn().unwrap_or_else(|e| panic!("starting {}: {e}", self.autoctl.display()))
    }
}

impl Drop for Formation {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        for n in self.nodes.iter_mut().chain(std::iter::once(&mut self.monitor)) {
            if let Some(mut keeper) = n.keeper.take() {
                // A keeper asked to stop (SIGTERM) stops its PostgreSQL too.
                let _ = kill(Pid::from_raw(keeper.id() as i32), Signal::SIGTERM);
                if !wait_exit(&mut keeper, Duration::from_secs(10)) {
                    kill_tree(keeper.id());
                    let _ = keeper.wait();
                }
            }
        }
    }
}

/// SIGKILL to `pid` and every process under it, each frozen first so that
/// none forks a process we would miss.
fn kill_tree(pid: u32) {
    let mut all = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let _ = kill(Pid::from_raw(p as i32), Signal::SIGSTOP);
        all.push(p);
        todo.extend(children_of(p));
    }
    for &p in &all {
        let _ = kill(Pid::from_raw(p as i32), Signal::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while all.iter().skip(1).any(|&p| alive(p)) {
        assert!(Instant::now() < deadline, "processes survived SIGKILL: {all:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}
