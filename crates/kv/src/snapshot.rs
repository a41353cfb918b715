//! The snapshot format: the whole state machine (data, sessions, applied index and time) as a stream of
//! records, written key by key from a frozen view and read back the same way. The storage crate adds
//! the checksum and the atomic file handling; this format only has to be deterministic, versioned and
//! strict.
//!
//! # Format, version 1
//! ```text
//! magic    8 bytes   "RAFTKVSM"
//! version  u32 LE    1
//! records  each: u32 LE length, then that many bytes of one postcard-encoded `Record`:
//!   Header  { applied_index, time_ms, key_count, session_count }        exactly once, first
//!   Key     { key, value, expires_at_ms }                               key_count times, in key order
//!   Session { client_id, last_active_ms, lowest_unacked, reply_count }  session_count times, by client id
//!     Reply { sequence, reply }                                         reply_count times after each
//!                                                                       Session, by ascending sequence
//!   End                                                                 exactly once, last
//! ```
//! Key order is the store's (hash, then bytes; see the `store` module), so equal states give equal bytes.
//! The reader rejects anything else — wrong magic or version, a record out of order or out of place, a
//! count that does not match, a record over [`MAX_RECORD_BYTES`], bytes after `End` — with a
//! [`SnapshotError`], never a panic. Derived state (the deadline and activity indexes, the byte count) is
//! rebuilt, not stored.

use std::io::{self, Read, Write};

use bytes::Bytes;
use imbl::OrdMap;
use serde::{Deserialize, Serialize};

use crate::machine::{KvConfig, KvStateMachine};
use crate::reply::Reply;
use crate::request::ClientId;
use crate::session::{Session, Sessions};
use crate::store::{Key, Store, Value, MAX_STRING_BYTES};

/// First bytes of every snapshot.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"RAFTKVSM";

/// The format version this build writes (and the only one it reads).
pub const SNAPSHOT_FORMAT_VERSION: u32 = 1;

/// Largest record accepted: a maximal key and a maximal value, plus room for framing.
pub const MAX_RECORD_BYTES: u64 = 2 * MAX_STRING_BYTES as u64 + 4096;

/// Why a snapshot could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("reading the snapshot failed: {0}")]
    Io(#[from] io::Error),
    #[error("not a raftkv state machine snapshot (bad magic)")]
    BadMagic,
    #[error("snapshot format version {0} is not supported (this build reads {SNAPSHOT_FORMAT_VERSION})")]
    UnsupportedVersion(u32),
    #[error("snapshot ends early")]
    Truncated,
    #[error("snapshot record of {0} bytes exceeds the limit of {MAX_RECORD_BYTES}")]
    RecordTooLarge(u64),
    #[error("malformed snapshot: {0}")]
    Malformed(String),
}

#[derive(Serialize, Deserialize)]
enum Record {
    Header { applied_index: u64, time_ms: u64, key_count: u64, session_count: u64 },
    Key { key: Bytes, value: Bytes, expires_at_ms: Option<u64> },
    Session { client_id: ClientId, last_active_ms: u64, lowest_unacked: u64, reply_count: u64 },
    Reply { sequence: u64, reply: Reply },
    End,
}

/// A frozen view of the state machine at one applied index. Taking one is O(1) (persistent maps share
/// structure); it is `Send`, so it can be written from a background thread while applies go on.
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

    /// Writes the snapshot in the format above, record by record (wrap `writer` in a `BufWriter` if it is
    /// a file or a socket).
    pub fn write_to<W: Write>(&self, mut writer: W) -> io::Result<()> {
        writer.write_all(&SNAPSHOT_MAGIC)?;
        writer.write_all(&SNAPSHOT_FORMAT_VERSION.to_le_bytes())?;
        let mut buffer = Vec::new();
        let header = Record::Header {
            applied_index: self.applied_index,
            time_ms: self.time_ms,
            key_count: self.store.stored_len() as u64,
            session_count: self.sessions.len() as u64,
        };
        write_record(&mut writer, &mut buffer, &header)?;
        for (key, value) in self.store.iter() {
            let record = Record::Key {
                key: key.bytes.clone(),
                value: value.data.clone(),
                expires_at_ms: value.expires_at_ms,
            };
            write_record(&mut writer, &mut buffer, &record)?;
        }
        for (client_id, session) in self.sessions.iter() {
            let record = Record::Session {
                client_id: *client_id,
                last_active_ms: session.last_active_ms,
                lowest_unacked: session.lowest_unacked,
                reply_count: session.replies.len() as u64,
            };
            write_record(&mut writer, &mut buffer, &record)?;
            for (sequence, reply) in &session.replies {
                let record = Record::Reply { sequence: *sequence, reply: reply.clone() };
                write_record(&mut writer, &mut buffer, &record)?;
            }
        }
        write_record(&mut writer, &mut buffer, &Record::End)?;
        writer.flush()
    }

    /// The whole snapshot in memory (tests, small states).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        self.write_to(&mut bytes).expect("writing to a Vec cannot fail");
        bytes
    }
}

fn write_record<W: Write>(writer: &mut W, buffer: &mut Vec<u8>, record: &Record) -> io::Result<()> {
    buffer.clear();
    let encoded = postcard::to_extend(record, std::mem::take(buffer))
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    let length = u32::try_from(encoded.len())
        .ok()
        .filter(|&length| u64::from(length) <= MAX_RECORD_BYTES)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "snapshot record too large"))?;
    writer.write_all(&length.to_le_bytes())?;
    writer.write_all(&encoded)?;
    *buffer = encoded;
    Ok(())
}

fn read_exact_or_truncated<R: Read>(reader: &mut R, buffer: &mut [u8]) -> Result<(), SnapshotError> {
    reader.read_exact(buffer).map_err(|error| match error.kind() {
        io::ErrorKind::UnexpectedEof => SnapshotError::Truncated,
        _ => SnapshotError::Io(error),
    })
}

fn read_record<R: Read>(reader: &mut R) -> Result<Record, SnapshotError> {
    let mut length = [0u8; 4];
    read_exact_or_truncated(reader, &mut length)?;
    let length = u64::from(u32::from_le_bytes(length));
    if length > MAX_RECORD_BYTES {
        return Err(SnapshotError::RecordTooLarge(length));
    }
    // Grow the buffer with the data actually read, so a corrupt length cannot allocate gigabytes.
    let mut bytes = Vec::new();
    reader.take(length).read_to_end(&mut bytes)?;
    if bytes.len() as u64 != length {
        return Err(SnapshotError::Truncated);
    }
    match postcard::take_from_bytes::<Record>(&bytes) {
        Ok((record, [])) => Ok(record),
        Ok(_) => Err(SnapshotError::Malformed("a record has trailing bytes".into())),
        Err(error) => Err(SnapshotError::Malformed(error.to_string())),
    }
}

fn malformed(text: &str) -> SnapshotError {
    SnapshotError::Malformed(text.to_string())
}

impl KvStateMachine {
    /// Rebuilds a state machine from a snapshot written by [`Snapshot::write_to`]. The config is not in
    /// the snapshot: pass the cluster's.
    pub fn restore<R: Read>(config: KvConfig, mut reader: R) -> Result<KvStateMachine, SnapshotError> {
        let mut magic = [0u8; 8];
        read_exact_or_truncated(&mut reader, &mut magic)?;
        if magic != SNAPSHOT_MAGIC {
            return Err(SnapshotError::BadMagic);
        }
        let mut version = [0u8; 4];
        read_exact_or_truncated(&mut reader, &mut version)?;
        let version = u32::from_le_bytes(version);
        if version != SNAPSHOT_FORMAT_VERSION {
            return Err(SnapshotError::UnsupportedVersion(version));
        }
        let Record::Header { applied_index, time_ms, key_count, session_count } = read_record(&mut reader)?
        else {
            return Err(malformed("the first record is not the header"));
        };
        let store = read_keys(&mut reader, key_count)?;
        let sessions = read_sessions(&mut reader, session_count)?;
        if !matches!(read_record(&mut reader)?, Record::End) {
            return Err(malformed("more records than the header announced"));
        }
        if reader.read(&mut [0u8; 1])? != 0 {
            return Err(malformed("bytes after the end record"));
        }
        let machine = KvStateMachine::from_parts(config, applied_index, time_ms, store, sessions);
        debug_assert_eq!(machine.check_invariants(), Ok(()));
        Ok(machine)
    }
}

fn read_keys<R: Read>(reader: &mut R, key_count: u64) -> Result<Store, SnapshotError> {
    let mut store = Store::default();
    let mut previous: Option<Key> = None;
    for _ in 0..key_count {
        let Record::Key { key, value, expires_at_ms } = read_record(reader)? else {
            return Err(malformed("fewer keys than the header announced"));
        };
        let key = Key::new(key);
        if previous.as_ref().is_some_and(|previous| previous >= &key) {
            return Err(malformed("keys out of order"));
        }
        previous = Some(key.clone());
        store.insert(key, Value { data: value, expires_at_ms });
    }
    Ok(store)
}

fn read_sessions<R: Read>(reader: &mut R, session_count: u64) -> Result<Sessions, SnapshotError> {
    let mut sessions = Sessions::default();
    let mut previous: Option<ClientId> = None;
    for _ in 0..session_count {
        let Record::Session { client_id, last_active_ms, lowest_unacked, reply_count } = read_record(reader)?
        else {
            return Err(malformed("fewer sessions than the header announced"));
        };
        if previous.is_some_and(|previous| previous >= client_id) {
            return Err(malformed("sessions out of order"));
        }
        previous = Some(client_id);
        let mut replies = OrdMap::new();
        let mut previous_sequence: Option<u64> = None;
        for _ in 0..reply_count {
            let Record::Reply { sequence, reply } = read_record(reader)? else {
                return Err(malformed("fewer cached replies than the session announced"));
            };
            if sequence < lowest_unacked || previous_sequence.is_some_and(|p| p >= sequence) {
                return Err(malformed("cached replies out of order or below the watermark"));
            }
            previous_sequence = Some(sequence);
            replies.insert(sequence, reply);
        }
        sessions.restore(client_id, Session { last_active_ms, lowest_unacked, replies });
    }
    Ok(sessions)
}
