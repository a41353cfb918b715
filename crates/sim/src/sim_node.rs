//! One simulated server: the *real* node glue (core + WAL + state machine) over a simulated disk,
//! network and clock. Crashing it drops the process and lets the simulated disk lose or tear what was not
//! synced; restarting it recovers from that disk exactly as the server would.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use node::{Clock, Node, Observer, PeerMessage, Transport};
use raft::{Entry, HardState, NodeId};
use storage::SimDisk;

use crate::network::TimeUs;

/// Messages a node sent during one input, collected for the world to put on the network.
pub type Outbox = Rc<RefCell<Vec<(NodeId, PeerMessage)>>>;

/// The simulated transport: an outbox the world drains after every input.
pub struct SimTransport {
    outbox: Outbox,
}

impl Transport for SimTransport {
    fn send(&mut self, to: NodeId, message: PeerMessage) {
        self.outbox.borrow_mut().push((to, message));
    }
}

/// A node's wall clock: simulated time, running at the node's own (drifting) rate.
pub struct SimClock {
    now: Rc<Cell<TimeUs>>,
    rate: f64,
}

impl Clock for SimClock {
    fn now_ms(&self) -> u64 {
        (self.now.get() as f64 * self.rate / 1_000.0) as u64
    }

    /// Simulated time at the node's own rate: the drift a lease must be configured to tolerate.
    fn monotonic_nanos(&self) -> u64 {
        (self.now.get() as f64 * self.rate * 1_000.0) as u64
    }
}

/// What the node made durable, in order.
pub enum Persisted {
    Batch(Option<HardState>, Vec<Entry>),
    /// The node's own snapshot became the log's start (compaction).
    OwnSnapshot {
        index: raft::Index,
        term: raft::Term,
    },
    /// A leader's snapshot became the log's start (entries after it kept only if `keep_entries_after`).
    Snapshot {
        index: raft::Index,
        term: raft::Term,
        keep_entries_after: bool,
    },
}

/// What the state machine did, in order.
pub enum Applied {
    Entry(Entry),
    /// Replaced by a snapshot's state at this index.
    Restored(raft::Index),
}

/// What the node reported through its observer since the world last looked.
#[derive(Default)]
pub struct Observed {
    pub persisted: Vec<Persisted>,
    pub applied: Vec<Applied>,
    /// Reads this node confirmed as leader: `[by ReadIndex round, by lease]`.
    pub reads_confirmed: [u64; 2],
}

/// Collects observations for the world's safety checks.
#[derive(Default)]
pub struct SimObserver {
    pub observed: Observed,
}

impl Observer for SimObserver {
    fn persisted(&mut self, hard_state: Option<&HardState>, entries: &[Entry]) {
        self.observed.persisted.push(Persisted::Batch(hard_state.copied(), entries.to_vec()));
    }

    fn applied(&mut self, entry: &Entry) {
        self.observed.applied.push(Applied::Entry(entry.clone()));
    }

    fn snapshot_installed(&mut self, meta: &raft::SnapshotMeta, keep_entries_after: bool) {
        let (index, term) = (meta.index, meta.term);
        self.observed.persisted.push(Persisted::Snapshot { index, term, keep_entries_after });
    }

    fn snapshot_taken(&mut self, meta: &raft::SnapshotMeta) {
        self.observed.persisted.push(Persisted::OwnSnapshot { index: meta.index, term: meta.term });
    }

    fn restored(&mut self, index: raft::Index) {
        self.observed.applied.push(Applied::Restored(index));
    }

    fn reads_confirmed(&mut self, by_lease: bool, reads: u64) {
        self.observed.reads_confirmed[usize::from(by_lease)] += reads;
    }
}

pub type SimNodeInner = Node<SimDisk, SimTransport, SimClock, SimObserver>;

/// Whether the process runs.
pub enum Liveness {
    Running(Box<SimNodeInner>),
    /// Stopped (SIGSTOP): messages and client requests queue up and arrive on resume.
    Paused(Box<SimNodeInner>, Vec<Pending>),
    /// Dead; its disk keeps what it had synced.
    Crashed,
}

/// An input that arrived while the node was paused.
pub enum Pending {
    Message(NodeId, PeerMessage),
    Client(node::ClientToken, kv::Command),
}

/// One server of the simulated cluster.
pub struct SimNode {
    pub id: NodeId,
    pub disk: SimDisk,
    pub liveness: Liveness,
    pub outbox: Outbox,
    pub now: Rc<Cell<TimeUs>>,
    /// Clock rate relative to true simulated time (1.0 = exact).
    pub clock_rate: f64,
    pub next_tick_at: TimeUs,
    /// Restarts so far; the incarnation of the node's client ids.
    pub incarnation: u64,
    /// Log Matching's hash chain over this node's durable log: `prefix_hashes[i]` belongs to index
    /// `first_index + i`.
    pub prefix_hashes: Vec<u64>,
    pub prefix_first_index: raft::Index,
    /// The prefix hash of the entry just before `prefix_first_index` (the snapshot's; 0 at index 0).
    pub prefix_base: u64,
    /// The commit index the checker last saw.
    pub seen_commit: raft::Index,
    /// Whether the checker saw this node lead in its current term.
    pub seen_leader_term: Option<raft::Term>,
    /// Role, term and believed leader as last traced, so the trace records every change once.
    pub seen_role: Option<(raft::Role, raft::Term, Option<NodeId>)>,
    /// The nemesis armed a power loss at one of this node's next disk operations.
    pub power_loss_armed: bool,
}

impl SimNode {
    pub fn transport(&self) -> SimTransport {
        SimTransport { outbox: self.outbox.clone() }
    }

    pub fn clock(&self) -> SimClock {
        SimClock { now: self.now.clone(), rate: self.clock_rate }
    }

    pub fn running(&mut self) -> Option<&mut SimNodeInner> {
        match &mut self.liveness {
            Liveness::Running(node) => Some(node),
            _ => None,
        }
    }

    /// The node, running or paused (for the checks: a paused node's state still counts).
    pub fn inner(&self) -> Option<&SimNodeInner> {
        match &self.liveness {
            Liveness::Running(node) | Liveness::Paused(node, _) => Some(node),
            Liveness::Crashed => None,
        }
    }

    pub fn is_running(&self) -> bool {
        matches!(self.liveness, Liveness::Running(_))
    }
}
