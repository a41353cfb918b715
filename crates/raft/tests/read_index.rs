//! ReadIndex reads (dissertation §6.4): confirmed by a heartbeat round that started after the read
//! arrived, only once the leader has committed an entry of its term.

mod harness;

use harness::Cluster;
use raft::{MessageBody, ReadIndexError, Role};

fn heartbeats_sent(cluster: &Cluster) -> usize {
    cluster.sent.iter().filter(|m| matches!(m.body, MessageBody::Heartbeat(_))).count()
}

fn read_contexts(cluster: &Cluster, id: u64) -> Vec<u64> {
    cluster.nodes[&id].read_states.iter().map(|r| r.ctx).collect()
}

#[test]
fn read_index_many_reads_share_one_confirmation_round() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    let before = heartbeats_sent(&cluster);
    for ctx in 1..=5 {
        cluster.raft_mut(1).read_index(ctx).unwrap();
    }
    cluster.process(1);
    cluster.deliver_all();
    assert_eq!(heartbeats_sent(&cluster) - before, 2, "one round: one heartbeat per follower");
    assert_eq!(read_contexts(&cluster, 1), [1, 2, 3, 4, 5]);
    let commit = cluster.raft(1).commit_index();
    assert!(cluster.nodes[&1].read_states.iter().all(|r| r.index == commit));
}

#[test]
fn read_index_a_read_arriving_after_a_round_went_out_waits_for_the_next() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.raft_mut(1).read_index(1).unwrap(); // starts round r
    cluster.process(1);
    cluster.raft_mut(1).read_index(2).unwrap(); // round r is already out: waits for r + 1
    cluster.process(1);
    assert_eq!(cluster.in_flight.len(), 2, "no second round while the first is out");
    // Deliver round r and its answers only.
    for _ in 0..4 {
        cluster.deliver_one();
    }
    assert_eq!(read_contexts(&cluster, 1), [1], "read 2 must not ride on a round sent before it arrived");
    cluster.deliver_all(); // round r + 1 went out as soon as r was confirmed
    assert_eq!(read_contexts(&cluster, 1), [1, 2]);
}

#[test]
fn read_index_reads_fail_when_the_leader_steps_down() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.isolate(1);
    cluster.raft_mut(1).read_index(7).unwrap();
    cluster.process(1);
    for _ in 0..30 {
        cluster.tick(1); // check-quorum deposes the isolated leader
    }
    assert_eq!(cluster.raft(1).role(), Role::Follower);
    let failed = &cluster.nodes[&1].failed_reads;
    assert_eq!(failed.len(), 1);
    assert_eq!((failed[0].ctx, failed[0].reason), (7, ReadIndexError::SteppedDown));
    assert!(cluster.nodes[&1].read_states.is_empty());
    assert_eq!(cluster.raft_mut(1).read_index(8), Err(ReadIndexError::NotLeader { leader_hint: None }));
}

#[test]
fn read_index_no_read_before_the_leader_commits_an_entry_of_its_term() {
    let mut cluster = Cluster::new(3);
    cluster.tick(1);
    while cluster.raft(1).role() != Role::Leader {
        assert!(
            cluster.deliver_one() || {
                cluster.tick(1);
                true
            }
        );
    }
    // The new leader's no-op is lost; heartbeats still get through.
    let is_append = |m: &raft::Message| matches!(m.body, MessageBody::AppendRequest(_));
    cluster.drop_in_flight(is_append);
    cluster.raft_mut(1).read_index(1).unwrap();
    cluster.process(1);
    cluster.deliver_all_except(is_append);
    assert_eq!(cluster.raft(1).commit_index(), 0);
    assert!(cluster.nodes[&1].read_states.is_empty(), "leadership confirmed, but nothing of term committed");
    // Once the no-op gets through and commits, the read is served at (at least) its index.
    cluster.run(5);
    let reads = &cluster.nodes[&1].read_states;
    assert_eq!(reads.len(), 1);
    assert!(reads[0].index >= 1);
}

#[test]
fn read_index_on_a_follower_is_refused_with_a_hint() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    assert_eq!(cluster.raft_mut(2).read_index(1), Err(ReadIndexError::NotLeader { leader_hint: Some(1) }));
}

#[test]
fn read_index_single_node_serves_reads_without_peers() {
    let mut cluster = Cluster::new(1);
    cluster.elect(1);
    cluster.raft_mut(1).read_index(9).unwrap();
    cluster.process(1);
    assert_eq!(read_contexts(&cluster, 1), [9]);
}
