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
}

/// What the node reported through its observer since the world last looked.
#[derive(Default)]
pub struct Observed {
    pub persisted: Vec<(Option<HardState>, Vec<Entry>)>,
    pub applied: Vec<Entry>,
}

/// Collects observations for the world's safety checks.
#[derive(Default)]
pub struct SimObserver {
    pub observed: Observed,
}

impl Observer for SimObserver {
    fn persisted(&mut self, hard_state: Option<&HardState>, entries: &[Entry]) {
        self.observed.persisted.push((hard_state.copied(), entries.to_vec()));
    }

    fn applied(&mut self, entry: &Entry) {
        self.observed.applied.push(entry.clone());
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
    /// The commit index the checker last saw.
    pub seen_commit: raft::Index,
    /// Whether the checker saw this node lead in its current term.
    pub seen_leader_term: Option<raft::Term>,
    /// Role, term and believed leader as last traced, so the trace records every change once.
    pub seen_role: Option<(raft::Role, raft::Term, Option<NodeId>)>,
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
