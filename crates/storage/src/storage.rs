//! [`Storage`]: one node's data directory — lock, identity, bootstrap, the WAL and snapshot files.

use std::io;

use raft::{Configuration, Entry, HardState, Index, NodeId, SnapshotMeta};

use crate::codec::{Decoder, Encoder};
use crate::disk::{Disk, DiskLock};
use crate::error::{Error, Identity, Result};
use crate::snapshot::{
    parse_snapshot_name, snapshot_name, FinishedSnapshot, ReceivingSnapshot, SnapshotReader, SnapshotWriter,
};
use crate::wal::{parse_segment_name, segment_name, Wal, SEGMENT_HEADER_BYTES};

/// The lock file. `flock`ed while a process has the directory open.
pub const LOCK_FILE: &str = "LOCK";
/// The identity file: which cluster and node this directory belongs to.
pub const IDENTITY_FILE: &str = "IDENTITY";
const IDENTITY_TEMP_FILE: &str = "IDENTITY.tmp";
const IDENTITY_MAGIC: [u8; 8] = *b"RAFTKVID";
const IDENTITY_VERSION: u32 = 1;
const IDENTITY_BYTES: usize = 32;
/// Segments roll over once they reach this size unless configured otherwise.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;

/// How to open a data directory.
#[derive(Clone, Debug)]
pub struct StorageOptions {
    /// The cluster this node belongs to; recorded at bootstrap and checked at every open.
    pub cluster_id: u64,
    /// This node's id (never 0); recorded at bootstrap and checked at every open.
    pub node_id: NodeId,
    /// A segment is closed and a new one started before the first batch that finds it this large.
    pub segment_bytes: u64,
}

impl StorageOptions {
    pub fn new(cluster_id: u64, node_id: NodeId) -> StorageOptions {
        StorageOptions { cluster_id, node_id, segment_bytes: DEFAULT_SEGMENT_BYTES }
    }
}

/// What the consensus core is constructed from after a restart.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct InitialState {
    /// Term, vote and commit index as last made durable.
    pub hard_state: HardState,
    /// The newest valid snapshot (index 0 = none beyond the bootstrap configuration).
    pub snapshot: SnapshotMeta,
    /// Every log entry after `snapshot.index`, contiguous.
    pub entries: Vec<Entry>,
}

/// One node's durable state over a [`Disk`]. See the crate docs for the format and recovery rules.
pub struct Storage<D: Disk> {
    disk: D,
    _lock: DiskLock,
    options: StorageOptions,
    /// `None` until bootstrapped: such a directory is not a member and has never voted.
    wal: Option<Wal>,
    /// The newest durable, valid snapshot.
    snapshot: SnapshotMeta,
}

impl<D: Disk> std::fmt::Debug for Storage<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("disk", &self.disk.describe())
            .field("options", &self.options)
            .field("bootstrapped", &self.wal.is_some())
            .field("snapshot_index", &self.snapshot.index)
            .finish()
    }
}

#[derive(Default)]
struct Listing {
    identity: bool,
    temps: Vec<String>,
    segments: Vec<u64>,
    snapshots: Vec<(Index, u64)>,
}

fn classify(disk: &dyn Disk) -> Result<Listing> {
    let mut listing = Listing::default();
    for name in disk.list().map_err(|e| Error::io("list", disk.describe(), e))? {
        if name == LOCK_FILE {
            continue;
        } else if name == IDENTITY_FILE {
            listing.identity = true;
        } else if name == IDENTITY_TEMP_FILE || (name.starts_with("snap-") && name.ends_with(".tmp")) {
            listing.temps.push(name);
        } else if let Some(seq) = parse_segment_name(&name) {
            listing.segments.push(seq);
        } else if let Some(found) = parse_snapshot_name(&name) {
            listing.snapshots.push(found);
        } else {
            return Err(Error::ForeignFile { file: name, why: "not a file raftkv writes".into() });
        }
    }
    Ok(listing)
}

impl<D: Disk> Storage<D> {
    /// Locks the directory, checks its identity and recovers its state by the decision table in the crate
    /// docs. Returns `None` as the state when the directory was never bootstrapped: such a node is not a
    /// member, must never vote or acknowledge, and needs [`Storage::bootstrap`] first.
    pub fn open(disk: D, options: StorageOptions) -> Result<(Storage<D>, Option<InitialState>)> {
        assert_ne!(options.node_id, 0, "node id 0 means nobody");
        assert!(options.segment_bytes > SEGMENT_HEADER_BYTES, "segments must hold more than their header");
        let lock = disk.lock(LOCK_FILE).map_err(|e| match e.kind() {
            io::ErrorKind::WouldBlock => Error::Locked { dir: disk.describe() },
            _ => Error::io("lock", LOCK_FILE, e),
        })?;
        let listing = classify(&disk)?;
        let mut storage =
            Storage { disk, _lock: lock, options, wal: None, snapshot: SnapshotMeta::default() };
        if !listing.identity {
            storage.check_interrupted_bootstrap(&listing)?;
            return Ok((storage, None));
        }
        let found = read_identity(&storage.disk)?;
        let expected = storage.identity();
        if found != expected {
            return Err(Error::IdentityMismatch { expected, found });
        }
        for temp in &listing.temps {
            tracing::info!(file = %temp, "removing the leftover of an interrupted atomic write");
            storage.disk.remove(temp).map_err(|e| Error::io("remove", temp, e))?;
        }
        storage.snapshot = choose_snapshot(&storage.disk, listing.snapshots)?;
        let (wal, replay) = Wal::recover(&storage.disk, listing.segments, storage.options.segment_bytes)?;
        if replay.base > storage.snapshot.index {
            return Err(Error::corrupt(
                wal.first_segment_name(),
                24,
                format!(
                    "the log to start at or before index {} (the newest valid snapshot), found it starts after {}: \
                     a segment holding the entries in between is missing",
                    storage.snapshot.index, replay.base
                ),
            ));
        }
        let keep_from = storage.snapshot.index.saturating_sub(replay.base) as usize;
        // §7 (row 24): the entries after the snapshot belong to it only if the log holds the snapshot's
        // own entry with its term (or starts right after it). A crash between publishing an installed
        // snapshot and discarding the conflicting log leaves the old log behind: drop it, durably.
        let boundary_matches = keep_from == 0
            || replay.entries.get(keep_from - 1).is_some_and(|e| e.term == storage.snapshot.term);
        let entries = match replay.entries.get(keep_from..) {
            Some(after) if boundary_matches => after.to_vec(),
            Some(after) => {
                tracing::warn!(
                    snapshot_index = storage.snapshot.index,
                    snapshot_term = storage.snapshot.term,
                    dropped = after.len(),
                    "the log conflicts with the newest snapshot at its index (a crash interrupted an \
                     installation): discarding the log after it"
                );
                Vec::new()
            }
            None => Vec::new(),
        };
        let conflicting = !boundary_matches && replay.last_index() >= storage.snapshot.index;
        storage.wal = Some(wal);
        if conflicting {
            storage.discard_log_after_snapshot()?;
        }
        let state =
            InitialState { hard_state: replay.hard_state, snapshot: storage.snapshot.clone(), entries };
        tracing::info!(
            snapshot_index = state.snapshot.index,
            entries = state.entries.len(),
            term = state.hard_state.term,
            "recovered storage"
        );
        Ok((storage, Some(state)))
    }

    /// Without an identity file the directory may hold only what an interrupted bootstrap leaves behind
    /// (the index-0 snapshot, an empty first segment); anything more means the identity file was lost.
    fn check_interrupted_bootstrap(&self, listing: &Listing) -> Result<()> {
        let mut log_data =
            listing.segments.iter().any(|&seq| seq != 1) || listing.snapshots.iter().any(|s| s.0 != 0);
        if listing.segments.contains(&1) {
            let name = segment_name(1);
            let file = self.disk.open(&name).map_err(|e| Error::io("open", &name, e))?;
            log_data |= file.len_bytes().map_err(|e| Error::io("stat", &name, e))? > SEGMENT_HEADER_BYTES;
        }
        if log_data {
            return Err(Error::corrupt(
                IDENTITY_FILE,
                0,
                "an identity file, since the directory holds log data (was IDENTITY deleted?)",
            ));
        }
        Ok(())
    }

    /// Creates the initial state of a brand-new cluster member: the index-0 snapshot holding
    /// `configuration`, an empty log, and (last, so that a crash part-way leaves "not bootstrapped") the
    /// identity file. A node joining an existing cluster bootstraps with an empty configuration and learns
    /// the real one from the leader.
    pub fn bootstrap(&mut self, configuration: Configuration) -> Result<InitialState> {
        self.clear_interrupted_bootstrap()?;
        let meta = SnapshotMeta { index: 0, term: 0, configuration };
        let writer = SnapshotWriter::create(&self.disk, meta.clone())?;
        self.publish(writer.finish()?)?;
        let wal = Wal::create_initial(&self.disk, self.options.segment_bytes)?;
        write_identity(&self.disk, self.identity())?;
        self.wal = Some(wal);
        tracing::info!(identity = %self.identity(), "bootstrapped a new data directory");
        Ok(InitialState { hard_state: HardState::default(), snapshot: meta, entries: Vec::new() })
    }

    /// Seeds a brand-new cluster member from a backup (`raftkv restore`): the snapshot `meta` — the
    /// backup's index and term, the **new** cluster's configuration — with the data `write_data` streams,
    /// an empty log that continues after it, the hard state `(term = meta.term, no vote, commit =
    /// meta.index)`, and (last, as at bootstrap) the identity file.
    ///
    /// Raft's safety carries over because every member of the new cluster is seeded the same way from the
    /// same backup: all logs then agree up to the snapshot (its entries are committed by definition, §7),
    /// none holds anything after it, nobody has voted, and every election starts above the snapshot's
    /// term. A crash part-way leaves a snapshot past index 0 without an identity, which the next open
    /// refuses (row 4): delete the directory and seed it again.
    pub fn seed_from_snapshot(
        &mut self,
        meta: SnapshotMeta,
        write_data: impl FnOnce(&mut SnapshotWriter) -> io::Result<()>,
    ) -> Result<InitialState> {
        self.clear_interrupted_bootstrap()?;
        let mut writer = SnapshotWriter::create(&self.disk, meta.clone())?;
        let name = crate::snapshot::snapshot_temp_name(meta.index, meta.term);
        write_data(&mut writer).map_err(|e| Error::io("write", &name, e))?;
        self.publish(writer.finish()?)?;
        let hard_state = HardState { term: meta.term, vote: None, commit: meta.index };
        let wal = Wal::create_first(&self.disk, self.options.segment_bytes, meta.index, hard_state)?;
        write_identity(&self.disk, self.identity())?;
        self.wal = Some(wal);
        tracing::info!(identity = %self.identity(), index = meta.index, term = meta.term, "seeded a new data directory from a snapshot");
        Ok(InitialState { hard_state, snapshot: meta, entries: Vec::new() })
    }

    /// Refuses a directory that holds state, and removes what an interrupted bootstrap left behind.
    fn clear_interrupted_bootstrap(&mut self) -> Result<()> {
        if self.wal.is_some() {
            return Err(Error::AlreadyBootstrapped);
        }
        let listing = classify(&self.disk)?;
        if listing.identity {
            return Err(Error::AlreadyBootstrapped);
        }
        self.check_interrupted_bootstrap(&listing)?;
        let leftovers = listing
            .temps
            .into_iter()
            .chain(listing.segments.into_iter().map(segment_name))
            .chain(listing.snapshots.into_iter().map(|(index, term)| snapshot_name(index, term)));
        for name in leftovers {
            self.disk.remove(&name).map_err(|e| Error::io("remove", &name, e))?;
        }
        Ok(())
    }

    /// Makes `hard_state` and `entries` durable together: one record, one write, one `fdatasync`. If
    /// `entries[0].index <= last_index()`, the conflicting suffix from there on is truncated first, in the
    /// same record, so a crash can never leave the truncation without the entries or the other way round.
    ///
    /// # Panics
    /// On caller bugs: entries that are not contiguous, that leave a gap after the last index, that rewrite
    /// the snapshot, or a hard state whose term goes backwards.
    pub fn write(&mut self, hard_state: Option<HardState>, entries: &[Entry]) -> Result<()> {
        let snapshot_index = self.snapshot.index;
        let wal = self.wal.as_mut().ok_or(Error::NotBootstrapped)?;
        wal.check_usable()?;
        if hard_state.is_none() && entries.is_empty() {
            return Ok(());
        }
        for pair in entries.windows(2) {
            assert_eq!(pair[1].index, pair[0].index + 1, "entries to persist must be contiguous");
        }
        let truncate_after = entries.first().and_then(|first| {
            let last = wal.last_index().max(snapshot_index);
            assert!(
                first.index > snapshot_index,
                "entry {} rewrites snapshot {}",
                first.index,
                snapshot_index
            );
            assert!(first.index <= last + 1, "entry {} leaves a gap after last index {}", first.index, last);
            (first.index != wal.last_index() + 1).then_some(first.index - 1)
        });
        if let Some(new) = &hard_state {
            let old = wal.hard_state();
            assert!(new.term >= old.term, "hard state term goes back from {} to {}", old.term, new.term);
        }
        wal.write(&self.disk, truncate_after.as_slice(), entries, hard_state)
    }

    /// Discards the whole log and continues it right after the newest snapshot (when an installed snapshot
    /// conflicts with the log, §7). One record holds two truncations, `after 0` then `after <snapshot>`:
    /// the first empties the log whatever it held (even an entry at the snapshot's index of another
    /// term, which a single `after <snapshot>` would keep), the second makes it continue after the
    /// snapshot.
    pub fn discard_log_after_snapshot(&mut self) -> Result<()> {
        let after = self.snapshot.index;
        let wal = self.wal.as_mut().ok_or(Error::NotBootstrapped)?;
        wal.write(&self.disk, &[0, after], &[], None)
    }

    /// Starts a new segment with the next write (segments also roll by themselves at `segment_bytes`).
    pub fn roll_segment(&mut self) {
        if let Some(wal) = self.wal.as_mut() {
            wal.request_roll();
        }
    }

    /// Starts writing a snapshot. Stream the data into the writer (it implements `std::io::Write`, owns its
    /// file and may move to another thread), call `finish`, then [`Storage::publish_snapshot`].
    pub fn begin_snapshot(&self, meta: SnapshotMeta) -> Result<SnapshotWriter> {
        self.wal.as_ref().ok_or(Error::NotBootstrapped)?.check_usable()?;
        SnapshotWriter::create(&self.disk, meta)
    }

    /// Atomically publishes a finished snapshot (rename, directory fsync). It becomes the newest snapshot if
    /// its index is higher than the current one's. Then call [`Storage::compact`] to delete covered segments.
    pub fn publish_snapshot(&mut self, finished: FinishedSnapshot) -> Result<()> {
        self.wal.as_ref().ok_or(Error::NotBootstrapped)?.check_usable()?;
        self.publish(finished)
    }

    fn publish(&mut self, finished: FinishedSnapshot) -> Result<()> {
        let name = snapshot_name(finished.meta.index, finished.meta.term);
        self.disk
            .rename(&finished.temp_name, &name)
            .map_err(|e| Error::io("rename", &finished.temp_name, e))?;
        self.disk.sync_dir().map_err(|e| Error::io("fsync directory", self.disk.describe(), e))?;
        if finished.meta.index >= self.snapshot.index {
            self.snapshot = finished.meta;
        }
        Ok(())
    }

    /// Opens the newest snapshot for reading; its data's checksum is checked as the last bytes are read.
    pub fn open_snapshot(&self) -> Result<SnapshotReader> {
        self.wal.as_ref().ok_or(Error::NotBootstrapped)?;
        SnapshotReader::open(&self.disk, &snapshot_name(self.snapshot.index, self.snapshot.term))
    }

    /// Reads up to `max_bytes` of the snapshot file `(index, term)` at `offset` — the whole file, header
    /// and trailer included, as InstallSnapshot streams it. Returns the bytes and whether they reach the
    /// end of the file. Fails if the file is gone (a newer snapshot replaced it): the caller drops the read.
    pub fn read_snapshot_chunk(
        &self,
        index: Index,
        term: raft::Term,
        offset: u64,
        max_bytes: usize,
    ) -> Result<(Vec<u8>, bool)> {
        let name = snapshot_name(index, term);
        let file = self.disk.open(&name).map_err(|e| Error::io("open", &name, e))?;
        let len = file.len_bytes().map_err(|e| Error::io("stat", &name, e))?;
        let want = len.saturating_sub(offset).min(max_bytes as u64) as usize;
        let mut data = vec![0u8; want];
        file.read_exact_at(offset, &mut data).map_err(|e| Error::io("read", &name, e))?;
        Ok((data, offset + want as u64 >= len))
    }

    /// Starts receiving the snapshot file `(index, term)` from a leader (discarding any partial one).
    pub fn begin_receiving_snapshot(&self, index: Index, term: raft::Term) -> Result<ReceivingSnapshot> {
        self.wal.as_ref().ok_or(Error::NotBootstrapped)?.check_usable()?;
        ReceivingSnapshot::create(&self.disk, index, term)
    }

    /// Makes a received snapshot file durable and verifies it; publish it with
    /// [`Storage::publish_snapshot`]. On error the partial file is removed.
    pub fn finish_receiving_snapshot(&self, receiving: ReceivingSnapshot) -> Result<FinishedSnapshot> {
        let temp = crate::snapshot::snapshot_receive_name(
            receiving.index_and_term().0,
            receiving.index_and_term().1,
        );
        let result = receiving.finish(&self.disk);
        if result.is_err() {
            let _ = self.disk.remove(&temp);
        }
        result
    }

    /// Removes a partial received snapshot file.
    pub fn discard_receiving_snapshot(&self, receiving: ReceivingSnapshot) {
        receiving.discard(&self.disk);
    }

    /// Removes a finished snapshot that will not be published (the core no longer wants it).
    pub fn discard_finished_snapshot(&self, finished: FinishedSnapshot) {
        let _ = self.disk.remove(&finished.temp_name);
    }

    /// Deletes every snapshot file older than the newest one.
    pub fn remove_old_snapshots(&mut self) -> Result<usize> {
        self.wal.as_ref().ok_or(Error::NotBootstrapped)?.check_usable()?;
        let current = snapshot_name(self.snapshot.index, self.snapshot.term);
        let mut removed = 0;
        for (index, term) in classify(&self.disk)?.snapshots {
            let name = snapshot_name(index, term);
            if name != current && index <= self.snapshot.index {
                self.disk.remove(&name).map_err(|e| Error::io("remove", &name, e))?;
                removed += 1;
            }
        }
        if removed > 0 {
            self.disk.sync_dir().map_err(|e| Error::io("fsync directory", self.disk.describe(), e))?;
        }
        Ok(removed)
    }

    /// Deletes the WAL segments that hold nothing after the newest snapshot. Returns how many.
    pub fn compact(&mut self) -> Result<usize> {
        let index = self.snapshot.index;
        let wal = self.wal.as_mut().ok_or(Error::NotBootstrapped)?;
        wal.compact(&self.disk, index)
    }

    pub fn is_bootstrapped(&self) -> bool {
        self.wal.is_some()
    }

    pub fn identity(&self) -> Identity {
        Identity { cluster_id: self.options.cluster_id, node_id: self.options.node_id }
    }

    /// The last durable hard state (default before bootstrap).
    pub fn hard_state(&self) -> HardState {
        self.wal.as_ref().map(Wal::hard_state).unwrap_or_default()
    }

    /// The index of the last durable entry, or of the snapshot if the log holds nothing after it.
    pub fn last_index(&self) -> Index {
        self.wal.as_ref().map_or(0, Wal::last_index).max(self.snapshot.index)
    }

    /// The newest durable snapshot's metadata.
    pub fn snapshot_meta(&self) -> &SnapshotMeta {
        &self.snapshot
    }

    /// How many WAL segment files exist.
    pub fn segment_count(&self) -> usize {
        self.wal.as_ref().map_or(0, Wal::segment_count)
    }

    /// The error every write would return now, if storage has stopped (failed fsync, full disk).
    pub fn check_usable(&self) -> Result<()> {
        self.wal.as_ref().ok_or(Error::NotBootstrapped)?.check_usable()
    }

    /// The disk this storage runs on.
    pub fn disk(&self) -> &D {
        &self.disk
    }
}

/// The newest snapshot whose header, trailer and checksum are valid. A damaged newer one is skipped with a
/// loud warning (the WAL check that follows proves the log still covers everything after the older one);
/// an unknown version is never skipped.
fn choose_snapshot(disk: &dyn Disk, mut snapshots: Vec<(Index, u64)>) -> Result<SnapshotMeta> {
    snapshots.sort_unstable_by(|a, b| b.cmp(a));
    let mut first_error = None;
    for (index, term) in snapshots {
        let name = snapshot_name(index, term);
        let verified = SnapshotReader::open(disk, &name).and_then(SnapshotReader::verify);
        match verified {
            Ok(meta) if meta.index == index && meta.term == term => return Ok(meta),
            Ok(meta) => {
                return Err(Error::corrupt(
                    &name,
                    16,
                    format!(
                        "metadata for index {index} term {term} (as the name says), found {} {}",
                        meta.index, meta.term
                    ),
                ))
            }
            Err(error @ (Error::UnknownVersion { .. } | Error::Io { .. })) => return Err(error),
            Err(error) => {
                tracing::error!(%error, "skipping a damaged snapshot; trying an older one");
                first_error.get_or_insert(error);
            }
        }
    }
    Err(first_error.unwrap_or_else(|| {
        Error::corrupt("snap-*.snap", 0, "at least one snapshot file (bootstrap writes one)")
    }))
}

fn read_identity(disk: &dyn Disk) -> Result<Identity> {
    let file = disk.open(IDENTITY_FILE).map_err(|e| Error::io("open", IDENTITY_FILE, e))?;
    let buf = file.read_all().map_err(|e| Error::io("read", IDENTITY_FILE, e))?;
    if buf.len() != IDENTITY_BYTES {
        return Err(Error::corrupt(IDENTITY_FILE, 0, format!("{IDENTITY_BYTES} bytes, found {}", buf.len())));
    }
    if buf[..8] != IDENTITY_MAGIC {
        return Err(Error::ForeignFile {
            file: IDENTITY_FILE.into(),
            why: "lacks the identity magic".into(),
        });
    }
    let stored = u32::from_le_bytes(buf[28..32].try_into().expect("4"));
    if crc32c::crc32c(&buf[..28]) != stored {
        return Err(Error::corrupt(IDENTITY_FILE, 28, "a CRC32C matching the identity"));
    }
    let mut dec = Decoder::new(&buf[8..28]);
    let version = dec.u32("version").expect("length checked");
    if version != IDENTITY_VERSION {
        return Err(Error::UnknownVersion {
            file: IDENTITY_FILE.into(),
            found: version,
            supported: IDENTITY_VERSION,
        });
    }
    let cluster_id = dec.u64("cluster id").expect("length checked");
    let node_id = dec.u64("node id").expect("length checked");
    Ok(Identity { cluster_id, node_id })
}

fn write_identity(disk: &dyn Disk, identity: Identity) -> Result<()> {
    let mut enc = Encoder::default();
    enc.bytes(&IDENTITY_MAGIC);
    enc.u32(IDENTITY_VERSION);
    enc.u64(identity.cluster_id);
    enc.u64(identity.node_id);
    let crc = crc32c::crc32c(&enc.buf);
    enc.u32(crc);
    if disk.open(IDENTITY_TEMP_FILE).is_ok() {
        disk.remove(IDENTITY_TEMP_FILE).map_err(|e| Error::io("remove", IDENTITY_TEMP_FILE, e))?;
    }
    let mut file = disk.create(IDENTITY_TEMP_FILE).map_err(|e| Error::io("create", IDENTITY_TEMP_FILE, e))?;
    file.write_at(0, &enc.buf).map_err(|e| Error::io("write", IDENTITY_TEMP_FILE, e))?;
    file.sync_data().map_err(|e| Error::io("fsync", IDENTITY_TEMP_FILE, e))?;
    disk.rename(IDENTITY_TEMP_FILE, IDENTITY_FILE).map_err(|e| Error::io("rename", IDENTITY_TEMP_FILE, e))?;
    disk.sync_dir().map_err(|e| Error::io("fsync directory", disk.describe(), e))
}
