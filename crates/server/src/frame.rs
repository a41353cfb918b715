//! The peer wire format, pure (no I/O), so it can be tested byte by byte.
//!
//! A connection starts with a **hello** in each direction (the connecting side first):
//!
//! | bytes | field |
//! |---|---|
//! | 8 | magic `"RAFTKVPR"` |
//! | 4 | protocol version `u32` (= [`PROTOCOL_VERSION`]) |
//! | 8 | cluster id `u64` |
//! | 8 | node id `u64` (the sender's) |
//! | 4 | CRC32C `u32` of the 28 bytes before it |
//!
//! A hello with another magic, version or cluster id is refused: the connection is closed and the reason
//! logged. Node ids are *not* checked against the configuration, so a node being added gets through.
//!
//! Then the connecting side sends **frames**, back to back: `length u32` (of the payload, at most
//! the receiver's `max_peer_frame_bytes`, by default [`MAX_FRAME_BYTES`]) · `crc32c u32` of the payload ·
//! the payload, a postcard-encoded [`node::PeerMessage`]. A frame that is too long is refused from its
//! header, before any of it is buffered; that, or a frame that fails its checksum or does not decode,
//! closes that connection (the sender reconnects; Raft tolerates the lost messages). All integers are
//! little-endian.

use bytes::{Buf, BufMut, BytesMut};
use node::PeerMessage;
use raft::NodeId;

pub const MAGIC: [u8; 8] = *b"RAFTKVPR";
pub const PROTOCOL_VERSION: u32 = 1;
pub const HELLO_BYTES: usize = 32;
const FRAME_HEADER_BYTES: usize = 8;
/// The largest payload accepted unless configured (`max_peer_frame_bytes`): the largest client request
/// (a value may be up to 512 MiB, Redis's limit) plus room for the AppendEntries around it.
pub const MAX_FRAME_BYTES: usize = resp::DEFAULT_MAX_REQUEST_BYTES + crate::limits::PEER_FRAME_HEADROOM_BYTES;

/// Who is on the other end of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello {
    pub version: u32,
    pub cluster_id: u64,
    pub node_id: NodeId,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("not a raftkv peer (bad magic {0:02x?})")]
    BadMagic([u8; 8]),
    #[error("hello checksum mismatch")]
    BadHelloChecksum,
    #[error("peer speaks protocol version {found}, this node speaks {PROTOCOL_VERSION}")]
    Version { found: u32 },
    #[error("peer belongs to cluster {found:#x}, this node to cluster {expected:#x}")]
    OtherCluster { expected: u64, found: u64 },
    #[error("frame of {length} bytes is over the limit of {max} bytes (max_peer_frame_bytes)")]
    TooLong { length: usize, max: usize },
    #[error("frame checksum mismatch")]
    BadChecksum,
    #[error("frame does not decode: {0}")]
    Undecodable(String),
}

pub fn encode_hello(cluster_id: u64, node_id: NodeId) -> [u8; HELLO_BYTES] {
    let mut buf = [0u8; HELLO_BYTES];
    buf[..8].copy_from_slice(&MAGIC);
    buf[8..12].copy_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    buf[12..20].copy_from_slice(&cluster_id.to_le_bytes());
    buf[20..28].copy_from_slice(&node_id.to_le_bytes());
    let crc = crc32c::crc32c(&buf[..28]);
    buf[28..32].copy_from_slice(&crc.to_le_bytes());
    buf
}

/// Decodes a hello and checks that it belongs to `cluster_id` and our protocol version.
pub fn check_hello(buf: &[u8; HELLO_BYTES], cluster_id: u64) -> Result<Hello, FrameError> {
    let magic: [u8; 8] = buf[..8].try_into().expect("8 bytes");
    if magic != MAGIC {
        return Err(FrameError::BadMagic(magic));
    }
    let crc = u32::from_le_bytes(buf[28..32].try_into().expect("4 bytes"));
    if crc32c::crc32c(&buf[..28]) != crc {
        return Err(FrameError::BadHelloChecksum);
    }
    let version = u32::from_le_bytes(buf[8..12].try_into().expect("4 bytes"));
    if version != PROTOCOL_VERSION {
        return Err(FrameError::Version { found: version });
    }
    let found = u64::from_le_bytes(buf[12..20].try_into().expect("8 bytes"));
    if found != cluster_id {
        return Err(FrameError::OtherCluster { expected: cluster_id, found });
    }
    let node_id = u64::from_le_bytes(buf[20..28].try_into().expect("8 bytes"));
    Ok(Hello { version, cluster_id, node_id })
}

/// One frame holding `message`, on its own.
pub fn frame_bytes(message: &PeerMessage) -> bytes::Bytes {
    let mut out = BytesMut::new();
    encode_frame(message, &mut out);
    out.freeze()
}

/// Appends one frame holding `message` to `out`.
pub fn encode_frame(message: &PeerMessage, out: &mut BytesMut) {
    let payload = postcard::to_allocvec(message).expect("a PeerMessage always serializes");
    out.reserve(FRAME_HEADER_BYTES + payload.len());
    out.put_u32_le(payload.len() as u32);
    out.put_u32_le(crc32c::crc32c(&payload));
    out.put_slice(&payload);
}

/// Takes one whole frame off the front of `buf`, if one is there. `Ok(None)` means "read more". A frame
/// whose payload is over `max_frame_bytes` is an error as soon as its header is here.
pub fn decode_frame(buf: &mut BytesMut, max_frame_bytes: usize) -> Result<Option<PeerMessage>, FrameError> {
    if buf.len() < FRAME_HEADER_BYTES {
        return Ok(None);
    }
    let length = u32::from_le_bytes(buf[..4].try_into().expect("4 bytes")) as usize;
    if length > max_frame_bytes {
        return Err(FrameError::TooLong { length, max: max_frame_bytes });
    }
    if buf.len() < FRAME_HEADER_BYTES + length {
        // Reserve only what has a chance of arriving soon, not the whole claimed length at once.
        buf.reserve((FRAME_HEADER_BYTES + length - buf.len()).min(1 << 20));
        return Ok(None);
    }
    let crc = u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes"));
    buf.advance(FRAME_HEADER_BYTES);
    let payload = buf.split_to(length);
    if crc32c::crc32c(&payload) != crc {
        return Err(FrameError::BadChecksum);
    }
    postcard::from_bytes(&payload).map(Some).map_err(|e| FrameError::Undecodable(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> PeerMessage {
        PeerMessage::ReadIndexRequest { ctx: 42 }
    }

    #[test]
    fn frames_round_trip_one_byte_at_a_time() {
        let mut encoded = BytesMut::new();
        encode_frame(&sample(), &mut encoded);
        encode_frame(
            &PeerMessage::ReadIndexResponse { ctx: 1, index: Some(9), leader_hint: None },
            &mut encoded,
        );
        let mut buf = BytesMut::new();
        let mut decoded = Vec::new();
        for byte in encoded.iter() {
            buf.put_u8(*byte);
            while let Some(message) = decode_frame(&mut buf, MAX_FRAME_BYTES).unwrap() {
                decoded.push(message);
            }
        }
        assert_eq!(decoded.len(), 2);
        assert_eq!(decoded[0], sample());
        assert!(buf.is_empty());
    }

    #[test]
    fn a_flipped_bit_is_a_checksum_error() {
        let mut buf = BytesMut::new();
        encode_frame(&sample(), &mut buf);
        let last = buf.len() - 1;
        buf[last] ^= 1;
        assert_eq!(decode_frame(&mut buf, MAX_FRAME_BYTES), Err(FrameError::BadChecksum));
    }

    #[test]
    fn garbage_with_a_valid_checksum_is_undecodable_not_a_panic() {
        let payload = [0xffu8; 16];
        let mut buf = BytesMut::new();
        buf.put_u32_le(payload.len() as u32);
        buf.put_u32_le(crc32c::crc32c(&payload));
        buf.put_slice(&payload);
        assert!(matches!(decode_frame(&mut buf, MAX_FRAME_BYTES), Err(FrameError::Undecodable(_))));
    }

    #[test]
    fn an_oversized_length_is_refused_before_reading_it() {
        let mut buf = BytesMut::new();
        buf.put_u32_le(u32::MAX);
        buf.put_u32_le(0);
        assert!(matches!(decode_frame(&mut buf, MAX_FRAME_BYTES), Err(FrameError::TooLong { .. })));
        // A configured limit: a frame one byte over it is refused from its header alone.
        let mut buf = BytesMut::new();
        encode_frame(&sample(), &mut buf);
        let payload = buf.len() - FRAME_HEADER_BYTES;
        buf.truncate(FRAME_HEADER_BYTES);
        let error = decode_frame(&mut buf, payload - 1).unwrap_err();
        assert_eq!(error, FrameError::TooLong { length: payload, max: payload - 1 });
        assert!(error.to_string().ends_with("(max_peer_frame_bytes)"), "{error}");
    }

    #[test]
    fn hello_checks_magic_version_and_cluster() {
        let hello = encode_hello(7, 3);
        assert_eq!(check_hello(&hello, 7).unwrap().node_id, 3);
        assert_eq!(check_hello(&hello, 8), Err(FrameError::OtherCluster { expected: 8, found: 7 }));
        let mut other_version = hello;
        other_version[8] = 9;
        let crc = crc32c::crc32c(&other_version[..28]);
        other_version[28..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(check_hello(&other_version, 7), Err(FrameError::Version { found: 9 }));
        let mut garbage = hello;
        garbage[0] = b'X';
        assert!(matches!(check_hello(&garbage, 7), Err(FrameError::BadMagic(_))));
    }
}
