//! Membership changes (§6; dissertation §4): joint consensus, learners, removal, and leadership transfer
//! (dissertation §3.10), as scenarios on the in-memory cluster.

mod harness;

use std::collections::BTreeSet;

use bytes::Bytes;
use harness::Cluster;
use raft::{
    ConfChange, ConfChangeError, Configuration, EntryPayload, MessageBody, NodeId, ProposeError, Role,
};

fn set(ids: &[NodeId]) -> BTreeSet<NodeId> {
    ids.iter().copied().collect()
}

fn simple(voters: &[NodeId], learners: &[NodeId]) -> Configuration {
    Configuration::with_members(voters.iter().copied(), learners.iter().copied())
}

fn target(voters: &[NodeId], learners: &[NodeId]) -> ConfChange {
    ConfChange::Target { voters: set(voters), learners: set(learners) }
}

/// Proposes `change` on `leader` and delivers everything.
fn change(cluster: &mut Cluster, leader: NodeId, change: ConfChange) -> Result<u64, ConfChangeError> {
    let result = cluster.raft_mut(leader).propose_conf_change(change);
    cluster.process(leader);
    cluster.deliver_all();
    result
}

/// The configurations the log of `id` holds, in order.
fn configurations_in_log(cluster: &Cluster, id: NodeId) -> Vec<Configuration> {
    let raft = cluster.raft(id);
    (raft.log().first_index()..=raft.last_index())
        .filter_map(|i| match &raft.log().entry(i)?.payload {
            EntryPayload::Config(c) => Some(c.clone()),
            _ => None,
        })
        .collect()
}

/// A 3-node cluster led by node 1, with nodes 4 and 5 started with empty data directories.
fn three_and_two_spares() -> Cluster {
    let mut cluster = Cluster::new(3);
    cluster.add_spare(4);
    cluster.add_spare(5);
    cluster.elect(1);
    cluster.propose(1, "x=1");
    cluster
}

#[test]
fn grow_from_three_to_five_goes_through_learners_and_the_joint_configuration() {
    let mut cluster = three_and_two_spares();
    change(&mut cluster, 1, ConfChange::AddLearner(4)).unwrap();
    change(&mut cluster, 1, ConfChange::AddLearner(5)).unwrap();
    assert_eq!(cluster.raft(1).configuration(), &simple(&[1, 2, 3], &[4, 5]));
    // Learners received the whole log, commands included.
    assert_eq!(cluster.raft(4).last_index(), cluster.raft(1).last_index());

    change(&mut cluster, 1, target(&[1, 2, 3, 4, 5], &[])).unwrap();
    let joint = Configuration { outgoing_voters: set(&[1, 2, 3]), ..simple(&[1, 2, 3, 4, 5], &[]) };
    // C_old,new first, then C_new appended by the leader itself once C_old,new committed.
    let logged = configurations_in_log(&cluster, 1);
    assert_eq!(logged[logged.len() - 2..], [joint, simple(&[1, 2, 3, 4, 5], &[])]);
    for id in 1..=5 {
        assert_eq!(cluster.raft(id).configuration(), &simple(&[1, 2, 3, 4, 5], &[]), "node {id}");
        assert!(!cluster.raft(id).conf_change_in_progress(), "node {id}");
    }
    // Five voters now: two of them down still leaves a majority.
    cluster.crash(2);
    cluster.crash(3);
    let index = cluster.propose(1, "y=2");
    assert!(cluster.raft(1).commit_index() >= index);
}

#[test]
fn shrink_from_five_to_three_in_one_joint_change() {
    let mut cluster = Cluster::new(5);
    cluster.elect(1);
    change(&mut cluster, 1, target(&[1, 2, 3], &[])).unwrap();
    assert_eq!(cluster.raft(1).configuration(), &simple(&[1, 2, 3], &[]));
    assert!(cluster.raft(1).progress().all(|(id, _)| id <= 3), "removed members are no longer tracked");
    cluster.crash(4);
    cluster.crash(5);
    let index = cluster.propose(1, "after");
    assert!(cluster.raft(1).commit_index() >= index);
}

#[test]
fn a_new_voter_joins_as_a_learner_and_is_promoted_only_once_caught_up() {
    let mut cluster = Cluster::with_config(3, |c| c.max_promotion_lag_entries = 5);
    cluster.add_spare(4);
    cluster.elect(1);
    assert_eq!(
        change(&mut cluster, 1, ConfChange::PromoteLearner(4)),
        Err(ConfChangeError::NotALearner { id: 4 })
    );
    assert_eq!(
        change(&mut cluster, 1, target(&[1, 2, 3, 4], &[])),
        Err(ConfChangeError::NotALearner { id: 4 })
    );
    change(&mut cluster, 1, ConfChange::AddLearner(4)).unwrap();
    cluster.isolate(4);
    for i in 0..10 {
        cluster.propose(1, &format!("k{i}"));
    }
    let refused = change(&mut cluster, 1, ConfChange::PromoteLearner(4));
    assert!(matches!(refused, Err(ConfChangeError::LearnerBehind { id: 4, .. })), "{refused:?}");
    cluster.heal();
    let timeout = cluster.raft(1).config().election_timeout_ticks;
    cluster.run(timeout + 5);
    change(&mut cluster, 1, ConfChange::PromoteLearner(4)).unwrap();
    assert_eq!(cluster.raft(4).configuration(), &simple(&[1, 2, 3, 4], &[]));
}

#[test]
fn learners_neither_count_for_commitment_nor_campaign() {
    let mut cluster = three_and_two_spares();
    change(&mut cluster, 1, ConfChange::AddLearner(4)).unwrap();
    change(&mut cluster, 1, ConfChange::AddLearner(5)).unwrap();
    // Only the leader and its two learners can talk: three of five nodes hold the entry, but only one
    // voter of three.
    cluster.partition(&[&[1, 4, 5], &[2, 3]]);
    let index = cluster.propose(1, "lonely");
    assert_eq!(cluster.raft(4).last_index(), index);
    assert!(cluster.raft(1).commit_index() < index, "learners do not count toward a majority");
    // A learner never starts an election, however long it hears nothing.
    cluster.isolate(4);
    for _ in 0..100 {
        cluster.tick(4);
    }
    assert_eq!(cluster.raft(4).role(), Role::Follower);
    assert!(!cluster.sent.iter().any(|m| m.from == 4 && matches!(m.body, MessageBody::VoteRequest(_))));
}

#[test]
fn a_leader_refuses_a_change_before_it_committed_an_entry_of_its_term() {
    let mut cluster = Cluster::new(3);
    // Node 1 wins, but none of its appends arrive: its no-op is not committed.
    for _ in 0..30 {
        cluster.tick(1);
        if cluster.sent.iter().any(|m| m.from == 1 && matches!(m.body, MessageBody::VoteRequest(_))) {
            break;
        }
    }
    cluster.deliver_all_except(|m| matches!(m.body, MessageBody::AppendRequest(_)));
    cluster.deliver_all_except(|m| matches!(m.body, MessageBody::AppendRequest(_)));
    assert_eq!(cluster.raft(1).role(), Role::Leader);
    assert_eq!(
        cluster.raft_mut(1).propose_conf_change(ConfChange::RemoveMember(3)),
        Err(ConfChangeError::LeaderNotReady)
    );
}

#[test]
fn only_one_change_is_in_flight_at_a_time() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.isolate(1);
    let index = change(&mut cluster, 1, ConfChange::RemoveMember(3)).unwrap();
    assert!(cluster.raft(1).conf_change_in_progress());
    assert_eq!(
        change(&mut cluster, 1, ConfChange::RemoveMember(2)),
        Err(ConfChangeError::ChangeInProgress { index })
    );
}

#[test]
fn a_truncated_uncommitted_configuration_falls_back_to_the_previous_one() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.isolate(1);
    change(&mut cluster, 1, ConfChange::RemoveMember(3)).unwrap();
    // It takes effect on append, in the joint form.
    assert!(cluster.raft(1).configuration().is_joint());
    // The others elect a leader of a later term and overwrite node 1's uncommitted entries.
    cluster.run(50);
    let leader = cluster.leader().filter(|&id| id != 1).expect("nodes 2 and 3 elect a leader");
    cluster.propose(leader, "newer");
    cluster.heal();
    cluster.run(5);
    assert_eq!(cluster.raft(1).configuration(), &simple(&[1, 2, 3], &[]), "node 1: {}", cluster.raft(1));
    assert_eq!(cluster.raft(1).leader_id(), Some(leader));
}

#[test]
fn a_leader_removing_itself_manages_the_change_then_steps_down() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    change(&mut cluster, 1, ConfChange::RemoveMember(1)).unwrap();
    // C_new {2, 3} committed without node 1 counting itself; then it stepped down.
    assert_eq!(cluster.raft(2).configuration(), &simple(&[2, 3], &[]));
    assert_eq!(cluster.raft(1).role(), Role::Follower);
    cluster.run(50);
    let leader = cluster.leader().expect("the remaining voters elect a leader");
    assert!(leader == 2 || leader == 3, "leader {leader}");
    assert_eq!(cluster.raft(1).role(), Role::Follower, "a removed node never campaigns");
}

#[test]
fn a_removed_node_that_keeps_running_does_not_raise_the_clusters_term() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    // Node 3 sees C_old,new (it is in its outgoing half) but never C_new: it keeps calling elections.
    cluster.partition(&[&[1, 2], &[3]]);
    cluster.heal_one_way(1, 3);
    let joint = cluster.raft_mut(1).propose_conf_change(ConfChange::RemoveMember(3)).unwrap();
    cluster.process(1);
    cluster.deliver_all();
    cluster.isolate(3);
    cluster.run(5);
    assert!(cluster.raft(3).last_index() >= joint);
    assert_eq!(cluster.raft(1).configuration(), &simple(&[1, 2], &[]));
    let term = cluster.raft(1).term();
    cluster.heal();
    cluster.run(300);
    assert_eq!(cluster.raft(1).term(), term, "the removed node raised the cluster's term");
    assert_eq!(cluster.leader(), Some(1));
}

#[test]
fn leadership_transfer_to_a_lagging_node_catches_it_up_first() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.isolate(3);
    for i in 0..5 {
        cluster.propose(1, &format!("k{i}"));
    }
    cluster.heal();
    let term = cluster.raft(1).term();
    cluster.raft_mut(1).transfer_leadership(3).unwrap();
    // Proposals are refused during the transfer.
    assert_eq!(
        cluster.raft_mut(1).propose(Bytes::from_static(b"late")),
        Err(ProposeError::LeadershipTransferInProgress { target: 3 })
    );
    cluster.process(1);
    cluster.run(3);
    assert_eq!(cluster.leader(), Some(3));
    assert_eq!(cluster.raft(3).term(), term + 1, "the target skipped pre-vote and won at once");
    assert!(!cluster
        .sent
        .iter()
        .any(|m| m.from == 3 && matches!(&m.body, MessageBody::VoteRequest(r) if r.pre_vote)));
}

#[test]
fn a_transfer_that_cannot_finish_is_abandoned_after_an_election_timeout() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.isolate(3);
    cluster.raft_mut(1).transfer_leadership(3).unwrap();
    assert_eq!(cluster.raft(1).leadership_transfer_target(), Some(3));
    let timeout = cluster.raft(1).config().election_timeout_ticks;
    for _ in 0..timeout {
        cluster.tick(1);
        cluster.deliver_all();
    }
    assert_eq!(cluster.raft(1).leadership_transfer_target(), None);
    assert_eq!(cluster.raft(1).role(), Role::Leader);
    assert!(cluster.raft_mut(1).propose(Bytes::from_static(b"again")).is_ok());
}

#[test]
fn transfer_is_refused_to_non_voters() {
    let mut cluster = three_and_two_spares();
    change(&mut cluster, 1, ConfChange::AddLearner(4)).unwrap();
    assert_eq!(cluster.raft_mut(1).transfer_leadership(4), Err(raft::TransferError::NotAVoter { target: 4 }));
    assert_eq!(cluster.raft_mut(1).transfer_leadership(9), Err(raft::TransferError::NotAVoter { target: 9 }));
    assert_eq!(
        cluster.raft_mut(1).transfer_leadership(1),
        Err(raft::TransferError::AlreadyLeader { target: 1 })
    );
    assert!(matches!(cluster.raft_mut(2).transfer_leadership(3), Err(raft::TransferError::NotLeader { .. })));
}

/// §6, dissertation §4.1: a configuration takes effect when appended, so an uncommitted C_old,new that a
/// later leader overwrites is undone on every node that held it — the node it removed included. That
/// node falls back to the previous configuration, in which it is a voter again: it may campaign, and win.
#[test]
fn a_node_removed_by_an_overwritten_joint_entry_is_a_voter_again_and_can_win() {
    let mut cluster = Cluster::new(5);
    cluster.elect(1);
    // Leader 1 reaches only node 5: the joint entry removing node 5 gets to node 5 and nobody else.
    cluster.partition(&[&[1, 5], &[2, 3, 4]]);
    let joint = change(&mut cluster, 1, ConfChange::RemoveMember(5)).unwrap();
    assert_eq!(cluster.raft(5).last_index(), joint);
    assert!(cluster.raft(5).configuration().is_joint(), "node 5: {}", cluster.raft(5));
    assert!(cluster.raft(1).commit_index() < joint, "C_old,new needs a majority of both halves");

    // Nodes 2..4, a majority of C_old, elect a leader of a later term that never saw the entry.
    cluster.crash(1);
    cluster.partition(&[&[5], &[2, 3, 4]]);
    let new_leader = (2..=4).find(|&id| cluster.campaign(id) == Role::Leader).expect("2..4 elect a leader");
    cluster.propose(new_leader, "after");
    cluster.heal();
    cluster.run(5);
    assert_eq!(
        cluster.raft(5).log().entry(joint).map(|e| e.term),
        cluster.raft(new_leader).log().entry(joint).map(|e| e.term)
    );
    assert_eq!(
        cluster.raft(5).configuration(),
        &simple(&[1, 2, 3, 4, 5], &[]),
        "node 5: {}",
        cluster.raft(5)
    );
    assert!(configurations_in_log(&cluster, 5).iter().all(|c| !c.is_joint()), "the joint entry is gone");

    // Node 5 is a voter again: once the leader is gone, it campaigns and wins.
    cluster.crash(new_leader);
    let others: Vec<NodeId> = (2..=4).filter(|&id| id != new_leader).collect();
    let timeout = cluster.raft(5).config().election_timeout_ticks;
    for _ in 0..=timeout {
        // The others stop hearing from a leader (leader stickiness lapses) but do not campaign yet:
        // their own requests are dropped.
        for &id in &others {
            cluster.tick(id);
        }
        cluster.drop_in_flight(|_| true);
    }
    assert_eq!(cluster.campaign(5), Role::Leader, "node 5: {}", cluster.raft(5));
    cluster.propose(5, "led by node 5");
}

/// Dissertation §4.1: a server campaigns only if it is a voter of the configuration in force. A node
/// with an empty data directory (no configuration), a learner, and a leader that removed itself (it
/// holds C_new, committed, without itself) never send a vote request, however long they hear nothing.
/// (A removed node that holds only C_old,new is still a voter of that configuration's old half: it may
/// campaign, and fails, as `a_removed_node_that_keeps_running_does_not_raise_the_clusters_term` shows.)
#[test]
fn a_node_that_is_no_voter_of_the_configuration_in_force_never_campaigns() {
    let mut cluster = three_and_two_spares();
    change(&mut cluster, 1, ConfChange::AddLearner(4)).unwrap();
    change(&mut cluster, 1, ConfChange::RemoveMember(1)).unwrap();
    cluster.run(50);
    let leader = cluster.leader().expect("nodes 2 and 3 lead on");
    cluster.propose(leader, "after the removal");
    assert_eq!(cluster.raft(1).configuration(), &simple(&[2, 3], &[4]), "node 1: {}", cluster.raft(1));
    assert_eq!(cluster.raft(4).configuration(), &simple(&[2, 3], &[4]));
    let outsiders = [1, 4, 5];
    let sent_before = cluster.sent.len();
    for id in outsiders {
        cluster.isolate(id);
    }
    for _ in 0..10 * cluster.raft(1).config().election_timeout_ticks {
        for id in outsiders {
            cluster.tick(id);
        }
    }
    for id in outsiders {
        let requests = cluster.sent[sent_before..]
            .iter()
            .filter(|m| m.from == id && matches!(m.body, MessageBody::VoteRequest(_)));
        assert_eq!(requests.count(), 0, "node {id} campaigned: {}", cluster.raft(id));
        assert_eq!(cluster.raft(id).role(), Role::Follower);
    }
}
