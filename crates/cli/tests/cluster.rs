//! Real processes, a real Redis client: the cluster behaves as issue 5 promises.

mod harness;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use harness::{wait_until, Cluster, LEADER_BOUND};
use redis::Commands;

#[test]
fn three_nodes_set_through_one_get_through_every_node() {
    let cluster = Cluster::start("set-get", 3);
    let leader = cluster.wait_for_leader(LEADER_BOUND);
    for writer in 1..=3u64 {
        let mut connection = cluster.connect(writer).unwrap();
        let key = format!("key-from-{writer}");
        let _: () = connection.set(&key, format!("value-{writer}")).unwrap();
        // Linearizable reads through every node, followers included (ReadIndex), right after the write.
        for reader in 1..=3u64 {
            let value: Option<String> = cluster.connect(reader).unwrap().get(&key).unwrap();
            assert_eq!(
                value.as_deref(),
                Some(format!("value-{writer}").as_str()),
                "read through node {reader}"
            );
        }
    }
    let count: i64 = cluster.connect(2).unwrap().incr("counter", 5).unwrap();
    assert_eq!(count, 5);
    // INFO on the leader names every follower's match index.
    let info = cluster.info(leader).unwrap();
    let followers = info.iter().filter(|(k, _)| k.starts_with("follower_")).count();
    assert_eq!(followers, 2, "INFO raft on the leader: {info:?}");
}

#[test]
fn five_nodes_set_through_one_get_through_every_node() {
    let cluster = Cluster::start("five", 5);
    let _: () = cluster.connect(3).unwrap().set("five", "nodes").unwrap();
    for reader in 1..=5u64 {
        let value: Option<String> = cluster.connect(reader).unwrap().get("five").unwrap();
        assert_eq!(value.as_deref(), Some("nodes"), "read through node {reader}");
    }
}

/// Writes `key-{i}` through any running node until `acknowledged` holds `count` more keys; returns how long
/// it took. Errors (a dead node, no leader yet, outcome unknown) are retried with a new key.
fn write_keys(cluster: &Cluster, next: &mut u64, acknowledged: &mut Vec<u64>, count: usize, bound: Duration) {
    let target = acknowledged.len() + count;
    let deadline = Instant::now() + bound;
    let mut node = 1u64;
    while acknowledged.len() < target {
        assert!(
            Instant::now() < deadline,
            "only {} of {target} writes acknowledged in {bound:?}",
            acknowledged.len()
        );
        node = node % cluster.nodes.len() as u64 + 1;
        if !cluster.is_running(node) {
            continue;
        }
        let Ok(mut connection) = cluster.connect(node) else { continue };
        let i = *next;
        *next += 1;
        let result: redis::RedisResult<()> = connection.set(format!("key-{i}"), i);
        if result.is_ok() {
            acknowledged.push(i);
        } else {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn killing_the_leader_loses_no_acknowledged_write_and_it_catches_up_after_restart() {
    let mut cluster = Cluster::start("kill-leader", 3);
    let leader = cluster.wait_for_leader(LEADER_BOUND);
    let (mut next, mut acknowledged) = (0, Vec::new());
    write_keys(&cluster, &mut next, &mut acknowledged, 100, LEADER_BOUND);
    cluster.kill(leader);
    let killed_at = Instant::now();
    let new_leader = cluster.wait_for_leader(LEADER_BOUND);
    assert_ne!(new_leader, leader);
    eprintln!("new leader {new_leader} after {:?}", killed_at.elapsed());
    write_keys(&cluster, &mut next, &mut acknowledged, 100, LEADER_BOUND);
    for reader in (1..=3).filter(|&id| id != leader) {
        cluster.assert_all_present(reader, &acknowledged);
    }
    // The killed node comes back (no --bootstrap: it has data) and catches up.
    cluster.start_node(leader, false);
    let commit = cluster.commit_index(new_leader);
    cluster.wait_applied(leader, commit, LEADER_BOUND);
    cluster.assert_all_present(leader, &acknowledged);
}

#[test]
fn restarting_every_node_keeps_all_data() {
    let mut cluster = Cluster::start("restart-all", 3);
    let (mut next, mut acknowledged) = (0, Vec::new());
    write_keys(&cluster, &mut next, &mut acknowledged, 50, LEADER_BOUND);
    for id in 1..=3 {
        let status = cluster.terminate(id);
        assert!(status.success(), "node {id} should stop cleanly on SIGTERM, got {status}");
    }
    for id in 1..=3 {
        // --bootstrap again: it must not touch a directory that holds state.
        cluster.start_node(id, true);
    }
    cluster.wait_for_leader(LEADER_BOUND);
    for reader in 1..=3 {
        cluster.assert_all_present(reader, &acknowledged);
    }
    write_keys(&cluster, &mut next, &mut acknowledged, 10, LEADER_BOUND);
}

fn assert_closed_by_peer(mut stream: TcpStream) {
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 64];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => continue, // The node's hello; the close follows.
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => return,
            Err(error) => panic!("expected the node to close the connection, got {error}"),
        }
    }
}

#[test]
fn garbage_from_peers_and_clients_who_vanish_do_not_disturb_the_node() {
    let cluster = Cluster::start("bad-input", 3);
    let peer_addr = format!("127.0.0.1:{}", cluster.node(1).peer_port);
    // Not a raftkv peer at all.
    let mut garbage = TcpStream::connect(&peer_addr).unwrap();
    garbage.write_all(&[0xAB; 64]).unwrap();
    assert_closed_by_peer(garbage);
    // Another cluster.
    let mut other_cluster = TcpStream::connect(&peer_addr).unwrap();
    other_cluster.write_all(&server::frame::encode_hello(cluster.cluster_id + 1, 9)).unwrap();
    assert_closed_by_peer(other_cluster);
    // Our cluster, then a frame with a bad checksum.
    let mut bad_frame = TcpStream::connect(&peer_addr).unwrap();
    bad_frame.write_all(&server::frame::encode_hello(cluster.cluster_id, 9)).unwrap();
    let mut frame = bytes::BytesMut::new();
    server::frame::encode_frame(&node::PeerMessage::ReadIndexRequest { ctx: 1 }, &mut frame);
    let last = frame.len() - 1;
    frame[last] ^= 0xff;
    bad_frame.write_all(&frame).unwrap();
    assert_closed_by_peer(bad_frame);
    // A client that disconnects mid-command, and one that leaves before its reply.
    let client_addr = format!("127.0.0.1:{}", cluster.node(1).client_port);
    let mut half = TcpStream::connect(&client_addr).unwrap();
    half.write_all(b"*3\r\n$3\r\nSET\r\n$4\r\nhalf").unwrap();
    drop(half);
    for _ in 0..20 {
        let mut gone = TcpStream::connect(&client_addr).unwrap();
        gone.write_all(b"*3\r\n$4\r\nINCR\r\n$4\r\ngone\r\n").unwrap_or(());
        gone.write_all(b"*2\r\n$4\r\nINCR\r\n$4\r\ngone\r\n").unwrap();
        drop(gone);
    }
    // Malformed RESP gets an error and a close; others are served.
    let mut malformed = TcpStream::connect(&client_addr).unwrap();
    malformed.write_all(b"*2\r\n$x\r\n").unwrap();
    let mut reply = String::new();
    malformed.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = malformed.read_to_string(&mut reply);
    assert!(reply.starts_with("-ERR Protocol error"), "reply to malformed RESP: {reply:?}");

    let mut connection = cluster.connect(1).unwrap();
    let _: () = connection.set("still", "serving").unwrap();
    let value: String = connection.get("still").unwrap();
    assert_eq!(value, "serving");
    let leader = cluster.wait_for_leader(LEADER_BOUND);
    wait_until(
        LEADER_BOUND,
        || cluster.info_field(1, "pending_requests").as_deref() == Some("0"),
        || "node 1 to finish the abandoned requests".into(),
    );
    assert!(cluster.info(leader).is_some());
}

#[test]
fn ten_thousand_pipelined_commands_on_one_connection_answer_in_order() {
    let cluster = Cluster::start("pipeline", 3);
    let follower = (1..=3).find(|&id| Some(id) != cluster.leader()).unwrap();
    let mut connection = cluster.connect(follower).unwrap();
    let mut pipeline = redis::pipe();
    for i in 0..10_000 {
        pipeline.cmd("INCR").arg("pipelined");
        if i % 1000 == 0 {
            pipeline.cmd("SET").arg(format!("p-{i}")).arg(i);
        }
    }
    let replies: Vec<redis::Value> =
        pipeline.query(&mut connection).unwrap_or_else(|error| panic!("the pipeline failed: {error:?}"));
    let counts: Vec<i64> = replies
        .iter()
        .filter_map(|v| match v {
            redis::Value::Int(n) => Some(*n),
            _ => None,
        })
        .collect();
    assert_eq!(counts, (1..=10_000).collect::<Vec<i64>>(), "INCR replies in request order");
}

/// `--maxmemory`: writes that would grow the data past the limit fail with Redis's -OOM text, decided by
/// each replica from its own byte count, so every node refuses alike; deletes still work and free room.
#[test]
fn maxmemory_refuses_growth_with_oom_on_every_node_and_deletes_free_room() {
    let cluster = Cluster::start_with_args("maxmemory", 3, &["--maxmemory", "4096"]);
    let mut connection = cluster.connect(1).unwrap();
    let value = "x".repeat(200);
    let mut written = 0;
    let mut refusal = None;
    for i in 0..100 {
        match connection.set::<_, _, ()>(format!("key-{i}"), &value) {
            Ok(()) => written += 1,
            Err(error) => {
                refusal = Some(error.to_string());
                break;
            }
        }
    }
    let refusal = refusal.expect("4 KiB cannot hold 100 values of 200 bytes");
    // The redis crate shows the error code and its text apart ("OOM: command not allowed ...").
    assert!(refusal.contains("OOM"), "{refusal}");
    assert!(refusal.contains("command not allowed when used memory > 'maxmemory'"), "{refusal}");
    assert!(written > 5, "some writes fit under the limit: {written}");
    for node in 1..=3 {
        let result: redis::RedisResult<()> = cluster.connect(node).unwrap().set("one-more", &value);
        let error = result.expect_err("every node decides the same: the data is full").to_string();
        assert!(error.contains("OOM"), "node {node}: {error}");
    }
    let removed: i64 = connection.del("key-0").unwrap();
    assert_eq!(removed, 1, "deleting always works");
    let _: () = connection.set("one-more", &value).unwrap();
}
