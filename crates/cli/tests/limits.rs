//! One scenario per limit of the README's "Limits" table, on real processes: exceed the limit, get the
//! documented error (or the documented back-pressure), and the node keeps serving everyone else.

mod harness;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use harness::raw::Raw;
use harness::{metric, wait_until, Cluster, LEADER_BOUND};

/// A well-behaved client still gets its answers from node `id`.
fn assert_serves_others(cluster: &Cluster, id: u64) {
    let mut other = Raw::connect(cluster.node(id).client_port);
    assert_eq!(other.call(&["SET", "other", "fine"]), "+OK");
    assert_eq!(other.call(&["GET", "other"]), "fine");
}

#[test]
fn max_client_connections_refuses_the_next_one_and_serves_the_open_ones() {
    let cluster = Cluster::start_with_args("max-conn", 1, &["--max-client-connections", "2"]);
    let port = cluster.node(1).client_port;
    cluster.wait_for_no_clients(1);
    let mut first = Raw::connect(port);
    let mut second = Raw::connect(port);
    assert_eq!(first.call(&["PING"]), "+PONG");
    assert_eq!(second.call(&["PING"]), "+PONG");
    let mut third = Raw::connect(port);
    assert_eq!(third.reply(), "-ERR max number of clients reached");
    assert!(third.is_closed_by_server());
    assert_eq!(first.call(&["SET", "k", "v"]), "+OK");
    assert_eq!(second.call(&["GET", "k"]), "v");
    let page = cluster.metrics(1);
    assert!(metric(&page, "raftkv_client_connections_refused_total") >= 1.0, "{page}");
    // A slot freed is a slot to take.
    drop(first);
    wait_until(
        Duration::from_secs(10),
        || Raw::connect(port).call(&["PING"]) == "+PONG",
        || "a new connection once one closed".into(),
    );
}

#[test]
fn max_request_bytes_closes_the_connection_with_a_protocol_error_and_bounds_multi() {
    let cluster = Cluster::start_with_args("max-request", 1, &["--max-request-bytes", "4096"]);
    let port = cluster.node(1).client_port;
    let mut client = Raw::connect(port);
    let value = vec![b'x'; 8192];
    client.send(&[b"SET", b"big", &value]);
    assert_eq!(client.reply(), "-ERR Protocol error: request larger than 4096 bytes (max_request_bytes)");
    assert!(client.is_closed_by_server());
    // A transaction is one log entry: its queued bytes are bounded the same way.
    let mut client = Raw::connect(port);
    let half = "y".repeat(3000);
    assert_eq!(client.call(&["MULTI"]), "+OK");
    assert_eq!(client.call(&["SET", "a", &half]), "+QUEUED");
    assert_eq!(
        client.call(&["SET", "b", &half]),
        "-ERR MULTI holds at most 4096 bytes of arguments (max_request_bytes); EXEC will discard this \
         transaction"
    );
    assert!(client.call(&["EXEC"]).starts_with("-EXECABORT"));
    assert_eq!(client.call(&["EXISTS", "a"]), ":0");
    assert_serves_others(&cluster, 1);
}

#[test]
fn max_bulk_bytes_is_redis_s_invalid_bulk_length() {
    let cluster = Cluster::start_with_args("max-bulk", 1, &["--max-bulk-bytes", "1024"]);
    let mut client = Raw::connect(cluster.node(1).client_port);
    client.send(&[b"SET", b"big", &[b'x'; 1025]]);
    assert_eq!(client.reply(), "-ERR Protocol error: invalid bulk length");
    assert!(client.is_closed_by_server());
    let mut client = Raw::connect(cluster.node(1).client_port);
    client.send(&[b"SET", b"fits", &[b'x'; 1024]]);
    assert_eq!(client.reply(), "+OK");
    assert_serves_others(&cluster, 1);
}

#[test]
fn max_arguments_per_command_is_redis_s_invalid_multibulk_length() {
    let cluster = Cluster::start_with_args("max-args", 1, &["--max-arguments-per-command", "5"]);
    let mut client = Raw::connect(cluster.node(1).client_port);
    assert_eq!(
        client.call(&["MSET", "a", "1", "b", "2", "c", "3"]),
        "-ERR Protocol error: invalid multibulk length"
    );
    assert!(client.is_closed_by_server());
    let mut client = Raw::connect(cluster.node(1).client_port);
    assert_eq!(client.call(&["MSET", "a", "1", "b", "2"]), "+OK");
    assert_serves_others(&cluster, 1);
}

#[test]
fn key_and_value_limits_give_redis_like_errors_and_bound_append_on_every_node() {
    let cluster =
        Cluster::start_with_args("key-value", 3, &["--max-key-bytes", "16", "--max-value-bytes", "64"]);
    let leader = cluster.wait_for_leader(LEADER_BOUND);
    let mut client = Raw::connect(cluster.node(leader).client_port);
    let long_key = "k".repeat(17);
    assert_eq!(
        client.call(&["SET", &long_key, "v"]),
        "-ERR key exceeds maximum allowed size (16 bytes, max_key_bytes)"
    );
    let too_long = "-ERR string exceeds maximum allowed size (proto-max-bulk-len)";
    assert_eq!(client.call(&["SET", "k", &"v".repeat(65)]), too_long);
    // The connection stays open: these are command errors, not protocol errors.
    assert_eq!(client.call(&["SET", "k", &"v".repeat(60)]), "+OK");
    // APPEND is decided by the state machine, the same on every replica.
    assert_eq!(client.call(&["APPEND", "k", "1234"]), ":64");
    assert_eq!(client.call(&["APPEND", "k", "5"]), too_long);
    let commit = cluster.commit_index(leader);
    for id in 1..=3 {
        cluster.wait_applied(id, commit, LEADER_BOUND);
        let mut reader = Raw::connect(cluster.node(id).client_port);
        assert_eq!(reader.call(&["READONLY"]), "+OK");
        assert_eq!(reader.call(&["STRLEN", "k"]), ":64", "node {id}");
    }
    assert_serves_others(&cluster, leader);
}

#[test]
fn max_pipelined_commands_pushes_back_without_errors() {
    let cluster = Cluster::start_with_args("pipelined", 1, &["--max-pipelined-commands", "4"]);
    let mut client = Raw::connect(cluster.node(1).client_port);
    // 1,000 commands written before any reply is read: the node reads at most 4 ahead of its replies,
    // and every command is answered, in order.
    let mut pipeline = Vec::new();
    for _ in 0..1_000 {
        pipeline.extend_from_slice(&harness::raw::encode(&[b"INCR", b"counter"]));
    }
    client.stream.write_all(&pipeline).unwrap();
    for expected in 1..=1_000 {
        assert_eq!(client.reply(), format!(":{expected}"));
    }
    assert_serves_others(&cluster, 1);
}

#[test]
fn client_idle_timeout_closes_a_silent_connection() {
    let cluster = Cluster::start_with_args("idle", 1, &["--client-idle-timeout-secs", "1"]);
    let mut silent = Raw::connect(cluster.node(1).client_port);
    assert_eq!(silent.call(&["PING"]), "+PONG");
    let started = Instant::now();
    assert!(silent.is_closed_by_server(), "the silent connection was not closed");
    assert!(started.elapsed() < Duration::from_secs(10));
    let page = cluster.metrics(1);
    assert!(metric(&page, "raftkv_client_connections_closed_total{reason=\"idle\"}") >= 1.0, "{page}");
    assert_serves_others(&cluster, 1);
}

#[test]
fn max_uncommitted_bytes_refuses_writes_before_proposing_them_with_tryagain() {
    // A long election timeout, so the leader still leads (check-quorum has not stepped it down) while
    // its followers are paused and nothing it proposes can commit.
    let cluster =
        Cluster::start_with_timeout_and_args("uncommitted", 3, 2_000, &["--max-uncommitted-bytes", "65536"]);
    let leader = cluster.wait_for_leader(LEADER_BOUND);
    let mut client = Raw::connect(cluster.node(leader).client_port);
    assert_eq!(client.call(&["SET", "warm", "up"]), "+OK"); // opens the node's session
    let followers: Vec<u64> = (1..=3).filter(|&id| id != leader).collect();
    for &id in &followers {
        cluster.signal(id, libc::SIGSTOP);
    }
    let value = vec![b'v'; 16 * 1024];
    let mut pipeline = Vec::new();
    for i in 0..16 {
        pipeline.extend_from_slice(&harness::raw::encode(&[b"SET", format!("k{i}").as_bytes(), &value]));
    }
    client.stream.write_all(&pipeline).unwrap();
    let replies: Vec<String> = (0..16).map(|_| client.reply()).collect();
    for &id in &followers {
        cluster.signal(id, libc::SIGCONT);
    }
    let overloaded = "-TRYAGAIN the leader is overloaded; the command was not applied";
    let refused = replies.iter().filter(|r| *r == overloaded).count();
    // 64 KiB hold at most four 16 KiB entries (plus one when nothing else is uncommitted).
    assert!(refused >= 10, "expected most writes refused before proposing, got {replies:?}");
    assert!(
        replies.iter().all(|r| r == overloaded || r == "+OK" || r.starts_with("-TIMEOUT")),
        "{replies:?}"
    );
    // The followers are back: the cluster takes writes again.
    wait_until(
        LEADER_BOUND,
        || {
            (1..=3)
                .any(|id| Raw::connect(cluster.node(id).client_port).call(&["SET", "after", "ok"]) == "+OK")
        },
        || "a write after the followers resumed".into(),
    );
}

#[test]
fn an_oversized_peer_frame_closes_that_connection_and_the_node_keeps_serving() {
    let cluster = Cluster::start_with_args(
        "peer-frame",
        3,
        &["--max-request-bytes", "4096", "--max-peer-frame-bytes", "1052672"],
    );
    let mut stranger = TcpStream::connect(("127.0.0.1", cluster.node(1).peer_port)).unwrap();
    stranger.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stranger.write_all(&server::frame::encode_hello(cluster.cluster_id, 9)).unwrap();
    let mut hello = [0u8; server::frame::HELLO_BYTES];
    stranger.read_exact(&mut hello).unwrap();
    // A header claiming 2 MiB: refused at once, before any of it is buffered.
    let mut header = (2u32 << 20).to_le_bytes().to_vec();
    header.extend_from_slice(&0u32.to_le_bytes());
    stranger.write_all(&header).unwrap();
    let mut rest = Vec::new();
    let _ = stranger.read_to_end(&mut rest); // EOF or reset: closed either way
    assert!(rest.is_empty());
    let page = cluster.metrics(1);
    assert_eq!(
        metric(&page, "raftkv_peer_connections_closed_total{reason=\"frame_too_large\"}"),
        1.0,
        "{page}"
    );
    let leader = cluster.wait_for_leader(LEADER_BOUND);
    assert_serves_others(&cluster, leader);
    assert_serves_others(&cluster, 1);
}

#[test]
fn a_too_small_peer_frame_for_the_largest_request_is_refused_at_start() {
    let cluster = Cluster::start("frame-config", 1);
    let output = cluster
        .serve_command(1, false)
        .args(["--max-request-bytes", "4194304", "--max-peer-frame-bytes", "4194304"])
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("max_peer_frame_bytes (4194304) must be at least max_request_bytes + 1 MiB"),
        "{stderr}"
    );
}

#[test]
fn max_peer_queue_bytes_drops_messages_to_a_paused_follower_and_it_catches_up() {
    let cluster = Cluster::start_with_args("peer-queue", 3, &["--max-peer-queue-bytes", "1048576"]);
    let leader = cluster.wait_for_leader(LEADER_BOUND);
    let paused = (1..=3).find(|&id| id != leader).unwrap();
    cluster.signal(paused, libc::SIGSTOP);
    // 48 MiB of writes: more than the sockets to the paused follower absorb, so its queue fills.
    let mut client = Raw::connect(cluster.node(leader).client_port);
    let value = vec![b'v'; 512 * 1024];
    for i in 0..96 {
        client.send(&[b"SET", format!("k{}", i % 8).as_bytes(), &value]);
        assert_eq!(client.reply(), "+OK");
    }
    let page = cluster.metrics(leader);
    let queued = metric(&page, &format!("raftkv_peer_queue_bytes{{peer=\"{paused}\"}}"));
    let dropped = metric(
        &page,
        &format!("raftkv_peer_dropped_messages_total{{peer=\"{paused}\",reason=\"queue_bytes\"}}"),
    );
    // At most the limit plus one message (an AppendEntries of at most 1 MiB plus one entry).
    assert!(queued <= (3 * 1024 * 1024) as f64, "queued {queued}");
    assert!(dropped > 0.0, "nothing was dropped:\n{page}");
    cluster.signal(paused, libc::SIGCONT);
    let commit = cluster.commit_index(leader);
    cluster.wait_applied(paused, commit, LEADER_BOUND);
}

#[test]
fn max_admin_connections_closes_the_next_one_and_serves_after() {
    let cluster = Cluster::start_with_args("admin-conn", 1, &["--max-admin-connections", "2"]);
    let port = cluster.node(1).admin_port;
    let idle: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200)); // both accepted
    let mut third = TcpStream::connect(("127.0.0.1", port)).unwrap();
    third.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = third.write_all(b"GET /health HTTP/1.0\r\n\r\n");
    let mut answer = Vec::new();
    let _ = third.read_to_end(&mut answer);
    assert!(answer.is_empty(), "over the limit, yet answered: {}", String::from_utf8_lossy(&answer));
    drop(idle);
    wait_until(
        Duration::from_secs(10),
        || cluster.admin_get(1, "/health").is_ok_and(|r| r.status == 200),
        || "/health once the idle connections closed".into(),
    );
}
