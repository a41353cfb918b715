//! The Redis protocol for raftkv, without I/O: bytes in, decisions and bytes out. No sockets, no
//! runtime, no threads, no clock, so every rule is a unit test and the parser can be fuzzed directly.
//!
//! # The server's loop, per connection
//! ```
//! use bytes::BytesMut;
//! use resp::{encode_frame, encode_reply, Action, Connection, Limits};
//!
//! let mut connection = Connection::new(7, Limits::default());
//! // Bytes as they came off the socket: two pipelined requests, the second one incomplete.
//! let mut input = BytesMut::from(&b"*1\r\n$4\r\nPING\r\n*3\r\n$3\r\nSET\r\n$1\r\nk"[..]);
//! let mut output = BytesMut::new();
//! while let Some(argv) = connection.parse(&mut input).expect("well-formed") {
//!     match connection.handle(argv) {
//!         Action::Reply(frame) => encode_frame(&frame, connection.protocol(), &mut output),
//!         Action::Execute { command, consistency } => {
//!             // Propose `command` (or read it with `consistency`), then `encode_reply` its kv::Reply.
//!             let _ = (command, consistency);
//!         }
//!         Action::Info { section } => { let _ = section; /* the server writes INFO's text */ }
//!         Action::ReplyAndClose(frame) => encode_frame(&frame, connection.protocol(), &mut output),
//!         Action::Cluster { argv } => { let _ = argv; /* RAFT.MEMBER ...: the server runs it */ }
//!     }
//! }
//! assert_eq!(&output[..], b"+PONG\r\n");
//! assert_eq!(&input[..], b"*3\r\n$3\r\nSET\r\n$1\r\nk"); // waits for the rest
//! # let _ = encode_reply;
//! ```
//! On a [`ProtocolError`] the server sends its text (`encode_reply(&error.to_reply(), ...)`) and closes
//! the connection: after a framing error there is no telling where the next request starts. Replies go
//! out in request order; that is the server's job, since state-machine answers arrive later.
//!
//! # The pieces
//! - [`parse_command`] / [`RequestParser`] / [`Connection::parse`]: one request from the front of a
//!   buffer — RESP2 arrays of bulk strings, or inline lines (`PING`, `set a "b c"`) so that `telnet`
//!   works — within [`Limits`]. `parse_command` keeps no state; the other two resume where they
//!   stopped, so their cost is linear in the input however it is chunked (use them in the server).
//! - [`Connection::handle`]: one argv → an [`Action`]. Connection commands (PING, ECHO, QUIT, RESET,
//!   AUTH, HELLO, SELECT, CLIENT, CONFIG, COMMAND, INFO, READONLY, READWRITE, MULTI, EXEC, DISCARD,
//!   UNWATCH) are answered here; the rest go through [`kv::parse`].
//! - [`encode_reply`] (a state-machine [`kv::Reply`]) and [`encode_frame`] (a connection [`Frame`], which
//!   adds the map HELLO answers in RESP3), in RESP2 or RESP3 as the connection's
//!   [`Connection::protocol`] says.
//!
//! # Consistency
//! Reads are linearizable (ReadIndex) unless the connection said `READONLY`; then reads are served from
//! the local state machine and may be stale, until `READWRITE`. Writes and EXEC always go through the log.
//! RESP has no request ids: a client that times out and sends `INCR` again sends a new command, which may
//! apply twice. raftkv's sessions protect only the servers' own retries.

mod connection;
mod encode;
mod parse;
pub mod table;

pub use connection::{
    is_cluster_command, is_connection_command, Action, Connection, NOT_ALLOWED_IN_MULTI,
    REDIS_COMPATIBLE_VERSION,
};
pub use encode::{encode_command, encode_frame, encode_reply, Frame, ProtocolVersion};
pub use node::Consistency;
pub use parse::{
    parse_command, split_inline, Limits, ProtocolError, RequestParser, DEFAULT_MAX_REQUEST_BYTES,
    MAX_LENGTH_LINE_BYTES,
};
