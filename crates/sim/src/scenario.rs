//! Scripted scenarios over the real simulated world: the MIT 6.5840 Raft lab's tester, rebuilt on the
//! simulator. A scenario starts a cluster of real nodes (core, WAL on a simulated disk, KV state machine,
//! node glue) with fault settings of its choosing, then scripts what happens: it disconnects and
//! reconnects nodes, crashes and restarts them, submits commands, lets simulated time pass, and asks the
//! lab tester's questions — is there exactly one leader, how many servers applied index `i`, did this
//! command reach agreement within 10 seconds.
//!
//! Nothing here re-implements Raft: every question is answered from the nodes' own state, and the world
//! runs every safety check of [`crate::checks`] after every step. A broken check, or a failed scenario
//! assertion, panics with the seed and the simulated time. Set `RAFTKV_SCENARIO_TRACE_DIR` to a directory
//! to get each scenario's trace there as JSON lines (`<test name>-seed<seed>.jsonl`).
//!
//! Differences from the lab that the scenarios account for: our log also holds each leader's no-op and
//! the glue's session registrations, so a command's index is wherever it lands, not a count of commands;
//! and the glue retries a client's command itself (at most once, through its session) after a leader
//! change, where the lab's `Start` is fire-and-forget.

use std::collections::BTreeMap;
use std::path::PathBuf;

use kv::{Command, Request, RequestBody};
use node::PeerMessage;
use raft::{Entry, EntryPayload, Index, MessageBody, NodeId, Role, Term};
use rand_chacha::ChaCha8Rng;

use crate::checks::Violation;
use crate::nemesis::FaultAction;
use crate::network::TimeUs;
use crate::seed::derive_rng;
use crate::swarm::FaultSettings;
use crate::trace::Trace;
use crate::workload::Outcome;
use crate::world::{RunConfig, World, TICK_US};

/// The lab's bound for electing a leader after a failure: 5 s of simulated time.
pub const LEADER_BOUND_MS: u64 = 5_000;
/// The lab's bound for `one()` to reach agreement: 10 s of simulated time.
pub const AGREEMENT_BOUND_MS: u64 = 10_000;
/// How long `one()` waits for one submission before it submits again (the lab's 2 s).
const ONE_ATTEMPT_MS: u64 = 2_000;

const US_PER_MS: TimeUs = 1_000;

/// A client request handed to a node; its answer arrives later, see [`Scenario::outcome`].
pub type Token = u64;

/// Messages and bytes of one kind put on the network.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KindCount {
    pub messages: u64,
    /// Bytes of the message in postcard, the transport's encoding (before framing).
    pub bytes: u64,
}

/// Messages put on the network, by kind (`heartbeat`, `append_request`, `forward`, ...). Counting costs
/// an encoding per message, so it is off unless a scenario turns it on.
#[derive(Clone, Debug, Default)]
pub struct MessageCounts {
    enabled: bool,
    by_kind: BTreeMap<&'static str, KindCount>,
    /// Every InstallSnapshot chunk sent, in order.
    pub snapshot_chunks: Vec<ChunkSent>,
}

/// One InstallSnapshot chunk as it left its leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkSent {
    pub from: NodeId,
    pub to: NodeId,
    pub snapshot_index: Index,
    pub offset: u64,
    pub bytes: usize,
    pub done: bool,
}

/// The Raft messages that are requests; the lab counts RPCs, and a request and its reply are one RPC.
const REQUEST_KINDS: [&str; 4] = ["pre_vote_request", "vote_request", "append_request", "heartbeat"];

fn kind_of(message: &PeerMessage) -> &'static str {
    let PeerMessage::Raft(message) = message else { return message.kind() };
    match &message.body {
        MessageBody::VoteRequest(request) if request.pre_vote => "pre_vote_request",
        MessageBody::VoteRequest(_) => "vote_request",
        MessageBody::VoteResponse(_) => "vote_response",
        MessageBody::AppendRequest(_) => "append_request",
        MessageBody::AppendResponse(_) => "append_response",
        MessageBody::Heartbeat(_) => "heartbeat",
        MessageBody::HeartbeatResponse(_) => "heartbeat_response",
        MessageBody::InstallSnapshot(_) => "install_snapshot",
        _ => "raft_other",
    }
}

impl MessageCounts {
    pub(crate) fn record(&mut self, from: NodeId, to: NodeId, message: &PeerMessage) {
        if !self.enabled {
            return;
        }
        if let PeerMessage::Raft(raft::Message { body: MessageBody::InstallSnapshot(chunk), .. }) = message {
            self.snapshot_chunks.push(ChunkSent {
                from,
                to,
                snapshot_index: chunk.meta.index,
                offset: chunk.offset,
                bytes: chunk.data.len(),
                done: chunk.done,
            });
        }
        let bytes = postcard::to_allocvec(message).map_or(0, |encoded| encoded.len() as u64);
        let count = self.by_kind.entry(kind_of(message)).or_default();
        count.messages += 1;
        count.bytes += bytes;
    }

    /// Messages and bytes of one kind.
    pub fn of(&self, kind: &str) -> KindCount {
        self.by_kind.get(kind).copied().unwrap_or_default()
    }

    /// Raft RPCs sent: requests only (vote, pre-vote, append, heartbeat), as the lab's `rpcTotal`.
    pub fn rpcs(&self) -> u64 {
        REQUEST_KINDS.iter().map(|kind| self.of(kind).messages).sum()
    }

    /// Bytes of Raft requests sent, as the lab's `bytesTotal`.
    pub fn rpc_bytes(&self) -> u64 {
        REQUEST_KINDS.iter().map(|kind| self.of(kind).bytes).sum()
    }
}

/// What [`Scenario::start`] did at a leader, like the lab's `Start()` result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Started {
    pub token: Token,
    pub term: Term,
    /// Where the command went in the leader's log; `None` while the leader's glue first opens its client
    /// session (the command is proposed when the registration applies).
    pub index: Option<Index>,
}

/// The command inside a log entry, if the entry carries a client command.
pub fn command_of(entry: &Entry) -> Option<Command> {
    let EntryPayload::Command(bytes) = &entry.payload else { return None };
    match Request::decode(bytes).ok()?.body {
        RequestBody::Command(command) => Some(command),
        _ => None,
    }
}

/// A scripted run of the real cluster.
pub struct Scenario {
    world: World,
    /// `connected[id - 1]`: the node's links are up (the lab's `connect`/`disconnect`).
    connected: Vec<bool>,
    /// Explicit two-sided partitions, on top of disconnected nodes.
    partitions: Vec<(Vec<NodeId>, Vec<NodeId>)>,
    next_token: Token,
    outcomes: BTreeMap<Token, Outcome>,
    rng: ChaCha8Rng,
}

impl Scenario {
    /// A cluster of `nodes` fresh nodes (ids `1..=nodes`), all started and connected, under `settings`
    /// (its crash/partition/pause rates should be 0: the scenario scripts those itself).
    pub fn new(nodes: usize, seed: u64, settings: FaultSettings) -> Self {
        Self::with_clients(nodes, seed, settings, 0)
    }

    /// As [`Scenario::new`], plus `clients` simulated clients running the simulator's random workload
    /// against random nodes, whose history [`Scenario::check_clients_linearizable`] checks.
    pub fn with_clients(nodes: usize, seed: u64, settings: FaultSettings, clients: usize) -> Self {
        let config = RunConfig { nodes, ticks: 0, clients, settings: Some(settings), ..RunConfig::new(seed) };
        let mut world = World::new(config, trace_for(seed));
        let mut scenario = Scenario {
            connected: vec![true; nodes],
            partitions: Vec::new(),
            next_token: World::SCENARIO_TOKEN_BASE,
            outcomes: BTreeMap::new(),
            rng: derive_rng(seed, "scenario", 0),
            world: {
                world.message_counts_mut().enabled = true;
                world.record_applied_entries();
                world
            },
        };
        let started = scenario.world.start_all_nodes();
        scenario.checked(started);
        scenario
    }

    // ----- Time ---------------------------------------------------------------------------------------

    pub fn seed(&self) -> u64 {
        self.world.seed()
    }

    /// Simulated milliseconds since the start.
    pub fn now_ms(&self) -> u64 {
        self.world.now() / US_PER_MS
    }

    /// The scenario's own random numbers (which node to fail, which value to submit), from the seed.
    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.rng
    }

    /// Lets `ms` of simulated time pass (the lab's `time.Sleep`).
    pub fn run_ms(&mut self, ms: u64) {
        let until = self.world.now() + ms * US_PER_MS;
        let result = self.world.run_to(until);
        self.checked(result);
        for (token, outcome) in self.world.take_scenario_outcomes() {
            self.outcomes.insert(token, outcome);
        }
    }

    /// Lets `ticks` ticks pass.
    pub fn run_ticks(&mut self, ticks: u64) {
        self.run_ms(ticks * TICK_US / US_PER_MS);
    }

    /// Runs tick by tick until `done` holds, for at most `max_ms`. Returns whether it held.
    pub fn run_until(&mut self, max_ms: u64, mut done: impl FnMut(&Scenario) -> bool) -> bool {
        let deadline = self.now_ms() + max_ms;
        loop {
            if done(self) {
                return true;
            }
            if self.now_ms() >= deadline {
                return false;
            }
            self.run_ticks(1);
        }
    }

    // ----- Failing loudly -----------------------------------------------------------------------------

    /// Fails the scenario: a panic naming the seed and the simulated time.
    #[track_caller]
    pub fn fail(&self, message: impl std::fmt::Display) -> ! {
        panic!("seed {}, at {} ms: {message}", self.seed(), self.now_ms())
    }

    #[track_caller]
    fn checked<T>(&self, result: Result<T, Violation>) -> T {
        result.unwrap_or_else(|violation| self.fail(violation))
    }

    // ----- Who leads ----------------------------------------------------------------------------------

    pub fn node_ids(&self) -> impl Iterator<Item = NodeId> {
        1..=self.world.node_count() as NodeId
    }

    pub fn node_count(&self) -> usize {
        self.world.node_count()
    }

    /// The node `k` places after `id`, wrapping around (the lab's `(leader + k) % servers`).
    pub fn peer_after(&self, id: NodeId, k: usize) -> NodeId {
        let n = self.node_count() as NodeId;
        (id - 1 + k as NodeId) % n + 1
    }

    fn raft(&self, id: NodeId) -> Option<&raft::Raft> {
        let node = self.world.sim_node(id);
        node.is_running().then(|| node.inner().map(|inner| inner.raft())).flatten()
    }

    /// The node's current term, if it is running.
    pub fn term_of(&self, id: NodeId) -> Option<Term> {
        self.raft(id).map(|raft| raft.term())
    }

    /// True if the node is running and believes it leads.
    pub fn is_leader(&self, id: NodeId) -> bool {
        self.raft(id).is_some_and(|raft| raft.role() == Role::Leader)
    }

    /// The leader of the highest term among running, connected nodes, if any. Fails the scenario if two
    /// of them lead in one term (the lab's `checkOneLeader` rule; the world's checker also remembers every
    /// leader of every term, so two leaders in a term are caught even when they never coexist).
    pub fn leader(&self) -> Option<NodeId> {
        let mut by_term: BTreeMap<Term, NodeId> = BTreeMap::new();
        for id in self.node_ids().filter(|&id| self.is_connected(id) && self.is_leader(id)) {
            let term = self.term_of(id).expect("a leader runs");
            if let Some(other) = by_term.insert(term, id) {
                self.fail(format!("term {term} has two leaders: {other} and {id}"));
            }
        }
        by_term.values().next_back().copied()
    }

    /// Waits up to 5 s for a leader among the connected nodes and returns it (the lab's
    /// `checkOneLeader`).
    #[track_caller]
    pub fn check_one_leader(&mut self) -> NodeId {
        if !self.run_until(LEADER_BOUND_MS, |s| s.leader().is_some()) {
            self.fail(format!("expected one leader within {LEADER_BOUND_MS} ms, got none"));
        }
        self.leader().expect("just found")
    }

    /// Fails if any connected node believes it leads (the lab's `checkNoLeader`).
    #[track_caller]
    pub fn check_no_leader(&self) {
        if let Some(id) = self.node_ids().find(|&id| self.is_connected(id) && self.is_leader(id)) {
            self.fail(format!("expected no leader among connected servers, but node {id} claims to be"));
        }
    }

    /// The term every connected running node agrees on; fails if they disagree (the lab's `checkTerms`).
    #[track_caller]
    pub fn check_terms(&self) -> Term {
        let terms: BTreeMap<NodeId, Term> = self
            .node_ids()
            .filter(|&id| self.is_connected(id))
            .filter_map(|id| self.term_of(id).map(|term| (id, term)))
            .collect();
        let mut distinct: Vec<Term> = terms.values().copied().collect();
        distinct.dedup();
        match distinct.as_slice() {
            [term] => *term,
            _ => self.fail(format!("servers disagree on term: {terms:?}")),
        }
    }

    // ----- Membership ---------------------------------------------------------------------------------

    /// The configuration in force on `id`, if it runs.
    pub fn configuration_of(&self, id: NodeId) -> Option<raft::Configuration> {
        self.raft(id).map(|raft| raft.configuration().clone())
    }

    /// Asks `id` (which should lead) to change the membership; `None` if it is not running.
    pub fn propose_conf_change(
        &mut self,
        id: NodeId,
        change: raft::ConfChange,
    ) -> Option<Result<Index, raft::ConfChangeError>> {
        let result = self.world.propose_conf_change(id, change);
        self.checked(result)
    }

    /// Asks `id` (which should lead) to hand leadership to `target`; `None` if it is not running.
    pub fn transfer_leadership(
        &mut self,
        id: NodeId,
        target: NodeId,
    ) -> Option<Result<(), raft::TransferError>> {
        let result = self.world.transfer_leadership(id, target);
        self.checked(result)
    }

    /// Applies `change` through whoever leads, retrying refusals (no leader yet, a change in progress, a
    /// learner still catching up) for up to `max_ms`, until a leader runs the configuration it leads to,
    /// committed. Returns that configuration.
    #[track_caller]
    pub fn change_membership(&mut self, change: raft::ConfChange, max_ms: u64) -> raft::Configuration {
        let deadline = self.now_ms() + max_ms;
        let mut target = None;
        while self.now_ms() < deadline {
            if let Some(leader) = self.leader() {
                let raft = self.raft(leader).expect("a leader runs");
                let (current, busy) = (raft.configuration().clone(), raft.conf_change_in_progress());
                if let Some(target) = &target {
                    if &current == target && !busy {
                        return current;
                    }
                } else if !busy {
                    match raft::target_of(&current, &change) {
                        Ok(next) => target = Some(next),
                        Err(error) => self.fail(format!("change {change} refused: {error}")),
                    }
                }
                if !busy && target.as_ref() != Some(&current) {
                    let _ = self.propose_conf_change(leader, change.clone());
                }
            }
            self.run_ms(50);
        }
        self.fail(format!("change {change} not done within {max_ms} ms (target {target:?})"))
    }

    // ----- Network and crashes ------------------------------------------------------------------------

    pub fn is_connected(&self, id: NodeId) -> bool {
        self.connected[id as usize - 1]
    }

    /// True if the node's process runs.
    pub fn is_up(&self, id: NodeId) -> bool {
        self.world.sim_node(id).is_running()
    }

    /// Cuts every link between `id` and the other nodes, both ways (the lab's `disconnect`).
    pub fn disconnect(&mut self, id: NodeId) {
        self.connected[id as usize - 1] = false;
        self.apply_links();
    }

    /// Restores `id`'s links to every node that is itself connected (the lab's `connect`).
    pub fn connect(&mut self, id: NodeId) {
        self.connected[id as usize - 1] = true;
        self.apply_links();
    }

    /// Cuts every link between the two sides, both ways, until [`Scenario::heal`].
    pub fn partition(&mut self, side_a: &[NodeId], side_b: &[NodeId]) {
        self.partitions.push((side_a.to_vec(), side_b.to_vec()));
        self.apply_links();
    }

    /// Every node connected, every partition gone.
    pub fn heal(&mut self) {
        self.connected.iter_mut().for_each(|c| *c = true);
        self.partitions.clear();
        self.apply_links();
    }

    /// Rebuilds the network's cuts from the scenario's picture of it: heal everything, then cut again.
    fn apply_links(&mut self) {
        let mut actions = vec![FaultAction::Heal];
        let all: Vec<NodeId> = self.node_ids().collect();
        for id in all.iter().copied().filter(|&id| !self.is_connected(id)) {
            let others: Vec<NodeId> = all.iter().copied().filter(|&other| other != id).collect();
            actions.push(FaultAction::Partition { side_a: vec![id], side_b: others });
        }
        for (side_a, side_b) in &self.partitions {
            actions.push(FaultAction::Partition { side_a: side_a.clone(), side_b: side_b.clone() });
        }
        for action in actions {
            let result = self.world.inject(action);
            self.checked(result);
        }
    }

    /// Kills the node's process; what its simulated disk had not synced is lost or torn.
    pub fn crash(&mut self, id: NodeId) {
        let result = self.world.inject(FaultAction::Crash(id));
        self.checked(result);
    }

    /// Restarts a crashed node from its disk (no-op if it runs). Its links stay as they were.
    pub fn restart(&mut self, id: NodeId) {
        let result = self.world.inject(FaultAction::Restart(id));
        self.checked(result);
        if !self.is_up(id) {
            self.fail(format!("node {id} could not restart from its disk (see the trace)"));
        }
    }

    /// From now on no message is lost, duplicated or delivered late (the lab's `setunreliable(false)`).
    pub fn make_network_reliable(&mut self) {
        self.world.stop_message_faults();
    }

    // ----- Clients ------------------------------------------------------------------------------------

    /// Hands `command` to node `id` as a client would, whatever the node's role (a follower forwards it).
    /// A crashed node refuses it at once.
    pub fn submit(&mut self, id: NodeId, command: Command) -> Token {
        let token = self.next_token;
        self.next_token += 1;
        let result = self.world.submit(id as usize - 1, token, command);
        self.checked(result);
        for (token, outcome) in self.world.take_scenario_outcomes() {
            self.outcomes.insert(token, outcome);
        }
        token
    }

    /// The answer to a submitted request, once it came: `Ok` (applied), `Fail` (certainly not applied) or
    /// `Info` (an error that leaves it open, e.g. a timeout).
    pub fn outcome(&self, token: Token) -> Option<&Outcome> {
        self.outcomes.get(&token)
    }

    /// Like the lab's `Start`: if node `id` runs and believes it leads, hands it `command` and says where
    /// it went; otherwise does nothing.
    pub fn start(&mut self, id: NodeId, command: Command) -> Option<Started> {
        if !self.is_leader(id) {
            return None;
        }
        let term = self.term_of(id).expect("a leader runs");
        let floor = self.raft(id).map_or(0, |raft| raft.last_index());
        let token = self.submit(id, command.clone());
        let index = self.raft(id).and_then(|raft| {
            (floor + 1..=raft.last_index())
                .rev()
                .find(|&i| raft.log().entry(i).and_then(command_of).as_ref() == Some(&command))
        });
        Some(Started { token, term, index })
    }

    // ----- What was applied ---------------------------------------------------------------------------

    /// How far the node's state machine has applied, if it runs.
    pub fn applied_index(&self, id: NodeId) -> Option<Index> {
        let node = self.world.sim_node(id);
        node.is_running().then(|| node.inner().map(|inner| inner.applied_index())).flatten()
    }

    /// The entry node `id` holds or applied at `index` (its log may have been compacted past it).
    fn entry_on(&self, id: NodeId, index: Index) -> Option<&Entry> {
        self.raft(id)?.log().entry(index).or_else(|| self.world.applied_entry(id, index))
    }

    /// Where the node's log starts: the index of its latest snapshot (0 if none), if it runs.
    pub fn snapshot_index(&self, id: NodeId) -> Option<Index> {
        self.raft(id).map(|raft| raft.log().snapshot_boundary().0)
    }

    /// How many entries the node's log holds after its snapshot, if it runs (the lab's log size check).
    pub fn log_entries_held(&self, id: NodeId) -> Option<u64> {
        self.raft(id).map(|raft| raft.last_index() - raft.log().snapshot_boundary().0)
    }

    /// The entries the node has applied, in order (empty if it is down).
    pub fn committed_entries_on(&self, id: NodeId) -> Vec<Entry> {
        let (Some(raft), Some(applied)) = (self.raft(id), self.applied_index(id)) else { return Vec::new() };
        raft.log().slice(raft.log().first_index(), applied).to_vec()
    }

    /// The node's whole state machine, encoded (equal states give equal bytes), if it runs.
    pub fn state_machine_bytes(&self, id: NodeId) -> Option<Vec<u8>> {
        let node = self.world.sim_node(id);
        node.is_running()
            .then(|| node.inner().map(|inner| inner.state_machine().snapshot().to_bytes()))
            .flatten()
    }

    /// The client commands the node has applied, with their indexes.
    pub fn applied_commands(&self, id: NodeId) -> Vec<(Index, Command)> {
        self.committed_entries_on(id).iter().filter_map(|e| command_of(e).map(|c| (e.index, c))).collect()
    }

    /// How many running nodes have applied `index`, and the entry there. Fails if two of them applied
    /// different entries (the lab's `nCommitted`).
    #[track_caller]
    pub fn n_committed(&self, index: Index) -> (usize, Option<Entry>) {
        let mut count = 0;
        let mut agreed: Option<(NodeId, Entry)> = None;
        for id in self.node_ids() {
            let (Some(raft), Some(applied)) = (self.raft(id), self.applied_index(id)) else { continue };
            if applied < index {
                continue;
            }
            let _ = raft;
            let Some(entry) = self.entry_on(id, index) else {
                // Applied through a snapshot: the state machine has it, the entry itself is gone.
                count += 1;
                continue;
            };
            if let Some((other, known)) = &agreed {
                if known != entry {
                    self.fail(format!(
                        "committed values do not match: index {index}, node {other} has {known}, node {id} \
                         has {entry}"
                    ));
                }
            } else {
                agreed = Some((id, entry.clone()));
            }
            count += 1;
        }
        (count, agreed.map(|(_, entry)| entry))
    }

    /// The lowest index above `floor` at which some running node applied `command`.
    pub fn applied_index_of(&self, command: &Command, floor: Index) -> Option<Index> {
        self.node_ids()
            .filter_map(|id| {
                let applied = self.applied_index(id)?;
                (floor + 1..=applied)
                    .find(|&i| self.entry_on(id, i).and_then(command_of).as_ref() == Some(command))
            })
            .min()
    }

    /// The highest commit index of any running node: entries at or below it are fixed, so a command
    /// submitted from now on lands above it.
    pub fn commit_floor(&self) -> Index {
        self.node_ids().filter_map(|id| self.raft(id).map(|raft| raft.commit_index())).max().unwrap_or(0)
    }

    /// Waits until `expected_servers` nodes have applied `index` and returns the entry (the lab's
    /// `wait`). With `start_term`, gives up (returns `None`) once some node's term passed it: the leader
    /// that was asked is gone, and the entry may never commit.
    #[track_caller]
    pub fn wait_applied(
        &mut self,
        index: Index,
        expected_servers: usize,
        start_term: Option<Term>,
    ) -> Option<Entry> {
        let mut term_moved_on = false;
        let reached = self.run_until(AGREEMENT_BOUND_MS, |s| {
            term_moved_on =
                start_term.is_some_and(|t| s.node_ids().any(|id| s.term_of(id).is_some_and(|x| x > t)));
            term_moved_on || s.n_committed(index).0 >= expected_servers
        });
        if term_moved_on && self.n_committed(index).0 < expected_servers {
            return None;
        }
        if !reached {
            self.fail(format!(
                "only {} servers applied index {index}, expected {expected_servers}",
                self.n_committed(index).0
            ));
        }
        self.n_committed(index).1
    }

    /// Submits `command` to the leader until `expected_servers` nodes have applied it, and returns its
    /// index (the lab's `one`). Each submission gets 2 s; without `retry` a second one fails the scenario.
    /// The whole call is bounded by 10 s of simulated time.
    #[track_caller]
    pub fn one(&mut self, command: Command, expected_servers: usize, retry: bool) -> Index {
        self.agree_all(std::slice::from_ref(&command), expected_servers, retry)[0]
    }

    /// [`Scenario::one`] for several commands submitted at once (the lab's concurrent `one` calls).
    #[track_caller]
    pub fn agree_all(&mut self, commands: &[Command], expected_servers: usize, retry: bool) -> Vec<Index> {
        let deadline = self.now_ms() + AGREEMENT_BOUND_MS;
        let mut agreed: Vec<Option<Index>> = vec![None; commands.len()];
        let mut attempts = 0;
        while self.now_ms() < deadline {
            let Some(leader) = self.leader() else {
                self.run_ms(50);
                continue;
            };
            if attempts > 0 && !retry {
                self.fail(format!("one({:?}) failed to reach agreement", commands[0]));
            }
            attempts += 1;
            let floor = self.commit_floor();
            for (command, _) in commands.iter().zip(&agreed).filter(|(_, done)| done.is_none()) {
                self.submit(leader, command.clone());
            }
            let attempt_end = deadline.min(self.now_ms() + ONE_ATTEMPT_MS);
            while self.now_ms() < attempt_end {
                for (command, done) in commands.iter().zip(agreed.iter_mut()).filter(|(_, d)| d.is_none()) {
                    let index = self.applied_index_of(command, floor);
                    *done = index.filter(|&i| self.n_committed(i).0 >= expected_servers);
                }
                if agreed.iter().all(Option::is_some) {
                    return agreed.into_iter().map(|i| i.expect("all agreed")).collect();
                }
                self.run_ms(20);
            }
        }
        let missing: Vec<&Command> =
            commands.iter().zip(&agreed).filter(|(_, d)| d.is_none()).map(|(c, _)| c).collect();
        self.fail(format!(
            "{missing:?} failed to reach agreement on {expected_servers} servers within {AGREEMENT_BOUND_MS} ms"
        ))
    }

    // ----- Counting -----------------------------------------------------------------------------------

    /// Every InstallSnapshot chunk sent so far, in order.
    pub fn snapshot_chunks(&mut self) -> &[ChunkSent] {
        &self.world.message_counts_mut().snapshot_chunks
    }

    /// As [`Scenario::snapshot_chunks`], for a `run_until` condition (which sees the scenario shared).
    pub fn chunks_sent(&self) -> &[ChunkSent] {
        &self.world.message_counts().snapshot_chunks
    }

    /// Messages sent so far, by kind.
    pub fn message_counts(&mut self) -> &MessageCounts {
        self.world.message_counts_mut()
    }

    /// Raft RPCs (requests) sent so far, as the lab's `rpcTotal`.
    pub fn rpc_total(&mut self) -> u64 {
        self.message_counts().rpcs()
    }

    /// Bytes of Raft requests sent so far, as the lab's `bytesTotal`.
    pub fn rpc_bytes(&mut self) -> u64 {
        self.message_counts().rpc_bytes()
    }

    // ----- The random workload ------------------------------------------------------------------------

    /// Stops the simulated clients, waits (bounded) for their last operations to finish, and checks their
    /// whole history for linearizability. Returns how many operations it checked.
    #[track_caller]
    pub fn check_clients_linearizable(&mut self) -> usize {
        self.world.stop_clients();
        if !self.run_until(AGREEMENT_BOUND_MS, |s| s.world.clients_quiet()) {
            self.fail("the simulated clients did not finish within 10 s");
        }
        let result = self.world.check_client_history();
        self.checked(result)
    }
}

/// Where the trace goes: a file in `RAFTKV_SCENARIO_TRACE_DIR` named after the test (libtest names each
/// test's thread after it), or nowhere.
fn trace_for(seed: u64) -> Trace {
    let Some(dir) = std::env::var_os("RAFTKV_SCENARIO_TRACE_DIR") else { return Trace::hash_only() };
    let name = std::thread::current().name().unwrap_or("scenario").replace("::", "-");
    let path = PathBuf::from(dir).join(format!("{name}-seed{seed}.jsonl"));
    match std::fs::File::create(&path) {
        Ok(file) => Trace::to_writer(Box::new(std::io::BufWriter::new(file))),
        Err(error) => panic!("cannot write the trace to {}: {error}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn set(value: u64) -> Command {
        Command::Set {
            key: Bytes::from_static(b"k"),
            value: Bytes::from(value.to_string()),
            condition: Default::default(),
            get: false,
            expiry: Default::default(),
        }
    }

    fn three_nodes() -> Scenario {
        Scenario::new(3, 1, FaultSettings::calm())
    }

    #[test]
    fn a_majority_commits_and_a_crashed_leader_catches_up_from_its_disk() {
        let mut s = three_nodes();
        let first = s.one(set(1), 3, false);
        let leader = s.check_one_leader();
        let follower = s.peer_after(leader, 1);
        s.disconnect(follower);
        let started = s.start(leader, set(2)).expect("the leader takes it");
        assert_eq!(started.index.map(|i| i > first), Some(true), "its session is open: proposed at once");
        assert!(s.run_until(1_000, |s| s.applied_index_of(&set(2), first).is_some()));
        let index = s.applied_index_of(&set(2), first).expect("applied");
        assert_eq!(s.n_committed(index).0, 2, "the disconnected follower has not applied it");
        s.crash(leader);
        assert_eq!(s.applied_index(leader), None);
        s.restart(leader);
        s.connect(follower);
        let entry = s.wait_applied(index, 3, None).expect("everyone applies it");
        assert_eq!(command_of(&entry), Some(set(2)));
        assert_eq!(s.applied_commands(follower)[..2], [(first, set(1)), (index, set(2))]);
    }

    #[test]
    fn connecting_one_node_keeps_the_others_disconnected() {
        let mut s = three_nodes();
        s.check_one_leader();
        s.disconnect(1);
        s.disconnect(2);
        s.connect(1);
        assert!(s.is_connected(1) && !s.is_connected(2));
        s.run_ms(2_000);
        assert_eq!(s.node_ids().filter(|&id| s.is_leader(id) && id != 2).count(), 1, "1 and 3 elect one");
        s.heal();
        s.check_one_leader();
        s.check_terms();
    }

    #[test]
    fn a_partition_isolates_its_minority_until_healed() {
        let mut s = three_nodes();
        let leader = s.check_one_leader();
        let others: Vec<NodeId> = s.node_ids().filter(|&id| id != leader).collect();
        s.partition(&[leader], &others);
        assert!(s.run_until(LEADER_BOUND_MS, |s| others.iter().any(|&id| s.is_leader(id))));
        let index = s.one(set(7), 2, false);
        assert!(s.applied_index(leader).is_some_and(|applied| applied < index), "the minority applied it");
        s.heal();
        s.wait_applied(index, 3, None).expect("the old leader catches up once healed");
    }

    #[test]
    #[should_panic(expected = "failed to reach agreement on 4 servers")]
    fn one_fails_when_fewer_servers_can_apply_than_expected() {
        three_nodes().one(set(1), 4, true);
    }

    #[test]
    #[should_panic(expected = "expected no leader among connected servers")]
    fn check_no_leader_fails_while_a_majority_is_connected() {
        let mut s = three_nodes();
        let leader = s.check_one_leader();
        s.disconnect(s.peer_after(leader, 1));
        s.run_ms(1_000);
        s.check_no_leader();
    }

    #[test]
    #[should_panic(expected = "expected one leader within 5000 ms, got none")]
    fn check_one_leader_fails_without_a_quorum() {
        let mut s = three_nodes();
        let leader = s.check_one_leader();
        s.disconnect(leader);
        s.disconnect(s.peer_after(leader, 1));
        s.check_one_leader();
    }

    #[test]
    fn rpcs_are_counted_by_kind_and_replies_are_not_rpcs() {
        let mut s = three_nodes();
        s.one(set(1), 3, false);
        let counts = s.message_counts().clone();
        assert!(counts.of("heartbeat").messages > 0 && counts.of("append_request").bytes > 0);
        let requests: u64 = REQUEST_KINDS.iter().map(|kind| counts.of(kind).messages).sum();
        assert_eq!(counts.rpcs(), requests);
        assert!(counts.of("append_response").messages > 0, "replies are counted, just not as RPCs");
    }
}
