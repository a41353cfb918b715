//! `GET /health`: may a load balancer send this node traffic? Yes (200) when it knows a leader and has
//! applied all but a bounded number of the entries it knows committed; otherwise 503 with a one-line
//! reason.
//!
//! A node's commit index is the leader's as this node last heard it, so "applied within the bound of the
//! commit index" is "caught up with the leader as far as this node can tell". A node cut off from its
//! majority forgets its leader within an election timeout (a follower stops hearing heartbeats and starts
//! a pre-vote; a leader steps down by check-quorum), so it turns unhealthy without any timer here.

use crate::info::role_name;
use crate::node_loop::NodeStatus;

/// The verdict: `Ok` with a short text, or `Err` with the reason the node is unhealthy.
pub fn check(status: &NodeStatus, max_lag_entries: u64) -> Result<String, String> {
    if status.voters.is_empty() && status.learners.is_empty() {
        return Err("not a member of any cluster yet (no configuration): waiting to be added".into());
    }
    let Some(leader) = status.leader_id else {
        return Err(format!(
            "no leader is known (this node is a {} in term {})",
            role_name(status.role),
            status.term
        ));
    };
    let lag = status.commit_index.saturating_sub(status.applied_index);
    if lag > max_lag_entries {
        return Err(format!(
            "applied index {} is {lag} entries behind the commit index {} (bound: {max_lag_entries})",
            status.applied_index, status.commit_index
        ));
    }
    Ok(format!(
        "ok: leader {leader} in term {}, applied index {} of commit index {}",
        status.term, status.applied_index, status.commit_index
    ))
}

#[cfg(test)]
mod tests {
    use raft::Role;

    use super::*;

    fn follower(leader_id: Option<u64>, commit_index: u64, applied_index: u64) -> NodeStatus {
        NodeStatus {
            role: if leader_id.is_some() { Role::Follower } else { Role::PreCandidate },
            leader_id,
            commit_index,
            applied_index,
            last_index: commit_index,
            ..NodeStatus::example()
        }
    }

    #[test]
    fn a_follower_with_a_leader_and_within_the_bound_is_healthy() {
        assert!(check(&follower(Some(1), 1_500, 500), 1_000).is_ok());
    }

    #[test]
    fn a_node_that_knows_no_leader_is_unhealthy_and_says_why() {
        let reason = check(&follower(None, 10, 10), 1_000).unwrap_err();
        assert_eq!(reason, "no leader is known (this node is a precandidate in term 3)");
    }

    #[test]
    fn a_node_applying_too_far_behind_its_commit_index_is_unhealthy() {
        let reason = check(&follower(Some(1), 1_501, 500), 1_000).unwrap_err();
        assert!(reason.contains("1001 entries behind"), "{reason}");
    }

    #[test]
    fn a_node_without_a_configuration_is_not_a_member() {
        let mut status = follower(None, 0, 0);
        status.voters.clear();
        assert!(check(&status, 1_000).unwrap_err().contains("not a member"));
    }
}
