//! A cluster of real `raftkv serve` processes for tests: free ports, short timings, a temp folder, and a
//! guard that kills every child and removes the folder on drop (also when a test fails).

#![allow(dead_code)]

pub mod browser;
pub mod clients;
pub mod http;
pub mod local;
pub mod netns;
pub mod raw;

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
    /// The address the node listens on: 127.0.0.1, or its own address in its network namespace.
    pub host: String,
    /// The network namespace the node runs in (`ip netns exec`), if any.
    pub netns: Option<String>,
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

    /// As [`Cluster::start_with_args`], with another minimum election timeout.
    pub fn start_with_timeout_and_args(
        name: &str,
        n: usize,
        election_timeout_ms: u64,
        extra_args: &[&str],
    ) -> Cluster {
        let extra_args = extra_args.iter().map(|a| a.to_string()).collect();
        let cluster = Cluster::start_nodes_with(name, n, election_timeout_ms, true, extra_args);
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
        let mut cluster = Cluster::prepare_with(name, n, election_timeout_ms, extra_args);
        for id in 1..=n as u64 {
            cluster.start_node(id, bootstrap);
        }
        cluster
    }

    /// Picks ports and a folder for `n` nodes and starts none of them (their data directories, under
    /// `dir/node-N`, do not exist yet): for tests that seed the directories first, as `raftkv restore`.
    pub fn prepare(name: &str, n: usize) -> Cluster {
        Cluster::prepare_with(name, n, ELECTION_TIMEOUT_MS, Vec::new())
    }

    fn prepare_with(name: &str, n: usize, election_timeout_ms: u64, extra_args: Vec<String>) -> Cluster {
        let serial = ONE_CLUSTER_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        let ports = free_ports(3 * n);
        let nodes = (0..n)
            .map(|i| NodeProcess {
                id: i as u64 + 1,
                host: "127.0.0.1".to_string(),
                netns: None,
                client_port: ports[i],
                peer_port: ports[n + i],
                admin_port: ports[2 * n + i],
                child: None,
            })
            .collect();
        Cluster::with_nodes(serial, name, nodes, election_timeout_ms, extra_args)
    }

    /// A view of nodes that another process runs (`raftkv local`): `ports` gives node N's client, peer
    /// and admin port; no children, so dropping it only removes the folder.
    pub fn for_ports(name: &str, n: u64, ports: impl Fn(u64) -> (u16, u16, u16)) -> Cluster {
        let serial = ONE_CLUSTER_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        let mut cluster = Cluster::with_nodes(serial, name, Vec::new(), ELECTION_TIMEOUT_MS, Vec::new());
        for id in 1..=n {
            cluster.push_node_at(ports(id));
        }
        cluster
    }

    /// Records one more node, at the given (client, peer, admin) ports; starts nothing.
    pub fn push_node_at(&mut self, (client_port, peer_port, admin_port): (u16, u16, u16)) -> u64 {
        let id = self.nodes.len() as u64 + 1;
        let host = "127.0.0.1".to_string();
        self.nodes.push(NodeProcess {
            id,
            host,
            netns: None,
            client_port,
            peer_port,
            admin_port,
            child: None,
        });
        id
    }

    /// Starts one bootstrapped node in each of `hosts` (an address and the network namespace that has it),
    /// every node with `extra_args`, and waits for a leader. Each namespace has its own ports, so every
    /// node uses the same three.
    pub fn start_in_namespaces(name: &str, hosts: &[(String, String)], extra_args: &[&str]) -> Cluster {
        let serial = ONE_CLUSTER_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        let nodes = hosts
            .iter()
            .enumerate()
            .map(|(i, (host, netns))| NodeProcess {
                id: i as u64 + 1,
                host: host.clone(),
                netns: Some(netns.clone()),
                client_port: 7001,
                peer_port: 7101,
                admin_port: 7201,
                child: None,
            })
            .collect();
        let extra_args = extra_args.iter().map(|a| a.to_string()).collect();
        let mut cluster = Cluster::with_nodes(serial, name, nodes, ELECTION_TIMEOUT_MS, extra_args);
        for id in 1..=hosts.len() as u64 {
            cluster.start_node(id, true);
        }
        cluster.wait_for_leader(LEADER_BOUND);
        cluster
    }

    /// A fresh temp folder for `nodes`, none of them started.
    fn with_nodes(
        serial: MutexGuard<'static, ()>,
        name: &str,
        nodes: Vec<NodeProcess>,
        election_timeout_ms: u64,
        extra_args: Vec<String>,
    ) -> Cluster {
        let dir = std::env::temp_dir().join(format!("raftkv-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Cluster { _serial: serial, dir, cluster_id: 77, nodes, election_timeout_ms, extra_args }
    }

    /// Every member as `--member` takes it: `id=peer,client,admin`.
    pub fn member_flags(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| {
                let host = &n.host;
                format!("{}={host}:{},{host}:{},{host}:{}", n.id, n.peer_port, n.client_port, n.admin_port)
            })
            .collect()
    }

    /// Node `id`'s data directory.
    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.dir.join(format!("node-{id}"))
    }

    pub fn node(&self, id: u64) -> &NodeProcess {
        &self.nodes[id as usize - 1]
    }

    pub fn start_node(&mut self, id: u64, bootstrap: bool) {
        let flags: Vec<String> = if bootstrap { vec!["--bootstrap".into()] } else { Vec::new() };
        self.spawn_node(id, true, &flags);
    }

    /// Starts node `id` from [`Cluster::command_for`] and waits until it accepts clients.
    fn spawn_node(&mut self, id: u64, with_members: bool, flags: &[String]) {
        let child = self.command_for(id, with_members, flags).spawn().expect("starting raftkv serve");
        self.nodes[id as usize - 1].child = Some(child);
        wait_until(
            Duration::from_secs(20),
            || self.connect(id).is_ok(),
            || format!("node {id} to accept clients"),
        );
    }

    /// The `raftkv serve` command line of node `id`, logging to `node-<id>.log` (not started).
    pub fn serve_command(&self, id: u64, bootstrap: bool) -> Command {
        let flags: Vec<String> = if bootstrap { vec!["--bootstrap".into()] } else { Vec::new() };
        self.command_for(id, true, &flags)
    }

    /// Node `id`'s `raftkv serve` command: with a `--member` flag per node so far if `with_members`,
    /// plus `flags`.
    fn command_for(&self, id: u64, with_members: bool, flags: &[String]) -> Command {
        let members = if with_members { self.member_flags() } else { Vec::new() };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("node-{id}.log")))
            .unwrap();
        let node = &self.nodes[id as usize - 1];
        let host = &node.host;
        let mut command = match &node.netns {
            // `ip netns exec` enters the namespace and then execs raftkv: the child's pid is raftkv's.
            Some(netns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", netns, env!("CARGO_BIN_EXE_raftkv")]);
                command
            }
            None => Command::new(env!("CARGO_BIN_EXE_raftkv")),
        };
        command
            .arg("serve")
            .args(["--node-id", &id.to_string(), "--cluster-id", &self.cluster_id.to_string()])
            .arg("--data-dir")
            .arg(self.data_dir(id))
            .args(["--client-listen", &format!("{host}:{}", node.client_port)])
            .args(["--peer-listen", &format!("{host}:{}", node.peer_port)])
            .args(["--admin-listen", &format!("{host}:{}", node.admin_port)])
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
        command
    }

    /// Node `id`'s process id, while it runs.
    pub fn pid(&self, id: u64) -> u32 {
        self.node(id).child.as_ref().expect("node is running").id()
    }

    /// Node `id`'s `/metrics` page.
    pub fn metrics(&self, id: u64) -> String {
        let response = self.admin_get(id, "/metrics").expect("GET /metrics");
        assert_eq!(response.status, 200, "{}", response.body);
        response.body
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
        self.push_node_at((ports[0], ports[1], ports[2]))
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
        wait_for_exit(&mut child, Duration::from_secs(15), || format!("node {id} to stop after SIGTERM"))
    }

    /// Waits until node `id` has no client connection open (the harness's own, from waiting for a
    /// leader, close a moment after they are dropped).
    pub fn wait_for_no_clients(&self, id: u64) {
        wait_until(
            Duration::from_secs(10),
            || metric(&self.metrics(id), "raftkv_client_connections") == 0.0,
            || format!("node {id}'s client connections to close"),
        );
    }

    pub fn signal(&self, id: u64, signal_number: i32) {
        signal(self.node(id).child.as_ref().expect("node is running"), signal_number);
    }

    pub fn is_running(&self, id: u64) -> bool {
        self.node(id).child.is_some()
    }

    pub fn connect(&self, id: u64) -> redis::RedisResult<redis::Connection> {
        let node = self.node(id);
        let client = redis::Client::open(format!("redis://{}:{}/", node.host, node.client_port))?;
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
        let node = self.node(id);
        http::get_from(&node.host, node.admin_port, path)
    }

    /// Node `id`'s `/status` as JSON, if it answered 200 with valid JSON.
    pub fn status_json(&self, id: u64) -> Option<serde_json::Value> {
        let response = self.admin_get(id, "/status").ok()?;
        (response.status == 200).then(|| serde_json::from_str(&response.body).ok())?
    }

    /// Runs `raftkv ARGS --node <node via's client address>`; its stdout, or a panic with its stderr.
    pub fn raftkv(&self, via: u64, args: &[&str]) -> String {
        let output = Command::new(env!("CARGO_BIN_EXE_raftkv"))
            .args(args)
            .args(["--node", &self.client_addr(via)])
            .output()
            .expect("running raftkv");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "raftkv {args:?} via node {via} failed: {}{stdout}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }

    /// The voters in node `id`'s `/status` (the incoming ones during a joint change).
    pub fn voters(&self, id: u64) -> Vec<u64> {
        let status = self.status_json(id).expect("a /status answer");
        let voters = status["configuration"]["voters"].as_array().expect("configuration.voters").clone();
        voters.iter().map(|v| v.as_u64().unwrap()).collect()
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

impl Cluster {
    /// Writes `key-0 .. key-{count}` (value = the number) in MSETs of `keys_per_write` through the leader,
    /// retrying a batch that failed (MSET is idempotent).
    pub fn write_keys(&self, count: usize, keys_per_write: usize) {
        let deadline = Instant::now() + Duration::from_secs(300);
        let mut start = 0;
        while start < count {
            assert!(Instant::now() < deadline, "only {start} of {count} keys written in 300 s");
            let leader = self.wait_for_leader(LEADER_BOUND);
            let Ok(mut connection) = self.connect(leader) else { continue };
            let mut command = redis::cmd("MSET");
            for i in start..(start + keys_per_write).min(count) {
                command.arg(format!("key-{i}")).arg(i);
            }
            if command.query::<()>(&mut connection).is_ok() {
                start += keys_per_write;
            } else {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Node `id`'s own state machine (stale reads, not what a leader would answer) holds every key that
    /// [`Cluster::write_keys`] wrote.
    pub fn assert_serves_every_key(&self, id: u64, count: usize) {
        let mut connection = self.connect(id).unwrap();
        let _: () = redis::cmd("READONLY").query(&mut connection).unwrap();
        for chunk_start in (0..count).step_by(500) {
            let names: Vec<String> =
                (chunk_start..(chunk_start + 500).min(count)).map(|i| format!("key-{i}")).collect();
            let values: Vec<Option<u64>> = redis::cmd("MGET").arg(&names).query(&mut connection).unwrap();
            for (offset, value) in values.into_iter().enumerate() {
                let i = chunk_start + offset;
                assert_eq!(value, Some(i as u64), "node {id} serves key-{i}");
            }
        }
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

/// Waits for `child` to exit; kills it and panics naming `what` after `bound`.
pub fn wait_for_exit(
    child: &mut Child,
    bound: Duration,
    what: impl Fn() -> String,
) -> std::process::ExitStatus {
    let deadline = Instant::now() + bound;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("waited {bound:?} for {}", what());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Raises this process's open-file limit to its hard maximum, for tests that open many connections.
pub fn raise_open_file_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: valid pointer to a local struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
}

/// The value of one series in a Prometheus text page (`name` with its labels, as printed), or 0 when it
/// is absent.
pub fn metric(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(0.0, |value| value.trim().parse().expect("a metric value"))
}

/// A process's resident set size in bytes, from /proc.
pub fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// Polls `done` every 50 ms until it holds; panics naming `what` after `bound`.
pub fn wait_until(bound: Duration, mut done: impl FnMut() -> bool, what: impl Fn() -> String) {
    let deadline = Instant::now() + bound;
    while !done() {
        assert!(Instant::now() < deadline, "waited {bound:?} for {}", what());
        std::thread::sleep(Duration::from_millis(50));
    }
}
