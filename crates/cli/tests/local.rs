//! `raftkv local` as a newcomer uses it: start, write, Ctrl-C, start again, read; and grown with
//! `raftkv local add`, shrunk with `raftkv local remove`, while clients work.

mod harness;

use std::process::Command;
use std::time::Duration;

use harness::clients::{assert_linearizable, Writer};
use harness::local::LocalCluster;
use harness::{http, wait_until, LEADER_BOUND};

/// Retries `f` every 100 ms for up to 20 s.
fn eventually<T>(mut f: impl FnMut() -> redis::RedisResult<T>) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        match f() {
            Ok(value) => return value,
            Err(error) if std::time::Instant::now() < deadline => {
                let _ = error;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(error) => panic!("no success within 20 s: {error}"),
        }
    }
}

#[test]
fn local_cluster_starts_stops_cleanly_and_resumes_its_data() {
    let mut local = LocalCluster::start("local", 3);
    let base = local.base_port;
    eventually(|| redis::cmd("SET").arg("hello").arg("world").query::<()>(&mut local.cluster.connect(1)?));
    let status = local.raftkv(&["status"]);
    let table = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success() && table.contains("leader"), "raftkv status printed:\n{table}");
    assert_eq!(table.lines().count(), 5, "a header, one line per node, the configuration:\n{table}");
    let configuration = table.lines().last().unwrap_or_default();
    assert!(configuration.contains("voters 1,2,3; learners none"), "{configuration}");
    // Each node serves its admin endpoint on the port local assigned it.
    for admin_port in base + 200..base + 203 {
        let health = http::get(admin_port, "/health").expect("GET /health");
        assert_eq!(health.status, 200, "node at admin port {admin_port}: {}", health.body);
    }
    assert!(local.stop().success(), "every node should stop cleanly");

    local.resume();
    let value: String = eventually(|| redis::cmd("GET").arg("hello").query(&mut local.cluster.connect(3)?));
    assert_eq!(value, "world");
    assert!(local.stop().success());
}

/// The real-process test, with `raftkv local`: grow a 3-node cluster to 5 while clients write
/// (two `raftkv local add` at once: the edit lock gives them different ids, the cluster takes one
/// change at a time), transfer leadership twice, remove two nodes (the leader among them), and check
/// with `raftkv check` that the clients' history is linearizable and nothing acknowledged is lost; then
/// Ctrl-C and start again: the added nodes come back, the removed ones do not.
#[test]
fn a_local_cluster_grows_to_five_moves_leadership_twice_and_shrinks_to_three_losing_nothing() {
    let mut local = LocalCluster::start("local-grow", 3);
    let writer = Writer::start(local.every_client_port());
    std::thread::sleep(Duration::from_millis(300));

    let refused = Command::new(env!("CARGO_BIN_EXE_raftkv"))
        .args(["local", "add", "--dir"])
        .arg(local.cluster.dir.join("nowhere"))
        .output()
        .unwrap();
    assert!(!refused.status.success(), "an add without a cluster fails");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("holds no local cluster"), "{refused:?}");

    let dir = local.cluster.dir.clone();
    let racing = std::thread::spawn(move || {
        Command::new(env!("CARGO_BIN_EXE_raftkv")).args(["local", "add", "--dir"]).arg(&dir).output().unwrap()
    });
    let first = local.add(false);
    let second = racing.join().unwrap();
    let printed = String::from_utf8_lossy(&second.stdout).into_owned();
    assert!(second.status.success(), "the racing add: {}{printed}", String::from_utf8_lossy(&second.stderr));
    let other = if first == 4 { 5 } else { 4 };
    assert!(printed.starts_with(&format!("Added node {other} as a voter")), "{printed}");
    local.know_nodes_up_to(5);
    let everyone = [1, 2, 3, 4, 5];
    wait_until(
        LEADER_BOUND,
        || everyone.iter().all(|&id| local.cluster.voters(id) == everyone),
        || "every node to see five voters".into(),
    );
    let status = String::from_utf8_lossy(&local.raftkv(&["status"]).stdout).into_owned();
    assert!(status.contains("voters 1,2,3,4,5"), "raftkv status --dir sees the added nodes:\n{status}");

    for target in [4, 5] {
        let leader = local.wait_for_leader();
        let target = if leader == target { 3 } else { target };
        let moved = local.raftkv(&["transfer-leader", &target.to_string()]);
        assert!(
            String::from_utf8_lossy(&moved.stdout).contains(&format!("node {target} leads")),
            "{moved:?}"
        );
        wait_until(
            LEADER_BOUND,
            || local.cluster.leader_among(&everyone) == Some(target),
            || format!("every node to follow node {target}"),
        );
    }

    let leader = local.wait_for_leader();
    let removed = local.remove(leader);
    assert!(removed.contains(&format!("node {leader} removed")), "{removed}");
    let second_removed = if leader == 1 { 2 } else { 1 };
    local.remove(second_removed);
    let remaining = local.members();
    assert_eq!(remaining.len(), 3);
    wait_until(
        LEADER_BOUND,
        || remaining.iter().all(|&id| local.cluster.voters(id) == remaining),
        || format!("the remaining nodes {remaining:?} to see only themselves as voters"),
    );
    std::thread::sleep(Duration::from_millis(500));
    let (acknowledged, history) = writer.stop();
    assert!(acknowledged.len() >= 50, "only {} writes acknowledged", acknowledged.len());
    eprintln!("{} writes acknowledged while the local cluster changed", acknowledged.len());
    assert_linearizable(&local.cluster.dir, &history);
    for &id in &remaining {
        local.cluster.assert_all_present(id, &acknowledged);
    }

    // Ctrl-C stops the added nodes too; a new start resumes the three members, not the removed two.
    assert!(local.stop().success(), "every node should stop cleanly");
    local.resume();
    for id in [leader, second_removed] {
        assert!(local.cluster.connect(id).is_err(), "removed node {id} was started again");
    }
    wait_until(
        LEADER_BOUND,
        || remaining.iter().all(|&id| local.cluster.voters(id) == remaining),
        || format!("the resumed nodes {remaining:?} to see only themselves as voters"),
    );
    for &id in &remaining {
        local.cluster.assert_all_present(id, &acknowledged);
    }
}
