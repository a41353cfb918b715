//! From replies to RESP bytes.
//!
//! The state machine answers with [`kv::Reply`], which knows nothing of the wire; [`encode_reply`] writes
//! it as RESP2, or as RESP3 where RESP3 differs for the replies raftkv sends (only the null: `_` instead of
//! `$-1`). Connection-level answers need one shape `kv::Reply` does not have — the map that `HELLO` and
//! `CONFIG GET` answer in RESP3 — so the connection layer answers with a [`Frame`], which is a superset of
//! `Reply` ([`From<kv::Reply>`]) and is written by [`encode_frame`].
//!
//! Simple strings and errors cannot carry CR or LF on the wire (a client would read the rest as a new
//! reply), so both encoders write those bytes as spaces, as Redis does for error texts.

use bytes::{BufMut, Bytes, BytesMut};
use kv::Reply;

/// The protocol a connection speaks: RESP2 until the client says `HELLO 3`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum ProtocolVersion {
    #[default]
    Resp2,
    Resp3,
}

impl ProtocolVersion {
    /// The number `HELLO` reports in its `proto` field.
    pub fn number(self) -> i64 {
        match self {
            ProtocolVersion::Resp2 => 2,
            ProtocolVersion::Resp3 => 3,
        }
    }
}

/// A connection-level answer. Every [`kv::Reply`] converts into one; `Map` is what `Reply` lacks.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Frame {
    /// `+text`.
    Simple(String),
    /// `-text`; the text carries its code (`ERR ...`, `NOPROTO ...`).
    Error(String),
    /// `:n`.
    Integer(i64),
    /// A binary-safe bulk string.
    Bulk(Bytes),
    /// `$-1` in RESP2, `_` in RESP3.
    Null,
    /// An array of frames.
    Array(Vec<Frame>),
    /// A RESP3 map (`%n`); in RESP2 a flat array of key, value, key, value... as Redis sends it.
    Map(Vec<(Frame, Frame)>),
}

impl Frame {
    /// `+OK`.
    pub fn ok() -> Frame {
        Frame::Simple("OK".to_owned())
    }

    /// An error frame with the given full text (code included).
    pub fn error(text: impl Into<String>) -> Frame {
        Frame::Error(text.into())
    }

    /// A bulk frame from anything that becomes `Bytes`.
    pub fn bulk(data: impl Into<Bytes>) -> Frame {
        Frame::Bulk(data.into())
    }

    /// Whether this is an error frame.
    pub fn is_error(&self) -> bool {
        matches!(self, Frame::Error(_))
    }
}

impl From<Reply> for Frame {
    fn from(reply: Reply) -> Frame {
        match reply {
            Reply::Ok => Frame::ok(),
            Reply::Status(text) => Frame::Simple(text),
            Reply::Nil => Frame::Null,
            Reply::Integer(n) => Frame::Integer(n),
            Reply::Bulk(data) => Frame::Bulk(data),
            Reply::Array(items) => Frame::Array(items.into_iter().map(Frame::from).collect()),
            Reply::Error(text) => Frame::Error(text),
        }
    }
}

/// Appends the RESP encoding of a state-machine reply to `out`.
pub fn encode_reply(reply: &Reply, protocol: ProtocolVersion, out: &mut BytesMut) {
    match reply {
        Reply::Ok => out.put_slice(b"+OK\r\n"),
        Reply::Status(text) => put_line(out, b'+', text.as_bytes()),
        Reply::Nil => put_null(out, protocol),
        Reply::Integer(n) => put_integer(out, b':', *n),
        Reply::Bulk(data) => put_bulk(out, data),
        Reply::Array(items) => {
            put_length(out, b'*', items.len());
            for item in items {
                encode_reply(item, protocol, out);
            }
        }
        Reply::Error(text) => put_line(out, b'-', text.as_bytes()),
    }
}

/// Appends the RESP encoding of a connection-level frame to `out`.
pub fn encode_frame(frame: &Frame, protocol: ProtocolVersion, out: &mut BytesMut) {
    match frame {
        Frame::Simple(text) => put_line(out, b'+', text.as_bytes()),
        Frame::Error(text) => put_line(out, b'-', text.as_bytes()),
        Frame::Integer(n) => put_integer(out, b':', *n),
        Frame::Bulk(data) => put_bulk(out, data),
        Frame::Null => put_null(out, protocol),
        Frame::Array(items) => {
            put_length(out, b'*', items.len());
            for item in items {
                encode_frame(item, protocol, out);
            }
        }
        Frame::Map(pairs) => {
            match protocol {
                ProtocolVersion::Resp2 => put_length(out, b'*', pairs.len() * 2),
                ProtocolVersion::Resp3 => put_length(out, b'%', pairs.len()),
            }
            for (key, value) in pairs {
                encode_frame(key, protocol, out);
                encode_frame(value, protocol, out);
            }
        }
    }
}

/// Appends a command as a client sends it: an array of bulk strings. The inverse of
/// [`crate::parse_command`], for tests, tools and forwarding.
pub fn encode_command(argv: &[Bytes], out: &mut BytesMut) {
    put_length(out, b'*', argv.len());
    for arg in argv {
        put_bulk(out, arg);
    }
}

fn put_null(out: &mut BytesMut, protocol: ProtocolVersion) {
    match protocol {
        ProtocolVersion::Resp2 => out.put_slice(b"$-1\r\n"),
        ProtocolVersion::Resp3 => out.put_slice(b"_\r\n"),
    }
}

fn put_bulk(out: &mut BytesMut, data: &[u8]) {
    put_length(out, b'$', data.len());
    out.reserve(data.len() + 2);
    out.put_slice(data);
    out.put_slice(b"\r\n");
}

/// A simple string or error line; CR and LF become spaces so the text cannot end the line early.
fn put_line(out: &mut BytesMut, kind: u8, text: &[u8]) {
    out.reserve(text.len() + 3);
    out.put_u8(kind);
    if text.iter().any(|&b| b == b'\r' || b == b'\n') {
        out.extend(text.iter().map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }));
    } else {
        out.put_slice(text);
    }
    out.put_slice(b"\r\n");
}

fn put_length(out: &mut BytesMut, kind: u8, length: usize) {
    // A usize always fits in an i128; lengths are far below i64::MAX in practice, but this way no cast
    // can wrap.
    put_decimal(out, kind, i128::try_from(length).unwrap_or(i128::MAX));
}

fn put_integer(out: &mut BytesMut, kind: u8, n: i64) {
    put_decimal(out, kind, i128::from(n));
}

/// `kind`, the decimal digits of `n`, CRLF — without allocating.
fn put_decimal(out: &mut BytesMut, kind: u8, n: i128) {
    let mut digits = [0u8; 40];
    let mut at = digits.len();
    let mut rest = n.unsigned_abs();
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if n < 0 {
        at -= 1;
        digits[at] = b'-';
    }
    out.reserve(digits.len() - at + 3);
    out.put_u8(kind);
    out.put_slice(&digits[at..]);
    out.put_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply_bytes(reply: &Reply, protocol: ProtocolVersion) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode_reply(reply, protocol, &mut out);
        out.to_vec()
    }

    fn frame_bytes(frame: &Frame, protocol: ProtocolVersion) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode_frame(frame, protocol, &mut out);
        out.to_vec()
    }

    #[test]
    fn every_reply_kind_encodes_as_redis_does() {
        use ProtocolVersion::Resp2;
        assert_eq!(reply_bytes(&Reply::Ok, Resp2), b"+OK\r\n");
        assert_eq!(reply_bytes(&Reply::Status("PONG".into()), Resp2), b"+PONG\r\n");
        assert_eq!(reply_bytes(&Reply::Nil, Resp2), b"$-1\r\n");
        assert_eq!(reply_bytes(&Reply::Integer(0), Resp2), b":0\r\n");
        assert_eq!(reply_bytes(&Reply::Integer(-42), Resp2), b":-42\r\n");
        assert_eq!(reply_bytes(&Reply::Integer(i64::MIN), Resp2), b":-9223372036854775808\r\n");
        assert_eq!(reply_bytes(&Reply::Integer(i64::MAX), Resp2), b":9223372036854775807\r\n");
        assert_eq!(reply_bytes(&Reply::bulk("hello"), Resp2), b"$5\r\nhello\r\n");
        assert_eq!(reply_bytes(&Reply::bulk(""), Resp2), b"$0\r\n\r\n");
        assert_eq!(reply_bytes(&Reply::bulk(&b"a\r\nb"[..]), Resp2), b"$4\r\na\r\nb\r\n");
        assert_eq!(
            reply_bytes(&Reply::error("ERR value is not an integer or out of range"), Resp2),
            b"-ERR value is not an integer or out of range\r\n"
        );
        assert_eq!(reply_bytes(&Reply::Array(vec![]), Resp2), b"*0\r\n");
    }

    #[test]
    fn nested_arrays_encode_depth_first() {
        let reply = Reply::Array(vec![
            Reply::bulk("0"),
            Reply::Array(vec![Reply::bulk("k1"), Reply::Nil, Reply::Integer(3)]),
            Reply::error("ERR x"),
        ]);
        assert_eq!(
            reply_bytes(&reply, ProtocolVersion::Resp2),
            b"*3\r\n$1\r\n0\r\n*3\r\n$2\r\nk1\r\n$-1\r\n:3\r\n-ERR x\r\n"
        );
        assert_eq!(
            reply_bytes(&reply, ProtocolVersion::Resp3),
            b"*3\r\n$1\r\n0\r\n*3\r\n$2\r\nk1\r\n_\r\n:3\r\n-ERR x\r\n"
        );
    }

    #[test]
    fn resp3_null_is_underscore() {
        assert_eq!(reply_bytes(&Reply::Nil, ProtocolVersion::Resp3), b"_\r\n");
        assert_eq!(frame_bytes(&Frame::Null, ProtocolVersion::Resp3), b"_\r\n");
        assert_eq!(frame_bytes(&Frame::Null, ProtocolVersion::Resp2), b"$-1\r\n");
    }

    #[test]
    fn map_is_flat_in_resp2_and_percent_in_resp3() {
        let map = Frame::Map(vec![
            (Frame::bulk("proto"), Frame::Integer(3)),
            (Frame::bulk("modules"), Frame::Array(vec![])),
        ]);
        assert_eq!(
            frame_bytes(&map, ProtocolVersion::Resp2),
            b"*4\r\n$5\r\nproto\r\n:3\r\n$7\r\nmodules\r\n*0\r\n"
        );
        assert_eq!(
            frame_bytes(&map, ProtocolVersion::Resp3),
            b"%2\r\n$5\r\nproto\r\n:3\r\n$7\r\nmodules\r\n*0\r\n"
        );
    }

    #[test]
    fn line_breaks_in_errors_and_statuses_become_spaces() {
        assert_eq!(reply_bytes(&Reply::error("ERR a\r\nb\nc"), ProtocolVersion::Resp2), b"-ERR a  b c\r\n");
        assert_eq!(frame_bytes(&Frame::Simple("x\ry".into()), ProtocolVersion::Resp2), b"+x y\r\n");
    }

    #[test]
    fn frame_from_reply_encodes_like_the_reply() {
        let reply = Reply::Array(vec![
            Reply::Ok,
            Reply::Status("QUEUED".into()),
            Reply::Nil,
            Reply::Integer(7),
            Reply::bulk("v"),
            Reply::error("ERR e"),
        ]);
        for protocol in [ProtocolVersion::Resp2, ProtocolVersion::Resp3] {
            assert_eq!(frame_bytes(&Frame::from(reply.clone()), protocol), reply_bytes(&reply, protocol));
        }
    }

    #[test]
    fn encode_command_writes_an_array_of_bulks() {
        let mut out = BytesMut::new();
        encode_command(&[Bytes::from("SET"), Bytes::from("k"), Bytes::from("")], &mut out);
        assert_eq!(&out[..], b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
    }
}
