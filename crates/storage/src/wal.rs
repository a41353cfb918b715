//! The segmented write-ahead log: writing batches (group commit), rolling segments, compaction, and
//! recovery by the decision table in the crate docs.

use raft::{Entry, HardState, Index};

use crate::codec::{self, DecodeError, Decoder, Encoder};
use crate::disk::{Disk, DiskFile};
use crate::error::{is_disk_full, Error, Result};

pub(crate) const SEGMENT_MAGIC: [u8; 8] = *b"RAFTKVWL";
pub(crate) const WAL_VERSION: u32 = 1;
pub(crate) const SEGMENT_HEADER_BYTES: u64 = 64;
const HEADER_CRC_OFFSET: usize = 56;
const FRAME_HEADER_BYTES: usize = 8;
/// Record type (1 byte) + self offset (8) + synced offset (8) + item count (4).
const RECORD_FIXED_BYTES: usize = 21;
/// A record longer than this is damage, not data: it protects recovery from allocating on garbage lengths.
pub(crate) const MAX_RECORD_BYTES: usize = 1 << 30;
const RECORD_BATCH: u8 = 1;
const ITEM_TRUNCATE: u8 = 1;
const ITEM_ENTRY: u8 = 2;
const ITEM_HARD_STATE: u8 = 3;
const ITEM_SEAL: u8 = 4;

pub(crate) fn segment_name(seq: u64) -> String {
    format!("wal-{seq:016x}.log")
}

pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let hex = name.strip_prefix("wal-")?.strip_suffix(".log")?;
    if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// The state the log was in when a segment was opened (everything before it, in brief).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct SegmentHeader {
    seq: u64,
    start_last_index: Index,
    hard_state: HardState,
}

fn encode_header(header: &SegmentHeader) -> Vec<u8> {
    let mut enc = Encoder::default();
    enc.bytes(&SEGMENT_MAGIC);
    enc.u32(WAL_VERSION);
    enc.u32(0); // flags: none defined
    enc.u64(header.seq);
    enc.u64(header.start_last_index);
    codec::encode_hard_state(&mut enc, &header.hard_state);
    debug_assert_eq!(enc.buf.len(), HEADER_CRC_OFFSET);
    let crc = crc32c::crc32c(&enc.buf);
    enc.u32(crc);
    enc.u32(0); // padding to 64 bytes
    debug_assert_eq!(enc.buf.len() as u64, SEGMENT_HEADER_BYTES);
    enc.buf
}

/// A header that is damaged in a way a torn write can explain (short, all zeros, bad checksum).
struct BadHeader(String);

fn decode_header(file: &str, buf: &[u8]) -> Result<Result<SegmentHeader, BadHeader>> {
    let header_len = SEGMENT_HEADER_BYTES as usize;
    if buf.len() < header_len {
        return Ok(Err(BadHeader(format!("a {header_len}-byte segment header, found {} bytes", buf.len()))));
    }
    let bytes = &buf[..header_len];
    if bytes[..8] != SEGMENT_MAGIC {
        if bytes.iter().all(|&b| b == 0) {
            return Ok(Err(BadHeader("a segment header, found zeros".into())));
        }
        return Err(Error::ForeignFile {
            file: file.into(),
            why: format!(
                "named like a WAL segment but starts with {:02x?}, not {:?}",
                &bytes[..8],
                "RAFTKVWL"
            ),
        });
    }
    let stored = u32::from_le_bytes(bytes[HEADER_CRC_OFFSET..HEADER_CRC_OFFSET + 4].try_into().expect("4"));
    if crc32c::crc32c(&bytes[..HEADER_CRC_OFFSET]) != stored {
        return Ok(Err(BadHeader("a segment header with a valid CRC32C".into())));
    }
    let mut dec = Decoder::new(&bytes[8..HEADER_CRC_OFFSET]);
    let parsed = (|| {
        let version = dec.u32("version")?;
        let flags = dec.u32("flags")?;
        let seq = dec.u64("sequence number")?;
        let start_last_index = dec.u64("start index")?;
        let hard_state = codec::decode_hard_state(&mut dec)?;
        Ok::<_, DecodeError>((version, flags, SegmentHeader { seq, start_last_index, hard_state }))
    })();
    let (version, flags, header) = parsed.map_err(|e| Error::corrupt(file, 8 + e.pos as u64, e.what))?;
    if version != WAL_VERSION {
        return Err(Error::UnknownVersion { file: file.into(), found: version, supported: WAL_VERSION });
    }
    if flags != 0 {
        return Err(Error::corrupt(file, 12, format!("header flags 0, found {flags:#x}")));
    }
    Ok(Ok(header))
}

/// One record (one batch) whose frame and checksum are valid.
struct Record<'a> {
    synced_offset: u64,
    item_count: u32,
    items: &'a [u8],
    end: usize,
}

/// Why the bytes at an offset are not a valid record. `Bad` is what a torn write can leave; a checksummed
/// record that contradicts the format is an error straight away.
enum FrameError {
    Bad(String),
    Fatal(Error),
}

fn parse_frame<'a>(file: &str, buf: &'a [u8], offset: usize) -> Result<Record<'a>, FrameError> {
    let available = buf.len() - offset;
    if available < FRAME_HEADER_BYTES {
        return Err(FrameError::Bad(format!("an 8-byte record frame, found {available} bytes")));
    }
    let len = u32::from_le_bytes(buf[offset..offset + 4].try_into().expect("4")) as usize;
    let stored_crc = u32::from_le_bytes(buf[offset + 4..offset + 8].try_into().expect("4"));
    if !(RECORD_FIXED_BYTES..=MAX_RECORD_BYTES).contains(&len) || len > available - FRAME_HEADER_BYTES {
        return Err(FrameError::Bad(format!(
            "a record length of {RECORD_FIXED_BYTES}..={} bytes, found {len}",
            (available - FRAME_HEADER_BYTES).min(MAX_RECORD_BYTES)
        )));
    }
    let body = &buf[offset + FRAME_HEADER_BYTES..offset + FRAME_HEADER_BYTES + len];
    if crc32c::crc32c(body) != stored_crc {
        return Err(FrameError::Bad(format!("CRC32C {stored_crc:#010x} over the {len}-byte record")));
    }
    let fatal = |at: usize, what: String| FrameError::Fatal(Error::corrupt(file, (offset + at) as u64, what));
    if body[0] != RECORD_BATCH {
        return Err(fatal(FRAME_HEADER_BYTES, format!("record type {RECORD_BATCH}, found {}", body[0])));
    }
    let self_offset = u64::from_le_bytes(body[1..9].try_into().expect("8"));
    if self_offset != offset as u64 {
        return Err(fatal(
            FRAME_HEADER_BYTES + 1,
            format!("a record written at this offset, found one written at {self_offset}"),
        ));
    }
    let synced_offset = u64::from_le_bytes(body[9..17].try_into().expect("8"));
    if synced_offset > self_offset {
        return Err(fatal(
            FRAME_HEADER_BYTES + 9,
            format!("a synced offset at most {self_offset}, found {synced_offset}"),
        ));
    }
    let item_count = u32::from_le_bytes(body[17..21].try_into().expect("4"));
    Ok(Record {
        synced_offset,
        item_count,
        items: &body[RECORD_FIXED_BYTES..],
        end: offset + FRAME_HEADER_BYTES + len,
    })
}

/// Looks past a bad record at `bad_offset` for a valid one that declares the bad bytes synced. Finding one
/// proves the bad bytes were acknowledged once: corruption, not a torn write.
fn find_later_synced_record(file: &str, buf: &[u8], bad_offset: usize) -> Option<(usize, u64)> {
    let last_start = buf.len().checked_sub(FRAME_HEADER_BYTES + RECORD_FIXED_BYTES)?;
    for candidate in bad_offset + 1..=last_start {
        // Cheap filter first: a genuine record names its own offset, so almost every position fails here.
        let at = candidate + FRAME_HEADER_BYTES + 1;
        if buf[candidate + FRAME_HEADER_BYTES] != RECORD_BATCH
            || u64::from_le_bytes(buf[at..at + 8].try_into().expect("8")) != candidate as u64
        {
            continue;
        }
        if let Ok(record) = parse_frame(file, buf, candidate) {
            if record.synced_offset > bad_offset as u64 {
                return Some((candidate, record.synced_offset));
            }
        }
    }
    None
}

/// The log as replay rebuilds it: entries `base+1 ..= base+entries.len()`, and the latest hard state.
pub(crate) struct Replay {
    pub(crate) base: Index,
    pub(crate) entries: Vec<Entry>,
    pub(crate) hard_state: HardState,
}

impl Replay {
    pub(crate) fn last_index(&self) -> Index {
        self.base + self.entries.len() as u64
    }

    fn truncate_after(&mut self, after: Index) {
        if after < self.base || after > self.last_index() {
            // The log restarts after `after` (a snapshot was installed past, or below, what the log held).
            self.entries.clear();
            self.base = after;
        } else {
            self.entries.truncate((after - self.base) as usize);
        }
    }

    /// Applies one record; returns the next segment's number if the record is a seal.
    fn apply(&mut self, file: &str, offset: usize, record: &Record<'_>) -> Result<Option<u64>> {
        let items_at = offset + FRAME_HEADER_BYTES + RECORD_FIXED_BYTES;
        let corrupt = |pos: usize, what: String| Error::corrupt(file, (items_at + pos) as u64, what);
        let mut dec = Decoder::new(record.items);
        for _ in 0..record.item_count {
            let item_at = dec.pos();
            let kind = dec.u8("item type").map_err(|e| corrupt(e.pos, e.what))?;
            match kind {
                ITEM_TRUNCATE => {
                    let after = dec.u64("truncation index").map_err(|e| corrupt(e.pos, e.what))?;
                    self.truncate_after(after);
                }
                ITEM_ENTRY => {
                    let entry = codec::decode_entry(&mut dec).map_err(|e| corrupt(e.pos, e.what))?;
                    // A truncation item may restart the log after any index, the largest one too; then
                    // no entry can follow it. (Found by the `wal_recovery` fuzz target: this overflowed.)
                    let Some(expected) = self.last_index().checked_add(1) else {
                        let what = format!(
                            "no entry after index {} (the largest index), found entry {}",
                            self.last_index(),
                            entry.index
                        );
                        return Err(corrupt(item_at, what));
                    };
                    if entry.index != expected {
                        return Err(corrupt(
                            item_at,
                            format!("entry index {expected}, found {}", entry.index),
                        ));
                    }
                    if let Some(previous) = self.entries.last() {
                        if entry.term < previous.term {
                            return Err(corrupt(
                                item_at,
                                format!(
                                    "entry term at least {} (terms never decrease), found {}",
                                    previous.term, entry.term
                                ),
                            ));
                        }
                    }
                    self.entries.push(entry);
                }
                ITEM_HARD_STATE => {
                    let hard_state =
                        codec::decode_hard_state(&mut dec).map_err(|e| corrupt(e.pos, e.what))?;
                    let old = self.hard_state;
                    if hard_state.term < old.term {
                        let what = format!(
                            "a hard state term of at least {} (terms never decrease), found {hard_state:?}",
                            old.term
                        );
                        return Err(corrupt(item_at, what));
                    }
                    self.hard_state = hard_state;
                }
                ITEM_SEAL if record.item_count == 1 => {
                    let next = dec.u64("next segment").map_err(|e| corrupt(e.pos, e.what))?;
                    if dec.remaining() != 0 {
                        return Err(corrupt(dec.pos(), "end of the seal record".into()));
                    }
                    return Ok(Some(next));
                }
                other => {
                    return Err(corrupt(
                        item_at,
                        format!("item type 1, 2 or 3 (or a seal alone), found {other}"),
                    ))
                }
            }
        }
        if dec.remaining() != 0 {
            return Err(corrupt(dec.pos(), format!("end of record after {} items", record.item_count)));
        }
        Ok(None)
    }
}

#[derive(Clone, Debug)]
pub(crate) struct SegmentInfo {
    pub(crate) seq: u64,
    pub(crate) start_last_index: Index,
}

/// Why the WAL accepts no more writes.
#[derive(Clone, Debug)]
pub(crate) enum Stopped {
    Poisoned(String),
    Full(String),
}

/// The open log: where the next batch goes, and what the log holds (not the entries themselves: the
/// consensus core keeps those in memory).
pub(crate) struct Wal {
    segment_bytes: u64,
    /// Oldest first; the last one is open for appending. Invariant: consecutive `seq`s.
    segments: Vec<SegmentInfo>,
    file: Option<Box<dyn DiskFile>>,
    /// End of the valid data in the open segment. Invariant: equals `synced_offset` between calls.
    offset: u64,
    synced_offset: u64,
    last_index: Index,
    hard_state: HardState,
    roll_requested: bool,
    pub(crate) stopped: Option<Stopped>,
}

impl Wal {
    /// Creates the first segment of a brand-new log (header only) and makes it durable.
    pub(crate) fn create_initial(disk: &dyn Disk, segment_bytes: u64) -> Result<Wal> {
        Wal::create_first(disk, segment_bytes, 0, HardState::default())
    }

    /// The first segment of a fresh log that continues after `start_last_index` (a seeded snapshot's
    /// index; 0 at bootstrap), with `hard_state` in its header: header only, fsynced, directory fsynced.
    pub(crate) fn create_first(
        disk: &dyn Disk,
        segment_bytes: u64,
        start_last_index: Index,
        hard_state: HardState,
    ) -> Result<Wal> {
        let header = SegmentHeader { seq: 1, start_last_index, hard_state };
        let name = segment_name(1);
        let mut file = disk.create(&name).map_err(|e| Error::io("create", &name, e))?;
        file.write_at(0, &encode_header(&header)).map_err(|e| Error::io("write", &name, e))?;
        file.sync_data().map_err(|e| Error::io("fsync", &name, e))?;
        disk.sync_dir().map_err(|e| Error::io("fsync directory", disk.describe(), e))?;
        Ok(Wal {
            segment_bytes,
            segments: vec![SegmentInfo { seq: 1, start_last_index }],
            file: Some(file),
            offset: SEGMENT_HEADER_BYTES,
            synced_offset: SEGMENT_HEADER_BYTES,
            last_index: start_last_index,
            hard_state,
            roll_requested: false,
            stopped: None,
        })
    }

    pub(crate) fn last_index(&self) -> Index {
        self.last_index
    }

    pub(crate) fn hard_state(&self) -> HardState {
        self.hard_state
    }

    pub(crate) fn first_segment_name(&self) -> String {
        segment_name(self.segments.first().map_or(1, |s| s.seq))
    }

    pub(crate) fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// The next write starts a new segment.
    pub(crate) fn request_roll(&mut self) {
        self.roll_requested = true;
    }

    pub(crate) fn check_usable(&self) -> Result<()> {
        match &self.stopped {
            None => Ok(()),
            Some(Stopped::Poisoned(cause)) => Err(Error::Poisoned { cause: cause.clone() }),
            Some(Stopped::Full(file)) => Err(Error::DiskFull {
                file: file.clone(),
                source: std::io::Error::from_raw_os_error(crate::error::ENOSPC),
            }),
        }
    }

    fn poison(&mut self, error: Error) -> Error {
        tracing::error!(%error, "storage stopped: no further writes until restart");
        self.stopped = Some(Stopped::Poisoned(error.to_string()));
        error
    }

    /// Writes one batch as one record with one write and one `fdatasync` (group commit). Items are applied in
    /// this order on replay: truncation, entries, hard state.
    pub(crate) fn write(
        &mut self,
        disk: &dyn Disk,
        truncations: &[Index],
        entries: &[Entry],
        hard_state: Option<HardState>,
    ) -> Result<()> {
        self.check_usable()?;
        let mut items = Encoder::default();
        let mut item_count = 0u32;
        for &after in truncations {
            items.u8(ITEM_TRUNCATE);
            items.u64(after);
            item_count += 1;
        }
        for entry in entries {
            items.u8(ITEM_ENTRY);
            codec::encode_entry(&mut items, entry);
            item_count += 1;
        }
        if let Some(hard_state) = &hard_state {
            items.u8(ITEM_HARD_STATE);
            codec::encode_hard_state(&mut items, hard_state);
            item_count += 1;
        }
        assert!(
            items.buf.len() + RECORD_FIXED_BYTES <= MAX_RECORD_BYTES,
            "a batch of {} bytes exceeds the record limit; the caller must bound batch sizes",
            items.buf.len()
        );
        let new_segment = self.file.is_none() || self.roll_requested || self.offset >= self.segment_bytes;
        let seq = self.segments.last().map_or(1, |s| s.seq + 1);
        let (mut file, name, start, mut buf) = if new_segment {
            let name = segment_name(seq);
            let file = match disk.create(&name) {
                Ok(file) => file,
                Err(e) if is_disk_full(&e) => {
                    // Nothing was written; the name may exist (empty), and recovery removes a torn segment.
                    self.stopped = Some(Stopped::Full(name.clone()));
                    return Err(Error::DiskFull { file: name, source: e });
                }
                Err(e) => return Err(self.poison(Error::io("create", &name, e))),
            };
            let header =
                SegmentHeader { seq, start_last_index: self.last_index, hard_state: self.hard_state };
            (file, name, 0, encode_header(&header))
        } else {
            let file = self.file.take().expect("an open segment");
            (file, segment_name(seq - 1), self.offset, Vec::new())
        };
        let record_offset = start + buf.len() as u64;
        let synced_offset = if new_segment { 0 } else { self.synced_offset };
        encode_record(&mut buf, record_offset, synced_offset, item_count, &items.buf);

        let written = file.write_at(start, &buf);
        if let Err(e) = written {
            return Err(self.handle_write_error(disk, file, &name, start, new_segment, e));
        }
        if let Err(e) = file.sync_data() {
            // Never retry an fsync: the kernel may already have dropped the dirty pages it failed to write.
            return Err(self.poison(Error::io("fsync", &name, e)));
        }
        if new_segment {
            disk.sync_dir().map_err(|e| self.poison(Error::io("fsync directory", disk.describe(), e)))?;
            self.seal_previous(seq)?;
            self.segments.push(SegmentInfo { seq, start_last_index: self.last_index });
            self.roll_requested = false;
        }
        self.file = Some(file);
        self.offset = start + buf.len() as u64;
        self.synced_offset = self.offset;
        if let Some(&after) = truncations.last() {
            self.last_index = after;
        }
        if let Some(last) = entries.last() {
            self.last_index = last.index;
        }
        if let Some(hard_state) = hard_state {
            self.hard_state = hard_state;
        }
        Ok(())
    }

    /// Ends the previous segment with a seal naming segment `next`, now that `next` is durable (file and
    /// directory entry). Recovery then knows `next` must exist: deleting the newest segment is detected.
    fn seal_previous(&mut self, next: u64) -> Result<()> {
        let Some(mut previous) = self.file.take() else { return Ok(()) };
        let mut items = Encoder::default();
        items.u8(ITEM_SEAL);
        items.u64(next);
        let mut buf = Vec::new();
        encode_record(&mut buf, self.offset, self.synced_offset, 1, &items.buf);
        let name = segment_name(next - 1);
        if let Err(e) = previous.write_at(self.offset, &buf).and_then(|()| previous.sync_data()) {
            return Err(self.poison(Error::io("seal", name, e)));
        }
        Ok(())
    }

    /// A write failed. If the disk is full, cut the partial record away (and sync that) before anything else
    /// can be written, then refuse further writes; any other failure poisons the log.
    fn handle_write_error(
        &mut self,
        disk: &dyn Disk,
        mut file: Box<dyn DiskFile>,
        name: &str,
        start: u64,
        new_segment: bool,
        error: std::io::Error,
    ) -> Error {
        if !is_disk_full(&error) {
            return self.poison(Error::io("write", name, error));
        }
        let cleanup = if new_segment {
            drop(file);
            disk.remove(name).and_then(|()| disk.sync_dir())
        } else {
            let result = file.set_len(start).and_then(|()| file.sync_data());
            self.file = Some(file);
            result
        };
        if let Err(cleanup_error) = cleanup {
            return self.poison(Error::io("remove the partial record from", name, cleanup_error));
        }
        tracing::error!(
            file = name,
            offset = start,
            "disk full: cut the partial record away; refusing further writes"
        );
        self.stopped = Some(Stopped::Full(name.to_string()));
        Error::DiskFull { file: name.to_string(), source: error }
    }

    /// Deletes every closed segment whose entries all lie at or below `index` (which a durable snapshot
    /// covers), oldest first, so that a crash part-way leaves a contiguous suffix of segments.
    pub(crate) fn compact(&mut self, disk: &dyn Disk, index: Index) -> Result<usize> {
        self.check_usable()?;
        let mut removable = 0;
        while removable + 1 < self.segments.len() && self.segments[removable + 1].start_last_index <= index {
            removable += 1;
        }
        if removable == 0 {
            return Ok(0);
        }
        for _ in 0..removable {
            // One directory fsync per removal: file systems need not persist unlinks in the order they were
            // made, and a surviving newer segment next to a resurrected older one would look like a gap.
            let name = segment_name(self.segments[0].seq);
            if let Err(e) = disk.remove(&name) {
                return Err(self.poison(Error::io("remove", name, e)));
            }
            if let Err(e) = disk.sync_dir() {
                return Err(self.poison(Error::io("fsync directory", disk.describe(), e)));
            }
            self.segments.remove(0);
        }
        Ok(removable)
    }

    /// Replays every segment by the decision table in the crate docs. `seqs` are the sequence numbers of the
    /// segment files present, in any order.
    pub(crate) fn recover(disk: &dyn Disk, mut seqs: Vec<u64>, segment_bytes: u64) -> Result<(Wal, Replay)> {
        seqs.sort_unstable();
        let Some(&first_seq) = seqs.first() else {
            return Err(Error::corrupt(
                segment_name(1),
                0,
                "at least one WAL segment (the directory has none)",
            ));
        };
        check_consecutive(&seqs)?;
        let mut replay = Replay { base: 0, entries: Vec::new(), hard_state: HardState::default() };
        let mut segments = Vec::new();
        let mut open: Option<(Box<dyn DiskFile>, u64)> = None;
        // The previous segment's seal, and the damaged tail cut from it (a seal torn by a crash, or damage
        // that the next header check proves lost acknowledged records).
        let mut sealed_next: Option<u64> = None;
        let mut previous_damage: Option<(String, usize, String)> = None;
        for (i, &seq) in seqs.iter().enumerate() {
            let is_last = i + 1 == seqs.len();
            let name = segment_name(seq);
            let mut file = disk.open(&name).map_err(|e| Error::io("open", &name, e))?;
            let buf = file.read_all().map_err(|e| Error::io("read", &name, e))?;
            let header = match decode_header(&name, &buf)? {
                Ok(header) => header,
                Err(BadHeader(expected)) => {
                    check_torn_header(
                        &name,
                        &buf,
                        expected,
                        is_last && seq != first_seq,
                        sealed_next.is_some(),
                    )?;
                    if let Some((damaged, offset, expected)) = previous_damage {
                        return Err(Error::corrupt(damaged, offset as u64, expected));
                    }
                    // The crash hit while this segment was being created: nothing in it was acknowledged.
                    tracing::warn!(file = %name, bytes = buf.len(), "removing a segment whose creation was torn by a crash");
                    drop(file);
                    disk.remove(&name).map_err(|e| Error::io("remove", &name, e))?;
                    disk.sync_dir().map_err(|e| Error::io("fsync directory", disk.describe(), e))?;
                    break;
                }
            };
            if header.seq != seq {
                let found = format!("sequence number {seq} (as the name says), found {}", header.seq);
                return Err(Error::corrupt(&name, 16, found));
            }
            if sealed_next.is_some_and(|next| next != seq) {
                return Err(Error::corrupt(segment_name(seq - 1), 0, format!("a seal naming {name}")));
            }
            if i == 0 {
                replay.base = header.start_last_index;
                replay.hard_state = header.hard_state;
            } else {
                check_start_state(&name, &header, &replay, previous_damage.take())?;
            }
            let segment = replay_records(seq, &buf, &mut replay)?;
            if let Some(expected) = &segment.damaged_tail {
                tracing::warn!(
                    file = %name,
                    offset = segment.end,
                    cut_bytes = buf.len() - segment.end,
                    last_index = replay.last_index(),
                    closed_segment = !is_last,
                    "torn write at the end of a segment: cutting it off (it was never acknowledged): expected {expected}"
                );
                file.set_len(segment.end as u64)
                    .map_err(|e| Error::io("truncate the torn tail of", &name, e))?;
                file.sync_data().map_err(|e| Error::io("fsync", &name, e))?;
            }
            previous_damage = segment.damaged_tail.map(|expected| (name.clone(), segment.end, expected));
            sealed_next = segment.sealed_next;
            segments.push(SegmentInfo { seq, start_last_index: header.start_last_index });
            open = Some((file, segment.end as u64));
        }
        if let Some(next) = sealed_next {
            let sealed = segment_name(next - 1);
            return Err(Error::corrupt(
                segment_name(next),
                0,
                format!("this segment to exist: {sealed} was sealed after it had been made durable"),
            ));
        }
        let (mut file, offset) = open.expect("the first segment is never removed as torn");
        // What we read may have come from the page cache of a process that died before its fsync: make it
        // durable before any new record declares it synced.
        let name = segment_name(segments.last().expect("one segment").seq);
        file.sync_data().map_err(|e| Error::io("fsync", &name, e))?;
        disk.sync_dir().map_err(|e| Error::io("fsync directory", disk.describe(), e))?;
        let wal = Wal {
            segment_bytes,
            segments,
            file: Some(file),
            offset,
            synced_offset: offset,
            last_index: replay.last_index(),
            hard_state: replay.hard_state,
            roll_requested: false,
            stopped: None,
        };
        Ok((wal, replay))
    }
}

/// Segment numbers must be consecutive: a gap is a missing segment.
fn check_consecutive(seqs: &[u64]) -> Result<()> {
    for pair in seqs.windows(2) {
        if pair[1] != pair[0] + 1 {
            let (before, after) = (segment_name(pair[0]), segment_name(pair[1]));
            let expected =
                format!("this segment to exist between {before} and {after}: a segment is missing");
            return Err(Error::corrupt(segment_name(pair[0] + 1), 0, expected));
        }
    }
    Ok(())
}

/// A segment must start in exactly the state the previous one ended in (row 15 of the decision table). If
/// the previous segment's tail was cut as torn, a mismatch proves that tail held acknowledged records, and
/// the error names it.
fn check_start_state(
    name: &str,
    header: &SegmentHeader,
    replay: &Replay,
    previous_damage: Option<(String, usize, String)>,
) -> Result<()> {
    if header.start_last_index == replay.last_index() && header.hard_state == replay.hard_state {
        return Ok(());
    }
    let found = format!(
        "a start state equal to the end of {} (last index {}, {:?}), found last index {} and {:?}: records are missing",
        segment_name(header.seq - 1),
        replay.last_index(),
        replay.hard_state,
        header.start_last_index,
        header.hard_state
    );
    Err(match previous_damage {
        Some((damaged, offset, expected)) => {
            Error::corrupt(damaged, offset as u64, format!("{expected}; and {name} has {found}"))
        }
        None => Error::corrupt(name, 24, found),
    })
}

/// A bad segment header is a torn creation only in the newest segment (not the first), when no record in
/// it declares the header synced and the previous segment was not sealed (its seal is written only after
/// this header was durable). Otherwise it is corruption.
fn check_torn_header(
    name: &str,
    buf: &[u8],
    expected: String,
    may_be_torn: bool,
    sealed: bool,
) -> Result<()> {
    if let Some((at, synced)) = find_later_synced_record(name, buf, 0) {
        return Err(Error::corrupt(
            name,
            0,
            format!("{expected} (the record at {at} declares {synced} bytes synced)"),
        ));
    }
    if !may_be_torn {
        return Err(Error::corrupt(name, 0, expected));
    }
    if sealed {
        return Err(Error::corrupt(
            name,
            0,
            format!("{expected} (the previous segment's seal proves it was durable)"),
        ));
    }
    Ok(())
}

/// What replaying one segment found.
struct SegmentReplay {
    /// Where the valid records end.
    end: usize,
    /// The segment's seal: the number of the segment that must follow it.
    sealed_next: Option<u64>,
    /// A damaged tail that no later record declares synced: what was expected at `end`.
    damaged_tail: Option<String>,
}

/// Replays the records of one segment, by rows 17-19 of the decision table in the crate docs. Whether a
/// damaged tail is a torn write is the caller's decision (it depends on what follows this segment).
fn replay_records(seq: u64, buf: &[u8], replay: &mut Replay) -> Result<SegmentReplay> {
    let name = &segment_name(seq);
    let mut offset = SEGMENT_HEADER_BYTES as usize;
    let mut sealed_next = None;
    while offset < buf.len() {
        if sealed_next.is_some() {
            return Err(Error::corrupt(name, offset as u64, "the end of the segment after its seal"));
        }
        match parse_frame(name, buf, offset) {
            Ok(record) => {
                sealed_next = replay.apply(name, offset, &record)?;
                // Row 16: a seal names the segment after this one, nothing else. Checked here, not only
                // when the next segment is opened, because the newest segment has no next one. (Found by
                // the `wal_recovery` fuzz target: a seal naming segment 0 made recovery underflow.)
                if let Some(next) = sealed_next.filter(|&next| Some(next) != seq.checked_add(1)) {
                    let expected = seq.checked_add(1).map_or("no segment".into(), segment_name);
                    let what = format!("a seal naming {expected}, found one naming segment {next}");
                    return Err(Error::corrupt(name, offset as u64, what));
                }
                offset = record.end;
            }
            Err(FrameError::Fatal(error)) => return Err(error),
            Err(FrameError::Bad(expected)) => {
                if let Some((at, synced)) = find_later_synced_record(name, buf, offset) {
                    return Err(Error::corrupt(
                        name,
                        offset as u64,
                        format!("{expected}; the valid record at offset {at} declares the first {synced} bytes synced, so this is damage to acknowledged data, not a torn write"),
                    ));
                }
                return Ok(SegmentReplay { end: offset, sealed_next, damaged_tail: Some(expected) });
            }
        }
    }
    Ok(SegmentReplay { end: offset, sealed_next, damaged_tail: None })
}

fn encode_record(buf: &mut Vec<u8>, record_offset: u64, synced_offset: u64, item_count: u32, items: &[u8]) {
    let mut body = Encoder::default();
    body.u8(RECORD_BATCH);
    body.u64(record_offset);
    body.u64(synced_offset);
    body.u32(item_count);
    body.bytes(items);
    let len = u32::try_from(body.buf.len()).expect("record under 4 GiB");
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&crc32c::crc32c(&body.buf).to_le_bytes());
    buf.extend_from_slice(&body.buf);
}
