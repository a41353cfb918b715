//! What a peer, the network or the caller can get wrong is a typed error and changes nothing; a broken
//! invariant panics with the node's state.

mod harness;

use bytes::Bytes;
use harness::{entries_of_terms, entry};
use raft::{
    AppendRequest, AppendResponse, Config, ConfigError, Configuration, HardState, InstallSnapshot,
    InstallSnapshotResponse, Message, MessageBody, ProposeError, Raft, RestoredState, SnapshotMeta,
    StepError, VoteRequest,
};

fn follower(id: u64, terms: &[u64], term: u64) -> Raft {
    let restored = RestoredState {
        hard_state: HardState { term, vote: None, commit: 0 },
        snapshot: SnapshotMeta { index: 0, term: 0, configuration: Configuration::with_voters([1, 2, 3]) },
        entries: entries_of_terms(terms),
    };
    Raft::new(Config::new(id), restored).unwrap()
}

fn append(from: u64, to: u64, term: u64, prev: (u64, u64), entries: Vec<raft::Entry>) -> Message {
    let request = AppendRequest { prev_log_index: prev.0, prev_log_term: prev.1, entries, leader_commit: 0 };
    Message { from, to, term, body: MessageBody::AppendRequest(request) }
}

/// Steps `message` and checks that it was refused with `expected` and left the node untouched.
fn assert_refused(raft: &mut Raft, message: Message, expected: StepError) {
    let before = (raft.hard_state(), raft.log().to_string(), raft.role());
    assert_eq!(raft.step(message), Err(expected));
    assert_eq!(before, (raft.hard_state(), raft.log().to_string(), raft.role()));
    assert!(!raft.has_ready());
}

#[test]
fn bad_input_non_consecutive_entries_are_refused() {
    let mut raft = follower(2, &[1, 1], 1);
    let message = append(1, 2, 2, (2, 1), vec![entry(3, 2), entry(5, 2)]);
    assert_refused(&mut raft, message, StepError::NonConsecutiveEntries { expected: 4, found: 5 });
    let message = append(1, 2, 2, (2, 1), vec![entry(4, 2)]);
    assert_refused(&mut raft, message, StepError::NonConsecutiveEntries { expected: 3, found: 4 });
}

/// Found by the `peer_frame` fuzz target: validating an AppendEntries whose indices run past u64::MAX
/// overflowed instead of refusing it.
#[test]
fn bad_input_indices_past_the_largest_index_are_refused() {
    let mut raft = follower(2, &[1, 1], 1);
    let message = append(1, 2, 2, (u64::MAX, 1), vec![]);
    assert_refused(&mut raft, message, StepError::IndexOverflow { prev_log_index: u64::MAX, entries: 0 });
    let message = append(1, 2, 2, (u64::MAX - 2, 1), vec![entry(u64::MAX - 1, 2), entry(u64::MAX, 2)]);
    assert_refused(&mut raft, message, StepError::IndexOverflow { prev_log_index: u64::MAX - 2, entries: 2 });
}

#[test]
fn bad_input_entry_term_above_message_term_is_refused() {
    let mut raft = follower(2, &[1], 1);
    let message = append(1, 2, 2, (1, 1), vec![entry(2, 3)]);
    assert_refused(&mut raft, message, StepError::LogTermAboveMessageTerm { log_term: 3, term: 2 });
    let message = append(1, 2, 2, (1, 5), vec![]);
    assert_refused(&mut raft, message, StepError::LogTermAboveMessageTerm { log_term: 5, term: 2 });
}

#[test]
fn bad_input_decreasing_entry_terms_are_refused() {
    let mut raft = follower(2, &[1], 1);
    let message = append(1, 2, 3, (1, 1), vec![entry(2, 3), entry(3, 2)]);
    assert_refused(&mut raft, message, StepError::DecreasingEntryTerms { index: 3 });
}

#[test]
fn bad_input_malformed_snapshot_chunks_are_refused() {
    let mut raft = follower(2, &[1], 1);
    let chunk = |index, term, offset, data: &'static [u8]| {
        let meta = SnapshotMeta { index, term, configuration: Configuration::with_voters([1, 2, 3]) };
        let body = MessageBody::InstallSnapshot(InstallSnapshot {
            meta,
            offset,
            data: Bytes::from_static(data),
            done: false,
        });
        Message { from: 1, to: 2, term: 2, body }
    };
    assert_refused(&mut raft, chunk(0, 0, 0, b"x"), StepError::EmptySnapshot { index: 0, term: 0 });
    assert_refused(&mut raft, chunk(5, 0, 0, b"x"), StepError::EmptySnapshot { index: 5, term: 0 });
    assert_refused(
        &mut raft,
        chunk(5, 3, 0, b"x"),
        StepError::LogTermAboveMessageTerm { log_term: 3, term: 2 },
    );
    assert_refused(
        &mut raft,
        chunk(5, 2, u64::MAX, b"xy"),
        StepError::SnapshotOffsetOverflow { offset: u64::MAX },
    );
    let installed = InstallSnapshotResponse::Installed { snapshot_index: 5, snapshot_term: 9 };
    let message = Message { from: 1, to: 2, term: 2, body: MessageBody::InstallSnapshotResponse(installed) };
    assert_refused(&mut raft, message, StepError::LogTermAboveMessageTerm { log_term: 9, term: 2 });
}

#[test]
fn bad_input_snapshot_answers_about_entries_the_leader_never_had_are_ignored() {
    let mut cluster = harness::Cluster::new(3);
    cluster.elect(1);
    let before = cluster.raft(1).progress().map(|(id, pr)| (id, pr.to_string())).collect::<Vec<_>>();
    let commit = cluster.raft(1).commit_index();
    let bogus = [
        InstallSnapshotResponse::Installed { snapshot_index: 50, snapshot_term: 1 },
        InstallSnapshotResponse::NextOffset { snapshot_index: 7, snapshot_term: 1, next_offset: 1 << 40 },
        InstallSnapshotResponse::Stale { commit: 1 << 40 },
    ];
    for response in bogus {
        let term = cluster.raft(1).term();
        let message = Message { from: 2, to: 1, term, body: MessageBody::InstallSnapshotResponse(response) };
        cluster.raft_mut(1).step(message).expect("well-formed");
    }
    let after = cluster.raft(1).progress().map(|(id, pr)| (id, pr.to_string())).collect::<Vec<_>>();
    assert_eq!(before, after, "no transfer is under way, and a match beyond the log is not believed");
    assert_eq!(cluster.raft(1).commit_index(), commit);
}

#[test]
fn bad_input_misaddressed_messages_are_refused() {
    let mut raft = follower(2, &[1], 1);
    assert_refused(&mut raft, append(2, 2, 1, (0, 0), vec![]), StepError::SelfAddressed { id: 2 });
    assert_refused(
        &mut raft,
        append(1, 3, 1, (0, 0), vec![]),
        StepError::WrongRecipient { to: 3, receiver: 2 },
    );
    assert_refused(&mut raft, append(0, 2, 1, (0, 0), vec![]), StepError::NoSender);
    assert_refused(&mut raft, append(1, 2, 0, (0, 0), vec![]), StepError::ZeroTerm);
    let request =
        VoteRequest { pre_vote: false, last_log_index: 1, last_log_term: 9, leadership_transfer: false };
    let message = Message { from: 3, to: 2, term: 4, body: MessageBody::VoteRequest(request) };
    assert_refused(&mut raft, message, StepError::LogTermAboveMessageTerm { log_term: 9, term: 4 });
}

#[test]
fn bad_input_prev_index_beyond_the_log_is_an_ordinary_rejection_with_a_hint() {
    let mut raft = follower(2, &[1, 1, 1, 4], 4);
    raft.step(append(1, 2, 8, (10, 6), vec![entry(11, 8)])).unwrap();
    let ready = raft.ready();
    let expected =
        AppendResponse::Rejected { rejected_prev_index: 10, hint_index: 4, hint_term: 4, last_index: 4 };
    assert!(
        matches!(&ready.messages[..], [Message { body: MessageBody::AppendResponse(r), term: 8, .. }] if *r == expected)
    );
}

#[test]
fn bad_input_proposals_on_a_follower_name_the_leader() {
    let mut raft = follower(2, &[], 1);
    assert_eq!(raft.propose(Bytes::from_static(b"x")), Err(ProposeError::NotLeader { leader_hint: None }));
    raft.step(append(1, 2, 1, (0, 0), vec![])).unwrap();
    assert_eq!(raft.propose(Bytes::from_static(b"x")), Err(ProposeError::NotLeader { leader_hint: Some(1) }));
}

#[test]
fn bad_input_proposals_over_the_uncommitted_limit_are_dropped() {
    let mut cluster = harness::Cluster::with_config(3, |config| config.max_uncommitted_bytes = 1000);
    cluster.elect(1);
    cluster.isolate(1); // nothing commits from here on
    let mut accepted = 0;
    let result = loop {
        match cluster.raft_mut(1).propose(Bytes::from(vec![0u8; 100])) {
            Ok(_) => accepted += 1,
            Err(error) => break error,
        }
        assert!(accepted < 100);
    };
    assert_eq!(result, ProposeError::ProposalDropped);
    assert_eq!(accepted, 8, "8 × (100 + 16) bytes fit in 1000");
    cluster.heal();
    cluster.run(5);
    assert!(cluster.raft_mut(1).propose(Bytes::from(vec![0u8; 100])).is_ok(), "commits free the budget");
}

#[test]
fn bad_input_invalid_configs_are_refused() {
    let check = |adjust: fn(&mut Config), expected: ConfigError| {
        let mut config = Config::new(1);
        adjust(&mut config);
        assert_eq!(config.validate(), Err(expected.clone()));
        assert_eq!(Raft::new(config, RestoredState::default()).err(), Some(expected));
    };
    check(|c| c.id = 0, ConfigError::ZeroId);
    check(|c| c.heartbeat_interval_ticks = 0, ConfigError::ZeroHeartbeatInterval);
    check(
        |c| c.election_timeout_ticks = 2,
        ConfigError::ElectionTimeoutTooShort { election: 2, heartbeat: 2 },
    );
    check(|c| c.max_inflight_messages = 0, ConfigError::ZeroLimit { field: "max_inflight_messages" });
}

#[test]
fn bad_input_garbage_never_panics() {
    // A deterministic stream of odd but well-typed messages: every one is either refused or handled.
    fuzz(&mut follower(2, &[1, 1, 2], 2), 0x1234_5678);
    // The same against a node that restarted from a snapshot, whose log starts at index 4.
    let restored = RestoredState {
        hard_state: HardState { term: 2, vote: None, commit: 3 },
        snapshot: SnapshotMeta { index: 3, term: 2, configuration: Configuration::with_voters([1, 2, 3]) },
        entries: vec![entry(4, 2)],
    };
    fuzz(&mut Raft::new(Config::new(2), restored).unwrap(), 0x9abc_def0);
}

fn fuzz(raft: &mut Raft, seed: u64) {
    let mut seed = seed;
    let mut next = move |bound: u64| {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 33) % bound
    };
    for _ in 0..10_000 {
        let term = next(6);
        let body = match next(4) {
            0 => {
                let prev = next(6);
                let count = next(3);
                let entries = (0..count).map(|i| entry(prev + 1 + i + next(2), next(6))).collect();
                MessageBody::AppendRequest(AppendRequest {
                    prev_log_index: prev,
                    prev_log_term: next(6),
                    entries,
                    leader_commit: next(10),
                })
            }
            1 => MessageBody::AppendResponse(AppendResponse::Accepted { match_index: next(10) }),
            2 => MessageBody::VoteRequest(VoteRequest {
                pre_vote: next(2) == 0,
                last_log_index: next(10),
                last_log_term: next(6),
                leadership_transfer: next(2) == 0,
            }),
            _ => MessageBody::Heartbeat(raft::Heartbeat { commit: next(10), read_round: next(3) }),
        };
        let from = 1 + next(3);
        let _ = raft.step(Message { from, to: 2, term, body });
        while raft.has_ready() {
            let ready = raft.ready();
            if let Some(mark) = ready.persist_mark {
                raft.on_persisted(mark);
            }
            raft.advance();
        }
        if next(10) == 0 {
            raft.tick();
        }
    }
}

#[test]
#[should_panic(expected = "applied index 5 outside handed-out range")]
fn invariant_applying_what_was_never_handed_out_panics() {
    let mut raft = follower(2, &[1], 1);
    raft.on_applied(5);
}

#[test]
#[should_panic(expected = "restored commit 9 is beyond the restored log's last index 1")]
fn invariant_restored_commit_beyond_the_log_panics() {
    let restored = RestoredState {
        hard_state: HardState { term: 1, vote: None, commit: 9 },
        snapshot: SnapshotMeta::default(),
        entries: entries_of_terms(&[1]),
    };
    let _ = Raft::new(Config::new(1), restored);
}

#[test]
fn bad_input_a_late_append_from_before_the_snapshot_is_acknowledged_not_a_panic() {
    // The node restarted from a snapshot at index 5; an old append for entries 1–2 arrives late.
    let restored = RestoredState {
        hard_state: HardState { term: 2, vote: None, commit: 5 },
        snapshot: SnapshotMeta { index: 5, term: 2, configuration: Configuration::with_voters([1, 2, 3]) },
        entries: vec![entry(6, 2)],
    };
    let mut raft = Raft::new(Config::new(2), restored).unwrap();
    raft.step(append(1, 2, 2, (0, 0), vec![entry(1, 1), entry(2, 1)])).unwrap();
    let ready = raft.ready();
    let expected = AppendResponse::Accepted { match_index: 5 };
    assert!(
        matches!(&ready.messages[..], [Message { body: MessageBody::AppendResponse(r), .. }] if *r == expected)
    );
    // One that reaches past the snapshot appends only the new part.
    raft.step(append(1, 2, 2, (4, 2), vec![entry(5, 2), entry(6, 2), entry(7, 2)])).unwrap();
    assert_eq!(raft.last_index(), 7);
}

#[test]
fn bad_input_an_append_contradicting_committed_entries_leaves_them_alone() {
    let mut raft = follower(2, &[1, 1], 1);
    raft.step(append(1, 2, 1, (2, 1), vec![])).unwrap();
    let heartbeat = raft::Heartbeat { commit: 2, read_round: 0 };
    raft.step(Message { from: 1, to: 2, term: 1, body: MessageBody::Heartbeat(heartbeat) }).unwrap();
    assert_eq!(raft.commit_index(), 2);
    // Only a broken cluster could send this: a leader of term 2 without the committed entry 2. Entries
    // at or below the commit index are never compared, let alone overwritten (Leader Completeness says
    // every legitimate leader has them).
    raft.step(append(3, 2, 2, (1, 1), vec![entry(2, 2), entry(3, 2)])).unwrap();
    assert_eq!(raft.term_at(2), Some(1));
    assert_eq!(raft.term_at(3), Some(2));
}
