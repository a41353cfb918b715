//! Property test: random schedules of ticks, deliveries (reordered, lost, duplicated), proposals,
//! crashes (losing unsynced writes), restarts, slow disks and partitions keep Raft's safety properties, and once the faults heal the cluster
//! converges without having lost an entry that was ever reported committed. A second property adds
//! compaction at random points on random nodes, so that followers catch up through InstallSnapshot
//! under the same faults (and the harness checks every installed snapshot against what was applied).

mod harness;

use std::collections::BTreeMap;

use bytes::Bytes;
use harness::Cluster;
use proptest::prelude::*;
use raft::{NodeId, Role, Term};

#[derive(Clone, Debug)]
enum Op {
    Tick(usize),
    TickAll,
    Deliver(usize),
    DeliverAll,
    Drop(usize),
    Duplicate(usize),
    Propose(usize),
    Crash(usize),
    Restart(usize),
    Isolate(usize),
    Heal,
    /// Completes the pending disk writes of a node that persists asynchronously.
    Flush(usize),
    /// The node snapshots its state machine at its applied index and compacts its log.
    Compact(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (0..5usize).prop_map(Op::Tick),
        10 => Just(Op::TickAll),
        20 => (0..16usize).prop_map(Op::Deliver),
        5 => Just(Op::DeliverAll),
        4 => (0..16usize).prop_map(Op::Drop),
        2 => (0..16usize).prop_map(Op::Duplicate),
        10 => (0..5usize).prop_map(Op::Propose),
        3 => (0..5usize).prop_map(Op::Crash),
        3 => (0..5usize).prop_map(Op::Restart),
        3 => (0..5usize).prop_map(Op::Isolate),
        3 => Just(Op::Heal),
        8 => (0..5usize).prop_map(Op::Flush),
    ]
}

/// The same mix, plus compaction about as often as a crash.
fn op_with_compaction() -> impl Strategy<Value = Op> {
    prop_oneof![20 => op(), 1 => (0..5usize).prop_map(Op::Compact)]
}

/// Election Safety: at most one leader per term, over the whole run.
fn record_leaders(cluster: &Cluster, leaders: &mut BTreeMap<Term, NodeId>) {
    for (&id, node) in &cluster.nodes {
        if node.raft.role() == Role::Leader {
            let term = node.raft.term();
            let first = *leaders.entry(term).or_insert(id);
            assert_eq!(first, id, "Election Safety: {first} and {id} both lead term {term}");
        }
    }
}

/// `async_mask` picks the nodes that persist asynchronously: their writes complete only at `Flush`, and a
/// crash loses whatever was not flushed.
/// `classic` turns pre-vote and check-quorum (and with it leader stickiness) off: plain §5 Raft.
fn run_schedule(node_count: u64, seed: u64, async_mask: u8, classic: bool, ops: &[Op]) {
    let mut cluster = Cluster::with_config(node_count, |config| {
        // Small chunks make every snapshot transfer take several; a short timeout retries lost ones.
        config.max_snapshot_chunk_bytes = 48;
        config.snapshot_chunk_timeout_ticks = 3;
        config.rng_seed = seed;
        config.pre_vote = !classic;
        config.check_quorum = !classic;
        config.election_timeout_ticks = 5;
        config.heartbeat_interval_ticks = 1;
        config.max_entries_per_message = 3;
        config.max_inflight_messages = 4;
    });
    let ids = cluster.ids();
    for &id in &ids {
        cluster.set_async_persist(id, async_mask & (1 << id) != 0);
    }
    let pick = |i: usize| ids[i % ids.len()];
    let mut leaders = BTreeMap::new();
    let mut proposals = 0;
    for op in ops {
        match *op {
            Op::Tick(i) => cluster.tick(pick(i)),
            Op::TickAll => cluster.tick_all(),
            Op::Deliver(k) => cluster.deliver_at(k % cluster.in_flight.len().max(1)),
            Op::DeliverAll => {
                cluster.deliver_all();
            }
            Op::Drop(k) => cluster.drop_at(k % cluster.in_flight.len().max(1)),
            Op::Duplicate(k) => cluster.duplicate_at(k % cluster.in_flight.len().max(1)),
            Op::Propose(i) => {
                // Mostly to whoever leads; sometimes to a node that may be a deposed leader.
                let id = if i % 2 == 0 { cluster.leader().unwrap_or(pick(i)) } else { pick(i) };
                if !cluster.down.contains(&id) && cluster.raft(id).role() == Role::Leader {
                    proposals += 1;
                    let _ = cluster.raft_mut(id).propose(Bytes::from(format!("p{proposals}")));
                    cluster.process(id);
                }
            }
            Op::Crash(i) => {
                let id = if i % 2 == 0 { cluster.leader().unwrap_or(pick(i)) } else { pick(i) };
                // Keep a majority alive so that progress stays possible.
                if cluster.down.len() + 1 < ids.len().div_ceil(2) {
                    cluster.crash(id);
                }
            }
            Op::Restart(i) => {
                let id = pick(i);
                if cluster.down.contains(&id) {
                    cluster.restart(id);
                }
            }
            Op::Isolate(i) => {
                let id = if i % 2 == 0 { cluster.leader().unwrap_or(pick(i)) } else { pick(i) };
                cluster.isolate(id);
            }
            Op::Heal => cluster.heal(),
            Op::Flush(i) => {
                let id = pick(i);
                if !cluster.down.contains(&id) {
                    cluster.flush(id);
                }
            }
            Op::Compact(i) => {
                let id = pick(i);
                if !cluster.down.contains(&id) {
                    cluster.compact(id);
                }
            }
        }
        record_leaders(&cluster, &mut leaders);
        cluster.check_log_matching();
    }

    // Liveness after healing: a leader emerges and every live node ends with the same committed log,
    // which holds every entry ever reported committed.
    cluster.heal();
    for id in ids.clone() {
        if cluster.down.contains(&id) {
            cluster.restart(id);
        }
        cluster.set_async_persist(id, false);
        cluster.flush(id);
    }
    cluster.in_flight.clear();
    let mut converged = false;
    for _ in 0..300 {
        cluster.run(1);
        record_leaders(&cluster, &mut leaders);
        if let Some(leader) = cluster.leader() {
            let commit = cluster.raft(leader).commit_index();
            let last = cluster.raft(leader).last_index();
            if commit == last && ids.iter().all(|&id| cluster.raft(id).commit_index() == commit) {
                converged = true;
                break;
            }
        }
    }
    assert!(converged, "no convergence after healing:\n{}", cluster.describe());
    cluster.check_log_matching();
    let leader_id = cluster.leader().expect("converged");
    let leader = cluster.raft(leader_id);
    let (boundary, _) = leader.log().snapshot_boundary();
    let state_machine = &cluster.nodes[&leader_id].applied;
    for (index, entry) in &cluster.committed {
        // Entries the leader compacted live on in its state machine (its snapshot plus what it applied).
        let held = if *index <= boundary {
            state_machine.get(*index as usize - 1)
        } else {
            leader.log().entry(*index)
        };
        assert_eq!(held, Some(entry), "committed entry {entry} lost");
    }
}

proptest! {
    // 256 cases by default; PROPTEST_CASES=100000 for a long campaign.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256),
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_schedules_keep_log_matching_and_never_lose_a_committed_entry(
        node_count in 3u64..=5,
        seed in any::<u64>(),
        async_mask in any::<u8>(),
        classic in prop::bool::weighted(0.25),
        ops in prop::collection::vec(op(), 1..1500),
    ) {
        run_schedule(node_count, seed, async_mask, classic, &ops);
    }

    #[test]
    fn random_schedules_with_compaction_keep_every_safety_property_and_converge_through_snapshots(
        node_count in 3u64..=5,
        seed in any::<u64>(),
        async_mask in any::<u8>(),
        classic in prop::bool::weighted(0.25),
        ops in prop::collection::vec(op_with_compaction(), 1..1500),
    ) {
        run_schedule(node_count, seed, async_mask, classic, &ops);
    }
}
