//! Membership changes on the simulator (issue 10): the real nodes, a simulated network and disk, every
//! safety check after every step. Each scenario is one situation the dissertation (§4) warns about.

use bytes::Bytes;
use kv::Command;
use raft::{ConfChange, Configuration, NodeId};
use sim::scenario::Scenario;
use sim::FaultSettings;

fn cmd(value: impl std::fmt::Display) -> Command {
    Command::Set {
        key: Bytes::from_static(b"member"),
        value: Bytes::from(value.to_string()),
        condition: Default::default(),
        get: false,
        expiry: Default::default(),
    }
}

/// Time for a change: the learner's catch-up and two configuration entries, under a calm network.
const CHANGE_BOUND_MS: u64 = 5_000;

fn voters(ids: &[NodeId]) -> Configuration {
    Configuration::with_voters(ids.iter().copied())
}

/// §6: the leader removes itself. It keeps managing the change — committing C_new without counting
/// itself — then steps down; the remaining voters elect a leader and go on committing, and the removed
/// node never leads again.
#[test]
fn removing_the_leader() {
    for seed in 1..=5 {
        let mut s = Scenario::new(5, seed, FaultSettings::calm());
        let old = s.check_one_leader();
        s.one(cmd("before"), 5, true);
        let rest: Vec<NodeId> = s.node_ids().filter(|&id| id != old).collect();
        let reached = s.change_membership(ConfChange::RemoveMember(old), CHANGE_BOUND_MS);
        assert_eq!(reached, voters(&rest));
        let new = s.check_one_leader();
        assert_ne!(new, old, "seed {seed}");
        s.one(cmd("after"), 4, true);
        s.run_ms(2_000);
        assert!(!s.is_leader(old), "seed {seed}: the removed leader leads again");
    }
}

/// A node cut off from everyone is removed: the change needs only the connected majority of both
/// configurations. When its links come back, it has missed C_new and calls (pre-)elections in vain:
/// nobody's term moves.
#[test]
fn removing_a_partitioned_node() {
    for seed in 1..=5 {
        let mut s = Scenario::new(5, seed, FaultSettings::calm());
        let leader = s.check_one_leader();
        let cut = s.peer_after(leader, 1);
        s.disconnect(cut);
        s.change_membership(ConfChange::RemoveMember(cut), CHANGE_BOUND_MS);
        s.one(cmd("without"), 4, true);
        let leader = s.check_one_leader();
        let term = s.term_of(leader).expect("the leader runs");
        s.connect(cut);
        s.run_ms(3_000);
        assert_eq!(s.leader(), Some(leader), "seed {seed}: the removed node deposed the leader");
        assert_eq!(s.term_of(leader), Some(term), "seed {seed}: the removed node raised the term");
    }
}

/// A node that is down is added: as a learner it does not count, so the cluster commits without it; once
/// it is back it catches up, and only then can it be promoted.
#[test]
fn adding_a_node_that_is_down() {
    for seed in 1..=5 {
        let mut s = Scenario::new(5, seed, FaultSettings::calm());
        s.check_one_leader();
        let node = 5;
        s.change_membership(ConfChange::RemoveMember(node), CHANGE_BOUND_MS);
        s.crash(node);
        s.change_membership(ConfChange::AddLearner(node), CHANGE_BOUND_MS);
        for i in 0..5 {
            s.one(cmd(i), 4, true);
        }
        s.restart(node);
        let caught_up = s.run_until(CHANGE_BOUND_MS, |s| {
            let leader = s.leader();
            leader.is_some_and(|l| s.applied_index(node) >= s.applied_index(l))
        });
        assert!(caught_up, "seed {seed}: the learner never caught up");
        let reached = s.change_membership(ConfChange::PromoteLearner(node), CHANGE_BOUND_MS);
        assert_eq!(reached, voters(&[1, 2, 3, 4, 5]));
        s.one(cmd("five"), 5, true);
    }
}

/// Dissertation §4.2.3: a removed server that keeps running times out and calls elections. It never
/// learns C_new, so it still thinks it votes; pre-vote and leader stickiness keep it from raising anyone's
/// term, however long it tries.
#[test]
fn a_removed_node_calling_elections_does_not_raise_the_clusters_term() {
    for seed in 1..=5 {
        let mut s = Scenario::new(3, seed, FaultSettings::calm());
        let leader = s.check_one_leader();
        let removed = s.peer_after(leader, 1);
        s.disconnect(removed);
        s.change_membership(ConfChange::RemoveMember(removed), CHANGE_BOUND_MS);
        let leader = s.check_one_leader();
        let term = s.term_of(leader).expect("the leader runs");
        // Alone, it times out again and again.
        s.run_ms(2_000);
        let lonely_term = s.term_of(removed).expect("it runs");
        s.connect(removed);
        s.run_ms(5_000);
        assert_eq!(s.term_of(leader), Some(term), "seed {seed}: the cluster's term moved");
        assert_eq!(s.leader(), Some(leader), "seed {seed}");
        assert!(
            s.term_of(removed).expect("it runs") <= term.max(lonely_term),
            "seed {seed}: the removed node's term kept climbing"
        );
        s.one(cmd("still"), 2, true);
    }
}

/// Dissertation §3.10: leadership goes to a node that missed entries. The leader stops accepting
/// proposals, brings the target up to date, then tells it to campaign; the target wins at once (no
/// pre-vote, and the transfer mark overrides the others' stickiness) and holds every committed entry.
#[test]
fn transfer_to_a_lagging_node() {
    for seed in 1..=5 {
        let mut s = Scenario::new(5, seed, FaultSettings::calm());
        let leader = s.check_one_leader();
        let lagging = s.peer_after(leader, 2);
        s.disconnect(lagging);
        let mut last = 0;
        for i in 0..10 {
            last = s.one(cmd(i), 4, true);
        }
        s.connect(lagging);
        let term = s.term_of(leader).expect("the leader runs");
        assert_eq!(s.transfer_leadership(leader, lagging), Some(Ok(())), "seed {seed}");
        let moved = s.run_until(1_000, |s| s.leader() == Some(lagging));
        assert!(moved, "seed {seed}: leadership did not move to node {lagging}");
        assert_eq!(s.term_of(lagging), Some(term + 1), "seed {seed}: one election, no pre-vote round");
        assert!(
            s.applied_index(lagging).is_some_and(|applied| applied >= last) || {
                s.run_ms(500);
                s.applied_index(lagging).is_some_and(|applied| applied >= last)
            }
        );
        s.one(cmd("after"), 5, true);
    }
}
