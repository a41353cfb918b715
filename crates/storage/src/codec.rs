//! Little-endian encoding helpers and the field-by-field encoding of entries, hard states and
//! configurations (specified in the crate docs, "Items").

use std::collections::BTreeSet;

use bytes::Bytes;
use raft::{Configuration, Entry, EntryPayload, HardState, NodeId, SnapshotMeta};

/// Appends little-endian fields to a buffer.
#[derive(Default)]
pub(crate) struct Encoder {
    pub(crate) buf: Vec<u8>,
}

impl Encoder {
    pub(crate) fn u8(&mut self, value: u8) {
        self.buf.push(value);
    }
    pub(crate) fn u32(&mut self, value: u32) {
        self.buf.extend_from_slice(&value.to_le_bytes());
    }
    pub(crate) fn u64(&mut self, value: u64) {
        self.buf.extend_from_slice(&value.to_le_bytes());
    }
    pub(crate) fn bytes(&mut self, value: &[u8]) {
        self.buf.extend_from_slice(value);
    }
}

/// Reads little-endian fields; every read is bounds-checked and failure names what was being read.
pub(crate) struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// What could not be decoded (a field name), and where in the decoded buffer.
#[derive(Debug)]
pub(crate) struct DecodeError {
    pub(crate) pos: usize,
    pub(crate) what: String,
}

pub(crate) type DecodeResult<T> = Result<T, DecodeError>;

impl<'a> Decoder<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Decoder<'a> {
        Decoder { buf, pos: 0 }
    }
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    pub(crate) fn fail<T>(&self, what: impl Into<String>) -> DecodeResult<T> {
        Err(DecodeError { pos: self.pos, what: what.into() })
    }
    pub(crate) fn take(&mut self, n: usize, what: &str) -> DecodeResult<&'a [u8]> {
        if self.remaining() < n {
            return self.fail(format!("{what} ({n} bytes, but only {} remain)", self.remaining()));
        }
        let slice = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(slice)
    }
    pub(crate) fn u8(&mut self, what: &str) -> DecodeResult<u8> {
        Ok(self.take(1, what)?[0])
    }
    pub(crate) fn u32(&mut self, what: &str) -> DecodeResult<u32> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into().expect("4 bytes")))
    }
    pub(crate) fn u64(&mut self, what: &str) -> DecodeResult<u64> {
        Ok(u64::from_le_bytes(self.take(8, what)?.try_into().expect("8 bytes")))
    }
}

const PAYLOAD_NOOP: u8 = 0;
const PAYLOAD_COMMAND: u8 = 1;
const PAYLOAD_CONFIG: u8 = 2;

pub(crate) fn encode_entry(enc: &mut Encoder, entry: &Entry) {
    enc.u64(entry.index);
    enc.u64(entry.term);
    match &entry.payload {
        EntryPayload::Noop => enc.u8(PAYLOAD_NOOP),
        EntryPayload::Command(data) => {
            enc.u8(PAYLOAD_COMMAND);
            enc.u32(u32::try_from(data.len()).expect("a command under 4 GiB"));
            enc.bytes(data);
        }
        EntryPayload::Config(config) => {
            enc.u8(PAYLOAD_CONFIG);
            encode_configuration(enc, config);
        }
    }
}

pub(crate) fn decode_entry(dec: &mut Decoder<'_>) -> DecodeResult<Entry> {
    let index = dec.u64("entry index")?;
    let term = dec.u64("entry term")?;
    let payload = match dec.u8("entry payload kind")? {
        PAYLOAD_NOOP => EntryPayload::Noop,
        PAYLOAD_COMMAND => {
            let len = dec.u32("command length")? as usize;
            EntryPayload::Command(Bytes::copy_from_slice(dec.take(len, "command bytes")?))
        }
        PAYLOAD_CONFIG => EntryPayload::Config(decode_configuration(dec)?),
        other => return dec.fail(format!("entry payload kind 0, 1 or 2, found {other}")),
    };
    Ok(Entry { index, term, payload })
}

fn encode_set(enc: &mut Encoder, set: &BTreeSet<NodeId>) {
    enc.u32(u32::try_from(set.len()).expect("fewer than 2^32 members"));
    for &id in set {
        enc.u64(id);
    }
}

fn decode_set(dec: &mut Decoder<'_>, what: &str) -> DecodeResult<BTreeSet<NodeId>> {
    let count = dec.u32(what)? as usize;
    if count > dec.remaining() / 8 {
        return dec.fail(format!("{what}: {count} node ids, but only {} bytes remain", dec.remaining()));
    }
    let mut set = BTreeSet::new();
    for _ in 0..count {
        if !set.insert(dec.u64(what)?) {
            return dec.fail(format!("{what}: distinct node ids"));
        }
    }
    Ok(set)
}

pub(crate) fn encode_configuration(enc: &mut Encoder, config: &Configuration) {
    encode_set(enc, &config.voters);
    encode_set(enc, &config.outgoing_voters);
    encode_set(enc, &config.learners);
}

pub(crate) fn decode_configuration(dec: &mut Decoder<'_>) -> DecodeResult<Configuration> {
    Ok(Configuration {
        voters: decode_set(dec, "voters")?,
        outgoing_voters: decode_set(dec, "outgoing voters")?,
        learners: decode_set(dec, "learners")?,
    })
}

pub(crate) fn encode_hard_state(enc: &mut Encoder, hard_state: &HardState) {
    enc.u64(hard_state.term);
    enc.u64(hard_state.vote.unwrap_or(0));
    enc.u64(hard_state.commit);
}

pub(crate) fn decode_hard_state(dec: &mut Decoder<'_>) -> DecodeResult<HardState> {
    let term = dec.u64("hard state term")?;
    let vote = dec.u64("hard state vote")?;
    let commit = dec.u64("hard state commit")?;
    Ok(HardState { term, vote: (vote != 0).then_some(vote), commit })
}

pub(crate) fn encode_snapshot_meta(enc: &mut Encoder, meta: &SnapshotMeta) {
    enc.u64(meta.index);
    enc.u64(meta.term);
    encode_configuration(enc, &meta.configuration);
}

pub(crate) fn decode_snapshot_meta(dec: &mut Decoder<'_>) -> DecodeResult<SnapshotMeta> {
    let index = dec.u64("snapshot index")?;
    let term = dec.u64("snapshot term")?;
    let configuration = decode_configuration(dec)?;
    Ok(SnapshotMeta { index, term, configuration })
}
