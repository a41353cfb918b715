//! The promise that ordinary Redis clients work unchanged, kept with the real tools: Debian's `redis-cli`
//! and `redis-benchmark` (package `redis-tools`, which CI installs) against a 3-node cluster. Without the
//! tools the test prints one line saying what it skipped and passes.

mod harness;

use std::process::{Command, Output};

use harness::Cluster;

/// Runs a redis-tools program; `None` (after saying so) if it is not installed.
fn run(program: &str, args: &[&str]) -> Option<Output> {
    match Command::new(program).args(args).output() {
        Ok(output) => Some(output),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => panic!("running {program}: {error}"),
    }
}

fn stdout_of(output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).trim().to_string();
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    stdout
}

#[test]
fn redis_cli_and_redis_benchmark_work_unchanged_against_any_node() {
    if run("redis-cli", &["--version"]).is_none() || run("redis-benchmark", &["--version"]).is_none() {
        println!(
            "skipped redis_cli_and_redis_benchmark_work_unchanged_against_any_node: redis-cli or \
             redis-benchmark not installed (Debian package redis-tools; CI installs it)"
        );
        return;
    }
    let cluster = Cluster::start("redis-tools", 3);
    let port = |id: u64| cluster.node(id).client_port.to_string();
    let cli = |id: u64, args: &[&str]| {
        let port = port(id);
        let mut full = vec!["-h", "127.0.0.1", "-p", &port];
        full.extend_from_slice(args);
        stdout_of(&run("redis-cli", &full).expect("redis-cli is installed"))
    };

    // Any node accepts any command: write on one, read the result on every other.
    assert_eq!(cli(1, &["SET", "greeting", "hello"]), "OK");
    assert_eq!(cli(2, &["APPEND", "greeting", " world"]), "11");
    assert_eq!(cli(3, &["GET", "greeting"]), "hello world");
    assert_eq!(cli(2, &["INCR", "visits"]), "1");
    assert_eq!(cli(1, &["INCRBY", "visits", "41"]), "42");
    assert_eq!(cli(3, &["DEL", "greeting"]), "1");
    assert_eq!(cli(1, &["EXISTS", "greeting"]), "0");
    assert_eq!(cli(1, &["PING"]), "PONG");

    // redis-benchmark's SET and GET with pipelining, against a node that may or may not lead.
    let port2 = port(2);
    let args = ["-h", "127.0.0.1", "-p", &port2, "-t", "set,get", "-n", "2000", "-c", "10", "-P", "4", "-q"];
    let report = stdout_of(&run("redis-benchmark", &args).expect("redis-benchmark is installed"));
    // Its progress lines end in '\r', the results in '\n'.
    let lines: Vec<&str> = report.split(['\r', '\n']).map(str::trim).collect();
    for operation in ["SET", "GET"] {
        assert!(
            lines.iter().any(|line| line.starts_with(operation) && line.contains("requests per second")),
            "redis-benchmark printed no {operation} result:\n{report}"
        );
    }
    // Every benchmark write went through the log: the key it writes is there on the other nodes.
    assert_eq!(cli(3, &["EXISTS", "key:__rand_int__"]), "1");
}
