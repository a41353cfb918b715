//! The storage crate's snapshot file reader, through `storage::Storage::open` (which picks and
//! verifies the newest snapshot) and `Storage::open_snapshot` (which streams its data and checks its
//! CRC32C at the end), then the data through `kv::KvStateMachine::restore` as a node does on restart.
//!
//! Input: one flag byte (bit 0: recompute the header CRC and the trailer's length and CRC, so the
//! fuzzer reaches the metadata decoder and the state-machine reader behind them; bit 1: also keep the
//! bootstrap's index-0 snapshot, so that a damaged newest snapshot falls back to it), then the
//! snapshot file. It is named after the index and term its metadata claims, as a real one would be.
//!
//! Any outcome but a panic, a hang or an unbounded allocation is fine.

#![no_main]

use std::io::Read;

use libfuzzer_sys::fuzz_target;
use raftkv_fuzz::{bootstrapped_disk, fix_snapshot_checksums, options, snapshot_file_name};
use storage::Storage;

const BOOTSTRAP_SNAPSHOT: &str = "snap-0000000000000000-0000000000000000.snap";

fuzz_target!(|data: &[u8]| {
    let Some((&flags, file)) = data.split_first() else { return };
    let mut file = file.to_vec();
    if flags & 1 == 1 {
        fix_snapshot_checksums(&mut file);
    }
    let disk = bootstrapped_disk();
    if flags & 2 == 0 {
        disk.delete_file(BOOTSTRAP_SNAPSHOT);
    }
    disk.put_file(&snapshot_file_name(&file), &file);

    let Ok((storage, Some(state))) = Storage::open(disk, options()) else { return };
    let Ok(mut reader) = storage.open_snapshot() else { return };
    assert_eq!(reader.meta(), &state.snapshot, "open_snapshot opened another snapshot than recovery chose");
    let declared = reader.data_bytes();
    let mut data = Vec::new();
    if reader.read_to_end(&mut data).is_err() {
        // Recovery verified this snapshot's checksum, and nothing changed it since.
        panic!("a snapshot that recovery verified fails when read");
    }
    assert_eq!(data.len() as u64, declared, "the reader yields another length than it declared");
    let _ = kv::KvStateMachine::restore(kv::KvConfig::default(), &data[..]);
});
