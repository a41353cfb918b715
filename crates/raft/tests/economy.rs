//! Message economy, with the bounds of the MIT 6.5840 Raft lab's TestCount and TestRPCBytes. RPCs are
//! counted as requests: a request and its reply count once.

mod harness;

use harness::Cluster;
use raft::{EntryPayload, MessageBody, NodeId};

#[test]
fn message_economy_three_node_election_takes_at_most_30_rpcs() {
    let mut cluster = Cluster::new(3);
    for _ in 0..100 {
        cluster.run(1);
        if cluster.leader().is_some() {
            break;
        }
    }
    assert!(cluster.leader().is_some());
    let rpcs = cluster.rpc_count();
    println!("election: {rpcs} RPCs");
    assert!(rpcs <= 30, "election took {rpcs} RPCs");
}

#[test]
fn message_economy_committing_10_entries_takes_at_most_42_rpcs() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.run(1);
    let before = cluster.rpc_count();
    // As the lab does: ten proposals back to back, then wait for them to commit everywhere.
    for i in 0..10 {
        cluster.raft_mut(1).propose(bytes::Bytes::from(format!("command {i}"))).unwrap();
    }
    cluster.process(1);
    cluster.deliver_all();
    for id in cluster.ids() {
        assert_eq!(cluster.raft(id).commit_index(), 11, "{}", cluster.raft(id));
    }
    let rpcs = cluster.rpc_count() - before;
    println!("10 entries back to back: {rpcs} RPCs");
    assert!(rpcs <= 42, "committing 10 entries took {rpcs} RPCs");
}

#[test]
fn message_economy_committing_10_entries_one_at_a_time_takes_at_most_42_rpcs() {
    // The harder variant: each proposal is sent and committed before the next is made, so nothing batches.
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.run(1);
    let before = cluster.rpc_count();
    for i in 0..10 {
        cluster.propose(1, &format!("command {i}"));
    }
    for id in cluster.ids() {
        assert_eq!(cluster.raft(id).commit_index(), 11, "{}", cluster.raft(id));
    }
    let rpcs = cluster.rpc_count() - before;
    println!("10 entries one at a time: {rpcs} RPCs");
    assert!(rpcs <= 42, "committing 10 entries one by one took {rpcs} RPCs");
}

#[test]
fn message_economy_each_entrys_bytes_go_to_each_follower_once() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    let mut proposed_bytes = 0;
    for i in 0..20 {
        let command = "x".repeat(100 + 50 * i);
        proposed_bytes += command.len();
        cluster.propose(1, &command);
        cluster.run(1);
    }
    cluster.run(10);
    for follower in [2, 3] {
        let sent: usize = command_bytes_sent_to(&cluster, follower);
        assert_eq!(
            sent, proposed_bytes,
            "follower {follower} got {sent} bytes for {proposed_bytes} proposed"
        );
    }
}

fn command_bytes_sent_to(cluster: &Cluster, to: NodeId) -> usize {
    cluster
        .sent
        .iter()
        .filter(|m| m.to == to)
        .filter_map(|m| match &m.body {
            MessageBody::AppendRequest(request) => Some(request),
            _ => None,
        })
        .flat_map(|request| &request.entries)
        .map(|entry| match &entry.payload {
            EntryPayload::Command(data) => data.len(),
            _ => 0,
        })
        .sum()
}
