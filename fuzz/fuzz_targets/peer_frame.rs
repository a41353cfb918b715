//! The peer wire decoder (`server::frame`): the hello exchanged when a peer connects, then frames
//! (length, CRC32C, postcard-encoded `node::PeerMessage`) as they come off the socket.
//!
//! Input: one mode byte, then
//! - mode even: the raw connection stream, the 32-byte hello then frames, cut into pieces as a socket
//!   would deliver them (the mode byte also picks the cutting). Exercises the hello and frame checks,
//!   checksum failures and lengths over the limit.
//! - mode odd: one frame *payload*, wrapped in a correct frame header (length and CRC) so the postcard
//!   decoding of `PeerMessage` sees every input.
//!
//! Checks: no panic, no hang, no allocation sized by a length the input did not back; every message
//! that decodes passes `Message::validate` or refuses with a typed error, and survives re-encoding.

#![no_main]

use bytes::{BufMut, BytesMut};
use libfuzzer_sys::fuzz_target;
use node::PeerMessage;
use raftkv_fuzz::{chunks, CLUSTER_ID, NODE_ID};
use server::frame::{check_hello, decode_frame, encode_frame, HELLO_BYTES, MAX_FRAME_BYTES};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode & 1 == 1 {
        let mut buf = BytesMut::with_capacity(rest.len() + 8);
        buf.put_u32_le(rest.len() as u32);
        buf.put_u32_le(crc32c::crc32c(rest));
        buf.put_slice(rest);
        if let Ok(Some(message)) = decode_frame(&mut buf, MAX_FRAME_BYTES) {
            check_message(&message);
        }
        return;
    }
    let Some(hello) = rest.get(..HELLO_BYTES) else { return };
    let hello: &[u8; HELLO_BYTES] = hello.try_into().expect("HELLO_BYTES long");
    if check_hello(hello, CLUSTER_ID).is_err() {
        // The connection would be closed here; the frames after it are still worth decoding.
    }
    let mut buf = BytesMut::new();
    for piece in chunks(&rest[HELLO_BYTES..], u64::from(mode), 1 + usize::from(mode >> 1)) {
        buf.extend_from_slice(piece);
        loop {
            match decode_frame(&mut buf, MAX_FRAME_BYTES) {
                Ok(Some(message)) => check_message(&message),
                Ok(None) => break,
                Err(error) => {
                    let _ = error.to_string();
                    return;
                }
            }
        }
    }
});

/// What the receiving side does with a decoded message before the node sees it, and a round trip.
fn check_message(message: &PeerMessage) {
    if let PeerMessage::Raft(raft_message) = message {
        let _ = raft_message.validate(NODE_ID);
    }
    let _ = format!("{message:?} {}", message.kind());
    let mut encoded = BytesMut::new();
    encode_frame(message, &mut encoded);
    let again =
        decode_frame(&mut encoded, MAX_FRAME_BYTES).expect("a re-encoded message decodes").expect("whole");
    assert_eq!(&again, message, "a message does not survive re-encoding");
}
