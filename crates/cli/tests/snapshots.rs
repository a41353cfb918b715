//! Real processes (issue 6): a follower that was down while the leader snapshotted and compacted far past
//! it catches up through InstallSnapshot and serves the same data; a restarted node starts from its own
//! snapshot and replays only the log after it.

mod harness;

use std::time::Duration;

use harness::{wait_until, Cluster, LEADER_BOUND};
use redis::Commands;

/// Keys per MSET: one log entry each, so the leader compacts every `THRESHOLD` MSETs.
const KEYS_PER_WRITE: usize = 100;
const THRESHOLD: &str = "50";

/// Keys written while the follower is down: the 200,000 (in MSETs of 100, so 2,000 entries and
/// 40 snapshots past the follower); `RAFTKV_SNAPSHOT_TEST_KEYS` sets another count.
fn key_count() -> usize {
    std::env::var("RAFTKV_SNAPSHOT_TEST_KEYS").ok().and_then(|n| n.parse().ok()).unwrap_or(200_000)
}

fn metric(cluster: &Cluster, id: u64, name: &str) -> f64 {
    let Ok(response) = cluster.admin_get(id, "/metrics") else { return 0.0 };
    response
        .body
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn a_follower_down_while_the_leader_compacts_catches_up_through_install_snapshot() {
    let mut cluster =
        Cluster::start_with_args("install-snapshot", 3, &["--snapshot-threshold-entries", THRESHOLD]);
    let leader = cluster.wait_for_leader(LEADER_BOUND);
    let follower = (1..=3).find(|&id| id != leader).unwrap();
    let _: () = cluster.connect(leader).unwrap().set("before", "stop").unwrap();
    cluster.kill(follower);

    let count = key_count();
    cluster.write_keys(count, KEYS_PER_WRITE);
    let leader = cluster.wait_for_leader(LEADER_BOUND);
    let leader_snapshot = cluster.status_json(leader).and_then(|s| s["snapshot_index"].as_u64()).unwrap_or(0);
    assert!(
        leader_snapshot > 100,
        "the leader compacted far past the stopped follower: snapshot at {leader_snapshot}"
    );
    assert!(metric(&cluster, leader, "raftkv_snapshots_taken_total") >= 2.0);
    println!(
        "{count} keys: leader snapshot at {leader_snapshot}, {} snapshots taken, longest node-loop pause {:.1} ms",
        metric(&cluster, leader, "raftkv_snapshots_taken_total"),
        1_000.0 * metric(&cluster, leader, "raftkv_node_loop_longest_pause_seconds")
    );

    cluster.start_node(follower, false);
    let target = cluster.commit_index(leader);
    cluster.wait_applied(follower, target, Duration::from_secs(60));
    wait_until(
        Duration::from_secs(10),
        || metric(&cluster, follower, "raftkv_snapshots_installed_total") >= 1.0,
        || format!("node {follower} to report an installed snapshot"),
    );
    cluster.assert_serves_every_key(follower, count);
    let before: Option<String> = cluster.connect(follower).unwrap().get("before").unwrap();
    assert_eq!(before.as_deref(), Some("stop"));

    // And it restarts from that snapshot (plus whatever log came after it), serving the same data.
    cluster.kill(follower);
    cluster.start_node(follower, false);
    cluster.wait_applied(follower, target, Duration::from_secs(60));
    cluster.assert_serves_every_key(follower, count);
}
