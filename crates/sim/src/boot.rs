//! Starting a simulated node exactly as the server starts a real one: bootstrap a brand-new data
//! directory once, and on every (re)start recover from the disk and build the core, the state machine and
//! the node glue from what was recovered.

use node::{Node, NodeTiming};
use raft::{Configuration, Entry, NodeId, Raft, RestoredState};
use storage::{SimDisk, Storage, StorageOptions};

use crate::seed::derive_seed;
use crate::sim_node::{SimNode, SimNodeInner, SimObserver};
use crate::world::RunConfig;

/// Small segments, so that simulated runs roll segments often and recovery crosses segment boundaries.
const SIM_SEGMENT_BYTES: u64 = 64 * 1024;

fn options(cluster_id: u64, node_id: NodeId) -> StorageOptions {
    StorageOptions { segment_bytes: SIM_SEGMENT_BYTES, ..StorageOptions::new(cluster_id, node_id) }
}

/// Creates the initial state of a brand-new cluster member on its (empty) simulated disk.
///
/// # Panics
/// If the fresh simulated disk cannot be bootstrapped: that is a bug in the simulator or the storage.
pub fn bootstrap(disk: &SimDisk, cluster_id: u64, node_id: NodeId, voters: &[NodeId]) {
    let (mut storage, initial) =
        Storage::open(disk.clone(), options(cluster_id, node_id)).expect("a fresh simulated disk opens");
    assert!(initial.is_none(), "node {node_id}: a fresh simulated disk already holds state");
    storage
        .bootstrap(Configuration::with_voters(voters.iter().copied()))
        .expect("a fresh simulated disk bootstraps");
}

/// Recovers `node` from its disk. Returns the running node and the entries it recovered (the checker
/// rebuilds its view of the node's log from them), or the error that keeps the node from starting.
pub fn recover(
    node: &SimNode,
    cluster_id: u64,
    run: &RunConfig,
    timing: NodeTiming,
    snapshots: node::SnapshotPolicy,
    raft_config: impl FnOnce(raft::Config) -> raft::Config,
) -> Result<(SimNodeInner, Vec<Entry>), String> {
    let (storage, initial) =
        Storage::open(node.disk.clone(), options(cluster_id, node.id)).map_err(|e| e.to_string())?;
    let initial =
        initial.ok_or_else(|| format!("node {} has no state: it was never bootstrapped", node.id))?;
    let entries = initial.entries.clone();
    // Each life draws fresh election timeouts, reproducibly: the seed depends on the run, node and life.
    let seed = derive_seed(run.seed, "raft", node.id * 1_000_000 + node.incarnation);
    let config = raft_config(raft::Config { rng_seed: seed, ..raft::Config::new(node.id) });
    #[cfg(feature = "inject-bugs")]
    let config = crate::inject::raft_config(run.injected_bug, config);
    let restored = RestoredState {
        hard_state: initial.hard_state,
        snapshot: initial.snapshot,
        entries: initial.entries,
    };
    let raft = Raft::new(config, restored).map_err(|e| e.to_string())?;
    #[allow(unused_mut)] // mutated only by the test-only bug switch
    let mut machine =
        node::restore_state_machine(&storage, kv::KvConfig::default()).map_err(|e| e.to_string())?;
    #[cfg(feature = "inject-bugs")]
    crate::inject::state_machine(run.injected_bug, &mut machine);
    let applied_index = raft.applied_index();
    let inner = Node::new(
        raft,
        storage,
        machine,
        applied_index,
        node.incarnation,
        timing,
        node.transport(),
        node.clock(),
        SimObserver::default(),
    )
    // Written synchronously: the run stays a pure function of its seed, and a power loss armed for the
    // next disk operations can still hit the middle of a snapshot's write.
    .with_snapshots(snapshots, Box::new(node::InlineWorker::default()));
    Ok((inner, entries))
}
