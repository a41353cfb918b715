//! The state machine's costs on a 100,000-key data set (16-byte keys, 100-byte values): applying SET
//! through the log, answering GET, applying while snapshot views are being taken, taking a frozen view,
//! writing a whole snapshot and restoring one. The `map` group compares the persistent map the store
//! uses (`imbl::OrdMap`) with `std::collections::BTreeMap` on the same keys, to show what O(1) views
//! cost per operation.
//!
//! Run: `cargo bench -p kv -- --warm-up-time 1 --measurement-time 3`

use std::collections::BTreeMap;
use std::hint::black_box;
use std::io;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kv::{Command, KvConfig, KvStateMachine, Request, SetCondition, SetExpiry};

const KEYS: usize = 100_000;
const VALUE_BYTES: usize = 100;
/// One leader time for every entry, so nothing expires and the data set stays the same size.
const LEADER_TIME_MS: u64 = 1_700_000_000_000;
/// How often the `set_while_taking_views` bench takes a new view (a snapshot every N applies is far
/// more often than any real threshold; it bounds the copy-on-write cost from above).
const APPLIES_PER_VIEW: u64 = 1_000;

fn key(i: usize) -> Bytes {
    Bytes::from(format!("key:{i:012}"))
}

fn value(i: usize) -> Bytes {
    let mut value = format!("value:{i}:").into_bytes();
    value.resize(VALUE_BYTES, b'x');
    Bytes::from(value)
}

fn set_entry(i: usize, round: usize) -> Bytes {
    let command = Command::Set {
        key: key(i),
        value: value(i + round),
        condition: SetCondition::Always,
        get: false,
        expiry: SetExpiry::None,
    };
    Request::command(LEADER_TIME_MS, command).encode()
}

/// A machine holding `KEYS` keys, and the index it applied up to.
fn loaded() -> KvStateMachine {
    let mut machine = KvStateMachine::new(KvConfig::default());
    for i in 0..KEYS {
        machine.apply(i as u64 + 1, &set_entry(i, 0));
    }
    assert_eq!(machine.key_count(), KEYS);
    machine
}

/// Overwrites of existing keys, in a scattered order, already encoded (the bench measures apply, not
/// encoding).
fn overwrite_entries() -> Vec<Bytes> {
    (0..KEYS).map(|n| set_entry(n * 7919 % KEYS, 1)).collect()
}

fn apply(c: &mut Criterion) {
    // Each machine is built, not cloned, and lives across criterion's samples: a clone would share every
    // map node with its original, and every write would then pay for copying its path (that cost is what
    // `set_while_taking_views` measures, on purpose).
    let mut machine = loaded();
    let mut viewed = loaded();
    let entries = overwrite_entries();
    let mut group = c.benchmark_group("apply_100k_keys");
    group.throughput(Throughput::Elements(1));
    group.bench_function("set", |b| {
        let mut n = 0usize;
        b.iter(|| {
            n += 1;
            let index = machine.applied_index() + 1;
            black_box(machine.apply(index, &entries[n % KEYS]))
        })
    });
    group.bench_function("set_while_taking_views", |b| {
        let mut view = viewed.snapshot();
        let mut applies_since_view = 0;
        let mut n = 0usize;
        b.iter(|| {
            n += 1;
            applies_since_view += 1;
            if applies_since_view == APPLIES_PER_VIEW {
                view = viewed.snapshot();
                applies_since_view = 0;
            }
            let index = viewed.applied_index() + 1;
            black_box(viewed.apply(index, &entries[n % KEYS]))
        });
        drop(view);
    });
    group.bench_function("get", |b| {
        let gets: Vec<Command> = (0..KEYS).map(|n| Command::Get { key: key(n * 7919 % KEYS) }).collect();
        let mut n = 0usize;
        b.iter(|| {
            n += 1;
            black_box(machine.read(&gets[n % KEYS], LEADER_TIME_MS))
        })
    });
    group.finish();
}

fn snapshot(c: &mut Criterion) {
    let machine = loaded();
    let bytes = machine.snapshot().to_bytes();
    let mut group = c.benchmark_group("snapshot_100k_keys");
    group.bench_function("frozen_view", |b| b.iter(|| black_box(machine.snapshot())));
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.sample_size(10);
    group.bench_function("write_to_sink", |b| {
        let view = machine.snapshot();
        b.iter(|| view.write_to(io::sink()).unwrap())
    });
    group.bench_function("restore", |b| {
        b.iter(|| black_box(KvStateMachine::restore(KvConfig::default(), bytes.as_slice()).unwrap()))
    });
    group.finish();
    println!("snapshot of {KEYS} keys: {} bytes", bytes.len());
}

fn map(c: &mut Criterion) {
    let keys: Vec<Bytes> = (0..KEYS).map(key).collect();
    // Built, not cloned, and kept across samples (see `apply`).
    let mut persistent: imbl::OrdMap<Bytes, Bytes> = keys.iter().map(|k| (k.clone(), value(0))).collect();
    let mut plain: BTreeMap<Bytes, Bytes> = keys.iter().map(|k| (k.clone(), value(0))).collect();
    let new_value = value(1);
    let mut group = c.benchmark_group("map_100k_keys");
    group.throughput(Throughput::Elements(1));
    group.bench_function("imbl_ordmap_overwrite", |b| {
        let mut n = 0usize;
        b.iter(|| {
            n += 1;
            black_box(persistent.insert(keys[n * 7919 % KEYS].clone(), new_value.clone()))
        })
    });
    group.bench_function("btreemap_overwrite", |b| {
        let mut n = 0usize;
        b.iter(|| {
            n += 1;
            black_box(plain.insert(keys[n * 7919 % KEYS].clone(), new_value.clone()))
        })
    });
    group.bench_function("imbl_ordmap_get", |b| {
        let mut n = 0usize;
        b.iter(|| {
            n += 1;
            black_box(persistent.get(&keys[n * 7919 % KEYS]))
        })
    });
    group.bench_function("btreemap_get", |b| {
        let mut n = 0usize;
        b.iter(|| {
            n += 1;
            black_box(plain.get(&keys[n * 7919 % KEYS]))
        })
    });
    group.finish();
    let mut group = c.benchmark_group("map_100k_keys_clone");
    group.sample_size(10);
    group.bench_function("imbl_ordmap", |b| b.iter(|| black_box(persistent.clone())));
    group.bench_function("btreemap", |b| b.iter(|| black_box(plain.clone())));
    group.finish();
}

criterion_group!(benches, apply, snapshot, map);
criterion_main!(benches);
