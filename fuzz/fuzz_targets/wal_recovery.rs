//! WAL recovery (`storage::Storage::open`) on arbitrary segment files, through the simulated disk.
//!
//! Input: one flag byte (bit 0: recompute every header and record CRC first, so the fuzzer reaches the
//! record decoder and the recovery decision table behind the checksums; bit 1: remove `IDENTITY`, the
//! "interrupted bootstrap" rows), then segment files back to back: a new segment `wal-…N.log` starts at
//! each occurrence of the segment magic `RAFTKVWL`. They replace the first segment of a freshly
//! bootstrapped directory (its index-0 snapshot and identity stay).
//!
//! Any outcome but a panic, a hang or an unbounded allocation is fine. And when recovery accepts the
//! files, the storage must be usable as recovered: one more entry is written, and reopening gives back
//! exactly what was recovered plus that entry (the durability contract).

#![no_main]

use libfuzzer_sys::fuzz_target;
use raft::{Entry, EntryPayload, HardState};
use raftkv_fuzz::{bootstrapped_disk, fix_segment_checksums, options, segment_name, split_segments};
use storage::{Storage, IDENTITY_FILE};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, files)) = data.split_first() else { return };
    let disk = bootstrapped_disk();
    disk.delete_file(&segment_name(1));
    if flags & 2 == 2 {
        disk.delete_file(IDENTITY_FILE);
    }
    for (at, mut segment) in split_segments(files).into_iter().enumerate() {
        if flags & 1 == 1 {
            fix_segment_checksums(&mut segment);
        }
        disk.put_file(&segment_name(at as u64 + 1), &segment);
    }

    let Ok((mut storage, Some(state))) = Storage::open(disk.clone(), options()) else { return };
    // Recovery accepted the files: append after what it recovered, in a term no older than anything
    // in it, as a follower would.
    let last_term = state.entries.last().map_or(state.snapshot.term, |entry| entry.term);
    let term = state.hard_state.term.max(last_term);
    let entry = Entry { index: storage.last_index() + 1, term, payload: EntryPayload::Noop };
    let hard_state = HardState { term, ..state.hard_state };
    if storage.write(Some(hard_state), std::slice::from_ref(&entry)).is_err() {
        return;
    }
    drop(storage);
    let (_, reopened) = Storage::open(disk, options()).expect("a directory this process just wrote reopens");
    let reopened = reopened.expect("still bootstrapped");
    let mut expected = state.entries;
    expected.push(entry);
    assert_eq!(reopened.entries, expected, "reopening lost or changed entries");
    assert_eq!(reopened.hard_state, hard_state, "reopening changed the hard state");
});
