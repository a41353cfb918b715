//! Helpers shared by the storage tests.
#![allow(dead_code)]

use bytes::Bytes;
use raft::{Configuration, Entry, EntryPayload, HardState};
use storage::{Disk, InitialState, Storage, StorageOptions};

pub const CLUSTER: u64 = 0xC1;
pub const NODE: u64 = 1;

pub fn options(segment_bytes: u64) -> StorageOptions {
    StorageOptions { segment_bytes, ..StorageOptions::new(CLUSTER, NODE) }
}

/// An entry whose payload says where it came from, so a resurrected or invented entry is recognisable.
pub fn entry(index: u64, term: u64) -> Entry {
    let payload = match index % 7 {
        0 => EntryPayload::Noop,
        3 => EntryPayload::Config(Configuration::with_voters([1, 2, index % 5 + 3])),
        _ => EntryPayload::Command(Bytes::from(format!(
            "cmd i{index} t{term} {}",
            "x".repeat((index % 13) as usize)
        ))),
    };
    Entry { index, term, payload }
}

pub fn entries(range: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry> {
    range.map(|i| entry(i, term)).collect()
}

pub fn hard_state(term: u64, vote: Option<u64>, commit: u64) -> HardState {
    HardState { term, vote, commit }
}

/// Opens and bootstraps a fresh directory.
pub fn bootstrap<D: Disk>(disk: D, segment_bytes: u64) -> Storage<D> {
    let (mut storage, state) = Storage::open(disk, options(segment_bytes)).expect("open a fresh directory");
    assert!(state.is_none(), "a fresh directory is not bootstrapped");
    storage.bootstrap(Configuration::with_voters([1, 2, 3])).expect("bootstrap");
    storage
}

pub fn reopen<D: Disk>(disk: D, segment_bytes: u64) -> (Storage<D>, InitialState) {
    let (storage, state) = Storage::open(disk, options(segment_bytes)).expect("reopen");
    (storage, state.expect("bootstrapped"))
}
