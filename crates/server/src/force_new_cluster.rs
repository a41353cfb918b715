//! `raftkv force-new-cluster`: the last resort when a majority of the cluster is lost for good and only
//! a minority survives. It rewrites ONE stopped survivor's log so that it becomes a one-node cluster of
//! itself: it appends a configuration entry naming only this node, in a term above every term it has
//! seen. Started again, the node elects itself and commits that entry (and every entry it holds, even
//! ones the old cluster never committed); then members are added back as after any loss of disks.
//!
//! Dangerous by design, so never automatic: writes the old cluster acknowledged may be missing from this
//! survivor's log and are then lost; its uncommitted entries become committed; and the other survivors
//! must never rejoin with their old data (wipe them and add them back as new members). The command
//! insists on the node's identity and an explicit flag, takes the directory's lock (the node must be
//! stopped), and logs what it does at `warn` level.

use std::path::Path;

use raft::{Configuration, Entry, EntryPayload, HardState, NodeId};
use storage::{FileDisk, Storage, StorageOptions};

/// Rewrites the configuration of the stopped node in `dir`; returns a description of what it did.
pub fn force_new_cluster(dir: &Path, cluster_id: u64, node_id: NodeId) -> Result<String, String> {
    let disk = FileDisk::new(dir).map_err(|e| format!("data directory {}: {e}", dir.display()))?;
    let (mut storage, initial) =
        Storage::open(disk, StorageOptions::new(cluster_id, node_id)).map_err(|e| e.to_string())?;
    let initial = initial.ok_or("the data directory holds no state: there is nothing to keep")?;
    let (last_index, last_term) =
        initial.entries.last().map_or((initial.snapshot.index, initial.snapshot.term), |e| (e.index, e.term));
    let old_configuration = initial
        .entries
        .iter()
        .rev()
        .find_map(|e| match &e.payload {
            EntryPayload::Config(configuration) => Some(configuration.clone()),
            _ => None,
        })
        .unwrap_or(initial.snapshot.configuration.clone());
    // A term above any this node has seen: no leader of the old cluster ever wrote an entry in it.
    let term = initial.hard_state.term.max(last_term) + 1;
    let configuration = Configuration::with_voters([node_id]);
    let entry = Entry { index: last_index + 1, term, payload: EntryPayload::Config(configuration.clone()) };
    let hard_state = HardState { term, vote: None, commit: initial.hard_state.commit };
    tracing::warn!(
        node_id,
        %old_configuration,
        new_configuration = %configuration,
        index = entry.index,
        term,
        committed = initial.hard_state.commit,
        last_index,
        "FORCING A NEW ONE-NODE CLUSTER: entries after the commit index become committed, and writes \
         only the lost members held are gone"
    );
    storage.write(Some(hard_state), &[entry]).map_err(|e| e.to_string())?;
    Ok(format!(
        "node {node_id} is now a one-node cluster (configuration entry {} in term {term}; it was {old_configuration}, \
         log up to {last_index}, {} committed). Start it as usual, then add members back with new ids and \
         empty data directories.",
        last_index + 1,
        initial.hard_state.commit
    ))
}
