//! What nodes say to each other: Raft's own messages, plus the node glue's requests to the leader.

use kv::{RequestBody, SessionRef};
use raft::{Index, NodeId};
use serde::{Deserialize, Serialize};

/// One message between nodes. The transport frames and checksums it; this is only the content.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum PeerMessage {
    /// A consensus message for the core.
    Raft(raft::Message),
    /// "Propose this for me": a follower hands a client's command (or its own session registration) to
    /// the leader it believes in. The leader stamps its own time and proposes it unchanged otherwise, so the
    /// sequence number — and with it at-most-once application — survives any number of forwards.
    Forward { session: Option<SessionRef>, body: RequestBody },
    /// The receiver could not propose a forwarded command: it is not leader (with a hint of who is), or it
    /// refused before proposing (too many uncommitted bytes), which `overloaded` makes explicit.
    ForwardRejected { sequence: Option<u64>, leader_hint: Option<NodeId>, overloaded: bool },
    /// "What is your read index?" (dissertation §6.4, for reads served by a follower).
    ReadIndexRequest { ctx: u64 },
    /// The leader's answer: `Some(index)` once leadership was confirmed after the request arrived; `None`
    /// if it could not confirm (not leader, stepped down).
    ReadIndexResponse { ctx: u64, index: Option<Index>, leader_hint: Option<NodeId> },
}

impl PeerMessage {
    /// A short name for logs, metrics and traces.
    pub fn kind(&self) -> &'static str {
        match self {
            PeerMessage::Raft(_) => "raft",
            PeerMessage::Forward { .. } => "forward",
            PeerMessage::ForwardRejected { .. } => "forward_rejected",
            PeerMessage::ReadIndexRequest { .. } => "read_index_request",
            PeerMessage::ReadIndexResponse { .. } => "read_index_response",
        }
    }
}
