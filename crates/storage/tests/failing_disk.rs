//! A failed fsync stops the node for good; a full disk refuses writes after cutting the partial record.

mod common;

use common::*;
use storage::{Error, SimDisk};

#[test]
fn failed_fsync_poisons_storage_and_is_never_retried() {
    let disk = SimDisk::new(1);
    let mut storage = bootstrap(disk.clone(), 1 << 20);
    storage.write(Some(hard_state(1, Some(1), 0)), &entries(1..=5, 1)).unwrap();
    disk.fail_next_sync();
    let failed = storage.write(None, &entries(6..=10, 1));
    assert!(matches!(failed, Err(Error::Io { op: "fsync", .. })), "{failed:?}");
    let ops = disk.op_count();
    for _ in 0..3 {
        let again = storage.write(None, &entries(6..=6, 1));
        assert!(matches!(again, Err(Error::Poisoned { .. })), "{again:?}");
        assert!(matches!(storage.compact(), Err(Error::Poisoned { .. })));
    }
    assert_eq!(disk.op_count(), ops, "a poisoned storage touches the disk no more");
    drop(storage);
    disk.crash();
    let (_, state) = reopen(disk, 1 << 20);
    assert!(state.entries == entries(1..=5, 1) || state.entries == entries(1..=10, 1), "{:?}", state.entries);
}

#[test]
fn full_disk_cuts_the_partial_record_and_refuses_writes() {
    let disk = SimDisk::new(2);
    let mut storage = bootstrap(disk.clone(), 1 << 20);
    storage.write(Some(hard_state(1, Some(1), 0)), &entries(1..=5, 1)).unwrap();
    let seg = "wal-0000000000000001.log";
    let before = disk.file_contents(seg).unwrap();
    let used: u64 = disk.file_names().iter().map(|n| disk.file_contents(n).unwrap().len() as u64).sum();
    disk.set_capacity_bytes(Some(used + 100));
    let full = storage.write(None, &entries(6..=50, 1));
    assert!(matches!(full, Err(Error::DiskFull { .. })), "{full:?}");
    assert!(full.unwrap_err().to_string().contains("disk full"));
    assert_eq!(disk.file_contents(seg).unwrap(), before, "the partial record is cut away");
    disk.set_capacity_bytes(None);
    assert!(matches!(storage.write(None, &entries(6..=6, 1)), Err(Error::DiskFull { .. })));
    drop(storage);
    disk.crash();
    let (mut storage, state) = reopen(disk, 1 << 20);
    assert_eq!(state.entries, entries(1..=5, 1));
    storage.write(None, &entries(6..=6, 1)).expect("writes work again after a restart with free space");
}

#[test]
fn full_disk_while_rolling_removes_the_new_segment() {
    let disk = SimDisk::new(3);
    let mut storage = bootstrap(disk.clone(), 1 << 20);
    storage.write(Some(hard_state(1, Some(1), 0)), &entries(1..=5, 1)).unwrap();
    storage.roll_segment();
    let used: u64 = disk.file_names().iter().map(|n| disk.file_contents(n).unwrap().len() as u64).sum();
    disk.set_capacity_bytes(Some(used + 30));
    assert!(matches!(storage.write(None, &entries(6..=50, 1)), Err(Error::DiskFull { .. })));
    assert!(!disk.file_names().contains(&"wal-0000000000000002.log".to_string()));
    drop(storage);
    disk.set_capacity_bytes(None);
    let (_, state) = reopen(disk, 1 << 20);
    assert_eq!(state.entries, entries(1..=5, 1));
}
