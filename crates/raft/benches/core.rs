//! The consensus core alone: 3 nodes in memory, messages passed by hand, 64-byte entries. Measures
//! committed entries per second (an entry counts once the leader has it committed and applied) with
//! proposals in batches of 1 and of 64 between Ready rounds.
//!
//! Run: `cargo bench -p raft -- --warm-up-time 1 --measurement-time 3`

use std::collections::VecDeque;
use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use raft::{Config, Configuration, HardState, Index, Message, Raft, RestoredState, Role, SnapshotMeta};

/// Entries each measured run commits (on a fresh cluster, so the in-memory logs stay small).
const ENTRIES_PER_RUN: u64 = 20_000;

struct Node {
    raft: Raft,
    hard_state: HardState,
    /// The "disk": a real one writes the entries out and keeps nothing in memory, so the benchmark
    /// remembers only how far the log goes (keeping a copy would measure the allocator, not the core).
    last_written: Index,
    applied: u64,
}

struct Cluster {
    nodes: Vec<Node>,
    network: VecDeque<Message>,
}

impl Cluster {
    fn new() -> Cluster {
        let bootstrap =
            SnapshotMeta { index: 0, term: 0, configuration: Configuration::with_voters([1, 2, 3]) };
        let nodes = (1..=3)
            .map(|id| {
                let config = Config { rng_seed: 1, max_inflight_messages: 256, ..Config::new(id) };
                let restored = RestoredState { snapshot: bootstrap.clone(), ..Default::default() };
                Node {
                    raft: Raft::new(config, restored).expect("valid config"),
                    hard_state: HardState::default(),
                    last_written: 0,
                    applied: 0,
                }
            })
            .collect();
        let mut cluster = Cluster { nodes, network: VecDeque::new() };
        while cluster.nodes[0].raft.role() != Role::Leader {
            cluster.nodes[0].raft.tick();
            cluster.drive(0);
            cluster.deliver_all();
        }
        cluster
    }

    /// The caller's loop for one node: persist, report, send, apply, advance.
    fn drive(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        while node.raft.has_ready() {
            let ready = node.raft.ready();
            if let Some(mark) = ready.persist_mark {
                if let Some(hard_state) = ready.hard_state {
                    node.hard_state = hard_state;
                }
                if let Some(last) = ready.entries.last() {
                    node.last_written = last.index;
                }
                black_box(&ready.entries);
                node.raft.on_persisted(mark);
            }
            self.network.extend(ready.messages);
            node.applied += ready.committed_entries.len() as u64;
            black_box(&ready.committed_entries);
            node.raft.advance();
        }
    }

    fn deliver_all(&mut self) {
        while let Some(message) = self.network.pop_front() {
            let i = (message.to - 1) as usize;
            self.nodes[i].raft.step(message).expect("well-formed");
            self.drive(i);
        }
    }

    /// Proposes `ENTRIES_PER_RUN` entries in batches of `batch` and runs until the leader applied them all.
    fn commit_entries(&mut self, batch: u64) {
        let payload = Bytes::from(vec![7u8; 64]);
        let target = self.nodes[0].applied + ENTRIES_PER_RUN;
        let mut proposed = 0;
        while self.nodes[0].applied < target {
            for _ in 0..batch.min(ENTRIES_PER_RUN - proposed) {
                self.nodes[0].raft.propose(payload.clone()).expect("leader accepts");
                proposed += 1;
            }
            self.drive(0);
            self.deliver_all();
        }
    }
}

fn committed_entries_per_second(c: &mut Criterion) {
    let mut group = c.benchmark_group("commit_64_byte_entries_3_nodes");
    group.throughput(Throughput::Elements(ENTRIES_PER_RUN));
    group.sample_size(10);
    for batch in [1u64, 64] {
        group.bench_with_input(BenchmarkId::new("batch", batch), &batch, |b, &batch| {
            b.iter_custom(|iterations| {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    let mut cluster = Cluster::new();
                    let start = Instant::now();
                    cluster.commit_entries(batch);
                    total += start.elapsed();
                }
                total
            });
        });
    }
    group.finish();
}

criterion_group!(benches, committed_entries_per_second);
criterion_main!(benches);
