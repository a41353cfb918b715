//! Basic round trips on the simulated disk and on real files in a temporary directory.

mod common;

use common::*;
use raft::Configuration;
use storage::{Error, FileDisk, SimDisk, Storage, StorageOptions};

#[test]
fn empty_directory_is_not_bootstrapped_and_write_is_refused() {
    let disk = SimDisk::new(1);
    let (mut storage, state) = Storage::open(disk.clone(), options(4096)).unwrap();
    assert!(state.is_none());
    assert!(!storage.is_bootstrapped());
    assert!(matches!(storage.write(Some(hard_state(1, Some(1), 0)), &[]), Err(Error::NotBootstrapped)));
    drop(storage);
    // Still not bootstrapped after a reopen: open itself writes nothing that makes a member.
    let (_storage, state) = Storage::open(disk, options(4096)).unwrap();
    assert!(state.is_none());
}

#[test]
fn bootstrap_records_the_configuration_and_refuses_twice() {
    let disk = SimDisk::new(2);
    let mut storage = bootstrap(disk.clone(), 4096);
    assert!(matches!(storage.bootstrap(Configuration::with_voters([1])), Err(Error::AlreadyBootstrapped)));
    drop(storage);
    let (_storage, state) = reopen(disk, 4096);
    assert_eq!(state.snapshot.index, 0);
    assert_eq!(state.snapshot.configuration, Configuration::with_voters([1, 2, 3]));
    assert_eq!(state.hard_state, Default::default());
    assert!(state.entries.is_empty());
}

#[test]
fn entries_hard_state_truncation_and_rolls_survive_reopen() {
    let disk = SimDisk::new(3);
    let mut storage = bootstrap(disk.clone(), 1024);
    storage.write(Some(hard_state(1, Some(1), 0)), &entries(1..=10, 1)).unwrap();
    storage.write(Some(hard_state(2, Some(2), 5)), &entries(11..=30, 2)).unwrap();
    // A follower's conflicting suffix: 21..=30 of term 2 are replaced by term 3 entries.
    storage.write(Some(hard_state(3, None, 8)), &entries(21..=25, 3)).unwrap();
    storage.roll_segment();
    storage.write(None, &entries(26..=40, 3)).unwrap();
    assert!(storage.segment_count() >= 3, "small segments roll: {}", storage.segment_count());
    assert_eq!(storage.last_index(), 40);
    drop(storage);
    disk.crash();
    let (storage, state) = reopen(disk, 1024);
    let mut expected = entries(1..=10, 1);
    expected.extend(entries(11..=20, 2));
    expected.extend(entries(21..=40, 3));
    assert_eq!(state.entries, expected);
    assert_eq!(state.hard_state, hard_state(3, None, 8));
    assert_eq!(storage.last_index(), 40);
}

#[test]
fn real_files_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let disk = FileDisk::new(dir.path().join("node1")).unwrap();
    let mut storage = bootstrap(disk.clone(), 4096);
    storage.write(Some(hard_state(1, Some(1), 0)), &entries(1..=100, 1)).unwrap();
    storage.write(Some(hard_state(1, Some(1), 90)), &entries(50..=60, 1)).unwrap();
    drop(storage);
    let (_storage, state) = reopen(disk, 4096);
    assert_eq!(state.entries, entries(1..=60, 1));
    assert_eq!(state.hard_state, hard_state(1, Some(1), 90));
}

#[test]
fn lock_refuses_a_second_opener() {
    let dir = tempfile::tempdir().unwrap();
    let disk = FileDisk::new(dir.path()).unwrap();
    let (_first, _) = Storage::open(disk.clone(), options(4096)).unwrap();
    let second = Storage::open(disk.clone(), options(4096));
    assert!(matches!(second, Err(Error::Locked { .. })), "{second:?}");
    drop(_first);
    Storage::open(disk, options(4096)).expect("the lock is released when the storage is dropped");
}

#[test]
fn lock_refuses_a_second_opener_on_the_simulated_disk() {
    let disk = SimDisk::new(4);
    let (_first, _) = Storage::open(disk.clone(), options(4096)).unwrap();
    assert!(matches!(Storage::open(disk.clone(), options(4096)), Err(Error::Locked { .. })));
    disk.crash(); // the process died: its lock went with it
    Storage::open(disk, options(4096)).expect("a crash releases the lock");
}

#[test]
fn identity_mismatch_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let disk = FileDisk::new(dir.path()).unwrap();
    drop(bootstrap(disk.clone(), 4096));
    let wrong_node = Storage::open(disk.clone(), StorageOptions::new(CLUSTER, 2));
    assert!(matches!(wrong_node, Err(Error::IdentityMismatch { .. })), "{wrong_node:?}");
    let wrong_cluster = Storage::open(disk.clone(), StorageOptions::new(CLUSTER + 1, NODE));
    let message = wrong_cluster.unwrap_err().to_string();
    assert!(message.contains("belongs to cluster"), "{message}");
    reopen(disk, 4096);
}

#[test]
fn snapshot_round_trip_and_compaction() {
    use std::io::{Read, Write};
    let disk = SimDisk::new(5);
    let mut storage = bootstrap(disk.clone(), 512);
    for batch in 0..20u64 {
        storage
            .write(Some(hard_state(1, Some(1), batch * 5)), &entries(batch * 5 + 1..=batch * 5 + 5, 1))
            .unwrap();
    }
    let segments_before = storage.segment_count();
    let meta =
        raft::SnapshotMeta { index: 60, term: 1, configuration: Configuration::with_voters([1, 2, 3]) };
    let mut writer = storage.begin_snapshot(meta.clone()).unwrap();
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    for chunk in data.chunks(10_000) {
        writer.write_all(chunk).unwrap();
    }
    storage.publish_snapshot(writer.finish().unwrap()).unwrap();
    let removed = storage.compact().unwrap();
    assert!(removed > 0 && storage.segment_count() < segments_before, "{removed} of {segments_before}");
    assert_eq!(storage.remove_old_snapshots().unwrap(), 1);
    let mut read_back = Vec::new();
    storage.open_snapshot().unwrap().read_to_end(&mut read_back).unwrap();
    assert_eq!(read_back, data);
    drop(storage);
    disk.crash();
    let (storage, state) = reopen(disk, 512);
    assert_eq!(state.snapshot, meta);
    assert_eq!(state.entries, entries(61..=100, 1));
    assert_eq!(state.hard_state, hard_state(1, Some(1), 95));
    let mut read_back = Vec::new();
    storage.open_snapshot().unwrap().read_to_end(&mut read_back).unwrap();
    assert_eq!(read_back, data);
}

#[test]
fn entries_after_an_installed_snapshot_beyond_the_log() {
    let disk = SimDisk::new(6);
    let mut storage = bootstrap(disk.clone(), 4096);
    storage.write(Some(hard_state(1, Some(2), 3)), &entries(1..=5, 1)).unwrap();
    let meta =
        raft::SnapshotMeta { index: 50, term: 4, configuration: Configuration::with_voters([1, 2, 3]) };
    let writer = storage.begin_snapshot(meta.clone()).unwrap();
    storage.publish_snapshot(writer.finish().unwrap()).unwrap();
    assert_eq!(storage.last_index(), 50);
    storage.write(Some(hard_state(4, None, 50)), &entries(51..=55, 4)).unwrap();
    drop(storage);
    let (_storage, state) = reopen(disk, 4096);
    assert_eq!(state.snapshot, meta);
    assert_eq!(state.entries, entries(51..=55, 4));
}
