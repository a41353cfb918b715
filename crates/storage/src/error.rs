//! The one error type of this crate. Every variant that comes from disk content names the file, the byte
//! offset and what was expected there, so an operator can look at the exact bytes.

use std::io;

use raft::NodeId;

/// The cluster and node this data directory belongs to (recorded in the `IDENTITY` file).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Identity {
    pub cluster_id: u64,
    pub node_id: NodeId,
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cluster {:#x} node {}", self.cluster_id, self.node_id)
    }
}

/// Everything that can go wrong in storage. What the disk or the operator can cause is an error, never a
/// panic; misuse by the caller (a broken invariant of the consensus core) panics instead.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system call failed.
    #[error("{op} {file}: {source}")]
    Io {
        op: &'static str,
        file: String,
        #[source]
        source: io::Error,
    },
    /// Disk content contradicts what this crate wrote: acknowledged data is damaged or missing. The node must
    /// not start; an operator decides (usually: wipe this node and re-add it as a new member).
    #[error("corrupt data in {file} at offset {offset}: expected {expected}")]
    Corrupt { file: String, offset: u64, expected: String },
    /// A file of ours written by a newer (or unknown) format version.
    #[error("{file}: unknown format version {found} (this build reads version {supported})")]
    UnknownVersion { file: String, found: u32, supported: u32 },
    /// A file this crate did not write sits in the data directory (or a file of ours lacks its magic).
    #[error("foreign file in the data directory: {file} ({why}); refusing to guess what it is")]
    ForeignFile { file: String, why: String },
    /// The data directory belongs to another cluster or node.
    #[error("data directory belongs to {found}, but this node is configured as {expected}")]
    IdentityMismatch { expected: Identity, found: Identity },
    /// Another process (or another handle in this one) holds the data directory's lock.
    #[error("data directory {dir} is locked by another process")]
    Locked { dir: String },
    /// The disk is full. The record cut short by it was removed; no further writes are accepted.
    #[error("disk full while writing {file}; no further writes are accepted until restart: {source}")]
    DiskFull {
        file: String,
        #[source]
        source: io::Error,
    },
    /// An earlier failure (a failed fsync, a failed write) left the on-disk state unknown; every call fails
    /// until the process restarts and recovers from what is really on disk.
    #[error("storage is stopped after an earlier failure: {cause}")]
    Poisoned { cause: String },
    /// `write` or a snapshot call on a directory that was never bootstrapped.
    #[error("data directory is not bootstrapped: this node is not a member and has never voted")]
    NotBootstrapped,
    /// `bootstrap` on a directory that already holds state.
    #[error("data directory is already bootstrapped")]
    AlreadyBootstrapped,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(op: &'static str, file: impl Into<String>, source: io::Error) -> Error {
        Error::Io { op, file: file.into(), source }
    }

    pub fn corrupt(file: impl Into<String>, offset: u64, expected: impl Into<String>) -> Error {
        Error::Corrupt { file: file.into(), offset, expected: expected.into() }
    }
}

/// Linux's ENOSPC. Both the real disk and [`crate::SimDisk`] report a full disk with this raw OS error.
pub(crate) const ENOSPC: i32 = 28;

pub(crate) fn is_disk_full(error: &io::Error) -> bool {
    error.raw_os_error() == Some(ENOSPC)
}
