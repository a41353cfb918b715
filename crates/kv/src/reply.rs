//! What a command answers, independent of RESP: the server maps each variant to a RESP frame, the
//! simulator inspects it directly, and sessions cache it (so it is serializable).

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// The error texts a client can see, spelled as Redis spells them (after the leading `-`), so that client
/// libraries that match on them keep working.
pub mod errors {
    /// An argument that must be a 64-bit signed integer is not one (Redis's `shared.outofrangeerr`).
    pub const NOT_AN_INTEGER: &str = "ERR value is not an integer or out of range";
    /// INCR/DECR family would leave the range of a 64-bit signed integer.
    pub const INCR_OVERFLOW: &str = "ERR increment or decrement would overflow";
    /// Options that do not parse or contradict each other.
    pub const SYNTAX: &str = "ERR syntax error";
    /// A SCAN cursor that is not an unsigned 64-bit integer.
    pub const INVALID_CURSOR: &str = "ERR invalid cursor";
    /// A write that would grow the data past `maxmemory_bytes` (Redis's `shared.oomerr`).
    pub const OOM: &str = "OOM command not allowed when used memory > 'maxmemory'.";
    /// A MULTI/EXEC whose writes would grow the data past `maxmemory_bytes`: nothing in it was applied.
    pub const EXECABORT_OOM: &str =
        "EXECABORT Transaction discarded because of: OOM command not allowed when used memory > 'maxmemory'.";
    /// EXEC after a command of the transaction failed to parse: nothing in it was proposed.
    pub const EXECABORT_PREVIOUS_ERRORS: &str = "EXECABORT Transaction discarded because of previous errors.";
    /// A string value would exceed Redis's 512 MB limit.
    pub const STRING_TOO_LONG: &str = "ERR string exceeds maximum allowed size (proto-max-bulk-len)";
    /// A command carried a session that this state machine does not know: it was never registered, it
    /// expired, or it was evicted. The command was not applied. The server answers the client with this
    /// error rather than retrying, because it cannot know whether an earlier copy applied.
    pub const SESSION_EXPIRED: &str = "ERR session expired or unknown; the command was not applied";
    /// A command carried a sequence number the session already discarded the reply of (the proposer
    /// acknowledged it, or the reply cache overflowed). It may have applied earlier; it was not applied now.
    pub const SEQUENCE_DISCARDED: &str =
        "ERR request sequence already acknowledged or evicted; the command was not applied again";
    /// The log entry's bytes do not decode to a `Request` of a version this build knows.
    pub const MALFORMED_REQUEST: &str = "ERR malformed request in log entry; nothing was applied";
    /// `read` was handed a command that writes.
    pub const NOT_READ_ONLY: &str = "ERR command is not read-only and must go through the log";

    /// `ERR invalid expire time in 'set' command`, with the command named as Redis names it.
    pub fn invalid_expire_time(command: &str) -> String {
        format!("ERR invalid expire time in '{command}' command")
    }
}

/// One command's answer. `Error` holds the whole text after RESP's `-`, including the code (`ERR`,
/// `OOM`, `EXECABORT`, ...).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum Reply {
    /// `+OK`.
    Ok,
    /// Any other simple string (`+PONG`-like); kept for completeness, the state machine does not use it.
    Status(String),
    /// The null bulk string (`$-1`): an absent key.
    Nil,
    /// `:n`.
    Integer(i64),
    /// A binary-safe bulk string.
    Bulk(Bytes),
    /// An array of replies (MGET, SCAN, and EXEC's per-command replies). Decoding refuses nesting deeper
    /// than [`MAX_REPLY_DEPTH`], so crafted bytes cannot exhaust the stack.
    Array(#[serde(with = "crate::depth::reply_array")] Vec<Reply>),
    /// `-<text>`.
    Error(String),
}

/// Deepest nesting of `Reply::Array` that decoding accepts. The deepest reply the state machine builds is
/// EXEC → SCAN → key list (3).
pub const MAX_REPLY_DEPTH: u32 = 8;

impl Reply {
    /// An error reply with the given full text.
    pub fn error(text: impl Into<String>) -> Reply {
        Reply::Error(text.into())
    }

    /// A bulk reply from anything that becomes `Bytes`.
    pub fn bulk(data: impl Into<Bytes>) -> Reply {
        Reply::Bulk(data.into())
    }

    /// Whether this is an error reply.
    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }

    /// Whether the state machine refused the command because its session is unknown or expired.
    pub fn is_session_expired(&self) -> bool {
        matches!(self, Reply::Error(text) if text == errors::SESSION_EXPIRED)
    }
}
