//! Real processes under faults the issue names: a paused leader, a lost majority, many connections.

mod harness;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use harness::{raise_open_file_limit, wait_until, Cluster, LEADER_BOUND};
use redis::Commands;

/// A leader that every node in `among` agrees on (the others may be paused or dead).
fn leader_among(cluster: &Cluster, among: &[u64]) -> Option<u64> {
    let leader =
        among.iter().copied().find(|&id| cluster.info_field(id, "role").as_deref() == Some("leader"))?;
    among.iter().all(|&id| cluster.info_field(id, "leader_id") == Some(leader.to_string())).then_some(leader)
}

fn wait_for_leader_among(cluster: &Cluster, among: &[u64]) -> u64 {
    let mut found = None;
    wait_until(
        LEADER_BOUND,
        || {
            found = leader_among(cluster, among);
            found.is_some()
        },
        || format!("a leader among {among:?}"),
    );
    found.unwrap()
}

#[test]
fn a_paused_leader_steps_down_and_serves_no_stale_read() {
    let cluster = Cluster::start("sigstop", 3);
    let old = cluster.wait_for_leader(LEADER_BOUND);
    let _: () = cluster.connect(old).unwrap().set("register", "old").unwrap();
    cluster.signal(old, libc::SIGSTOP);
    let others: Vec<u64> = (1..=3).filter(|&id| id != old).collect();
    let new = wait_for_leader_among(&cluster, &others);
    let _: () = cluster.connect(new).unwrap().set("register", "new").unwrap();
    cluster.signal(old, libc::SIGCONT);
    // Read through the old leader: the newer value, or an error while it learns it lost — never "old".
    let deadline = Instant::now() + LEADER_BOUND;
    loop {
        let read: redis::RedisResult<Option<String>> =
            cluster.connect(old).and_then(|mut c| c.get("register"));
        match read {
            Ok(value) => {
                assert_eq!(value.as_deref(), Some("new"), "stale read through the old leader");
                break;
            }
            Err(error) => {
                assert!(Instant::now() < deadline, "no answer through the old leader: {error}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    wait_until(
        LEADER_BOUND,
        || cluster.info_field(old, "role").as_deref() == Some("follower"),
        || format!("node {old} to step down"),
    );
}

#[test]
fn losing_a_majority_gives_clear_errors_and_a_timed_out_write_applies_at_most_once() {
    // A long election timeout, so that the cut-off leader surely still leads (check-quorum has not yet
    // stepped it down) when the first write arrives: that write is proposed and can never commit.
    let mut cluster = Cluster::start_with("majority", 5, 2_000);
    let leader = cluster.wait_for_leader(LEADER_BOUND);
    let _: () = cluster.connect(leader).unwrap().set("counter", 0).unwrap();
    let mut leader_connection = cluster.connect(leader).unwrap();
    let stopped: Vec<u64> = (1..=5).filter(|&id| id != leader).take(3).collect();
    for &id in &stopped {
        cluster.kill(id);
    }
    // Proposed, never committed: the outcome is unknown.
    let started = Instant::now();
    let error = leader_connection.incr::<_, _, i64>("counter", 1).unwrap_err().to_string();
    assert!(
        error.contains("TIMEOUT") && error.contains("may or may not"),
        "got {error} after {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() < LEADER_BOUND, "the error took {:?}", started.elapsed());
    // Once the leader stepped down (check-quorum), nothing is proposed: -TRYAGAIN.
    let survivor = (1..=5).find(|id| !stopped.contains(id) && *id != leader).unwrap();
    wait_until(
        LEADER_BOUND,
        || cluster.info_field(leader, "role").as_deref() != Some("leader"),
        || "the cut-off leader to step down".into(),
    );
    let error = cluster.connect(survivor).unwrap().set::<_, _, ()>("x", 1).unwrap_err().to_string();
    // The redis crate spells the TRYAGAIN code as its error kind, TryAgain.
    assert!(error.contains("TryAgain: no leader"), "got {error}");
    for &id in &stopped {
        cluster.start_node(id, false);
    }
    cluster.wait_for_leader(LEADER_BOUND);
    let mut connection = cluster.connect(survivor).unwrap();
    let after: i64 = connection.incr("counter", 1).unwrap();
    assert!(after == 1 || after == 2, "the timed-out INCR applied at most once, then ours: got {after}");
}

#[test]
fn a_thousand_concurrent_connections_are_all_served() {
    raise_open_file_limit();
    let cluster = Cluster::start("connections", 3);
    let addr = format!("127.0.0.1:{}", cluster.node(1).client_port);
    let mut streams: Vec<TcpStream> = (0..1_000).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    for (i, stream) in streams.iter_mut().enumerate() {
        let key = format!("c{i}");
        write!(stream, "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n$1\r\n1\r\n", key.len()).unwrap();
    }
    for stream in &streams {
        stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).unwrap();
        assert_eq!(line, "+OK\r\n");
    }
    let keys: i64 = redis::cmd("DBSIZE").query(&mut cluster.connect(2).unwrap()).unwrap();
    assert_eq!(keys, 1_000);
}

#[test]
fn nodes_with_empty_data_directories_and_no_bootstrap_never_elect_anyone() {
    let cluster = Cluster::start_unbootstrapped("no-bootstrap", 3);
    // Several election timeouts pass; with no configuration nobody campaigns or votes.
    std::thread::sleep(Duration::from_millis(10 * harness::ELECTION_TIMEOUT_MS));
    for id in 1..=3 {
        let info = cluster.info(id).unwrap();
        let field = |key: &str| info.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).unwrap();
        assert_eq!(field("role"), "follower", "node {id}");
        assert_eq!(field("term"), "0", "node {id} never took part in an election");
        assert_eq!(field("voters"), "", "node {id} is not a member");
    }
    let error = cluster.connect(1).unwrap().set::<_, _, ()>("k", "v").unwrap_err().to_string();
    assert!(error.contains("TryAgain: no leader"), "got {error}");
}
