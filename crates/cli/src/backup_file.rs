//! A backup file as `raftkv backup` writes it and `raftkv restore` reads it: one snapshot file in the
//! storage crate's format (header with index, term and configuration; the state machine's snapshot; a
//! trailer with its CRC32C). Checking one means both layers: storage's reader checks the header, the
//! trailer and the data's checksum, and kv's strict reader checks that the data is a well-formed state
//! machine at exactly the header's index.

use std::path::Path;

use kv::{KvConfig, KvStateMachine};
use raft::SnapshotMeta;
use storage::SnapshotReader;

/// A backup whose every byte was checked, loaded into memory.
pub struct VerifiedBackup {
    pub meta: SnapshotMeta,
    pub machine: KvStateMachine,
    /// The data's CRC32C as the trailer records it (and as it was checked).
    pub data_crc32c: u32,
}

/// Reads `path` to its end through both checks.
pub fn verify(path: &Path) -> Result<VerifiedBackup, String> {
    // First the checksums (header, trailer, every data byte), for a message that says what is damaged;
    // then the state machine's strict reader over the same bytes.
    let meta = SnapshotReader::open_path(path).and_then(SnapshotReader::verify).map_err(|e| e.to_string())?;
    let reader = SnapshotReader::open_path(path).map_err(|e| e.to_string())?;
    let data_crc32c = reader.data_crc32c();
    let machine = KvStateMachine::restore(KvConfig::default(), reader)
        .map_err(|e| format!("{}: not a valid backup: {e}", path.display()))?;
    if machine.applied_index() != meta.index {
        return Err(format!(
            "{}: the header says index {} but the data is a state at index {}",
            path.display(),
            meta.index,
            machine.applied_index()
        ));
    }
    if meta.index == 0 {
        return Err(format!("{}: a snapshot at index 0 holds no data to back up or restore", path.display()));
    }
    Ok(VerifiedBackup { meta, machine, data_crc32c })
}

/// The members of a snapshot's configuration, for messages.
pub fn describe_members(meta: &SnapshotMeta) -> String {
    let ids: Vec<String> = meta.configuration.members().into_iter().map(|id| id.to_string()).collect();
    ids.join(", ")
}
