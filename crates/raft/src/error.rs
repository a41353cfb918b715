//! The failures a caller, a peer or the network can cause. Each is a typed error and never a panic; a
//! broken invariant inside the core is a bug and panics instead (see the crate docs).

use thiserror::Error;

use crate::types::{Index, NodeId, Term};

/// A message refused by [`crate::Raft::step`] because it is malformed or misaddressed. Refusing it leaves
/// the node's state untouched.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Error)]
pub enum StepError {
    #[error("message has no sender (from = 0)")]
    NoSender,
    #[error("message from node {id} is addressed to itself")]
    SelfAddressed { id: NodeId },
    #[error("message for node {to} was delivered to node {receiver}")]
    WrongRecipient { to: NodeId, receiver: NodeId },
    #[error("message carries term 0, which no server ever has")]
    ZeroTerm,
    #[error("log term {log_term} in the message is above the message's own term {term}")]
    LogTermAboveMessageTerm { log_term: Term, term: Term },
    #[error("entries are not consecutive: expected index {expected}, found {found}")]
    NonConsecutiveEntries { expected: Index, found: Index },
    #[error("entry terms decrease at index {index}")]
    DecreasingEntryTerms { index: Index },
    #[error("snapshot {index}@{term} covers no entry or has term 0")]
    EmptySnapshot { index: Index, term: Term },
    #[error("snapshot chunk at offset {offset} ends beyond 2^64 bytes")]
    SnapshotOffsetOverflow { offset: u64 },
    /// The message's indices run past the largest one: no real log comes near u64::MAX, and the core
    /// computes `last + 1` for any index it accepts.
    #[error("{entries} entries after index {prev_log_index} would leave no index after the last")]
    IndexOverflow { prev_log_index: Index, entries: u64 },
}

/// Why a snapshot call ([`crate::Raft::compact`], [`crate::Raft::snapshot_meta_at`],
/// [`crate::Raft::snapshot_chunk`], [`crate::Raft::snapshot_received`]) did nothing.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Error)]
pub enum SnapshotError {
    /// Only applied entries may be covered by a snapshot: the state machine must hold them.
    #[error("index {index} is not applied yet (applied index {applied})")]
    NotApplied { index: Index, applied: Index },
    /// The log no longer holds the entry at `index` (it is at or below the snapshot boundary `first_index
    /// - 1`), so its term and configuration are unknown here.
    #[error("index {index} is compacted (the log starts at {first_index})")]
    Compacted { index: Index, first_index: Index },
    /// A received snapshot that this node no longer needs: it already committed `commit` at or beyond the
    /// snapshot's `index` (or it leads, and a leader's log holds every committed entry). Discard the file.
    #[error("snapshot at {index} is stale (commit index {commit})")]
    Stale { index: Index, commit: Index },
    /// A chunk nobody waits for any more: the node stopped leading, or the transfer to `to` finished,
    /// moved to a newer snapshot or to another offset. Drop it.
    #[error("no transfer to node {to} waits for the chunk at offset {offset}")]
    ChunkNotWanted { to: NodeId, offset: u64 },
}

/// Why [`crate::Raft::propose`] did not append a command.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Error)]
pub enum ProposeError {
    /// Only the leader appends to the log; `leader_hint` is the leader this node knows of, if any.
    #[error("not the leader (leader hint: {leader_hint:?})")]
    NotLeader { leader_hint: Option<NodeId> },
    /// The leader already holds `max_uncommitted_bytes` of uncommitted proposals; try again later.
    #[error("proposal dropped: too many uncommitted bytes")]
    ProposalDropped,
}

/// Why [`crate::Raft::read_index`] refused a read, or why a read that was accepted later failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Error)]
pub enum ReadIndexError {
    /// Only the leader serves ReadIndex reads; `leader_hint` is the leader this node knows of, if any.
    #[error("not the leader (leader hint: {leader_hint:?})")]
    NotLeader { leader_hint: Option<NodeId> },
    /// The leader lost its leadership before it could confirm the read; retry on the new leader.
    #[error("leader stepped down before the read was confirmed")]
    SteppedDown,
    /// The leader already has `max_pending_reads` reads waiting for confirmation.
    #[error("too many pending reads")]
    TooManyPendingReads,
}

/// A [`crate::Config`] that cannot work.
#[derive(Clone, PartialEq, Eq, Debug, Error)]
pub enum ConfigError {
    #[error("node id must not be 0 (0 means nobody)")]
    ZeroId,
    #[error("heartbeat_interval_ticks must be at least 1")]
    ZeroHeartbeatInterval,
    #[error(
        "election_timeout_ticks ({election}) must be greater than heartbeat_interval_ticks ({heartbeat})"
    )]
    ElectionTimeoutTooShort { election: u64, heartbeat: u64 },
    #[error("{field} must be at least 1")]
    ZeroLimit { field: &'static str },
}
