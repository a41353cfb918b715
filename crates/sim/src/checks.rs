//! Safety checks against a separate record of history, run after every step of a simulation.
//!
//! The checks do not trust the nodes' current state alone: a bug that elects two leaders in one term and
//! then lets one step down leaves no trace in the current roles. So the checker keeps its own history —
//! every leader of every term, every entry ever reported committed, every apply, every durable hard state —
//! and compares each new observation with it. The properties are Figure 3 of the Raft paper plus the
//! obligations of persistence:
//!
//! | check | property |
//! |---|---|
//! | `ElectionSafety` | at most one leader per term, ever (§5.2) |
//! | `LogMatching` | two entries with the same index and term hold the same command and are preceded by identical logs (§5.3) |
//! | `LeaderCompleteness` | every entry committed before a term began is in the log of that term's leader (§5.4) |
//! | `StateMachineSafety` | no two nodes apply different commands at one index; nobody applies past its commit index or out of order (§5.4.3) |
//! | `CommitMonotonic` | a node's commit index never goes back while it lives |
//! | `DurableHardState` | after a restart a node's term and vote are never behind what it had made durable |
//!
//! Log Matching is checked in O(1) per entry with a hash chain: each entry's `prefix_hash` is a hash of
//! its index, term and command digest and of the previous entry's prefix hash. Two entries with the same
//! (index, term) must have the same prefix hash, which (up to hash collisions) means the same command and
//! identical logs before it — the whole Log Matching property, not only its first half.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use raft::{Index, NodeId, Term};

/// Which property a violation breaks; the names are what `raftkv sim` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Check {
    ElectionSafety,
    LogMatching,
    LeaderCompleteness,
    StateMachineSafety,
    CommitMonotonic,
    DurableHardState,
    Linearizability,
    Liveness,
    /// Something grew past its bound (e.g. messages in flight): a runaway loop, reported before it eats
    /// the machine's memory.
    ResourceBound,
    /// An assertion inside the real code fired (a broken invariant crashes loudly, by design).
    Invariant,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A broken property, with enough detail to start debugging from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub check: Check,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} violated: {}", self.check, self.detail)
    }
}

fn violation(check: Check, detail: String) -> Result<(), Violation> {
    Err(Violation { check, detail })
}

/// One log entry as the checker sees it: position, term, and a digest of the whole entry's payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryDigest {
    pub index: Index,
    pub term: Term,
    pub digest: u64,
}

/// The hash chain of Log Matching: the prefix hash of an entry, given the prefix hash before it.
pub fn chain(previous_prefix_hash: u64, entry: EntryDigest) -> u64 {
    let mut value = previous_prefix_hash;
    for word in [entry.index, entry.term, entry.digest] {
        value = crate::seed::mix64(value ^ word);
    }
    value
}

/// What the checker remembers of one node while it lives.
#[derive(Default)]
struct NodeRecord {
    commit_index: Index,
    last_applied: Index,
    /// Durable term and vote as of the node's last completed persist: a restart may not go behind it.
    durable_term: Term,
    durable_vote: Option<NodeId>,
}

/// The history of one run, and the checks against it.
#[derive(Default)]
pub struct SafetyChecker {
    leaders_by_term: BTreeMap<Term, NodeId>,
    /// (index, term) → prefix hash, for every entry any node ever held.
    prefix_by_position: HashMap<(Index, Term), u64>,
    /// index → the committed entry as first reported, who reported it, and the lowest term at which any
    /// node reported it committed. The entry was committed by a leader of that term or an earlier one.
    committed: BTreeMap<Index, (EntryDigest, NodeId, Term)>,
    /// index → (digest, node) of the first apply at that index.
    applied: HashMap<Index, (u64, NodeId)>,
    nodes: HashMap<NodeId, NodeRecord>,
}

impl SafetyChecker {
    pub fn new() -> Self {
        SafetyChecker::default()
    }

    /// A node believes it is leader of `term`.
    pub fn observe_leader(&mut self, node: NodeId, term: Term) -> Result<(), Violation> {
        match self.leaders_by_term.get(&term) {
            Some(&other) if other != node => violation(
                Check::ElectionSafety,
                format!("node {node} and node {other} were both leader in term {term}"),
            ),
            Some(_) => Ok(()),
            None => {
                self.leaders_by_term.insert(term, node);
                Ok(())
            }
        }
    }

    /// A node holds `entry` with prefix hash `prefix_hash` in its log (just appended, or found at startup).
    pub fn observe_entry(
        &mut self,
        node: NodeId,
        entry: EntryDigest,
        prefix_hash: u64,
    ) -> Result<(), Violation> {
        match self.prefix_by_position.get(&(entry.index, entry.term)) {
            Some(&known) if known != prefix_hash => violation(
                Check::LogMatching,
                format!(
                    "node {node} holds entry {}@{} with a different command or a different log before \
                     it than another node's entry {}@{}",
                    entry.index, entry.term, entry.index, entry.term
                ),
            ),
            Some(_) => Ok(()),
            None => {
                self.prefix_by_position.insert((entry.index, entry.term), prefix_hash);
                Ok(())
            }
        }
    }

    /// A node became leader of `term` holding a log whose term at an index is given by `term_at` (None
    /// below its first index, e.g. compacted into a snapshot at `snapshot_index`, or past its end).
    pub fn observe_new_leader_log(
        &mut self,
        node: NodeId,
        term: Term,
        snapshot_index: Index,
        term_at: impl Fn(Index) -> Option<Term>,
    ) -> Result<(), Violation> {
        self.observe_leader(node, term)?;
        // §5.4 promises committed entries to the leaders of *later* terms only: a very late vote can
        // complete an election for an old term after a newer term has committed entries. So an entry is
        // required when it is known committed in a term below this leader's (no false alarms), which still
        // covers every entry committed before the election as the paper means it.
        for (&index, &(entry, reported_by, known_in_term)) in self.committed.range(snapshot_index + 1..) {
            if known_in_term >= term {
                continue;
            }
            if term_at(index) != Some(entry.term) {
                return violation(
                    Check::LeaderCompleteness,
                    format!(
                        "node {node} became leader of term {term} without committed entry {index}@{} \
                         (reported committed by node {reported_by}); it has {:?} there",
                        entry.term,
                        term_at(index)
                    ),
                );
            }
        }
        Ok(())
    }

    /// A node in term `node_term` has commit index `commit_index`, and `entries` are the entries it newly
    /// considers committed (from its own log).
    pub fn observe_commit(
        &mut self,
        node: NodeId,
        node_term: Term,
        commit_index: Index,
        newly_committed: &[EntryDigest],
    ) -> Result<(), Violation> {
        let record = self.nodes.entry(node).or_default();
        if commit_index < record.commit_index {
            return violation(
                Check::CommitMonotonic,
                format!(
                    "node {node}'s commit index went back from {} to {commit_index}",
                    record.commit_index
                ),
            );
        }
        record.commit_index = commit_index;
        for &entry in newly_committed {
            match self.committed.get_mut(&entry.index) {
                Some(&mut (known, by, _)) if known != entry => {
                    return violation(
                        Check::StateMachineSafety,
                        format!(
                            "node {node} committed {}@{} but node {by} had committed {}@{} at that index",
                            entry.index, entry.term, known.index, known.term
                        ),
                    )
                }
                Some((_, _, known_in_term)) => *known_in_term = (*known_in_term).min(node_term),
                None => {
                    self.committed.insert(entry.index, (entry, node, node_term));
                }
            }
        }
        Ok(())
    }

    /// The prefix hash of the entry at `(index, term)`, if any node ever held it.
    pub fn prefix_of(&self, index: Index, term: Term) -> Option<u64> {
        if index == 0 {
            return Some(0);
        }
        self.prefix_by_position.get(&(index, term)).copied()
    }

    /// A node's state machine was replaced by a snapshot's at `index` (InstallSnapshot): applies go on
    /// after it. It may only move forward, and only to what the node knows committed.
    pub fn observe_restore(&mut self, node: NodeId, index: Index) -> Result<(), Violation> {
        let record = self.nodes.entry(node).or_default();
        if index <= record.last_applied || index > record.commit_index {
            return violation(
                Check::StateMachineSafety,
                format!(
                    "node {node} restored a snapshot at {index} after applying {} with commit index {}",
                    record.last_applied, record.commit_index
                ),
            );
        }
        record.last_applied = index;
        Ok(())
    }

    /// A node applied the entry at `index` with payload digest `digest`.
    pub fn observe_apply(&mut self, node: NodeId, index: Index, digest: u64) -> Result<(), Violation> {
        let record = self.nodes.entry(node).or_default();
        if index != record.last_applied + 1 {
            return violation(
                Check::StateMachineSafety,
                format!("node {node} applied index {index} right after {}", record.last_applied),
            );
        }
        if index > record.commit_index {
            return violation(
                Check::StateMachineSafety,
                format!("node {node} applied index {index} beyond its commit index {}", record.commit_index),
            );
        }
        record.last_applied = index;
        match self.applied.get(&index) {
            Some(&(known, by)) if known != digest => violation(
                Check::StateMachineSafety,
                format!("node {node} and node {by} applied different commands at index {index}"),
            ),
            Some(_) => Ok(()),
            None => {
                self.applied.insert(index, (digest, node));
                Ok(())
            }
        }
    }

    /// A node has made `term` and `vote` durable.
    pub fn observe_durable_hard_state(&mut self, node: NodeId, term: Term, vote: Option<NodeId>) {
        let record = self.nodes.entry(node).or_default();
        record.durable_term = term;
        record.durable_vote = vote;
    }

    /// A node restarted from its disk with `term` and `vote`, its state machine restored up to
    /// `applied_index` (a snapshot's index, or 0), and its commit index reset to `commit_index`.
    pub fn observe_restart(
        &mut self,
        node: NodeId,
        term: Term,
        vote: Option<NodeId>,
        commit_index: Index,
        applied_index: Index,
    ) -> Result<(), Violation> {
        let record = self.nodes.entry(node).or_default();
        let behind = term < record.durable_term
            || (term == record.durable_term && record.durable_vote.is_some() && vote != record.durable_vote);
        if behind {
            return violation(
                Check::DurableHardState,
                format!(
                    "node {node} restarted with term {term} vote {vote:?}, but had made term {} vote {:?} \
                     durable",
                    record.durable_term, record.durable_vote
                ),
            );
        }
        // A new life: commit index and applies start again from what the disk recovered.
        record.commit_index = commit_index;
        record.last_applied = applied_index;
        Ok(())
    }

    /// Every entry ever reported committed, in index order (for the final durability check).
    pub fn committed_entries(&self) -> impl Iterator<Item = EntryDigest> + '_ {
        self.committed.values().map(|&(entry, _, _)| entry)
    }

    /// The highest term that had a leader, if any.
    pub fn last_leader_term(&self) -> Option<(Term, NodeId)> {
        self.leaders_by_term.iter().next_back().map(|(&term, &node)| (term, node))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: Index, term: Term, digest: u64) -> EntryDigest {
        EntryDigest { index, term, digest }
    }

    /// Prefix hashes of a log given as (term, digest) pairs from index 1.
    fn prefixes(log: &[(Term, u64)]) -> Vec<(EntryDigest, u64)> {
        let mut previous = 0;
        log.iter()
            .enumerate()
            .map(|(i, &(term, digest))| {
                let e = entry(i as Index + 1, term, digest);
                previous = chain(previous, e);
                (e, previous)
            })
            .collect()
    }

    #[test]
    fn two_leaders_in_one_term_break_election_safety_even_if_one_steps_down() {
        let mut checker = SafetyChecker::new();
        checker.observe_leader(1, 2).unwrap();
        checker.observe_leader(1, 2).unwrap();
        checker.observe_leader(2, 3).unwrap();
        let broken = checker.observe_leader(3, 2).unwrap_err();
        assert_eq!(broken.check, Check::ElectionSafety);
    }

    #[test]
    fn same_index_and_term_with_different_history_breaks_log_matching() {
        let mut checker = SafetyChecker::new();
        for (e, prefix) in prefixes(&[(1, 10), (1, 11), (3, 12)]) {
            checker.observe_entry(1, e, prefix).unwrap();
        }
        // Same last entry 3@3 with the same command, but a different entry (2@2) before it.
        let other = prefixes(&[(1, 10), (2, 99), (3, 12)]);
        checker.observe_entry(2, other[0].0, other[0].1).unwrap();
        checker.observe_entry(2, other[1].0, other[1].1).unwrap();
        assert_eq!(checker.observe_entry(2, other[2].0, other[2].1).unwrap_err().check, Check::LogMatching);
        // And the same position with a different command is caught directly.
        let conflicting = entry(2, 1, 55);
        let prefix = chain(prefixes(&[(1, 10)])[0].1, conflicting);
        assert_eq!(checker.observe_entry(3, conflicting, prefix).unwrap_err().check, Check::LogMatching);
    }

    #[test]
    fn leader_missing_a_committed_entry_breaks_leader_completeness() {
        let mut checker = SafetyChecker::new();
        checker.observe_commit(1, 1, 2, &[entry(1, 1, 10), entry(2, 1, 11)]).unwrap();
        let log = [1, 1];
        checker.observe_new_leader_log(2, 2, 0, |i| log.get(i as usize - 1).copied()).unwrap();
        let short_log = [1];
        let broken =
            checker.observe_new_leader_log(3, 3, 0, |i| short_log.get(i as usize - 1).copied()).unwrap_err();
        assert_eq!(broken.check, Check::LeaderCompleteness);
        // Entries compacted into the new leader's snapshot are not required in its log.
        checker.observe_new_leader_log(3, 4, 2, |_| None).unwrap();
    }

    /// Seeds 120 and 159: votes delivered very late complete an election for term 2 after term 3 has
    /// committed an entry. Legal in Raft (§5.4 speaks of later terms only), so no alarm.
    #[test]
    fn a_late_election_for_an_old_term_need_not_hold_newer_commits() {
        let mut checker = SafetyChecker::new();
        checker.observe_commit(3, 3, 1, &[entry(1, 3, 10)]).unwrap();
        checker.observe_new_leader_log(1, 2, 0, |_| None).unwrap();
        assert!(checker.observe_new_leader_log(1, 4, 0, |_| None).is_err(), "but term 4 must hold it");
    }

    #[test]
    fn different_commits_or_applies_at_one_index_break_state_machine_safety() {
        let mut checker = SafetyChecker::new();
        checker.observe_commit(1, 1, 1, &[entry(1, 1, 10)]).unwrap();
        assert_eq!(
            checker.observe_commit(2, 2, 1, &[entry(1, 2, 20)]).unwrap_err().check,
            Check::StateMachineSafety
        );
        checker.observe_apply(1, 1, 10).unwrap();
        checker.observe_commit(3, 1, 1, &[entry(1, 1, 10)]).unwrap();
        assert_eq!(checker.observe_apply(3, 1, 77).unwrap_err().check, Check::StateMachineSafety);
    }

    #[test]
    fn applying_out_of_order_or_past_commit_is_caught() {
        let mut checker = SafetyChecker::new();
        checker.observe_commit(1, 1, 1, &[entry(1, 1, 10)]).unwrap();
        assert!(checker.observe_apply(1, 2, 11).is_err(), "skipped index 1");
        checker.observe_apply(1, 1, 10).unwrap();
        assert!(checker.observe_apply(1, 2, 11).is_err(), "index 2 is not committed");
    }

    #[test]
    fn commit_index_going_back_is_caught_but_a_restart_starts_a_new_life() {
        let mut checker = SafetyChecker::new();
        checker.observe_commit(1, 1, 5, &[]).unwrap();
        assert_eq!(checker.observe_commit(1, 1, 4, &[]).unwrap_err().check, Check::CommitMonotonic);
        checker.observe_restart(1, 0, None, 0, 0).unwrap();
        checker.observe_commit(1, 1, 4, &[]).unwrap();
    }

    #[test]
    fn restart_behind_the_durable_term_or_with_another_vote_is_caught() {
        let mut checker = SafetyChecker::new();
        checker.observe_durable_hard_state(1, 3, Some(2));
        assert_eq!(checker.observe_restart(1, 2, None, 0, 0).unwrap_err().check, Check::DurableHardState);
        assert_eq!(checker.observe_restart(1, 3, Some(1), 0, 0).unwrap_err().check, Check::DurableHardState);
        checker.observe_restart(1, 3, Some(2), 0, 0).unwrap();
        checker.observe_restart(1, 4, None, 0, 0).unwrap();
    }
}
