//! What the core hands to its caller: a [`Ready`] batch of work, and the [`PersistMark`] the caller gives
//! back once that work is durable. The order of effects is the caller's contract; see the crate docs.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::ReadIndexError;
use crate::message::Message;
use crate::types::{Entry, HardState, Index, NodeId, SnapshotMeta, Term};

/// One batch of work for the caller. Do it in this order: persist (`snapshot`, `entries`, `hard_state`;
/// write `snapshot_writes` to the snapshot being received), then call [`crate::Raft::on_persisted`] with
/// `persist_mark`; send `messages`; install `snapshot` into the state machine, then apply
/// `committed_entries`; answer `read_states` once the state machine has applied up to each read's index;
/// then [`crate::Raft::advance`]. Serve `snapshot_reads` at any time (they are requests, not effects).
#[derive(Clone, PartialEq, Eq, Debug, Default)]
#[must_use = "a Ready holds state to persist and messages to send"]
pub struct Ready {
    /// The hard state to write, if it changed since the last `Ready`. Its `commit` may name entries that
    /// arrive in this same `Ready`: make `entries` durable no later than the hard state (write them first,
    /// or both in one atomic batch), so a recovered commit index never points past the recovered log.
    pub hard_state: Option<HardState>,
    /// Entries to write. If `entries[0].index` is at or below the last index already written, storage
    /// must first discard everything from `entries[0].index` on (a new leader overwrote a suffix).
    pub entries: Vec<Entry>,
    /// Messages that may be sent right away, in any order. Messages that promise durable state (vote
    /// grants, a candidate's vote requests, append acknowledgements) only ever appear here once
    /// [`crate::Raft::on_persisted`] has covered what they promise.
    pub messages: Vec<Message>,
    /// Committed entries to apply to the state machine, in log order, each exactly once across all
    /// `Ready`s (after a restart, from the snapshot on). They are all durable on this node too, so a
    /// follower applies an entry one `Ready` after it persisted it. At most
    /// [`crate::Config::max_committed_entries_per_ready`] of them.
    pub committed_entries: Vec<Entry>,
    /// ReadIndex reads confirmed by a quorum: answer each once the state machine has applied `index`.
    pub read_states: Vec<ReadState>,
    /// ReadIndex reads that can no longer be confirmed (the leader stepped down); retry elsewhere.
    pub failed_reads: Vec<FailedRead>,
    /// Present when there is something to persist: pass it to [`crate::Raft::on_persisted`] once
    /// `snapshot`, `hard_state` and `entries` (and everything from earlier `Ready`s) are durable.
    pub persist_mark: Option<PersistMark>,
    /// A snapshot this node received completely and the core accepted ([`crate::Raft::snapshot_received`]):
    /// make it the start of the durable log *before* writing `entries` and `hard_state` (its `commit` is
    /// the snapshot's index), then, in the apply step, replace the state machine with it *before*
    /// applying `committed_entries` (which continue right after its index). See [`SnapshotInstall`].
    pub snapshot: Option<SnapshotInstall>,
    /// Leader: chunks of its snapshot to read for followers that need it (InstallSnapshot, §7). Answer
    /// each with [`crate::Raft::snapshot_chunk`], now or later; a request that cannot be served (the file is
    /// gone because a newer snapshot replaced it, a read failed) may be dropped — the leader asks again
    /// after [`crate::Config::snapshot_chunk_timeout_ticks`].
    pub snapshot_reads: Vec<SnapshotRead>,
    /// Follower: chunks of a snapshot being received, in stream order. Write each at its offset into the
    /// temporary file for `meta` (a chunk at offset 0 starts a new file, discarding any partial one).
    /// After the chunk with `done`, make the file durable, verify it, and call
    /// [`crate::Raft::snapshot_received`] (or [`crate::Raft::snapshot_receive_failed`]).
    pub snapshot_writes: Vec<SnapshotWrite>,
}

/// What to do with a received snapshot the core accepted (§7, receiver steps 6–8).
///
/// Persist step, before this `Ready`'s `entries` and `hard_state`: publish the snapshot file as the
/// node's newest snapshot (atomically: rename, directory fsync), then drop every stored log entry at or
/// below `meta.index`, and, unless `keep_entries_after`, every entry after it too. Apply step: replace the
/// state machine's contents with the snapshot's. Storage recovery must apply the same rule to a crash
/// between publishing and discarding: after loading a snapshot, keep the log entries after its index only
/// if the log holds the entry at its index with its term.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SnapshotInstall {
    pub meta: SnapshotMeta,
    /// True if this node's log held the snapshot's last entry (`meta.index` with `meta.term`): the entries
    /// after it are consistent with the snapshot and stay. False: the log conflicted or was shorter, and
    /// is discarded entirely.
    pub keep_entries_after: bool,
}

/// A leader's request to read one chunk of its snapshot for follower `to`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SnapshotRead {
    pub to: NodeId,
    /// The snapshot to read: the one at this index and term (the leader's newest).
    pub snapshot_index: Index,
    pub snapshot_term: Term,
    /// Read from this byte offset...
    pub offset: u64,
    /// ...at most this many bytes (fewer only at the end of the file).
    pub max_bytes: usize,
}

/// A chunk of a snapshot being received, for the application to write.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SnapshotWrite {
    pub meta: SnapshotMeta,
    pub offset: u64,
    pub data: Bytes,
    /// The last chunk: the file is complete.
    pub done: bool,
}

/// What became durable: the hard state of one `Ready`, and the log up to `(last_index, last_term)`.
/// Reporting a mark covers every earlier one, so an asynchronous writer may report only its latest;
/// reporting an older mark again is harmless.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct PersistMark {
    /// Position of this mark among the marks this node handed out (1, 2, …) since it started.
    pub sequence: u64,
    pub hard_state: HardState,
    pub last_index: Index,
    pub last_term: Term,
}

/// A read that is now safe to serve at `index` (§6.4): the leader confirmed its leadership after the read
/// arrived, so the state machine at `index` reflects every write committed before the read.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ReadState {
    pub ctx: u64,
    pub index: Index,
    /// Served from the leader's lease (§6.4.1) rather than confirmed by a heartbeat round (§6.4).
    pub by_lease: bool,
}

/// A read that failed after `read_index` accepted it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FailedRead {
    pub ctx: u64,
    pub reason: ReadIndexError,
}

/// What a held message waits for before it may leave (the durability rule of DESIGN.md).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Durability {
    /// The hard state must be durable at this term, with this vote if `vote` is set (or at a later term,
    /// which makes the vote unnecessary: nobody votes in a term it has durably left).
    pub term: Term,
    pub vote: Option<NodeId>,
    /// The log must be durable up to this entry `(index, term)`.
    pub log: Option<(Index, Term)>,
}

/// A message waiting for durability.
#[derive(Clone, Debug)]
pub(crate) struct HeldMessage {
    pub message: Message,
    pub needs: Durability,
}
