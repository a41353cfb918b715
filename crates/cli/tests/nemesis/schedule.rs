//! The nemesis: from one seeded generator, every one to four seconds, one fault or one repair — kill -9 a
//! node, restart a dead one, pause one (SIGSTOP), resume one (SIGCONT), split the cluster in two, heal
//! the split, or make a zombie leader (pause the leader, cut it off, wake it). About a third of the
//! kills, pauses and splits aim at the current leader, where faults hurt most. At most two nodes are dead
//! or paused at once, so a majority is often (not always: a split can cut it further) able to make
//! progress.
//!
//! Partitions use whichever means [`Partitions`] was given: network namespaces (a blackhole route per cut
//! link), or the nodes' test-only fault switch (`POST /fault/drop-peers`, feature `fault-injection`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use crate::harness::netns::TestNetwork;
use crate::harness::{http, Cluster};
use crate::workload::Recorder;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Nodes dead or paused at once, at most.
const MAX_DOWN: usize = 2;
/// How long a zombie leader sleeps before it is cut off and woken: several election timeouts (300 ms
/// minimum in the harness), so that the others have elected a new leader.
const ZOMBIE_PAUSE: Duration = Duration::from_secs(2);
/// How long a fault-switch request may take (the node is running and not paused when asked).
const SWITCH_TIMEOUT: Duration = Duration::from_secs(3);

/// How the nemesis cuts the network.
pub enum Partitions {
    /// Each node in its own network namespace; links cut with blackhole routes.
    Namespaces(TestNetwork),
    /// The nodes' own test-only switch: which peers each node drops messages to and from.
    Switch { dropped: BTreeMap<u64, BTreeSet<u64>> },
    /// Neither is available: kills and pauses only.
    Off(String),
}

impl Partitions {
    pub fn describe(&self) -> String {
        match self {
            Partitions::Namespaces(_) => {
                "network namespaces (a blackhole route in each namespace per cut link)".to_string()
            }
            Partitions::Switch { .. } => {
                "the test-only fault switch on the peer transport (POST /fault/drop-peers)".to_string()
            }
            Partitions::Off(why) => format!("none ({why}): the nemesis only kills and pauses"),
        }
    }

    fn available(&self) -> bool {
        !matches!(self, Partitions::Off(_))
    }

    /// Cuts every link between `side` and the other nodes. `reachable` nodes are told at once; the
    /// others (dead or paused) when they come back, through [`Partitions::reapply`].
    fn split(&mut self, cluster: &Cluster, side: &BTreeSet<u64>, reachable: &BTreeSet<u64>) {
        let all: Vec<u64> = cluster.nodes.iter().map(|n| n.id).collect();
        let other: Vec<u64> = all.iter().copied().filter(|id| !side.contains(id)).collect();
        match self {
            Partitions::Namespaces(network) => {
                for &a in side {
                    for &b in &other {
                        network.cut(a, b).unwrap_or_else(|e| panic!("cutting {a}-{b}: {e}"));
                    }
                }
            }
            Partitions::Switch { dropped } => {
                for &a in side {
                    for &b in &other {
                        dropped.entry(a).or_default().insert(b);
                        dropped.entry(b).or_default().insert(a);
                    }
                }
                for &id in reachable {
                    tell_switch(cluster, id, dropped.get(&id));
                }
            }
            Partitions::Off(_) => {}
        }
    }

    fn heal(&mut self, cluster: &Cluster, reachable: &BTreeSet<u64>) {
        match self {
            Partitions::Namespaces(network) => network.heal().unwrap_or_else(|e| panic!("healing: {e}")),
            Partitions::Switch { dropped } => {
                dropped.clear();
                for &id in reachable {
                    tell_switch(cluster, id, None);
                }
            }
            Partitions::Off(_) => {}
        }
    }

    /// Node `id` is running again (restarted, or resumed): make its switch match the partition in force.
    fn reapply(&self, cluster: &Cluster, id: u64) {
        if let Partitions::Switch { dropped } = self {
            tell_switch(cluster, id, dropped.get(&id));
        }
    }
}

/// Sets node `id`'s fault switch to drop `peers` (none: heal).
fn tell_switch(cluster: &Cluster, id: u64, peers: Option<&BTreeSet<u64>>) {
    let body: Vec<String> = peers.into_iter().flatten().map(|p| p.to_string()).collect();
    let port = cluster.node(id).admin_port;
    let response = http::post(port, "/fault/drop-peers", &body.join(","), SWITCH_TIMEOUT)
        .unwrap_or_else(|e| panic!("telling node {id} to drop {body:?}: {e}"));
    assert_eq!(response.status, 200, "node {id}'s fault switch: {}", response.body);
}

/// The fault schedule and what is broken right now.
pub struct Nemesis {
    rng: ChaCha8Rng,
    pub partitions: Partitions,
    dead: BTreeSet<u64>,
    paused: BTreeSet<u64>,
    split: Option<BTreeSet<u64>>,
    /// Faults and repairs done, by name.
    pub counts: BTreeMap<&'static str, u64>,
}

impl Nemesis {
    pub fn new(seed: u64, partitions: Partitions) -> Nemesis {
        Nemesis {
            rng: ChaCha8Rng::seed_from_u64(seed),
            partitions,
            dead: BTreeSet::new(),
            paused: BTreeSet::new(),
            split: None,
            counts: BTreeMap::new(),
        }
    }

    /// How long to wait before the next step: one to four seconds.
    pub fn next_pause(&mut self) -> Duration {
        Duration::from_millis(self.rng.gen_range(1_000..4_000))
    }

    /// Does one fault or one repair, drawn from the seed.
    pub fn step(&mut self, cluster: &mut Cluster, recorder: &Mutex<Recorder>) {
        let all: Vec<u64> = cluster.nodes.iter().map(|n| n.id).collect();
        let up: Vec<u64> =
            all.iter().copied().filter(|id| !self.dead.contains(id) && !self.paused.contains(id)).collect();
        let mut choices: Vec<&'static str> = Vec::new();
        if self.dead.len() + self.paused.len() < MAX_DOWN {
            choices.extend(["kill", "pause"]);
        }
        if !self.dead.is_empty() {
            choices.push("restart");
        }
        if !self.paused.is_empty() {
            choices.push("resume");
        }
        if self.partitions.available() {
            choices.push(if self.split.is_some() { "heal" } else { "partition" });
            if self.split.is_none() && self.dead.len() + self.paused.len() < MAX_DOWN {
                choices.push("zombie");
            }
        }
        let action =
            *choices.choose(&mut self.rng).expect("restart, resume or a new fault is always possible");
        // Drawn whether used or not, so one seed gives one schedule of choices.
        let at_leader = self.rng.gen_bool(0.33);
        let leader = if at_leader { self.leader(cluster, &up) } else { None };
        match action {
            "kill" => {
                let id = leader.unwrap_or_else(|| self.pick(&up));
                self.note(recorder, "kill", id, leader.is_some());
                cluster.kill(id);
                self.paused.remove(&id);
                self.dead.insert(id);
            }
            "pause" => {
                let id = leader.unwrap_or_else(|| self.pick(&up));
                self.note(recorder, "pause", id, leader.is_some());
                cluster.signal(id, libc::SIGSTOP);
                self.paused.insert(id);
            }
            "restart" => {
                let id = self.pick(&self.dead.iter().copied().collect::<Vec<_>>());
                self.note(recorder, "restart", id, false);
                cluster.start_node(id, false);
                self.dead.remove(&id);
                self.partitions.reapply(cluster, id);
            }
            "resume" => {
                let id = self.pick(&self.paused.iter().copied().collect::<Vec<_>>());
                self.note(recorder, "resume", id, false);
                cluster.signal(id, libc::SIGCONT);
                self.paused.remove(&id);
                self.partitions.reapply(cluster, id);
            }
            "partition" => {
                let side = match leader {
                    Some(leader) => BTreeSet::from([leader]),
                    None => self.minority(&all),
                };
                self.log(recorder, "partition", &format!("{side:?} | the rest"), leader.is_some());
                let reachable = self.reachable(&all);
                self.partitions.split(cluster, &side, &reachable);
                self.split = Some(side);
            }
            "zombie" => self.zombie_leader(cluster, recorder, &up, &all),
            "heal" => {
                self.log(recorder, "heal", "every link", false);
                let reachable = self.reachable(&all);
                self.partitions.heal(cluster, &reachable);
                self.split = None;
            }
            other => unreachable!("no action {other}"),
        }
    }

    /// A leader that wakes from a long pause behind a partition: its ticks stopped while it was paused, so
    /// it still believes it leads, while the others have elected another leader and go on writing. Until
    /// its check-quorum steps it down (§6.2), it must serve no read (ReadIndex, dissertation §6.4) and
    /// commit nothing. It is cut off as soon as it is paused, so that no message of the new leader waits
    /// in its socket buffers to tell it the news when it wakes.
    fn zombie_leader(&mut self, cluster: &Cluster, recorder: &Mutex<Recorder>, up: &[u64], all: &[u64]) {
        let Some(id) = self.leader(cluster, up) else { return };
        self.log(recorder, "zombie", &format!("node {id}: pause it, cut it off, wake it"), true);
        cluster.signal(id, libc::SIGSTOP);
        self.paused.insert(id);
        let side = BTreeSet::from([id]);
        let reachable = self.reachable(all);
        self.partitions.split(cluster, &side, &reachable);
        self.split = Some(side);
        std::thread::sleep(ZOMBIE_PAUSE);
        cluster.signal(id, libc::SIGCONT);
        self.paused.remove(&id);
        self.partitions.reapply(cluster, id);
    }

    /// Ends every fault: resumes paused nodes, restarts dead ones, heals the network.
    pub fn heal_all(&mut self, cluster: &mut Cluster, recorder: &Mutex<Recorder>) {
        for id in std::mem::take(&mut self.paused) {
            self.note(recorder, "resume", id, false);
            cluster.signal(id, libc::SIGCONT);
        }
        for id in std::mem::take(&mut self.dead) {
            self.note(recorder, "restart", id, false);
            cluster.start_node(id, false);
        }
        if self.split.take().is_some() {
            self.log(recorder, "heal", "every link", false);
        }
        let all: BTreeSet<u64> = cluster.nodes.iter().map(|n| n.id).collect();
        self.partitions.heal(cluster, &all);
    }

    /// The node that says it leads, among `up` (a cut-off old leader may still say so: that is fine).
    fn leader(&self, cluster: &Cluster, up: &[u64]) -> Option<u64> {
        up.iter().copied().find(|&id| cluster.info_field(id, "role").as_deref() == Some("leader"))
    }

    /// One or two nodes, drawn from the seed.
    fn minority(&mut self, all: &[u64]) -> BTreeSet<u64> {
        let size = self.rng.gen_range(1..=2);
        let mut side = BTreeSet::new();
        while side.len() < size {
            side.insert(self.pick(all));
        }
        side
    }

    /// One of `ids`, which is never empty: at most two nodes of five are ever dead or paused.
    fn pick(&mut self, ids: &[u64]) -> u64 {
        *ids.choose(&mut self.rng).expect("a node to choose from")
    }

    fn reachable(&self, all: &[u64]) -> BTreeSet<u64> {
        all.iter().copied().filter(|id| !self.dead.contains(id) && !self.paused.contains(id)).collect()
    }

    fn note(&mut self, recorder: &Mutex<Recorder>, action: &'static str, id: u64, at_leader: bool) {
        self.log(recorder, action, &format!("node {id}"), at_leader);
    }

    fn log(&mut self, recorder: &Mutex<Recorder>, action: &'static str, what: &str, at_leader: bool) {
        *self.counts.entry(action).or_default() += 1;
        let aim = if at_leader { " (the leader)" } else { "" };
        let mut recorder = recorder.lock().unwrap();
        println!("[{:7.1}s] nemesis: {action} {what}{aim}", recorder.elapsed().as_secs_f64());
        recorder.nemesis(action, &format!("{what}{aim}"));
    }
}
