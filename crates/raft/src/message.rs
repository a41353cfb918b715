//! The messages Raft servers exchange (Figure 2's RPCs, as one-way messages), and their validation.
//!
//! Requests and responses are separate messages, as in etcd-io/raft: the core never waits for an answer,
//! it reacts to whatever arrives. Every message carries the sender's term, which [`crate::Raft::step`]
//! checks once before anything else.
//!
//! Each type has a compact [`Display`](fmt::Display) for scenario output, e.g.
//! `1->2 t3 app prev=5@2 [6@3 7@3] commit=4`.

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::StepError;
use crate::types::{Entry, Index, NodeId, SnapshotMeta, Term};

/// One message from one server to another.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Message {
    pub from: NodeId,
    pub to: NodeId,
    /// The sender's current term (for a pre-vote request: the term it would campaign in; for a granted
    /// pre-vote: the term of the request it answers).
    pub term: Term,
    pub body: MessageBody,
}

/// What a message says. Non-exhaustive: later versions may add kinds.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[non_exhaustive]
pub enum MessageBody {
    VoteRequest(VoteRequest),
    VoteResponse(VoteResponse),
    AppendRequest(AppendRequest),
    AppendResponse(AppendResponse),
    Heartbeat(Heartbeat),
    HeartbeatResponse(HeartbeatResponse),
    InstallSnapshot(InstallSnapshot),
    InstallSnapshotResponse(InstallSnapshotResponse),
    /// The leader asks this follower to start an election at once (leadership transfer, dissertation
    /// §3.10): it skips pre-vote, and its vote requests carry the transfer mark.
    TimeoutNow,
}

/// RequestVote (§5.2), or its pre-vote twin (dissertation §9.6) which asks "would you vote for me?"
/// without anyone changing term.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct VoteRequest {
    pub pre_vote: bool,
    /// Index and term of the candidate's last log entry, for the up-to-date check of §5.4.1.
    pub last_log_index: Index,
    pub last_log_term: Term,
    /// Set when the current leader asked the candidate to take over (dissertation §3.10): such a request
    /// is exempt from leader stickiness.
    pub leadership_transfer: bool,
}

/// The answer to a [`VoteRequest`].
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct VoteResponse {
    pub pre_vote: bool,
    pub granted: bool,
}

/// AppendEntries (§5.3): entries to append after `prev_log_index`, and the leader's commit index.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct AppendRequest {
    pub prev_log_index: Index,
    pub prev_log_term: Term,
    /// Consecutive entries starting at `prev_log_index + 1`; may be empty (a probe).
    pub entries: Vec<Entry>,
    pub leader_commit: Index,
}

/// The answer to an [`AppendRequest`].
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum AppendResponse {
    /// The follower's log now matches the leader's up to `match_index`, durably.
    Accepted { match_index: Index },
    /// The consistency check failed at `rejected_prev_index`. `hint_index`/`hint_term` name the largest
    /// index at or below it whose term is at most the leader's `prev_log_term` (see
    /// [`crate::log::AppendRejection`]); `last_index` is the follower's last log index.
    Rejected { rejected_prev_index: Index, hint_index: Index, hint_term: Term, last_index: Index },
}

/// The leader's heartbeat (§5.2): asserts leadership, carries the commit index (capped at what this
/// follower is known to hold), and the round number that ReadIndex confirmations count (§6.4).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Heartbeat {
    pub commit: Index,
    pub read_round: u64,
}

/// The answer to a [`Heartbeat`], echoing its round.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct HeartbeatResponse {
    pub read_round: u64,
}

/// InstallSnapshot (§7; dissertation §5.3): one chunk of the leader's latest snapshot. The bytes are the
/// application's (the core never holds more than this one chunk of them); the core only tracks offsets.
/// A transfer is one stream of chunks from one leader in one term: offsets count bytes from the start of
/// that leader's snapshot file, and a follower never mixes chunks of two streams in one file.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct InstallSnapshot {
    /// What the snapshot stands for: its last included index and term, and the configuration at it.
    pub meta: SnapshotMeta,
    /// Position of `data` in the snapshot's bytes.
    pub offset: u64,
    pub data: Bytes,
    /// True for the last chunk: the follower then holds the whole snapshot.
    pub done: bool,
}

/// The answer to an [`InstallSnapshot`] chunk.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum InstallSnapshotResponse {
    /// The follower holds the snapshot `(snapshot_index, snapshot_term)` of this leader's stream up to
    /// `next_offset` and wants the chunk starting there next. 0 restarts the transfer: the follower lost
    /// its partial file (it restarted) or it failed verification. Promises nothing durable.
    NextOffset { snapshot_index: Index, snapshot_term: Term, next_offset: u64 },
    /// The snapshot is installed and durable: the follower's log matches the leader's up to
    /// `snapshot_index` (an acknowledgement like an append's, held until it is true on disk).
    Installed { snapshot_index: Index, snapshot_term: Term },
    /// Refused as stale (dissertation §5.3): the follower already committed `commit`, at or beyond the
    /// snapshot's index, so its log already holds everything the snapshot covers. The leader goes back to
    /// appends from `commit + 1`.
    Stale { commit: Index },
}

impl Message {
    /// True for a message only a leader sends (append, heartbeat or snapshot chunk).
    pub fn is_from_leader(&self) -> bool {
        matches!(
            self.body,
            MessageBody::AppendRequest(_) | MessageBody::Heartbeat(_) | MessageBody::InstallSnapshot(_)
        )
    }

    /// Checks what can be checked without any state: a message that fails here is malformed (a bug or
    /// corruption on the sender's side) and is refused with a typed error.
    pub fn validate(&self, receiver: NodeId) -> Result<(), StepError> {
        if self.from == 0 {
            return Err(StepError::NoSender);
        }
        if self.from == self.to {
            return Err(StepError::SelfAddressed { id: self.from });
        }
        if self.to != receiver {
            return Err(StepError::WrongRecipient { to: self.to, receiver });
        }
        if self.term == 0 {
            return Err(StepError::ZeroTerm);
        }
        match &self.body {
            MessageBody::VoteRequest(request) if request.last_log_term > self.term => {
                Err(StepError::LogTermAboveMessageTerm { log_term: request.last_log_term, term: self.term })
            }
            MessageBody::AppendRequest(request) => request.validate(self.term),
            MessageBody::InstallSnapshot(chunk) => chunk.validate(self.term),
            MessageBody::InstallSnapshotResponse(InstallSnapshotResponse::Installed {
                snapshot_index,
                snapshot_term,
            }) => validate_snapshot_id(*snapshot_index, *snapshot_term, self.term),
            _ => Ok(()),
        }
    }
}

/// A snapshot covers at least one entry (the empty boundary at index 0 is never sent), so its term is a
/// real term, and no later than the term of the message that carries it.
fn validate_snapshot_id(index: Index, snapshot_term: Term, term: Term) -> Result<(), StepError> {
    if index == 0 || snapshot_term == 0 {
        return Err(StepError::EmptySnapshot { index, term: snapshot_term });
    }
    if snapshot_term > term {
        return Err(StepError::LogTermAboveMessageTerm { log_term: snapshot_term, term });
    }
    Ok(())
}

impl InstallSnapshot {
    fn validate(&self, term: Term) -> Result<(), StepError> {
        validate_snapshot_id(self.meta.index, self.meta.term, term)?;
        if self.offset.checked_add(self.data.len() as u64).is_none() {
            return Err(StepError::SnapshotOffsetOverflow { offset: self.offset });
        }
        Ok(())
    }

    /// The offset just past this chunk (validated not to overflow).
    pub fn end_offset(&self) -> u64 {
        self.offset.saturating_add(self.data.len() as u64)
    }
}

impl AppendRequest {
    fn validate(&self, term: Term) -> Result<(), StepError> {
        if self.prev_log_term > term {
            return Err(StepError::LogTermAboveMessageTerm { log_term: self.prev_log_term, term });
        }
        // The index after the last entry must exist, so that no `+ 1` on an accepted index overflows.
        // (Found by the `peer_frame` fuzz target: a prev_log_index of u64::MAX overflowed right here.)
        let entries = self.entries.len() as u64;
        if self.prev_log_index.checked_add(entries).and_then(|last| last.checked_add(1)).is_none() {
            return Err(StepError::IndexOverflow { prev_log_index: self.prev_log_index, entries });
        }
        let mut previous_term = self.prev_log_term;
        for (offset, entry) in (1..=entries).zip(&self.entries) {
            let expected_index = self.prev_log_index + offset;
            if entry.index != expected_index {
                return Err(StepError::NonConsecutiveEntries {
                    expected: expected_index,
                    found: entry.index,
                });
            }
            if entry.term > term {
                return Err(StepError::LogTermAboveMessageTerm { log_term: entry.term, term });
            }
            if entry.term < previous_term {
                return Err(StepError::DecreasingEntryTerms { index: entry.index });
            }
            previous_term = entry.term;
        }
        Ok(())
    }
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}->{} t{} ", self.from, self.to, self.term)?;
        match &self.body {
            MessageBody::VoteRequest(r) => {
                let kind = if r.pre_vote { "prevote" } else { "vote" };
                write!(f, "{kind}? last={}@{}", r.last_log_index, r.last_log_term)?;
                if r.leadership_transfer {
                    write!(f, " transfer")?;
                }
                Ok(())
            }
            MessageBody::VoteResponse(r) => {
                let kind = if r.pre_vote { "prevote" } else { "vote" };
                write!(f, "{kind} {}", if r.granted { "yes" } else { "no" })
            }
            MessageBody::AppendRequest(r) => {
                write!(f, "app prev={}@{} [", r.prev_log_index, r.prev_log_term)?;
                for (i, entry) in r.entries.iter().enumerate() {
                    write!(f, "{}{entry}", if i > 0 { " " } else { "" })?;
                }
                write!(f, "] commit={}", r.leader_commit)
            }
            MessageBody::AppendResponse(AppendResponse::Accepted { match_index }) => {
                write!(f, "app ok match={match_index}")
            }
            MessageBody::AppendResponse(AppendResponse::Rejected {
                rejected_prev_index,
                hint_index,
                hint_term,
                last_index,
            }) => write!(
                f,
                "app reject prev={rejected_prev_index} hint={hint_index}@{hint_term} last={last_index}"
            ),
            MessageBody::Heartbeat(h) => write!(f, "hb commit={} round={}", h.commit, h.read_round),
            MessageBody::HeartbeatResponse(h) => write!(f, "hb ok round={}", h.read_round),
            MessageBody::InstallSnapshot(s) => {
                write!(f, "snap {}@{} off={} len={}", s.meta.index, s.meta.term, s.offset, s.data.len())?;
                if s.done {
                    write!(f, " done")?;
                }
                Ok(())
            }
            MessageBody::InstallSnapshotResponse(InstallSnapshotResponse::NextOffset {
                snapshot_index,
                snapshot_term,
                next_offset,
            }) => write!(f, "snap next={next_offset} of {snapshot_index}@{snapshot_term}"),
            MessageBody::InstallSnapshotResponse(InstallSnapshotResponse::Installed {
                snapshot_index,
                snapshot_term,
            }) => write!(f, "snap installed {snapshot_index}@{snapshot_term}"),
            MessageBody::InstallSnapshotResponse(InstallSnapshotResponse::Stale { commit }) => {
                write!(f, "snap stale commit={commit}")
            }
            MessageBody::TimeoutNow => write!(f, "timeout now"),
        }
    }
}
