//! The node: one consensus core, its storage and its state machine, driven in the order the core's
//! contract allows — send what is safe to send, persist, apply, advance — plus everything between a client
//! and the log: proposal tracking and retries, forwarding to the leader, ReadIndex reads, the session.
//!
//! The node is single-threaded and does no I/O of its own beyond what it is given: storage over a
//! [`storage::Disk`], a [`Transport`], a [`Clock`]. Each input (`tick`, `receive`, `submit`) runs to
//! completion, including every `Ready` it causes, before it returns.

use kv::{Command, KvStateMachine, Reply, Request, RequestBody, SessionRef};
use raft::{
    Entry, EntryPayload, NodeId, ProposeError, Raft, ReadIndexError, SnapshotInstall, SnapshotMeta,
    SnapshotRead, SnapshotWrite,
};
use storage::{Disk, FinishedSnapshot, ReceivingSnapshot, Storage};

use crate::io::{Clock, Observer, Transport};
use crate::peer::PeerMessage;
use crate::pending::{ClientToken, PendingCommands, Stage};
use crate::reads::{PendingReads, Read};
use crate::session::{OwnSession, SessionState};
use crate::snapshots::{InlineWorker, SnapshotJob, SnapshotPolicy, SnapshotWorker};

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
    /// When to take a snapshot of the state machine, and who writes it.
    snapshot_policy: SnapshotPolicy,
    snapshot_worker: Box<dyn SnapshotWorker>,
    /// The index of this node's own snapshot being written, if one is.
    snapshot_in_progress: Option<raft::Index>,
    /// The snapshot file arriving from a leader (InstallSnapshot), chunk by chunk.
    receiving: Option<ReceivingSnapshot>,
    /// A received, verified snapshot the core accepted: published when its `Ready::snapshot` comes.
    received: Option<FinishedSnapshot>,
}

/// What became of a received snapshot file whose last chunk was written.
enum Received {
    Verified(FinishedSnapshot),
    Failed(SnapshotMeta),
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
            snapshot_policy: SnapshotPolicy::NEVER,
            snapshot_worker: Box::new(InlineWorker::default()),
            snapshot_in_progress: None,
            receiving: None,
            received: None,
        }
    }

    /// Takes snapshots by `policy`, written by `worker` (the default: never, written inline).
    pub fn with_snapshots(mut self, policy: SnapshotPolicy, worker: Box<dyn SnapshotWorker>) -> Self {
        self.snapshot_policy = policy;
        self.snapshot_worker = worker;
        self
    }

    /// The storage, read-only (status pages, tests).
    pub fn storage(&self) -> &Storage<D> {
        &self.storage
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

    /// The transport, to change whom it reaches when the configuration changes (the server connects to
    /// added members and drops removed ones).
    pub fn transport_mut(&mut self) -> &mut T {
        &mut self.transport
    }

    /// Client requests not answered yet.
    pub fn pending_requests(&self) -> usize {
        self.commands.len() + usize::from(!self.reads.is_empty())
    }

    /// Gives the core the monotonic time, just before an input that may stamp a heartbeat round or check
    /// a read lease (so a round's stamp is never later than its send, and a lease is checked at the
    /// moment the read really arrived).
    /// Without leases the core never looks at the time, so the clock is not read.
    fn feed_clock(&mut self) {
        if self.raft.leases_enabled() {
            self.raft.set_now(self.clock.monotonic_nanos());
        }
    }

    /// Answers produced since the last call.
    pub fn take_completions(&mut self) -> Vec<Completion> {
        std::mem::take(&mut self.completions)
    }

    /// One tick of logical time: the core's timers, then retries and deadlines of client requests.
    pub fn tick(&mut self) -> Result<(), NodeError> {
        self.now_tick += 1;
        self.feed_clock();
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
                Some(index) => {
                    self.reads.confirm(ctx, index, from);
                }
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

    /// Asks the core to change the cluster's membership (leader only; see
    /// [`raft::Raft::propose_conf_change`]) and runs what it made possible. The outer error is this
    /// node's failure (as for any input); the inner one says why the core refused the change. The change
    /// is done when [`raft::Raft::configuration`] shows the target and
    /// [`raft::Raft::conf_change_in_progress`] is false; the state machine never sees configuration
    /// entries, and snapshots carry the configuration in force at their index.
    pub fn propose_conf_change(
        &mut self,
        change: raft::ConfChange,
    ) -> Result<Result<raft::Index, raft::ConfChangeError>, NodeError> {
        let result = self.raft.propose_conf_change(change);
        self.drive()?;
        Ok(result)
    }

    /// Asks the leader to hand leadership to `target` (see [`raft::Raft::transfer_leadership`]); the
    /// outer error is this node's failure, the inner one the core's refusal.
    pub fn transfer_leadership(
        &mut self,
        target: NodeId,
    ) -> Result<Result<(), raft::TransferError>, NodeError> {
        let result = self.raft.transfer_leadership(target);
        self.drive()?;
        Ok(result)
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
                return self.maybe_snapshot();
            }
            self.handle_ready()?;
        }
        panic!("node {}: the core kept producing Ready batches without end", self.id);
    }

    /// One Ready, in the contract's order.
    fn handle_ready(&mut self) -> Result<(), NodeError> {
        self.feed_clock();
        let ready = self.raft.ready();
        // 1. Send. Everything in `messages` is safe to send before this node's own write: the core holds
        //    back whatever promises durable state (vote grants, a candidate's vote requests, append
        //    acks) until `on_persisted` covers it. Sending first lets a leader's appends reach the
        //    followers while its own fsync runs (dissertation §10.2.1); it counts itself toward a commit
        //    only once its write is durable.
        for message in ready.messages {
            self.transport.send(message.to, PeerMessage::Raft(message));
        }
        // 2. Persist: an installed snapshot first (it is the log's new start), then one write, one fsync.
        //    Messages released by `on_persisted` leave in the next Ready.
        if let Some(install) = &ready.snapshot {
            self.persist_installed_snapshot(install)?;
        }
        let must_write = !ready.entries.is_empty() || ready.snapshot.is_some();
        if let Some(hard_state) = self.hard_state_to_write(ready.persist_mark.as_ref(), must_write) {
            self.storage.write(hard_state, &ready.entries)?;
            self.observer.persisted(hard_state.as_ref(), &ready.entries);
        }
        // Chunks of a snapshot being received promise nothing, so they need not be durable for the mark.
        let received = self.write_snapshot_chunks(ready.snapshot_writes)?;
        if let Some(mark) = ready.persist_mark {
            self.raft.on_persisted(mark);
        }
        // 3. Apply, in order: an installed snapshot replaces the state machine before the entries after it.
        if let Some(install) = &ready.snapshot {
            self.restore_installed_snapshot(&install.meta)?;
        }
        for entry in &ready.committed_entries {
            self.apply(entry);
        }
        // 4. Reads that became safe, and reads that failed.
        for read_state in ready.read_states {
            let reads = self.read_index_confirmed(read_state.ctx, Some(read_state.index)) as u64;
            self.observer.reads_confirmed(read_state.by_lease, reads);
        }
        for failed in ready.failed_reads {
            self.read_index_confirmed(failed.ctx, None);
        }
        self.raft.advance();
        // After the handshake, so their effects land in the next Ready: tell the core about completed
        // snapshot files, and serve the chunks it wants to send.
        self.report_received_snapshots(received);
        self.serve_snapshot_reads(ready.snapshot_reads);
        Ok(())
    }

    /// Whether this Ready needs a write (and an fsync), and with which hard state: `None` if it needs none.
    ///
    /// The commit index is volatile state (Figure 2 of the Raft paper): a node that restarts with an older
    /// one learns the newer from the leader, or, leading, commits again by counting (§5.4.2). So a Ready
    /// that changes nothing durable but the commit index is not written: on a leader that Ready comes
    /// right after a follower's acknowledgement, and an fsync there would sit between the commit and the
    /// client's answer (measured as a third of one-client write latency). The newest commit index rides
    /// along with the next write that must happen anyway (new entries, a new term or vote).
    /// `must_write`: the Ready has entries or a snapshot, which are written whatever the hard state.
    fn hard_state_to_write(
        &self,
        mark: Option<&raft::PersistMark>,
        must_write: bool,
    ) -> Option<Option<raft::HardState>> {
        let stored = self.storage.hard_state();
        let hard_state = mark.map(|mark| mark.hard_state).filter(|hard_state| *hard_state != stored);
        let durable_change = hard_state.is_some_and(|h| (h.term, h.vote) != (stored.term, stored.vote));
        (must_write || durable_change).then_some(hard_state)
    }

    /// The persist step of an installation (§7): publish the received file, drop the log it replaces
    /// (all of it unless the core kept the entries after it), and delete what it covers.
    fn persist_installed_snapshot(&mut self, install: &SnapshotInstall) -> Result<(), NodeError> {
        let finished = self.received.take().unwrap_or_else(|| {
            panic!("node {}: told to install snapshot {:?} that was never received", self.id, install.meta)
        });
        assert_eq!(
            (finished.meta().index, finished.meta().term),
            (install.meta.index, install.meta.term),
            "node {}: the snapshot to install is not the one received",
            self.id
        );
        self.storage.publish_snapshot(finished)?;
        // A crash here leaves the new snapshot with the old log: recovery drops the log unless it holds
        // the snapshot's entry with its term (storage's recovery table, row 24).
        if !install.keep_entries_after {
            self.storage.discard_log_after_snapshot()?;
        }
        self.storage.compact()?;
        self.storage.remove_old_snapshots()?;
        tracing::info!(
            node = self.id,
            term = self.raft.term(),
            snapshot_index = install.meta.index,
            snapshot_term = install.meta.term,
            kept_log = install.keep_entries_after,
            "installed a snapshot from the leader"
        );
        self.observer.snapshot_installed(&install.meta, install.keep_entries_after);
        tracing::info!(
            node = self.id,
            index = install.meta.index,
            term = install.meta.term,
            kept_log = install.keep_entries_after,
            "installed a snapshot from the leader"
        );
        Ok(())
    }

    /// The apply step of an installation: the state machine becomes the snapshot's.
    fn restore_installed_snapshot(&mut self, meta: &SnapshotMeta) -> Result<(), NodeError> {
        let config = self.machine.config().clone();
        self.machine = crate::snapshots::restore_state_machine(&self.storage, config)?;
        assert!(
            meta.index > self.applied_index,
            "node {}: installing snapshot {} at or below applied index {}",
            self.id,
            meta.index,
            self.applied_index
        );
        self.applied_index = meta.index;
        self.observer.restored(meta.index);
        Ok(())
    }

    /// Writes chunks of a snapshot being received into its temporary file; verifies the file after its
    /// last chunk. I/O errors stop the node (as for the log); a file that fails verification is refused.
    fn write_snapshot_chunks(&mut self, writes: Vec<SnapshotWrite>) -> Result<Vec<Received>, NodeError> {
        let mut outcomes = Vec::new();
        for write in writes {
            let wanted = (write.meta.index, write.meta.term);
            if write.offset == 0 {
                // A new transfer (or a restart of one): any partial file is discarded.
                if let Some(old) = self.receiving.take() {
                    self.storage.discard_receiving_snapshot(old);
                }
                self.receiving = Some(self.storage.begin_receiving_snapshot(wanted.0, wanted.1)?);
            }
            let Some(receiving) = self.receiving.as_mut().filter(|r| r.index_and_term() == wanted) else {
                // Nothing to write into (the node restarted mid-transfer): the transfer starts over.
                outcomes.push(Received::Failed(write.meta));
                continue;
            };
            receiving.write_at(write.offset, &write.data)?;
            if !write.done {
                continue;
            }
            let receiving = self.receiving.take().expect("checked above");
            match self.storage.finish_receiving_snapshot(receiving) {
                Ok(finished) => outcomes.push(Received::Verified(finished)),
                Err(error @ storage::Error::Io { .. }) => return Err(error.into()),
                Err(error) => {
                    tracing::warn!(node = self.id, %error, "a received snapshot failed verification; refused");
                    outcomes.push(Received::Failed(write.meta));
                }
            }
        }
        Ok(outcomes)
    }

    fn report_received_snapshots(&mut self, received: Vec<Received>) {
        for outcome in received {
            match outcome {
                Received::Verified(finished) => match self.raft.snapshot_received(&finished.meta().clone()) {
                    Ok(()) => {
                        if let Some(old) = self.received.replace(finished) {
                            self.storage.discard_finished_snapshot(old);
                        }
                    }
                    Err(error) => {
                        tracing::debug!(node = self.id, %error, "received snapshot not needed; deleted");
                        self.storage.discard_finished_snapshot(finished);
                    }
                },
                Received::Failed(meta) => self.raft.snapshot_receive_failed(&meta),
            }
        }
    }

    /// Reads the chunks the core wants to send. A read that fails (the file was replaced by a newer
    /// snapshot) is dropped: the core asks again.
    fn serve_snapshot_reads(&mut self, reads: Vec<SnapshotRead>) {
        for read in reads {
            let chunk = self.storage.read_snapshot_chunk(
                read.snapshot_index,
                read.snapshot_term,
                read.offset,
                read.max_bytes,
            );
            match chunk {
                Ok((data, done)) => {
                    if let Err(error) = self.raft.snapshot_chunk(read, data.into(), done) {
                        tracing::debug!(node = self.id, %error, "snapshot chunk dropped");
                    }
                }
                Err(error) => tracing::debug!(node = self.id, %error, "snapshot read dropped"),
            }
        }
    }

    /// Finishes this node's own snapshot if its writer is done, and starts one if the policy says so.
    fn maybe_snapshot(&mut self) -> Result<(), NodeError> {
        self.finish_own_snapshot()?;
        self.start_own_snapshot_if_due()?;
        self.finish_own_snapshot()
    }

    fn start_own_snapshot_if_due(&mut self) -> Result<(), NodeError> {
        let threshold = self.snapshot_policy.threshold_entries;
        let (boundary, _) = self.raft.log().snapshot_boundary();
        if threshold == 0 || self.snapshot_in_progress.is_some() || self.applied_index < boundary + threshold
        {
            return Ok(());
        }
        let index = self.applied_index;
        let meta = self.raft.snapshot_meta_at(index).expect("the applied index is above the log's start");
        let state = self.machine.snapshot();
        assert_eq!(state.applied_index(), index, "node {}: the state machine's index disagrees", self.id);
        let writer = self.storage.begin_snapshot(meta)?;
        self.snapshot_in_progress = Some(index);
        self.snapshot_worker.start(SnapshotJob { state, writer });
        Ok(())
    }

    /// Once the file is durable: publish it, compact the core (§7), delete covered segments and files.
    fn finish_own_snapshot(&mut self) -> Result<(), NodeError> {
        if self.snapshot_in_progress.is_none() {
            return Ok(());
        }
        let Some(result) = self.snapshot_worker.poll() else { return Ok(()) };
        self.snapshot_in_progress = None;
        let finished = result?;
        if finished.meta().index <= self.storage.snapshot_meta().index {
            // A leader's snapshot was installed meanwhile, past this one.
            self.storage.discard_finished_snapshot(finished);
            return Ok(());
        }
        let meta = finished.meta().clone();
        self.storage.publish_snapshot(finished)?;
        self.raft.compact(meta.index).expect("a snapshot is taken at an applied index");
        self.storage.compact()?;
        self.storage.remove_old_snapshots()?;
        self.observer.snapshot_taken(&meta);
        tracing::debug!(node = self.id, index = meta.index, "took a snapshot and compacted the log");
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
        // A node outside the configuration it knows (removed, or not added yet) receives no new entries,
        // so it could never apply, and answer, a command it proposed or forwarded: the command waits
        // here and, unless the node is added meanwhile, expires as certainly not applied.
        if !self.raft.configuration().contains(self.id) {
            return None;
        }
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
            // Handing over leadership: the forwarder tries again shortly (the new leader, once it leads).
            Err(ProposeError::LeadershipTransferInProgress { target }) => (Some(target), false),
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
            self.feed_clock();
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
        self.feed_clock();
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

    /// A read index for `ctx` (or its failure). Returns how many reads it confirmed (a follower's batch
    /// counts once).
    fn read_index_confirmed(&mut self, ctx: u64, index: Option<raft::Index>) -> usize {
        if let Some((follower, their_ctx)) = self.remote_reads.remove(&ctx) {
            let leader_hint = self.raft.leader_id();
            self.transport
                .send(follower, PeerMessage::ReadIndexResponse { ctx: their_ctx, index, leader_hint });
            return 1;
        }
        match index {
            Some(index) => self.reads.confirm(ctx, index, self.id),
            None => {
                self.reads.retry(ctx, self.id);
                0
            }
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
