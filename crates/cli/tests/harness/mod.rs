//! A cluster of real `raftkv serve` processes for tests: free ports, short timings, a temp folder, and a
//! guard that kills every child and removes the folder on drop (also when a test fails).

#![allow(dead_code)]

pub mod browser;
pub mod http;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Tests that start clusters run one at a time (2 cores shared by many).
static ONE_CLUSTER_AT_A_TIME: Mutex<()> = Mutex::new(());

pub const TICK_MS: u64 = 10;
pub const HEARTBEAT_MS: u64 = 50;
pub const ELECTION_TIMEOUT_MS: u64 = 300;
/// Several times the largest election timeout (2 × the minimum), generous for a loaded machine.
pub const LEADER_BOUND: Duration = Duration::from_secs(15);

pub struct NodeProcess {
    pub id: u64,
    pub client_port: u16,
    pub peer_port: u16,
    /// The admin HTTP endpoint (`/status`, `/metrics`, `/health`).
    pub admin_port: u16,
    pub child: Option<Child>,
}

pub struct Cluster {
    _serial: MutexGuard<'static, ()>,
    pub dir: PathBuf,
    pub cluster_id: u64,
    pub nodes: Vec<NodeProcess>,
    pub election_timeout_ms: u64,
    /// Extra flags given to every `raftkv serve`.
    pub extra_args: Vec<String>,
}

fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> =
        (0..count).map(|_| TcpListener::bind("127.0.0.1:0").expect("binding port 0")).collect();
    listeners.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

impl Cluster {
    /// Starts `n` nodes, bootstrapped, and waits until one leads.
    pub fn start(name: &str, n: usize) -> Cluster {
        Cluster::start_with(name, n, ELECTION_TIMEOUT_MS)
    }

    /// As [`Cluster::start`], with another minimum election timeout.
    pub fn start_with(name: &str, n: usize, election_timeout_ms: u64) -> Cluster {
        let cluster = Cluster::start_nodes(name, n, election_timeout_ms, true);
        cluster.wait_for_leader(LEADER_BOUND);
        cluster
    }

    /// Starts `n` nodes with empty data directories and no `--bootstrap`: none of them is a member yet.
    pub fn start_unbootstrapped(name: &str, n: usize) -> Cluster {
        Cluster::start_nodes(name, n, ELECTION_TIMEOUT_MS, false)
    }

    /// Starts `n` bootstrapped nodes, each with `extra_args` on its command line, and waits for a leader.
    pub fn start_with_args(name: &str, n: usize, extra_args: &[&str]) -> Cluster {
        let extra_args = extra_args.iter().map(|a| a.to_string()).collect();
        let cluster = Cluster::start_nodes_with(name, n, ELECTION_TIMEOUT_MS, true, extra_args);
        cluster.wait_for_leader(LEADER_BOUND);
        cluster
    }

    fn start_nodes(name: &str, n: usize, election_timeout_ms: u64, bootstrap: bool) -> Cluster {
        Cluster::start_nodes_with(name, n, election_timeout_ms, bootstrap, Vec::new())
    }

    fn start_nodes_with(
        name: &str,
        n: usize,
        election_timeout_ms: u64,
        bootstrap: bool,
        extra_args: Vec<String>,
    ) -> Cluster {
        let serial = ONE_CLUSTER_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        let dir = std::env::temp_dir().join(format!("raftkv-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ports = free_ports(3 * n);
        let nodes = (0..n)
            .map(|i| NodeProcess {
                id: i as u64 + 1,
                client_port: ports[i],
                peer_port: ports[n + i],
                admin_port: ports[2 * n + i],
                child: None,
            })
            .collect();
        let mut cluster =
            Cluster { _serial: serial, dir, cluster_id: 77, nodes, election_timeout_ms, extra_args };
        for id in 1..=n as u64 {
            cluster.start_node(id, bootstrap);
        }
        cluster
    }

    pub fn node(&self, id: u64) -> &NodeProcess {
        &self.nodes[id as usize - 1]
    }

    pub fn start_node(&mut self, id: u64, bootstrap: bool) {
        let flags: Vec<String> = if bootstrap { vec!["--bootstrap".into()] } else { Vec::new() };
        self.spawn_node(id, true, &flags);
    }

    /// Starts node `id`: with a `--member` flag per node so far if `with_members`, plus `flags`.
    fn spawn_node(&mut self, id: u64, with_members: bool, flags: &[String]) {
        let members: Vec<String> = self
            .nodes
            .iter()
            .filter(|_| with_members)
            .map(|n| {
                format!(
                    "{}=127.0.0.1:{},127.0.0.1:{},127.0.0.1:{}",
                    n.id, n.peer_port, n.client_port, n.admin_port
                )
            })
            .collect();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("node-{id}.log")))
            .unwrap();
        let node = &self.nodes[id as usize - 1];
        let mut command = Command::new(env!("CARGO_BIN_EXE_raftkv"));
        command
            .arg("serve")
            .args(["--node-id", &id.to_string(), "--cluster-id", &self.cluster_id.to_string()])
            .arg("--data-dir")
            .arg(self.dir.join(format!("node-{id}")))
            .args(["--client-listen", &format!("127.0.0.1:{}", node.client_port)])
            .args(["--peer-listen", &format!("127.0.0.1:{}", node.peer_port)])
            .args(["--admin-listen", &format!("127.0.0.1:{}", node.admin_port)])
            .args(["--tick-ms", &TICK_MS.to_string()])
            .args(["--heartbeat-interval-ms", &HEARTBEAT_MS.to_string()])
            .args(["--election-timeout-ms", &self.election_timeout_ms.to_string()])
            .args(["--client-timeout-ms", "3000"])
            .args(["--log-level", "info"])
            .args(&self.extra_args)
            .args(flags);
        for member in &members {
            command.args(["--member", member]);
        }
        command.stdin(Stdio::null()).stdout(log.try_clone().unwrap()).stderr(log);
        let child = command.spawn().expect("starting raftkv serve");
        self.nodes[id as usize - 1].child = Some(child);
        wait_until(
            Duration::from_secs(20),
            || self.connect(id).is_ok(),
            || format!("node {id} to accept clients"),
        );
    }

    /// Starts one more node with free ports, an empty data directory and no `--member` flags, with
    /// `raftkv serve --join <node via's client address>` (and `--promote` if asked).
    pub fn join_node(&mut self, via: u64, promote: bool) -> u64 {
        let id = self.push_node();
        let mut flags = vec!["--join".to_string(), format!("127.0.0.1:{}", self.node(via).client_port)];
        if promote {
            flags.push("--promote".into());
        }
        self.spawn_node(id, false, &flags);
        id
    }

    fn push_node(&mut self) -> u64 {
        let ports = free_ports(3);
        let id = self.nodes.len() as u64 + 1;
        self.nodes.push(NodeProcess {
            id,
            client_port: ports[0],
            peer_port: ports[1],
            admin_port: ports[2],
            child: None,
        });
        id
    }

    /// Starts one more node with free ports and an empty data directory, not bootstrapped: it is not a
    /// member and waits to be added. Its `--member` flags name every node so far, itself included.
    pub fn add_node(&mut self) -> u64 {
        let id = self.push_node();
        self.start_node(id, false);
        id
    }

    /// Node `id`'s addresses as `raftkv member add` takes them: `peer,client,admin`.
    pub fn addrs(&self, id: u64) -> String {
        let n = self.node(id);
        format!("127.0.0.1:{},127.0.0.1:{},127.0.0.1:{}", n.peer_port, n.client_port, n.admin_port)
    }

    /// Node `id`'s client address.
    pub fn client_addr(&self, id: u64) -> String {
        format!("127.0.0.1:{}", self.node(id).client_port)
    }

    /// The node among `ids` that says it leads, once every one of `ids` agrees (nodes outside `ids`, such
    /// as removed members that keep running, are not asked).
    pub fn leader_among(&self, ids: &[u64]) -> Option<u64> {
        let leader =
            ids.iter().copied().find(|&id| self.info_field(id, "role").as_deref() == Some("leader"))?;
        let agreed = ids
            .iter()
            .all(|&id| self.info_field(id, "leader_id").as_deref() == Some(leader.to_string().as_str()));
        agreed.then_some(leader)
    }

    /// kill -9.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut child) = self.nodes[id as usize - 1].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, and the exit status (a clean shutdown exits 0).
    pub fn terminate(&mut self, id: u64) -> std::process::ExitStatus {
        let mut child = self.nodes[id as usize - 1].child.take().expect("node is running");
        signal(&child, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("node {id} did not stop within 15 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, id: u64, signal_number: i32) {
        signal(self.node(id).child.as_ref().expect("node is running"), signal_number);
    }

    pub fn is_running(&self, id: u64) -> bool {
        self.node(id).child.is_some()
    }

    pub fn connect(&self, id: u64) -> redis::RedisResult<redis::Connection> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/", self.node(id).client_port))?;
        let connection = client.get_connection_with_timeout(Duration::from_secs(2))?;
        connection.set_read_timeout(Some(Duration::from_secs(10)))?;
        connection.set_write_timeout(Some(Duration::from_secs(10)))?;
        Ok(connection)
    }

    /// `INFO raft` of one node as key/value pairs.
    pub fn info(&self, id: u64) -> Option<Vec<(String, String)>> {
        let mut connection = self.connect(id).ok()?;
        let text: String = redis::cmd("INFO").arg("raft").query(&mut connection).ok()?;
        Some(server::info::parse(&text))
    }

    pub fn info_field(&self, id: u64, key: &str) -> Option<String> {
        self.info(id)?.into_iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The running node that says it leads, once every running node agrees on it.
    pub fn leader(&self) -> Option<u64> {
        let running: Vec<u64> = self.nodes.iter().filter(|n| n.child.is_some()).map(|n| n.id).collect();
        self.leader_among(&running)
    }

    pub fn wait_for_leader(&self, bound: Duration) -> u64 {
        let mut found = None;
        wait_until(
            bound,
            || {
                found = self.leader();
                found.is_some()
            },
            || "a leader that every running node agrees on".into(),
        );
        found.unwrap()
    }

    /// Waits until node `id` applied at least `index`.
    pub fn wait_applied(&self, id: u64, index: u64, bound: Duration) {
        wait_until(
            bound,
            || {
                self.info_field(id, "applied_index")
                    .and_then(|v| v.parse::<u64>().ok())
                    .is_some_and(|a| a >= index)
            },
            || format!("node {id} to apply index {index}"),
        );
    }

    /// `GET path` on node `id`'s admin endpoint.
    pub fn admin_get(&self, id: u64, path: &str) -> std::io::Result<http::Response> {
        http::get(self.node(id).admin_port, path)
    }

    /// Node `id`'s `/status` as JSON, if it answered 200 with valid JSON.
    pub fn status_json(&self, id: u64) -> Option<serde_json::Value> {
        let response = self.admin_get(id, "/status").ok()?;
        (response.status == 200).then(|| serde_json::from_str(&response.body).ok())?
    }

    /// Asserts that every key `key-{i}` of `keys` holds `i`, read through node `reader` (MGET, linearizable).
    pub fn assert_all_present(&self, reader: u64, keys: &[u64]) {
        let mut connection = self.connect(reader).unwrap();
        for chunk in keys.chunks(100) {
            let names: Vec<String> = chunk.iter().map(|i| format!("key-{i}")).collect();
            let values: Vec<Option<u64>> = redis::cmd("MGET").arg(&names).query(&mut connection).unwrap();
            for (i, value) in chunk.iter().zip(values) {
                assert_eq!(value, Some(*i), "acknowledged write key-{i} read through node {reader}");
            }
        }
    }

    pub fn commit_index(&self, id: u64) -> u64 {
        self.info_field(id, "commit_index").and_then(|v| v.parse().ok()).unwrap_or(0)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                signal(&child, libc::SIGCONT);
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if std::thread::panicking() {
            for node in &self.nodes {
                let log = std::fs::read_to_string(self.dir.join(format!("node-{}.log", node.id)))
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                eprintln!("--- node {} log (last lines) ---", node.id);
                for line in tail.into_iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn signal(child: &Child, signal_number: i32) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as libc::pid_t, signal_number) };
}

/// Polls `done` every 50 ms until it holds; panics naming `what` after `bound`.
pub fn wait_until(bound: Duration, mut done: impl FnMut() -> bool, what: impl Fn() -> String) {
    let deadline = Instant::now() + bound;
    while !done() {
        assert!(Instant::now() < deadline, "waited {bound:?} for {}", what());
        std::thread::sleep(Duration::from_millis(50));
    }
}
