//! The admin HTTP endpoint of real `raftkv serve` processes: `/status` agrees across the cluster,
//! `/metrics` is valid Prometheus text whose counters follow the writes, and `/health` turns 503 with a
//! reason when a node's majority is gone.

mod harness;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use harness::{wait_until, Cluster, LEADER_BOUND};
use serde_json::Value;

/// Polls `attempt` every 50 ms until it returns `Ok`; after `bound`, panics with `what` and the last
/// `Err`, which describes the last answer seen.
fn wait_for<T>(bound: Duration, what: &str, mut attempt: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + bound;
    loop {
        match attempt() {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => panic!("waited {bound:?} for {what}; last: {last}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Writes `count` keys through node `id`, each acknowledged.
fn write_keys(cluster: &Cluster, id: u64, prefix: &str, count: usize) {
    let mut connection = cluster.connect(id).unwrap();
    for i in 0..count {
        let _: () = redis::cmd("SET").arg(format!("{prefix}-{i}")).arg(i).query(&mut connection).unwrap();
    }
}

#[test]
fn every_node_names_the_same_leader_and_the_leader_shows_its_followers_match_indexes() {
    let cluster = Cluster::start("admin-status", 3);
    let leader = cluster.wait_for_leader(LEADER_BOUND);
    write_keys(&cluster, leader, "key", 10);
    let commit = cluster.commit_index(leader);

    // Every node's /status names the same leader, with that leader's addresses.
    let statuses = wait_for(LEADER_BOUND, "every /status to name the same leader", || {
        let statuses: Vec<Value> = (1..=3).filter_map(|id| cluster.status_json(id)).collect();
        if statuses.len() == 3 && statuses.iter().all(|s| s["leader"]["id"] == leader) {
            Ok(statuses)
        } else {
            Err(format!("{statuses:#?}"))
        }
    });
    for status in &statuses {
        let leader_admin = format!("127.0.0.1:{}", cluster.node(leader).admin_port);
        assert_eq!(status["leader"]["admin_addr"], leader_admin.as_str(), "{status:#}");
        assert_eq!(status["members"].as_array().map(Vec::len), Some(3), "{status:#}");
        assert!(status["commit_index"].as_u64() >= Some(commit), "{status:#}");
        assert!(status["snapshot_index"].is_u64(), "{status:#}");
        assert!(status["vote"].is_u64() || status["vote"].is_null(), "{status:#}");
    }

    // The leader's followers reach the commit index of the writes, and were heard from recently enough
    // to have a contact time at all.
    let leader_status = wait_for(LEADER_BOUND, "the leader's followers to match the writes", || {
        let status = cluster.status_json(leader).unwrap_or(Value::Null);
        let followers = status["followers"].as_array().cloned().unwrap_or_default();
        let caught_up = followers.len() == 2
            && followers.iter().all(|f| {
                f["match_index"].as_u64() >= Some(commit)
                    && f["next_index"].as_u64() > f["match_index"].as_u64()
                    && f["last_contact_ms_ago"].is_u64()
            });
        if caught_up {
            Ok(status)
        } else {
            Err(format!("commit {commit}, /status {status:#}"))
        }
    });
    assert_eq!(leader_status["role"], "leader");
    for follower in (1..=3).filter(|&id| id != leader) {
        let status = cluster.status_json(follower).expect("a follower's /status");
        assert_eq!(status["role"], "follower");
        assert_eq!(status["followers"].as_array().map(Vec::len), Some(0), "only a leader tracks followers");
    }
}

/// One sample of the text exposition: the metric name with its labels as written, and the value.
type Samples = HashMap<String, f64>;

/// Parses the Prometheus text exposition format (version 0.0.4) strictly enough to catch a broken page:
/// every line is a `# HELP`/`# TYPE` comment or `name{label="value",...} number`, every sample's family
/// has a TYPE line before it, and no series appears twice.
fn parse_exposition(text: &str) -> Samples {
    let mut typed: HashMap<String, String> = HashMap::new();
    let mut samples = Samples::new();
    for (number, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l)) {
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix("# ") {
            let mut words = comment.splitn(3, ' ');
            match (words.next(), words.next(), words.next()) {
                (Some("HELP"), Some(name), Some(_)) => assert!(is_metric_name(name), "line {number}: {line}"),
                (Some("TYPE"), Some(name), Some(kind)) => {
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                        "line {number}: unknown type in {line}"
                    );
                    typed.insert(name.to_string(), kind.to_string());
                }
                _ => panic!("line {number}: a comment that is neither HELP nor TYPE: {line}"),
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("line {number}: {line}"));
        let name = series.split('{').next().unwrap();
        assert!(is_metric_name(name), "line {number}: bad metric name in {line}");
        if let Some(labels) = series.strip_prefix(name).filter(|l| !l.is_empty()) {
            assert!(labels.starts_with('{') && labels.ends_with('}'), "line {number}: {line}");
            for pair in labels[1..labels.len() - 1].split(',') {
                let (key, quoted) = pair.split_once('=').unwrap_or_else(|| panic!("line {number}: {line}"));
                assert!(is_metric_name(key), "line {number}: bad label name in {line}");
                assert!(quoted.len() >= 2 && quoted.starts_with('"') && quoted.ends_with('"'), "{line}");
            }
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix).filter(|f| typed.get(*f).is_some_and(|t| t == "histogram"))
            })
            .unwrap_or(name);
        assert!(typed.contains_key(family), "line {number}: no TYPE line before {name}");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            number_text => {
                number_text.parse().unwrap_or_else(|_| panic!("line {number}: bad value in {line}"))
            }
        };
        assert!(samples.insert(series.to_string(), value).is_none(), "line {number}: {series} twice");
    }
    samples
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn scrape(cluster: &Cluster, id: u64) -> Samples {
    let response = cluster.admin_get(id, "/metrics").expect("GET /metrics");
    assert_eq!(response.status, 200, "{}", response.body);
    assert!(response.headers.to_ascii_lowercase().contains("content-type: text/plain; version=0.0.4"));
    parse_exposition(&response.body)
}

fn sample(samples: &Samples, series: &str) -> f64 {
    *samples.get(series).unwrap_or_else(|| panic!("no sample {series}"))
}

/// A labelled series that appears only once something happened (a command's first use) counts as 0 before.
fn sample_or_zero(samples: &Samples, series: &str) -> f64 {
    samples.get(series).copied().unwrap_or(0.0)
}

#[test]
fn metrics_parse_as_prometheus_text_and_the_counters_follow_the_writes() {
    let cluster = Cluster::start("admin-metrics", 3);
    let leader = cluster.wait_for_leader(LEADER_BOUND);
    let follower = (1..=3).find(|&id| id != leader).unwrap();
    let before = scrape(&cluster, follower);
    let leader_before = scrape(&cluster, leader);

    // Writes through a follower: it forwards each to the leader and answers once it applied it itself.
    write_keys(&cluster, follower, "metric", 20);
    let after = scrape(&cluster, follower);
    let grew = |series: &str| sample(&after, series) - sample_or_zero(&before, series);
    assert_eq!(grew("raftkv_proposals_total{result=\"applied\"}"), 20.0);
    assert_eq!(grew("raftkv_proposal_duration_seconds_count"), 20.0);
    assert_eq!(grew("raftkv_commands_total{command=\"set\",result=\"ok\"}"), 20.0);
    assert!(grew("raftkv_commit_index") >= 20.0, "the commit index follows the writes");
    assert!(grew("raftkv_applied_entries_total") >= 20.0);
    assert!(grew(&format!("raftkv_peer_sent_messages_total{{peer=\"{leader}\"}}")) >= 20.0, "forwards");
    assert!(grew(&format!("raftkv_peer_received_bytes_total{{peer=\"{leader}\"}}")) > 0.0);
    assert!(sample(&after, "raftkv_wal_batch_entries_count") > 0.0);
    assert!(sample(&after, "raftkv_fsync_duration_seconds_count") > 0.0);
    assert_eq!(sample(&after, "raftkv_role{role=\"follower\"}"), 1.0);
    assert_eq!(sample(&after, "raftkv_leader_id"), leader as f64);

    // The leader appended and fsynced them: its own view moved too.
    let leader_after = scrape(&cluster, leader);
    assert_eq!(sample(&leader_after, "raftkv_role{role=\"leader\"}"), 1.0);
    assert!(sample(&leader_after, "raftkv_elections_started_total") >= 1.0, "it won an election");
    assert!(sample(&leader_after, "raftkv_leader_changes_total") >= 1.0);
    let leader_grew = |series: &str| sample(&leader_after, series) - sample(&leader_before, series);
    assert!(leader_grew("raftkv_commit_index") >= 20.0);
    assert!(leader_grew("raftkv_wal_batch_entries_sum") >= 20.0);
    let follower_match = format!("raftkv_follower_match_index{{follower=\"{follower}\"}}");
    assert!(sample(&leader_after, &follower_match) > 0.0, "the leader reports the follower's match index");

    // Linearizable reads through the follower count as ReadIndex reads with a latency.
    let mut connection = cluster.connect(follower).unwrap();
    let _: Option<String> = redis::cmd("GET").arg("metric-0").query(&mut connection).unwrap();
    let read = scrape(&cluster, follower);
    assert_eq!(
        sample(&read, "raftkv_reads_total{consistency=\"linearizable\",result=\"ok\"}")
            - sample(&after, "raftkv_reads_total{consistency=\"linearizable\",result=\"ok\"}"),
        1.0
    );
    assert!(sample(&read, "raftkv_read_index_duration_seconds_count") >= 1.0);
    assert!(sample(&read, "raftkv_client_connections") >= 1.0);
}

#[test]
fn health_is_200_on_a_healthy_node_and_503_with_a_reason_once_its_majority_is_gone() {
    let mut cluster = Cluster::start("admin-health", 3);
    let leader = cluster.wait_for_leader(LEADER_BOUND);
    write_keys(&cluster, leader, "healthy", 3);
    for id in 1..=3 {
        wait_for(LEADER_BOUND, &format!("node {id} to be healthy"), || {
            match cluster.admin_get(id, "/health") {
                Ok(response) if response.status == 200 => Ok(()),
                Ok(response) => Err(format!("{} {}", response.status, response.body)),
                Err(error) => Err(error.to_string()),
            }
        });
    }

    // Stop both followers: the leader cannot reach a majority, steps down by check-quorum within about an
    // election timeout, and then knows no leader.
    for id in (1..=3).filter(|&id| id != leader) {
        assert!(cluster.terminate(id).success());
    }
    let reason = wait_for(LEADER_BOUND, "the isolated node to turn unhealthy", || {
        match cluster.admin_get(leader, "/health") {
            Ok(response) if response.status == 503 => Ok(response.body),
            Ok(response) => Err(format!("{} {}", response.status, response.body)),
            Err(error) => Err(error.to_string()),
        }
    });
    assert!(reason.starts_with("no leader is known"), "{reason}");
    assert_eq!(reason.trim_end().lines().count(), 1, "one line: {reason}");
    // /status keeps answering while unhealthy.
    let status = cluster.status_json(leader).expect("/status of an isolated node");
    assert_eq!(status["leader"], Value::Null);
}

#[test]
fn bad_admin_requests_get_errors_and_the_endpoint_keeps_serving() {
    let cluster = Cluster::start("admin-bad", 1);
    let port = cluster.node(1).admin_port;
    let not_found = harness::http::get(port, "/no/such/page").unwrap();
    assert_eq!(not_found.status, 404);
    assert!(not_found.body.contains("/status"), "the 404 names the pages there are: {}", not_found.body);
    let post = harness::http::request(port, b"POST /status HTTP/1.0\r\ncontent-length: 0\r\n\r\n").unwrap();
    assert_eq!(post.status, 405);
    // Garbage instead of HTTP: an error or a closed connection, never a crash.
    let garbage = harness::http::request(port, b"\x00\xff\x13 not http at all\r\n\r\n");
    assert!(garbage.map_or(true, |r| r.status == 400), "garbage gets 400 or a closed connection");
    let huge_path = format!("/{}", "x".repeat(100_000));
    let _ = harness::http::get(port, &huge_path);
    wait_until(
        Duration::from_secs(10),
        || cluster.admin_get(1, "/status").is_ok_and(|r| r.status == 200),
        || "the admin endpoint to keep serving after bad requests".into(),
    );
    assert!(cluster.connect(1).is_ok(), "and the node keeps serving clients");
}
