//! Figure 8 of the Raft paper: why a leader must not commit an entry of an earlier term by counting
//! replicas (§5.4.2), and how committing a current-term entry commits the older one safely.
//!
//! Five servers S1–S5 (ids 1–5). Pre-vote is off: the figure's elections are plain §5.2 elections, and the
//! point here is the commit rule. Appends carry one entry each so that the figure's partial replication
//! can be reproduced message by message.

mod harness;

use harness::{assert_expected, Cluster};
use raft::{Message, MessageBody, NodeId, Role};

fn five_servers(adjust: impl Fn(&mut raft::Config)) -> Cluster {
    let logs: Vec<_> = (1..=5).map(|id| (id, vec![1], 1)).collect();
    let mut cluster = Cluster::with_logs(&logs, |config| {
        config.pre_vote = false;
        config.max_entries_per_message = 1;
        adjust(config);
    });
    cluster.trace_enabled = false;
    cluster
}

/// Lets `ids` forget the leader they last heard from: leader stickiness (dissertation §4.2.3) would
/// otherwise make them ignore the next candidate. Each must stay a follower meanwhile.
fn expire_leader_leases(cluster: &mut Cluster, ids: &[NodeId]) {
    for &id in ids {
        for _ in 0..cluster.nodes[&id].config.election_timeout_ticks {
            cluster.tick(id);
        }
        assert_eq!(
            cluster.raft(id).role(),
            Role::Follower,
            "precondition: {} did not campaign",
            cluster.raft(id)
        );
    }
}

/// Ticks `id` until it starts a new election, then delivers messages until it leads (or the election
/// ends undecided).
fn win_election_quietly(cluster: &mut Cluster, id: NodeId) -> bool {
    let start_term = cluster.raft(id).term();
    for _ in 0..100 {
        if cluster.raft(id).role() == Role::Candidate && cluster.raft(id).term() > start_term {
            break;
        }
        cluster.tick(id);
    }
    cluster.deliver_until(|c| c.raft(id).role() == Role::Leader)
}

fn is_append_to(message: &Message, to: NodeId) -> bool {
    message.to == to && matches!(message.body, MessageBody::AppendRequest(_))
}

/// Figure 8 (a)–(c). Returns the cluster with S1 leading term 4, the term-2 entry at index 2 stored on
/// S1, S2 and S3, and S1's term-4 entry on S1 and S2 only.
fn figure8_up_to_c(out: &mut String, adjust: impl Fn(&mut raft::Config)) -> Cluster {
    let mut cluster = five_servers(adjust);
    // (a) S1 leads term 2 and replicates index 2 (its no-op, term 2) to S2 only.
    cluster.tick(1); // S1 is at term 1; its first election is for term 2
    assert!(win_election_quietly(&mut cluster, 1));
    assert_eq!(cluster.raft(1).term(), 2);
    cluster.drop_in_flight(|m| [3, 4, 5].iter().any(|&to| is_append_to(m, to)));
    cluster.partition(&[&[1], &[3, 4, 5]]);
    cluster.deliver_all();
    *out += &format!("(a)\n{}", cluster.describe());

    // (b) S1 crashes; S5 wins term 3 with S3, S4 and itself, appends index 2 (term 3) on its own log only.
    cluster.crash(1);
    cluster.heal();
    assert!(win_election_quietly(&mut cluster, 5));
    assert_eq!(cluster.raft(5).term(), 3);
    cluster.drop_in_flight(|m| m.from == 5);
    cluster.crash(5);
    *out += &format!("(b)\n{}", cluster.describe());

    // (c) S1 restarts and wins term 4 (its first try, for term 3, is refused by S3 and S4 who voted for
    // S5). It replicates index 2 to S3, so the term-2 entry is on a majority (S1, S2, S3); its own term-4
    // entry reaches S2 only.
    cluster.restart(1);
    expire_leader_leases(&mut cluster, &[2, 3, 4]);
    cluster.partition(&[&[1], &[4]]);
    for attempt in 0.. {
        if win_election_quietly(&mut cluster, 1) {
            break;
        }
        assert!(attempt < 5, "S1 should win term 4: {}", cluster.describe());
        cluster.deliver_all();
    }
    assert_eq!(cluster.raft(1).term(), 4);
    assert!(cluster.deliver_until(|c| c.raft(3).last_index() == 2 && c.raft(2).last_index() == 3));
    cluster.partition(&[&[1], &[3]]);
    cluster.heal_one_way(3, 1);
    cluster.deliver_all();
    *out += &format!("(c)\n{}", cluster.describe());
    let s1 = cluster.raft(1);
    assert_eq!(
        s1.progress().map(|(id, pr)| (id, pr.match_index)).collect::<Vec<_>>()[..3],
        [(1, 3), (2, 3), (3, 2)]
    );
    cluster
}

#[test]
fn figure8_old_term_entry_is_not_committed_by_counting_replicas() {
    let mut out = String::new();
    let mut cluster = figure8_up_to_c(&mut out, |_| {});
    // Index 2 (term 2) is on three of five servers, but it is not from S1's term: S1 must not commit it.
    assert!(cluster.raft(1).commit_index() < 2, "{}", cluster.raft(1));
    figure8_d(&mut cluster, &mut out);
    assert_expected("figure8_old_term_entry_is_not_committed_by_counting_replicas", &out);
}

/// The switch that skips §5.4.2's current-term check: S1 commits (and applies) the term-2 entry by
/// counting, then S5 overwrites it — the harness's State Machine Safety check fires.
#[cfg(feature = "inject-bugs")]
#[test]
#[should_panic(expected = "State Machine Safety")]
fn figure8_injected_bug_commit_old_term_by_counting_loses_a_committed_entry() {
    let mut out = String::new();
    let mut cluster = figure8_up_to_c(&mut out, |config| {
        config.injected_bug = Some(raft::InjectedBug::CommitOldTermByCounting)
    });
    assert_eq!(cluster.raft(1).commit_index(), 2, "the bug commits index 2 by counting");
    figure8_d(&mut cluster, &mut out);
}

fn figure8_d(cluster: &mut Cluster, out: &mut String) {
    // (d) S1 crashes; S5 (last log term 3) can win with S3 and S4, and overwrites index 2 everywhere. Had
    // S1 counted index 2 as committed, a committed entry would now be lost (the harness would panic:
    // State Machine Safety).
    cluster.crash(1);
    cluster.restart(5);
    cluster.heal();
    expire_leader_leases(cluster, &[2, 3]);
    let mut attempts = 0;
    while cluster.campaign(5) != Role::Leader {
        attempts += 1;
        assert!(attempts < 5, "S5 should win with S3 and S4: {}", cluster.describe());
    }
    cluster.run(3);
    *out += &format!("(d)\n{}", cluster.describe());
    for id in [2, 3, 4, 5] {
        assert_eq!(cluster.raft(id).term_at(2), Some(3), "{}", cluster.raft(id));
    }
    cluster.check_log_matching();
}

#[test]
fn figure8_old_term_entry_commits_with_a_current_term_entry() {
    let mut out = String::new();
    let mut cluster = figure8_up_to_c(&mut out, |_| {});
    // (e) S1 gets its term-4 entry to S3 too: index 3 is on a majority and from the current term, so it
    // commits, and index 2 with it.
    // (S1 sends its lost append to S3 again once an election timeout passes without an answer.)
    cluster.heal();
    cluster.run(15);
    assert_eq!(cluster.raft(1).commit_index(), 3, "{}", cluster.raft(1));
    let committed: Vec<_> = cluster.nodes[&1].applied.iter().map(|e| (e.index, e.term)).collect();
    assert_eq!(committed, [(1, 1), (2, 2), (3, 4)]);

    // Now S5 can never win: S2 and S3 hold a term-4 entry, newer than S5's last term 3 (§5.4.1).
    cluster.crash(1);
    cluster.restart(5);
    expire_leader_leases(&mut cluster, &[2, 3]);
    for _ in 0..3 {
        assert_ne!(cluster.campaign(5), Role::Leader, "{}", cluster.describe());
    }
    out += &format!("(e)\n{}", cluster.describe());
    assert_expected("figure8_old_term_entry_commits_with_a_current_term_entry", &out);
}
