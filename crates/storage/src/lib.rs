//! Durable storage for raftkv: a segmented, checksummed write-ahead log (entries and hard state), snapshot
//! files, and the data directory's lock and identity — all over a small [`Disk`] trait with a real
//! implementation ([`FileDisk`]) and a seeded, crash-simulating one ([`SimDisk`]).
//!
//! These docs are the **on-disk format specification** and the **recovery decision table**. A change to
//! either is a format change: bump the version it concerns.
//!
//! # Using it
//!
//! ```
//! use raft::{Configuration, Entry, EntryPayload, HardState};
//! use storage::{SimDisk, Storage, StorageOptions};
//!
//! let disk = SimDisk::new(7);
//! let (mut storage, state) = Storage::open(disk.clone(), StorageOptions::new(42, 1)).unwrap();
//! assert!(state.is_none()); // an empty directory is not a member and has never voted
//! storage.bootstrap(Configuration::with_voters([1, 2, 3])).unwrap();
//! let entry = Entry { index: 1, term: 1, payload: EntryPayload::Noop };
//! let hard_state = HardState { term: 1, vote: Some(1), commit: 0 };
//! storage.write(Some(hard_state), &[entry.clone()]).unwrap(); // one write + one fdatasync
//! drop(storage);
//!
//! disk.crash(); // everything `write` returned Ok for survives
//! let (_storage, state) = Storage::open(disk, StorageOptions::new(42, 1)).unwrap();
//! let state = state.unwrap();
//! assert_eq!(state.hard_state, hard_state);
//! assert_eq!(state.entries, vec![entry]);
//! ```
//!
//! # Durability contract
//!
//! - [`Storage::write`] returns `Ok` only after its record and everything before it are durable (one
//!   `fdatasync`, plus a directory fsync when the record started a new segment). Only then may the caller
//!   send a message that depends on it (a vote, an append acknowledgement).
//! - A failed fsync or a failed write **poisons** the storage: every later call returns
//!   [`Error::Poisoned`]. It never retries an fsync: after a failed fsync Linux may have dropped the dirty
//!   pages and marked them clean, so a retry could "succeed" without the data. The node must stop; on
//!   restart, recovery reads what is really on disk.
//! - A full disk (ENOSPC) cuts the partial record away (truncate + fsync) and then refuses every write with
//!   [`Error::DiskFull`] until the process restarts. If the cut itself fails, the storage is poisoned.
//! - `LOCK` is `flock`ed for as long as the [`Storage`] lives, so two processes never open one directory.
//!
//! # Files in the data directory
//!
//! | name | what |
//! |---|---|
//! | `LOCK` | empty; `flock`ed by the owner |
//! | `IDENTITY` | cluster id and node id, written last by bootstrap (temp file, fsync, rename, dir fsync) |
//! | `IDENTITY.tmp`, `snap-*.tmp` | an interrupted atomic write, or a snapshot being received (`snap-<index>-<term>.recv.tmp`); removed at open |
//! | `wal-<seq>.log` | a WAL segment; `<seq>` is 16 lowercase hex digits, from 1, consecutive |
//! | `snap-<index>-<term>.snap` | a snapshot; index and term as 16 lowercase hex digits |
//!
//! Any other file is a [`Error::ForeignFile`] (directories are ignored). All integers are little-endian.
//! CRC32C is the Castagnoli CRC (crate `crc32c`), initial value 0.
//!
//! ## `IDENTITY` (32 bytes)
//!
//! `magic "RAFTKVID"` (8) · `version u32 = 1` · `cluster_id u64` · `node_id u64` ·
//! `crc32c u32` of the preceding 28 bytes.
//!
//! ## WAL segment
//!
//! A 64-byte header, then records back to back.
//!
//! | offset | field | meaning |
//! |---|---|---|
//! | 0 | `magic [8] = "RAFTKVWL"` | |
//! | 8 | `version u32 = 1` | the WAL format version |
//! | 12 | `flags u32 = 0` | none defined |
//! | 16 | `seq u64` | must equal the number in the file name |
//! | 24 | `start_last_index u64` | the log's last index when this segment was opened |
//! | 32 | `term u64`, `vote u64` (0 = none), `commit u64` | the hard state when this segment was opened |
//! | 56 | `crc32c u32` | of bytes 0..56 |
//! | 60 | `u32 = 0` | padding |
//!
//! The header makes every segment self-contained: whole segments before a snapshot can be deleted
//! without losing the hard state, and replay can check that each segment starts exactly where the one
//! before it ended.
//!
//! A **record** is one batch: everything one [`Storage::write`] call made durable. It is the unit of
//! atomicity; a torn record is dropped whole.
//!
//! | field | meaning |
//! |---|---|
//! | `length u32` | bytes in the body (at least 21, at most 2^30) |
//! | `crc32c u32` | of the body |
//! | body: `type u8 = 1` | a batch (no other record type is defined) |
//! | body: `self_offset u64` | the offset of this record's first byte in this segment |
//! | body: `synced_offset u64` | every byte of this segment before this offset was covered by an `fdatasync` that had returned when this record was written (0 for the first record of a segment) |
//! | body: `item_count u32` | then that many items |
//!
//! Today each write waits for its fsync, so `synced_offset == self_offset` except in a segment's first
//! record; the field is what makes recovery decidable (below) and leaves room for pipelined writes.
//!
//! **Items**, applied in order on replay (a writer puts the truncation first and the hard state last):
//!
//! | type | fields | replay |
//! |---|---|---|
//! | 1 truncate | `after u64` | the log now ends at `after`: later entries are discarded; if the log held no entry `after` (an installed snapshot lies beyond it), the log is emptied and continues after `after`. A record may hold two: `after 0` then `after S` empties the log whatever it held and continues it after snapshot `S` |
//! | 2 entry | `index u64`, `term u64`, `kind u8`, payload | index must be last + 1; terms never decrease |
//! | 3 hard state | `term u64`, `vote u64` (0 = none), `commit u64` | term never decreases (the vote rule of §5.2 is the consensus core's to keep; the simulator checks it) |
//! | 4 seal | `next_seq u64` | alone in its record, and the segment's last record: segment `next_seq` (= this one's + 1) must exist |
//!
//! **Rolling over** happens only between batches, when the open segment has reached `segment_bytes` (or
//! a roll was requested): create `wal-<seq+1>.log`, write its header and the batch's record in one write,
//! `fdatasync` it, fsync the directory, then append a seal record to the old segment and `fdatasync` it.
//! The seal comes last so that it proves the new segment (header, first record, directory entry) was
//! durable: a seal torn by a crash is harmless, and a seal naming a missing segment is corruption.
//!
//! Entry payloads: kind 0 = no-op (nothing follows); kind 1 = command: `len u32` then `len` bytes; kind 2 =
//! configuration: three node-id sets — voters, outgoing voters, learners — each `count u32` then `count`
//! distinct `u64` ids in increasing order.
//!
//! ## Snapshot file
//!
//! `magic "RAFTKVSN"` (8) · `version u32 = 1` · `meta_len u32` · meta (`index u64`, `term u64`,
//! configuration encoded as above) · `crc32c u32` of everything before it · the data (opaque to this crate)
//! · trailer: `data_len u64` · `crc32c u32` of the data · `"SEND"`. Written as `snap-…tmp`, fsynced,
//! renamed, directory fsynced. Bootstrap writes the index-0 snapshot holding the initial configuration.
//! A backup (`raftkv backup`) is one such file, streamed by [`SnapshotEncoder`]; seeding a new member
//! from it ([`Storage::seed_from_snapshot`], `raftkv restore`) writes the backup's data under the new
//! configuration's metadata, then a first segment whose header has `start_last_index` = the snapshot's
//! index and hard state `(snapshot term, no vote, commit = snapshot index)`, then `IDENTITY`.
//!
//! # Recovery decision table
//!
//! [`Storage::open`] goes through these cases in order. "Error" means the node does not start; the error
//! names the file, the offset and what was expected there. Nothing on disk can make recovery panic.
//!
//! | # | what is found | decision |
//! |---|---|---|
//! | 1 | `LOCK` held by someone else | error [`Error::Locked`] |
//! | 2 | a file name not in the table above | error [`Error::ForeignFile`] |
//! | 3 | no `IDENTITY`, and nothing else but an index-0 snapshot and a header-only `wal-…0001.log` (an interrupted bootstrap) | **not bootstrapped**: `open` returns no state; this node is not a member and never voted |
//! | 4 | no `IDENTITY`, but log data (more segments, records, later snapshots) | error: the identity file was lost; refusing to guess whose data this is |
//! | 5 | `IDENTITY` damaged, of unknown version, or of another cluster/node | error (`Corrupt`, `UnknownVersion`, `IdentityMismatch`) |
//! | 6 | `*.tmp` files | removed: an atomic write that never completed |
//! | 7 | the newest snapshot is damaged | logged loudly; the next older valid one is used (row 17 then proves the log still covers the gap); none valid → error |
//! | 8 | a snapshot of unknown version, or whose name and metadata disagree | error |
//! | 9 | no segment | error |
//! | 10 | segment numbers with a gap | error naming the missing segment |
//! | 11 | a segment header with wrong magic (not all zeros) | error [`Error::ForeignFile`] |
//! | 12 | a header with a valid checksum and an unknown version; a `seq` that disagrees with the name | error |
//! | 13 | a header that is short, zero or fails its checksum, in the **newest** segment (not the first), with no record in it declaring the header synced and **no seal** in the previous segment | the crash hit while the segment was being created: the file is removed (nothing in it was acknowledged) |
//! | 14 | any other bad header | error |
//! | 15 | a segment whose header disagrees with the state the previous segment ended in (last index, hard state) | error: records are missing (e.g. a closed segment cut at a record boundary); if the previous segment had a damaged tail (row 20), the error names that tail's file and offset |
//! | 16 | a seal naming another segment than the next; any byte after a seal | error |
//! | 17 | after replay, the log starts after the snapshot index | error: a segment with the entries in between is missing |
//! | 18 | a record that fails its frame or checksum at offset X, and a later valid record in the same segment has `synced_offset > X` | error: acknowledged data is damaged (corruption, not a torn write) |
//! | 19 | as 18, but no later valid record declares X synced, in the **newest** segment | **torn write**: the file is cut at X, every record before X is kept, and a warning names the file, offset and bytes cut |
//! | 20 | as 19, but in a **closed** segment | the only record written to a closed segment after the next one existed is its seal, so this is a seal torn by a crash: cut as in 19, and row 15 at the next header proves that no acknowledged record was lost |
//! | 21 | a record with a valid checksum but an unknown record or item type, a wrong `self_offset`, an index gap or overlap, a term that goes backwards, trailing bytes | error |
//! | 22 | the newest segment ends in a seal | error: the segment it names was made durable and is now missing (deleted) |
//! | 23 | the newest segment ends cleanly at a record boundary | clean end; it is fsynced (its bytes may have been in a dead process's page cache) and appending continues there |
//! | 24 | the log holds an entry at the newest snapshot's index with another term (a crash between publishing an installed snapshot and discarding the log it conflicted with, §7) | the log after the snapshot is discarded, durably, with a warning; entries after the snapshot are kept only if the log holds the snapshot's entry with its term, or starts right after it |
//!
//! ## The case that cannot be told apart
//!
//! A bit flipped (or a sector lost) in the **last** record of the newest segment, after it was synced and
//! acknowledged, looks exactly like a torn write: no later record exists to declare it synced. Row 19 then
//! cuts it off, so the node forgets its last batch (and logs loudly that it did). The window is short: the
//! next write's record declares the batch synced and turns the same damage into a detected error.
//!
//! Raft's replication repairs this in the normal course of events. The node restarts as a follower whose
//! log is a prefix of what it acknowledged, exactly like a follower that never received the last
//! AppendEntries; the leader's consistency check (§5.3) finds where the logs diverge and re-sends the rest,
//! and every other copy of those entries is untouched. An entry that needed this node's acknowledgement to
//! commit is still on the leader and on the rest of that majority, and as long as one of them takes part in
//! the next election, the election restriction (§5.4.1) keeps a leader without it from winning, so the
//! entry comes back to this node.
//!
//! The residue, stated plainly: the damage is silent for one node, so it behaves as a lost acknowledgement.
//! If this node's copy was needed for the majority, and the other holders become unavailable before the
//! leader re-sends the batch, a leader lacking the entry could be elected by servers that include this
//! one; and if that last batch recorded a **vote**, the node may vote again in the same term. Both need
//! the flip to hit exactly the latest record in the short window before the next write declares it synced,
//! plus a second fault; we accept that rather than keep a second copy of every batch (as TigerBeetle does
//! with redundant headers), and log every cut tail loudly so an operator can see it happened.
//!
//! Also indistinguishable from "never written": a newest segment deleted by hand in the short window
//! between its creation and the seal that follows it in the previous segment (row 13). Every other
//! deletion — a middle, first or newest segment, a closed segment cut short at any offset — is caught by
//! rows 10, 15, 17 and 22.

pub mod bench;
mod codec;
mod disk;
mod error;
mod sim;
mod snapshot;
mod storage;
mod wal;

pub use disk::{Disk, DiskFile, DiskLock, FileDisk};
pub use error::{Error, Identity, Result};
pub use sim::{CrashModel, SimDisk, SIM_PAGE_BYTES, SIM_SECTOR_BYTES};
pub use snapshot::{FinishedSnapshot, ReceivingSnapshot, SnapshotEncoder, SnapshotReader, SnapshotWriter};
pub use storage::{InitialState, Storage, StorageOptions, DEFAULT_SEGMENT_BYTES, IDENTITY_FILE, LOCK_FILE};
