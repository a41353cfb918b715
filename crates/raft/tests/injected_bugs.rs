//! Each test-only bug switch (feature `inject-bugs`) visibly breaks the rule it names, in a scenario the
//! correct code handles. The simulator relies on these switches to prove its checks have teeth; these
//! tests prove the switches themselves work. (The Figure 8 switch is tested in `figure8.rs`.)
#![cfg(feature = "inject-bugs")]

mod harness;

use bytes::Bytes;
use harness::Cluster;
use raft::{AppendResponse, InjectedBug, MessageBody, Role};

#[test]
fn injected_double_vote_elects_two_leaders_in_one_term() {
    for (bug, expected_leaders) in [(None, 1), (Some(InjectedBug::DoubleVote), 2)] {
        let mut cluster = Cluster::with_config(3, |config| {
            config.pre_vote = false;
            config.injected_bug = bug;
        });
        for id in [1, 2] {
            while cluster.raft(id).role() != Role::Candidate {
                cluster.tick(id);
            }
        }
        // Node 3 hears both candidates; with the bug it votes for both in term 1.
        cluster.drop_in_flight(|m| m.to == 1 || m.to == 2);
        cluster.deliver_all();
        let leaders = [1, 2].iter().filter(|&&id| cluster.raft(id).role() == Role::Leader).count();
        assert_eq!(leaders, expected_leaders, "{bug:?}: {}", cluster.describe());
    }
}

#[test]
fn injected_ack_before_persist_acknowledges_entries_not_on_disk() {
    for (bug, acked_early) in [(None, false), (Some(InjectedBug::AckBeforePersist), true)] {
        let mut cluster = Cluster::with_config(3, |config| config.injected_bug = bug);
        cluster.elect(1);
        cluster.set_async_persist(2, true);
        cluster.raft_mut(1).propose(Bytes::from_static(b"x")).unwrap();
        cluster.process(1);
        cluster.deliver_all();
        assert_eq!(cluster.raft(2).persisted_index(), 1);
        let acked = cluster.sent.iter().any(|m| {
            m.from == 2
                && matches!(m.body, MessageBody::AppendResponse(AppendResponse::Accepted { match_index: 2 }))
        });
        assert_eq!(acked, acked_early, "{bug:?}");
    }
}

#[test]
fn injected_stale_leader_read_answers_on_a_deposed_leader() {
    for (bug, stale) in [(None, false), (Some(InjectedBug::StaleLeaderRead), true)] {
        let mut cluster = Cluster::with_config(3, |config| {
            config.injected_bug = bug;
            config.check_quorum = false; // the old leader keeps believing it leads
        });
        cluster.elect(1);
        cluster.isolate(1);
        let new_leader = (0..200)
            .find_map(|_| {
                cluster.run(1);
                [2, 3].into_iter().find(|&id| cluster.raft(id).role() == Role::Leader)
            })
            .expect("the majority elects a new leader");
        cluster.propose(new_leader, "write the old leader never sees");
        assert_eq!(cluster.raft(1).role(), Role::Leader, "still believes it leads");
        cluster.raft_mut(1).read_index(5).unwrap();
        cluster.process(1);
        let reads = &cluster.nodes[&1].read_states;
        assert_eq!(!reads.is_empty(), stale, "{bug:?}");
        if stale {
            assert!(
                reads[0].index < cluster.raft(new_leader).commit_index(),
                "the read misses a committed write"
            );
        }
    }
}
