//! `raftkv serve --read-mode lease` on real processes: the leader serves GETs from its lease (counted
//! apart from ReadIndex reads in `/metrics`), and bad read-mode flags are refused with a clear message.

mod harness;

use std::process::Stdio;
use std::time::{Duration, Instant};

use harness::{Cluster, LEADER_BOUND};

/// The value of one series in a Prometheus text page (0 if absent).
fn sample(page: &str, series: &str) -> f64 {
    page.lines().find_map(|line| line.strip_prefix(series)?.trim().parse().ok()).unwrap_or(0.0)
}

const LEASE_SERIES: &str = "raftkv_leader_read_confirmations_total{path=\"lease\"}";
const ROUND_SERIES: &str = "raftkv_leader_read_confirmations_total{path=\"read_index\"}";

#[test]
fn lease_mode_serves_gets_from_the_leaders_lease_and_counts_them() {
    let cluster =
        Cluster::start_with_args("lease-reads", 3, &["--read-mode", "lease", "--max-clock-drift", "0.01"]);
    let leader = cluster.wait_for_leader(LEADER_BOUND);
    let mut connection = cluster.connect(leader).unwrap();
    let _: () = redis::cmd("SET").arg("lease-key").arg("v1").query(&mut connection).unwrap();
    // Heartbeats every 50 ms renew a lease of 29 ticks × 10 ms × 0.99/1.01 ≈ 284 ms, so after the first
    // acknowledged round nearly every GET is served from the lease. Bounded in count and time.
    let deadline = Instant::now() + LEADER_BOUND;
    let mut gets = 0;
    while sample(&cluster.metrics(leader), LEASE_SERIES) < 1.0 {
        assert!(Instant::now() < deadline && gets < 1_000, "no GET served from a lease after {gets} GETs");
        let value: String = redis::cmd("GET").arg("lease-key").query(&mut connection).unwrap();
        assert_eq!(value, "v1");
        gets += 1;
        std::thread::sleep(Duration::from_millis(10));
    }
    // A burst of GETs: leases serve the large majority of them (a ReadIndex round only when a lease
    // just lapsed, e.g. a slow scheduler delayed a heartbeat).
    let page = cluster.metrics(leader);
    let (leases_before, rounds_before) = (sample(&page, LEASE_SERIES), sample(&page, ROUND_SERIES));
    for _ in 0..50 {
        let value: String = redis::cmd("GET").arg("lease-key").query(&mut connection).unwrap();
        assert_eq!(value, "v1");
    }
    let page = cluster.metrics(leader);
    let leases = sample(&page, LEASE_SERIES) - leases_before;
    let rounds = sample(&page, ROUND_SERIES) - rounds_before;
    assert_eq!(leases + rounds, 50.0, "every GET counted once: {page}");
    assert!(leases > rounds, "{leases} lease reads, {rounds} ReadIndex reads");
}

#[test]
fn read_index_mode_is_the_default_and_counts_no_lease_reads() {
    let cluster = Cluster::start("lease-default", 1);
    let mut connection = cluster.connect(1).unwrap();
    for _ in 0..5 {
        let _: Option<String> = redis::cmd("GET").arg("k").query(&mut connection).unwrap();
    }
    let page = cluster.metrics(1);
    assert_eq!(sample(&page, LEASE_SERIES), 0.0, "{page}");
    assert_eq!(sample(&page, ROUND_SERIES), 5.0, "{page}");
}

/// Runs `raftkv serve` for a prepared (not started) node with `flags` added; returns its stderr, after
/// checking that it refused to start.
fn refused(cluster: &Cluster, flags: &[&str]) -> String {
    let output = cluster.serve_command(1, true).args(flags).stderr(Stdio::piped()).output().unwrap();
    assert!(!output.status.success(), "raftkv serve {flags:?} started");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn bad_read_mode_flags_are_refused_with_a_clear_message() {
    let cluster = Cluster::prepare("lease-flags", 1);
    let stderr = refused(&cluster, &["--read-mode", "fast"]);
    assert!(stderr.contains("invalid value 'fast'") && stderr.contains("lease"), "{stderr}");
    let stderr = refused(&cluster, &["--read-mode", "lease", "--max-clock-drift", "0.7"]);
    assert!(
        stderr.contains("max_clock_drift must be a fraction in [0, 0.5) (0.01 = 1%), not 0.7"),
        "{stderr}"
    );
    let stderr = refused(&cluster, &["--max-clock-drift", "lots"]);
    assert!(stderr.contains("invalid value 'lots'"), "{stderr}");
}
