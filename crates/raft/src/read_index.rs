//! Linearizable reads without writing to the log: ReadIndex (§6.4 of the dissertation).
//!
//! A leader may answer a read from its state machine once it knows two things: that its commit index is
//! at least as high as any write committed before the read arrived (true once it has committed an entry of
//! its own term, hence the no-op of §8), and that it was still the leader when the read arrived (a newer
//! leader could otherwise have committed writes it has not heard of). The second needs a round of
//! heartbeats acknowledged by a majority, sent *after* the read arrived.
//!
//! Rounds are numbered. Every heartbeat broadcast is a new round; a read arriving while round `r` is the
//! latest sent needs round `r + 1`. Many reads share a round, and a read never rides on a round that was
//! already out when it arrived. When reads wait and no round is outstanding, the next `Ready` starts one
//! at once instead of waiting for the heartbeat timer; every read that arrived before that `Ready` shares
//! it.

use std::collections::{BTreeMap, VecDeque};

use crate::error::ReadIndexError;
use crate::quorum;
use crate::raft::{injected, Raft, Role};
use crate::ready::{FailedRead, ReadState};
use crate::types::{Index, NodeId};

/// A read waiting for confirmation.
#[derive(Clone, Copy, Debug)]
struct PendingRead {
    ctx: u64,
    /// The commit index to serve at (fixed when the read arrived, raised to the term's no-op).
    index: Index,
    /// The first round that confirms this read.
    needs_round: u64,
}

/// The leader's ReadIndex bookkeeping.
#[derive(Clone, Debug, Default)]
pub(crate) struct ReadOnly {
    /// The latest round sent.
    round: u64,
    /// The latest round a quorum acknowledged. Invariant: `confirmed <= round`.
    confirmed: u64,
    /// The latest round each follower acknowledged.
    acks: BTreeMap<NodeId, u64>,
    /// Reads in arrival order (so `needs_round` never decreases along the queue).
    pending: VecDeque<PendingRead>,
    ready: Vec<ReadState>,
    failed: Vec<FailedRead>,
}

impl ReadOnly {
    /// A new leader starts counting afresh: acknowledgements from an earlier term confirm nothing.
    pub fn reset_for_new_term(&mut self) {
        self.acks.clear();
        self.confirmed = self.round;
    }

    /// Starts a new round; returns its number.
    pub fn start_round(&mut self) -> u64 {
        self.round += 1;
        self.round
    }

    pub fn record_ack(&mut self, from: NodeId, round: u64) {
        if round <= self.round {
            let ack = self.acks.entry(from).or_insert(0);
            *ack = (*ack).max(round);
        }
    }

    /// Fails every pending read (the leader stepped down).
    pub fn fail_all(&mut self, reason: ReadIndexError) {
        self.failed.extend(self.pending.drain(..).map(|read| FailedRead { ctx: read.ctx, reason }));
    }

    pub fn has_output(&self) -> bool {
        !self.ready.is_empty() || !self.failed.is_empty()
    }

    pub fn take_output(&mut self) -> (Vec<ReadState>, Vec<FailedRead>) {
        (std::mem::take(&mut self.ready), std::mem::take(&mut self.failed))
    }

    /// True if reads wait for a round that has not started and no round is out: the leader then starts
    /// one at once rather than waiting for the next heartbeat.
    pub fn wants_round(&self) -> bool {
        self.confirmed >= self.round && self.pending.back().is_some_and(|read| read.needs_round > self.round)
    }

    /// Number of reads waiting.
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }
}

impl Raft {
    /// Asks to serve a linearizable read tagged `ctx` (the caller's id for it). Once safe it appears in
    /// [`crate::Ready::read_states`] with the index the state machine must have applied before answering;
    /// if the leader steps down first it appears in [`crate::Ready::failed_reads`].
    pub fn read_index(&mut self, ctx: u64) -> Result<(), ReadIndexError> {
        if self.role != Role::Leader {
            return Err(ReadIndexError::NotLeader { leader_hint: self.leader_id });
        }
        if injected!(self, StaleLeaderRead) {
            self.reads.ready.push(ReadState { ctx, index: self.commit, by_lease: false });
            return Ok(());
        }
        // Lease mode (§6.4.1): while a lease runs no other leader can exist, so the commit index (which
        // holds an entry of this term, see `lease_remaining_nanos`) covers every write acknowledged
        // before the read arrived. Otherwise fall back to a round.
        if self.lease_remaining_nanos().is_some() {
            self.reads.ready.push(ReadState { ctx, index: self.commit, by_lease: true });
            return Ok(());
        }
        if self.reads.pending.len() >= self.config.max_pending_reads {
            return Err(ReadIndexError::TooManyPendingReads);
        }
        let index = self.commit.max(self.term_start_index);
        let needs_round = self.reads.round + 1;
        self.reads.pending.push_back(PendingRead { ctx, index, needs_round });
        // The round itself starts when the next `Ready` is collected (see `wants_round`), so that every
        // read arriving before then shares it.
        Ok(())
    }

    /// Number of reads waiting for confirmation (leader).
    pub fn pending_read_count(&self) -> usize {
        self.reads.pending_count()
    }

    /// Recounts the confirmed round and releases the reads it covers, once the leader has committed an
    /// entry of its term.
    pub(crate) fn maybe_confirm_reads(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        let round = self.reads.round;
        let confirmed = quorum::committed_index(&self.configuration, |id| {
            if id == self.id {
                Some(round)
            } else {
                self.reads.acks.get(&id).copied()
            }
        });
        self.reads.confirmed = self.reads.confirmed.max(confirmed.min(round));
        if self.commit < self.term_start_index {
            return;
        }
        while let Some(read) = self.reads.pending.front().copied() {
            if read.needs_round > self.reads.confirmed {
                break;
            }
            self.reads.pending.pop_front();
            debug_assert!(read.index <= self.commit, "{self}: read index {} above commit", read.index);
            self.reads.ready.push(ReadState { ctx: read.ctx, index: read.index, by_lease: false });
        }
    }
}
