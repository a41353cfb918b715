//! The snapshot format: the whole state machine as a stream of records, written one record at a time from
//! a frozen view and read back the same way. This module's docs are the format's specification.
//!
//! The storage crate wraps these bytes in a snapshot file that carries the Raft metadata (index, term,
//! configuration) and a CRC32C over them, and publishes it atomically; this format does not repeat the
//! checksum. What it must be is complete, deterministic, versioned and strict:
//! - **complete**: everything [`KvStateMachine::apply`] depends on is in it, so a replica restored from a
//!   snapshot and then fed the same entries gives byte-identical replies and ends in a byte-identical
//!   state to one that applied every entry from the start;
//! - **deterministic**: equal states give equal bytes, whatever history led to them;
//! - **strict**: the reader accepts exactly what the writer produces and refuses anything else with a
//!   [`SnapshotError`] naming the byte offset and what it expected there — never a panic, and never an
//!   allocation sized by a number read from the stream.
//!
//! # Format, version 2
//! ```text
//! offset  size     field
//! 0       8        magic "RAFTKVSM"
//! 8       4        format version, u32 little-endian = 2
//! 12      ...      records, each: length u32 little-endian (at most MAX_RECORD_BYTES),
//!                  then that many bytes holding exactly one postcard-encoded `Record`
//! ```
//! | # | record | fields | where |
//! |---|--------|--------|-------|
//! | 0 | `Header` | `applied_index`, `time_ms`, `used_bytes`, `key_count`, `session_count` (all u64) | once, first |
//! | 1 | `Key` | `key` bytes, `value` bytes, `expires_at_ms` Option\<u64\> | `key_count` times, in strictly increasing key order |
//! | 2 | `Session` | `client_id` (`node_id`, `incarnation`, `counter`), `last_active_ms`, `lowest_unacked`, `reply_count` (u64) | `session_count` times, by increasing client id |
//! | 3 | `Reply` | `sequence` u64, `reply` [`Reply`] | `reply_count` times right after its `Session`, by increasing sequence |
//! | 4 | `End` | — | once, last; no byte may follow |
//!
//! Records use postcard 1.x's wire format: integers as varints, byte strings and strings as a varint
//! length then the bytes, `Option` as a 0/1 tag, enum variants as a varint of their position. So the
//! variant order of `Record` (the `#` column) and of [`Reply`] is part of the format: changing either is
//! a new version.
//!
//! ## Example
//! A state with `k` = `v` expiring at 5000, `n` = `1` without deadline, and session 1.2.3 holding the
//! cached reply `:1` of its sequence 1, at applied index 3 and time 1000 (the test
//! `the_format_is_pinned_by_a_golden_stream` checks these exact bytes):
//! ```text
//! 52 41 46 54 4b 56 53 4d                magic "RAFTKVSM"
//! 02 00 00 00                            version 2
//! 08 00 00 00  00 03 e8 07 84 01 02 01   Header: index 3, time 1000, used_bytes 132, 2 keys, 1 session
//! 06 00 00 00  01 01 6e 01 31 00         Key "n" = "1", no deadline ("n" hashes before "k")
//! 08 00 00 00  01 01 6b 01 76 01 88 27   Key "k" = "v", deadline Some(5000)
//! 08 00 00 00  02 01 02 03 e8 07 01 01   Session 1.2.3, last active 1000, watermark 1, 1 reply
//! 04 00 00 00  03 01 03 02               Reply sequence 1, Reply::Integer(1) (zigzag varint 2)
//! 01 00 00 00  04                        End
//! ```
//!
//! ## What each field restores, and why apply needs it
//! - `applied_index`: the next entry to apply is `applied_index + 1`. The caller checks that it equals
//!   the index in the snapshot file's metadata.
//! - `time_ms`: the expiry clock, the largest leader time applied. Without it, an entry stamped by a
//!   leader whose clock is behind would move "now" backwards and bring expired keys back.
//! - `used_bytes`: the byte count `maxmemory` is checked against. It is derived from the keys, so restore
//!   recomputes it and refuses the snapshot if the two disagree.
//! - `Key` records, **including keys that have expired but are not yet removed**: each entry removes
//!   only a bounded number of expired keys, so which of them are still stored decides `used_bytes`, the
//!   `-OOM` answers and later removals. Key order is the store's: by `key_hash` of the bytes, then by the
//!   bytes (see the `store` module). A deadline is absolute leader time in Unix milliseconds.
//! - `Session` and `Reply` records: the open sessions with their activity time (which decides expiry
//!   and eviction), their acknowledgement watermark and every cached reply, so that a command retried
//!   after the restore is answered from the cache instead of applying twice (dissertation §6.3).
//!
//! Not in the snapshot, on purpose:
//! - [`KvConfig`]: it is cluster configuration, passed to [`KvStateMachine::restore`]. It decides replies,
//!   so it must be the value the cluster runs with, as for any replica.
//! - The Raft term and configuration: the storage crate's snapshot metadata holds them. The state
//!   machine never sees terms (entries committed at an index are the same on every replica, §5.4.3), so
//!   it could only copy a number it cannot check.
//! - The deadline and activity indexes: rebuilt from the records.
//!
//! ## What the reader refuses
//! Each is a [`SnapshotError`] naming the byte offset and what was expected there:
//! a wrong magic; another format version; a stream that ends early (anywhere, including inside a
//! record); a record length over [`MAX_RECORD_BYTES`]; a record that does not decode, has bytes left
//! over, or is not byte for byte what the writer encodes for it (postcard also decodes varints padded
//! with `0x80` bytes, which would give one state two streams); a record of the wrong kind for its place (so a count that does not match the records is caught);
//! keys or sessions or cached replies out of order; a key or value over [`MAX_STRING_BYTES`]; a deadline
//! past `i64::MAX` milliseconds; a session active after the snapshot's time; a cached reply below its
//! session's watermark; a `used_bytes` that the keys do not add up to; any byte after `End`.
//! Memory stays bounded by the bytes actually present: a record's buffer grows only as its bytes arrive,
//! and counts only drive loops, never preallocation. Cached replies nest at most [`crate::MAX_REPLY_DEPTH`]
//! arrays deep, so a crafted stream cannot exhaust the stack either.
//!
//! ## Writing in bounded pieces
//! [`Snapshot::write_to`] encodes one record at a time into a reused buffer and hands it to the writer
//! with one `write_all`, so memory beyond the frozen view is one record — at most one key and its value.
//! A record larger than [`MAX_RECORD_BYTES`] (only a cached reply holding several maximal values could
//! be) makes the write fail with [`std::io::ErrorKind::InvalidData`] rather than produce a snapshot that
//! no reader accepts.
//!
//! ## History
//! Version 1 (never written to disk by a released build) lacked `used_bytes`; this build refuses it.

use std::fmt;
use std::io::{self, Read, Write};

use bytes::Bytes;
use imbl::OrdMap;
use serde::{Deserialize, Serialize};

use crate::machine::{KvConfig, KvStateMachine};
use crate::reply::Reply;
use crate::request::ClientId;
use crate::session::{Session, Sessions};
use crate::store::{Key, Store, Value, MAX_DEADLINE_MS, MAX_STRING_BYTES};

/// First bytes of every snapshot.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"RAFTKVSM";

/// The format version this build writes (and the only one it reads).
pub const SNAPSHOT_FORMAT_VERSION: u32 = 2;

/// Largest record accepted: a maximal key and a maximal value, plus room for framing.
pub const MAX_RECORD_BYTES: u64 = 2 * MAX_STRING_BYTES as u64 + 4096;

/// A record buffer that grew past this (a huge value went through it) is dropped rather than kept for
/// the rest of the stream.
const RETAINED_BUFFER_BYTES: usize = 1 << 20;

/// Why a snapshot could not be read. Offsets count bytes from the start of the snapshot stream.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("reading the snapshot failed: {0}")]
    Io(#[from] io::Error),
    #[error("not a raftkv state machine snapshot (the first 8 bytes are not \"RAFTKVSM\")")]
    BadMagic,
    #[error("snapshot format version {0} is not supported (this build reads {SNAPSHOT_FORMAT_VERSION})")]
    UnsupportedVersion(u32),
    #[error("snapshot ends early at byte {offset}: expected {expected}")]
    Truncated { offset: u64, expected: String },
    #[error("snapshot record at byte {offset} claims {length} bytes, over the limit of {MAX_RECORD_BYTES}")]
    RecordTooLarge { offset: u64, length: u64 },
    #[error("malformed snapshot at byte {offset}: {what}")]
    Malformed { offset: u64, what: String },
}

/// One record of the stream. The variant order is part of the format (see the module docs).
#[derive(Serialize, Deserialize)]
enum Record {
    Header(Header),
    Key { key: Bytes, value: Bytes, expires_at_ms: Option<u64> },
    Session { client_id: ClientId, last_active_ms: u64, lowest_unacked: u64, reply_count: u64 },
    Reply { sequence: u64, reply: Reply },
    End,
}

#[derive(Clone, Copy, Serialize, Deserialize)]
struct Header {
    applied_index: u64,
    time_ms: u64,
    used_bytes: u64,
    key_count: u64,
    session_count: u64,
}

impl Record {
    fn kind(&self) -> &'static str {
        match self {
            Record::Header(_) => "a header record",
            Record::Key { .. } => "a key record",
            Record::Session { .. } => "a session record",
            Record::Reply { .. } => "a cached-reply record",
            Record::End => "the end record",
        }
    }
}

/// A frozen view of the state machine at one applied index. Taking one is O(1) (persistent maps share
/// structure with the live state, which copies a path only when it next writes there); it is
/// `Send + Sync + 'static`, so it can be written from a background thread while applies go on, and it
/// never changes.
#[derive(Clone, Debug)]
pub struct Snapshot {
    applied_index: u64,
    time_ms: u64,
    store: Store,
    sessions: Sessions,
}

impl Snapshot {
    pub(crate) fn new(applied_index: u64, time_ms: u64, store: Store, sessions: Sessions) -> Snapshot {
        Snapshot { applied_index, time_ms, store, sessions }
    }

    /// The log index the snapshot reflects: the log may be compacted up to it.
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// Writes the snapshot in the format above, one record per `write_all` (wrap `writer` in a
    /// `BufWriter` if it is an unbuffered file or socket), then flushes it.
    pub fn write_to<W: Write>(&self, writer: W) -> io::Result<()> {
        let mut out = RecordWriter { writer, buffer: Vec::new() };
        out.writer.write_all(&SNAPSHOT_MAGIC)?;
        out.writer.write_all(&SNAPSHOT_FORMAT_VERSION.to_le_bytes())?;
        out.write(&Record::Header(Header {
            applied_index: self.applied_index,
            time_ms: self.time_ms,
            used_bytes: self.store.used_bytes(),
            key_count: self.store.stored_len() as u64,
            session_count: self.sessions.len() as u64,
        }))?;
        for (key, value) in self.store.iter() {
            out.write(&Record::Key {
                key: key.bytes.clone(),
                value: value.data.clone(),
                expires_at_ms: value.expires_at_ms,
            })?;
        }
        for (client_id, session) in self.sessions.iter() {
            out.write(&Record::Session {
                client_id: *client_id,
                last_active_ms: session.last_active_ms,
                lowest_unacked: session.lowest_unacked,
                reply_count: session.replies.len() as u64,
            })?;
            for (sequence, reply) in &session.replies {
                out.write(&Record::Reply { sequence: *sequence, reply: reply.clone() })?;
            }
        }
        out.write(&Record::End)?;
        out.writer.flush()
    }

    /// The whole snapshot in memory (tests, small states).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        self.write_to(&mut bytes).expect("writing to a Vec cannot fail");
        bytes
    }
}

struct RecordWriter<W> {
    writer: W,
    /// Reused between records: the length prefix, then the encoded record.
    buffer: Vec<u8>,
}

impl<W: Write> RecordWriter<W> {
    fn write(&mut self, record: &Record) -> io::Result<()> {
        let mut buffer = std::mem::take(&mut self.buffer);
        buffer.clear();
        buffer.extend_from_slice(&[0; 4]);
        let mut buffer = postcard::to_extend(record, buffer)
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error.to_string()))?;
        let length = buffer.len() - 4;
        let length = u32::try_from(length)
            .ok()
            .filter(|&length| u64::from(length) <= MAX_RECORD_BYTES)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} of {length} bytes exceeds the snapshot record limit", record.kind()),
                )
            })?;
        buffer[..4].copy_from_slice(&length.to_le_bytes());
        self.writer.write_all(&buffer)?;
        if buffer.capacity() <= RETAINED_BUFFER_BYTES {
            self.buffer = buffer;
        }
        Ok(())
    }
}

/// What the reader expects next, formatted only when an error needs it (restoring 100k keys should not
/// format 100k descriptions).
#[derive(Clone, Copy)]
struct Describe<F>(F);

fn describe<F: Fn(&mut fmt::Formatter<'_>) -> fmt::Result>(write: F) -> Describe<F> {
    Describe(write)
}

impl<F: Fn(&mut fmt::Formatter<'_>) -> fmt::Result> fmt::Display for Describe<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (self.0)(f)
    }
}

/// Reads records and remembers where it is, so that every error names a byte offset.
struct RecordReader<R> {
    reader: R,
    /// Bytes consumed so far.
    offset: u64,
    /// Where the record last returned by `next` started.
    record_offset: u64,
    buffer: Vec<u8>,
    /// Reused between records: the record just decoded, encoded again, to check that its bytes are the
    /// writer's (see [`RecordReader::next`]).
    canonical: Vec<u8>,
}

impl<R: Read> RecordReader<R> {
    fn read_exact(&mut self, out: &mut [u8], expected: impl fmt::Display) -> Result<(), SnapshotError> {
        match self.reader.read_exact(out) {
            Ok(()) => {
                self.offset += out.len() as u64;
                Ok(())
            }
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => {
                Err(SnapshotError::Truncated { offset: self.offset, expected: expected.to_string() })
            }
            Err(error) => Err(SnapshotError::Io(error)),
        }
    }

    /// Reads the next record; `expected` says what should come, for the error messages.
    fn next(&mut self, expected: impl fmt::Display) -> Result<Record, SnapshotError> {
        self.record_offset = self.offset;
        let mut length = [0u8; 4];
        self.read_exact(&mut length, format_args!("the length of {expected}"))?;
        let length = u64::from(u32::from_le_bytes(length));
        if length > MAX_RECORD_BYTES {
            return Err(SnapshotError::RecordTooLarge { offset: self.record_offset, length });
        }
        // Grow the buffer with the bytes actually read, so a corrupt length cannot allocate gigabytes.
        self.buffer.clear();
        let read = (&mut self.reader).take(length).read_to_end(&mut self.buffer)? as u64;
        self.offset += read;
        if read != length {
            return Err(SnapshotError::Truncated {
                offset: self.offset,
                expected: format!("{} more bytes of {expected}", length - read),
            });
        }
        let record = match postcard::take_from_bytes::<Record>(&self.buffer) {
            Ok((record, [])) => record,
            Ok((_, rest)) => {
                return Err(self.malformed(format!("{expected} has {} bytes left over", rest.len())))
            }
            Err(error) => return Err(self.malformed(format!("{expected} does not decode: {error}"))),
        };
        self.check_canonical(&record, &expected)?;
        if self.buffer.capacity() > RETAINED_BUFFER_BYTES {
            self.buffer = Vec::new();
            self.canonical = Vec::new();
        }
        Ok(record)
    }

    /// Postcard decodes some values from more than one byte string (a varint may be padded with
    /// `0x80` bytes: `ff 00` reads as 127, which the writer encodes `7f`). Accepting those would make the
    /// format ambiguous — two streams for one state — so a record must be exactly the bytes the writer
    /// gives for it. Found by the `kv_restore` fuzz target.
    fn check_canonical(
        &mut self,
        record: &Record,
        expected: &impl fmt::Display,
    ) -> Result<(), SnapshotError> {
        let mut canonical = std::mem::take(&mut self.canonical);
        canonical.clear();
        let canonical = postcard::to_extend(record, canonical)
            .map_err(|error| self.malformed(format!("{expected} does not encode again: {error}")))?;
        let same = canonical == self.buffer;
        self.canonical = canonical;
        if same {
            Ok(())
        } else {
            Err(self.malformed(format!("{expected} is not in the writer's encoding (a padded varint?)")))
        }
    }

    /// An error about the record last read.
    fn malformed(&self, what: String) -> SnapshotError {
        SnapshotError::Malformed { offset: self.record_offset, what }
    }

    fn unexpected(&self, expected: impl fmt::Display, found: &Record) -> SnapshotError {
        self.malformed(format!("expected {expected}, found {}", found.kind()))
    }
}

impl KvStateMachine {
    /// Rebuilds a state machine from a snapshot written by [`Snapshot::write_to`], reading it to its end
    /// (so a checksumming reader sees every byte). The config is not in the snapshot: pass the cluster's.
    /// Anything but a whole, well-formed snapshot is a [`SnapshotError`] (module docs), never a panic.
    pub fn restore<R: Read>(config: KvConfig, reader: R) -> Result<KvStateMachine, SnapshotError> {
        let mut reader =
            RecordReader { reader, offset: 0, record_offset: 0, buffer: Vec::new(), canonical: Vec::new() };
        let mut magic = [0u8; 8];
        reader.read_exact(&mut magic, "the magic \"RAFTKVSM\"")?;
        if magic != SNAPSHOT_MAGIC {
            return Err(SnapshotError::BadMagic);
        }
        let mut version = [0u8; 4];
        reader.read_exact(&mut version, "the format version")?;
        let version = u32::from_le_bytes(version);
        if version != SNAPSHOT_FORMAT_VERSION {
            return Err(SnapshotError::UnsupportedVersion(version));
        }
        let header = match reader.next("the header record")? {
            Record::Header(header) => header,
            other => return Err(reader.unexpected("the header record", &other)),
        };
        let store = read_keys(&mut reader, &header)?;
        if store.used_bytes() != header.used_bytes {
            return Err(reader.malformed(format!(
                "the header's used_bytes {} is not what the keys add up to ({})",
                header.used_bytes,
                store.used_bytes()
            )));
        }
        let sessions = read_sessions(&mut reader, &header)?;
        match reader.next("the end record")? {
            Record::End => {}
            other => {
                return Err(reader.unexpected("the end record (the header's counts are used up)", &other))
            }
        }
        let mut rest = Vec::new();
        if (&mut reader.reader).take(1).read_to_end(&mut rest)? != 0 {
            return Err(SnapshotError::Malformed {
                offset: reader.offset,
                what: "bytes after the end record".into(),
            });
        }
        let machine =
            KvStateMachine::from_parts(config, header.applied_index, header.time_ms, store, sessions);
        debug_assert_eq!(machine.check_invariants(), Ok(()));
        Ok(machine)
    }
}

fn read_keys<R: Read>(reader: &mut RecordReader<R>, header: &Header) -> Result<Store, SnapshotError> {
    let mut store = Store::default();
    let mut previous: Option<Key> = None;
    for number in 1..=header.key_count {
        let expected = describe(|f| write!(f, "key record {number} of {}", header.key_count));
        let (key, value, expires_at_ms) = match reader.next(expected)? {
            Record::Key { key, value, expires_at_ms } => (key, value, expires_at_ms),
            other => return Err(reader.unexpected(expected, &other)),
        };
        if key.len() > MAX_STRING_BYTES || value.len() > MAX_STRING_BYTES {
            return Err(reader.malformed(format!("{expected} holds a string over {MAX_STRING_BYTES} bytes")));
        }
        if expires_at_ms.is_some_and(|deadline| deadline > MAX_DEADLINE_MS) {
            return Err(reader.malformed(format!("{expected} has a deadline past i64::MAX milliseconds")));
        }
        let key = Key::new(key);
        if previous.as_ref().is_some_and(|previous| previous >= &key) {
            return Err(reader.malformed(format!("{expected}: keys out of order")));
        }
        previous = Some(key.clone());
        store.insert(key, Value { data: value, expires_at_ms });
    }
    Ok(store)
}

fn read_sessions<R: Read>(reader: &mut RecordReader<R>, header: &Header) -> Result<Sessions, SnapshotError> {
    let mut sessions = Sessions::default();
    let mut previous: Option<ClientId> = None;
    for number in 1..=header.session_count {
        let expected = describe(|f| write!(f, "session record {number} of {}", header.session_count));
        let (client_id, last_active_ms, lowest_unacked, reply_count) = match reader.next(expected)? {
            Record::Session { client_id, last_active_ms, lowest_unacked, reply_count } => {
                (client_id, last_active_ms, lowest_unacked, reply_count)
            }
            other => return Err(reader.unexpected(expected, &other)),
        };
        if previous.is_some_and(|previous| previous >= client_id) {
            return Err(reader.malformed(format!("{expected}: sessions out of order")));
        }
        if last_active_ms > header.time_ms {
            return Err(reader.malformed(format!(
                "{expected}: session {client_id} was active at {last_active_ms}, after the snapshot's time {}",
                header.time_ms
            )));
        }
        previous = Some(client_id);
        let replies = read_replies(reader, client_id, lowest_unacked, reply_count)?;
        sessions.restore(client_id, Session { last_active_ms, lowest_unacked, replies });
    }
    Ok(sessions)
}

fn read_replies<R: Read>(
    reader: &mut RecordReader<R>,
    client_id: ClientId,
    lowest_unacked: u64,
    reply_count: u64,
) -> Result<OrdMap<u64, Reply>, SnapshotError> {
    let mut replies = OrdMap::new();
    let mut previous: Option<u64> = None;
    for number in 1..=reply_count {
        let expected =
            describe(|f| write!(f, "cached reply {number} of {reply_count} of session {client_id}"));
        let (sequence, reply) = match reader.next(expected)? {
            Record::Reply { sequence, reply } => (sequence, reply),
            other => return Err(reader.unexpected(expected, &other)),
        };
        if sequence < lowest_unacked || previous.is_some_and(|previous| previous >= sequence) {
            return Err(reader.malformed(format!(
                "{expected}: sequence {sequence} out of order or below the watermark {lowest_unacked}"
            )));
        }
        previous = Some(sequence);
        replies.insert(sequence, reply);
    }
    Ok(replies)
}

#[cfg(test)]
mod tests {
    //! Streams no writer produces, crafted record by record, to check that the reader refuses each with a
    //! clear error.

    use super::*;

    fn header(key_count: u64, session_count: u64) -> Header {
        Header { applied_index: 7, time_ms: 1_000, used_bytes: 0, key_count, session_count }
    }

    fn stream(records: &[Record]) -> Vec<u8> {
        let mut out = RecordWriter { writer: Vec::new(), buffer: Vec::new() };
        out.writer.extend_from_slice(&SNAPSHOT_MAGIC);
        out.writer.extend_from_slice(&SNAPSHOT_FORMAT_VERSION.to_le_bytes());
        for record in records {
            out.write(record).unwrap();
        }
        out.writer
    }

    fn refusal(records: &[Record]) -> String {
        match KvStateMachine::restore(KvConfig::default(), stream(records).as_slice()) {
            Ok(_) => panic!("a crafted stream was accepted"),
            Err(error) => error.to_string(),
        }
    }

    fn key(key: &'static str, value: &'static str, expires_at_ms: Option<u64>) -> Record {
        Record::Key {
            key: Bytes::from_static(key.as_bytes()),
            value: Bytes::from_static(value.as_bytes()),
            expires_at_ms,
        }
    }

    const CLIENT: ClientId = ClientId { node_id: 1, incarnation: 1, counter: 1 };

    fn session(last_active_ms: u64, lowest_unacked: u64, reply_count: u64) -> Record {
        Record::Session { client_id: CLIENT, last_active_ms, lowest_unacked, reply_count }
    }

    #[test]
    fn the_smallest_snapshot_restores() {
        let machine = KvStateMachine::restore(
            KvConfig::default(),
            stream(&[Record::Header(header(0, 0)), Record::End]).as_slice(),
        )
        .unwrap();
        assert_eq!((machine.applied_index(), machine.time_ms(), machine.key_count()), (7, 1_000, 0));
    }

    #[test]
    fn absurd_counts_cost_only_the_records_present() {
        let text = refusal(&[Record::Header(header(u64::MAX, 0)), Record::End]);
        assert!(
            text.ends_with("expected key record 1 of 18446744073709551615, found the end record"),
            "{text}"
        );
        let text = refusal(&[Record::Header(header(0, u64::MAX)), session(5, 0, u64::MAX), Record::End]);
        assert!(text.contains("expected cached reply 1 of 18446744073709551615 of session 1.1.1"), "{text}");
    }

    #[test]
    fn more_records_than_the_header_announced_are_refused() {
        let text = refusal(&[Record::Header(header(0, 0)), key("a", "1", None), Record::End]);
        assert!(
            text.contains("expected the end record (the header's counts are used up), found a key record"),
            "{text}"
        );
    }

    #[test]
    fn a_byte_count_the_keys_do_not_add_up_to_is_refused() {
        let text = refusal(&[Record::Header(header(1, 0)), key("a", "1", None), Record::End]);
        assert!(text.contains("used_bytes 0 is not what the keys add up to (66)"), "{text}");
    }

    #[test]
    fn a_deadline_no_command_can_set_is_refused() {
        let mut head = header(1, 0);
        head.used_bytes = 66;
        let text = refusal(&[Record::Header(head), key("a", "1", Some(u64::MAX)), Record::End]);
        assert!(text.contains("key record 1 of 1 has a deadline past i64::MAX"), "{text}");
    }

    #[test]
    fn a_session_active_after_the_snapshot_time_is_refused() {
        let text = refusal(&[Record::Header(header(0, 1)), session(1_001, 0, 0), Record::End]);
        assert!(text.contains("after the snapshot's time 1000"), "{text}");
    }

    #[test]
    fn cached_replies_below_the_watermark_or_out_of_order_are_refused() {
        let reply = |sequence| Record::Reply { sequence, reply: Reply::Ok };
        let below = refusal(&[Record::Header(header(0, 1)), session(5, 3, 1), reply(2), Record::End]);
        assert!(below.contains("sequence 2 out of order or below the watermark 3"), "{below}");
        let repeated =
            refusal(&[Record::Header(header(0, 1)), session(5, 3, 2), reply(4), reply(4), Record::End]);
        assert!(
            repeated.contains("cached reply 2 of 2 of session 1.1.1: sequence 4 out of order"),
            "{repeated}"
        );
    }

    /// Found by the `kv_restore` fuzz target: `ff 00` is an overlong varint for 127 that postcard
    /// decodes; the stream is then not the one the writer produces for its state.
    #[test]
    fn a_padded_varint_is_refused_though_postcard_decodes_it() {
        let mut head = header(0, 0);
        head.applied_index = 127;
        let canonical = stream(&[Record::Header(head), Record::End]);
        // The header record: length (4 bytes), variant 0, then applied_index 127 as `7f`.
        let at = 12 + 4 + 1;
        assert_eq!(canonical[at], 0x7f);
        let mut padded = canonical.clone();
        padded.splice(at..=at, [0xff, 0x00]);
        padded[12] += 1; // the record is one byte longer
        assert!(KvStateMachine::restore(KvConfig::default(), canonical.as_slice()).is_ok());
        let error = KvStateMachine::restore(KvConfig::default(), padded.as_slice()).unwrap_err();
        assert!(
            matches!(error, SnapshotError::Malformed { offset: 12, ref what }
                if what == "the header record is not in the writer's encoding (a padded varint?)"),
            "{error}"
        );
    }

    #[test]
    fn a_record_that_does_not_decode_is_refused_with_its_offset() {
        let mut bytes = stream(&[Record::Header(header(0, 0)), Record::End]);
        let end = bytes.len() - 1;
        bytes[end] = 200; // no such record variant
        let error = KvStateMachine::restore(KvConfig::default(), bytes.as_slice()).unwrap_err();
        assert!(
            matches!(error, SnapshotError::Malformed { offset, ref what }
                if offset == end as u64 - 4 && what.starts_with("the end record does not decode")),
            "{error}"
        );
    }
}
