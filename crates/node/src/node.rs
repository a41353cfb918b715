//! The node: one consensus core, its storage and its state machine, driven in the order the core's
//! contract allows — send what is safe to send, persist, apply, advance — plus everything between a client
//! and the log: proposal tracking and retries, forwarding to the leader, ReadIndex reads, the session.
//!
//! The node is single-threaded and does no I/O of its own beyond what it is given: storage over a
//! [`storage::Disk`], a [`Transport`], a [`Clock`]. Each input (`tick`, `receive`, `submit`) runs to
//! completion, including every `Ready` it causes, before it returns.

use kv::{Command, KvStateMachine, Reply, Request, RequestBody, SessionRef};
use raft::{Entry, EntryPayload, NodeId, ProposeError, Raft, ReadIndexError};
use storage::{Disk, Storage};

use crate::io::{Clock, Observer, Transport};
use crate::peer::PeerMessage;
use crate::pending::{ClientToken, PendingCommands, Stage};
use crate::reads::{PendingReads, Read};
use crate::session::{OwnSession, SessionState};

/// How a read wants to be served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consistency {
    /// Linearizable, through ReadIndex (the default).
    Linearizable,
    /// From this node's state machine as it is: fast, possibly stale (Redis's `READONLY`).
    Stale,
}

/// Timing of the glue, in the core's ticks.
#[derive(Clone, Copy, Debug)]
pub struct NodeTiming {
    /// A client request not answered within this many ticks gets an error.
    pub client_timeout_ticks: u64,
    /// A command or read batch not answered within this many ticks is sent again (same sequence).
    pub retry_ticks: u64,
}

/// An answer for a client.
#[derive(Clone, Debug, PartialEq)]
pub struct Completion {
    pub token: ClientToken,
    pub reply: Reply,
}

/// Errors that stop the node. Everything a client or a peer can cause is an answer or a log line instead.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("storage failed, the node must stop: {0}")]
    Storage(#[from] storage::Error),
}

/// The error texts clients see, in Redis's style.
pub mod errors {
    /// Nothing was proposed: safe to retry.
    pub const NO_LEADER: &str = "TRYAGAIN no leader is known; the command was not applied";
    /// The leader refused before proposing (too many uncommitted bytes): safe to retry.
    pub const OVERLOADED: &str = "TRYAGAIN the leader is overloaded; the command was not applied";
    /// A command that may have been proposed timed out.
    pub const OUTCOME_UNKNOWN: &str =
        "TIMEOUT the command was sent to the leader but not confirmed in time; it may or may not have been applied";
    /// A read timed out (reads change nothing, so this is always safe to retry).
    pub const READ_TIMEOUT: &str = "TRYAGAIN the read could not be confirmed by a leader in time";
}

/// One node of the cluster.
pub struct Node<D: Disk, T: Transport, C: Clock, O: Observer> {
    id: NodeId,
    raft: Raft,
    storage: Storage<D>,
    machine: KvStateMachine,
    transport: T,
    clock: C,
    observer: O,
    timing: NodeTiming,
    session: OwnSession,
    commands: PendingCommands,
    reads: PendingReads,
    /// The leader's side of followers' read-index requests: local ctx → (follower, its ctx).
    remote_reads: std::collections::BTreeMap<u64, (NodeId, u64)>,
    /// Local ctx numbers for remote reads live above `REMOTE_CTX_BASE`, so they never collide with our own
    /// batches (whose numbers start at `incarnation << 32`).
    next_remote_ctx: u64,
    completions: Vec<Completion>,
    now_tick: u64,
    applied_index: raft::Index,
    /// Between [`Node::begin_batch`] and [`Node::end_batch`]: inputs only feed the core, and the Ready loop
    /// runs once at the end, so one write and one fsync cover every input of the batch (group commit).
    batching: bool,
}

const REMOTE_CTX_BASE: u64 = 1 << 62;

/// Whether an applied request came from this node's current session, and as what.
enum OwnRequest {
    NotOurs,
    Registration,
    Command { sequence: u64 },
}

impl OwnRequest {
    fn of(request: &Request, own: kv::ClientId) -> OwnRequest {
        match (&request.body, request.session) {
            (RequestBody::RegisterSession { client_id }, _) if *client_id == own => OwnRequest::Registration,
            (RequestBody::Command(_), Some(session)) if session.client_id == own => {
                OwnRequest::Command { sequence: session.sequence }
            }
            _ => OwnRequest::NotOurs,
        }
    }
}

impl<D: Disk, T: Transport, C: Clock, O: Observer> Node<D, T, C, O> {
    /// Builds a node from its parts. `applied_index` is where `machine` stands (a snapshot's index, or 0);
    /// `incarnation` is the persisted counter that makes this life's client ids unique.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        raft: Raft,
        storage: Storage<D>,
        machine: KvStateMachine,
        applied_index: raft::Index,
        incarnation: u64,
        timing: NodeTiming,
        transport: T,
        clock: C,
        observer: O,
    ) -> Self {
        let id = raft.id();
        Node {
            id,
            raft,
            storage,
            machine,
            transport,
            clock,
            observer,
            timing,
            session: OwnSession::new(id, incarnation),
            commands: PendingCommands::default(),
            reads: PendingReads::new(incarnation),
            remote_reads: Default::default(),
            next_remote_ctx: REMOTE_CTX_BASE,
            completions: Vec::new(),
            now_tick: 0,
            applied_index,
            batching: false,
        }
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The consensus core, read-only (status pages, the simulator's checks).
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    pub fn state_machine(&self) -> &KvStateMachine {
        &self.machine
    }

    pub fn applied_index(&self) -> raft::Index {
        self.applied_index
    }

    pub fn observer(&self) -> &O {
        &self.observer
    }

    pub fn observer_mut(&mut self) -> &mut O {
        &mut self.observer
    }

    /// Client requests not answered yet.
    pub fn pending_requests(&self) -> usize {
        self.commands.len() + usize::from(!self.reads.is_empty())
    }

    /// Answers produced since the last call.
    pub fn take_completions(&mut self) -> Vec<Completion> {
        std::mem::take(&mut self.completions)
    }

    /// One tick of logical time: the core's timers, then retries and deadlines of client requests.
    pub fn tick(&mut self) -> Result<(), NodeError> {
        self.now_tick += 1;
        self.raft.tick();
        self.reads.on_tick();
        self.expire_requests();
        for ctx in self.reads.stale_batches(self.now_tick, self.timing.retry_ticks) {
            self.reads.give_up_on(ctx);
        }
        self.drive()
    }

    /// A message from another node. Malformed consensus messages are dropped with a log line: nothing a
    /// peer sends can stop this node.
    pub fn receive(&mut self, from: NodeId, message: PeerMessage) -> Result<(), NodeError> {
        match message {
            PeerMessage::Raft(message) => {
                if let Err(error) = self.raft.step(message) {
                    tracing::debug!(node = self.id, from, %error, "dropped a message");
                }
            }
            PeerMessage::Forward { session, body } => self.propose_forwarded(from, session, body),
            PeerMessage::ForwardRejected { sequence, leader_hint, overloaded } => {
                self.forward_rejected(sequence, leader_hint, overloaded)
            }
            PeerMessage::ReadIndexRequest { ctx } => self.remote_read_index(from, ctx),
            PeerMessage::ReadIndexResponse { ctx, index, .. } => match index {
                Some(index) => self.reads.confirm(ctx, index, from),
                None => self.reads.retry(ctx, from),
            },
        }
        self.drive()
    }

    /// A client's command. Writes go through the log; reads through ReadIndex, or straight to the state
    /// machine with `Consistency::Stale`. The answer comes back through [`Node::take_completions`].
    pub fn submit(
        &mut self,
        token: ClientToken,
        command: Command,
        consistency: Consistency,
    ) -> Result<(), NodeError> {
        let deadline_tick = self.now_tick + self.timing.client_timeout_ticks;
        if command.is_read() {
            let read = Read { token, command, deadline_tick };
            match consistency {
                Consistency::Stale => self.serve_read(read),
                Consistency::Linearizable => self.reads.push(read),
            }
        } else {
            self.commands.insert(token, command, deadline_tick);
        }
        self.drive()
    }

    /// Starts a batch: the inputs that follow feed the core without running its Ready loop, until
    /// [`Node::end_batch`] runs it once for all of them. A server calls this around the events that arrived
    /// together, so that one write and one fsync cover them all; the order of effects within that Ready
    /// (persist, send, apply, advance) is unchanged.
    pub fn begin_batch(&mut self) {
        self.batching = true;
    }

    /// Ends a batch and runs everything its inputs made possible.
    pub fn end_batch(&mut self) -> Result<(), NodeError> {
        self.batching = false;
        self.drive()
    }

    /// Runs everything the last input made possible, until the core has nothing more to say.
    fn drive(&mut self) -> Result<(), NodeError> {
        if self.batching {
            return Ok(());
        }
        // Bounded: each pass either makes progress or the core reports no Ready. The bound only guards
        // against a bug in that reasoning, loudly.
        for _ in 0..1_000 {
            self.open_session_if_needed();
            self.send_due_commands();
            self.ask_for_read_index();
            if !self.raft.has_ready() {
                self.serve_applied_reads();
                return Ok(());
            }
            self.handle_ready()?;
        }
        panic!("node {}: the core kept producing Ready batches without end", self.id);
    }

    /// One Ready, in the contract's order.
    fn handle_ready(&mut self) -> Result<(), NodeError> {
        let ready = self.raft.ready();
        // 1. Send. Everything in `messages` is safe to send before this node's own write: the core holds
        //    back whatever promises durable state (vote grants, a candidate's vote requests, append
        //    acks) until `on_persisted` covers it. Sending first lets a leader's appends reach the
        //    followers while its own fsync runs (dissertation §10.2.1); it counts itself toward a commit
        //    only once its write is durable.
        for message in ready.messages {
            self.transport.send(message.to, PeerMessage::Raft(message));
        }
        // 2. Persist: one write, one fsync. Messages released by `on_persisted` leave in the next Ready.
        if ready.hard_state.is_some() || !ready.entries.is_empty() {
            self.storage.write(ready.hard_state, &ready.entries)?;
            self.observer.persisted(ready.hard_state.as_ref(), &ready.entries);
        }
        if let Some(mark) = ready.persist_mark {
            self.raft.on_persisted(mark);
        }
        // 3. Apply, in order.
        for entry in &ready.committed_entries {
            self.apply(entry);
        }
        // 4. Reads that became safe, and reads that failed.
        for read_state in ready.read_states {
            self.read_index_confirmed(read_state.ctx, Some(read_state.index));
        }
        for failed in ready.failed_reads {
            self.read_index_confirmed(failed.ctx, None);
        }
        // issue 6: not wired yet. This glue never calls `compact` or `snapshot_received`, so `snapshot` and
        // `snapshot_reads` stay empty, and no honest peer sends snapshot chunks (every log starts at index
        // 0). Chunks a peer sends anyway are dropped here: the core then never hears of a complete file and
        // installs nothing.
        let _ = (ready.snapshot, ready.snapshot_reads, ready.snapshot_writes);
        self.raft.advance();
        Ok(())
    }

    fn apply(&mut self, entry: &Entry) {
        assert_eq!(
            entry.index,
            self.applied_index + 1,
            "node {}: applying index {} after {} (committed entries must come in order)",
            self.id,
            entry.index,
            self.applied_index
        );
        self.applied_index = entry.index;
        self.observer.applied(entry);
        let EntryPayload::Command(bytes) = &entry.payload else {
            self.machine.apply_other(entry.index);
            return;
        };
        let Ok(request) = Request::decode(bytes) else {
            // Every replica answers undecodable bytes the same way; nobody waits for them.
            self.machine.apply(entry.index, bytes);
            return;
        };
        let ours = OwnRequest::of(&request, self.session.client_id());
        let reply = self.machine.apply_request(entry.index, request);
        self.on_own_request_applied(ours, reply);
    }

    /// If the applied request was ours, its client gets `reply` (or the session is renewed and it is resent).
    fn on_own_request_applied(&mut self, ours: OwnRequest, reply: Reply) {
        match ours {
            OwnRequest::NotOurs => {}
            OwnRequest::Registration => self.session.set_state(SessionState::Open),
            OwnRequest::Command { sequence } => {
                let Some(token) = self.commands.token_of_sequence(sequence) else {
                    return; // Answered already (a duplicate applied), or given up on.
                };
                if reply.is_session_expired() {
                    // Rejected, so certainly not applied: open a new session and resend everything.
                    self.session.renew();
                    self.commands.unnumber_all();
                    return;
                }
                self.commands.remove(token);
                self.session.answered(sequence);
                self.completions.push(Completion { token, reply });
            }
        }
    }

    /// Proposes the session registration once there is something to send and a leader to send it to, and
    /// again if it got lost.
    fn open_session_if_needed(&mut self) {
        if self.commands.is_empty() || !self.session.registration_due(self.now_tick, self.timing.retry_ticks)
        {
            return;
        }
        let body = RequestBody::RegisterSession { client_id: self.session.client_id() };
        if self.propose_or_forward(None, body).is_some() {
            self.session.set_state(SessionState::Registering { sent_tick: self.now_tick });
        }
    }

    /// Numbers waiting commands once the session is open, and (re)sends every command that is due.
    fn send_due_commands(&mut self) {
        if self.session.state() != SessionState::Open {
            return;
        }
        for token in self.commands.awaiting_session() {
            let sequence = self.session.allocate();
            self.commands.number(token, sequence);
        }
        for (token, sequence) in self.commands.due_for_send(self.now_tick, self.timing.retry_ticks) {
            let command = self.commands.get(token).expect("due command is pending").command.clone();
            let session = self.session.reference(sequence);
            // With no leader known the command stays unsent, and the next pass tries again.
            if let Some(to) = self.propose_or_forward(Some(session), RequestBody::Command(command)) {
                self.commands.mark_sent(token, self.now_tick, to);
            }
        }
    }

    /// Proposes `body` here if this node leads, else forwards it to the leader. Returns who got it.
    fn propose_or_forward(&mut self, session: Option<SessionRef>, body: RequestBody) -> Option<NodeId> {
        let leader = self.raft.leader_id()?;
        if leader == self.id {
            let request = Request { session, leader_time_ms: self.clock.now_ms(), body };
            return match self.raft.propose(request.encode()) {
                Ok(_) => Some(self.id),
                Err(ProposeError::ProposalDropped) => {
                    self.refused_before_proposing(session.map(|s| s.sequence));
                    None
                }
                Err(_) => None,
            };
        }
        self.transport.send(leader, PeerMessage::Forward { session, body });
        Some(leader)
    }

    /// The leader side of a forward.
    fn propose_forwarded(&mut self, from: NodeId, session: Option<SessionRef>, body: RequestBody) {
        let sequence = session.map(|s| s.sequence);
        let request = Request { session, leader_time_ms: self.clock.now_ms(), body };
        let (leader_hint, overloaded) = match self.raft.propose(request.encode()) {
            Ok(_) => return,
            Err(ProposeError::NotLeader { leader_hint }) => (leader_hint, false),
            Err(ProposeError::ProposalDropped) => (Some(self.id), true),
        };
        self.transport.send(from, PeerMessage::ForwardRejected { sequence, leader_hint, overloaded });
    }

    fn forward_rejected(&mut self, sequence: Option<u64>, leader_hint: Option<NodeId>, overloaded: bool) {
        let Some(sequence) = sequence else {
            // A registration that was not proposed: try again.
            // A registration that was not proposed: send it again at the next tick (never at once).
            if matches!(self.session.state(), SessionState::Registering { .. }) {
                let sent_tick = (self.now_tick + 1).saturating_sub(self.timing.retry_ticks);
                self.session.set_state(SessionState::Registering { sent_tick });
            }
            return;
        };
        let Some(token) = self.commands.token_of_sequence(sequence) else { return };
        if overloaded {
            return self.refused_before_proposing(Some(sequence));
        }
        // Resend at the next tick rather than after the whole retry interval; the core learns who leads
        // from the leader's own heartbeats, so the hint is only for the log.
        tracing::debug!(node = self.id, sequence, ?leader_hint, "forward rejected; resending");
        self.commands.mark_due_next_tick(token, self.now_tick, self.timing.retry_ticks);
    }

    /// The leader refused `sequence` before proposing it. If no earlier attempt could have been proposed,
    /// the client gets a clean `-TRYAGAIN`; otherwise the command keeps waiting for its earlier attempt.
    fn refused_before_proposing(&mut self, sequence: Option<u64>) {
        let Some(token) = sequence.and_then(|s| self.commands.token_of_sequence(s)) else { return };
        let never_proposed = self.commands.get(token).is_some_and(|p| !p.may_have_been_proposed);
        if never_proposed {
            self.commands.remove(token);
            self.session.answered(sequence.expect("token came from a sequence"));
            self.completions.push(Completion { token, reply: Reply::error(errors::OVERLOADED) });
        }
    }

    /// Answers every request whose deadline passed.
    fn expire_requests(&mut self) {
        for token in self.commands.expired(self.now_tick) {
            let pending = self.commands.remove(token).expect("expired command is pending");
            if let Stage::Numbered { sequence, .. } = pending.stage {
                self.session.answered(sequence);
            }
            let text =
                if pending.may_have_been_proposed { errors::OUTCOME_UNKNOWN } else { errors::NO_LEADER };
            self.completions.push(Completion { token, reply: Reply::error(text) });
        }
        for read in self.reads.take_expired(self.now_tick) {
            self.completions
                .push(Completion { token: read.token, reply: Reply::error(errors::READ_TIMEOUT) });
        }
    }

    /// Starts a read-index round for reads that arrived since the last one.
    fn ask_for_read_index(&mut self) {
        let Some(leader) = self.raft.leader_id() else { return };
        let Some(ctx) = self.reads.start_batch(self.now_tick, leader) else { return };
        if leader == self.id {
            if let Err(error) = self.raft.read_index(ctx) {
                tracing::debug!(node = self.id, %error, "read index refused; will retry");
                self.reads.retry(ctx, self.id);
            }
        } else {
            self.transport.send(leader, PeerMessage::ReadIndexRequest { ctx });
        }
    }

    /// The leader side of a follower's read-index request.
    fn remote_read_index(&mut self, from: NodeId, their_ctx: u64) {
        self.next_remote_ctx += 1;
        let ctx = self.next_remote_ctx;
        match self.raft.read_index(ctx) {
            Ok(()) => {
                self.remote_reads.insert(ctx, (from, their_ctx));
            }
            Err(ReadIndexError::NotLeader { leader_hint }) => {
                let reply = PeerMessage::ReadIndexResponse { ctx: their_ctx, index: None, leader_hint };
                self.transport.send(from, reply);
            }
            Err(_) => {
                let reply = PeerMessage::ReadIndexResponse { ctx: their_ctx, index: None, leader_hint: None };
                self.transport.send(from, reply);
            }
        }
    }

    fn read_index_confirmed(&mut self, ctx: u64, index: Option<raft::Index>) {
        if let Some((follower, their_ctx)) = self.remote_reads.remove(&ctx) {
            let leader_hint = self.raft.leader_id();
            self.transport
                .send(follower, PeerMessage::ReadIndexResponse { ctx: their_ctx, index, leader_hint });
            return;
        }
        match index {
            Some(index) => self.reads.confirm(ctx, index, self.id),
            None => self.reads.retry(ctx, self.id),
        }
    }

    fn serve_applied_reads(&mut self) {
        for read in self.reads.take_servable(self.applied_index) {
            self.serve_read(read);
        }
    }

    fn serve_read(&mut self, read: Read) {
        // "Now" for expiry is the leader time of the latest applied entry, never this node's clock.
        let reply = self.machine.read(&read.command, self.machine.time_ms());
        self.completions.push(Completion { token: read.token, reply });
    }
}
