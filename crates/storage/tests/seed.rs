//! Seeding a new cluster member from a backup (`raftkv restore`): the backup is a snapshot file made by
//! `SnapshotEncoder`; `Storage::seed_from_snapshot` writes its data under the new configuration, and the
//! directory then opens as a member whose log continues after the snapshot.

mod common;

use std::io::{Read, Write};

use common::*;
use raft::{Configuration, SnapshotMeta};
use storage::{Error, FileDisk, SimDisk, SnapshotEncoder, SnapshotReader, Storage};

fn backup_bytes(meta: &SnapshotMeta, data: &[u8]) -> Vec<u8> {
    let mut encoder = SnapshotEncoder::new(meta, Vec::new()).unwrap();
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("raftkv-storage-seed-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn an_encoded_backup_reads_back_with_its_metadata_and_data() {
    let dir = temp_dir("encode");
    let meta = SnapshotMeta { index: 40, term: 3, configuration: Configuration::with_voters([1, 2, 3]) };
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let path = dir.join("backup.snap");
    std::fs::write(&path, backup_bytes(&meta, &data)).unwrap();

    let mut reader = SnapshotReader::open_path(&path).unwrap();
    assert_eq!(reader.meta(), &meta);
    assert_eq!(reader.data_bytes(), data.len() as u64);
    let mut read_back = Vec::new();
    reader.read_to_end(&mut read_back).unwrap();
    assert_eq!(read_back, data);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_backup_damaged_by_one_byte_fails_verification_naming_the_file() {
    let dir = temp_dir("damaged");
    let meta = SnapshotMeta { index: 40, term: 3, configuration: Configuration::with_voters([1]) };
    let mut bytes = backup_bytes(&meta, &[7u8; 5000]);
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    let path = dir.join("backup.snap");
    std::fs::write(&path, bytes).unwrap();
    let error = SnapshotReader::open_path(&path).and_then(SnapshotReader::verify).unwrap_err();
    assert!(matches!(error, Error::Corrupt { .. }), "{error}");
    assert!(error.to_string().contains("backup.snap"), "{error}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_seeded_directory_opens_at_the_snapshot_with_the_new_configuration() {
    let disk = SimDisk::new(11);
    let (mut storage, state) = Storage::open(disk.clone(), options(4096)).unwrap();
    assert!(state.is_none());
    let new_cluster = Configuration::with_voters([1, 2, 3]);
    let meta = SnapshotMeta { index: 500, term: 7, configuration: new_cluster.clone() };
    let seeded = storage.seed_from_snapshot(meta.clone(), |w| w.write_all(b"the state machine")).unwrap();
    assert_eq!(seeded.hard_state, hard_state(7, None, 500));
    // A seeded directory is a member: a second seed or a bootstrap is refused.
    assert!(matches!(storage.bootstrap(new_cluster.clone()), Err(Error::AlreadyBootstrapped)));
    // The log continues after the snapshot.
    storage.write(Some(hard_state(8, Some(1), 500)), &entries(501..=503, 8)).unwrap();
    drop(storage);

    disk.crash();
    let (storage, state) = reopen(disk, 4096);
    assert_eq!(state.snapshot, meta);
    assert_eq!(state.hard_state, hard_state(8, Some(1), 500));
    assert_eq!(state.entries, entries(501..=503, 8));
    let mut data = Vec::new();
    storage.open_snapshot().unwrap().read_to_end(&mut data).unwrap();
    assert_eq!(data, b"the state machine");
}

#[test]
fn seeding_refuses_a_directory_that_holds_a_member() {
    let dir = temp_dir("refuse");
    let mut storage = bootstrap(FileDisk::new(&dir).unwrap(), 4096);
    let meta = SnapshotMeta { index: 9, term: 2, configuration: Configuration::with_voters([1]) };
    let refused = storage.seed_from_snapshot(meta, |w| w.write_all(b"x"));
    assert!(matches!(refused, Err(Error::AlreadyBootstrapped)));
    drop(storage);
    std::fs::remove_dir_all(&dir).unwrap();
}
