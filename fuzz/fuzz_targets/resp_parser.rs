//! The RESP request parser a client connection feeds (`resp::Connection::parse`), with the bytes cut
//! at arbitrary points, then each request through `Connection::handle` and the reply encoders.
//!
//! Input: one flag byte (bit 0: tiny limits, so that every limit is within reach of a small input;
//! bits 1..8: how the rest is chunked), then the bytes a client sends: RESP arrays, inline commands,
//! pipelines of both.
//!
//! Checks, beyond "no panic, no hang, no allocation the input did not pay for": however the stream is
//! chunked, the resumable parser yields exactly the requests and the error that the stateless
//! `parse_command` yields on the whole stream; and every request, encoded again as RESP, parses back to
//! itself.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use raftkv_fuzz::chunks;
use resp::{encode_command, encode_frame, encode_reply, parse_command, Action, Connection, Limits};

/// Limits small enough that a fuzzer's inputs reach each of them.
const TINY: Limits = Limits {
    max_bulk_bytes: 64,
    max_arguments: 16,
    max_inline_bytes: 128,
    max_multi_commands: 4,
    max_request_bytes: 256,
    max_key_bytes: 8,
    max_value_bytes: 32,
};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, stream)) = data.split_first() else { return };
    let limits = if flags & 1 == 1 { TINY } else { Limits::default() };

    // The reference: the stateless parser on everything at once.
    let mut whole = BytesMut::from(stream);
    let mut expected = Vec::new();
    let expected_error = loop {
        match parse_command(&mut whole, &limits) {
            Ok(Some(argv)) => expected.push(argv),
            Ok(None) => break None,
            Err(error) => break Some(error),
        }
    };

    // The server's way: a connection's parser fed piece by piece, each request handled and answered.
    let mut connection = Connection::new(1, limits);
    let mut input = BytesMut::new();
    let mut output = BytesMut::new();
    let mut got = Vec::new();
    let mut got_error = None;
    'feed: for piece in chunks(stream, u64::from(flags >> 1), 1 + usize::from(flags >> 1)) {
        input.extend_from_slice(piece);
        loop {
            match connection.parse(&mut input) {
                Ok(Some(argv)) => {
                    got.push(argv.clone());
                    handle(&mut connection, argv, &mut output);
                }
                Ok(None) => break,
                Err(error) => {
                    encode_reply(&error.to_reply(), connection.protocol(), &mut output);
                    got_error = Some(error);
                    break 'feed;
                }
            }
        }
    }
    assert_eq!(got, expected, "chunked parsing disagrees with whole-buffer parsing");
    assert_eq!(got_error, expected_error, "chunked parsing fails differently");

    // Every request, encoded as a client library would, parses back to itself.
    for argv in &expected {
        let mut encoded = BytesMut::new();
        encode_command(argv, &mut encoded);
        let again = parse_command(&mut encoded, &Limits::default());
        assert_eq!(again.as_ref(), Ok(&Some(argv.clone())), "a request does not survive re-encoding");
        assert!(encoded.is_empty());
    }
});

fn handle(connection: &mut Connection, argv: Vec<bytes::Bytes>, output: &mut BytesMut) {
    match connection.handle(argv) {
        Action::Reply(frame) | Action::ReplyAndClose(frame) => {
            encode_frame(&frame, connection.protocol(), output);
        }
        Action::Execute { command, .. } => {
            // The state machine's work; only check that the command is printable for logs.
            let _ = format!("{command:?}");
        }
        Action::Info { section } => {
            let _ = section;
        }
        // The server parses cluster commands; here they are only handed over.
        Action::Cluster { argv } => {
            let _ = argv;
        }
    }
    // The output buffer is the server's; keep the target's memory flat.
    if output.len() > 1 << 16 {
        output.clear();
    }
}
