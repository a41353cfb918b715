//! Quorum arithmetic, for simple and joint configurations, with nothing else in it.
//!
//! Everything Raft decides by majority goes through here: elections (§5.2), commitment (§5.3–5.4),
//! check-quorum (dissertation §6.2) and ReadIndex confirmation (§6.4). In a joint configuration C_old,new
//! (dissertation §4.3) each decision needs a majority of *both* halves; modelled on etcd-io/raft's
//! `quorum/majority.go` and `quorum/joint.go`.
//!
//! By convention the empty voter set agrees to everything (it commits `Index::MAX` and wins every vote), so
//! that a non-joint configuration is simply a joint one whose outgoing half is empty.

use std::collections::BTreeSet;

use crate::types::{Configuration, Index, NodeId};

/// The state of a vote count.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum VoteResult {
    /// A majority said yes.
    Won,
    /// A majority can no longer say yes.
    Lost,
    /// Not decided yet: missing answers could still go either way.
    Pending,
}

/// The largest value that a majority of `voters` has reached, where `acked(id)` is what voter `id` has
/// reached (`None` counts as 0). Used with match indices it is the commit index a majority stores; with
/// heartbeat rounds it is the newest round a majority confirmed.
pub fn majority_committed(voters: &BTreeSet<NodeId>, acked: impl Fn(NodeId) -> Option<Index>) -> Index {
    if voters.is_empty() {
        return Index::MAX;
    }
    // Sorted descending, the value at position (n / 2) is reached by n / 2 + 1 voters: a majority.
    // (Clusters are small: sort on the stack when they fit, which they always do in practice.)
    const ON_STACK: usize = 16;
    if voters.len() <= ON_STACK {
        let mut values = [0; ON_STACK];
        for (value, &id) in values.iter_mut().zip(voters) {
            *value = acked(id).unwrap_or(0);
        }
        let values = &mut values[..voters.len()];
        values.sort_unstable_by(|a, b| b.cmp(a));
        return values[voters.len() / 2];
    }
    let mut values: Vec<Index> = voters.iter().map(|&id| acked(id).unwrap_or(0)).collect();
    values.sort_unstable_by(|a, b| b.cmp(a));
    values[voters.len() / 2]
}

/// Counts the answers of `voters`, where `vote(id)` is `Some(true)` for yes, `Some(false)` for no and
/// `None` for no answer yet.
pub fn majority_vote(voters: &BTreeSet<NodeId>, vote: impl Fn(NodeId) -> Option<bool>) -> VoteResult {
    if voters.is_empty() {
        return VoteResult::Won;
    }
    let (mut yes, mut missing) = (0, 0);
    for &id in voters {
        match vote(id) {
            Some(true) => yes += 1,
            Some(false) => {}
            None => missing += 1,
        }
    }
    let quorum = voters.len() / 2 + 1;
    if yes >= quorum {
        VoteResult::Won
    } else if yes + missing >= quorum {
        VoteResult::Pending
    } else {
        VoteResult::Lost
    }
}

/// [`majority_committed`] over a possibly joint configuration: the smaller of the two halves' results.
pub fn committed_index(config: &Configuration, acked: impl Fn(NodeId) -> Option<Index>) -> Index {
    let incoming = majority_committed(&config.voters, &acked);
    let outgoing = majority_committed(&config.outgoing_voters, &acked);
    incoming.min(outgoing)
}

/// [`majority_vote`] over a possibly joint configuration: won only if both halves won, lost if either lost.
pub fn vote_result(config: &Configuration, vote: impl Fn(NodeId) -> Option<bool>) -> VoteResult {
    let incoming = majority_vote(&config.voters, &vote);
    let outgoing = majority_vote(&config.outgoing_voters, &vote);
    match (incoming, outgoing) {
        (VoteResult::Won, VoteResult::Won) => VoteResult::Won,
        (VoteResult::Lost, _) | (_, VoteResult::Lost) => VoteResult::Lost,
        _ => VoteResult::Pending,
    }
}

/// True if `id` votes in either half of the configuration.
pub fn is_voter(config: &Configuration, id: NodeId) -> bool {
    config.voters.contains(&id) || config.outgoing_voters.contains(&id)
}

/// Every voter of either half, each once.
pub fn all_voters(config: &Configuration) -> BTreeSet<NodeId> {
    config.voters.union(&config.outgoing_voters).copied().collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn set(ids: &[NodeId]) -> BTreeSet<NodeId> {
        ids.iter().copied().collect()
    }

    #[test]
    fn committed_is_the_value_a_majority_reached() {
        let acked: BTreeMap<NodeId, Index> = [(1, 5), (2, 3), (3, 9)].into();
        assert_eq!(majority_committed(&set(&[1, 2, 3]), |id| acked.get(&id).copied()), 5);
        // Node 4 has not answered: 5 is still on 2 of 4, not a majority; 3 is on 3 of 4.
        assert_eq!(majority_committed(&set(&[1, 2, 3, 4]), |id| acked.get(&id).copied()), 3);
    }

    #[test]
    fn joint_configuration_needs_both_majorities() {
        let config = Configuration {
            voters: set(&[1, 2, 3]),
            outgoing_voters: set(&[3, 4, 5]),
            learners: BTreeSet::new(),
        };
        let acked: BTreeMap<NodeId, Index> = [(1, 7), (2, 7), (3, 2), (4, 2), (5, 1)].into();
        assert_eq!(committed_index(&config, |id| acked.get(&id).copied()), 2);
        let votes: BTreeMap<NodeId, bool> = [(1, true), (2, true), (4, false), (5, false)].into();
        assert_eq!(vote_result(&config, |id| votes.get(&id).copied()), VoteResult::Lost);
        let votes: BTreeMap<NodeId, bool> = [(1, true), (2, true), (3, true)].into();
        assert_eq!(vote_result(&config, |id| votes.get(&id).copied()), VoteResult::Pending);
        let votes: BTreeMap<NodeId, bool> = [(1, true), (3, true), (4, true)].into();
        assert_eq!(vote_result(&config, |id| votes.get(&id).copied()), VoteResult::Won);
    }

    #[test]
    fn votes_decide_as_soon_as_the_outcome_is_certain() {
        let voters = set(&[1, 2, 3, 4, 5]);
        let votes: BTreeMap<NodeId, bool> = [(1, true), (2, false), (3, false)].into();
        assert_eq!(majority_vote(&voters, |id| votes.get(&id).copied()), VoteResult::Pending);
        let votes: BTreeMap<NodeId, bool> = [(1, true), (2, false), (3, false), (4, false)].into();
        assert_eq!(majority_vote(&voters, |id| votes.get(&id).copied()), VoteResult::Lost);
    }
}
