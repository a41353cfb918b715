//! A `raftkv local` cluster for tests: the supervisor process, driven as a user would (start, Ctrl-C,
//! `raftkv local add`, `raftkv local remove`), and a [`Cluster`] view of its nodes' ports for the
//! harness's queries. The supervisor owns the node processes; dropping this stops it (and so them) and
//! removes the folder.

use std::net::TcpListener;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::Duration;

use super::{wait_for_exit, wait_until, Cluster, ELECTION_TIMEOUT_MS, HEARTBEAT_MS, LEADER_BOUND};

/// Room for this many nodes' ports: `raftkv local add` takes the next ones in the scheme.
const MAX_NODES: u16 = 7;

pub struct LocalCluster {
    supervisor: Option<Child>,
    pub base_port: u16,
    /// Nodes removed with `raftkv local remove`: stopped for good.
    pub removed: Vec<u64>,
    /// Node N's ports, queried through the harness (`leader_among`, `connect`, `status_json`, ...).
    pub cluster: Cluster,
}

impl LocalCluster {
    /// `raftkv local --nodes N` in a fresh folder, with the harness's short timings; waits for a leader.
    pub fn start(name: &str, nodes: u64) -> LocalCluster {
        let base_port = free_base_port();
        let cluster = Cluster::for_ports(name, nodes, |id| ports(base_port, id));
        let mut local = LocalCluster { supervisor: None, base_port, removed: Vec::new(), cluster };
        local.resume();
        local
    }

    /// Starts `raftkv local` on the folder (again) and waits until every node it runs has a leader.
    pub fn resume(&mut self) {
        assert!(self.supervisor.is_none(), "raftkv local is running already");
        let nodes = self.first_nodes().to_string();
        let child = Command::new(env!("CARGO_BIN_EXE_raftkv"))
            .args(["local", "--nodes", &nodes, "--base-port", &self.base_port.to_string()])
            .args(["--admin-base-port", &(self.base_port + 200).to_string()])
            .args(["--election-timeout-ms", &ELECTION_TIMEOUT_MS.to_string()])
            .args(["--heartbeat-interval-ms", &HEARTBEAT_MS.to_string()])
            .arg("--dir")
            .arg(&self.cluster.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("starting raftkv local");
        self.supervisor = Some(child);
        let members = self.members();
        for &id in &members {
            wait_until(
                LEADER_BOUND,
                || self.cluster.connect(id).is_ok(),
                || format!("node {id} to accept clients"),
            );
        }
        self.wait_for_leader();
    }

    /// The nodes that run: every one so far but the removed ones.
    pub fn members(&self) -> Vec<u64> {
        self.cluster.nodes.iter().map(|n| n.id).filter(|id| !self.removed.contains(id)).collect()
    }

    /// Waits until every member agrees on a leader; its id.
    pub fn wait_for_leader(&self) -> u64 {
        let members = self.members();
        let mut found = None;
        wait_until(
            LEADER_BOUND,
            || {
                found = self.cluster.leader_among(&members);
                found.is_some()
            },
            || format!("a leader that every member of {members:?} agrees on"),
        );
        found.unwrap()
    }

    /// Ctrl-C to `raftkv local`; its exit status once it stopped every node.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.supervisor.take().expect("raftkv local is running");
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
        wait_for_exit(&mut child, Duration::from_secs(30), || "raftkv local to stop after Ctrl-C".into())
    }

    /// `raftkv ARGS --dir <the folder>`, as a user runs it next to the cluster.
    pub fn raftkv(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_raftkv"))
            .args(args)
            .arg("--dir")
            .arg(&self.cluster.dir)
            .output()
            .expect("running raftkv")
    }

    /// `raftkv local add [--learner]`: the new node's id, from what it printed.
    pub fn add(&mut self, learner: bool) -> u64 {
        let mut args = vec!["local", "add"];
        if learner {
            args.push("--learner");
        }
        let output = self.raftkv(&args);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "raftkv {args:?}: {}{stdout}",
            String::from_utf8_lossy(&output.stderr)
        );
        let id: u64 = stdout
            .strip_prefix("Added node ")
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("no \"Added node N\" in: {stdout}"));
        self.know_nodes_up_to(id);
        id
    }

    /// Makes the view hold nodes 1..=id (an `add` run by someone else took an id).
    pub fn know_nodes_up_to(&mut self, id: u64) {
        while (self.cluster.nodes.len() as u64) < id {
            let next = self.cluster.nodes.len() as u64 + 1;
            self.cluster.push_node_at(ports(self.base_port, next));
        }
    }

    /// `raftkv local remove ID`; what it printed.
    pub fn remove(&mut self, id: u64) -> String {
        let output = self.raftkv(&["local", "remove", &id.to_string()]);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "raftkv local remove {id}: {}{stdout}",
            String::from_utf8_lossy(&output.stderr)
        );
        self.removed.push(id);
        stdout
    }

    /// The node count `raftkv local` was created with (`--nodes`).
    fn first_nodes(&self) -> u64 {
        let text = std::fs::read_to_string(self.cluster.dir.join("local.toml")).unwrap_or_default();
        text.lines()
            .find_map(|line| line.strip_prefix("nodes = "))
            .and_then(|n| n.parse().ok())
            .unwrap_or(self.cluster.nodes.len() as u64)
    }

    /// Client ports of node ids 1..=MAX_NODES, running or not: clients skip the ones that refuse.
    pub fn every_client_port(&self) -> Vec<u16> {
        (1..=u64::from(MAX_NODES)).map(|id| ports(self.base_port, id).0).collect()
    }
}

impl Drop for LocalCluster {
    /// Ctrl-C to `raftkv local` (it stops its nodes), SIGKILL if it has not exited within 30 s (its
    /// nodes then get the parent-death signal). Never panics: it also runs while a test unwinds.
    fn drop(&mut self) {
        let Some(mut child) = self.supervisor.take() else { return };
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while matches!(child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Node `id`'s (client, peer, admin) ports in `raftkv local`'s scheme, the admin base at base + 200.
pub fn ports(base_port: u16, id: u64) -> (u16, u16, u16) {
    let offset = id as u16 - 1;
    (base_port + offset, base_port + 100 + offset, base_port + 200 + offset)
}

/// A base port whose client, peer and admin ranges for [`MAX_NODES`] nodes are free right now. It is
/// drawn below Linux's ephemeral range (32768 and up), where outgoing connections — other tests' clients
/// on this shared machine — would take ports out from under a node between this check and its bind.
pub fn free_base_port() -> u16 {
    const LOWEST: u32 = 20_000;
    const SPAN: u32 = 32_768 - 300 - LOWEST;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let start = nanos ^ std::process::id().wrapping_mul(2_654_435_761);
    for attempt in 0..200u32 {
        let base = (LOWEST + start.wrapping_add(attempt.wrapping_mul(7_919)) % SPAN) as u16;
        let held: Vec<_> = (1..=u64::from(MAX_NODES))
            .map(|id| ports(base, id))
            .flat_map(|(client, peer, admin)| [client, peer, admin])
            .map(|port| TcpListener::bind(("127.0.0.1", port)))
            .collect();
        if held.iter().all(Result::is_ok) {
            return base;
        }
    }
    panic!("no free port range found");
}
