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

    fn apply(&mut self, file: &str, offset: usize, record: &Record<'_>) -> Result<()> {
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
                    let expected = self.last_index() + 1;
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
                    if hard_state.term < old.term
                        || (hard_state.term == old.term && old.vote.is_some() && hard_state.vote != old.vote)
                    {
                        return Err(corrupt(
                            item_at,
                            format!("a hard state after {old:?}, found {hard_state:?}"),
                        ));
                    }
                    self.hard_state = hard_state;
                }
                other => return Err(corrupt(item_at, format!("item type 1, 2 or 3, found {other}"))),
            }
        }
        if dec.remaining() != 0 {
            return Err(corrupt(dec.pos(), format!("end of record after {} items", record.item_count)));
        }
        Ok(())
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
        let header = SegmentHeader { seq: 1, start_last_index: 0, hard_state: HardState::default() };
        let name = segment_name(1);
        let mut file = disk.create(&name).map_err(|e| Error::io("create", &name, e))?;
        file.write_at(0, &encode_header(&header)).map_err(|e| Error::io("write", &name, e))?;
        file.sync_data().map_err(|e| Error::io("fsync", &name, e))?;
        disk.sync_dir().map_err(|e| Error::io("fsync directory", disk.describe(), e))?;
        Ok(Wal {
            segment_bytes,
            segments: vec![SegmentInfo { seq: 1, start_last_index: 0 }],
            file: Some(file),
            offset: SEGMENT_HEADER_BYTES,
            synced_offset: SEGMENT_HEADER_BYTES,
            last_index: 0,
            hard_state: HardState::default(),
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
        truncate_after: Option<Index>,
        entries: &[Entry],
        hard_state: Option<HardState>,
    ) -> Result<()> {
        self.check_usable()?;
        let mut items = Encoder::default();
        let mut item_count = 0u32;
        if let Some(after) = truncate_after {
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
            let file = disk.create(&name).map_err(|e| self.poison(Error::io("create", &name, e)))?;
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
            self.segments.push(SegmentInfo { seq, start_last_index: self.last_index });
            self.roll_requested = false;
        }
        self.file = Some(file);
        self.offset = start + buf.len() as u64;
        self.synced_offset = self.offset;
        if let Some(after) = truncate_after {
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
        for segment in &self.segments[..removable] {
            let name = segment_name(segment.seq);
            if let Err(e) = disk.remove(&name) {
                return Err(self.poison(Error::io("remove", name, e)));
            }
        }
        if let Err(e) = disk.sync_dir() {
            return Err(self.poison(Error::io("fsync directory", disk.describe(), e)));
        }
        self.segments.drain(..removable);
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
        for pair in seqs.windows(2) {
            if pair[1] != pair[0] + 1 {
                return Err(Error::corrupt(
                    segment_name(pair[0] + 1),
                    0,
                    format!(
                        "this segment to exist between {} and {}: a segment is missing",
                        segment_name(pair[0]),
                        segment_name(pair[1])
                    ),
                ));
            }
        }
        let mut replay = Replay { base: 0, entries: Vec::new(), hard_state: HardState::default() };
        let mut segments = Vec::new();
        let mut open: Option<(Box<dyn DiskFile>, u64)> = None;
        for (i, &seq) in seqs.iter().enumerate() {
            let is_last = i + 1 == seqs.len();
            let name = segment_name(seq);
            let mut file = disk.open(&name).map_err(|e| Error::io("open", &name, e))?;
            let buf = file.read_all().map_err(|e| Error::io("read", &name, e))?;
            let header = match decode_header(&name, &buf)? {
                Ok(header) => header,
                Err(BadHeader(expected)) => {
                    if let Some((at, synced)) = find_later_synced_record(&name, &buf, 0) {
                        return Err(Error::corrupt(
                            &name,
                            0,
                            format!("{expected} (the record at {at} declares {synced} bytes synced)"),
                        ));
                    }
                    if !is_last || seq == first_seq {
                        return Err(Error::corrupt(&name, 0, expected));
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
                return Err(Error::corrupt(
                    &name,
                    16,
                    format!("sequence number {seq} (as the name says), found {}", header.seq),
                ));
            }
            if i == 0 {
                replay.base = header.start_last_index;
                replay.hard_state = header.hard_state;
            } else if header.start_last_index != replay.last_index() || header.hard_state != replay.hard_state
            {
                return Err(Error::corrupt(
                    &name,
                    24,
                    format!(
                        "a start state equal to the end of {} (last index {}, {:?}), found last index {} and {:?}: records are missing",
                        segment_name(seq - 1),
                        replay.last_index(),
                        replay.hard_state,
                        header.start_last_index,
                        header.hard_state
                    ),
                ));
            }
            let end = replay_records(&name, &buf, is_last, &mut replay)?;
            if end < buf.len() {
                file.set_len(end as u64).map_err(|e| Error::io("truncate the torn tail of", &name, e))?;
            }
            segments.push(SegmentInfo { seq, start_last_index: header.start_last_index });
            open = Some((file, end as u64));
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

/// Replays the records of one segment; returns where its valid data ends (a torn tail after that is cut by
/// the caller). See the decision table in the crate docs.
fn replay_records(name: &str, buf: &[u8], is_last: bool, replay: &mut Replay) -> Result<usize> {
    let mut offset = SEGMENT_HEADER_BYTES as usize;
    while offset < buf.len() {
        match parse_frame(name, buf, offset) {
            Ok(record) => {
                replay.apply(name, offset, &record)?;
                offset = record.end;
            }
            Err(FrameError::Fatal(error)) => return Err(error),
            Err(FrameError::Bad(expected)) => {
                if !is_last {
                    return Err(Error::corrupt(
                        name,
                        offset as u64,
                        format!("{expected} (a closed segment must be whole)"),
                    ));
                }
                if let Some((at, synced)) = find_later_synced_record(name, buf, offset) {
                    return Err(Error::corrupt(
                        name,
                        offset as u64,
                        format!("{expected}; the valid record at offset {at} declares the first {synced} bytes synced, so this is damage to acknowledged data, not a torn write"),
                    ));
                }
                tracing::warn!(
                    file = name,
                    offset,
                    cut_bytes = buf.len() - offset,
                    last_index = replay.last_index(),
                    "torn write at the end of the log: cutting it off (it was never acknowledged): expected {expected}"
                );
                return Ok(offset);
            }
        }
    }
    Ok(offset)
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
