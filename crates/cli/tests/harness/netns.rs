//! Network namespaces as the tests' own hosts, so that a test can cut the network between nodes
//! (issue 8's fault-injection test). Each node gets a namespace `raftkv-test-<pid>-<n>` with one end of a
//! veth pair, addressed `10.213.<x>.<n>/24`; the other ends join a bridge in the test's own namespace,
//! which has `10.213.<x>.254`, so the test's clients reach every node. Nothing leaves the machine: the
//! subnet has no route elsewhere, and nothing is forwarded.
//!
//! A link is cut with a blackhole route to the other node's address inside each of the two namespaces
//! (no iptables needed); healing deletes the routes. Packets already in flight are lost, TCP retransmits
//! them after the heal, much as on a real network.
//!
//! Everything is made by `ip` (iproute2) and needs root. [`TestNetwork`] deletes its namespaces (which
//! deletes the veth pairs) and the bridge on drop, also when the test fails.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::process::Command;

/// Why network namespaces cannot be used here, or `None` if they can.
pub fn unavailable() -> Option<String> {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not running as root".into());
    }
    match Command::new("ip").args(["netns", "list"]).output() {
        Ok(output) if output.status.success() => None,
        Ok(output) => {
            Some(format!("`ip netns list` failed: {}", String::from_utf8_lossy(&output.stderr).trim()))
        }
        Err(error) => Some(format!("cannot run `ip` (iproute2): {error}")),
    }
}

/// Runs `ip ARGS`, or says which command failed and why.
fn ip(args: &[&str]) -> Result<(), String> {
    let output = Command::new("ip").args(args).output().map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim()))
    }
}

/// A bridge and one namespace per node; see the module docs.
pub struct TestNetwork {
    bridge: String,
    /// Namespace of node `i + 1` at index `i`.
    namespaces: Vec<String>,
    /// The first three octets of the subnet, e.g. `10.213.7`.
    subnet: String,
    /// Cut links, as (lower id, higher id).
    cut: BTreeSet<(u64, u64)>,
}

impl TestNetwork {
    /// Creates the bridge and `nodes` namespaces, each wired to the bridge.
    pub fn create(nodes: usize) -> Result<TestNetwork, String> {
        let pid = std::process::id();
        let subnet = free_subnet(pid)?;
        let mut network = TestNetwork {
            bridge: format!("rkvbr{}", pid % 10_000_000),
            namespaces: Vec::new(),
            subnet,
            cut: BTreeSet::new(),
        };
        // Left over from a killed run of a process with our pid: ours to replace.
        let _ = ip(&["link", "del", &network.bridge]);
        ip(&["link", "add", &network.bridge, "type", "bridge"])?;
        ip(&["addr", "add", &format!("{}.254/24", network.subnet), "dev", &network.bridge])?;
        ip(&["link", "set", &network.bridge, "up"])?;
        for n in 1..=nodes {
            let namespace = format!("raftkv-test-{pid}-{n}");
            let _ = ip(&["netns", "del", &namespace]);
            ip(&["netns", "add", &namespace])?;
            network.namespaces.push(namespace.clone());
            let outside = format!("rkv{}h{n}", pid % 10_000_000);
            let inside = format!("rkv{}n{n}", pid % 10_000_000);
            let _ = ip(&["link", "del", &outside]);
            ip(&["link", "add", &outside, "type", "veth", "peer", "name", &inside])?;
            ip(&["link", "set", &inside, "netns", &namespace])?;
            ip(&["link", "set", &outside, "master", &network.bridge])?;
            ip(&["link", "set", &outside, "up"])?;
            ip(&[
                "-n",
                &namespace,
                "addr",
                "add",
                &format!("{}/24", network.address(n as u64)),
                "dev",
                &inside,
            ])?;
            ip(&["-n", &namespace, "link", "set", &inside, "up"])?;
            ip(&["-n", &namespace, "link", "set", "lo", "up"])?;
        }
        Ok(network)
    }

    /// Node `id`'s address (ids from 1).
    pub fn address(&self, id: u64) -> String {
        format!("{}.{id}", self.subnet)
    }

    /// Every node's (address, namespace), in id order.
    pub fn hosts(&self) -> Vec<(String, String)> {
        (1..=self.namespaces.len() as u64)
            .map(|id| (self.address(id), self.namespace(id).to_string()))
            .collect()
    }

    pub fn namespace(&self, id: u64) -> &str {
        &self.namespaces[id as usize - 1]
    }

    /// Cuts the link between nodes `a` and `b`, both ways.
    pub fn cut(&mut self, a: u64, b: u64) -> Result<(), String> {
        let link = (a.min(b), a.max(b));
        if a == b || self.cut.contains(&link) {
            return Ok(());
        }
        ip(&["-n", self.namespace(a), "route", "add", "blackhole", &format!("{}/32", self.address(b))])?;
        ip(&["-n", self.namespace(b), "route", "add", "blackhole", &format!("{}/32", self.address(a))])?;
        self.cut.insert(link);
        Ok(())
    }

    /// Restores every cut link.
    pub fn heal(&mut self) -> Result<(), String> {
        while let Some((a, b)) = self.cut.pop_first() {
            ip(&["-n", self.namespace(a), "route", "del", "blackhole", &format!("{}/32", self.address(b))])?;
            ip(&["-n", self.namespace(b), "route", "del", "blackhole", &format!("{}/32", self.address(a))])?;
        }
        Ok(())
    }
}

impl Drop for TestNetwork {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth end inside it, and with it the pair.
        for namespace in &self.namespaces {
            if let Err(error) = ip(&["netns", "del", namespace]) {
                eprintln!("cleaning up: {error}");
            }
        }
        if let Err(error) = ip(&["link", "del", &self.bridge]) {
            eprintln!("cleaning up: {error}");
        }
    }
}

/// A `10.213.<x>` subnet no interface of this machine has an address in, chosen from our pid.
fn free_subnet(pid: u32) -> Result<String, String> {
    let output = Command::new("ip").args(["-4", "-o", "addr", "show"]).output().map_err(|e| e.to_string())?;
    let addresses = String::from_utf8_lossy(&output.stdout).into_owned();
    (0..250u32)
        .map(|i| format!("10.213.{}", (pid + i) % 250 + 1))
        .find(|subnet| !addresses.contains(&format!(" {subnet}.")))
        .ok_or_else(|| "every 10.213.x.0/24 subnet is in use on this machine".to_string())
}
