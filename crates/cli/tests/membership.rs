//! Membership changes on real processes, through the `raftkv member` and `raftkv transfer-leader`
//! commands pointed at any node: a cluster grows from 3 to 5 while a client writes, leadership moves
//! twice, two members (the leader among them) are removed and keep running without disturbing the rest,
//! and a node that lost its disk is replaced by a new member — with every acknowledged write present.

mod harness;

use std::process::Command;
use std::time::{Duration, Instant};

use harness::clients::{assert_linearizable, Writer};
use harness::{wait_until, Cluster, LEADER_BOUND};
use redis::Commands;

fn term_of(cluster: &Cluster, id: u64) -> u64 {
    cluster.info_field(id, "term").and_then(|t| t.parse().ok()).expect("a term")
}

#[test]
fn grow_three_to_five_while_writing_transfer_twice_then_remove_two_and_lose_nothing() {
    let mut cluster = Cluster::start("member-grow", 3);
    let (four, five) = (cluster.add_node(), cluster.add_node());
    let writer = Writer::start(cluster.nodes.iter().map(|n| n.client_port).collect());
    std::thread::sleep(Duration::from_millis(300));

    // Node 4 as a voter in one command (learner, then promoted once caught up), sent to a follower.
    let leader = wait_for_leader_among(&cluster, &[1, 2, 3]);
    let follower = (1..=3).find(|&id| id != leader).unwrap();
    let added = cluster.raftkv(follower, &["member", "add", "4", &cluster.addrs(four)]);
    assert!(added.contains("node 4 is a voter"), "{added}");
    // Node 5 as a learner, then promoted: both through node 4, the new member.
    let added = cluster.raftkv(four, &["member", "add", "5", &cluster.addrs(five), "--learner"]);
    assert!(added.contains("node 5 added as a learner"), "{added}");
    let list = cluster.raftkv(1, &["member", "list"]);
    assert!(list.lines().any(|l| l.starts_with("5 learner")), "{list}");
    let promoted = cluster.raftkv(1, &["member", "promote", "5"]);
    assert!(promoted.contains("node 5 is a voter"), "{promoted}");
    let everyone = [1, 2, 3, 4, 5];
    wait_until(
        LEADER_BOUND,
        || everyone.iter().all(|&id| cluster.voters(id) == everyone),
        || "every node to see five voters".into(),
    );
    // The HTTP view of the same list, from a node that joined.
    let members = cluster.admin_get(four, "/members").unwrap();
    assert_eq!(members.status, 200, "{}", members.body);
    assert_eq!(members.body.lines().filter(|l| l.contains(" voter")).count(), 5, "{}", members.body);
    // A new member serves linearizable reads.
    let _: () = cluster.connect(1).unwrap().set("grown", "yes").unwrap();
    let value: Option<String> = cluster.connect(five).unwrap().get("grown").unwrap();
    assert_eq!(value.as_deref(), Some("yes"));

    // Leadership moves twice, asked through nodes that do not lead.
    for target in [4, 5] {
        let leader = wait_for_leader_among(&cluster, &everyone);
        let target = if leader == target { 3 } else { target };
        let via = everyone.iter().copied().find(|&id| id != leader && id != target).unwrap();
        let moved = cluster.raftkv(via, &["transfer-leader", &target.to_string()]);
        assert!(moved.contains(&format!("node {target} leads")), "{moved}");
        wait_until(
            LEADER_BOUND,
            || cluster.leader_among(&everyone) == Some(target),
            || format!("every node to follow node {target}"),
        );
    }

    // Remove the leader and node 1; both keep running.
    let old_leader = wait_for_leader_among(&cluster, &everyone);
    let via = if old_leader == 2 { 3 } else { 2 };
    let removed = cluster.raftkv(via, &["member", "remove", &old_leader.to_string()]);
    assert!(removed.contains(&format!("node {old_leader} removed")), "{removed}");
    let other = if old_leader == 1 { 2 } else { 1 };
    let remaining: Vec<u64> =
        everyone.iter().copied().filter(|&id| id != old_leader && id != other).collect();
    let removed_second = cluster.raftkv(remaining[0], &["member", "remove", &other.to_string()]);
    assert!(removed_second.contains(&format!("node {other} removed")), "{removed_second}");
    wait_until(
        LEADER_BOUND,
        || remaining.iter().all(|&id| cluster.voters(id) == remaining),
        || format!("the remaining nodes {remaining:?} to see only themselves as voters"),
    );
    std::thread::sleep(Duration::from_millis(500));
    let (acknowledged, history) = writer.stop();
    assert!(acknowledged.len() >= 50, "only {} writes acknowledged", acknowledged.len());
    eprintln!("{} writes acknowledged while the cluster changed", acknowledged.len());
    assert_linearizable(&cluster.dir, &history);

    // The removed nodes keep running, yet the cluster's term stays put for several election timeouts.
    let leader = wait_for_leader_among(&cluster, &remaining);
    let term = term_of(&cluster, leader);
    assert!(cluster.is_running(other) && cluster.is_running(old_leader));
    std::thread::sleep(Duration::from_millis(6 * cluster.election_timeout_ms));
    assert_eq!(cluster.leader_among(&remaining), Some(leader), "leadership stayed");
    assert_eq!(term_of(&cluster, leader), term, "removed nodes raised the cluster's term");
    for &id in &remaining {
        cluster.assert_all_present(id, &acknowledged);
    }
}

fn wait_for_leader_among(cluster: &Cluster, ids: &[u64]) -> u64 {
    let mut found = None;
    wait_until(
        LEADER_BOUND,
        || {
            found = cluster.leader_among(ids);
            found.is_some()
        },
        || format!("a leader among {ids:?}"),
    );
    found.unwrap()
}

#[test]
fn a_node_that_lost_its_disk_is_replaced_by_a_new_member() {
    let mut cluster = Cluster::start("member-replace", 3);
    let mut acknowledged = Vec::new();
    let mut connection = cluster.connect(1).unwrap();
    for i in 0..200u64 {
        let _: () = connection.set(format!("key-{i}"), i).unwrap();
        acknowledged.push(i);
    }
    // Node 3 loses its disk: it is stopped and its directory is gone.
    let lost = if cluster.wait_for_leader(LEADER_BOUND) == 3 { 2 } else { 3 };
    cluster.kill(lost);
    std::fs::remove_dir_all(cluster.dir.join(format!("node-{lost}"))).unwrap();
    let survivor = (1..=3).find(|&id| id != lost).unwrap();
    let removed = cluster.raftkv(survivor, &["member", "remove", &lost.to_string()]);
    assert!(removed.contains("removed"), "{removed}");
    // A new member under a new id with an empty directory joins through a survivor and is promoted.
    let new = cluster.join_node(survivor, true);
    let started = Instant::now();
    let members: Vec<u64> = (1..=3).filter(|&id| id != lost).chain([new]).collect();
    wait_until(
        LEADER_BOUND,
        || members.iter().all(|&id| cluster.voters(id) == members),
        || format!("every member to see voters {members:?}"),
    );
    for i in 200..250u64 {
        let _: () = cluster.connect(new).unwrap().set(format!("key-{i}"), i).unwrap();
        acknowledged.push(i);
    }
    for &id in &members {
        cluster.assert_all_present(id, &acknowledged);
    }
    eprintln!("replacement took {:?} after the add", started.elapsed());
}

#[test]
fn sigterm_on_the_leader_hands_leadership_to_a_follower_first() {
    let mut cluster = Cluster::start("member-sigterm", 3);
    let leader = cluster.wait_for_leader(LEADER_BOUND);
    let term = term_of(&cluster, leader);
    let _: () = cluster.connect(leader).unwrap().set("before", "stop").unwrap();
    assert!(cluster.terminate(leader).success(), "a clean stop exits 0");
    let log = std::fs::read_to_string(cluster.dir.join(format!("node-{leader}.log"))).unwrap();
    assert!(log.contains("leadership handed over"), "the old leader's log:\n{log}");
    let rest: Vec<u64> = (1..=3).filter(|&id| id != leader).collect();
    let new_leader = wait_for_leader_among(&cluster, &rest);
    // One election, started by the transfer's TimeoutNow: no term was lost to timeouts.
    assert_eq!(term_of(&cluster, new_leader), term + 1);
    let value: Option<String> = cluster.connect(new_leader).unwrap().get("before").unwrap();
    assert_eq!(value.as_deref(), Some("stop"));
}

#[test]
fn force_new_cluster_turns_one_survivor_of_a_lost_majority_into_a_one_node_cluster() {
    let mut cluster = Cluster::start("member-force", 3);
    let mut connection = cluster.connect(1).unwrap();
    for i in 0..20u64 {
        let _: () = connection.set(format!("key-{i}"), i).unwrap();
    }
    let committed = cluster.commit_index(1);
    cluster.wait_applied(1, committed, LEADER_BOUND);
    // Nodes 2 and 3 are gone for good; node 1 is stopped.
    for id in [2, 3, 1] {
        cluster.kill(id);
    }
    let data_dir = cluster.dir.join("node-1");
    let refused = Command::new(env!("CARGO_BIN_EXE_raftkv"))
        .args(["force-new-cluster", "--node-id", "1", "--cluster-id", &cluster.cluster_id.to_string()])
        .arg("--data-dir")
        .arg(&data_dir)
        .output()
        .unwrap();
    assert!(!refused.status.success(), "it insists on the confirmation flag");
    let forced = Command::new(env!("CARGO_BIN_EXE_raftkv"))
        .args(["force-new-cluster", "--node-id", "1", "--cluster-id", &cluster.cluster_id.to_string()])
        .arg("--data-dir")
        .arg(&data_dir)
        .arg("--i-understand-this-may-lose-acknowledged-writes")
        .output()
        .unwrap();
    assert!(forced.status.success(), "{}", String::from_utf8_lossy(&forced.stderr));
    assert!(
        String::from_utf8_lossy(&forced.stderr).contains("FORCING A NEW ONE-NODE CLUSTER"),
        "logged loudly"
    );
    cluster.start_node(1, false);
    wait_for_leader_among(&cluster, &[1]);
    assert_eq!(cluster.voters(1), [1]);
    let mut connection = cluster.connect(1).unwrap();
    let _: () = connection.set("after", "forced").unwrap();
    for i in 0..20u64 {
        let value: Option<u64> = connection.get(format!("key-{i}")).unwrap();
        assert_eq!(value, Some(i));
    }
}
