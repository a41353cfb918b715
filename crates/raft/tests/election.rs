//! Leader election (§5.2) with pre-vote, leader stickiness and check-quorum.

mod harness;

use harness::Cluster;
use raft::{AppendResponse, MessageBody, Role};

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

#[test]
fn split_votes_resolve() {
    // Four nodes without pre-vote; 1 and 2 campaign at once and the vote splits 2–2.
    let mut cluster = Cluster::with_config(4, |config| config.pre_vote = false);
    for id in [1, 2] {
        while cluster.raft(id).role() != Role::Candidate {
            cluster.tick(id);
        }
    }
    // Node 3 hears 1 first, node 4 hears 2 first.
    let first = |m: &raft::Message| !((m.from, m.to) == (1, 3) || (m.from, m.to) == (2, 4));
    cluster.in_flight.make_contiguous().sort_by_key(|m| first(m));
    cluster.deliver_all();
    assert_eq!(cluster.leader(), None, "the vote split: {}", cluster.describe());
    assert_eq!(cluster.raft(1).term(), 1);
    // Randomized timeouts (§5.2) break the tie within a few election timeouts.
    for _ in 0..100 {
        cluster.run(1);
        if cluster.leader().is_some() {
            break;
        }
    }
    let leader = cluster.leader().expect("a leader emerges");
    assert!(cluster.raft(leader).term() > 1);
    let leaders = cluster.ids().into_iter().filter(|&id| cluster.raft(id).role() == Role::Leader).count();
    assert_eq!(leaders, 1);
}

#[test]
fn heartbeats_keep_followers_from_starting_elections() {
    let mut cluster = Cluster::new(5);
    cluster.elect(1);
    let term = cluster.raft(1).term();
    cluster.run(500);
    assert_eq!(cluster.leader(), Some(1));
    for id in cluster.ids() {
        assert_eq!(cluster.raft(id).term(), term, "{}", cluster.raft(id));
    }
    let vote_requests = cluster.sent.iter().filter(|m| matches!(m.body, MessageBody::VoteRequest(_))).count();
    assert_eq!(vote_requests, 8, "only the first election's pre-votes and votes");
}

#[test]
fn deposed_leaders_uncommitted_entries_are_overwritten() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.propose(1, "committed");
    cluster.isolate(1);
    for text in ["lost-1", "lost-2"] {
        cluster.raft_mut(1).propose(bytes::Bytes::from(text)).expect("still leader");
        cluster.process(1);
    }
    cluster.deliver_all();
    assert_eq!(cluster.raft(1).last_index(), 4);
    // The majority side elects a new leader and goes on.
    let new_leader = (0..200)
        .find_map(|_| {
            cluster.run(1);
            [2, 3].into_iter().find(|&id| cluster.raft(id).role() == Role::Leader)
        })
        .expect("2 or 3 takes over");
    cluster.propose(new_leader, "after");
    cluster.heal();
    cluster.run(20);
    let old = cluster.raft(1);
    assert_eq!(old.role(), Role::Follower);
    assert_eq!(old.log().slice(1, old.last_index()), cluster.raft(new_leader).log().slice(1, 100));
    for index in 1..=old.last_index() {
        let entry = old.log().entry(index).unwrap();
        assert!(!matches!(&entry.payload, raft::EntryPayload::Command(c) if c.starts_with(b"lost")));
    }
    cluster.check_log_matching();
}

#[test]
fn pre_vote_keeps_a_rejoining_node_from_raising_the_term() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    let term = cluster.raft(1).term();
    cluster.isolate(3);
    cluster.run(100); // node 3 times out again and again, but only pre-votes
    assert_eq!(cluster.raft(3).term(), term, "a pre-candidate never raises its own term");
    cluster.heal();
    cluster.run(20);
    assert_eq!(cluster.leader(), Some(1));
    for id in cluster.ids() {
        assert_eq!(cluster.raft(id).term(), term, "{}", cluster.raft(id));
    }
}

#[test]
fn without_pre_vote_a_rejoining_node_disrupts_the_cluster() {
    // The contrast that motivates pre-vote: the isolated node's term runs ahead, and when it returns the
    // leader learns the higher term from its answers and must step down.
    let mut cluster = Cluster::with_config(3, |config| config.pre_vote = false);
    cluster.elect(1);
    let term = cluster.raft(1).term();
    cluster.isolate(3);
    cluster.run(100);
    assert!(cluster.raft(3).term() > term + 2);
    cluster.heal();
    cluster.run(50);
    let leader = cluster.leader().expect("the cluster recovers");
    assert!(cluster.raft(leader).term() > term, "the cluster converged on the runaway node's term");
}

#[test]
fn check_quorum_steps_down_an_isolated_leader() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.isolate(1);
    let timeout = cluster.nodes[&1].config.election_timeout_ticks;
    for _ in 0..2 * timeout {
        cluster.tick(1);
    }
    assert_eq!(cluster.raft(1).role(), Role::Follower, "{}", cluster.raft(1));
    assert_eq!(cluster.raft(1).leader_id(), None);
}

#[test]
fn leader_stickiness_ignores_a_candidate_while_the_leader_is_heard() {
    // Node 3 cannot hear the leader but can reach node 2, which can. Without pre-vote node 3 keeps asking
    // for votes in ever higher terms; node 2 ignores it and keeps its term.
    let mut cluster = Cluster::with_config(3, |config| config.pre_vote = false);
    cluster.elect(1);
    let term = cluster.raft(1).term();
    cluster.partition(&[&[1], &[3]]);
    cluster.run(100);
    assert!(cluster.raft(3).term() > term);
    assert_eq!(cluster.raft(2).term(), term, "{}", cluster.raft(2));
    assert_eq!(cluster.leader(), Some(1));
    assert_eq!(cluster.raft(2).leader_id(), Some(1));
}

#[test]
fn a_node_without_configuration_never_campaigns_or_votes() {
    use raft::{Config, Message, Raft, RestoredState, VoteRequest};
    let mut raft = Raft::new(Config::new(4), RestoredState::default()).unwrap();
    for _ in 0..100 {
        raft.tick();
    }
    assert_eq!(raft.role(), Role::Follower);
    assert!(!raft.has_ready(), "nothing to send: it never campaigns");
    let request =
        VoteRequest { pre_vote: false, last_log_index: 5, last_log_term: 3, leadership_transfer: false };
    raft.step(Message { from: 1, to: 4, term: 3, body: MessageBody::VoteRequest(request) }).unwrap();
    let ready = raft.ready();
    assert!(matches!(ready.messages[..], [Message { body: MessageBody::VoteResponse(r), .. }] if !r.granted));
}

#[test]
fn vote_requests_and_grants_wait_until_durable() {
    let mut cluster = Cluster::with_config(3, |config| config.pre_vote = false);
    cluster.set_async_persist(1, true);
    cluster.set_async_persist(2, true);
    while cluster.raft(1).role() != Role::Candidate {
        cluster.tick(1);
    }
    assert!(cluster.in_flight.is_empty(), "the candidate's term and vote are not durable yet");
    cluster.flush(1);
    assert_eq!(cluster.in_flight.len(), 2, "vote requests leave once the vote for itself is durable");
    cluster.deliver_all();
    // Node 2 granted, but its vote is not durable: its answer waits. Node 3's (synchronous) went out.
    assert_eq!(cluster.raft(2).vote(), Some(1));
    assert_eq!(cluster.raft(1).role(), Role::Leader, "node 3's vote and its own make a majority");
    let grants_from_2 = |c: &Cluster| {
        c.sent.iter().filter(|m| m.from == 2 && matches!(m.body, MessageBody::VoteResponse(_))).count()
    };
    assert_eq!(grants_from_2(&cluster), 0, "node 2's grant is still held");
    cluster.flush(2);
    assert_eq!(grants_from_2(&cluster), 1);
}

#[test]
fn append_acknowledgements_wait_until_durable() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.set_async_persist(2, true);
    cluster.raft_mut(1).propose(bytes::Bytes::from_static(b"x")).unwrap();
    cluster.process(1);
    cluster.deliver_all();
    let acked_2 = |c: &Cluster| {
        c.sent.iter().any(|m| {
            m.from == 2
                && matches!(m.body, MessageBody::AppendResponse(AppendResponse::Accepted { match_index: 2 }))
        })
    };
    assert_eq!(cluster.raft(2).last_index(), 2);
    assert_eq!(cluster.raft(2).persisted_index(), 1);
    assert!(!acked_2(&cluster), "entry 2 is not durable on node 2: no ack yet");
    cluster.flush(2);
    assert!(acked_2(&cluster), "the ack leaves once the entry is durable");
}

#[test]
fn a_pre_candidate_whose_term_fell_behind_catches_up_from_refusals() {
    // Found by the property test. Nodes 1 and 2 hold the longest log but sit at term 2; nodes 3 and 4
    // reached term 3 (both voted for 3, who lost) with a shorter log. Neither side can win a pre-vote on
    // its own: 1 and 2 would refuse 3 and 4 (log not up to date), and 3 and 4 refuse a pre-vote for term 3
    // (they voted in it). The refusals carry term 3, so 1 and 2 adopt it and then win term 4.
    let logs = [(1, vec![1, 2, 2], 2), (2, vec![1, 2, 2], 2), (3, vec![1, 2], 3), (4, vec![1, 2], 3)];
    let mut cluster = Cluster::with_logs(&logs, |_| {});
    for id in [3, 4] {
        cluster.nodes.get_mut(&id).unwrap().storage.hard_state.vote = Some(3);
        cluster.crash(id);
        cluster.restart(id);
    }
    let leader = (0..300).find_map(|_| {
        cluster.run(1);
        cluster.leader()
    });
    let leader = leader.unwrap_or_else(|| panic!("no leader:\n{}", cluster.describe()));
    assert!([1, 2].contains(&leader), "only a node with the longest log can win");
    assert!(cluster.raft(leader).term() >= 4);
}

#[test]
fn a_candidate_that_hears_from_a_leader_of_its_own_term_steps_down() {
    use raft::{Heartbeat, Message};
    let mut cluster = Cluster::with_config(3, |config| config.pre_vote = false);
    cluster.isolate(2);
    while cluster.raft(2).role() != Role::Candidate {
        cluster.tick(2);
    }
    let term = cluster.raft(2).term();
    let heartbeat = Heartbeat { commit: 0, read_round: 0 };
    let message = Message { from: 1, to: 2, term, body: MessageBody::Heartbeat(heartbeat) };
    cluster.raft_mut(2).step(message).unwrap();
    assert_eq!(cluster.raft(2).role(), Role::Follower);
    assert_eq!(cluster.raft(2).leader_id(), Some(1));
    assert_eq!(cluster.raft(2).term(), term, "same term: its vote for itself stands");
    assert_eq!(cluster.raft(2).vote(), Some(2));
}

#[test]
fn a_restarted_node_keeps_its_term_vote_and_log() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.propose(1, "x");
    let before = (cluster.raft(2).term(), cluster.raft(2).vote(), cluster.raft(2).log().to_string());
    cluster.crash(2);
    cluster.restart(2);
    let after = (cluster.raft(2).term(), cluster.raft(2).vote(), cluster.raft(2).log().to_string());
    assert_eq!(before, after);
    cluster.run(5);
    assert_eq!(cluster.nodes[&2].applied.len(), 2, "re-applies the committed log after a restart");
}

#[test]
fn a_crash_loses_unsynced_entries_that_were_never_acknowledged() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.set_async_persist(2, true);
    cluster.raft_mut(1).propose(bytes::Bytes::from_static(b"x")).unwrap();
    cluster.process(1);
    cluster.deliver_all();
    assert_eq!(cluster.raft(2).last_index(), 2);
    cluster.crash(2); // the write of entry 2 never completed
    cluster.restart(2);
    assert_eq!(cluster.raft(2).last_index(), 1, "entry 2 was not durable");
    assert_eq!(cluster.raft(1).progress().find(|(id, _)| *id == 2).unwrap().1.match_index, 1);
    cluster.run(30);
    assert_eq!(cluster.raft(2).last_index(), 2, "the leader sends it again");
}

#[test]
fn a_leader_that_cannot_hear_its_followers_is_replaced() {
    // One-way partition: the leader's messages arrive, the answers do not. Check-quorum makes it step
    // down and fall silent, so the followers' stickiness expires and they elect someone else.
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.partition(&[&[1], &[2, 3]]);
    cluster.heal_one_way(1, 2);
    cluster.heal_one_way(1, 3);
    let new_leader = (0..200).find_map(|_| {
        cluster.run(1);
        [2, 3].into_iter().find(|&id| cluster.raft(id).role() == Role::Leader)
    });
    assert!(new_leader.is_some(), "{}", cluster.describe());
}

#[test]
fn a_long_committed_log_is_handed_out_over_several_readies() {
    let mut cluster = Cluster::with_config(3, |config| config.max_committed_entries_per_ready = 4);
    cluster.elect(1);
    for i in 0..10 {
        cluster.propose(1, &format!("{i}"));
    }
    cluster.run(2);
    let node = &cluster.nodes[&2];
    let mut restarted = raft::Raft::new(node.config.clone(), node.storage.restored()).unwrap();
    let raft = &mut restarted;
    let sizes: Vec<usize> = std::iter::from_fn(|| {
        raft.has_ready().then(|| {
            let ready = raft.ready();
            raft.advance();
            ready.committed_entries.len()
        })
    })
    .collect();
    assert_eq!(sizes, [4, 4, 3]);
}

#[test]
fn reporting_only_the_latest_persist_mark_covers_the_earlier_ones() {
    use raft::{AppendRequest, Config, Configuration, Message, Raft, RestoredState, SnapshotMeta};
    let restored = RestoredState {
        snapshot: SnapshotMeta { index: 0, term: 0, configuration: Configuration::with_voters([1, 2, 3]) },
        ..Default::default()
    };
    let mut follower = Raft::new(Config::new(2), restored).unwrap();
    let mut marks = Vec::new();
    for index in 1..=2 {
        let request = AppendRequest {
            prev_log_index: index - 1,
            prev_log_term: if index == 1 { 0 } else { 1 },
            entries: vec![harness::entry(index, 1)],
            leader_commit: 0,
        };
        follower
            .step(Message { from: 1, to: 2, term: 1, body: MessageBody::AppendRequest(request) })
            .unwrap();
        let ready = follower.ready();
        assert!(ready.messages.is_empty(), "acks wait for durability");
        marks.push(ready.persist_mark.expect("entries to persist"));
    }
    follower.on_persisted(marks[1]);
    assert_eq!(follower.persisted_index(), 2);
    follower.on_persisted(marks[0]); // late and older: ignored
    assert_eq!(follower.persisted_index(), 2);
    let acks = follower.ready().messages;
    assert_eq!(acks.len(), 2, "both acks released: {acks:?}");
}
