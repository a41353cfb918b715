//! The node loop: one task that owns the [`node::Node`] and is fed by one bounded channel of events
//! (ticks from a timer thread, peer messages, client requests, status queries). Other tasks own the
//! sockets and talk to it only through that channel and through oneshot replies, so the node itself stays
//! single-threaded, exactly as in the simulator.
//!
//! The loop runs on the same one-worker runtime as those socket tasks ([`crate::serve`]): handing a
//! request from a connection to the loop and its answer back is then a task wake-up inside one thread, not
//! a thread wake-up (a futex and a context switch each, which measured as most of a one-client write's
//! latency besides the fsyncs). While the loop waits for an fsync (group commit), the runtime's worker
//! moves to another thread and keeps serving the sockets ([`crate::metered_disk`]).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kv::{Command, Reply};
use node::{ClientToken, Consistency, Node, NodeTiming, PeerMessage};
use raft::{ConfChange, ConfChangeError, Configuration, NodeId, Raft, RestoredState, Role, TransferError};
use storage::{FileDisk, Storage, StorageOptions};
use tokio::sync::{mpsc, oneshot};

use crate::address_book::AddressBook;
use crate::config::ServerConfig;
use crate::metered_disk::MeteredDisk;
use crate::metrics::Metrics;
use crate::node_metrics::{self, ElectionWatch, MetricsObserver, RequestKind, WaitingRequest};
use crate::system_clock::SystemClock;
use crate::transport::PeerQueues;

/// Events waiting for the node loop at most. Senders wait when it is full (clients, peers); the timer
/// drops a tick instead (time then runs a little slow under overload, which Raft tolerates).
pub const EVENT_QUEUE_CAPACITY: usize = 16_384;

/// What the node loop is told.
pub enum Event {
    Tick,
    Peer {
        from: NodeId,
        message: PeerMessage,
    },
    Client {
        command: Command,
        consistency: Consistency,
        reply: oneshot::Sender<Reply>,
    },
    Status {
        reply: oneshot::Sender<NodeStatus>,
    },
    /// A consistent snapshot for a backup (`GET /snapshot`, `raftkv backup`); see [`BackupSnapshot`].
    Backup {
        reply: oneshot::Sender<Result<BackupSnapshot, String>>,
    },
    /// A membership change, for the core of this node (which must lead; see
    /// [`raft::Raft::propose_conf_change`]). The reply is the configuration entry's index.
    ConfChange {
        change: ConfChange,
        reply: oneshot::Sender<Result<u64, ConfChangeError>>,
    },
    /// Hand leadership to `target` ([`raft::Raft::transfer_leadership`]).
    TransferLeadership {
        target: NodeId,
        reply: oneshot::Sender<Result<(), TransferError>>,
    },
    /// Fail every pending request and stop (graceful shutdown).
    Shutdown,
}

/// A consistent picture of the node for INFO, `raftkv status` and the admin endpoint, taken between two
/// inputs of the node loop.
#[derive(Clone, Debug)]
pub struct NodeStatus {
    pub node_id: NodeId,
    pub role: Role,
    pub term: u64,
    pub leader_id: Option<NodeId>,
    /// Who this node voted for in `term`.
    pub vote: Option<NodeId>,
    pub commit_index: u64,
    pub applied_index: u64,
    pub last_index: u64,
    /// The index the log starts after (the latest snapshot's; 0 while nothing was ever compacted).
    pub snapshot_index: u64,
    /// The voters of the configuration in force (of C_new while a joint change is in progress).
    pub voters: Vec<NodeId>,
    /// While a joint change is in progress: the voters of C_old (empty otherwise).
    pub outgoing_voters: Vec<NodeId>,
    pub learners: Vec<NodeId>,
    /// The log index of the entry the configuration in force came from (0: the bootstrap's).
    pub configuration_index: u64,
    /// True while a membership change is under way (its entry uncommitted, or still joint).
    pub conf_change_in_progress: bool,
    /// On a leader handing over leadership: to whom.
    pub transfer_target: Option<NodeId>,
    /// On the leader: every follower's replication progress.
    pub followers: Vec<FollowerStatus>,
    pub keys: usize,
    pub pending_requests: usize,
    pub incarnation: u64,
}

#[cfg(test)]
impl NodeStatus {
    /// For tests of the pages built from a status: a follower of a quiet 3-voter cluster with nothing
    /// applied, to be changed with struct-update syntax where a test cares.
    pub(crate) fn example() -> NodeStatus {
        NodeStatus {
            node_id: 2,
            role: Role::Follower,
            term: 3,
            leader_id: Some(1),
            vote: None,
            commit_index: 0,
            applied_index: 0,
            last_index: 0,
            snapshot_index: 0,
            voters: vec![1, 2, 3],
            outgoing_voters: vec![],
            learners: vec![],
            configuration_index: 0,
            conf_change_in_progress: false,
            transfer_target: None,
            followers: vec![],
            keys: 0,
            pending_requests: 0,
            incarnation: 1,
        }
    }
}

/// What a backup streams: a frozen view of the state machine (O(1) to take, written by another thread)
/// and the Raft metadata at its applied index.
///
/// Consistency: the node first runs a linearizable read (ReadIndex, §6.4 of the dissertation; through the
/// leader on a follower) and takes the view only once that read is served, so the view's applied index is
/// at least the commit index the leader confirmed after the request arrived. Every write acknowledged
/// before the backup was asked for is in it, as for any linearizable read.
pub struct BackupSnapshot {
    pub node_id: NodeId,
    pub meta: raft::SnapshotMeta,
    pub state: kv::Snapshot,
}

/// What a leader knows of one follower.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FollowerStatus {
    pub id: NodeId,
    pub match_index: u64,
    pub next_index: u64,
    /// Since any message from this follower last arrived (none yet in this process: `None`). Measured by
    /// the node loop on the wall clock; the core itself only counts ticks.
    pub since_last_contact: Option<Duration>,
}

/// The error clients get for requests that were pending when the node stopped.
pub const SHUTTING_DOWN: &str =
    "TRYAGAIN the node is shutting down; the command may or may not have been applied";

/// The error clients get for requests that were pending when storage failed and the node stopped.
pub const STORAGE_FAILED: &str = "ERR the node stopped after a storage failure";

/// A cloneable handle to send events to the node loop.
#[derive(Clone)]
pub struct NodeHandle {
    events: mpsc::Sender<Event>,
}

impl NodeHandle {
    /// Submits a command; the reply arrives on the returned receiver (which errs if the node stopped).
    pub async fn submit(&self, command: Command, consistency: Consistency) -> oneshot::Receiver<Reply> {
        let (reply, receiver) = oneshot::channel();
        // If the loop is gone, `reply` is dropped with the event and the receiver sees it closed.
        let _ = self.events.send(Event::Client { command, consistency, reply }).await;
        receiver
    }

    pub async fn status(&self) -> Option<NodeStatus> {
        let (reply, receiver) = oneshot::channel();
        self.events.send(Event::Status { reply }).await.ok()?;
        receiver.await.ok()
    }

    /// A consistent snapshot for a backup, or why there is none (no leader, timed out, stopping).
    pub async fn backup(&self) -> Result<BackupSnapshot, String> {
        let (reply, receiver) = oneshot::channel();
        self.events
            .send(Event::Backup { reply })
            .await
            .map_err(|_| "the node is shutting down".to_string())?;
        receiver.await.map_err(|_| "the node stopped before the snapshot was taken".to_string())?
    }

    pub async fn peer_message(&self, from: NodeId, message: PeerMessage) -> bool {
        self.events.send(Event::Peer { from, message }).await.is_ok()
    }

    /// Asks this node's core for a membership change; `None` if the node loop is gone.
    pub async fn conf_change(&self, change: ConfChange) -> Option<Result<u64, ConfChangeError>> {
        let (reply, receiver) = oneshot::channel();
        self.events.send(Event::ConfChange { change, reply }).await.ok()?;
        receiver.await.ok()
    }

    /// Asks this node's core to hand leadership to `target`; `None` if the node loop is gone.
    pub async fn transfer_leadership(&self, target: NodeId) -> Option<Result<(), TransferError>> {
        let (reply, receiver) = oneshot::channel();
        self.events.send(Event::TransferLeadership { target, reply }).await.ok()?;
        receiver.await.ok()
    }

    pub async fn shutdown(&self) {
        let _ = self.events.send(Event::Shutdown).await;
    }

    pub fn sender(&self) -> mpsc::Sender<Event> {
        self.events.clone()
    }
}

pub type ServerNode = Node<MeteredDisk, PeerQueues, SystemClock, MetricsObserver>;

/// Why the node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("data directory {dir}: {source}")]
    DataDir {
        dir: String,
        #[source]
        source: std::io::Error,
    },
    #[error("storage: {0}")]
    Storage(#[from] storage::Error),
    #[error("consensus configuration: {0}")]
    Raft(#[from] raft::ConfigError),
    /// Test-only: `RAFTKV_INJECT_BUG` names no known bug.
    #[cfg(feature = "inject-bugs")]
    #[error("{0}")]
    InjectedBug(String),
}

/// Opens (and on `--bootstrap`, creates) the data directory and builds the node, as the simulator's
/// `boot.rs` does with a simulated disk. An empty directory without `--bootstrap` is initialised with an
/// empty configuration: the node is not a member, never votes, and waits to be added.
pub fn build_node(
    config: &ServerConfig,
    transport: PeerQueues,
    metrics: Arc<Metrics>,
) -> Result<(ServerNode, u64), StartError> {
    // Before the data directory is touched: a misspelt bug name must change nothing.
    #[cfg(feature = "inject-bugs")]
    let injected_bug = crate::injected_bug::from_env().map_err(StartError::InjectedBug)?;
    let dir = &config.data_dir;
    let data_dir_error = |source| StartError::DataDir { dir: dir.display().to_string(), source };
    let disk = MeteredDisk::new(FileDisk::new(dir).map_err(data_dir_error)?, metrics.clone());
    let (mut storage, initial) = Storage::open(disk, StorageOptions::new(config.cluster_id, config.node_id))?;
    let initial = match initial {
        Some(state) => Some(state),
        None if config.bootstrap => {
            let voters = config.members.iter().map(|m| m.id);
            tracing::info!(members = config.members.len(), "bootstrapping a new cluster");
            Some(storage.bootstrap(Configuration::with_voters(voters))?)
        }
        None => {
            tracing::warn!(
                "the data directory is empty and --bootstrap was not given: this node is not a member, \
                 never votes, and waits to be added to a cluster"
            );
            // Storage with an empty configuration (as the simulator's joining nodes): the node can then
            // store the log a leader sends it once it is added, and learns the configuration from it.
            Some(storage.bootstrap(Configuration::default())?)
        }
    };
    let incarnation = crate::data_dir::bump_incarnation(Path::new(dir)).map_err(data_dir_error)?;
    let restored = initial
        .map(|s| RestoredState { hard_state: s.hard_state, snapshot: s.snapshot, entries: s.entries })
        .unwrap_or_default();
    let timing = &config.timing;
    let raft_config = raft::Config {
        #[cfg(feature = "inject-bugs")]
        injected_bug: crate::injected_bug::in_raft(injected_bug),
        election_timeout_ticks: timing.election_timeout_ticks(),
        heartbeat_interval_ticks: timing.heartbeat_interval_ticks(),
        // Each life draws different election timeouts (the seed is not a safety matter).
        rng_seed: node::Clock::now_ms(&SystemClock::new())
            ^ (incarnation << 32)
            ^ u64::from(std::process::id()),
        // Back-pressure on the leader: a write refused here was never proposed (`-TRYAGAIN`).
        max_uncommitted_bytes: config.limits.max_uncommitted_bytes,
        read_mode: config.raft_read_mode(),
        ..raft::Config::new(config.node_id)
    };
    let raft = Raft::new(raft_config, restored)?;
    // The state machine starts from the newest snapshot; the core replays only the log after it.
    let kv_config = kv::KvConfig {
        maxmemory_bytes: config.maxmemory_bytes,
        max_value_bytes: config.limits.max_value_bytes,
        ..kv::KvConfig::default()
    };
    #[cfg_attr(not(feature = "inject-bugs"), allow(unused_mut))]
    let mut machine = node::restore_state_machine(&storage, kv_config)?;
    #[cfg(feature = "inject-bugs")]
    machine.set_bug_apply_retries_twice(
        injected_bug == Some(crate::injected_bug::InjectedBug::ApplyRetriesTwice),
    );
    let applied_index = raft.applied_index();
    let node_timing = NodeTiming {
        client_timeout_ticks: timing.ticks(timing.client_timeout_ms),
        retry_ticks: 2 * timing.election_timeout_ticks(),
    };
    let node = Node::new(
        raft,
        storage,
        machine,
        applied_index,
        incarnation,
        node_timing,
        transport,
        SystemClock::new(),
        MetricsObserver { metrics },
    )
    .with_snapshots(
        node::SnapshotPolicy { threshold_entries: config.snapshot_threshold_entries },
        Box::new(crate::snapshot_thread::ThreadWorker::default()),
    );
    Ok((node, incarnation))
}

/// The running loop's channel and thread.
pub struct NodeLoop {
    pub handle: NodeHandle,
    /// Resolves when the loop stopped: `Ok` after a shutdown, `Err` with the reason after a storage failure.
    pub stopped: oneshot::Receiver<Result<(), String>>,
}

/// Starts the node loop task (on the current runtime) and its tick timer thread.
pub fn spawn(node: ServerNode, incarnation: u64, tick: Duration, book: Arc<AddressBook>) -> NodeLoop {
    let (events, receiver) = mpsc::channel(EVENT_QUEUE_CAPACITY);
    let (stopped_tx, stopped) = oneshot::channel();
    let ticker = events.clone();
    std::thread::Builder::new()
        .name("raftkv-ticker".into())
        .spawn(move || run_ticker(ticker, tick))
        .expect("spawning the tick thread");
    tokio::spawn(async move {
        let result = run(node, incarnation, receiver, book).await;
        if let Err(error) = &result {
            tracing::error!(%error, "the node loop stopped");
        }
        let _ = stopped_tx.send(result);
    });
    NodeLoop { handle: NodeHandle { events }, stopped }
}

fn run_ticker(events: mpsc::Sender<Event>, tick: Duration) {
    let mut next = std::time::Instant::now() + tick;
    loop {
        let now = std::time::Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
        // Never let ticks pile up after a stall (a suspended process): skip to the present.
        next = (next + tick).max(std::time::Instant::now());
        match events.try_send(Event::Tick) {
            Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {}
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        }
    }
}

/// Events handled per batch before answers are routed (answers go out as soon as the batch ends).
const MAX_EVENTS_PER_BATCH: usize = 256;

/// What the loop keeps beside the node: who waits for an answer, and what it watches for metrics.
struct LoopState {
    incarnation: u64,
    waiting: HashMap<ClientToken, WaitingRequest>,
    /// Backups waiting for their linearizable barrier read, by its token.
    backups: HashMap<ClientToken, oneshot::Sender<Result<BackupSnapshot, String>>>,
    next_token: ClientToken,
    /// When a message from each peer last arrived (the leader's "time since last contact").
    last_heard: HashMap<NodeId, Instant>,
    last_role: (Role, u64, Option<NodeId>),
    elections: ElectionWatch,
    metrics: Arc<Metrics>,
    /// Every member's addresses; refreshed from the state machine, and the source of the transport's peers.
    book: Arc<AddressBook>,
    /// Ticks since the peers were last matched to the configuration.
    ticks_since_peer_sync: u64,
}

/// How often (in ticks) the node loop refreshes the address book and matches the transport's peers to
/// the configuration: cheap (a few map lookups), and 10 ticks is well inside an election timeout.
const PEER_SYNC_INTERVAL_TICKS: u64 = 10;

/// Whether the loop goes on after an event.
enum Flow {
    Continue,
    Stop,
}

async fn run(
    mut node: ServerNode,
    incarnation: u64,
    mut events: mpsc::Receiver<Event>,
    book: Arc<AddressBook>,
) -> Result<(), String> {
    let mut state = LoopState {
        incarnation,
        waiting: HashMap::new(),
        backups: HashMap::new(),
        next_token: 0,
        last_heard: HashMap::new(),
        last_role: (Role::Follower, 0, None),
        elections: ElectionWatch::new(node.raft()),
        metrics: node.observer().metrics.clone(),
        book,
        ticks_since_peer_sync: 0,
    };
    crate::peer_sync::sync_peers(&mut node, &state.book);
    while let Some(first) = events.recv().await {
        let batch_started = Instant::now();
        crate::latency_trace::mark("batch_begin");
        let mut event = Some(first);
        let mut handled = 0;
        // Group commit: every event that is already waiting is fed to the core first, and one Ready (one
        // write, one fsync) covers them all.
        node.begin_batch();
        while let Some(current) = event.take() {
            match handle_event(&mut node, &mut state, current) {
                Ok(Flow::Continue) => {}
                Ok(Flow::Stop) => return Ok(()),
                Err(error) => {
                    route(&mut node, &mut state);
                    fail_all(&mut state, STORAGE_FAILED);
                    return Err(error.to_string());
                }
            }
            handled += 1;
            if handled < MAX_EVENTS_PER_BATCH {
                event = events.try_recv().ok();
            }
        }
        if let Err(error) = node.end_batch() {
            route(&mut node, &mut state);
            fail_all(&mut state, STORAGE_FAILED);
            return Err(error.to_string());
        }
        state.elections.observe(node.raft(), &state.metrics);
        route(&mut node, &mut state);
        log_role_change(&node, &mut state.last_role);
        // Nothing else is served while a batch runs: its duration is how long the node loop paused.
        let pause = batch_started.elapsed().as_secs_f64();
        if pause > state.metrics.node_loop_longest_pause.get() {
            state.metrics.node_loop_longest_pause.set(pause);
        }
    }
    Ok(())
}

/// Feeds one event to the node (inside a batch).
fn handle_event(node: &mut ServerNode, state: &mut LoopState, event: Event) -> Result<Flow, node::NodeError> {
    match event {
        Event::Tick => {
            node.tick()?;
            state.ticks_since_peer_sync += 1;
            if state.ticks_since_peer_sync >= PEER_SYNC_INTERVAL_TICKS {
                state.ticks_since_peer_sync = 0;
                crate::peer_sync::sync_peers(node, &state.book);
            }
        }
        Event::Peer { from, message } => {
            crate::latency_trace::mark("loop_peer");
            state.last_heard.insert(from, Instant::now());
            node.receive(from, message)?
        }
        Event::Client { command, consistency, reply } => {
            crate::latency_trace::mark("loop_client");
            state.next_token += 1;
            let kind = if command.is_read() { RequestKind::Read(consistency) } else { RequestKind::Write };
            state.waiting.insert(state.next_token, WaitingRequest { reply, kind, arrived: Instant::now() });
            node.submit(state.next_token, command, consistency)?
        }
        Event::Status { reply } => {
            let _ = reply.send(status_of(node, state));
        }
        Event::Backup { reply } => {
            state.next_token += 1;
            state.backups.insert(state.next_token, reply);
            // The barrier: a linearizable read whose answer we do not need, only its timing.
            node.submit(state.next_token, Command::DbSize, Consistency::Linearizable)?
        }
        Event::ConfChange { change, reply } => {
            let result = node.propose_conf_change(change.clone())?;
            match &result {
                Ok(index) => tracing::info!(%change, index, "membership change proposed"),
                Err(error) => tracing::info!(%change, %error, "membership change refused"),
            }
            // The configuration takes effect on append: reach an added member at once.
            crate::peer_sync::sync_peers(node, &state.book);
            let _ = reply.send(result);
        }
        Event::TransferLeadership { target, reply } => {
            let result = node.transfer_leadership(target)?;
            match &result {
                Ok(()) => tracing::info!(target, "leadership transfer started"),
                Err(error) => tracing::info!(target, %error, "leadership transfer refused"),
            }
            let _ = reply.send(result);
        }
        Event::Shutdown => {
            let _ = node.end_batch();
            route(node, state);
            fail_all(state, SHUTTING_DOWN);
            tracing::info!("node loop stopped for shutdown");
            return Ok(Flow::Stop);
        }
    }
    // After every input, not only every batch: see `ElectionWatch` for why that counts every election.
    state.elections.observe(node.raft(), &state.metrics);
    Ok(Flow::Continue)
}

/// One log line whenever the role, term or known leader changes: what an operator reads first.
fn log_role_change(node: &ServerNode, last: &mut (Role, u64, Option<NodeId>)) {
    let raft = node.raft();
    let now = (raft.role(), raft.term(), raft.leader_id());
    if now != *last {
        let (role, term, leader) = now;
        let node = raft.id();
        // One line per event an operator looks for, each with the node and the term.
        if role != last.0 && matches!(role, Role::PreCandidate | Role::Candidate) {
            tracing::info!(node, term, role = ?role, "election started");
        } else if role == Role::Leader && last.0 != Role::Leader {
            tracing::info!(node, term, "elected leader");
        } else if leader != last.2 {
            tracing::info!(node, term, role = ?role, leader = ?leader, "leader changed");
        } else {
            tracing::info!(node, term, role = ?role, leader = ?leader, "role changed");
        }
        *last = now;
    }
}

/// Sends each completion to the client waiting for it (a client that went away is simply skipped).
fn route(node: &mut ServerNode, state: &mut LoopState) {
    for completion in node.take_completions() {
        if let Some(backup) = state.backups.remove(&completion.token) {
            let _ = backup.send(backup_snapshot(node, completion.reply));
            continue;
        }
        if let Some(request) = state.waiting.remove(&completion.token) {
            node_metrics::record_answer(&state.metrics, &request, &completion.reply);
            crate::latency_trace::mark("reply_routed");
            let _ = request.reply.send(completion.reply);
        }
    }
}

/// Takes the backup's frozen view once its barrier read was served (or says why it failed).
fn backup_snapshot(node: &ServerNode, barrier: Reply) -> Result<BackupSnapshot, String> {
    if let Reply::Error(text) = barrier {
        return Err(format!("the linearizable read that orders the backup failed: {text}"));
    }
    let state = node.state_machine().snapshot();
    let meta = node.raft().snapshot_meta_at(state.applied_index()).map_err(|e| e.to_string())?;
    Ok(BackupSnapshot { node_id: node.id(), meta, state })
}

fn fail_all(state: &mut LoopState, text: &str) {
    for (_, backup) in state.backups.drain() {
        let _ = backup.send(Err(text.to_string()));
    }
    let reply = Reply::error(text);
    for (_, request) in state.waiting.drain() {
        node_metrics::record_answer(&state.metrics, &request, &reply);
        let _ = request.reply.send(reply.clone());
    }
}

fn status_of(node: &ServerNode, state: &LoopState) -> NodeStatus {
    let raft = node.raft();
    let followers = if raft.role() == Role::Leader {
        raft.progress()
            .filter(|(id, _)| *id != raft.id())
            .map(|(id, progress)| FollowerStatus {
                id,
                match_index: progress.match_index,
                next_index: progress.next_index,
                since_last_contact: state.last_heard.get(&id).map(Instant::elapsed),
            })
            .collect()
    } else {
        Vec::new()
    };
    let configuration = raft.configuration();
    NodeStatus {
        node_id: raft.id(),
        role: raft.role(),
        term: raft.term(),
        leader_id: raft.leader_id(),
        vote: raft.vote(),
        commit_index: raft.commit_index(),
        applied_index: node.applied_index(),
        last_index: raft.last_index(),
        snapshot_index: raft.log().snapshot_boundary().0,
        voters: configuration.voters.iter().copied().collect(),
        outgoing_voters: configuration.outgoing_voters.iter().copied().collect(),
        learners: configuration.learners.iter().copied().collect(),
        configuration_index: raft.configuration_index(),
        conf_change_in_progress: raft.conf_change_in_progress(),
        transfer_target: raft.leadership_transfer_target(),
        followers,
        keys: node.state_machine().key_count(),
        pending_requests: node.pending_requests(),
        incarnation: state.incarnation,
    }
}
