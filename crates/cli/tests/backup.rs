//! Real processes (issue 6): `raftkv backup` saves a consistent snapshot of a running cluster, and
//! `raftkv restore` seeds the data directories of a brand-new cluster from it.

mod harness;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use harness::{Cluster, LEADER_BOUND};
use redis::Commands;

const KEYS: usize = 3_000;
const KEYS_PER_WRITE: usize = 100;

fn raftkv(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_raftkv")).args(args).output().expect("running raftkv")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A folder for backup files that outlives the clusters (each cluster removes its own folder).
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("raftkv-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn backup(from_port: u16, to: &Path, extra: &[&str]) -> Output {
    let from = format!("127.0.0.1:{from_port}");
    let mut args = vec!["backup", "--from", &from, "--to", to.to_str().unwrap()];
    args.extend_from_slice(extra);
    raftkv(&args)
}

fn restore(file: &Path, cluster: &Cluster, id: u64, dir: &Path) -> Output {
    let id = id.to_string();
    let mut args = vec!["restore", file.to_str().unwrap(), "--dir", dir.to_str().unwrap(), "--node-id", &id];
    let members = cluster.member_flags();
    for member in &members {
        args.extend(["--member", member.as_str()]);
    }
    raftkv(&args)
}

/// The id restore printed: "... of a new cluster N with members ...".
fn restored_cluster_id(stdout: &str) -> u64 {
    let after = stdout.split("of a new cluster ").nth(1).expect("restore names the new cluster");
    after.split_whitespace().next().unwrap().parse().expect("a cluster id")
}

#[test]
fn a_backup_restored_into_a_new_three_node_cluster_serves_every_key() {
    let files = TempDir::new("backup-files");
    let file = files.0.join("cluster.backup");
    {
        // A low threshold, so the nodes have snapshotted and compacted before the backup is taken.
        let source = Cluster::start_with_args("backup-source", 3, &["--snapshot-threshold-entries", "10"]);
        source.write_keys(KEYS, KEYS_PER_WRITE);
        let leader = source.wait_for_leader(LEADER_BOUND);
        let _: () = source.connect(leader).unwrap().set("last", "acknowledged").unwrap();
        // Backed up through a follower: it asks the leader for the commit index (ReadIndex), so the write
        // just acknowledged is in the backup even if this follower had not applied it yet.
        let follower = (1..=3).find(|&id| id != leader).unwrap();
        let saved = backup(source.node(follower).admin_port, &file, &[]);
        assert!(saved.status.success(), "backup failed: {}", text(&saved.stderr));
        let summary = text(&saved.stdout);
        println!("{summary}");
        assert!(summary.contains(&format!("Backed up node {follower}")), "{summary}");
        assert!(summary.contains(&format!("{} keys", KEYS + 1)), "{summary}");
        assert!(!files.0.join("cluster.backup.tmp").exists(), "the temporary file is gone");

        // An existing file is replaced only with --force.
        let again = backup(source.node(leader).admin_port, &file, &[]);
        assert!(!again.status.success());
        assert!(text(&again.stderr).contains("exists; pass --force"), "{}", text(&again.stderr));
        let forced = backup(source.node(leader).admin_port, &file, &["--force"]);
        assert!(forced.status.success(), "backup --force failed: {}", text(&forced.stderr));
    }

    let mut restored = Cluster::prepare("backup-restored", 3);
    let mut cluster_ids = Vec::new();
    for id in 1..=3 {
        let seeded = restore(&file, &restored, id, &restored.data_dir(id));
        assert!(seeded.status.success(), "restore of node {id} failed: {}", text(&seeded.stderr));
        println!("{}", text(&seeded.stdout));
        cluster_ids.push(restored_cluster_id(&text(&seeded.stdout)));
    }
    assert!(cluster_ids.iter().all(|&id| id == cluster_ids[0]), "one derived id for the whole cluster");
    restored.cluster_id = cluster_ids[0];
    for id in 1..=3 {
        restored.start_node(id, false);
    }
    let leader = restored.wait_for_leader(LEADER_BOUND);
    for id in 1..=3 {
        // Writes through every node apply (the old cluster's client sessions did not come along to
        // answer the new nodes' commands from their reply caches).
        let key = format!("after-restore-{id}");
        let _: () = restored.connect(id).unwrap().set(&key, id).unwrap();
        let value: Option<u64> = restored.connect(leader).unwrap().get(&key).unwrap();
        assert_eq!(value, Some(id));
    }
    let target = restored.commit_index(leader);
    for id in 1..=3 {
        restored.wait_applied(id, target, std::time::Duration::from_secs(30));
        restored.assert_serves_every_key(id, KEYS);
        let last: Option<String> = restored.connect(id).unwrap().get("last").unwrap();
        assert_eq!(last.as_deref(), Some("acknowledged"), "node {id}");
    }

    // The same file damaged by one byte is refused before anything is written.
    let damaged = files.0.join("damaged.backup");
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&damaged, bytes).unwrap();
    let fresh = files.0.join("fresh-node");
    let refused = restore(&damaged, &restored, 1, &fresh);
    assert!(!refused.status.success());
    let message = text(&refused.stderr);
    println!("{message}");
    assert!(message.contains("damaged.backup") && message.contains("CRC32C"), "{message}");
    assert!(!fresh.exists(), "nothing was created");

    // And a directory that holds anything is never overwritten.
    let refused = restore(&file, &restored, 1, &restored.data_dir(1));
    assert!(!refused.status.success());
    assert!(text(&refused.stderr).contains("is not empty"), "{}", text(&refused.stderr));
}

#[test]
fn a_backup_from_a_node_nobody_listens_on_fails_clearly() {
    let files = TempDir::new("backup-unreachable");
    // Bind and drop: nothing listens on that port any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let file = files.0.join("never.backup");
    let output = backup(port, &file, &[]);
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("cannot reach a node's admin endpoint"),
        "{}",
        text(&output.stderr)
    );
    assert!(!file.exists());
}
