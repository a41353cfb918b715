//! The Raft consensus algorithm as a pure, deterministic state machine (being written).

pub mod types;

pub use types::{Configuration, Entry, EntryPayload, HardState, Index, NodeId, SnapshotMeta, Term};
