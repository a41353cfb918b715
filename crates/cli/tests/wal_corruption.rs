//! A damaged WAL on a stopped node: the node refuses to start, naming the file and the byte offset, and
//! the rest of the cluster keeps serving. Bringing such a node back is the README's replacement
//! procedure ("Replacing a node that lost its disk (or whose WAL is damaged)"): a new member, under a
//! new id, with an empty directory — and the cluster ends with all its data.

mod harness;

use std::path::PathBuf;
use std::time::Duration;

use harness::clients::{assert_linearizable, Writer};
use harness::raw::Raw;
use harness::{wait_for_exit, wait_until, Cluster, LEADER_BOUND};

/// Writes 60 keys `k{i}` in as many batches through the leader and stops a follower once it applied
/// them; the follower.
fn stop_a_follower_after_writes(cluster: &mut Cluster) -> u64 {
    let leader = cluster.wait_for_leader(LEADER_BOUND);
    let mut client = Raw::connect(cluster.node(leader).client_port);
    // Many small batches, so a damaged early record is followed by later batches that declare it synced:
    // not a torn write at the tail, which recovery would cut off, but damage it must refuse.
    for i in 0..60 {
        assert_eq!(client.call(&["SET", &format!("k{i}"), &format!("value-{i}")]), "+OK");
    }
    let victim = (1..=3).find(|&id| id != leader).unwrap();
    cluster.wait_applied(victim, cluster.commit_index(leader), LEADER_BOUND);
    assert!(cluster.terminate(victim).success());
    victim
}

/// Flips one byte a third of the way into node `id`'s first WAL segment; that segment.
fn damage_first_wal_segment(cluster: &Cluster, id: u64) -> PathBuf {
    let mut segments: Vec<_> = std::fs::read_dir(cluster.data_dir(id))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.file_name().unwrap().to_string_lossy().starts_with("wal-"))
        .collect();
    segments.sort();
    let segment = segments.swap_remove(0);
    let mut bytes = std::fs::read(&segment).unwrap();
    let offset = bytes.len() / 3;
    bytes[offset] ^= 0x5a;
    std::fs::write(&segment, &bytes).unwrap();
    segment
}

/// Starts node `id` again and asserts it exits at once, naming `segment` and an offset.
fn assert_refuses_to_start(cluster: &Cluster, id: u64, segment: &std::path::Path) {
    let mut child = cluster.serve_command(id, false).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let status = wait_for_exit(&mut child, Duration::from_secs(20), || {
        format!("node {id} to refuse its corrupt WAL (it started instead)")
    });
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    let file_name = segment.file_name().unwrap().to_string_lossy().into_owned();
    assert!(stderr.contains(&file_name) && stderr.contains("offset"), "no file and offset in: {stderr}");
    println!("node {id} refused to start: {}", stderr.trim());
}

#[test]
fn a_corrupt_wal_segment_stops_its_node_at_start_with_file_and_offset_and_the_others_serve() {
    let mut cluster = Cluster::start("wal-corruption", 3);
    let victim = stop_a_follower_after_writes(&mut cluster);
    let segment = damage_first_wal_segment(&cluster, victim);
    assert_refuses_to_start(&cluster, victim, &segment);

    // Two of three remain: a majority, so writes and reads go on.
    let leader = cluster.wait_for_leader(LEADER_BOUND);
    let survivor = (1..=3).find(|&id| id != victim && id != leader).unwrap();
    let mut client = Raw::connect(cluster.node(leader).client_port);
    assert_eq!(client.call(&["SET", "after", "corruption"]), "+OK");
    assert_eq!(Raw::connect(cluster.node(survivor).client_port).call(&["GET", "after"]), "corruption");
    assert_eq!(Raw::connect(cluster.node(survivor).client_port).call(&["GET", "k59"]), "value-59");
}

/// The README's procedure, step by step, while a client keeps writing.
#[test]
fn a_node_whose_wal_is_damaged_is_replaced_by_the_readme_procedure_and_nothing_is_lost() {
    let mut cluster = Cluster::start("wal-replace", 3);
    let damaged = stop_a_follower_after_writes(&mut cluster);
    let segment = damage_first_wal_segment(&cluster, damaged);
    assert_refuses_to_start(&cluster, damaged, &segment);
    let survivors: Vec<u64> = (1..=3).filter(|&id| id != damaged).collect();
    let writer = Writer::start(survivors.iter().map(|&id| cluster.node(id).client_port).collect());

    // 1. Stop it for good: it refused to start, so nothing runs; its directory is never used again.
    assert!(!cluster.is_running(damaged));
    // 2. raftkv member remove OLD_ID --node <any live member>.
    let removed = cluster.raftkv(survivors[0], &["member", "remove", &damaged.to_string()]);
    assert!(removed.contains(&format!("node {damaged} removed")), "{removed}");
    // 3. A new id, an empty directory, --join <a live member's client address> --promote.
    let new = cluster.join_node(survivors[1], true);
    assert_ne!(new, damaged, "ids are never reused");
    // 4. raftkv member list shows NEW_ID as a voter.
    let members: Vec<u64> = survivors.iter().copied().chain([new]).collect();
    wait_until(
        LEADER_BOUND,
        || {
            cluster
                .raftkv(survivors[0], &["member", "list"])
                .lines()
                .any(|l| l.starts_with(&format!("{new} voter")))
        },
        || format!("raftkv member list to show node {new} as a voter"),
    );
    wait_until(
        LEADER_BOUND,
        || members.iter().all(|&id| cluster.voters(id) == members),
        || format!("every member to see voters {members:?}"),
    );
    std::thread::sleep(Duration::from_millis(300));
    let (acknowledged, history) = writer.stop();
    assert_linearizable(&cluster.dir, &history);
    assert!(acknowledged.len() >= 20, "only {} writes acknowledged", acknowledged.len());
    for &id in &members {
        cluster.assert_all_present(id, &acknowledged);
        let mut client = Raw::connect(cluster.node(id).client_port);
        for i in 0..60 {
            assert_eq!(
                client.call(&["GET", &format!("k{i}")]),
                format!("value-{i}"),
                "k{i} through node {id}"
            );
        }
    }
    eprintln!(
        "{} writes acknowledged during the replacement; node {new} replaced node {damaged}",
        acknowledged.len()
    );
}
