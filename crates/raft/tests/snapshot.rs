//! Snapshots (§7 of the paper; dissertation §5): log compaction, and InstallSnapshot streamed in chunks
//! while the application owns the bytes.

mod harness;

use bytes::Bytes;
use harness::{entries_of_terms, Cluster};
use raft::{
    Config, Configuration, HardState, InstallSnapshot, InstallSnapshotResponse, Message, MessageBody, NodeId,
    Raft, RestoredState, Role, SnapshotError, SnapshotInstall, SnapshotMeta, SnapshotWrite, Term,
};

/// Small chunks, so that even a short log's snapshot takes several.
const CHUNK_BYTES: usize = 64;

fn cluster(n: u64) -> Cluster {
    Cluster::with_config(n, |config| {
        config.max_snapshot_chunk_bytes = CHUNK_BYTES;
        config.snapshot_chunk_timeout_ticks = 4;
    })
}

fn is_chunk_to(message: &Message, to: NodeId) -> bool {
    message.to == to && matches!(message.body, MessageBody::InstallSnapshot(_))
}

fn chunk(message: &Message) -> &InstallSnapshot {
    match &message.body {
        MessageBody::InstallSnapshot(chunk) => chunk,
        _ => panic!("not a chunk: {message}"),
    }
}

/// Chunks sent to `to` so far, as (from, offset, done).
fn chunks_sent_to(cluster: &Cluster, to: NodeId) -> Vec<(NodeId, u64, bool)> {
    cluster
        .sent
        .iter()
        .filter(|m| is_chunk_to(m, to))
        .map(|m| (m.from, chunk(m).offset, chunk(m).done))
        .collect()
}

/// Node 1 leads a 3-node cluster; node 3 is down while `count` commands commit, then the leader (and node
/// 2) compact everything they applied. Returns the leader's snapshot.
fn follower_left_behind_a_compaction(cluster: &mut Cluster, count: usize) -> SnapshotMeta {
    cluster.elect(1);
    cluster.crash(3);
    for i in 0..count {
        cluster.propose(1, &format!("command {i}"));
    }
    cluster.run(2); // node 2 learns the final commit index and applies everything
    let index = cluster.compact(1);
    assert_eq!(cluster.compact(2), index);
    assert_eq!(index, count as u64 + 1, "the no-op and every command are applied and compacted");
    cluster.raft(1).snapshot_meta()
}

/// Every live node holds the same state machine and commit index as the leader.
fn assert_converged(cluster: &Cluster) {
    let leader = cluster.leader().expect("a leader");
    let expected = &cluster.nodes[&leader].applied;
    for id in cluster.ids() {
        if cluster.down.contains(&id) {
            continue;
        }
        let raft = cluster.raft(id);
        assert_eq!(raft.commit_index(), cluster.raft(leader).commit_index(), "{raft}");
        assert_eq!(&cluster.nodes[&id].applied, expected, "{raft} applied a different history");
    }
    cluster.check_log_matching();
}

// ----- Compaction --------------------------------------------------------------------------------------

#[test]
fn compaction_keeps_the_boundary_term_and_configuration_and_appends_still_match_there() {
    let mut cluster = cluster(3);
    cluster.elect(1);
    for i in 0..5 {
        cluster.propose(1, &format!("c{i}"));
    }
    cluster.run(2);
    let term = cluster.raft(1).term();
    // Every node compacts everything it applied: the next append's prev_log_index is the boundary.
    for id in 1..=3 {
        assert_eq!(cluster.compact(id), 6);
        let raft = cluster.raft(id);
        assert_eq!(raft.log().snapshot_boundary(), (6, term), "{raft}");
        assert_eq!(raft.term_at(6), Some(term), "the boundary's term is remembered");
        assert_eq!(raft.term_at(5), None, "entries before it are gone");
        assert_eq!(raft.snapshot_meta().configuration, Configuration::with_voters([1, 2, 3]));
    }
    let index = cluster.propose(1, "after the boundary");
    cluster.run(2);
    for id in 1..=3 {
        assert_eq!(cluster.raft(id).commit_index(), index, "{}", cluster.raft(id));
    }
    assert!(chunks_sent_to(&cluster, 2).is_empty() && chunks_sent_to(&cluster, 3).is_empty());
    assert_converged(&cluster);
}

#[test]
fn compaction_is_limited_to_applied_entries_and_is_a_no_op_at_or_below_the_boundary() {
    let mut cluster = cluster(3);
    cluster.elect(1);
    cluster.propose(1, "a");
    cluster.propose(1, "b");
    let applied = cluster.raft(1).applied_index();
    assert_eq!(applied, 3);
    let raft = cluster.raft_mut(1);
    assert_eq!(raft.compact(4), Err(SnapshotError::NotApplied { index: 4, applied }));
    assert_eq!(raft.snapshot_meta_at(4), Err(SnapshotError::NotApplied { index: 4, applied }));
    raft.compact(2).unwrap();
    assert_eq!(raft.log().first_index(), 3);
    raft.compact(1).unwrap();
    raft.compact(2).unwrap();
    assert_eq!(raft.log().first_index(), 3, "compacting at or below the boundary changes nothing");
    assert_eq!(raft.snapshot_meta_at(1), Err(SnapshotError::Compacted { index: 1, first_index: 3 }));
    assert_eq!(raft.snapshot_meta_at(2), Ok(raft.snapshot_meta()));
    assert!(!raft.has_ready(), "compaction hands nothing to persist");
}

// ----- InstallSnapshot: the whole transfer -------------------------------------------------------------

#[test]
fn a_follower_away_past_the_leaders_compaction_catches_up_through_a_multi_chunk_snapshot() {
    let mut cluster = cluster(3);
    let snapshot = follower_left_behind_a_compaction(&mut cluster, 20);
    cluster.restart(3);
    cluster.run(30);
    let chunks = chunks_sent_to(&cluster, 3);
    assert!(chunks.len() >= 3, "a multi-chunk transfer: {chunks:?}");
    let offsets: Vec<u64> = chunks.iter().map(|c| c.1).collect();
    assert!(offsets.windows(2).all(|w| w[0] < w[1]), "each chunk once, in order: {offsets:?}");
    assert_eq!(chunks.iter().filter(|c| c.2).count(), 1, "one last chunk");
    assert_eq!(cluster.nodes[&3].installed, vec![snapshot.clone()]);
    let raft = cluster.raft(3);
    assert_eq!(raft.log().snapshot_boundary(), (snapshot.index, snapshot.term), "{raft}");
    assert_eq!(cluster.nodes[&3].storage.snapshot, snapshot, "the install reached storage");
    assert_converged(&cluster);
    // Appends resume after the snapshot.
    let index = cluster.propose(1, "after the install");
    cluster.run(2);
    assert_eq!(cluster.raft(3).commit_index(), index);
    assert_eq!(chunks_sent_to(&cluster, 3).len(), chunks.len(), "no second transfer");
    assert_converged(&cluster);
    // And the follower restarts from its installed snapshot.
    cluster.crash(3);
    cluster.restart(3);
    cluster.run(3);
    assert_converged(&cluster);
}

/// Runs `rounds` rounds of ticks and deliveries, losing each in-flight message that `lose` picks (it is
/// asked before every delivery).
fn run_losing(cluster: &mut Cluster, rounds: usize, mut lose: impl FnMut(&Message) -> bool) {
    for _ in 0..rounds {
        cluster.tick_all();
        for _ in 0..100_000 {
            if let Some(position) = cluster.in_flight.iter().position(&mut lose) {
                cluster.drop_at(position);
                continue;
            }
            if !cluster.deliver_one() {
                break;
            }
        }
    }
}

#[test]
fn a_lost_chunk_is_sent_again_after_the_chunk_timeout() {
    let mut cluster = cluster(3);
    follower_left_behind_a_compaction(&mut cluster, 20);
    cluster.restart(3);
    // The network loses the second chunk the first time it is sent.
    let mut lost = None;
    run_losing(&mut cluster, 40, |m| {
        let lose = lost.is_none() && is_chunk_to(m, 3) && chunk(m).offset > 0;
        if lose {
            lost = Some(chunk(m).offset);
        }
        lose
    });
    let lost = lost.expect("a second chunk was sent");
    let sends = chunks_sent_to(&cluster, 3).iter().filter(|c| c.1 == lost).count();
    assert_eq!(sends, 2, "the lost chunk went out once more");
    assert_eq!(cluster.nodes[&3].installed.len(), 1);
    assert_converged(&cluster);
}

#[test]
fn a_lost_answer_resumes_the_transfer_from_the_last_offset_the_follower_holds() {
    let mut cluster = cluster(3);
    follower_left_behind_a_compaction(&mut cluster, 20);
    cluster.restart(3);
    // The follower's first answer is lost: the leader sends the first chunk again, and the follower
    // (which wrote it already) answers with the offset after it instead of writing it twice. The harness
    // asserts that every write lands at the end of the file.
    let mut lost = false;
    run_losing(&mut cluster, 40, |m| {
        let lose = !lost
            && m.from == 3
            && matches!(
                m.body,
                MessageBody::InstallSnapshotResponse(InstallSnapshotResponse::NextOffset { .. })
            );
        lost |= lose;
        lose
    });
    assert!(lost);
    let chunks = chunks_sent_to(&cluster, 3);
    assert_eq!(chunks.iter().filter(|c| c.1 == 0).count(), 2, "the first chunk went twice: {chunks:?}");
    assert_eq!(cluster.nodes[&3].installed.len(), 1);
    assert_converged(&cluster);
}

#[test]
fn a_follower_restarted_mid_transfer_lost_its_partial_file_and_the_stream_restarts_at_zero() {
    let mut cluster = cluster(3);
    follower_left_behind_a_compaction(&mut cluster, 20);
    cluster.restart(3);
    // Deliver until the follower has written two chunks, then crash it: its temporary file is gone.
    cluster.tick_all();
    cluster.deliver_until(|c| {
        c.nodes[&3].receiving.as_ref().is_some_and(|(_, file)| file.len() >= 2 * CHUNK_BYTES)
    });
    let chunks_before = chunks_sent_to(&cluster, 3).len();
    cluster.crash(3);
    cluster.deliver_all();
    cluster.restart(3);
    cluster.run(40);
    let chunks = chunks_sent_to(&cluster, 3);
    let restarted_at = chunks[chunks_before..].iter().position(|c| c.1 == 0).expect("a restart at offset 0");
    assert!(restarted_at <= 1, "the first chunk after the restart is answered with offset 0: {chunks:?}");
    assert_eq!(cluster.nodes[&3].installed.len(), 1);
    assert_converged(&cluster);
}

#[test]
fn a_snapshot_that_fails_verification_is_received_again_from_the_start() {
    let mut cluster = cluster(3);
    follower_left_behind_a_compaction(&mut cluster, 10);
    cluster.nodes.get_mut(&3).unwrap().hold_received = true;
    cluster.restart(3);
    cluster.run(20);
    // Corrupt the received file before the application verifies it.
    let node = cluster.nodes.get_mut(&3).unwrap();
    assert!(node.received.is_some(), "the whole file arrived");
    node.receiving.as_mut().unwrap().1[0] ^= 0xff;
    node.hold_received = false;
    let first_transfer = chunks_sent_to(&cluster, 3).len();
    cluster.finish_receiving(3);
    cluster.run(20);
    let chunks = chunks_sent_to(&cluster, 3);
    assert_eq!(chunks[first_transfer].1, 0, "the transfer starts over: {chunks:?}");
    assert_eq!(cluster.nodes[&3].installed.len(), 1);
    assert_converged(&cluster);
}

#[test]
fn a_leader_change_mid_transfer_abandons_it_and_the_new_leader_sends_its_own() {
    let mut cluster = cluster(3);
    let old_snapshot = follower_left_behind_a_compaction(&mut cluster, 20);
    cluster.nodes.get_mut(&1).unwrap().hold_reads = true;
    cluster.restart(3);
    // Serve node 1's reads one at a time until node 3 holds part of the file.
    for _ in 0..20 {
        if cluster.nodes[&3].receiving.as_ref().is_some_and(|(_, file)| file.len() >= CHUNK_BYTES) {
            break;
        }
        cluster.tick_all();
        cluster.serve_reads(1);
        cluster.deliver_all();
    }
    assert!(cluster.nodes[&3].receiving.as_ref().is_some_and(|(_, file)| file.len() >= CHUNK_BYTES));
    let pending_read = *cluster.nodes[&1].reads.first().expect("the leader wants the next chunk");
    // Node 1 is cut off; node 2 (whose log is as long) takes over and streams its own snapshot.
    cluster.isolate(1);
    for _ in 0..200 {
        cluster.tick(2);
        cluster.tick(3);
        cluster.deliver_all();
        if cluster.raft(2).role() == Role::Leader && !cluster.nodes[&3].installed.is_empty() {
            break;
        }
    }
    assert_eq!(cluster.raft(2).role(), Role::Leader, "{}", cluster.describe());
    let new_chunks: Vec<_> = chunks_sent_to(&cluster, 3).into_iter().filter(|c| c.0 == 2).collect();
    assert_eq!(new_chunks[0].1, 0, "the new leader starts its own stream: {new_chunks:?}");
    let installed = &cluster.nodes[&3].installed;
    assert_eq!(installed.len(), 1);
    assert_eq!((installed[0].index, installed[0].term), (old_snapshot.index, old_snapshot.term));
    // The deposed leader learns of the new term and drops its transfer: a late chunk is not wanted.
    cluster.heal();
    cluster.run(5);
    assert_ne!(cluster.raft(1).role(), Role::Leader);
    let read = cluster.raft_mut(1).snapshot_chunk(pending_read, Bytes::from_static(b"late"), false);
    assert_eq!(read, Err(SnapshotError::ChunkNotWanted { to: 3, offset: pending_read.offset }));
    cluster.nodes.get_mut(&1).unwrap().reads.clear();
    assert_converged(&cluster);
}

#[test]
fn a_leader_that_compacts_again_mid_transfer_restarts_it_with_the_newer_snapshot() {
    let mut cluster = cluster(3);
    follower_left_behind_a_compaction(&mut cluster, 20);
    cluster.nodes.get_mut(&1).unwrap().hold_reads = true;
    cluster.restart(3);
    for _ in 0..20 {
        if cluster.nodes[&3].receiving.is_some() {
            break;
        }
        cluster.tick_all();
        cluster.serve_reads(1);
        cluster.deliver_all();
    }
    assert!(cluster.nodes[&3].receiving.is_some(), "the first transfer started");
    // More commands commit and the leader compacts past its first snapshot.
    cluster.nodes.get_mut(&1).unwrap().hold_reads = false;
    cluster.nodes.get_mut(&1).unwrap().reads.clear(); // that file is gone; the leader asks again
    cluster.isolate(3);
    for i in 0..5 {
        cluster.propose(1, &format!("more {i}"));
    }
    cluster.run(2);
    let newer = cluster.compact(1);
    cluster.heal();
    cluster.run(40);
    let installed = &cluster.nodes[&3].installed;
    assert_eq!(installed.last().map(|m| m.index), Some(newer), "{installed:?}");
    assert_converged(&cluster);
}

// ----- One follower, message by message ----------------------------------------------------------------

/// What the caller saw while driving a lone node (persisting synchronously).
#[derive(Default)]
struct Seen {
    messages: Vec<Message>,
    writes: Vec<SnapshotWrite>,
    installs: Vec<SnapshotInstall>,
}

fn drive(raft: &mut Raft) -> Seen {
    let mut seen = Seen::default();
    while raft.has_ready() {
        let ready = raft.ready();
        if let Some(mark) = ready.persist_mark {
            raft.on_persisted(mark);
        }
        seen.messages.extend(ready.messages);
        seen.writes.extend(ready.snapshot_writes);
        seen.installs.extend(ready.snapshot);
        raft.advance();
    }
    seen
}

/// Drives `raft` but stops before reporting the install's persist mark; returns it with what was seen.
fn drive_without_persisting(raft: &mut Raft) -> (Seen, raft::PersistMark) {
    let ready = raft.ready();
    let seen = Seen {
        messages: ready.messages,
        writes: ready.snapshot_writes,
        installs: ready.snapshot.into_iter().collect(),
    };
    (seen, ready.persist_mark.expect("an install is persisted"))
}

fn follower(terms: &[Term], commit: u64) -> Raft {
    let restored = RestoredState {
        hard_state: HardState { term: 3, vote: None, commit },
        snapshot: SnapshotMeta { index: 0, term: 0, configuration: Configuration::with_voters([1, 2, 3]) },
        entries: entries_of_terms(terms),
    };
    let mut raft = Raft::new(Config::new(2), restored).unwrap();
    drive(&mut raft);
    raft
}

fn snapshot_at(index: u64, term: Term) -> SnapshotMeta {
    SnapshotMeta { index, term, configuration: Configuration::with_voters([1, 2, 3]) }
}

fn chunk_message(meta: &SnapshotMeta, offset: u64, data: &'static [u8], done: bool) -> Message {
    let chunk = InstallSnapshot { meta: meta.clone(), offset, data: Bytes::from_static(data), done };
    Message { from: 1, to: 2, term: 3, body: MessageBody::InstallSnapshot(chunk) }
}

fn response(seen: &Seen) -> InstallSnapshotResponse {
    assert_eq!(seen.messages.len(), 1, "one answer: {:?}", seen.messages);
    match seen.messages[0].body {
        MessageBody::InstallSnapshotResponse(response) => response,
        _ => panic!("not a snapshot answer: {}", seen.messages[0]),
    }
}

#[test]
fn a_stale_snapshot_is_refused_with_the_followers_commit_index() {
    let mut raft = follower(&[1, 1, 2, 2, 3], 4);
    let meta = snapshot_at(3, 2);
    raft.step(chunk_message(&meta, 0, b"state", true)).unwrap();
    let seen = drive(&mut raft);
    assert_eq!(response(&seen), InstallSnapshotResponse::Stale { commit: 4 });
    assert!(seen.writes.is_empty(), "nothing to write");
    assert_eq!(raft.snapshot_received(&meta), Err(SnapshotError::Stale { index: 3, commit: 4 }));
    assert_eq!(raft.log().first_index(), 1, "the log is untouched");
}

#[test]
fn a_snapshot_that_became_stale_while_it_was_verified_is_not_installed() {
    let mut raft = follower(&[1, 1], 0);
    let meta = snapshot_at(3, 2);
    raft.step(chunk_message(&meta, 0, b"state", true)).unwrap();
    let seen = drive(&mut raft);
    assert_eq!(seen.writes.len(), 1);
    assert!(seen.messages.is_empty(), "the last chunk is answered only once installed");
    // Meanwhile the leader's appends bring the follower past the snapshot (the leader was replaced).
    let entries = entries_of_terms(&[1, 1, 2, 3]).split_off(2);
    let request = raft::AppendRequest { prev_log_index: 2, prev_log_term: 1, entries, leader_commit: 4 };
    raft.step(Message { from: 1, to: 2, term: 3, body: MessageBody::AppendRequest(request) }).unwrap();
    drive(&mut raft);
    assert_eq!(raft.commit_index(), 4);
    assert_eq!(raft.snapshot_received(&meta), Err(SnapshotError::Stale { index: 3, commit: 4 }));
    assert!(drive(&mut raft).installs.is_empty());
}

#[test]
fn chunks_out_of_order_are_answered_with_the_offset_wanted_and_never_handed_out() {
    let mut raft = follower(&[1], 0);
    let meta = snapshot_at(5, 2);
    // A stream this follower never saw the start of (it restarted): start over.
    raft.step(chunk_message(&meta, 10, b"later", false)).unwrap();
    let seen = drive(&mut raft);
    assert!(seen.writes.is_empty());
    assert_eq!(
        response(&seen),
        InstallSnapshotResponse::NextOffset { snapshot_index: 5, snapshot_term: 2, next_offset: 0 }
    );
    raft.step(chunk_message(&meta, 0, b"first", false)).unwrap();
    let seen = drive(&mut raft);
    assert_eq!(seen.writes.len(), 1);
    assert_eq!(
        response(&seen),
        InstallSnapshotResponse::NextOffset { snapshot_index: 5, snapshot_term: 2, next_offset: 5 }
    );
    // A duplicate of the first chunk: say where we are, write nothing.
    raft.step(chunk_message(&meta, 0, b"first", false)).unwrap();
    let seen = drive(&mut raft);
    assert!(seen.writes.is_empty());
    assert_eq!(
        response(&seen),
        InstallSnapshotResponse::NextOffset { snapshot_index: 5, snapshot_term: 2, next_offset: 5 }
    );
}

#[test]
fn a_follower_whose_log_matches_the_snapshot_keeps_the_entries_after_it() {
    // §7: "If existing log entry has same index and term as snapshot's last included entry, retain log
    // entries following it."
    let mut raft = follower(&[1, 1, 1, 2, 2, 2], 0);
    let meta = snapshot_at(4, 2);
    raft.step(chunk_message(&meta, 0, b"state", true)).unwrap();
    drive(&mut raft);
    raft.snapshot_received(&meta).unwrap();
    let seen = drive(&mut raft);
    assert_eq!(seen.installs, vec![SnapshotInstall { meta: meta.clone(), keep_entries_after: true }]);
    assert_eq!(raft.log().to_string(), "(4@2) [5@2 6@2]");
    assert_eq!((raft.commit_index(), raft.applied_index()), (4, 4));
    // Its log already held the snapshot's entries durably, so the acknowledgement leaves at once.
    assert_eq!(response(&seen), InstallSnapshotResponse::Installed { snapshot_index: 4, snapshot_term: 2 });
}

#[test]
fn a_follower_whose_log_conflicts_with_the_snapshot_discards_it_and_acknowledges_only_once_durable() {
    // §7: "Discard the entire log."
    let mut raft = follower(&[1, 1, 3, 3, 3, 3], 0);
    let meta = snapshot_at(4, 2);
    raft.step(chunk_message(&meta, 0, b"state", true)).unwrap();
    drive(&mut raft);
    raft.snapshot_received(&meta).unwrap();
    assert_eq!(raft.log().to_string(), "(4@2) []");
    let (seen, mark) = drive_without_persisting(&mut raft);
    assert_eq!(seen.installs, vec![SnapshotInstall { meta: meta.clone(), keep_entries_after: false }]);
    assert!(seen.messages.is_empty(), "the acknowledgement waits for the install to be durable");
    raft.on_persisted(mark);
    raft.advance();
    let seen = drive(&mut raft);
    assert_eq!(response(&seen), InstallSnapshotResponse::Installed { snapshot_index: 4, snapshot_term: 2 });
    assert_eq!((raft.commit_index(), raft.applied_index(), raft.persisted_index()), (4, 4, 4));
    assert_eq!(raft.configuration(), &meta.configuration);
}

#[test]
fn a_snapshot_chunk_from_the_leader_resets_the_election_timer() {
    let mut raft = follower(&[1], 0);
    let meta = snapshot_at(5, 2);
    let timeout = raft.config().election_timeout_ticks;
    for round in 0..5u64 {
        for _ in 0..timeout - 1 {
            raft.tick();
        }
        let data: &'static [u8] = b"0123456789";
        raft.step(chunk_message(&meta, round * 10, data, false)).unwrap();
        drive(&mut raft);
    }
    assert_eq!(raft.role(), Role::Follower, "no election while the leader streams");
    assert_eq!(raft.leader_id(), Some(1));
}
