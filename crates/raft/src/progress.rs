//! What a leader knows about one follower's log (Figure 2's `nextIndex[]` and `matchIndex[]`), and how it
//! paces replication to it.
//!
//! A follower is in one of two states, as in etcd-io/raft's `tracker/progress.go`:
//! - **Probe**: the leader does not know where the logs diverge. It sends one AppendEntries at a time and
//!   waits for the answer (or the next heartbeat answer) before sending another, walking `next_index`
//!   back with the follower's hints (§5.3).
//! - **Replicate**: the last append matched, so the leader streams entries optimistically, advancing
//!   `next_index` as it sends, with at most `max_inflight_messages` appends unacknowledged (pipelining).
//! - **Snapshot**: the entries the follower needs are compacted away (`next_index` is at or below the
//!   leader's snapshot boundary), so the leader streams its snapshot instead (§7), one chunk at a time
//!   ([`SnapshotTransfer`]), and sends no appends until the follower has installed it or refused it.

use std::collections::VecDeque;
use std::fmt;

use crate::types::{Index, Term};

/// How the leader currently sends entries to a follower.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ProgressState {
    Probe,
    Replicate,
    Snapshot,
}

/// Where one snapshot transfer stands (leader side). The application owns the bytes: the leader asks it
/// for the chunk at `offset` ([`crate::SnapshotRead`]), sends what it gets back as one InstallSnapshot
/// message, and waits for the follower's answer before asking for the next chunk — one chunk in flight per
/// follower, so the leader's memory per follower is bounded by one chunk.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SnapshotTransfer {
    /// The snapshot being sent: the leader's boundary when the transfer started.
    pub index: Index,
    pub term: Term,
    /// The offset the follower asked for last (0 at first): the next chunk starts here.
    pub offset: u64,
    pub stage: TransferStage,
    /// Ticks spent in the current `Reading` or `Sent` stage; at the chunk timeout the leader asks again.
    pub waiting_ticks: u64,
}

/// The stage of the chunk at a transfer's `offset`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TransferStage {
    /// Nothing outstanding: the next `Ready` asks the application to read the chunk.
    Idle,
    /// The application was asked to read the chunk and has not handed it back yet.
    Reading,
    /// The chunk went out and the follower has not answered yet.
    Sent,
}

impl SnapshotTransfer {
    /// One leader tick while a chunk is outstanding. Returns true when the wait reached `timeout` and the
    /// transfer went back to `Idle`, so that the chunk is asked for again (the read or the message, or the
    /// follower's answer, was probably lost).
    pub fn tick(&mut self, timeout: u64) -> bool {
        if self.stage == TransferStage::Idle {
            return false;
        }
        self.waiting_ticks += 1;
        if self.waiting_ticks < timeout {
            return false;
        }
        self.stage = TransferStage::Idle;
        self.waiting_ticks = 0;
        true
    }
}

/// One follower as seen by the leader.
#[derive(Clone, Debug)]
pub struct Progress {
    /// Highest index known to be replicated (and durable) on the follower. Invariant: `match_index <
    /// next_index`, and `match_index` never decreases during a term.
    pub match_index: Index,
    /// Index of the next entry to send.
    pub next_index: Index,
    pub state: ProgressState,
    /// Probe only: an append is out and unanswered, so send no other until an answer or a heartbeat
    /// response arrives.
    pub probe_sent: bool,
    /// Replicate only: the last index of each unacknowledged append, oldest first.
    /// Invariant: strictly increasing, and never longer than the in-flight limit.
    inflight: VecDeque<Index>,
    /// Set when the follower answers anything; check-quorum clears it each election timeout.
    pub recent_active: bool,
    /// Leader ticks since the follower last answered an append while appends were in flight. After an
    /// election timeout of silence the network has probably lost something (a full window would otherwise
    /// wait forever), and the follower is probed again from its match index.
    pub stalled_ticks: u64,
    /// The highest commit index this follower can have learned from our appends (the leader's commit,
    /// capped at each append's last index). An empty append is worth sending only to raise it.
    pub commit_sent: Index,
    /// The snapshot transfer under way. Invariant: `Some` exactly in the `Snapshot` state.
    pub snapshot: Option<SnapshotTransfer>,
}

impl Progress {
    /// A follower the leader knows nothing about yet: probe from just after the leader's last entry.
    pub fn new(next_index: Index) -> Progress {
        Progress {
            match_index: 0,
            next_index,
            state: ProgressState::Probe,
            probe_sent: false,
            inflight: VecDeque::new(),
            recent_active: false,
            stalled_ticks: 0,
            commit_sent: 0,
            snapshot: None,
        }
    }

    /// True if the leader should not send another append now.
    pub fn is_paused(&self, max_inflight: usize) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => self.inflight.len() >= max_inflight,
            ProgressState::Snapshot => true,
        }
    }

    /// Number of unacknowledged appends (replicate state).
    pub fn inflight_count(&self) -> usize {
        self.inflight.len()
    }

    /// Records that an append covering entries up to `last_index` was sent.
    pub fn on_append_sent(&mut self, last_index: Index, entry_count: usize) {
        match self.state {
            ProgressState::Probe => self.probe_sent = true,
            ProgressState::Replicate => {
                if entry_count > 0 {
                    debug_assert!(self.inflight.back().copied().unwrap_or(0) < last_index);
                    self.next_index = last_index + 1;
                    self.inflight.push_back(last_index);
                }
            }
            ProgressState::Snapshot => debug_assert!(false, "append sent during a snapshot transfer"),
        }
    }

    /// The follower acknowledged everything up to `match_index`. Returns true if that was news.
    pub fn maybe_update(&mut self, match_index: Index) -> bool {
        self.stalled_ticks = 0;
        let updated = match_index > self.match_index;
        if updated {
            self.match_index = match_index;
            self.probe_sent = false;
        }
        self.next_index = self.next_index.max(match_index + 1);
        while self.inflight.front().is_some_and(|&i| i <= match_index) {
            self.inflight.pop_front();
        }
        updated
    }

    /// The follower rejected an append whose previous index was `rejected`; `hint_next` is where the
    /// leader's log and the follower's hint suggest trying next. Returns false if the rejection is stale
    /// (answers an append older than the current probe) and should be ignored.
    pub fn maybe_decrease_to(&mut self, rejected: Index, hint_next: Index) -> bool {
        self.stalled_ticks = 0;
        match self.state {
            ProgressState::Replicate => {
                // Everything up to match_index is known to match, so a rejection at or below it is old.
                if rejected <= self.match_index {
                    return false;
                }
                self.become_probe();
                true
            }
            ProgressState::Probe => {
                // Only the answer to the probe currently out (previous index next - 1) moves next back.
                if rejected != self.next_index - 1 {
                    return false;
                }
                let next_index = rejected.min(hint_next).max(self.match_index + 1);
                // The follower refused the entry at its own match index, which it had acknowledged as
                // durable: it lost its disk (or is buggy). Nothing better is known to send, so wait for the
                // next heartbeat answer rather than repeating the same probe in a tight loop.
                self.probe_sent = next_index == self.next_index;
                self.next_index = next_index;
                true
            }
            // A rejection of an append sent before the transfer began: the snapshot settles it.
            ProgressState::Snapshot => false,
        }
    }

    /// Back to probing right after the last known match.
    pub fn become_probe(&mut self) {
        self.state = ProgressState::Probe;
        self.next_index = self.match_index + 1;
        self.probe_sent = false;
        self.inflight.clear();
        self.snapshot = None;
    }

    /// The last append matched: stream from just after it.
    pub fn become_replicate(&mut self) {
        self.state = ProgressState::Replicate;
        self.next_index = self.match_index + 1;
        self.probe_sent = false;
        self.inflight.clear();
        self.snapshot = None;
    }

    /// Starts sending the snapshot `(index, term)` from its first byte (`next_index` stays where it was,
    /// at or below the snapshot boundary, until the follower answers).
    pub fn become_snapshot(&mut self, index: Index, term: Term) {
        self.state = ProgressState::Snapshot;
        self.probe_sent = false;
        self.inflight.clear();
        self.stalled_ticks = 0;
        self.snapshot =
            Some(SnapshotTransfer { index, term, offset: 0, stage: TransferStage::Idle, waiting_ticks: 0 });
    }

    /// The follower refused the snapshot because it already committed `commit` (or its installed snapshot
    /// made it commit that far): probe from just after it. Nothing is known to be durable there, so the
    /// match index does not move; the probe's acknowledgement will move it.
    pub fn leave_snapshot_for_probe(&mut self, next_index: Index) {
        self.become_probe();
        self.next_index = next_index.max(self.match_index + 1);
    }

    /// One leader tick passed: counts silence while appends are in flight, and falls back to probing once
    /// it lasted `limit` ticks. Returns true if it did.
    pub fn tick_stalled(&mut self, limit: u64) -> bool {
        if self.state != ProgressState::Replicate || self.inflight.is_empty() {
            self.stalled_ticks = 0;
            return false;
        }
        self.stalled_ticks += 1;
        if self.stalled_ticks < limit {
            return false;
        }
        self.become_probe();
        self.stalled_ticks = 0;
        true
    }

    /// A heartbeat answer proves the follower is reachable. A waiting probe may go again.
    pub fn on_heartbeat_response(&mut self) {
        self.recent_active = true;
        self.probe_sent = false;
    }
}

impl fmt::Display for Progress {
    /// `match=5 next=6 replicate inflight=1`, or `match=0 next=3 snapshot 9@2 off=128 sent`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            ProgressState::Probe => "probe",
            ProgressState::Replicate => "replicate",
            ProgressState::Snapshot => "snapshot",
        };
        write!(f, "match={} next={} {state}", self.match_index, self.next_index)?;
        if let Some(transfer) = &self.snapshot {
            let stage = match transfer.stage {
                TransferStage::Idle => "idle",
                TransferStage::Reading => "reading",
                TransferStage::Sent => "sent",
            };
            write!(f, " {}@{} off={} {stage}", transfer.index, transfer.term, transfer.offset)?;
        }
        if !self.inflight.is_empty() {
            write!(f, " inflight={}", self.inflight.len())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_sends_one_at_a_time_and_follows_hints() {
        let mut pr = Progress::new(11);
        assert!(!pr.is_paused(4));
        pr.on_append_sent(11, 1);
        assert!(pr.is_paused(4));
        assert!(!pr.maybe_decrease_to(7, 4), "an answer to an older probe is ignored");
        assert!(pr.maybe_decrease_to(10, 4));
        assert_eq!((pr.next_index, pr.probe_sent), (4, false));
    }

    #[test]
    fn replicate_pipelines_up_to_the_inflight_limit() {
        let mut pr = Progress::new(1);
        pr.maybe_update(3);
        pr.become_replicate();
        pr.on_append_sent(5, 2);
        pr.on_append_sent(8, 3);
        assert!(pr.is_paused(2));
        assert_eq!(pr.next_index, 9);
        pr.maybe_update(5);
        assert!(!pr.is_paused(2));
        assert!(!pr.maybe_decrease_to(4, 1), "a rejection below match is stale");
        assert!(pr.maybe_decrease_to(8, 1));
        assert_eq!((pr.state, pr.next_index), (ProgressState::Probe, 6));
    }
}
