//! Figure 7 of the Raft paper: the logs a new leader (term 8) may find on its followers, and how
//! AppendEntries's consistency check and the leader's backtracking bring them all to the leader's log.

mod harness;

use harness::{assert_expected, entries_of_terms, entry, Cluster};
use raft::{
    AppendRequest, AppendResponse, Config, Configuration, HardState, Message, MessageBody, NodeId, Raft,
    RestoredState, Role, SnapshotMeta, Term,
};

const LEADER: NodeId = 1;

/// The figure's seven servers: the leader and followers (a)–(f), as ids 1–7.
fn figure7_logs() -> Vec<(NodeId, &'static str, Vec<Term>)> {
    vec![
        (1, "leader", vec![1, 1, 1, 4, 4, 5, 5, 6, 6, 6]),
        (2, "(a)", vec![1, 1, 1, 4, 4, 5, 5, 6, 6]),
        (3, "(b)", vec![1, 1, 1, 4]),
        (4, "(c)", vec![1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6]),
        (5, "(d)", vec![1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7]),
        (6, "(e)", vec![1, 1, 1, 4, 4, 4, 4]),
        (7, "(f)", vec![1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3]),
    ]
}

/// Every server has seen term 7 (server (d) led it), nobody has voted in it.
fn figure7_cluster() -> Cluster {
    let logs: Vec<_> = figure7_logs().into_iter().map(|(id, _, terms)| (id, terms, 7)).collect();
    Cluster::with_logs(&logs, |_| {})
}

/// Steps one message into a lone follower, persisting synchronously, and returns its answers.
fn answers(raft: &mut Raft, message: Message) -> Vec<Message> {
    raft.step(message).expect("well-formed");
    let mut out = Vec::new();
    while raft.has_ready() {
        let ready = raft.ready();
        if let Some(mark) = ready.persist_mark {
            raft.on_persisted(mark);
        }
        out.extend(ready.messages);
        raft.advance();
    }
    out
}

#[test]
fn figure7_append_prev_10_term_6_accepted_by_c_d_rejected_by_a_b_e_f() {
    let configuration = Configuration::with_voters(1..=7);
    let mut verdicts = String::new();
    for (id, name, terms) in figure7_logs().into_iter().skip(1) {
        let restored = RestoredState {
            hard_state: HardState { term: 7, vote: None, commit: 0 },
            snapshot: SnapshotMeta { index: 0, term: 0, configuration: configuration.clone() },
            entries: entries_of_terms(&terms),
        };
        let mut follower = Raft::new(Config::new(id), restored).unwrap();
        let request = AppendRequest {
            prev_log_index: 10,
            prev_log_term: 6,
            entries: vec![entry(11, 8)],
            leader_commit: 0,
        };
        let message = Message { from: LEADER, to: id, term: 8, body: MessageBody::AppendRequest(request) };
        let replies = answers(&mut follower, message);
        assert_eq!(replies.len(), 1, "{name}: exactly one answer");
        let accepted =
            matches!(replies[0].body, MessageBody::AppendResponse(AppendResponse::Accepted { .. }));
        verdicts += &format!("{name} {} -> {}\n", follower.log(), replies[0]);
        let expect_accept = matches!(name, "(c)" | "(d)");
        assert_eq!(accepted, expect_accept, "{name}: {}", replies[0]);
        if accepted {
            // (c) and (d) lose their extra entries: index 11 is now the leader's term-8 entry.
            assert_eq!(follower.last_index(), 11, "{name}");
            assert_eq!(follower.term_at(11), Some(8), "{name}");
        }
    }
    assert_expected("figure7_append_verdicts", &verdicts);
}

#[test]
fn figure7_leader_brings_every_follower_to_its_log() {
    let mut cluster = figure7_cluster();
    cluster.trace_enabled = true;
    cluster.elect(LEADER);
    cluster.run(3);
    let leader_log = cluster.raft(LEADER).log().slice(1, 11).to_vec();
    assert_eq!(leader_log.len(), 11);
    assert_eq!(cluster.raft(LEADER).term_at(11), Some(8), "the term-8 no-op follows the figure's log");
    for id in cluster.ids() {
        let raft = cluster.raft(id);
        assert_eq!(raft.log().slice(1, raft.last_index()), &leader_log[..], "{raft}");
        assert_eq!(raft.commit_index(), 11, "{raft}");
    }
    cluster.check_log_matching();
    let output = format!("{}\n{}", cluster.trace, cluster.describe());
    assert_expected("figure7_leader_brings_every_follower_to_its_log", &output);
}

/// Rejections a leader would need probing one index at a time: one per index from `prev_index` down to
/// the last index where the follower's log matches the leader's.
fn one_at_a_time_rejections(leader: &[Term], follower: &[Term], prev_index: usize) -> usize {
    let matches = |i: usize| i == 0 || (i <= follower.len() && follower[i - 1] == leader[i - 1]);
    (1..=prev_index).rev().take_while(|&i| !matches(i)).count()
}

#[test]
fn figure7_fast_backtracking_needs_far_fewer_rounds_for_e_and_f() {
    let mut cluster = figure7_cluster();
    cluster.elect(LEADER);
    cluster.run(3);
    let logs = figure7_logs();
    for (id, name) in [(6, "(e)"), (7, "(f)")] {
        let rejections = cluster
            .sent
            .iter()
            .filter(|m| m.from == id && m.to == LEADER)
            .filter(|m| matches!(m.body, MessageBody::AppendResponse(AppendResponse::Rejected { .. })))
            .count();
        let naive = one_at_a_time_rejections(&logs[0].2, &logs[id as usize - 1].2, 10);
        assert_eq!(rejections, 1, "{name}: one hinted rejection skips the whole conflicting range");
        assert!(naive >= 5, "{name}: one at a time would take {naive}");
    }
}

#[test]
fn figure7_only_the_leader_a_c_and_d_could_win_an_election() {
    let mut winners = Vec::new();
    for (id, name, _) in figure7_logs() {
        let mut cluster = figure7_cluster();
        if cluster.campaign(id) == Role::Leader {
            winners.push(name);
        }
    }
    assert_eq!(winners, ["leader", "(a)", "(c)", "(d)"]);
}
