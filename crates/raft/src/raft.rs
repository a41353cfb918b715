//! The node: its state (Figure 2's "State"), the single entry point for messages, role changes, and the
//! Ready/persist/advance handshake with the caller. Elections, replication and reads live in their own
//! modules as further `impl Raft` blocks.

use std::collections::BTreeMap;
use std::fmt;

use bytes::Bytes;

use crate::config::Config;
use crate::error::{ConfigError, ProposeError, StepError};
use crate::lease::Lease;
use crate::log::Log;
use crate::membership::LeadershipTransfer;
use crate::message::{Message, MessageBody};
use crate::progress::Progress;
use crate::quorum;
use crate::read_index::ReadOnly;
use crate::ready::{
    Durability, HeldMessage, PersistMark, Ready, SnapshotInstall, SnapshotRead, SnapshotWrite,
};
use crate::snapshot::IncomingSnapshot;
use crate::types::{Configuration, Entry, EntryPayload, HardState, Index, NodeId, SnapshotMeta, Term};

/// True if the named test-only bug is switched on; always false without the `inject-bugs` feature.
macro_rules! injected {
    ($raft:expr, $bug:ident) => {{
        #[cfg(feature = "inject-bugs")]
        let on = $raft.config.has_bug(crate::config::InjectedBug::$bug);
        #[cfg(not(feature = "inject-bugs"))]
        let on = false;
        on
    }};
}
pub(crate) use injected;

/// A server's role (§5.1), plus the pre-candidate of dissertation §9.6.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Role {
    Follower,
    /// Asking whether it could win, without changing its term (pre-vote).
    PreCandidate,
    Candidate,
    Leader,
}

/// The durable state a node restarts from, as storage recovered it.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct RestoredState {
    pub hard_state: HardState,
    /// The latest snapshot (index 0: none). For a brand-new cluster this carries the bootstrap
    /// configuration: every founding member starts from the same `SnapshotMeta { index: 0, term: 0,
    /// configuration }`. A node joining later starts with an empty configuration and learns its cluster
    /// from the leader.
    pub snapshot: SnapshotMeta,
    /// The log entries after the snapshot, in order.
    pub entries: Vec<Entry>,
}

/// One Raft server as a pure state machine: inputs are [`tick`](Raft::tick), [`step`](Raft::step),
/// [`propose`](Raft::propose) and [`read_index`](Raft::read_index); outputs are collected in a
/// [`Ready`]. See the crate docs for the caller's loop.
pub struct Raft {
    pub(crate) config: Config,
    pub(crate) id: NodeId,
    pub(crate) role: Role,
    /// Figure 2 `currentTerm`. Invariant: never decreases.
    pub(crate) term: Term,
    /// Figure 2 `votedFor`, for `term`.
    pub(crate) vote: Option<NodeId>,
    /// The leader of `term`, once known.
    pub(crate) leader_id: Option<NodeId>,
    pub(crate) log: Log,
    /// Figure 2 `commitIndex`. Invariant: never decreases; `commit <= log.last_index()`.
    pub(crate) commit: Index,
    /// Highest index the caller has applied. Invariant: `applied <= applying`.
    pub(crate) applied: Index,
    /// Highest index handed out in `Ready::committed_entries`, or the index of a snapshot handed out to
    /// install. Invariant: `applying <= commit`, and `applying <= log.persisted_index()` unless it is the
    /// snapshot boundary (a snapshot is handed out together with the instruction to persist it).
    pub(crate) applying: Index,
    /// The configuration in force: the latest configuration entry in the log, else the snapshot's
    /// (configurations take effect when appended, dissertation §4.1).
    pub(crate) configuration: Configuration,
    /// Where `configuration` came from: the index and term of its entry (the snapshot boundary if it came
    /// from the snapshot), so a truncation that removes it is noticed.
    pub(crate) configuration_index: Index,
    pub(crate) configuration_term: Term,
    /// The snapshot's configuration, the fallback when no configuration entry is left in the log.
    pub(crate) snapshot_configuration: Configuration,
    /// Follower: the snapshot stream being received, if any.
    pub(crate) incoming_snapshot: Option<IncomingSnapshot>,
    /// A received snapshot the core installed, to hand out in the next `Ready`.
    pub(crate) snapshot_install: Option<SnapshotInstall>,
    /// Leader: snapshot chunks to ask the application for, in the next `Ready`.
    pub(crate) snapshot_reads: Vec<SnapshotRead>,
    /// Follower: received snapshot chunks to hand out for writing, in the next `Ready`.
    pub(crate) snapshot_writes: Vec<SnapshotWrite>,
    pub(crate) rng: Rng,
    /// Ticks since the election timer was last reset (followers and candidates), or since the last
    /// check-quorum (leaders).
    pub(crate) election_elapsed: u64,
    /// This round's election timeout, drawn from `[min, 2 * min)`.
    pub(crate) randomized_election_timeout: u64,
    /// Ticks since the last heartbeat round (leaders).
    pub(crate) heartbeat_elapsed: u64,
    /// Ticks since this node last heard from a leader (a leader hears from itself every tick). Below the
    /// minimum election timeout, the node ignores vote requests (leader stickiness, dissertation §4.2.3).
    pub(crate) ticks_since_leader_contact: u64,
    /// Answers received in the current (pre-)election.
    pub(crate) votes: BTreeMap<NodeId, bool>,
    /// Leader only: what it knows of every member's log, itself included.
    pub(crate) progress: BTreeMap<NodeId, Progress>,
    /// Leader only: the keys of `progress` other than itself, to iterate without allocating.
    pub(crate) peers: Vec<NodeId>,
    /// Leader only: index of the no-op it appended on election; reads wait until it commits.
    pub(crate) term_start_index: Index,
    /// Leader only: bytes of its own proposals not committed yet.
    pub(crate) uncommitted_bytes: usize,
    /// Leader only: the leadership transfer under way, if any; proposals are refused meanwhile.
    pub(crate) transfer: Option<LeadershipTransfer>,
    pub(crate) reads: ReadOnly,
    /// Leader only, in lease mode: send times of heartbeat rounds and who acknowledged them (§6.4.1).
    pub(crate) lease: Lease,
    /// The caller's monotonic clock, in nanoseconds, as last given to [`Raft::set_now`]. Used only for
    /// leases. Invariant: never decreases.
    pub(crate) now_nanos: u64,
    /// Messages ready to send.
    pub(crate) outbox: Vec<Message>,
    /// Messages waiting for durability, in the order they were produced.
    pub(crate) held: Vec<HeldMessage>,
    /// The hard state the caller has reported durable.
    pub(crate) persisted_hard_state: HardState,
    /// The hard state last handed out in a `Ready`.
    pub(crate) handed_out_hard_state: HardState,
    /// Number of persist marks handed out, and the highest one reported durable.
    /// Invariant: `persisted_sequence <= ready_sequence`.
    pub(crate) ready_sequence: u64,
    pub(crate) persisted_sequence: u64,
}

/// A small seeded generator (SplitMix64). Its output stream is fixed by this code, not by a dependency's
/// version, so a simulator seed replays the same run for as long as this file is unchanged.
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub fn new(seed: u64, id: NodeId) -> Rng {
        // Mix the id in so that nodes configured with the same seed still draw different timeouts.
        Rng(seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

impl Raft {
    /// A node restarting from `restored` (or starting fresh, from a `RestoredState` holding only the
    /// bootstrap configuration). It starts as a follower.
    ///
    /// # Panics
    /// If `restored` is inconsistent (entries that do not follow the snapshot, a commit index beyond the
    /// log): storage handed over state that cannot have been written by this core.
    pub fn new(config: Config, restored: RestoredState) -> Result<Raft, ConfigError> {
        config.validate()?;
        let RestoredState { hard_state, snapshot, entries } = restored;
        let log = Log::restore(snapshot.index, snapshot.term, entries);
        assert!(
            hard_state.commit <= log.last_index(),
            "node {}: restored commit {} is beyond the restored log's last index {}",
            config.id,
            hard_state.commit,
            log.last_index()
        );
        let mut raft = Raft {
            id: config.id,
            rng: Rng::new(config.rng_seed, config.id),
            role: Role::Follower,
            term: hard_state.term,
            vote: hard_state.vote,
            leader_id: None,
            commit: hard_state.commit.max(snapshot.index),
            applied: snapshot.index,
            applying: snapshot.index,
            configuration: snapshot.configuration.clone(),
            configuration_index: snapshot.index,
            configuration_term: snapshot.term,
            snapshot_configuration: snapshot.configuration,
            incoming_snapshot: None,
            snapshot_install: None,
            snapshot_reads: Vec::new(),
            snapshot_writes: Vec::new(),
            log,
            election_elapsed: 0,
            randomized_election_timeout: config.election_timeout_ticks,
            heartbeat_elapsed: 0,
            // In lease mode a node starts as if it had just heard from a leader: it may have acknowledged a
            // heartbeat just before it crashed, and the leader's lease counts on it to ignore candidates
            // for an election timeout after that (dissertation §6.4.1; see `lease`). Otherwise it starts
            // free to vote, as before leases existed.
            ticks_since_leader_contact: match config.read_mode {
                crate::config::ReadMode::Lease(_) => 0,
                crate::config::ReadMode::ReadIndex => config.election_timeout_ticks,
            },
            votes: BTreeMap::new(),
            progress: BTreeMap::new(),
            peers: Vec::new(),
            term_start_index: 0,
            uncommitted_bytes: 0,
            transfer: None,
            reads: ReadOnly::default(),
            lease: Lease::default(),
            now_nanos: 0,
            outbox: Vec::new(),
            held: Vec::new(),
            persisted_hard_state: hard_state,
            handed_out_hard_state: hard_state,
            ready_sequence: 0,
            persisted_sequence: 0,
            config,
        };
        raft.refresh_configuration();
        raft.reset_election_timer();
        Ok(raft)
    }

    // ----- Read-only accessors -------------------------------------------------------------------------

    pub fn id(&self) -> NodeId {
        self.id
    }
    pub fn role(&self) -> Role {
        self.role
    }
    pub fn term(&self) -> Term {
        self.term
    }
    pub fn vote(&self) -> Option<NodeId> {
        self.vote
    }
    pub fn leader_id(&self) -> Option<NodeId> {
        self.leader_id
    }
    pub fn commit_index(&self) -> Index {
        self.commit
    }
    /// Highest index the caller reported applied.
    pub fn applied_index(&self) -> Index {
        self.applied
    }
    pub fn last_index(&self) -> Index {
        self.log.last_index()
    }
    /// Highest log index known durable on this node.
    pub fn persisted_index(&self) -> Index {
        self.log.persisted_index()
    }
    /// The log, for invariant checks and status.
    pub fn log(&self) -> &Log {
        &self.log
    }
    /// Term of the entry at `index`, if held.
    pub fn term_at(&self, index: Index) -> Option<Term> {
        self.log.term_at(index)
    }
    /// The configuration in force (the latest one appended to the log).
    pub fn configuration(&self) -> &Configuration {
        &self.configuration
    }
    /// The hard state the caller last reported durable (through [`Raft::on_persisted`]).
    pub fn persisted_hard_state(&self) -> HardState {
        self.persisted_hard_state
    }
    /// The current hard state (not necessarily durable yet).
    pub fn hard_state(&self) -> HardState {
        HardState { term: self.term, vote: self.vote, commit: self.commit }
    }
    /// Leader only: each member's replication progress (itself included). Empty on other roles.
    pub fn progress(&self) -> impl Iterator<Item = (NodeId, &Progress)> {
        self.progress.iter().map(|(&id, pr)| (id, pr))
    }
    /// The node's settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    // ----- Inputs -----------------------------------------------------------------------------------------

    /// Advances logical time by one tick: election timeouts for followers and candidates, heartbeats and
    /// check-quorum for leaders.
    pub fn tick(&mut self) {
        match self.role {
            Role::Leader => {
                self.ticks_since_leader_contact = 0;
                self.tick_leader();
            }
            _ => {
                self.ticks_since_leader_contact = self.ticks_since_leader_contact.saturating_add(1);
                self.tick_election();
            }
        }
        self.debug_check_invariants();
    }

    /// Handles one message from a peer. The term is checked here, once, for every message (Figure 2,
    /// "Rules for Servers"); then the handler of the node's role runs.
    ///
    /// A malformed or misaddressed message is refused with a [`StepError`] and changes nothing.
    pub fn step(&mut self, message: Message) -> Result<(), StepError> {
        message.validate(self.id)?;
        self.step_valid(message);
        self.debug_check_invariants();
        Ok(())
    }

    fn step_valid(&mut self, message: Message) {
        if message.term > self.term {
            if !self.step_higher_term(&message) {
                return;
            }
        } else if message.term < self.term {
            self.handle_stale_term(&message);
            return;
        }
        let from = message.from;
        let term = message.term;
        match message.body {
            MessageBody::VoteRequest(request) => self.handle_vote_request(from, term, request),
            body => match self.role {
                Role::Leader => self.step_leader(from, body),
                Role::Candidate | Role::PreCandidate => self.step_candidate(from, term, body),
                Role::Follower => self.step_follower(from, body),
            },
        }
    }

    /// A message from a higher term. Returns false if it is to be dropped without effect.
    fn step_higher_term(&mut self, message: &Message) -> bool {
        match &message.body {
            MessageBody::VoteRequest(request) => {
                // Leader stickiness (dissertation §4.2.3): a node that heard from a leader within the
                // minimum election timeout neither votes nor adopts the candidate's term, unless the
                // leader itself asked for the election (leadership transfer).
                if self.in_leader_lease() && !request.leadership_transfer {
                    return false;
                }
                // A pre-vote request never changes anyone's term (§9.6).
                if !request.pre_vote {
                    self.become_follower(message.term, None);
                }
            }
            // A granted pre-vote carries the term the candidate asked about, which nobody is in yet: it
            // changes nothing. (A *refusal* carries the refusing node's own term; if that is higher, the
            // pre-candidate adopts it below like any other news of a higher term. Without that, a node
            // whose term fell behind could never win a pre-vote against nodes that already voted in the
            // next term, and a cluster split between a longer log at a lower term and shorter logs at a
            // higher term would never elect anyone. etcd-io/raft does the same.)
            MessageBody::VoteResponse(response) if response.pre_vote && response.granted => {}
            _ => {
                let leader = message.is_from_leader().then_some(message.from);
                self.become_follower(message.term, leader);
            }
        }
        true
    }

    /// Figure 2: "if RPC request or response contains term T < currentTerm: reply false". Responses from
    /// old terms are simply ignored. A leader of an older term is answered with this node's term, so it
    /// steps down; this also lets a node whose term ran ahead during a partition pull the cluster up to
    /// its term, instead of being unable either to win or to rejoin.
    fn handle_stale_term(&mut self, message: &Message) {
        let (to, term) = (message.from, self.term);
        let body = match &message.body {
            MessageBody::AppendRequest(request) => {
                MessageBody::AppendResponse(crate::message::AppendResponse::Rejected {
                    rejected_prev_index: request.prev_log_index,
                    hint_index: 0,
                    hint_term: 0,
                    last_index: self.log.last_index(),
                })
            }
            MessageBody::Heartbeat(_) => {
                MessageBody::HeartbeatResponse(crate::message::HeartbeatResponse { read_round: 0 })
            }
            // Any answer carries our term, which is what the old leader needs to hear.
            MessageBody::InstallSnapshot(_) => {
                MessageBody::InstallSnapshotResponse(crate::message::InstallSnapshotResponse::Stale {
                    commit: self.commit,
                })
            }
            // Refuse (pre-)votes for an old term, with our term, so the asker catches up.
            MessageBody::VoteRequest(request) => MessageBody::VoteResponse(crate::message::VoteResponse {
                pre_vote: request.pre_vote,
                granted: false,
            }),
            _ => return,
        };
        self.send_now(Message { from: self.id, to, term, body });
    }

    fn step_follower(&mut self, from: NodeId, body: MessageBody) {
        match body {
            MessageBody::AppendRequest(request) => {
                self.note_leader_contact(from);
                self.handle_append_request(from, request);
            }
            MessageBody::Heartbeat(heartbeat) => {
                self.note_leader_contact(from);
                self.handle_heartbeat(from, heartbeat);
            }
            MessageBody::InstallSnapshot(chunk) => {
                self.note_leader_contact(from);
                self.handle_snapshot_chunk(from, chunk);
            }
            MessageBody::TimeoutNow => {
                self.note_leader_contact(from);
                self.handle_timeout_now();
            }
            // Responses to requests of an earlier role in this term.
            _ => {}
        }
    }

    fn step_candidate(&mut self, from: NodeId, term: Term, body: MessageBody) {
        match body {
            // §5.2: "If AppendEntries RPC received from new leader: convert to follower." A pre-candidate
            // hears from a leader of its own current term the same way.
            MessageBody::AppendRequest(_) | MessageBody::Heartbeat(_) | MessageBody::InstallSnapshot(_) => {
                self.become_follower(self.term, Some(from));
                self.step_follower(from, body);
            }
            MessageBody::VoteResponse(response) => self.handle_vote_response(from, term, response),
            _ => {}
        }
    }

    fn step_leader(&mut self, from: NodeId, body: MessageBody) {
        match body {
            MessageBody::AppendResponse(response) => self.handle_append_response(from, response),
            MessageBody::HeartbeatResponse(response) => self.handle_heartbeat_response(from, response),
            MessageBody::InstallSnapshotResponse(response) => self.handle_snapshot_response(from, response),
            // Another leader in this term cannot exist (Election Safety, §5.2); a message claiming so is
            // not trusted. Vote answers for this term are late and no longer matter.
            _ => {}
        }
    }

    fn note_leader_contact(&mut self, leader: NodeId) {
        self.leader_id = Some(leader);
        self.election_elapsed = 0;
        self.ticks_since_leader_contact = 0;
    }

    /// Appends `command` to the leader's log and returns its index. The entry is replicated from the next
    /// [`ready`](Raft::ready) on; its index lets the caller match it to the committed entry later (the
    /// term of the committed entry must equal the current term, or a new leader replaced it).
    pub fn propose(&mut self, command: Bytes) -> Result<Index, ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader { leader_hint: self.leader_id });
        }
        // Dissertation §3.10: during a transfer the leader stops accepting proposals, or it could keep
        // the target from ever catching up.
        if let Some(transfer) = self.transfer {
            return Err(ProposeError::LeadershipTransferInProgress { target: transfer.target });
        }
        let size = Entry::size_bytes_of_command(command.len());
        if self.uncommitted_bytes > 0 && self.uncommitted_bytes + size > self.config.max_uncommitted_bytes {
            return Err(ProposeError::ProposalDropped);
        }
        self.uncommitted_bytes += size;
        Ok(self.log.append_new(self.term, EntryPayload::Command(command)))
    }

    // ----- Role changes -----------------------------------------------------------------------------------

    /// Becomes a follower in `term` (which must not be older than the current one), with `leader` if
    /// known. A new term clears the vote.
    pub(crate) fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        assert!(term >= self.term, "{self}: become_follower to older term {term}");
        self.reset(term);
        self.role = Role::Follower;
        self.leader_id = leader;
    }

    pub(crate) fn become_pre_candidate(&mut self) {
        assert_ne!(self.role, Role::Leader, "{self}: a leader does not pre-campaign");
        // The term and vote stay as they are: nothing durable changes in a pre-election.
        self.reset(self.term);
        self.role = Role::PreCandidate;
        self.votes.insert(self.id, true);
    }

    pub(crate) fn become_candidate(&mut self) {
        assert_ne!(self.role, Role::Leader, "{self}: a leader does not campaign");
        self.reset(self.term + 1);
        self.role = Role::Candidate;
        self.vote = Some(self.id);
        // The vote for itself counts only once it is durable (see `on_persisted`): counting it earlier
        // would let a crash before the write leave this node free to vote again in the same term.
    }

    pub(crate) fn become_leader(&mut self) {
        assert_eq!(self.role, Role::Candidate, "{self}: only a candidate becomes leader");
        self.reset(self.term);
        self.role = Role::Leader;
        self.leader_id = Some(self.id);
        self.ticks_since_leader_contact = 0;
        let next_index = self.log.last_index() + 1;
        self.progress.insert(self.id, Progress::new(next_index));
        self.sync_progress_with_configuration();
        let own = self.progress.get_mut(&self.id).expect("the leader tracks itself");
        own.match_index = self.log.persisted_index();
        own.become_replicate();
        // §8: a new leader appends a no-op of its term at once, so that it can commit the entries of
        // earlier terms (§5.4.2) and learn the commit index that ReadIndex needs (§6.4).
        self.term_start_index = self.log.append_new(self.term, EntryPayload::Noop);
        self.reads.reset_for_new_term();
        self.lease.reset_for_new_term();
    }

    /// Everything a role change resets. Pending reads fail: only the leader that accepted them could
    /// confirm them.
    fn reset(&mut self, term: Term) {
        if term != self.term {
            self.term = term;
            self.vote = None;
        }
        self.leader_id = None;
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        self.reset_election_timer();
        self.votes.clear();
        self.progress.clear();
        self.peers.clear();
        self.uncommitted_bytes = 0;
        self.transfer = None;
        self.term_start_index = 0;
        self.reads.fail_all(crate::error::ReadIndexError::SteppedDown);
    }

    pub(crate) fn reset_election_timer(&mut self) {
        let min = self.config.election_timeout_ticks;
        self.randomized_election_timeout = min + self.rng.next_u64() % min;
    }

    /// True if this node may start elections: it votes in the current configuration — or the
    /// configuration leaves it out but is not known committed. Such a server (a leader that removed
    /// itself and lost its leadership, say) may hold the only copy of C_new, and so the longest log: the
    /// others would refuse it their votes while it could not campaign, and a small C_old could then
    /// elect nobody. It campaigns counted by C_new alone, leads without counting itself, and steps down
    /// once C_new is committed (§6), like any leader outside its configuration.
    pub(crate) fn is_promotable(&self) -> bool {
        quorum::is_voter(&self.configuration, self.id)
            || (self.configuration_index > self.commit && !self.configuration.voters.is_empty())
    }

    /// Recomputes the configuration in force from the log (the latest configuration entry) or the
    /// snapshot. Called after appends that carry or remove configuration entries; rare, so a backwards
    /// scan is fine.
    pub(crate) fn refresh_configuration(&mut self) {
        let (snapshot_index, snapshot_term) = self.log.snapshot_boundary();
        let mut index = self.log.last_index();
        while index > snapshot_index {
            let entry = self.log.entry(index).expect("entries after the boundary are held");
            if let EntryPayload::Config(configuration) = &entry.payload {
                self.configuration = configuration.clone();
                self.configuration_index = entry.index;
                self.configuration_term = entry.term;
                return;
            }
            index -= 1;
        }
        self.configuration = self.snapshot_configuration.clone();
        self.configuration_index = snapshot_index;
        self.configuration_term = snapshot_term;
    }

    // ----- Output ----------------------------------------------------------------------------------------

    /// Queues a message that promises nothing durable.
    pub(crate) fn send_now(&mut self, message: Message) {
        self.outbox.push(message);
    }

    /// Queues a message that may leave only once `needs` is durable.
    pub(crate) fn send_when_durable(&mut self, message: Message, needs: Durability) {
        match self.durability_of(&needs) {
            Some(true) => self.outbox.push(message),
            Some(false) => self.held.push(HeldMessage { message, needs }),
            None => unreachable!("{self}: a new message cannot wait for a truncated entry"),
        }
    }

    /// Moves held messages whose promise is now durable to the outbox; drops those whose promise was
    /// overtaken (an acknowledged entry was truncated before it became durable: the ack would be false).
    fn release_held(&mut self) {
        if self.held.is_empty() {
            return;
        }
        let held = std::mem::take(&mut self.held);
        for item in held {
            match self.durability_of(&item.needs) {
                Some(true) => self.outbox.push(item.message),
                Some(false) => self.held.push(item),
                None => {}
            }
        }
    }

    /// `Some(true)` if `needs` is durable, `Some(false)` if not yet, `None` if it never will be.
    fn durability_of(&self, needs: &Durability) -> Option<bool> {
        let persisted = &self.persisted_hard_state;
        let hard_state_durable = persisted.term > needs.term
            || (persisted.term == needs.term && (needs.vote.is_none() || persisted.vote == needs.vote));
        let log_durable = match needs.log {
            None => true,
            Some((index, term)) => {
                if self.log.term_at(index) != Some(term) {
                    return None;
                }
                self.log.persisted_index() >= index
            }
        };
        Some(hard_state_durable && log_durable)
    }

    /// True if a call to [`ready`](Raft::ready) would return anything.
    pub fn has_ready(&self) -> bool {
        !self.outbox.is_empty()
            || self.hard_state() != self.handed_out_hard_state
            || self.log.has_unstable()
            || self.applying < self.commit.min(self.log.persisted_index())
            || self.reads.has_output()
            || self.snapshot_install.is_some()
            || !self.snapshot_reads.is_empty()
            || !self.snapshot_writes.is_empty()
            || (self.role == Role::Leader && (self.has_appends_to_send() || self.reads.wants_round()))
    }

    /// Collects the work for the caller. See [`Ready`] for the order in which to do it.
    pub fn ready(&mut self) -> Ready {
        if self.role == Role::Leader {
            if self.reads.wants_round() {
                self.broadcast_heartbeat();
            }
            self.send_appends();
        }
        let hard_state = self.hard_state();
        let changed_hard_state = (hard_state != self.handed_out_hard_state).then_some(hard_state);
        self.handed_out_hard_state = hard_state;
        let entries = self.log.take_unstable();
        let snapshot = self.snapshot_install.take();
        let persist = changed_hard_state.is_some() || !entries.is_empty() || snapshot.is_some();
        if persist {
            self.ready_sequence += 1;
        }
        let persist_mark = persist.then(|| PersistMark {
            sequence: self.ready_sequence,
            hard_state,
            last_index: self.log.last_index(),
            last_term: self.log.last_term(),
        });
        let limit = self.config.max_committed_entries_per_ready as Index;
        let apply_to = self.commit.min(self.log.persisted_index()).min(self.applying + limit);
        let committed_entries = if apply_to > self.applying {
            let entries = self.log.slice(self.applying + 1, apply_to).to_vec();
            assert_eq!(entries.len() as Index, apply_to - self.applying, "{self}: committed entries missing");
            self.applying = apply_to;
            entries
        } else {
            Vec::new()
        };
        let (read_states, failed_reads) = self.reads.take_output();
        self.debug_check_invariants();
        Ready {
            hard_state: changed_hard_state,
            entries,
            messages: std::mem::take(&mut self.outbox),
            committed_entries,
            read_states,
            failed_reads,
            persist_mark,
            snapshot,
            snapshot_reads: std::mem::take(&mut self.snapshot_reads),
            snapshot_writes: std::mem::take(&mut self.snapshot_writes),
        }
    }

    /// The caller reports that the hard state and log in `mark` (and every earlier `Ready`) are durable.
    /// Held messages covered by it are released into the next `Ready`; a leader counts its own log
    /// toward commitment up to here; a candidate's vote for itself starts to count.
    pub fn on_persisted(&mut self, mark: PersistMark) {
        // A mark covers every earlier `Ready`; an older or repeated mark says nothing new.
        if mark.sequence <= self.persisted_sequence {
            return;
        }
        assert!(
            mark.sequence <= self.ready_sequence,
            "{self}: persist mark {} was never handed out",
            mark.sequence
        );
        self.persisted_sequence = mark.sequence;
        let persisted = mark.hard_state;
        if persisted.term >= self.persisted_hard_state.term {
            assert!(
                persisted.term > self.persisted_hard_state.term
                    || self.persisted_hard_state.vote.is_none()
                    || persisted.vote == self.persisted_hard_state.vote
                    || injected!(self, DoubleVote),
                "{self}: durable vote changed within term {} ({:?} -> {:?})",
                persisted.term,
                self.persisted_hard_state.vote,
                persisted.vote
            );
            self.persisted_hard_state = persisted;
        }
        self.log.persisted_to(mark.last_index, mark.last_term);
        match self.role {
            Role::Leader => {
                let persisted_index = self.log.persisted_index();
                if let Some(own) = self.progress.get_mut(&self.id) {
                    own.maybe_update(persisted_index);
                }
                self.maybe_commit();
            }
            Role::Candidate => self.maybe_count_own_vote(),
            _ => {}
        }
        self.release_held();
        self.debug_check_invariants();
    }

    /// The caller applied every committed entry handed out so far.
    pub fn advance(&mut self) {
        self.on_applied(self.applying);
    }

    /// The caller applied every committed entry up to `index` (for callers that apply asynchronously).
    ///
    /// # Panics
    /// If `index` was never handed out for applying, or goes back.
    pub fn on_applied(&mut self, index: Index) {
        assert!(
            index <= self.applying && index >= self.applied,
            "{self}: applied index {index} outside handed-out range {}..={}",
            self.applied,
            self.applying
        );
        self.applied = index;
    }

    /// Advances the commit index (never backwards, never past the log).
    pub(crate) fn commit_to(&mut self, index: Index) {
        if index <= self.commit {
            return;
        }
        assert!(index <= self.log.last_index(), "{self}: commit to {index} beyond the log");
        self.commit = index;
    }
}

impl Raft {
    /// Checks the invariants stated in the field docs (debug builds, which include the test profile).
    pub(crate) fn debug_check_invariants(&self) {
        if !cfg!(debug_assertions) {
            return;
        }
        let last_index = self.log.last_index();
        debug_assert!(self.commit <= last_index, "{self}: commit beyond the log");
        debug_assert!(self.applied <= self.applying, "{self}: applied beyond handed out");
        debug_assert!(self.applying <= self.commit, "{self}: handed out uncommitted entries");
        let (snapshot_index, _) = self.log.snapshot_boundary();
        debug_assert!(
            self.applying <= self.log.persisted_index() || self.applying == snapshot_index,
            "{self}: handed out undurable entries"
        );
        debug_assert!(
            snapshot_index <= self.applied.max(self.applying),
            "{self}: compacted unapplied entries"
        );
        debug_assert!(self.persisted_hard_state.term <= self.term, "{self}: durable term ahead of memory");
        if self.role == Role::Leader {
            debug_assert_eq!(self.leader_id, Some(self.id), "{self}: a leader leads");
            debug_assert!(
                self.vote == Some(self.id) || injected!(self, DoubleVote),
                "{self}: a leader voted for itself"
            );
            // Once committed, the term's no-op is in the log (or compacted into the snapshot, whose
            // boundary is then at or after it, and so of this term too: every entry after it is).
            debug_assert!(
                self.commit < self.term_start_index
                    || self.log.term_at(self.term_start_index.max(snapshot_index)) == Some(self.term),
                "{self}: the committed no-op of term {} at {} is not of this term",
                self.term,
                self.term_start_index
            );
            for (id, pr) in &self.progress {
                debug_assert!(pr.match_index <= last_index, "{self}: {id} matches beyond the log ({pr})");
                debug_assert!(pr.match_index < pr.next_index, "{self}: {id} has next <= match ({pr})");
                debug_assert_eq!(
                    pr.snapshot.is_some(),
                    pr.state == crate::progress::ProgressState::Snapshot,
                    "{self}: {id} has a transfer exactly in the snapshot state ({pr})"
                );
            }
            let members = self.configuration.members();
            debug_assert!(
                self.progress.keys().all(|id| *id == self.id || members.contains(id))
                    && members.iter().all(|id| self.progress.contains_key(id)),
                "{self}: progress is tracked for exactly the members {members:?}"
            );
            let own = self.progress.get(&self.id).map_or(0, |pr| pr.match_index);
            debug_assert!(own <= self.log.persisted_index(), "{self}: counts undurable entries for itself");
        } else {
            debug_assert!(self.progress.is_empty(), "{self}: only a leader tracks progress");
            debug_assert!(self.transfer.is_none(), "{self}: only a leader transfers leadership");
        }
    }
}

impl fmt::Display for Raft {
    /// One line for panic messages and scenario output:
    /// `node 1 leader t3 vote=1 commit=5 applied=4 last=6@3 persisted=6`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let role = match self.role {
            Role::Follower => "follower",
            Role::PreCandidate => "precandidate",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
        };
        write!(f, "node {} {role} t{} vote=", self.id, self.term)?;
        match self.vote {
            Some(vote) => write!(f, "{vote}")?,
            None => write!(f, "-")?,
        }
        write!(
            f,
            " commit={} applied={} last={}@{} persisted={}",
            self.commit,
            self.applied,
            self.log.last_index(),
            self.log.last_term(),
            self.log.persisted_index()
        )
    }
}

impl fmt::Debug for Raft {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}
