//! InstallSnapshot interrupted on the receiving side (issue 6): a follower that crashes in the middle of
//! receiving a snapshot loses its partial file (an unsynced temporary file, removed at the next start),
//! so when it comes back it must not accept the leader's chunks at the old offset. The core answers a
//! chunk of a stream it knows nothing of with "next offset 0" (dissertation §5; `raft::snapshot`), the
//! leader restarts the transfer from the beginning, and the follower ends with the leader's state.

use bytes::Bytes;
use kv::Command;
use raft::NodeId;
use sim::scenario::{ChunkSent, Scenario};
use sim::FaultSettings;

/// Small chunks, so the snapshot of the state below takes dozens of them.
const CHUNK_BYTES: usize = 64;
const SNAPSHOT_EVERY: u64 = 10;

fn set(i: u64) -> Command {
    Command::Set {
        key: Bytes::from(format!("key-{i}")),
        value: Bytes::from(format!("{i:0>100}")),
        condition: Default::default(),
        get: false,
        expiry: Default::default(),
    }
}

fn chunks_to(s: &mut Scenario, to: NodeId) -> Vec<ChunkSent> {
    s.snapshot_chunks().iter().filter(|c| c.to == to).copied().collect()
}

fn follower_restarted_mid_transfer(seed: u64) {
    let settings = FaultSettings {
        snapshot_threshold_entries: SNAPSHOT_EVERY,
        snapshot_chunk_bytes: CHUNK_BYTES,
        ..FaultSettings::calm()
    };
    let mut s = Scenario::new(3, seed, settings);
    let leader = s.check_one_leader();
    let follower = s.peer_after(leader, 1);

    // The leader compacts far past a disconnected follower.
    s.disconnect(follower);
    for i in 0..4 * SNAPSHOT_EVERY {
        s.one(set(i), 2, true);
    }
    let leader = s.check_one_leader();
    if s.snapshot_index(leader).unwrap_or(0) <= s.applied_index(follower).unwrap_or(0) {
        s.fail("the leader did not compact past the follower");
    }

    // Back on the network: the transfer starts. Stop the follower once it acknowledged some chunks but
    // before the last one went out.
    s.connect(follower);
    let mid_transfer = s.run_until(5_000, |s| {
        let sent: Vec<&ChunkSent> = s.chunks_sent().iter().filter(|c| c.to == follower).collect();
        sent.iter().any(|c| c.offset >= 4 * CHUNK_BYTES as u64) && !sent.iter().any(|c| c.done)
    });
    let before = chunks_to(&mut s, follower);
    if !mid_transfer || before.iter().any(|c| c.done) {
        s.fail(format!(
            "no transfer was caught in the middle: {} chunks sent, last {:?}",
            before.len(),
            before.last()
        ));
    }
    s.crash(follower);
    s.run_ms(100);
    s.restart(follower);

    let target = s.applied_index(leader).unwrap();
    let caught_up = s.run_until(10_000, |s| s.applied_index(follower).is_some_and(|a| a >= target));
    if !caught_up {
        s.fail(format!("node {follower} did not catch up to {target} after its restart"));
    }
    let after: Vec<ChunkSent> = chunks_to(&mut s, follower).split_off(before.len());
    // The stream that completed starts at offset 0 and is contiguous up to its last chunk: nothing of the
    // lost partial file was trusted.
    let Some(start) = after.iter().rposition(|c| c.offset == 0) else {
        s.fail(format!("the transfer never restarted at offset 0 after the restart: {after:?}"))
    };
    let stream = &after[start..];
    for pair in stream.windows(2) {
        if pair[1].offset != pair[0].offset + pair[0].bytes as u64
            || pair[1].snapshot_index != pair[0].snapshot_index
        {
            s.fail(format!("the restarted stream is not contiguous: {pair:?}"));
        }
    }
    if !stream.last().is_some_and(|c| c.done) {
        s.fail(format!("the restarted stream did not finish: {stream:?}"));
    }
    println!(
        "seed {seed}: crashed after {} chunks (offset {}); after the restart {} chunk(s) at the old offset \
         were refused, then {} chunks from offset 0",
        before.len(),
        before.last().map_or(0, |c| c.offset),
        start,
        stream.len()
    );

    // And it ends with exactly the leader's state, and serves new writes too.
    s.one(set(1_000), 3, true);
    let leader = s.check_one_leader();
    let target = s.applied_index(leader).unwrap();
    s.run_until(5_000, |s| s.node_ids().all(|id| s.applied_index(id) == Some(target)));
    let expected = s.state_machine_bytes(leader);
    if s.state_machine_bytes(follower) != expected {
        s.fail(format!("node {follower}'s state differs from the leader's at index {target}"));
    }
}

#[test]
fn a_follower_restarted_in_the_middle_of_install_snapshot_restarts_the_transfer_at_offset_0() {
    for seed in 1..=3 {
        follower_restarted_mid_transfer(seed);
    }
}
