//! The log entry format: what the leader proposes and every replica applies.

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::command::Command;

/// Leading byte of every encoded [`Request`]. A build refuses entries of a version it does not know
/// rather than guessing at their meaning; a future format change bumps it and keeps decoding the old one.
pub const REQUEST_FORMAT_VERSION: u8 = 1;

/// Who a client session belongs to. Chosen by the proposing node, and unique across the cluster's whole
/// life without coordination: the node id separates nodes, the incarnation (a number the node persists and
/// bumps on every start) separates lives of one node, and the counter separates sessions within one life.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct ClientId {
    pub node_id: u64,
    pub incarnation: u64,
    pub counter: u64,
}

impl fmt::Display for ClientId {
    /// `3.7.42`: node 3, incarnation 7, session 42.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.node_id, self.incarnation, self.counter)
    }
}

/// Identifies one command of a session (dissertation §6.3).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct SessionRef {
    pub client_id: ClientId,
    /// The command's sequence number within the session. Unique per command; a retry of the same command
    /// (re-proposal after a leader change, a forwarding retry) reuses it.
    pub sequence: u64,
    /// Every sequence number below this one has had its reply delivered, so the state machine may forget
    /// those replies (the client's acknowledgement, carried piggyback). Never decreases within a session;
    /// a smaller value than the session has seen is ignored.
    pub lowest_unacked: u64,
}

/// One log entry's content.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Request {
    /// The session and sequence of a `Command` body; `None` applies the command without deduplication.
    /// Ignored for the other bodies.
    pub session: Option<SessionRef>,
    /// The leader's clock (Unix milliseconds) when it proposed the entry. The state machine's notion of
    /// "now" is the largest such time it has applied, so expiry never depends on a replica's clock and
    /// never runs backwards when leadership moves to a node whose clock is behind.
    pub leader_time_ms: u64,
    pub body: RequestBody,
}

/// What a log entry asks the state machine to do.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum RequestBody {
    /// Opens the session `client_id` (idempotent: registering an open session only refreshes it). → `OK`.
    RegisterSession { client_id: ClientId },
    /// Closes the session and forgets its cached replies (idempotent). → `OK`.
    CloseSession { client_id: ClientId },
    /// Applies a command, deduplicated through `Request::session` when present. → the command's reply.
    Command(Command),
}

/// Why bytes are not a `Request`.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("empty request")]
    Empty,
    #[error("request format version {0} is unknown to this build (it knows {REQUEST_FORMAT_VERSION})")]
    UnknownVersion(u8),
    #[error("malformed request: {0}")]
    Malformed(String),
}

impl Request {
    /// A request without a session.
    pub fn command(leader_time_ms: u64, command: Command) -> Request {
        Request { session: None, leader_time_ms, body: RequestBody::Command(command) }
    }

    /// A command of a session.
    pub fn session_command(leader_time_ms: u64, session: SessionRef, command: Command) -> Request {
        Request { session: Some(session), leader_time_ms, body: RequestBody::Command(command) }
    }

    /// The entry payload: the version byte, then the request in postcard (deterministic: equal requests
    /// give equal bytes).
    pub fn encode(&self) -> Bytes {
        // Serializing our own plain data types into a Vec cannot fail.
        let bytes = postcard::to_extend(self, vec![REQUEST_FORMAT_VERSION]).expect("encode Request");
        Bytes::from(bytes)
    }

    /// Decodes an entry payload; trailing bytes are an error.
    pub fn decode(bytes: &[u8]) -> Result<Request, DecodeError> {
        let (&version, rest) = bytes.split_first().ok_or(DecodeError::Empty)?;
        if version != REQUEST_FORMAT_VERSION {
            return Err(DecodeError::UnknownVersion(version));
        }
        match postcard::take_from_bytes::<Request>(rest) {
            Ok((request, [])) => Ok(request),
            Ok((_, trailing)) => Err(DecodeError::Malformed(format!("{} trailing bytes", trailing.len()))),
            Err(error) => Err(DecodeError::Malformed(error.to_string())),
        }
    }
}
