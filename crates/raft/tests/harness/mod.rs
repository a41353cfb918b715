//! A tiny in-memory cluster for scenario tests and the benchmark: every node is a real [`Raft`] driven by
//! the documented loop (persist, on_persisted, send, apply, advance); messages sit in one FIFO queue until
//! the test delivers them; links can be cut and nodes crashed and restarted from their "disk".
//!
//! Snapshots: a node's state machine is the list of entries it applied, and a snapshot file is that list
//! encoded with postcard. Compaction, chunk reads, chunk writes and installs follow the crate docs'
//! contract; a few switches let a test hold back the application's half of a transfer.
//!
//! Everything is bounded: delivery loops stop after a fixed number of messages and panic if the cluster
//! has not gone quiet, so a livelock fails the test instead of hanging it.

#![allow(dead_code)] // each test binary uses a different part of the harness

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::path::PathBuf;

use bytes::Bytes;
use raft::{
    Config, Configuration, Entry, EntryPayload, FailedRead, HardState, Index, Message, MessageBody, NodeId,
    PersistMark, Raft, ReadState, RestoredState, Role, SnapshotInstall, SnapshotMeta, SnapshotRead,
    SnapshotWrite, Term,
};

/// What a node has on its (pretend) disk: only what it reported durable through `on_persisted`.
#[derive(Clone, Debug, Default)]
pub struct MemStorage {
    pub hard_state: HardState,
    /// The snapshot the log starts after (index 0: the bootstrap boundary, no file).
    pub snapshot: SnapshotMeta,
    pub entries: Vec<Entry>,
    /// Durable snapshot files by (index, term): the node's own and the complete ones it received.
    pub snapshot_files: BTreeMap<(Index, Term), Bytes>,
}

impl MemStorage {
    fn write(
        &mut self,
        snapshot: Option<&SnapshotInstall>,
        hard_state: Option<HardState>,
        entries: &[Entry],
    ) {
        if let Some(install) = snapshot {
            // The Ready contract: publish the snapshot as the log's start, drop what it covers, and the
            // rest of the log too unless it matched.
            assert!(self.snapshot_files.contains_key(&(install.meta.index, install.meta.term)));
            let index = install.meta.index;
            if install.keep_entries_after {
                self.entries.retain(|e| e.index > index);
            } else {
                self.entries.clear();
            }
            self.snapshot = install.meta.clone();
        }
        if let Some(hard_state) = hard_state {
            self.hard_state = hard_state;
        }
        if let Some(first) = entries.first() {
            // The Ready contract: entries at or below what is stored replace the stored suffix.
            let keep = (first.index - self.snapshot.index - 1) as usize;
            assert!(keep <= self.entries.len(), "storage got a hole before {first}");
            self.entries.truncate(keep);
            self.entries.extend_from_slice(entries);
        }
    }

    pub fn restored(&self) -> RestoredState {
        RestoredState {
            hard_state: self.hard_state,
            snapshot: self.snapshot.clone(),
            entries: self.entries.clone(),
        }
    }

    /// The state machine a restart loads: the entries the snapshot covers.
    fn restored_state_machine(&self) -> Vec<Entry> {
        if self.snapshot.index == 0 {
            return Vec::new();
        }
        let file = &self.snapshot_files[&(self.snapshot.index, self.snapshot.term)];
        decode_snapshot(file, &self.snapshot).expect("a published snapshot verifies")
    }
}

/// A snapshot file: the applied entries, postcard-encoded.
pub fn encode_snapshot(applied: &[Entry]) -> Bytes {
    Bytes::from(postcard::to_allocvec(applied).expect("entries encode"))
}

/// Decodes and verifies a snapshot file against its meta (the stand-in for a checksum check).
pub fn decode_snapshot(file: &[u8], meta: &SnapshotMeta) -> Option<Vec<Entry>> {
    let entries: Vec<Entry> = postcard::from_bytes(file).ok()?;
    let last = entries.last().map_or((0, 0), |e| (e.index, e.term));
    (last == (meta.index, meta.term) && entries.len() as Index == meta.index).then_some(entries)
}

/// A write handed out by a `Ready` but not yet on disk (asynchronous persistence).
struct PendingWrite {
    snapshot: Option<SnapshotInstall>,
    hard_state: Option<HardState>,
    entries: Vec<Entry>,
    mark: PersistMark,
}

pub struct Node {
    pub raft: Raft,
    pub config: Config,
    pub storage: MemStorage,
    /// Every entry applied since the last (re)start, in order.
    pub applied: Vec<Entry>,
    pub read_states: Vec<ReadState>,
    pub failed_reads: Vec<FailedRead>,
    /// With asynchronous persistence, writes wait here until the test calls [`Cluster::flush`].
    pending_writes: VecDeque<PendingWrite>,
    pub async_persist: bool,
    /// The snapshot file being received (a temporary file: lost in a crash).
    pub receiving: Option<(SnapshotMeta, Vec<u8>)>,
    /// When set, a completely received snapshot waits in `received` until [`Cluster::finish_receiving`]
    /// (the application is still verifying it).
    pub hold_received: bool,
    pub received: Option<SnapshotMeta>,
    /// When set, snapshot chunk reads wait in `reads` until [`Cluster::serve_reads`].
    pub hold_reads: bool,
    pub reads: Vec<SnapshotRead>,
    /// Every snapshot this node installed from a leader, in order.
    pub installed: Vec<SnapshotMeta>,
}

impl Node {
    fn fresh(raft: Raft, config: Config, storage: MemStorage) -> Node {
        Node {
            raft,
            config,
            storage,
            applied: Vec::new(),
            read_states: Vec::new(),
            failed_reads: Vec::new(),
            pending_writes: VecDeque::new(),
            async_persist: false,
            receiving: None,
            hold_received: false,
            received: None,
            hold_reads: false,
            reads: Vec::new(),
            installed: Vec::new(),
        }
    }
}

pub struct Cluster {
    pub nodes: BTreeMap<NodeId, Node>,
    /// Messages sent and not yet delivered, oldest first.
    pub in_flight: VecDeque<Message>,
    /// Every message ever sent (dropped ones too), for counting.
    pub sent: Vec<Message>,
    /// Directed links that drop everything.
    cut: BTreeSet<(NodeId, NodeId)>,
    /// Crashed nodes: not ticked, messages to them are dropped.
    pub down: BTreeSet<NodeId>,
    /// Every entry any node ever applied, by index: a second, different entry at one index is a safety
    /// violation (State Machine Safety).
    pub committed: BTreeMap<Index, Entry>,
    /// A line per delivered message and per role change, when `trace_enabled`.
    pub trace: String,
    pub trace_enabled: bool,
}

pub fn config(id: NodeId) -> Config {
    Config { rng_seed: 42, ..Config::new(id) }
}

pub fn entry(index: Index, term: Term) -> Entry {
    Entry { index, term, payload: EntryPayload::Command(Bytes::from(format!("{index}@{term}"))) }
}

/// Entries 1.. with the given terms (the way the paper's figures list logs).
pub fn entries_of_terms(terms: &[Term]) -> Vec<Entry> {
    terms.iter().enumerate().map(|(i, &term)| entry(i as Index + 1, term)).collect()
}

impl Cluster {
    /// `n` nodes with ids 1..=n, all with the default test config, bootstrapped as one cluster.
    pub fn new(n: u64) -> Cluster {
        Cluster::with_config(n, |_| {})
    }

    pub fn with_config(n: u64, adjust: impl Fn(&mut Config)) -> Cluster {
        let logs: Vec<(NodeId, Vec<Term>, Term)> = (1..=n).map(|id| (id, vec![], 0)).collect();
        Cluster::with_logs(&logs, adjust)
    }

    /// Nodes restarted from the given logs: `(id, terms of entries 1.., current term)`.
    pub fn with_logs(logs: &[(NodeId, Vec<Term>, Term)], adjust: impl Fn(&mut Config)) -> Cluster {
        let ids: Vec<NodeId> = logs.iter().map(|(id, _, _)| *id).collect();
        let configuration = Configuration::with_voters(ids.iter().copied());
        let mut nodes = BTreeMap::new();
        for (id, terms, term) in logs {
            let mut config = config(*id);
            adjust(&mut config);
            let storage = MemStorage {
                hard_state: HardState { term: *term, vote: None, commit: 0 },
                snapshot: SnapshotMeta { index: 0, term: 0, configuration: configuration.clone() },
                entries: entries_of_terms(terms),
                snapshot_files: BTreeMap::new(),
            };
            let raft = Raft::new(config.clone(), storage.restored()).expect("valid config");
            nodes.insert(*id, Node::fresh(raft, config, storage));
        }
        Cluster {
            nodes,
            in_flight: VecDeque::new(),
            sent: Vec::new(),
            cut: BTreeSet::new(),
            down: BTreeSet::new(),
            committed: BTreeMap::new(),
            trace: String::new(),
            trace_enabled: false,
        }
    }

    /// Adds node `id` with an empty data directory: no configuration, so it never campaigns or votes
    /// until a leader adds it and sends it the log (dissertation §4.1).
    pub fn add_spare(&mut self, id: NodeId) {
        let config = config(id);
        let storage = MemStorage::default();
        let raft = Raft::new(config.clone(), storage.restored()).expect("valid config");
        self.nodes.insert(id, Node::fresh(raft, config, storage));
    }

    pub fn raft(&self, id: NodeId) -> &Raft {
        &self.nodes[&id].raft
    }

    pub fn raft_mut(&mut self, id: NodeId) -> &mut Raft {
        &mut self.nodes.get_mut(&id).expect("node exists").raft
    }

    pub fn ids(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }

    /// The one node that is leader in the highest term among live nodes, if any.
    pub fn leader(&self) -> Option<NodeId> {
        self.nodes
            .iter()
            .filter(|(id, node)| !self.down.contains(id) && node.raft.role() == Role::Leader)
            .max_by_key(|(_, node)| node.raft.term())
            .map(|(&id, _)| id)
    }

    // ----- Driving one node ---------------------------------------------------------------------------

    /// Runs the documented driver loop on `id` until it has nothing more to do.
    pub fn process(&mut self, id: NodeId) {
        for _ in 0..1000 {
            let node = self.nodes.get_mut(&id).expect("node exists");
            if !node.raft.has_ready() {
                return;
            }
            let ready = node.raft.ready();
            // 1. Persist, then report it (or queue the write for later with asynchronous persistence).
            if let Some(mark) = ready.persist_mark {
                if node.async_persist {
                    node.pending_writes.push_back(PendingWrite {
                        snapshot: ready.snapshot.clone(),
                        hard_state: ready.hard_state,
                        entries: ready.entries.clone(),
                        mark,
                    });
                } else {
                    node.storage.write(ready.snapshot.as_ref(), ready.hard_state, &ready.entries);
                    node.raft.on_persisted(mark);
                }
            }
            let complete = write_snapshot_chunks(node, ready.snapshot_writes);
            // 2. Send.
            for message in ready.messages {
                self.send(message);
            }
            // 3. Apply: a snapshot first (it replaces the state machine), then entries after it.
            let node = self.nodes.get_mut(&id).expect("node exists");
            if let Some(install) = &ready.snapshot {
                let file = &node.storage.snapshot_files[&(install.meta.index, install.meta.term)];
                let state = decode_snapshot(file, &install.meta).expect("verified before install");
                assert!(
                    node.applied.len() as Index <= install.meta.index,
                    "node {id} installs snapshot {}@{} over a state machine at {}",
                    install.meta.index,
                    install.meta.term,
                    node.applied.len()
                );
                for entry in &state {
                    match self.committed.get(&entry.index) {
                        Some(other) => assert_eq!(
                            other, entry,
                            "State Machine Safety: node {id} installs {entry} where {other} was applied"
                        ),
                        None => {
                            self.committed.insert(entry.index, entry.clone());
                        }
                    }
                }
                node.applied = state;
                node.installed.push(install.meta.clone());
            }
            for entry in ready.committed_entries {
                if let Some(last) = node.applied.last() {
                    assert_eq!(entry.index, last.index + 1, "node {id} applies out of order");
                }
                match self.committed.get(&entry.index) {
                    Some(other) => assert_eq!(
                        other, &entry,
                        "State Machine Safety: node {id} applies {entry} where {other} was applied"
                    ),
                    None => {
                        self.committed.insert(entry.index, entry.clone());
                    }
                }
                node.applied.push(entry);
            }
            node.read_states.extend(ready.read_states);
            node.failed_reads.extend(ready.failed_reads);
            // 4. Advance.
            node.raft.advance();
            // The application's side of snapshot transfers: a verified complete file, chunks to read.
            if let Some(meta) = complete {
                if node.hold_received {
                    node.received = Some(meta);
                } else {
                    finish_receiving(node, &meta);
                }
            }
            if node.hold_reads {
                node.reads.extend(ready.snapshot_reads);
            } else {
                for read in ready.snapshot_reads {
                    serve_read(node, read);
                }
            }
        }
        panic!("node {id} never ran out of Ready work");
    }

    /// Completes every pending write of an asynchronously persisting node, in order.
    pub fn flush(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).expect("node exists");
        while let Some(write) = node.pending_writes.pop_front() {
            node.storage.write(write.snapshot.as_ref(), write.hard_state, &write.entries);
            node.raft.on_persisted(write.mark);
        }
        self.process(id);
    }

    fn send(&mut self, message: Message) {
        self.sent.push(message.clone());
        if self.cut.contains(&(message.from, message.to)) || self.down.contains(&message.to) {
            return;
        }
        self.in_flight.push_back(message);
    }

    pub fn tick(&mut self, id: NodeId) {
        if self.down.contains(&id) {
            return;
        }
        let before = self.role_of(id);
        self.raft_mut(id).tick();
        self.process(id);
        self.trace_role_change(id, before);
    }

    fn role_of(&self, id: NodeId) -> (Role, Term) {
        (self.raft(id).role(), self.raft(id).term())
    }

    /// Adds `=> node 1 leader t8 ...` to the trace if `id` changed role or term.
    fn trace_role_change(&mut self, id: NodeId, before: (Role, Term)) {
        if self.trace_enabled && self.role_of(id) != before {
            let line = format!("=> {}", self.raft(id));
            let _ = writeln!(self.trace, "{line}");
        }
    }

    pub fn tick_all(&mut self) {
        for id in self.ids() {
            self.tick(id);
        }
    }

    /// Delivers one message (the oldest). Returns false if none is in flight.
    pub fn deliver_one(&mut self) -> bool {
        let Some(message) = self.in_flight.pop_front() else { return false };
        let to = message.to;
        if self.down.contains(&to) || self.cut.contains(&(message.from, to)) {
            return true;
        }
        if self.trace_enabled {
            let _ = writeln!(self.trace, "  {message}");
        }
        let before = self.role_of(to);
        self.raft_mut(to).step(message).expect("well-formed message");
        self.process(to);
        self.trace_role_change(to, before);
        true
    }

    /// Delivers the in-flight message at `position` (the network reordered it), if there is one.
    pub fn deliver_at(&mut self, position: usize) {
        if let Some(message) = self.in_flight.remove(position) {
            self.in_flight.push_front(message);
            self.deliver_one();
        }
    }

    /// Loses the in-flight message at `position`, if there is one.
    pub fn drop_at(&mut self, position: usize) {
        self.in_flight.remove(position);
    }

    /// Duplicates the in-flight message at `position`, if there is one.
    pub fn duplicate_at(&mut self, position: usize) {
        if let Some(message) = self.in_flight.get(position).cloned() {
            self.in_flight.push_back(message);
        }
    }

    /// Delivers messages until none is left. Returns how many were delivered.
    pub fn deliver_all(&mut self) -> usize {
        let mut delivered = 0;
        while self.deliver_one() {
            delivered += 1;
            assert!(delivered < 100_000, "cluster never went quiet");
        }
        delivered
    }

    /// Delivers messages until `done` holds (checked before each delivery) or none is left. Returns
    /// whether `done` holds.
    pub fn deliver_until(&mut self, done: impl Fn(&Cluster) -> bool) -> bool {
        for _ in 0..100_000 {
            if done(self) {
                return true;
            }
            if !self.deliver_one() {
                return done(self);
            }
        }
        panic!("cluster never went quiet");
    }

    /// Removes every in-flight message matching `drop` (the network lost them).
    pub fn drop_in_flight(&mut self, drop: impl Fn(&Message) -> bool) {
        self.in_flight.retain(|m| !drop(m));
    }

    /// Delivers everything, losing the messages that match `drop`, until none is left.
    pub fn deliver_all_except(&mut self, drop: impl Fn(&Message) -> bool) {
        for _ in 0..100_000 {
            self.drop_in_flight(&drop);
            if !self.deliver_one() {
                return;
            }
        }
        panic!("cluster never went quiet");
    }

    /// Turns asynchronous persistence on or off for `id` (off: the harness persists each Ready at once).
    pub fn set_async_persist(&mut self, id: NodeId, on: bool) {
        self.nodes.get_mut(&id).expect("node exists").async_persist = on;
    }

    /// Ticks every live node once and delivers everything, `ticks` times.
    pub fn run(&mut self, ticks: u64) {
        for _ in 0..ticks {
            self.tick_all();
            self.deliver_all();
        }
    }

    /// Ticks only `id` until it starts a new (pre-)election, then delivers everything. Returns its role
    /// after.
    pub fn campaign(&mut self, id: NodeId) -> Role {
        let limit = 2 * self.nodes[&id].config.election_timeout_ticks + 1;
        let is_vote_request = |m: &Message| m.from == id && matches!(m.body, MessageBody::VoteRequest(_));
        let requests_before = self.sent.iter().filter(|m| is_vote_request(m)).count();
        for _ in 0..limit {
            self.tick(id);
            let requests = self.sent.iter().filter(|m| is_vote_request(m)).count();
            if requests > requests_before || self.raft(id).role() == Role::Leader {
                break;
            }
        }
        self.deliver_all();
        self.raft(id).role()
    }

    /// Makes `id` the leader (it must be able to win) and lets its no-op commit.
    pub fn elect(&mut self, id: NodeId) {
        let role = self.campaign(id);
        assert_eq!(role, Role::Leader, "node {id} did not win: {}", self.raft(id));
    }

    /// Proposes on `id` (must be leader), delivers everything, returns the index.
    pub fn propose(&mut self, id: NodeId, data: &str) -> Index {
        let index = self.raft_mut(id).propose(Bytes::copy_from_slice(data.as_bytes())).expect("leader");
        self.process(id);
        self.deliver_all();
        index
    }

    // ----- Faults -------------------------------------------------------------------------------------

    /// Cuts every link between the groups (both ways).
    pub fn partition(&mut self, groups: &[&[NodeId]]) {
        for (i, a) in groups.iter().enumerate() {
            for b in &groups[i + 1..] {
                for &x in a.iter() {
                    for &y in b.iter() {
                        self.cut.insert((x, y));
                        self.cut.insert((y, x));
                    }
                }
            }
        }
    }

    pub fn isolate(&mut self, id: NodeId) {
        let others: Vec<NodeId> = self.ids().into_iter().filter(|&o| o != id).collect();
        self.partition(&[&[id], &others]);
    }

    /// Restores the one directed link `from -> to`.
    pub fn heal_one_way(&mut self, from: NodeId, to: NodeId) {
        self.cut.remove(&(from, to));
    }

    pub fn heal(&mut self) {
        self.cut.clear();
    }

    pub fn crash(&mut self, id: NodeId) {
        self.down.insert(id);
        let node = self.nodes.get_mut(&id).expect("node exists");
        node.pending_writes.clear(); // unsynced writes are lost
        node.receiving = None; // and so is a partly received snapshot (a temporary file)
        node.received = None;
        node.reads.clear();
    }

    /// Restarts a crashed node from what it had made durable.
    pub fn restart(&mut self, id: NodeId) {
        self.down.remove(&id);
        let node = self.nodes.get_mut(&id).expect("node exists");
        node.raft = Raft::new(node.config.clone(), node.storage.restored()).expect("valid config");
        node.applied = node.storage.restored_state_machine();
        self.process(id);
    }

    // ----- Snapshots ----------------------------------------------------------------------------------

    /// The application snapshots `id`'s state machine at its applied index, makes the file durable, and
    /// compacts: storage first (the file, then the log it covers), then the core.
    pub fn compact(&mut self, id: NodeId) -> Index {
        let node = self.nodes.get_mut(&id).expect("node exists");
        let index = node.raft.applied_index();
        let meta = node.raft.snapshot_meta_at(index).expect("the applied index can be snapshotted");
        assert_eq!(node.applied.len() as Index, index, "node {id}: state machine and applied index agree");
        if index > node.storage.snapshot.index {
            let file = encode_snapshot(&node.applied);
            node.storage.snapshot_files.insert((meta.index, meta.term), file);
            // Storage operations happen in order: with writes still queued (asynchronous persistence),
            // the log is trimmed later. Keeping more log than the core does is always allowed.
            if node.pending_writes.is_empty() {
                node.storage.entries.retain(|e| e.index > index);
                node.storage.snapshot = meta;
            }
        }
        node.raft.compact(index).expect("applied entries can be compacted");
        self.process(id);
        index
    }

    /// Lets the application finish verifying the snapshot `id` received completely (see `hold_received`).
    pub fn finish_receiving(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).expect("node exists");
        let meta = node.received.take().expect("a received snapshot waits");
        finish_receiving(node, &meta);
        self.process(id);
    }

    /// Serves the chunk reads `id` holds (see `hold_reads`), in order.
    pub fn serve_reads(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).expect("node exists");
        for read in std::mem::take(&mut node.reads) {
            serve_read(node, read);
        }
        self.process(id);
    }

    // ----- Checks and output --------------------------------------------------------------------------

    /// Log Matching (§5.3): if two logs hold an entry with the same index and term, they are identical up
    /// to it.
    /// Entries both logs have compacted away are checked as state machines instead (State Machine Safety,
    /// in `process`): a snapshot holds only applied entries.
    pub fn check_log_matching(&self) {
        let rafts: Vec<&Raft> = self.nodes.values().map(|n| &n.raft).collect();
        for (i, a) in rafts.iter().enumerate() {
            for b in &rafts[i + 1..] {
                let last = a.last_index().min(b.last_index());
                // Only indexes whose term both logs still know (their boundaries included) can be compared.
                let lowest = a.log().first_index().max(b.log().first_index()) - 1;
                // Find the highest common (index, term), then require equal prefixes below it.
                let agree = (lowest.max(1)..=last).rev().find(|&idx| a.term_at(idx) == b.term_at(idx));
                if let Some(agree) = agree {
                    assert_eq!(
                        a.log().slice(lowest + 1, agree),
                        b.log().slice(lowest + 1, agree),
                        "Log Matching broken between {a} and {b}"
                    );
                }
            }
        }
    }

    /// One line per node: `1 leader t2 commit=3 [1@1· 2@1 3@2]`.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for (id, node) in &self.nodes {
            let raft = &node.raft;
            let role = match raft.role() {
                Role::Follower => "follower",
                Role::PreCandidate => "precandidate",
                Role::Candidate => "candidate",
                Role::Leader => "leader",
            };
            let down = if self.down.contains(id) { " (down)" } else { "" };
            let _ = writeln!(
                out,
                "{id} {role} t{} commit={} {}{down}",
                raft.term(),
                raft.commit_index(),
                raft.log()
            );
        }
        out
    }

    /// Request messages sent so far (a request and its reply count as one RPC, as the 6.5840 lab counts).
    pub fn rpc_count(&self) -> usize {
        self.sent
            .iter()
            .filter(|m| {
                matches!(
                    m.body,
                    MessageBody::VoteRequest(_) | MessageBody::AppendRequest(_) | MessageBody::Heartbeat(_)
                )
            })
            .count()
    }
}

/// Writes the received chunks to the node's temporary snapshot file, checking they come in order. Returns
/// the snapshot's meta once its last chunk is written.
fn write_snapshot_chunks(node: &mut Node, writes: Vec<SnapshotWrite>) -> Option<SnapshotMeta> {
    let mut complete = None;
    for write in writes {
        if write.offset == 0 {
            node.receiving = Some((write.meta.clone(), Vec::new()));
        }
        let (meta, file) = node.receiving.as_mut().expect("a stream starts at offset 0");
        assert_eq!((&*meta, file.len() as u64), (&write.meta, write.offset), "chunks arrive in stream order");
        file.extend_from_slice(&write.data);
        if write.done {
            complete = Some(write.meta);
        }
    }
    complete
}

/// Verifies the complete received file; a good one becomes durable and the core is told, a bad one is
/// discarded and the core starts over.
fn finish_receiving(node: &mut Node, meta: &SnapshotMeta) {
    let (received_meta, file) = node.receiving.take().expect("the file being received");
    assert_eq!(&received_meta, meta);
    if decode_snapshot(&file, meta).is_none() {
        node.raft.snapshot_receive_failed(meta);
        return;
    }
    node.storage.snapshot_files.insert((meta.index, meta.term), Bytes::from(file));
    if node.raft.snapshot_received(meta).is_err() && node.storage.snapshot != *meta {
        node.storage.snapshot_files.remove(&(meta.index, meta.term)); // stale: not needed
    }
}

/// Reads one chunk of the leader's snapshot file and hands it to the core.
fn serve_read(node: &mut Node, read: SnapshotRead) {
    let Some(file) = node.storage.snapshot_files.get(&(read.snapshot_index, read.snapshot_term)) else {
        return; // replaced by a newer snapshot: the leader asks again
    };
    let start = (read.offset as usize).min(file.len());
    let end = (start + read.max_bytes).min(file.len());
    let _ = node.raft.snapshot_chunk(read, file.slice(start..end), end == file.len());
}

/// Compares `actual` with the expected-output file `tests/expected/<name>.txt`; with `UPDATE_EXPECT=1`
/// rewrites the file instead.
pub fn assert_expected(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/expected").join(format!("{name}.txt"));
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::create_dir_all(path.parent().expect("has a parent")).expect("create tests/expected");
        std::fs::write(&path, actual).expect("write expected output");
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("missing {}: run with UPDATE_EXPECT=1 to create it", path.display()));
    assert_eq!(expected, actual, "output differs from {} (UPDATE_EXPECT=1 rewrites it)", path.display());
}
