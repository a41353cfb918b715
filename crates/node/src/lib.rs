//! The glue both worlds share: the server and the simulator run exactly this code between the network and
//! the consensus core, so every seeded simulation exercises what production runs.
//!
//! A [`Node`] owns one consensus core ([`raft::Raft`]), its durable storage ([`storage::Storage`]) and the
//! replicated state machine ([`kv::KvStateMachine`]), and drives the core's `Ready` loop in the order the
//! core's contract demands:
//!
//! 1. **send** the messages the core released: they are safe to send before this node's own write (vote
//!    grants, vote requests and append acks are held inside the core until what they promise is durable),
//!    so a leader's appends travel while its own fsync runs (dissertation §10.2.1);
//! 2. **persist** the hard state and entries (one write, one fsync), then tell the core what is durable,
//!    which releases the held messages into the next round;
//! 3. **apply** committed entries to the state machine, in order, and answer the clients waiting on them;
//! 4. serve **reads** whose read index the state machine has reached; then **advance** the core.
//!
//! Snapshots ([`snapshots`]): the node takes one when its [`SnapshotPolicy`] says so (written by a
//! [`SnapshotWorker`], on a background thread in the server), then compacts; as a leader it serves the
//! core's chunk reads from the snapshot file; as a follower it writes received chunks to a temporary
//! file, verifies it, and installs it: published before the Ready's entries are persisted, restored into
//! the state machine before that Ready's committed entries are applied.
//!
//! Around that loop it keeps what clients need: a session so the node's own retries apply at most once
//! ([`session`]), commands in flight with their retries and deadlines ([`pending`]), ReadIndex reads
//! ([`reads`]), and forwarding from followers to the leader ([`peer`]).

pub mod io;
mod node;
pub mod peer;
pub mod pending;
pub mod reads;
pub mod session;
pub mod snapshots;

pub use io::{Clock, NoObserver, Observer, Transport};
pub use node::{errors, Completion, Consistency, Node, NodeError, NodeTiming};
pub use peer::PeerMessage;
pub use pending::ClientToken;
pub use snapshots::{restore_state_machine, InlineWorker, SnapshotJob, SnapshotPolicy, SnapshotWorker};
