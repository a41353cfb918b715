//! `raftkv restore FILE --dir DIR --node-id N --member ...`: seed the data directory of one node of a
//! **brand-new** cluster from a backup (`raftkv backup`).
//!
//! What a seeded directory holds, and why it is safe (Raft §5.4, §7; dissertation §5): the backup's
//! state machine as a snapshot at the backup's index and term, but with the **new** cluster's
//! configuration (the `--member` ids as voters); an empty log that continues after it; hard state
//! `(term = the snapshot's, no vote, commit = its index)`; and the new cluster's identity. Every member
//! must be seeded from the same file with the same members, so every log agrees up to the snapshot,
//! whose entries count as committed; none holds anything after it; nobody has voted; the first election
//! runs above the snapshot's term. The old cluster's client sessions are dropped: the new nodes number
//! their own sessions from incarnation 1 again, and an old session with the same id would answer a new
//! command from its reply cache instead of applying it.
//!
//! The new cluster's id (`--cluster-id`) defaults to one derived from the backup's checksum, index and
//! term and the member ids: every member seeded with the same file and members gets the same id without
//! anyone copying a number around, a member seeded from another file (or with other members) gets
//! another id and is refused at the peer handshake, and the old cluster (a random id from `raftkv local`,
//! or whatever its operator chose) is not confused with the new one.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use raft::{Configuration, NodeId, SnapshotMeta};
use server::Member;
use storage::{FileDisk, Storage, StorageOptions};

use crate::backup_file::{self, VerifiedBackup};

/// Seed one node's data directory of a brand-new cluster from a backup file.
#[derive(clap::Args, Debug)]
pub struct RestoreArgs {
    /// The backup (`raftkv backup --to FILE`).
    file: PathBuf,
    /// The data directory to create; it must be missing or empty.
    #[arg(long)]
    dir: PathBuf,
    /// This node's id in the new cluster.
    #[arg(long)]
    node_id: NodeId,
    /// Every member of the new cluster, as for `raftkv serve`: `id=peer_addr[,client_addr[,admin_addr]]`,
    /// one flag per member. Give every member the same list.
    #[arg(long, required = true)]
    member: Vec<String>,
    /// The new cluster's id (pass the same to `raftkv serve --cluster-id`). Default: derived from the
    /// backup and the member ids, so every member seeded alike gets the same one.
    #[arg(long)]
    cluster_id: Option<u64>,
}

pub fn run(args: RestoreArgs) -> ExitCode {
    match restore(&args) {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("raftkv restore: {error}");
            ExitCode::FAILURE
        }
    }
}

fn restore(args: &RestoreArgs) -> Result<String, String> {
    let members = parse_members(&args.member, args.node_id)?;
    check_fresh(&args.dir)?;
    let mut backup = backup_file::verify(&args.file)?;
    let ids: Vec<NodeId> = members.iter().map(|m| m.id).collect();
    let cluster_id = args.cluster_id.unwrap_or_else(|| derived_cluster_id(&backup, &ids));
    backup.machine.clear_sessions();
    seed(&backup, &args.dir, args.node_id, &ids, cluster_id)?;
    let member_flags: Vec<String> = args.member.iter().map(|m| format!("--member {m}")).collect();
    Ok(format!(
        "Restored {} (snapshot at index {}, term {}, {} keys) into {} as node {} of a new cluster {} with \
         members {}.\nStart it with: raftkv serve --node-id {} --cluster-id {} --data-dir {} {} (and its \
         listen addresses; no --bootstrap).\nSeed every other member from the same file with the same \
         --member flags{}.",
        args.file.display(),
        backup.meta.index,
        backup.meta.term,
        backup.machine.key_count(),
        args.dir.display(),
        args.node_id,
        cluster_id,
        join_ids(&ids),
        args.node_id,
        cluster_id,
        args.dir.display(),
        member_flags.join(" "),
        if args.cluster_id.is_some() { " and --cluster-id" } else { "" },
    ))
}

/// The members of the new cluster, checked: ids distinct and not 0, and this node among them.
pub fn parse_members(flags: &[String], node_id: NodeId) -> Result<Vec<Member>, String> {
    let members =
        flags.iter().map(|m| Member::parse(m)).collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())?;
    if node_id == 0 {
        return Err("node id 0 means nobody; ids start at 1".into());
    }
    let mut ids: Vec<NodeId> = members.iter().map(|m| m.id).collect();
    ids.sort_unstable();
    if ids.contains(&0) {
        return Err("member id 0 means nobody".into());
    }
    if ids.windows(2).any(|w| w[0] == w[1]) {
        return Err("a member id is listed twice".into());
    }
    if !ids.contains(&node_id) {
        return Err(format!(
            "node {node_id} is not among the members ({}): a restored node must be one of the new cluster's voters",
            join_ids(&ids)
        ));
    }
    Ok(members)
}

/// Refuses a directory that holds anything: restore seeds only a brand-new node.
pub fn check_fresh(dir: &Path) -> Result<(), String> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => match entries.next() {
            None => Ok(()),
            Some(_) => Err(format!(
                "{} is not empty: restore only seeds a brand-new node's data directory (never overwrite a \
                 member's data; use a new directory)",
                dir.display()
            )),
        },
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(format!("{}: {error}", dir.display())),
    }
}

/// Writes the seeded state into `dir` (see the module docs).
pub fn seed(
    backup: &VerifiedBackup,
    dir: &Path,
    node_id: NodeId,
    ids: &[NodeId],
    cluster_id: u64,
) -> Result<(), String> {
    let in_dir = |e: &dyn std::fmt::Display| format!("{}: {e}", dir.display());
    let disk = FileDisk::new(dir).map_err(|e| in_dir(&e))?;
    let (mut storage, state) =
        Storage::open(disk, StorageOptions::new(cluster_id, node_id)).map_err(|e| in_dir(&e))?;
    if state.is_some() {
        return Err(in_dir(&"already holds a member's data"));
    }
    let meta = SnapshotMeta {
        index: backup.meta.index,
        term: backup.meta.term,
        configuration: Configuration::with_voters(ids.iter().copied()),
    };
    let frozen = backup.machine.snapshot();
    storage.seed_from_snapshot(meta, |writer| frozen.write_to(writer)).map_err(|e| in_dir(&e))?;
    Ok(())
}

/// FNV-1a over the backup's checksum, index and term and the sorted member ids; never 0.
pub fn derived_cluster_id(backup: &VerifiedBackup, ids: &[NodeId]) -> u64 {
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let words =
        [u64::from(backup.data_crc32c), backup.meta.index, backup.meta.term].into_iter().chain(sorted);
    for word in words {
        for byte in word.to_le_bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash.max(1)
}

fn join_ids(ids: &[NodeId]) -> String {
    ids.iter().map(|id| id.to_string()).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn members_must_name_this_node_once_each() {
        let three = flags(&["1=127.0.0.1:7101", "2=127.0.0.1:7102", "3=127.0.0.1:7103"]);
        assert_eq!(parse_members(&three, 2).unwrap().len(), 3);
        assert!(parse_members(&three, 4).unwrap_err().contains("not among the members (1, 2, 3)"));
        assert!(parse_members(&three, 0).unwrap_err().contains("id 0"));
        let twice = flags(&["1=a:1", "1=b:2"]);
        assert!(parse_members(&twice, 1).unwrap_err().contains("listed twice"));
        assert!(parse_members(&flags(&["1"]), 1).unwrap_err().contains("no '='"));
        assert!(parse_members(&flags(&["0=a:1"]), 1).unwrap_err().contains("id 0"));
    }

    #[test]
    fn only_a_missing_or_empty_directory_is_fresh() {
        let dir = std::env::temp_dir().join(format!("raftkv-restore-fresh-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(check_fresh(&dir).is_ok());
        std::fs::create_dir_all(&dir).unwrap();
        assert!(check_fresh(&dir).is_ok());
        std::fs::write(dir.join("anything"), b"x").unwrap();
        assert!(check_fresh(&dir).unwrap_err().contains("is not empty"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_derived_cluster_id_depends_on_the_backup_and_the_member_set_only() {
        let backup = |crc: u32, index: u64| VerifiedBackup {
            meta: SnapshotMeta { index, term: 2, configuration: Configuration::with_voters([1]) },
            machine: kv::KvStateMachine::new(kv::KvConfig::default()),
            data_crc32c: crc,
        };
        let id = derived_cluster_id(&backup(7, 100), &[1, 2, 3]);
        assert_eq!(id, derived_cluster_id(&backup(7, 100), &[3, 1, 2]), "member order does not matter");
        assert_ne!(id, derived_cluster_id(&backup(8, 100), &[1, 2, 3]), "another backup, another cluster");
        assert_ne!(id, derived_cluster_id(&backup(7, 101), &[1, 2, 3]));
        assert_ne!(id, derived_cluster_id(&backup(7, 100), &[1, 2, 4]), "other members, another cluster");
        assert_ne!(id, 0);
    }
}
