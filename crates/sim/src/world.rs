//! The simulated world of one seed: N real nodes, the simulated network, the nemesis, the clients, the
//! safety checker and the trace, advanced event by event in simulated time.
//!
//! A run has two phases (TigerBeetle's VOPR): a **safety phase** with faults, in which every check runs
//! after every step, and a **liveness phase** in which every fault is healed and the cluster must elect a
//! leader, answer a write through every node, and bring every node to the same applied index within a
//! stated bound of ticks.

use std::cell::{Cell, RefCell};
use std::hash::Hasher;
use std::rc::Rc;

use bytes::Bytes;
use fnv::FnvHasher;
use node::{Consistency, NodeTiming, PeerMessage};
use raft::{Entry, EntryPayload, NodeId};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use storage::{CrashModel, SimDisk};

use crate::checks::{chain, Check, EntryDigest, SafetyChecker, Violation};
use crate::history;
use crate::membership::{LeaderView, MembershipAction, MembershipDriver};
use crate::nemesis::{FaultAction, Nemesis};
use crate::network::{Delivery, Network, SendOutcome, TimeUs};
use crate::seed::{derive_rng, derive_seed};
use crate::sim_node::{Applied, Liveness, Pending, Persisted, SimNode};
use crate::swarm::FaultSettings;
use crate::trace::{Trace, TraceEvent};
use crate::workload::{Outcome, Workload};

/// One tick of the core is this much simulated time.
pub const TICK_US: TimeUs = 10_000;
/// Election timeout in ticks (100–200 ms), heartbeat every tick (10 ms), as etcd's defaults scaled down.
pub const ELECTION_TIMEOUT_TICKS: u64 = 10;
pub const HEARTBEAT_INTERVAL_TICKS: u64 = 1;
/// The liveness phase must finish within this many ticks (5 s, the MIT lab's bound for a new leader,
/// plus time to catch every node up).
pub const LIVENESS_BOUND_TICKS: u64 = 1_000;
/// More messages than this in flight at once means a runaway (a retry storm), not a busy cluster.
pub const MAX_MESSAGES_IN_FLIGHT: usize = 100_000;
/// A client request the node cannot answer within this many ticks gets an error (2 s).
pub const CLIENT_TIMEOUT_TICKS: u64 = 200;
/// Cluster id of every simulated cluster.
const CLUSTER_ID: u64 = 0x5eed;

/// What to run.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub seed: u64,
    pub nodes: usize,
    /// Length of the safety phase in ticks.
    pub ticks: u64,
    pub clients: usize,
    /// `None`: draw the fault settings from the seed (swarm); `Some`: use these.
    pub settings: Option<FaultSettings>,
    /// `Some`: every node serves linearizable reads from leases (dissertation §6.4.1) instead of ReadIndex.
    /// Not drawn: a seed runs exactly as before unless this is set.
    pub lease_reads: Option<LeaseReads>,
    /// Test-only: one rule broken on purpose in every node (see [`crate::inject`]).
    #[cfg(feature = "inject-bugs")]
    pub injected_bug: Option<crate::inject::InjectedBug>,
}

impl RunConfig {
    pub fn new(seed: u64) -> Self {
        RunConfig {
            seed,
            nodes: 5,
            ticks: 1_500,
            clients: 10,
            settings: None,
            lease_reads: None,
            #[cfg(feature = "inject-bugs")]
            injected_bug: None,
        }
    }
}

/// What the nodes' leases assume about clock drift.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LeaseReads {
    /// The truth: the run's own `clock_drift` setting (plus [`SIM_TICK_ROUNDING_PPM`]), so the clocks
    /// stay within the bound the leases trust. Stale reads would be a bug.
    WithinBound,
    /// This bound, whatever the clocks really do: with a larger drift, a stale read is the expected
    /// consequence of a broken assumption (the test that the checker notices).
    AssumingDrift(f64),
}

/// The world schedules a node's next tick `TICK_US / clock_rate` µs ahead, rounded down: up to 1 µs early
/// per 10 ms tick, which on the node's own clock is a rate error of up to ~110 ppm on top of its drift.
/// A lease that is told the truth must be told this too.
pub const SIM_TICK_ROUNDING_PPM: u64 = 200;

impl LeaseReads {
    /// The core's lease settings for a run whose clocks drift by up to `clock_drift`.
    pub fn settings(self, clock_drift: f64) -> raft::LeaseSettings {
        let max_clock_drift_ppm = match self {
            LeaseReads::WithinBound => (clock_drift * 1e6).ceil() as u64 + SIM_TICK_ROUNDING_PPM,
            LeaseReads::AssumingDrift(drift) => (drift * 1e6).ceil() as u64,
        };
        raft::LeaseSettings { tick_nanos: TICK_US * 1_000, max_clock_drift_ppm }
    }
}

/// How one seed ended.
#[derive(Clone, Debug)]
pub struct RunReport {
    pub seed: u64,
    pub settings: FaultSettings,
    pub operations: usize,
    pub ticks: u64,
    pub violation: Option<Violation>,
    pub trace_hash: u64,
    /// Leaders' snapshots installed by followers (InstallSnapshot), in the safety and the liveness phase.
    pub snapshot_installs: [u64; 2],
    /// Reads leaders confirmed, `[by ReadIndex round, by lease]` (leases only with `lease_reads`).
    pub reads_confirmed: [u64; 2],
}

/// The world of one run.
pub struct World {
    config: RunConfig,
    settings: FaultSettings,
    now: TimeUs,
    nodes: Vec<SimNode>,
    network: Network<PeerMessage>,
    nemesis: Nemesis,
    workload: Workload,
    checker: SafetyChecker,
    trace: Trace,
    rng: ChaCha8Rng,
    ticks_done: u64,
    /// Answers to liveness probes since the last probe round.
    probe_outcomes: Vec<(u64, Outcome)>,
    next_probe: u64,
    /// Messages put on the network, by kind (counted only when a scenario asks for it).
    message_counts: crate::scenario::MessageCounts,
    /// Scenarios only: every entry each node applied, by node index then log index, so that questions
    /// about applied entries survive log compaction.
    applied_entries: Option<Vec<std::collections::BTreeMap<raft::Index, Entry>>>,
    /// Snapshots installed by followers, by phase (0: safety, 1: liveness).
    snapshot_installs: [u64; 2],
    reads_confirmed: [u64; 2],
    /// 0 in the safety phase, 1 once healed.
    phase: usize,
    /// Random membership changes, when the swarm drew that class.
    membership: Option<MembershipDriver>,
}

/// Client tokens at or above this are liveness probes, not history operations.
const PROBE_BASE: u64 = 1 << 48;

fn digest(entry: &Entry) -> u64 {
    let mut hasher = FnvHasher::default();
    match &entry.payload {
        EntryPayload::Noop => hasher.write_u8(0),
        EntryPayload::Command(bytes) => {
            hasher.write_u8(1);
            hasher.write(bytes);
        }
        EntryPayload::Config(config) => {
            hasher.write_u8(2);
            hasher.write(format!("{config:?}").as_bytes());
        }
    }
    hasher.finish()
}

fn entry_digest(entry: &Entry) -> EntryDigest {
    EntryDigest { index: entry.index, term: entry.term, digest: digest(entry) }
}

impl World {
    pub fn new(config: RunConfig, trace: Trace) -> Self {
        let settings = config.settings.clone().unwrap_or_else(|| FaultSettings::draw(config.seed));
        let ids: Vec<NodeId> = (1..=config.nodes as NodeId).collect();
        let mut rng = derive_rng(config.seed, "world", 0);
        let nodes = ids
            .iter()
            .map(|&id| {
                let disk = SimDisk::new(derive_seed(config.seed, "disk", id));
                disk.set_crash_model(CrashModel {
                    keep_page_percent: ((1.0 - settings.disk_page_loss) * 100.0).round() as u8,
                    torn_page_percent: (settings.disk_torn_page * 100.0).round() as u8,
                });
                let drift = settings.clock_drift;
                let clock_rate = if drift > 0.0 { 1.0 + rng.gen_range(-drift..=drift) } else { 1.0 };
                SimNode {
                    id,
                    disk,
                    liveness: Liveness::Crashed,
                    outbox: Rc::new(RefCell::new(Vec::new())),
                    now: Rc::new(Cell::new(0)),
                    clock_rate,
                    next_tick_at: 0,
                    incarnation: 0,
                    prefix_hashes: Vec::new(),
                    prefix_first_index: 1,
                    prefix_base: 0,
                    seen_commit: 0,
                    seen_leader_term: None,
                    seen_role: None,
                    power_loss_armed: false,
                }
            })
            .collect();
        let network = Network::new(&settings, derive_rng(config.seed, "network", 0));
        let membership = MembershipDriver::new(
            settings.membership_changes,
            ids.clone(),
            derive_rng(config.seed, "membership", 0),
        );
        let nemesis = Nemesis::new(&settings, ids.clone(), derive_rng(config.seed, "nemesis", 0), 0);
        let workload = Workload::new(
            derive_rng(config.seed, "clients", 0),
            config.clients,
            // Longer than the node's own request timeout, as a real client should be configured: the node
            // then answers definitively (-TRYAGAIN: certainly not applied) where it can, and the client
            // records :info only for what is truly uncertain, which keeps histories decidable.
            CLIENT_TIMEOUT_TICKS * TICK_US * 3 / 2,
            5 * TICK_US,
        );
        let mut world = World {
            config,
            settings: settings.clone(),
            now: 0,
            nodes,
            network,
            nemesis,
            workload,
            checker: SafetyChecker::new(),
            trace,
            rng,
            ticks_done: 0,
            probe_outcomes: Vec::new(),
            next_probe: 0,
            message_counts: Default::default(),
            applied_entries: None,
            snapshot_installs: [0, 0],
            reads_confirmed: [0, 0],
            phase: 0,
            membership,
        };
        world.trace.record(
            0,
            TraceEvent::Run {
                seed: world.config.seed,
                nodes: ids.len() as u64,
                settings: settings.to_string(),
            },
        );
        // The founding voters; with membership changes on, the others start with an empty configuration
        // and wait to be added, like servers started to join a running cluster.
        let founders = world.membership.as_ref().map_or(ids.clone(), |m| m.initial_voters().to_vec());
        for &id in &ids {
            let voters: &[NodeId] = if founders.contains(&id) { &founders } else { &[] };
            crate::boot::bootstrap(&world.nodes[id as usize - 1].disk, CLUSTER_ID, id, voters);
        }
        world
    }
}

/// Hooks for scripted scenarios ([`crate::scenario`]): the scenario drives this world by hand instead of
/// through the swarm's nemesis and clients, and every check still runs after every step.
impl World {
    /// Client tokens of scenarios: above the probes' range start, so their answers come back through
    /// [`World::take_scenario_outcomes`] and never touch the workload's history.
    pub(crate) const SCENARIO_TOKEN_BASE: u64 = PROBE_BASE;

    pub(crate) fn start_all_nodes(&mut self) -> Result<(), Violation> {
        (0..self.nodes.len()).try_for_each(|index| self.start_node(index))
    }

    pub(crate) fn now(&self) -> TimeUs {
        self.now
    }

    pub(crate) fn seed(&self) -> u64 {
        self.config.seed
    }

    pub(crate) fn run_to(&mut self, until: TimeUs) -> Result<(), Violation> {
        self.run_until(until, |_| false)
    }

    pub(crate) fn sim_node(&self, id: NodeId) -> &SimNode {
        &self.nodes[id as usize - 1]
    }

    pub(crate) fn node_count(&self) -> usize {
        self.nodes.len()
    }

    pub(crate) fn inject(&mut self, action: FaultAction) -> Result<(), Violation> {
        self.apply_fault(action)
    }

    pub(crate) fn take_scenario_outcomes(&mut self) -> Vec<(u64, Outcome)> {
        std::mem::take(&mut self.probe_outcomes)
    }

    /// From now on, remember every entry each node applies ([`World::applied_entry`]).
    pub(crate) fn record_applied_entries(&mut self) {
        self.applied_entries = Some(vec![Default::default(); self.nodes.len()]);
    }

    /// The entry node `id` applied at `index`, if it applied one there (not through a snapshot) while
    /// recording was on.
    pub(crate) fn applied_entry(&self, id: NodeId, index: raft::Index) -> Option<&Entry> {
        self.applied_entries.as_ref()?[id as usize - 1].get(&index)
    }

    pub(crate) fn message_counts(&self) -> &crate::scenario::MessageCounts {
        &self.message_counts
    }

    pub(crate) fn message_counts_mut(&mut self) -> &mut crate::scenario::MessageCounts {
        &mut self.message_counts
    }

    pub(crate) fn stop_message_faults(&mut self) {
        self.network.stop_message_faults();
    }

    pub(crate) fn stop_clients(&mut self) {
        self.workload.stop_invoking();
    }

    pub(crate) fn clients_quiet(&self) -> bool {
        self.workload.is_quiet()
    }

    /// Asks node `id` to change the membership; `None` if it is not running.
    pub(crate) fn propose_conf_change(
        &mut self,
        id: NodeId,
        change: raft::ConfChange,
    ) -> Result<Option<Result<raft::Index, raft::ConfChangeError>>, Violation> {
        let index = id as usize - 1;
        let Some(node) = self.nodes[index].running() else { return Ok(None) };
        let (outcome, result) = match node.propose_conf_change(change.clone()) {
            Ok(outcome) => (Some(outcome), Ok(())),
            Err(error) => (None, Err(error)),
        };
        self.trace.record(
            self.now,
            TraceEvent::Fault { fault: format!("membership: node {id} {change}: {outcome:?}") },
        );
        self.after_input(index, result)?;
        Ok(outcome)
    }

    /// Asks node `id` to hand leadership to `target`; `None` if it is not running.
    pub(crate) fn transfer_leadership(
        &mut self,
        id: NodeId,
        target: NodeId,
    ) -> Result<Option<Result<(), raft::TransferError>>, Violation> {
        let index = id as usize - 1;
        let Some(node) = self.nodes[index].running() else { return Ok(None) };
        let (outcome, result) = match node.transfer_leadership(target) {
            Ok(outcome) => (Some(outcome), Ok(())),
            Err(error) => (None, Err(error)),
        };
        let fault = format!("membership: node {id} transfer leadership to {target}: {outcome:?}");
        self.trace.record(self.now, TraceEvent::Fault { fault });
        self.after_input(index, result)?;
        Ok(outcome)
    }

    pub(crate) fn check_client_history(&self) -> Result<usize, Violation> {
        history::check_linearizable(&self.workload.history).map(|()| self.workload.history.len())
    }
}

impl World {
    /// Runs both phases and the final linearizability check.
    pub fn run(self) -> RunReport {
        self.run_keeping_trace().0
    }

    /// Runs the seed and hands back the trace too (to flush a trace file).
    pub fn run_keeping_trace(mut self) -> (RunReport, Trace) {
        let violation = self.run_phases().err();
        if let Some(v) = &violation {
            self.trace.record(
                self.now,
                TraceEvent::Violation { check: v.check.to_string(), detail: v.detail.clone() },
            );
        }
        let report = RunReport {
            seed: self.config.seed,
            settings: self.settings.clone(),
            operations: self.workload.history.len(),
            ticks: self.ticks_done,
            violation,
            trace_hash: self.trace.hash(),
            snapshot_installs: self.snapshot_installs,
            reads_confirmed: self.reads_confirmed,
        };
        (report, self.trace)
    }

    /// The fault settings of this run.
    pub fn settings(&self) -> &FaultSettings {
        &self.settings
    }

    fn run_phases(&mut self) -> Result<(), Violation> {
        for index in 0..self.nodes.len() {
            self.start_node(index)?;
        }
        self.trace.record(self.now, TraceEvent::Phase { phase: "safety".into() });
        let safety_end = self.config.ticks * TICK_US;
        self.run_until(safety_end, |_| false)?;

        self.trace.record(self.now, TraceEvent::Phase { phase: "liveness".into() });
        self.phase = 1;
        self.workload.stop_invoking();
        self.network.stop_message_faults();
        for action in self.nemesis.heal_all() {
            self.apply_fault(action)?;
        }
        let deadline = self.now + LIVENESS_BOUND_TICKS * TICK_US;
        if let Some(target) = self.membership.as_mut().map(|m| m.final_target()) {
            self.trace
                .record(self.now, TraceEvent::Fault { fault: format!("membership: final target {target}") });
            self.run_until(deadline, |world| world.reached_target())?;
            if !self.reached_target() {
                return Err(Violation {
                    check: Check::Liveness,
                    detail: format!(
                        "{LIVENESS_BOUND_TICKS} ticks after healing, the cluster has not reached the intended \
                         configuration {target}"
                    ),
                });
            }
        }
        self.run_until(deadline, |world| world.workload.is_quiet())?;
        self.probe_liveness(deadline)?;
        history::check_linearizable(&self.workload.history)
    }

    /// After healing: a leader, a write answered OK through every node, and every node caught up.
    fn probe_liveness(&mut self, deadline: TimeUs) -> Result<(), Violation> {
        let count = self.nodes.len();
        // Only members of the final configuration are asked (a removed node knows no leader).
        let members = self.final_members();
        let mut answered_ok: Vec<bool> = (0..count).map(|index| !members.contains(&index)).collect();
        // Bounded by the deadline: each round waits up to one election timeout for answers.
        while self.now < deadline && !(answered_ok.iter().all(|&ok| ok) && self.converged()) {
            self.probe_outcomes.clear();
            for (index, _) in answered_ok.iter().enumerate().filter(|(_, &ok)| !ok) {
                self.next_probe += 1;
                let token = PROBE_BASE + self.next_probe * 8 + index as u64;
                let key = Bytes::from(format!("probe.{}", index + 1));
                let command = kv::Command::Set {
                    key,
                    value: Bytes::from_static(b"ok"),
                    condition: Default::default(),
                    get: false,
                    expiry: Default::default(),
                };
                self.submit(index, token, command)?;
            }
            let round_start = self.now;
            let round_end = deadline.min(self.now + ELECTION_TIMEOUT_TICKS * TICK_US);
            let waiting = answered_ok.iter().filter(|&&ok| !ok).count();
            self.run_until(round_end, |world| world.probe_outcomes.len() >= waiting)?;
            // Probes that fail at once (no node can take them) must not be retried at the same instant:
            // the loop would spin without simulated time passing, the deadline never reached.
            if self.now == round_start {
                self.run_until(deadline.min(self.now + TICK_US), |_| false)?;
            }
            for &(token, ref outcome) in &self.probe_outcomes {
                if matches!(outcome, Outcome::Ok(_)) {
                    answered_ok[((token - PROBE_BASE) % 8) as usize] = true;
                }
            }
            if answered_ok.iter().all(|&ok| ok) {
                self.run_until(deadline, |world| world.converged())?;
            }
        }
        if let Some(index) = answered_ok.iter().position(|&ok| !ok) {
            return Err(Violation {
                check: Check::Liveness,
                detail: format!(
                    "{LIVENESS_BOUND_TICKS} ticks after healing, a write through node {} was never answered OK",
                    index + 1
                ),
            });
        }
        if !self.converged() {
            let applied: Vec<(NodeId, raft::Index)> =
                self.nodes.iter().filter_map(|n| n.inner().map(|i| (n.id, i.applied_index()))).collect();
            return Err(Violation {
                check: Check::Liveness,
                detail: format!(
                    "{LIVENESS_BOUND_TICKS} ticks after healing, nodes have not converged: applied {applied:?}"
                ),
            });
        }
        Ok(())
    }

    fn converged(&self) -> bool {
        let members = self.final_members();
        let applied: Vec<raft::Index> = members
            .iter()
            .filter_map(|&index| self.nodes[index].inner().map(|i| i.applied_index()))
            .collect();
        applied.len() == members.len() && applied.windows(2).all(|w| w[0] == w[1])
    }

    /// Indices of the nodes the liveness phase expects to serve: the final configuration's members, or
    /// every node when membership never changes.
    fn final_members(&self) -> Vec<usize> {
        match self.membership.as_ref().and_then(|m| m.target()) {
            Some(target) => target.members().into_iter().map(|id| id as usize - 1).collect(),
            None => (0..self.nodes.len()).collect(),
        }
    }

    /// True once a leader runs the membership driver's target configuration, committed.
    fn reached_target(&self) -> bool {
        let Some(target) = self.membership.as_ref().and_then(|m| m.target()) else { return true };
        self.leader_index().is_some_and(|index| {
            let raft = self.nodes[index].inner().expect("the leader runs").raft();
            raft.configuration() == target && !raft.conf_change_in_progress()
        })
    }

    /// The running node that leads in the highest term, if any.
    fn leader_index(&self) -> Option<usize> {
        (0..self.nodes.len())
            .filter(|&index| self.nodes[index].is_running())
            .filter_map(|index| {
                let raft = self.nodes[index].inner()?.raft();
                (raft.role() == raft::Role::Leader).then_some((raft.term(), index))
            })
            .max()
            .map(|(_, index)| index)
    }

    /// Asks the leader for whatever membership change or transfer the driver wants now.
    fn drive_membership(&mut self) -> Result<(), Violation> {
        let due = self.membership.as_ref().and_then(|m| m.next_event_at()).is_some_and(|at| at <= self.now);
        if !due {
            return Ok(());
        }
        let leader = self.leader_index();
        let view = leader.map(|index| {
            let raft = self.nodes[index].inner().expect("the leader runs").raft();
            LeaderView {
                id: raft.id(),
                configuration: raft.configuration(),
                change_in_progress: raft.conf_change_in_progress(),
            }
        });
        let actions = self.membership.as_mut().expect("due").poll(self.now, view);
        let Some(id) = leader.map(|index| index as NodeId + 1) else { return Ok(()) };
        for action in actions {
            match action {
                MembershipAction::Change(change) => self.propose_conf_change(id, change)?.map(|_| ()),
                MembershipAction::TransferLeadership(to) => self.transfer_leadership(id, to)?.map(|_| ()),
            };
        }
        Ok(())
    }

    /// Advances time until `until`, or until `done` holds, processing every event in order.
    fn run_until(&mut self, until: TimeUs, done: impl Fn(&World) -> bool) -> Result<(), Violation> {
        // Bounded by simulated time; the event count bound only guards against a livelock at one instant.
        for _ in 0..50_000_000u64 {
            if done(self) {
                return Ok(());
            }
            let Some(next) = self.next_event_at().filter(|&at| at <= until) else {
                self.now = until;
                return Ok(());
            };
            self.now = self.now.max(next);
            for node in &self.nodes {
                node.now.set(self.now);
            }
            self.step()?;
        }
        panic!("seed {}: more than 50,000,000 events before {until} µs", self.config.seed);
    }

    fn next_event_at(&self) -> Option<TimeUs> {
        let ticks = self.nodes.iter().filter(|n| n.is_running()).map(|n| n.next_tick_at);
        let membership = self.membership.as_ref().and_then(|m| m.next_event_at());
        [
            self.network.next_delivery_at(),
            self.nemesis.next_event_at(),
            self.workload.next_event_at(),
            membership,
        ]
        .into_iter()
        .flatten()
        .chain(ticks)
        .min()
    }

    /// Everything due at `self.now`: faults first, then deliveries, ticks and clients.
    fn step(&mut self) -> Result<(), Violation> {
        for action in self.nemesis.poll(self.now) {
            self.apply_fault(action)?;
        }
        while let Some(delivery) = self.network.take_due(self.now) {
            match delivery {
                Delivery::Delivered(envelope) => {
                    let index = envelope.to as usize - 1;
                    self.trace.record(
                        self.now,
                        TraceEvent::Deliver { id: envelope.id, from: envelope.from, to: envelope.to },
                    );
                    self.deliver(index, envelope.from, envelope.message)?;
                }
                Delivery::Dropped(envelope, reason) => self.trace.record(
                    self.now,
                    TraceEvent::Drop {
                        id: envelope.id,
                        from: envelope.from,
                        to: envelope.to,
                        reason: format!("{reason:?}"),
                    },
                ),
            }
        }
        for index in 0..self.nodes.len() {
            let node = &mut self.nodes[index];
            if node.is_running() && node.next_tick_at <= self.now {
                node.next_tick_at = self.now + (TICK_US as f64 / node.clock_rate) as TimeUs;
                self.ticks_done += 1;
                let result = node.running().expect("running").tick();
                self.after_input(index, result)?;
            }
        }
        for history_index in self.workload.time_out_due(self.now) {
            let node = self.workload.history[history_index].node;
            self.trace.record(
                self.now,
                TraceEvent::Complete { client: history_index as u64, node, result: "timeout (info)".into() },
            );
        }
        for (_, history_index) in self.workload.invoke_due(self.now) {
            let node_index = self.rng.gen_range(0..self.nodes.len());
            self.workload.history[history_index].node = node_index as NodeId + 1;
            self.submit(
                node_index,
                history_index as u64,
                history::command_of(&self.workload.history[history_index]),
            )?;
        }
        self.drive_membership()
    }

    /// Hands a client command to a node: queued if it is paused, refused at once if it is down (the
    /// client's connection is refused, so it certainly did not take effect).
    pub(crate) fn submit(&mut self, index: usize, token: u64, command: kv::Command) -> Result<(), Violation> {
        let op = format!("{command:?}");
        self.trace.record(self.now, TraceEvent::Invoke { client: token, node: index as NodeId + 1, op });
        match &mut self.nodes[index].liveness {
            Liveness::Running(node) => {
                let result = node.submit(token, command, Consistency::Linearizable);
                self.after_input(index, result)
            }
            Liveness::Paused(_, backlog) => {
                backlog.push(Pending::Client(token, command));
                Ok(())
            }
            Liveness::Crashed => {
                self.complete(token, Outcome::Fail);
                Ok(())
            }
        }
    }

    fn deliver(&mut self, index: usize, from: NodeId, message: PeerMessage) -> Result<(), Violation> {
        match &mut self.nodes[index].liveness {
            Liveness::Running(node) => {
                let result = node.receive(from, message);
                self.after_input(index, result)
            }
            Liveness::Paused(_, backlog) => {
                backlog.push(Pending::Message(from, message));
                Ok(())
            }
            Liveness::Crashed => Ok(()),
        }
    }

    fn complete(&mut self, token: u64, outcome: Outcome) {
        if token >= PROBE_BASE {
            self.probe_outcomes.push((token, outcome));
            return;
        }
        let history_index = token as usize;
        {
            let result = format!("{outcome:?}");
            let node = self.workload.history[history_index].node;
            if self.workload.complete(history_index, self.now, outcome) {
                self.trace.record(self.now, TraceEvent::Complete { client: token, node, result });
            }
        }
    }

    /// After a node handled an input: a storage failure stops it (as the server would exit); then its
    /// messages go on the network, its answers to clients, and every check runs.
    fn after_input(&mut self, index: usize, result: Result<(), node::NodeError>) -> Result<(), Violation> {
        // Messages sent before a failure were already on the wire: they go out even if the node dies.
        self.flush_outbox(index)?;
        if let Err(error) = result {
            let fault = format!("node {} stopped: {error}", index + 1);
            self.trace.record(self.now, TraceEvent::Fault { fault });
            self.crash(index);
            return Ok(());
        }
        let completions = match self.nodes[index].running() {
            Some(node) => node.take_completions(),
            None => Vec::new(),
        };
        for completion in completions {
            let outcome = history::outcome_of(&self.workload, completion.token, &completion.reply);
            self.complete(completion.token, outcome);
        }
        self.check_node(index)
    }

    /// Puts everything node `index` sent on the network.
    fn flush_outbox(&mut self, index: usize) -> Result<(), Violation> {
        let from = self.nodes[index].id;
        let outgoing: Vec<(NodeId, PeerMessage)> = self.nodes[index].outbox.borrow_mut().drain(..).collect();
        for (to, message) in outgoing {
            self.message_counts.record(from, to, &message);
            let description = match &message {
                PeerMessage::Raft(m) => m.to_string(),
                other => other.kind().to_string(),
            };
            let outcome = self.network.send(self.now, from, to, message);
            let (id, dropped_at_once) = match outcome {
                SendOutcome::Queued { id, .. } => (id, None),
                SendOutcome::Lost { id } => (id, Some("Lost")),
                SendOutcome::Partitioned { id } => (id, Some("Partitioned")),
            };
            self.trace.record(self.now, TraceEvent::Send { id, from, to, message: description });
            // Every send ends in a deliver or a drop, so a reader of the trace (the viewer) never takes a
            // message the network refused for one still in flight.
            if let Some(reason) = dropped_at_once {
                self.trace.record(self.now, TraceEvent::Drop { id, from, to, reason: reason.into() });
            }
        }
        if self.network.in_flight_count() > MAX_MESSAGES_IN_FLIGHT {
            return Err(Violation {
                check: Check::ResourceBound,
                detail: format!(
                    "{} messages in flight (bound {MAX_MESSAGES_IN_FLIGHT}); last sent by node {from}",
                    self.network.in_flight_count()
                ),
            });
        }
        Ok(())
    }

    /// Feeds what the node just did to the safety checker.
    fn check_node(&mut self, index: usize) -> Result<(), Violation> {
        let node_state = &mut self.nodes[index];
        let id = node_state.id;
        let Some(node) = (match &mut node_state.liveness {
            Liveness::Running(node) | Liveness::Paused(node, _) => Some(node),
            Liveness::Crashed => None,
        }) else {
            return Ok(());
        };
        let observed = std::mem::take(&mut node.observer_mut().observed);
        for (total, new) in self.reads_confirmed.iter_mut().zip(observed.reads_confirmed) {
            *total += new;
        }
        // A node wins its election before it appends as leader: check the role first, so that a second
        // leader of a term is reported as the Election Safety violation it is, not as the Log Matching
        // conflict its first entry makes in the same step.
        let raft = node.raft();
        let term = raft.term();
        let seen = (raft.role(), term, raft.leader_id());
        if node_state.seen_role != Some(seen) {
            node_state.seen_role = Some(seen);
            let role = format!("{:?}", raft.role()).to_lowercase();
            self.trace.record(self.now, TraceEvent::Role { node: id, role, term, leader: raft.leader_id() });
        }
        if raft.role() == raft::Role::Leader && node_state.seen_leader_term != Some(term) {
            node_state.seen_leader_term = Some(term);
            self.nemesis.on_new_leader(id, self.now);
            let snapshot_index = raft.log().first_index().saturating_sub(1);
            self.checker.observe_new_leader_log(id, term, snapshot_index, |i| raft.term_at(i))?;
        }
        for persisted in &observed.persisted {
            let (hard_state, entries) = match persisted {
                Persisted::Batch(hard_state, entries) => (hard_state, entries),
                &Persisted::Snapshot { index, term, keep_entries_after } => {
                    // The log now starts after the snapshot: the chain continues from its entry's hash.
                    let Some(base) = self.checker.prefix_of(index, term) else {
                        return Err(Violation {
                            check: Check::LogMatching,
                            detail: format!(
                                "node {id} installed snapshot {index}@{term}, an entry nobody held"
                            ),
                        });
                    };
                    if keep_entries_after {
                        let covered = (index + 1 - node_state.prefix_first_index) as usize;
                        node_state.prefix_hashes.drain(..covered.min(node_state.prefix_hashes.len()));
                    } else {
                        node_state.prefix_hashes.clear();
                    }
                    node_state.prefix_first_index = index + 1;
                    node_state.prefix_base = base;
                    self.snapshot_installs[self.phase] += 1;
                    self.trace.record(
                        self.now,
                        TraceEvent::SnapshotInstall { node: id, index, term, keep_entries_after },
                    );
                    continue;
                }
                &Persisted::OwnSnapshot { index, term } => {
                    // Compaction changes no hash: the chain of the entries after it is unchanged.
                    self.trace.record(self.now, TraceEvent::SnapshotTaken { node: id, index, term });
                    continue;
                }
            };
            if let Some(hs) = hard_state {
                self.checker.observe_durable_hard_state(id, hs.term, hs.vote);
                self.trace.record(
                    self.now,
                    TraceEvent::Persist {
                        node: id,
                        term: hs.term,
                        vote: hs.vote,
                        last_index: entries.last().map_or(node.raft().last_index(), |e| e.index),
                    },
                );
            }
            if let Some(first) = entries.first() {
                self.trace.record(
                    self.now,
                    TraceEvent::Append {
                        node: id,
                        first_index: first.index,
                        terms: entries.iter().map(|e| e.term).collect(),
                    },
                );
                let keep = (first.index - node_state.prefix_first_index) as usize;
                node_state.prefix_hashes.truncate(keep);
                for entry in entries {
                    let previous = node_state.prefix_hashes.last().copied().unwrap_or(node_state.prefix_base);
                    let prefix = chain(previous, entry_digest(entry));
                    node_state.prefix_hashes.push(prefix);
                    self.checker.observe_entry(id, entry_digest(entry), prefix)?;
                }
            }
        }
        let raft = node.raft();
        let commit = raft.commit_index();
        if commit != node_state.seen_commit {
            let newly: Vec<EntryDigest> = ((node_state.seen_commit + 1).max(raft.log().first_index())
                ..=commit)
                .filter_map(|i| raft.log().entry(i).map(entry_digest))
                .collect();
            self.checker.observe_commit(id, raft.term(), commit, &newly)?;
            node_state.seen_commit = commit;
            self.trace.record(self.now, TraceEvent::Commit { node: id, index: commit });
        }
        for applied in &observed.applied {
            match applied {
                Applied::Entry(entry) => {
                    self.checker.observe_apply(id, entry.index, digest(entry))?;
                    if let Some(recorded) = self.applied_entries.as_mut() {
                        recorded[index].insert(entry.index, entry.clone());
                    }
                    self.trace.record(
                        self.now,
                        TraceEvent::Apply { node: id, index: entry.index, term: entry.term },
                    );
                }
                &Applied::Restored(index) => self.checker.observe_restore(id, index)?,
            }
        }
        Ok(())
    }

    fn apply_fault(&mut self, action: FaultAction) -> Result<(), Violation> {
        self.trace.record(self.now, TraceEvent::Fault { fault: action.to_string() });
        match action {
            FaultAction::Partition { side_a, side_b } => self.network.partition(&side_a, &side_b),
            FaultAction::CutOneWay { from, to } => self.network.cut_one_way(from, to),
            FaultAction::Bridge { side_a, bridge, side_b } => self.network.bridge(&side_a, bridge, &side_b),
            FaultAction::Clog { from, to, extra_us, until } => self.network.clog(from, to, extra_us, until),
            FaultAction::Heal => self.network.heal(),
            FaultAction::Crash(id) => self.crash(id as usize - 1),
            FaultAction::PowerLoss(id) => self.arm_power_loss(id as usize - 1),
            FaultAction::Restart(id) => {
                let node = &mut self.nodes[id as usize - 1];
                if node.power_loss_armed && !matches!(node.liveness, Liveness::Crashed) {
                    // The node wrote nothing while armed: the power never went out.
                    node.disk.crash_after_ops(None);
                    node.power_loss_armed = false;
                } else {
                    self.start_node(id as usize - 1)?;
                }
            }
            FaultAction::Pause(id) => {
                let node = &mut self.nodes[id as usize - 1];
                if let Liveness::Running(inner) = std::mem::replace(&mut node.liveness, Liveness::Crashed) {
                    node.liveness = Liveness::Paused(inner, Vec::new());
                }
            }
            FaultAction::Resume(id) => self.resume(id as usize - 1)?,
        }
        Ok(())
    }

    /// Arms a power loss at one of the node's next few disk operations: the node fails in the middle of a
    /// step, after it may have sent messages and before its write is durable. That is where an
    /// acknowledgement sent before its entries were persisted shows.
    fn arm_power_loss(&mut self, index: usize) {
        if !self.nodes[index].is_running() {
            return self.crash(index);
        }
        let node = &mut self.nodes[index];
        let at_op = node.disk.op_count() + self.rng.gen_range(0..6);
        node.disk.crash_after_ops(Some(at_op));
        node.power_loss_armed = true;
        self.trace.record(
            self.now,
            TraceEvent::Fault {
                fault: format!("power loss armed: node {} at disk operation {at_op}", index + 1),
            },
        );
    }

    fn crash(&mut self, index: usize) {
        let node = &mut self.nodes[index];
        node.power_loss_armed = false;
        node.liveness = Liveness::Crashed;
        node.outbox.borrow_mut().clear();
        node.disk.crash();
    }

    fn resume(&mut self, index: usize) -> Result<(), Violation> {
        let node = &mut self.nodes[index];
        let Liveness::Paused(inner, backlog) = std::mem::replace(&mut node.liveness, Liveness::Crashed)
        else {
            return Ok(());
        };
        node.liveness = Liveness::Running(inner);
        node.next_tick_at = self.now;
        for pending in backlog {
            match pending {
                Pending::Message(from, message) => self.deliver(index, from, message)?,
                Pending::Client(token, command) => self.submit(index, token, command)?,
            }
        }
        Ok(())
    }

    /// (Re)starts a node from its disk, as the server does: recover, check durability, run.
    fn start_node(&mut self, index: usize) -> Result<(), Violation> {
        if !matches!(self.nodes[index].liveness, Liveness::Crashed) {
            return Ok(());
        }
        let node = &mut self.nodes[index];
        node.incarnation += 1;
        let timing = NodeTiming {
            client_timeout_ticks: CLIENT_TIMEOUT_TICKS,
            retry_ticks: 2 * ELECTION_TIMEOUT_TICKS,
        };
        let snapshots = node::SnapshotPolicy { threshold_entries: self.settings.snapshot_threshold_entries };
        let lease = self.config.lease_reads.map(|lease| lease.settings(self.settings.clock_drift));
        let booted =
            crate::boot::recover(node, CLUSTER_ID, &self.config, timing, snapshots, |config| raft::Config {
                election_timeout_ticks: ELECTION_TIMEOUT_TICKS as _,
                max_entries_per_message: self.settings.max_entries_per_message,
                max_snapshot_chunk_bytes: self.settings.snapshot_chunk_bytes,
                heartbeat_interval_ticks: HEARTBEAT_INTERVAL_TICKS as _,
                read_mode: lease.map_or(config.read_mode, raft::ReadMode::Lease),
                ..config
            });
        let (inner, recovered_entries) = match booted {
            Ok(booted) => booted,
            Err(error) => {
                // The node refuses to start (e.g. corruption it detected): it stays down, loudly.
                self.trace.record(
                    self.now,
                    TraceEvent::Fault { fault: format!("node {} cannot start: {error}", node.id) },
                );
                return Ok(());
            }
        };
        let raft = inner.raft();
        let hard_state = raft.hard_state();
        self.checker.observe_restart(
            node.id,
            hard_state.term,
            hard_state.vote,
            raft.commit_index(),
            inner.applied_index(),
        )?;
        self.trace.record(
            self.now,
            TraceEvent::Recover {
                node: node.id,
                term: hard_state.term,
                vote: hard_state.vote,
                commit_index: raft.commit_index(),
                first_index: raft.log().first_index(),
                terms: recovered_entries.iter().map(|e| e.term).collect(),
            },
        );
        node.seen_commit = raft.commit_index();
        node.seen_leader_term = None;
        node.seen_role = None;
        node.prefix_first_index = raft.log().first_index();
        node.prefix_hashes.clear();
        // A log that starts after a snapshot chains on from the hash of the snapshot's entry.
        let (snapshot_index, snapshot_term) = raft.log().snapshot_boundary();
        let Some(mut previous) = self.checker.prefix_of(snapshot_index, snapshot_term) else {
            return Err(Violation {
                check: Check::LogMatching,
                detail: format!(
                    "node {} restarted from snapshot {snapshot_index}@{snapshot_term}, an entry nobody held",
                    node.id
                ),
            });
        };
        node.prefix_base = previous;
        for entry in &recovered_entries {
            previous = chain(previous, entry_digest(entry));
            node.prefix_hashes.push(previous);
            self.checker.observe_entry(node.id, entry_digest(entry), previous)?;
        }
        node.liveness = Liveness::Running(Box::new(inner));
        node.next_tick_at = self.now + 1;
        Ok(())
    }
}
