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
    /// The leader is handing leadership to `target` (dissertation §3.10) and accepts nothing new until
    /// the transfer finishes or aborts (after an election timeout); retry, most likely on `target`.
    #[error("leadership is being transferred to node {target}")]
    LeadershipTransferInProgress { target: NodeId },
}

/// Why [`crate::Raft::propose_conf_change`] refused a membership change. Nothing was appended.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Error)]
pub enum ConfChangeError {
    /// Only the leader changes the configuration; `leader_hint` is the leader this node knows of.
    #[error("not the leader (leader hint: {leader_hint:?})")]
    NotLeader { leader_hint: Option<NodeId> },
    /// A new leader changes nothing before it has committed an entry of its own term (its no-op): until
    /// then it cannot know that no earlier leader's change is still on its way to commitment.
    #[error("the leader has not committed an entry of its term yet; retry shortly")]
    LeaderNotReady,
    /// One change at a time: the configuration entry at `index` is not committed yet, or the joint
    /// configuration has not been left yet.
    #[error("a configuration change is in progress (entry {index}); retry once it is committed")]
    ChangeInProgress { index: Index },
    /// The leader is handing over leadership; it changes nothing meanwhile.
    #[error("leadership is being transferred to node {target}")]
    LeadershipTransferInProgress { target: NodeId },
    /// A node id of 0 (0 means nobody).
    #[error("node id 0 is not a valid member id")]
    ZeroId,
    /// The node is already a member (as a learner or voter).
    #[error("node {id} is already a member")]
    AlreadyMember { id: NodeId },
    /// The node is not a member at all.
    #[error("node {id} is not a member")]
    NotAMember { id: NodeId },
    /// A new voter must first join as a learner and catch up (dissertation §4.2.1).
    #[error("node {id} is not a learner: add it as a learner first and promote it once it caught up")]
    NotALearner { id: NodeId },
    /// The learner is too far behind the leader to be promoted (it would stall commitment while it
    /// catches up), or has not stored the configuration in force yet. Retry once it has.
    #[error("learner {id} is behind: it has {match_index} of the leader's {last_index} entries")]
    LearnerBehind { id: NodeId, match_index: Index, last_index: Index },
    /// The change would leave no voter.
    #[error("the change would leave no voter")]
    NoVoters,
    /// A node listed as both voter and learner.
    #[error("node {id} cannot be both a voter and a learner")]
    VoterAndLearner { id: NodeId },
    /// The target is the configuration already in force.
    #[error("the configuration is already as asked")]
    NothingToChange,
}

/// Why [`crate::Raft::transfer_leadership`] refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Error)]
pub enum TransferError {
    /// Only the leader hands over leadership.
    #[error("not the leader (leader hint: {leader_hint:?})")]
    NotLeader { leader_hint: Option<NodeId> },
    /// The target must be a voter of the configuration in force (of C_new while joint).
    #[error("node {target} is not a voter")]
    NotAVoter { target: NodeId },
    /// The leader already leads.
    #[error("node {target} already leads")]
    AlreadyLeader { target: NodeId },
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
    #[error("lease reads need check_quorum: without it followers do not promise to ignore other candidates")]
    LeaseWithoutCheckQuorum,
    #[error("max clock drift {ppm} ppm is too large for lease reads (must be below 500000 ppm, i.e. 0.5)")]
    ClockDriftTooLarge { ppm: u64 },
    #[error("election_timeout_ticks ({election}) leaves no lease: lease reads need at least 2")]
    LeaseTooShort { election: u64 },
}
