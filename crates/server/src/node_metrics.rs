//! What the node loop records in [`Metrics`]: the node glue's [`Observer`] hooks (WAL batches, applied
//! entries), elections and leader changes seen after each input, and the latency of each client request
//! from its arrival to its answer.

use std::sync::Arc;
use std::time::Instant;

use kv::Reply;
use node::{Consistency, Observer};
use raft::{Entry, HardState, NodeId, Raft, Term};

use crate::metrics::{seconds, Metrics};

/// The node glue's observer in the server: feeds WAL batch sizes and applied entries to the metrics.
pub struct MetricsObserver {
    pub metrics: Arc<Metrics>,
}

impl Observer for MetricsObserver {
    fn persisted(&mut self, _hard_state: Option<&HardState>, entries: &[Entry]) {
        // A write of the hard state alone (a vote, a new term) carries no entries; it is not a log batch.
        if !entries.is_empty() {
            self.metrics.wal_batch_entries.observe(entries.len() as f64);
        }
    }

    fn applied(&mut self, _entry: &Entry) {
        self.metrics.applied_entries.inc();
    }

    fn snapshot_taken(&mut self, _meta: &raft::SnapshotMeta) {
        self.metrics.snapshots_taken.inc();
    }

    fn snapshot_installed(&mut self, _meta: &raft::SnapshotMeta, _keep_entries_after: bool) {
        self.metrics.snapshots_installed.inc();
    }

    fn reads_confirmed(&mut self, by_lease: bool, reads: u64) {
        let path = if by_lease { "lease" } else { "read_index" };
        self.metrics.read_confirmations.with_label_values(&[path]).inc_by(reads);
    }
}

/// Counts elections and leader changes by comparing the core's state after each input with the state
/// after the previous one.
///
/// A node starts an election exactly when it moves to a new term and votes for itself in it
/// (`become_candidate`); no other path gives it its own vote, and one input moves the term at most once.
/// So checking after every input (not only after every batch) counts every election, including a single
/// voter's, which wins in the same step.
pub struct ElectionWatch {
    term: Term,
    leader_id: Option<NodeId>,
}

impl ElectionWatch {
    pub fn new(raft: &Raft) -> ElectionWatch {
        ElectionWatch { term: raft.term(), leader_id: raft.leader_id() }
    }

    pub fn observe(&mut self, raft: &Raft, metrics: &Metrics) {
        if raft.term() != self.term {
            if raft.vote() == Some(raft.id()) {
                metrics.elections_started.inc();
            }
            self.term = raft.term();
        }
        let leader = raft.leader_id();
        if leader.is_some() && leader != self.leader_id {
            metrics.leader_changes.inc();
        }
        // Forgetting the leader (a new term, a pre-vote) is not a change of leader; learning the same
        // leader again afterwards is not one either.
        if leader.is_some() {
            self.leader_id = leader;
        }
    }
}

/// What kind of request a client is waiting on, for its latency histogram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestKind {
    Write,
    Read(Consistency),
}

/// A client waiting for the node loop's answer.
pub struct WaitingRequest {
    pub reply: tokio::sync::oneshot::Sender<Reply>,
    pub kind: RequestKind,
    pub arrived: Instant,
}

/// Whether an answer means the node failed to get the request through Raft (no leader, overloaded,
/// timed out, shutting down, storage stopped), as opposed to the state machine's own answer — which may
/// itself be an error (`-ERR value is not an integer`, `-OOM`) for a command that was applied.
pub fn is_failure(reply: &Reply) -> bool {
    let Reply::Error(text) = reply else { return false };
    text.starts_with("TRYAGAIN")
        || text.starts_with("TIMEOUT")
        || text == "ERR the node stopped after a storage failure"
}

/// Records one answered request.
pub fn record_answer(metrics: &Metrics, request: &WaitingRequest, reply: &Reply) {
    let failed = is_failure(reply);
    let elapsed = seconds(request.arrived.elapsed());
    match request.kind {
        RequestKind::Write => {
            metrics.proposals.with_label_values(&[if failed { "failed" } else { "applied" }]).inc();
            if !failed {
                metrics.proposal_seconds.observe(elapsed);
            }
        }
        RequestKind::Read(consistency) => {
            let consistency = match consistency {
                Consistency::Linearizable => "linearizable",
                Consistency::Stale => "stale",
            };
            metrics.reads.with_label_values(&[consistency, if failed { "failed" } else { "ok" }]).inc();
            if !failed && consistency == "linearizable" {
                metrics.read_index_seconds.observe(elapsed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_machine_errors_are_answers_but_node_errors_are_failures() {
        assert!(!is_failure(&Reply::Ok));
        assert!(!is_failure(&Reply::error("ERR value is not an integer or out of range")));
        assert!(!is_failure(&Reply::error("OOM command not allowed when used memory > 'maxmemory'.")));
        assert!(is_failure(&Reply::error(node::errors::NO_LEADER)));
        assert!(is_failure(&Reply::error(node::errors::OVERLOADED)));
        assert!(is_failure(&Reply::error(node::errors::OUTCOME_UNKNOWN)));
        assert!(is_failure(&Reply::error(node::errors::READ_TIMEOUT)));
        assert!(is_failure(&Reply::error(crate::node_loop::SHUTTING_DOWN)));
    }
}
