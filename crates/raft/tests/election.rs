//! Leader election (§5.2) with pre-vote, leader stickiness and check-quorum.

mod harness;

use harness::Cluster;
use raft::Role;

#[test]
fn three_nodes_elect_one_leader_and_commit() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    assert_eq!(cluster.leader(), Some(1));
    for id in [2, 3] {
        assert_eq!(cluster.raft(id).role(), Role::Follower);
        assert_eq!(cluster.raft(id).leader_id(), Some(1));
    }
    let index = cluster.propose(1, "x=1");
    assert_eq!(index, 2, "the leader's no-op is at index 1");
    cluster.run(2);
    for id in [1, 2, 3] {
        let node = &cluster.nodes[&id];
        assert_eq!(node.raft.commit_index(), 2, "{}", node.raft);
        assert_eq!(node.applied.len(), 2, "{}", node.raft);
    }
    cluster.check_log_matching();
}
