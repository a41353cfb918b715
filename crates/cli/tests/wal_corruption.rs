//! A damaged WAL on a stopped node: the node refuses to start, naming the file and the byte offset, and
//! the rest of the cluster keeps serving. (Bringing such a node back is the membership change's
//! replacement procedure: a new member with an empty directory.)

mod harness;

use std::time::Duration;

use harness::raw::Raw;
use harness::{wait_for_exit, Cluster, LEADER_BOUND};

#[test]
fn a_corrupt_wal_segment_stops_its_node_at_start_with_file_and_offset_and_the_others_serve() {
    let mut cluster = Cluster::start("wal-corruption", 3);
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

    let mut segments: Vec<_> = std::fs::read_dir(cluster.data_dir(victim))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.file_name().unwrap().to_string_lossy().starts_with("wal-"))
        .collect();
    segments.sort();
    let segment = &segments[0];
    let mut bytes = std::fs::read(segment).unwrap();
    let offset = bytes.len() / 3;
    bytes[offset] ^= 0x5a;
    std::fs::write(segment, &bytes).unwrap();

    let mut child =
        cluster.serve_command(victim, false).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let status = wait_for_exit(&mut child, Duration::from_secs(20), || {
        format!("node {victim} to refuse its corrupt WAL (it started instead)")
    });
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    let file_name = segment.file_name().unwrap().to_string_lossy().into_owned();
    assert!(stderr.contains(&file_name) && stderr.contains("offset"), "no file and offset in: {stderr}");
    println!("node {victim} refused to start: {}", stderr.trim());

    // Two of three remain: a majority, so writes and reads go on.
    let survivor = (1..=3).find(|&id| id != victim && id != leader).unwrap();
    let mut client = Raw::connect(cluster.node(leader).client_port);
    assert_eq!(client.call(&["SET", "after", "corruption"]), "+OK");
    assert_eq!(Raw::connect(cluster.node(survivor).client_port).call(&["GET", "after"]), "corruption");
    assert_eq!(Raw::connect(cluster.node(survivor).client_port).call(&["GET", "k59"]), "value-59");
}
