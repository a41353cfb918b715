//! Snapshots in the glue (§7; dissertation §5): when to take one, who writes it, and how a snapshot file
//! is read back into a state machine.
//!
//! **Taking** a snapshot must not stall the node (issue 6): the state machine hands out an O(1) frozen
//! view ([`kv::KvStateMachine::snapshot`]) and a [`SnapshotWorker`] streams it into a
//! [`storage::SnapshotWriter`] — on a background thread in the server, synchronously in the simulator
//! (deterministic). The node polls the worker; once the file is durable it publishes it, compacts the core
//! ([`raft::Raft::compact`]) and lets storage delete the WAL segments and older snapshot files it covers.
//!
//! **Restoring** (at restart, or when a leader's snapshot is installed) reads the newest snapshot file to
//! its end, so its checksum is checked, and refuses a state whose applied index disagrees with the file's
//! metadata.

use kv::{KvConfig, KvStateMachine};
use storage::{Disk, FinishedSnapshot, SnapshotWriter, Storage};

/// When the node takes a snapshot of its state machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotPolicy {
    /// Take a snapshot once this many entries were applied since the log's start (the last snapshot).
    /// 0: never (the log then grows forever; followers that fall behind still catch up from the log).
    pub threshold_entries: u64,
}

impl SnapshotPolicy {
    /// The server's default: a snapshot every 10,000 entries keeps restarts short and the log small,
    /// while a snapshot of a large state is written rarely.
    pub const DEFAULT_THRESHOLD_ENTRIES: u64 = 10_000;

    pub const NEVER: SnapshotPolicy = SnapshotPolicy { threshold_entries: 0 };
}

/// One snapshot to write: the frozen state and the file it goes into. `Send`, so it can move to a thread.
pub struct SnapshotJob {
    pub state: kv::Snapshot,
    pub writer: SnapshotWriter,
}

impl SnapshotJob {
    /// Streams the state into the file and makes it durable (not yet published).
    pub fn run(self) -> storage::Result<FinishedSnapshot> {
        let SnapshotJob { state, mut writer } = self;
        let name = format!("snapshot at index {}", state.applied_index());
        state.write_to(&mut writer).map_err(|e| storage::Error::io("write", name, e))?;
        writer.finish()
    }
}

/// Who writes snapshot files. At most one job runs at a time: the node starts another only after
/// [`SnapshotWorker::poll`] handed back the result of the previous one.
pub trait SnapshotWorker: Send {
    /// Starts writing `job`.
    fn start(&mut self, job: SnapshotJob);
    /// The result of the job started last, once it is done (then `None` until the next start).
    fn poll(&mut self) -> Option<storage::Result<FinishedSnapshot>>;
}

/// Writes each snapshot synchronously inside `start`: deterministic, for the simulator and tests (and a
/// fine choice for small states).
#[derive(Default)]
pub struct InlineWorker {
    done: Option<storage::Result<FinishedSnapshot>>,
}

impl SnapshotWorker for InlineWorker {
    fn start(&mut self, job: SnapshotJob) {
        assert!(self.done.is_none(), "a snapshot job started before the previous result was taken");
        self.done = Some(job.run());
    }

    fn poll(&mut self) -> Option<storage::Result<FinishedSnapshot>> {
        self.done.take()
    }
}

/// Builds the state machine from the newest snapshot in `storage` (a fresh one for the bootstrap
/// snapshot at index 0, which holds no data).
///
/// # Errors
/// A snapshot that does not read back whole (I/O, checksum, format) or whose applied index is not the
/// file's index: the node must not start from it.
pub fn restore_state_machine<D: Disk>(
    storage: &Storage<D>,
    config: KvConfig,
) -> Result<KvStateMachine, storage::Error> {
    let meta = storage.snapshot_meta().clone();
    if meta.index == 0 {
        return Ok(KvStateMachine::new(config));
    }
    let name = format!("snapshot {}@{}", meta.index, meta.term);
    let reader = storage.open_snapshot()?;
    let machine = KvStateMachine::restore(config, reader)
        .map_err(|e| storage::Error::corrupt(&name, 0, format!("a state machine snapshot ({e})")))?;
    if machine.applied_index() != meta.index {
        return Err(storage::Error::corrupt(
            &name,
            0,
            format!("a state at index {}, found one at {}", meta.index, machine.applied_index()),
        ));
    }
    Ok(machine)
}
