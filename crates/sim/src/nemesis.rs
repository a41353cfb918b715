//! The nemesis: turns a run's fault rates into concrete faults at concrete times, and undoes each one
//! after a while (heal a partition, restart a crashed node, resume a paused one).
//!
//! Faults arrive as Poisson processes: the gap to the next fault of a class is drawn from an exponential
//! distribution with that class's rate, so the world can jump straight to the next interesting instant
//! instead of polling every millisecond. Every draw comes from the nemesis's own seeded stream.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use raft::NodeId;
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::network::TimeUs;
use crate::swarm::{FaultSettings, LEADER_CRASH_WITHIN_US};

/// How long a fault lasts before it is undone, in microseconds: long enough to outlast several election
/// timeouts (so leaders change under it), short enough that a run sees many faults.
const MIN_FAULT_US: TimeUs = 50_000;
const MAX_FAULT_US: TimeUs = 3_000_000;

/// One thing the nemesis does to the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultAction {
    /// Cut every link between the two sides, both ways.
    Partition { side_a: Vec<NodeId>, side_b: Vec<NodeId> },
    /// Cut one direction of one link.
    CutOneWay { from: NodeId, to: NodeId },
    /// Two sides that only `bridge` connects.
    Bridge { side_a: Vec<NodeId>, bridge: NodeId, side_b: Vec<NodeId> },
    /// Extra latency on one link until the given time.
    Clog { from: NodeId, to: NodeId, extra_us: TimeUs, until: TimeUs },
    /// Restore every link.
    Heal,
    /// The node's process dies; what its disk had not synced is lost or torn.
    Crash(NodeId),
    /// The power fails at one of the node's next few disk operations: in the middle of a step, after the
    /// node may have sent messages and before its write is durable. Then as `Crash`.
    PowerLoss(NodeId),
    /// The node restarts from its disk.
    Restart(NodeId),
    /// The node stops ticking and receiving (SIGSTOP, a long GC pause, a VM migration).
    Pause(NodeId),
    /// The node continues with whatever stale beliefs it had.
    Resume(NodeId),
}

impl fmt::Display for FaultAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultAction::Partition { side_a, side_b } => write!(f, "partition {side_a:?} | {side_b:?}"),
            FaultAction::CutOneWay { from, to } => write!(f, "cut {from} -> {to}"),
            FaultAction::Bridge { side_a, bridge, side_b } => {
                write!(f, "bridge {side_a:?} <{bridge}> {side_b:?}")
            }
            FaultAction::Clog { from, to, extra_us, until } => {
                write!(f, "clog {from} -> {to} +{extra_us}us until {until}")
            }
            FaultAction::Heal => write!(f, "heal"),
            FaultAction::Crash(node) => write!(f, "crash {node}"),
            FaultAction::PowerLoss(node) => write!(f, "power loss {node}"),
            FaultAction::Restart(node) => write!(f, "restart {node}"),
            FaultAction::Pause(node) => write!(f, "pause {node}"),
            FaultAction::Resume(node) => write!(f, "resume {node}"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum FaultClass {
    Partition,
    Clog,
    Crash,
    Pause,
}

/// The fault scheduler of one run.
pub struct Nemesis {
    rng: ChaCha8Rng,
    nodes: Vec<NodeId>,
    rates_per_us: BTreeMap<FaultClass, f64>,
    /// When each active class fires next.
    next_fault_at: BTreeMap<FaultClass, TimeUs>,
    /// Undo actions, by due time and then insertion order.
    undo_at: BTreeMap<(TimeUs, u64), FaultAction>,
    undo_sequence: u64,
    /// Nodes currently crashed or paused: the nemesis does not fault them again until they are back.
    unavailable: BTreeSet<NodeId>,
    partitioned: bool,
    enabled: bool,
    /// The chance that a node that just won an election is crashed soon after.
    leader_crash: f64,
    /// Crashes aimed at new leaders, by due time and then insertion order.
    leader_crash_at: BTreeMap<(TimeUs, u64), NodeId>,
}

impl Nemesis {
    pub fn new(settings: &FaultSettings, nodes: Vec<NodeId>, rng: ChaCha8Rng, now: TimeUs) -> Self {
        let per_us = |per_ms: f64| per_ms / 1_000.0;
        let rates_per_us: BTreeMap<FaultClass, f64> = [
            (FaultClass::Partition, per_us(settings.partition_per_ms)),
            (FaultClass::Clog, per_us(settings.clog_per_ms)),
            (FaultClass::Crash, per_us(settings.crash_per_ms)),
            (FaultClass::Pause, per_us(settings.pause_per_ms)),
        ]
        .into_iter()
        .filter(|&(_, rate)| rate > 0.0)
        .collect();
        let mut nemesis = Nemesis {
            rng,
            nodes,
            rates_per_us,
            next_fault_at: BTreeMap::new(),
            undo_at: BTreeMap::new(),
            undo_sequence: 0,
            unavailable: BTreeSet::new(),
            partitioned: false,
            enabled: true,
            leader_crash: settings.leader_crash,
            leader_crash_at: BTreeMap::new(),
        };
        let classes: Vec<FaultClass> = nemesis.rates_per_us.keys().copied().collect();
        for class in classes {
            nemesis.schedule(class, now);
        }
        nemesis
    }

    fn schedule(&mut self, class: FaultClass, now: TimeUs) {
        let rate = self.rates_per_us[&class];
        let uniform: f64 = self.rng.gen_range(f64::EPSILON..1.0);
        let gap = (-uniform.ln() / rate).min(1e15) as TimeUs;
        self.next_fault_at.insert(class, now + gap.max(1));
    }

    /// Told by the world each time a node takes office as leader: with the run's `leader_crash`
    /// probability, that node crashes at a random instant of its first [`LEADER_CRASH_WITHIN_US`].
    pub fn on_new_leader(&mut self, leader: NodeId, now: TimeUs) {
        if !self.enabled || self.leader_crash <= 0.0 || !self.rng.gen_bool(self.leader_crash) {
            return;
        }
        let at = now + self.rng.gen_range(0..=LEADER_CRASH_WITHIN_US);
        self.leader_crash_at.insert((at, self.undo_sequence), leader);
        self.undo_sequence += 1;
    }

    /// The time of the next fault or undo, if any.
    pub fn next_event_at(&self) -> Option<TimeUs> {
        let next_fault = if self.enabled {
            let aimed = self.leader_crash_at.keys().next().map(|&(at, _)| at);
            self.next_fault_at.values().copied().chain(aimed).min()
        } else {
            None
        };
        let next_undo = self.undo_at.keys().next().map(|&(at, _)| at);
        match (next_fault, next_undo) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Every action due at or before `now`, in order.
    pub fn poll(&mut self, now: TimeUs) -> Vec<FaultAction> {
        let mut actions = Vec::new();
        while let Some((&key, _)) = self.undo_at.iter().next().filter(|(&(at, _), _)| at <= now) {
            let action = self.undo_at.remove(&key).expect("key was just read");
            self.note_undone(&action);
            actions.push(action);
        }
        if !self.enabled {
            return actions;
        }
        while let Some((&key, _)) = self.leader_crash_at.iter().next().filter(|(&(at, _), _)| at <= now) {
            let leader = self.leader_crash_at.remove(&key).expect("key was just read");
            // Half of the time the leader is cut off instead: that also drops what it has in flight.
            if self.can_partition() && self.rng.gen_bool(0.5) {
                self.heal_later(now);
                let side_b = self.nodes.iter().copied().filter(|&n| n != leader).collect();
                actions.push(FaultAction::Partition { side_a: vec![leader], side_b });
            } else if let Some(action) = self.crash_node(leader, now) {
                actions.push(action);
            }
        }
        let due: Vec<FaultClass> =
            self.next_fault_at.iter().filter(|(_, &at)| at <= now).map(|(&class, _)| class).collect();
        for class in due {
            if let Some(action) = self.fire(class, now) {
                actions.push(action);
            }
            self.schedule(class, now);
        }
        actions
    }

    fn note_undone(&mut self, action: &FaultAction) {
        match action {
            FaultAction::Heal => self.partitioned = false,
            FaultAction::Restart(node) | FaultAction::Resume(node) => {
                self.unavailable.remove(node);
            }
            _ => {}
        }
    }

    fn undo_later(&mut self, now: TimeUs, action: FaultAction) -> TimeUs {
        let until = now + self.rng.gen_range(MIN_FAULT_US..=MAX_FAULT_US);
        self.undo_at.insert((until, self.undo_sequence), action);
        self.undo_sequence += 1;
        until
    }

    /// One partition at a time, and only where there are two nodes to separate.
    fn can_partition(&self) -> bool {
        !self.partitioned && self.nodes.len() > 1
    }

    /// Marks a partition as in force and schedules the heal that ends it.
    fn heal_later(&mut self, now: TimeUs) {
        self.partitioned = true;
        self.undo_later(now, FaultAction::Heal);
    }

    fn fire(&mut self, class: FaultClass, now: TimeUs) -> Option<FaultAction> {
        match class {
            FaultClass::Partition if self.can_partition() => {
                self.heal_later(now);
                Some(self.draw_partition())
            }
            FaultClass::Clog if self.nodes.len() > 1 => {
                let (from, to) = self.draw_link();
                let extra_us = self.rng.gen_range(1_000..=500_000);
                let until = now + self.rng.gen_range(MIN_FAULT_US..=MAX_FAULT_US);
                Some(FaultAction::Clog { from, to, extra_us, until })
            }
            FaultClass::Crash | FaultClass::Pause => {
                let available: Vec<NodeId> =
                    self.nodes.iter().copied().filter(|n| !self.unavailable.contains(n)).collect();
                let &node = available.choose(&mut self.rng)?;
                if class == FaultClass::Crash {
                    self.crash_node(node, now)
                } else {
                    self.unavailable.insert(node);
                    self.undo_later(now, FaultAction::Resume(node));
                    Some(FaultAction::Pause(node))
                }
            }
            _ => None,
        }
    }

    /// Crashes `node` unless it is down or paused already, and schedules its restart.
    fn crash_node(&mut self, node: NodeId, now: TimeUs) -> Option<FaultAction> {
        if !self.unavailable.insert(node) {
            return None;
        }
        self.undo_later(now, FaultAction::Restart(node));
        // Half between steps, half in the middle of one.
        if self.rng.gen_bool(0.5) {
            Some(FaultAction::PowerLoss(node))
        } else {
            Some(FaultAction::Crash(node))
        }
    }

    fn draw_link(&mut self) -> (NodeId, NodeId) {
        let mut pair: Vec<NodeId> = self.nodes.choose_multiple(&mut self.rng, 2).copied().collect();
        pair.shuffle(&mut self.rng);
        (pair[0], pair[1])
    }

    fn draw_partition(&mut self) -> FaultAction {
        let mut shuffled = self.nodes.clone();
        shuffled.shuffle(&mut self.rng);
        match self.rng.gen_range(0..3) {
            0 => {
                let (from, to) = self.draw_link();
                FaultAction::CutOneWay { from, to }
            }
            1 if shuffled.len() >= 3 => {
                // A bridge: the first node sees both halves of the rest.
                let bridge = shuffled[0];
                let rest = &shuffled[1..];
                let split = rest.len() / 2;
                let mut side_a = vec![bridge];
                side_a.extend_from_slice(&rest[..split]);
                let mut side_b = vec![bridge];
                side_b.extend_from_slice(&rest[split..]);
                FaultAction::Bridge { side_a, bridge, side_b }
            }
            _ => {
                let split = self.rng.gen_range(1..shuffled.len());
                let side_b = shuffled.split_off(split);
                FaultAction::Partition { side_a: shuffled, side_b }
            }
        }
    }

    /// The liveness phase: no new faults, and every outstanding fault is undone now.
    pub fn heal_all(&mut self) -> Vec<FaultAction> {
        self.enabled = false;
        self.leader_crash_at.clear();
        let pending: Vec<FaultAction> = std::mem::take(&mut self.undo_at).into_values().collect();
        for action in &pending {
            self.note_undone(action);
        }
        let mut actions: Vec<FaultAction> =
            pending.into_iter().filter(|a| !matches!(a, FaultAction::Heal)).collect();
        actions.push(FaultAction::Heal);
        actions
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seed::derive_rng;

    fn brutal() -> FaultSettings {
        FaultSettings {
            leader_crash: 0.9,
            partition_per_ms: 0.002,
            clog_per_ms: 0.002,
            crash_per_ms: 0.0005,
            pause_per_ms: 0.0005,
            ..FaultSettings::calm()
        }
    }

    fn run(seed: u64, settings: &FaultSettings, until: TimeUs) -> Vec<(TimeUs, FaultAction)> {
        let mut nemesis = Nemesis::new(settings, vec![1, 2, 3, 4, 5], derive_rng(seed, "nemesis", 0), 0);
        let mut log = Vec::new();
        for _ in 0..100_000 {
            let Some(at) = nemesis.next_event_at().filter(|&at| at <= until) else { break };
            log.extend(nemesis.poll(at).into_iter().map(|a| (at, a)));
        }
        log
    }

    #[test]
    fn calm_settings_never_fault() {
        assert!(run(1, &FaultSettings::calm(), 60_000_000).is_empty());
    }

    #[test]
    fn every_fault_is_undone_and_a_node_is_not_faulted_twice_at_once() {
        let log = run(3, &brutal(), 60_000_000);
        assert!(log.len() > 20, "a brutal minute has many faults: {}", log.len());
        let mut down = BTreeSet::new();
        for (_, action) in &log {
            match action {
                FaultAction::Crash(n) | FaultAction::PowerLoss(n) | FaultAction::Pause(n) => {
                    assert!(down.insert(*n), "{n} faulted twice")
                }
                FaultAction::Restart(n) | FaultAction::Resume(n) => {
                    assert!(down.remove(n), "{n} was not down")
                }
                _ => {}
            }
        }
        for kind in ["crash", "power loss", "pause", "clog", "heal"] {
            assert!(log.iter().any(|(_, a)| a.to_string().starts_with(kind)), "no {kind} in a brutal minute");
        }
    }

    #[test]
    fn heal_all_undoes_everything_and_stops_new_faults() {
        let mut nemesis = Nemesis::new(&brutal(), vec![1, 2, 3], derive_rng(5, "nemesis", 0), 0);
        let mut down = BTreeSet::new();
        for _ in 0..1_000 {
            let at = nemesis.next_event_at().unwrap();
            for action in nemesis.poll(at) {
                match action {
                    FaultAction::Crash(n) | FaultAction::PowerLoss(n) | FaultAction::Pause(n) => {
                        down.insert(n);
                    }
                    FaultAction::Restart(n) | FaultAction::Resume(n) => {
                        down.remove(&n);
                    }
                    _ => {}
                }
            }
            if !down.is_empty() {
                break;
            }
        }
        assert!(!down.is_empty());
        for action in nemesis.heal_all() {
            if let FaultAction::Restart(n) | FaultAction::Resume(n) = action {
                down.remove(&n);
            }
        }
        assert!(down.is_empty(), "heal_all brings every node back");
        assert_eq!(nemesis.next_event_at(), None);
    }

    #[test]
    fn new_leaders_fail_within_their_first_heartbeats_at_the_drawn_rate() {
        let mut nemesis = Nemesis::new(&brutal(), vec![1, 2, 3], derive_rng(7, "nemesis", 0), 0);
        let mut failed = 0;
        for round in 0..200u64 {
            let took_office = round * 10_000_000;
            nemesis.on_new_leader(1, took_office);
            // Only what is aimed at the new leader: the Poisson classes fire at their own times.
            let aimed: Vec<TimeUs> = nemesis.leader_crash_at.keys().map(|&(at, _)| at).collect();
            assert!(aimed.iter().all(|&at| at <= took_office + LEADER_CRASH_WITHIN_US));
            nemesis.next_fault_at.clear();
            let actions = nemesis.poll(took_office + LEADER_CRASH_WITHIN_US);
            let hit = actions.iter().any(|a| {
                matches!(a, FaultAction::Crash(1) | FaultAction::PowerLoss(1))
                    || matches!(a, FaultAction::Partition { side_a, .. } if side_a == &vec![1])
            });
            failed += hit as u32;
            // Undo everything before the next election.
            nemesis.poll(took_office + MAX_FAULT_US + LEADER_CRASH_WITHIN_US + 1);
        }
        assert!((150..=200).contains(&failed), "about 90% of 200 new leaders fail: {failed}");
    }

    #[test]
    fn the_same_seed_schedules_the_same_faults() {
        assert_eq!(run(9, &brutal(), 10_000_000), run(9, &brutal(), 10_000_000));
        assert_ne!(run(9, &brutal(), 10_000_000), run(10, &brutal(), 10_000_000));
    }
}
