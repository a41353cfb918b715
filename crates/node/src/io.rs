//! The three things the outside world gives a node. The server implements them with TCP, the system
//! clock and metrics; the simulator with its network, its simulated time and its safety checker. The node
//! glue is the same code in both, so the simulator tests what production runs.

use raft::{Entry, HardState, Index, NodeId, SnapshotMeta};

use crate::peer::PeerMessage;

/// Sends messages to other nodes. Best effort: Raft tolerates loss, so a full queue may drop.
pub trait Transport {
    fn send(&mut self, to: NodeId, message: PeerMessage);
}

/// The node's clocks. The wall clock only stamps the leader's time into new entries (so the state machine
/// never reads a clock itself: every replica computes the same expiry); the monotonic clock only times
/// read leases (dissertation §6.4.1).
pub trait Clock {
    /// Milliseconds since the Unix epoch (or, in the simulator, since the run began).
    fn now_ms(&self) -> u64;
    /// Nanoseconds on a clock that never goes back and is not set by anyone (`CLOCK_MONOTONIC`), since
    /// any fixed origin. Lease reads are safe only if its rate stays within the configured drift bound.
    fn monotonic_nanos(&self) -> u64;
}

/// Hooks for whoever watches the node: the simulator's safety checks, the server's metrics. Every method
/// has an empty default.
pub trait Observer {
    /// `hard_state` and `entries` are now durable (entries may overwrite a suffix from `entries[0].index`).
    fn persisted(&mut self, _hard_state: Option<&HardState>, _entries: &[Entry]) {}
    /// The state machine applied `entry`.
    fn applied(&mut self, _entry: &Entry) {}
    /// A leader's snapshot is now this node's durable log start: every entry up to `meta.index` is gone,
    /// and the entries after it too unless `keep_entries_after` (§7).
    fn snapshot_installed(&mut self, _meta: &SnapshotMeta, _keep_entries_after: bool) {}
    /// The state machine was replaced by a snapshot's: it now stands at `index`.
    fn restored(&mut self, _index: Index) {}
    /// This node's own snapshot at `meta.index` is durable and the log was compacted up to it.
    fn snapshot_taken(&mut self, _meta: &SnapshotMeta) {}
    /// As leader, this node confirmed `reads` linearizable reads, by its lease (`by_lease`, dissertation
    /// §6.4.1) or by a ReadIndex round (§6.4). A follower's forwarded batch counts as one read.
    fn reads_confirmed(&mut self, _by_lease: bool, _reads: u64) {}
}

/// An observer that watches nothing.
pub struct NoObserver;

impl Observer for NoObserver {}
