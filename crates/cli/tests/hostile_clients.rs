//! Slow and hostile clients against a real node: one that sends a byte a second, one that never reads
//! its replies, one that opens thousands of connections. None may starve the others, and what the node
//! buffers for them stays bounded — shown by the node's own counters (`raftkv_client_*_buffer_bytes`),
//! with a generous cap on its resident memory besides.

mod harness;

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::raw::{encode, Raw};
use harness::{metric, raise_open_file_limit, rss_bytes, wait_until, Cluster};

/// Far above what a node needs here (tens of MB), far below what unbounded buffering would reach.
const RSS_CAP_BYTES: u64 = 1 << 30;

/// A client doing ordinary work gets every answer while the hostile ones run.
fn ordinary_work(cluster: &Cluster, id: u64, rounds: usize) {
    let mut client = Raw::connect(cluster.node(id).client_port);
    for i in 0..rounds {
        assert_eq!(client.call(&["SET", &format!("ordinary-{i}"), "v"]), "+OK");
        assert_eq!(client.call(&["GET", &format!("ordinary-{i}")]), "v");
    }
}

#[test]
fn clients_sending_a_byte_a_second_starve_nobody() {
    let cluster = Cluster::start("byte-a-second", 1);
    let port = cluster.node(1).client_port;
    let request = encode(&[b"SET", b"slow", b"value"]);
    let mut slow: Vec<TcpStream> =
        (0..50).map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap()).collect();
    // Five seconds of one byte a second from each of 50 clients, with ordinary work in between.
    for byte in &request[..5] {
        for stream in &mut slow {
            stream.write_all(&[*byte]).unwrap();
        }
        ordinary_work(&cluster, 1, 20);
        let page = cluster.metrics(1);
        let input = metric(&page, "raftkv_client_input_buffer_bytes");
        assert!(input <= (50 * request.len()) as f64, "input buffers hold {input} bytes");
        std::thread::sleep(Duration::from_secs(1));
    }
    // They finish their request at last and get their answer.
    for stream in &mut slow {
        stream.write_all(&request[5..]).unwrap();
    }
    for stream in slow {
        let mut raw_reply = [0u8; 5];
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        std::io::Read::read_exact(&mut &stream, &mut raw_reply).unwrap();
        assert_eq!(&raw_reply, b"+OK\r\n");
    }
    assert!(rss_bytes(cluster.pid(1)) < RSS_CAP_BYTES);
}

#[test]
fn a_client_that_never_reads_its_replies_is_closed_at_the_output_limit() {
    let limit = 1 << 20;
    let cluster =
        Cluster::start_with_args("never-reads", 1, &["--max-client-output-bytes", &limit.to_string()]);
    let port = cluster.node(1).client_port;
    let value = vec![b'v'; 64 * 1024];
    assert_eq!(Raw::connect(port).call(&["SET", "big", std::str::from_utf8(&value).unwrap()]), "+OK");
    // The hostile client asks for 64 KiB again and again, up to 128 MiB of replies, and reads nothing.
    let stop = Arc::new(AtomicBool::new(false));
    let hostile = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
            stream.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
            let get = encode(&[b"GET", b"big"]);
            let mut sent = 0;
            let mut refused = false;
            while sent < 2_000 && !stop.load(Ordering::Relaxed) {
                if stream.write_all(&get).is_err() {
                    refused = true; // closed by the node, or pushed back for 2 s
                    break;
                }
                sent += 1;
            }
            // Keep the connection open, reading nothing, until the test is done.
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
            }
            (sent, refused)
        })
    };
    // Meanwhile: others are served, and the node's unsent replies stay under the limit plus one reply.
    let bound = (limit + value.len() + 64) as f64;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut peak: f64 = 0.0;
    loop {
        ordinary_work(&cluster, 1, 5);
        let page = cluster.metrics(1);
        let output = metric(&page, "raftkv_client_output_buffer_bytes");
        assert!(output <= bound, "unsent replies: {output} bytes");
        peak = peak.max(output);
        if metric(&page, "raftkv_client_connections_closed_total{reason=\"output_buffer\"}") >= 1.0 {
            break;
        }
        assert!(Instant::now() < deadline, "the non-reading client was never closed:\n{page}");
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    let (sent, stopped_early) = hostile.join().unwrap();
    println!(
        "the non-reading client sent {sent} GETs (its writes failed: {stopped_early}) and was closed; \
         the most unsent reply bytes seen: {peak} (limit {limit})"
    );
    wait_until(
        Duration::from_secs(10),
        || metric(&cluster.metrics(1), "raftkv_client_output_buffer_bytes") == 0.0,
        || "the closed connection's buffers to be freed".into(),
    );
    assert!(rss_bytes(cluster.pid(1)) < RSS_CAP_BYTES);
}

#[test]
fn without_an_output_limit_a_client_that_never_reads_is_pushed_back_not_buffered() {
    let cluster = Cluster::start_with_args("pushed-back", 1, &["--max-client-output-bytes", "0"]);
    let port = cluster.node(1).client_port;
    let value = "v".repeat(64 * 1024);
    assert_eq!(Raw::connect(port).call(&["SET", "big", &value]), "+OK");
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_write_timeout(Some(Duration::from_secs(3))).unwrap();
    let get = encode(&[b"GET", b"big"]);
    // The node stops reading once its bounded buffers are full, so the client's writes block.
    // (The kernel's socket buffers take a few hundred thousand of these small requests first.)
    let mut sent = 0;
    while sent < 2_000_000 && stream.write_all(&get).is_ok() {
        sent += 1;
    }
    assert!(sent < 2_000_000, "the node kept reading requests whose replies nobody reads");
    println!("the non-reading client got {sent} GETs out before its writes blocked");
    let page = cluster.metrics(1);
    let output = metric(&page, "raftkv_client_output_buffer_bytes");
    assert!(output <= ((1 << 20) + value.len() + 64) as f64, "unsent replies: {output} bytes");
    ordinary_work(&cluster, 1, 10);
    assert!(rss_bytes(cluster.pid(1)) < RSS_CAP_BYTES);
}

#[test]
fn thousands_of_connections_are_refused_past_the_limit_and_the_open_ones_are_served() {
    raise_open_file_limit();
    let cluster = Cluster::start_with_args("thousands", 1, &["--max-client-connections", "500"]);
    let port = cluster.node(1).client_port;
    cluster.wait_for_no_clients(1);
    let mut working = Raw::connect(port);
    assert_eq!(working.call(&["PING"]), "+PONG");
    let flood: Vec<TcpStream> =
        (0..2_000).filter_map(|_| TcpStream::connect(("127.0.0.1", port)).ok()).collect();
    assert!(flood.len() >= 1_000, "could open only {} connections", flood.len());
    let refused = (flood.len() - 499) as f64;
    wait_until(
        Duration::from_secs(20),
        || metric(&cluster.metrics(1), "raftkv_client_connections_refused_total") >= refused,
        || format!("{refused} connections refused"),
    );
    // The connection opened before the flood is still served, and so is work on it.
    for i in 0..20 {
        assert_eq!(working.call(&["SET", &format!("w{i}"), "v"]), "+OK");
    }
    let page = cluster.metrics(1);
    assert!(metric(&page, "raftkv_client_connections") <= 500.0, "{page}");
    assert!(rss_bytes(cluster.pid(1)) < RSS_CAP_BYTES);
    drop(flood);
    wait_until(
        Duration::from_secs(20),
        || Raw::connect(port).call(&["PING"]) == "+PONG",
        || "a new client once the flood closed".into(),
    );
}
