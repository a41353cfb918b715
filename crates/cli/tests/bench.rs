//! `raftkv bench` against a real 3-node cluster: every request of a `--requests` run is answered and
//! counted once, per operation, in the JSON report. (What it measures is not checked: the machine is
//! shared; only that the tool counts right.)

mod harness;

use std::process::Command;

use harness::{Cluster, LEADER_BOUND};

#[test]
fn a_counted_mixed_run_reports_every_request_once() {
    let cluster = Cluster::start("bench", 3);
    let leader = cluster.wait_for_leader(LEADER_BOUND);
    let address = format!("127.0.0.1:{}", cluster.node(leader).client_port);
    let output = Command::new(env!("CARGO_BIN_EXE_raftkv"))
        .args(["bench", "--resp", &address, "--workload", "mixed", "--requests", "400"])
        .args(["--connections", "4", "--inflight", "3", "--warmup-seconds", "0.2", "--keyspace", "50"])
        .args(["--timeout-seconds", "30", "--json", "--quiet"])
        .output()
        .expect("running raftkv bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON document");
    let operations = report["operations"].as_array().expect("operations");
    let names: Vec<&str> = operations.iter().map(|row| row["op"].as_str().unwrap()).collect();
    assert_eq!(names, ["set", "get", "all"]);
    let count =
        |row: &serde_json::Value| row["completed"].as_u64().unwrap() + row["errors"].as_u64().unwrap();
    assert_eq!(count(&operations[2]), 400, "{report}");
    assert_eq!(count(&operations[0]) + count(&operations[1]), 400, "{report}");
    assert_eq!(operations[2]["errors"], 0, "a healthy cluster answers every request: {report}");
    assert_eq!(report["clients"], 12);
    let latency = &operations[2]["latency_ms"];
    assert!(latency["p50"].as_f64().unwrap() <= latency["max"].as_f64().unwrap(), "{report}");
}

#[test]
fn an_unreachable_target_fails_with_one_clear_line() {
    let output = Command::new(env!("CARGO_BIN_EXE_raftkv"))
        .args(["bench", "--resp", "127.0.0.1:1", "--duration-seconds", "1", "--warmup-seconds", "0"])
        .output()
        .expect("running raftkv bench");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("raftkv bench: connecting to 127.0.0.1:1"), "{stderr}");
}
