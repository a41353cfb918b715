//! Installing a leader's snapshot (InstallSnapshot, §7) with the power cut after every disk operation.
//!
//! A follower holds entries 1..=40, of which 31..=40 are from a term the leader never saw; the leader's
//! snapshot at 35@3 therefore conflicts with the follower's entry 35@2. The follower receives the
//! snapshot file in chunks, verifies it, publishes it, discards its log, compacts, and appends 36..=38@3.
//! After a crash at any point, recovery must find the old state (snapshot 0 with the whole old log) or
//! the new snapshot with an empty log (also when the crash fell between publishing and discarding: the
//! log's entry 35 has another term, so recovery drops the log itself — recovery table row 24), or the new
//! snapshot plus the new entries; and the recovered log must keep what is written to it next.

mod common;

use std::io::Write as _;
use std::time::{Duration, Instant};

use common::*;
use raft::{Configuration, SnapshotMeta};
use storage::{InitialState, SimDisk, Storage};

const SEGMENT_BYTES: u64 = 900;
const CHUNK_BYTES: usize = 1_000;

fn leader_snapshot_file() -> Vec<u8> {
    let disk = SimDisk::new(99);
    let mut leader = bootstrap(disk.clone(), SEGMENT_BYTES);
    leader.write(Some(hard_state(3, Some(2), 35)), &entries(1..=35, 3)).unwrap();
    let meta = SnapshotMeta { index: 35, term: 3, configuration: Configuration::with_voters([1, 2, 3]) };
    let mut writer = leader.begin_snapshot(meta).unwrap();
    writer.write_all(&[9u8; 4_321]).unwrap();
    leader.publish_snapshot(writer.finish().unwrap()).unwrap();
    // Read it back the way a leader serves InstallSnapshot: bounded chunks at offsets.
    let mut file = Vec::new();
    loop {
        let (chunk, done) = leader.read_snapshot_chunk(35, 3, file.len() as u64, CHUNK_BYTES).unwrap();
        assert!(chunk.len() <= CHUNK_BYTES);
        file.extend_from_slice(&chunk);
        if done {
            return file;
        }
    }
}

/// The follower before the installation: entries 1..=30@1 and 31..=40@2, over several segments.
fn prepare(disk: &SimDisk) -> Storage<SimDisk> {
    let mut storage = bootstrap(disk.clone(), SEGMENT_BYTES);
    storage.write(Some(hard_state(1, Some(1), 20)), &entries(1..=30, 1)).unwrap();
    storage.write(Some(hard_state(2, Some(2), 30)), &entries(31..=40, 2)).unwrap();
    storage
}

/// The installation and the appends after it; stops at the first error (the power went out).
fn install(storage: &mut Storage<SimDisk>, file: &[u8], discard: bool) -> Result<(), storage::Error> {
    let mut receiving = storage.begin_receiving_snapshot(35, 3)?;
    for (i, chunk) in file.chunks(CHUNK_BYTES).enumerate() {
        receiving.write_at((i * CHUNK_BYTES) as u64, chunk)?;
    }
    let finished = storage.finish_receiving_snapshot(receiving)?;
    storage.publish_snapshot(finished)?;
    if !discard {
        return Ok(()); // "crash" between publishing and discarding
    }
    storage.discard_log_after_snapshot()?;
    storage.compact()?;
    storage.remove_old_snapshots()?;
    storage.write(Some(hard_state(3, None, 35)), &entries(36..=38, 3))
}

fn is_expected(state: &InitialState) -> bool {
    let old =
        state.snapshot.index == 0 && state.entries == [entries(1..=30, 1), entries(31..=40, 2)].concat();
    let installed = state.snapshot.index == 35 && state.snapshot.term == 3;
    old || (installed && (state.entries.is_empty() || state.entries == entries(36..=38, 3)))
}

/// The recovered log takes new entries, and they survive another crash.
fn check_writable(mut storage: Storage<SimDisk>, state: InitialState, disk: &SimDisk, context: &str) {
    let next = storage.last_index() + 1;
    let term = state.hard_state.term.max(3) + 1;
    storage.write(Some(hard_state(term, Some(1), 0)), &entries(next..=next + 2, term)).expect("write");
    drop(storage);
    disk.crash();
    let (_storage, again) = reopen(disk.clone(), SEGMENT_BYTES);
    let mut expected = state.entries.clone();
    expected.extend(entries(next..=next + 2, term));
    assert_eq!(again.snapshot.index, state.snapshot.index, "{context}: second recovery");
    assert_eq!(again.entries, expected, "{context}: second recovery");
}

#[test]
fn a_crash_between_publishing_a_snapshot_and_discarding_the_log_drops_the_conflicting_log() {
    let file = leader_snapshot_file();
    let disk = SimDisk::new(1);
    let mut storage = prepare(&disk);
    install(&mut storage, &file, false).unwrap();
    drop(storage);
    disk.crash();
    let (storage, state) = reopen(disk.clone(), SEGMENT_BYTES);
    assert_eq!((state.snapshot.index, state.snapshot.term), (35, 3));
    assert!(state.entries.is_empty(), "entry 35@2 conflicts with snapshot 35@3: {:?}", state.entries);
    check_writable(storage, state, &disk, "crash between publish and discard");
}

#[test]
fn entries_after_a_snapshot_whose_entry_the_log_holds_are_kept() {
    let file = leader_snapshot_file();
    let disk = SimDisk::new(2);
    let mut storage = bootstrap(disk.clone(), SEGMENT_BYTES);
    storage.write(Some(hard_state(3, Some(2), 20)), &entries(1..=40, 3)).unwrap();
    install(&mut storage, &file, false).unwrap();
    drop(storage);
    disk.crash();
    let (_storage, state) = reopen(disk, SEGMENT_BYTES);
    assert_eq!(state.snapshot.index, 35);
    assert_eq!(state.entries, entries(36..=40, 3), "the log matches at 35@3 (§7): keep what follows");
}

#[test]
fn a_damaged_received_snapshot_is_refused_and_removed() {
    let mut file = leader_snapshot_file();
    let middle = file.len() / 2;
    file[middle] ^= 0x40;
    let disk = SimDisk::new(3);
    let mut storage = prepare(&disk);
    let error = install(&mut storage, &file, true).unwrap_err();
    assert!(matches!(error, storage::Error::Corrupt { .. }), "{error}");
    assert!(disk.file_names().iter().all(|n| !n.ends_with(".tmp")), "{:?}", disk.file_names());
    assert_eq!(storage.snapshot_meta().index, 0);
}

#[test]
fn crash_after_every_disk_operation_of_an_installation_recovers_a_consistent_state() {
    let file = leader_snapshot_file();
    let total_ops = {
        let disk = SimDisk::new(0);
        let mut storage = prepare(&disk);
        let before = disk.op_count();
        install(&mut storage, &file, true).unwrap();
        (before, disk.op_count())
    };
    let started = Instant::now();
    let mut outcomes = [0usize; 2];
    for crash_at in total_ops.0..=total_ops.1 {
        for seed in 0..8u64 {
            assert!(started.elapsed() < Duration::from_secs(60), "time bound");
            let disk = SimDisk::new(seed * 1_000 + crash_at);
            let mut storage = prepare(&disk);
            disk.crash_after_ops(Some(crash_at));
            let _ = install(&mut storage, &file, true);
            drop(storage);
            disk.crash();
            let context = format!("crash after disk op {crash_at} (seed {seed})");
            let (storage, state) = Storage::open(disk.clone(), options(SEGMENT_BYTES))
                .unwrap_or_else(|e| panic!("{context}: recovery failed: {e}"));
            let state = state.expect("bootstrapped");
            assert!(is_expected(&state), "{context}: recovered {state:#?}");
            outcomes[usize::from(state.snapshot.index == 35)] += 1;
            check_writable(storage, state, &disk, &context);
        }
    }
    assert!(outcomes[0] > 0 && outcomes[1] > 0, "both the old and the new state occur: {outcomes:?}");
}
