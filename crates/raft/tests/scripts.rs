//! Scenario scripts in the style of etcd-io/raft's `testdata/`: each file in `tests/scripts/` is a list of
//! commands, each followed by `----` and the output it must produce. `UPDATE_EXPECT=1` rewrites the
//! outputs. The output uses the compact `Display` forms of messages and logs, so a script reads like a
//! walk through the paper.
//!
//! Commands (ids are node ids; `all` means every live node):
//! - `cluster n=3 [logs=1,1,2/1,1/…] [term=T] [pre_vote=false] [check_quorum=false] [max_entries=N]`
//! - `tick ID|all [N]` — N ticks (default 1); shows role changes
//! - `campaign ID` — tick ID until it asks for votes
//! - `deliver [N]` — deliver N messages (default: until none is left); shows each one and role changes
//! - `run N` — N times: tick every live node, then deliver everything
//! - `drop` — lose every message in flight
//! - `propose ID TEXT`, `read ID CTX…` — shows the result
//! - `isolate ID`, `partition 1,2/3`, `heal`, `crash ID`, `restart ID`
//! - `status` — one line per node; `reads ID` — reads served and failed so far

mod harness;

use std::fmt::Write as _;
use std::path::PathBuf;

use bytes::Bytes;
use harness::Cluster;
use raft::{NodeId, Term};

#[test]
fn scripts() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/scripts");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/scripts exists")
        .map(|entry| entry.expect("readable").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "txt"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    for file in files {
        run_script(&file);
    }
}

/// Runs one script; compares (or with UPDATE_EXPECT=1, rewrites) every command's output.
fn run_script(path: &PathBuf) {
    let text = std::fs::read_to_string(path).expect("readable script");
    let mut rewritten = String::new();
    let mut cluster: Option<Cluster> = None;
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim().is_empty() || line.starts_with('#') {
            rewritten += line;
            rewritten += "\n";
            continue;
        }
        let command = line.to_string();
        assert_eq!(lines.next(), Some("----"), "{}: `{command}` must be followed by ----", path.display());
        let mut expected = String::new();
        while let Some(out) = lines.peek() {
            if out.is_empty() {
                break;
            }
            expected += out;
            expected += "\n";
            lines.next();
        }
        let actual = execute(&mut cluster, &command);
        if std::env::var_os("UPDATE_EXPECT").is_none() {
            assert_eq!(
                expected,
                actual,
                "{}: output of `{command}` differs (UPDATE_EXPECT=1 rewrites it)",
                path.display()
            );
        }
        rewritten += &format!("{command}\n----\n{actual}");
    }
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::write(path, rewritten).expect("rewrite script");
    }
}

fn execute(cluster: &mut Option<Cluster>, command: &str) -> String {
    let words: Vec<&str> = command.split_whitespace().collect();
    if words[0] == "cluster" {
        *cluster = Some(new_cluster(&words[1..]));
        return cluster.as_ref().unwrap().describe();
    }
    let cluster = cluster.as_mut().expect("a script starts with `cluster`");
    cluster.trace.clear();
    let id = |i: usize| -> NodeId { words[i].parse().expect("a node id") };
    let count = |i: usize, default: usize| words.get(i).map_or(default, |w| w.parse().expect("a number"));
    let mut out = String::new();
    match words[0] {
        "tick" => {
            for _ in 0..count(2, 1) {
                match words[1] {
                    "all" => cluster.tick_all(),
                    _ => cluster.tick(id(1)),
                }
            }
        }
        "campaign" => {
            let requests_before = cluster.sent.len();
            for _ in 0..100 {
                cluster.tick(id(1));
                if cluster.sent[requests_before..].iter().any(|m| m.from == id(1)) {
                    break;
                }
            }
        }
        "deliver" => {
            for _ in 0..count(1, usize::MAX) {
                if !cluster.deliver_one() {
                    break;
                }
            }
        }
        "drop" => {
            let dropped = cluster.in_flight.len();
            cluster.in_flight.clear();
            writeln!(out, "dropped {dropped}").unwrap();
        }
        "propose" => {
            let result = cluster.raft_mut(id(1)).propose(Bytes::from(words[2..].join(" ")));
            cluster.process(id(1));
            match result {
                Ok(index) => writeln!(out, "index {index}").unwrap(),
                Err(error) => writeln!(out, "error: {error}").unwrap(),
            }
        }
        "read" => {
            // Every context given is read before the node's next Ready.
            for ctx in &words[2..] {
                match cluster.raft_mut(id(1)).read_index(ctx.parse().expect("a number")) {
                    Ok(()) => writeln!(out, "ok").unwrap(),
                    Err(error) => writeln!(out, "error: {error}").unwrap(),
                }
            }
            cluster.process(id(1));
        }
        "run" => cluster.run(count(1, 1) as u64),
        "reads" => {
            let node = &cluster.nodes[&id(1)];
            for read in &node.read_states {
                writeln!(out, "read ctx={} index={}", read.ctx, read.index).unwrap();
            }
            for read in &node.failed_reads {
                writeln!(out, "failed ctx={}: {}", read.ctx, read.reason).unwrap();
            }
        }
        "isolate" => cluster.isolate(id(1)),
        "partition" => {
            let groups: Vec<Vec<NodeId>> = words[1]
                .split('/')
                .map(|group| group.split(',').map(|id| id.parse().expect("a node id")).collect())
                .collect();
            let groups: Vec<&[NodeId]> = groups.iter().map(|g| g.as_slice()).collect();
            cluster.partition(&groups);
        }
        "heal" => cluster.heal(),
        "crash" => cluster.crash(id(1)),
        "restart" => cluster.restart(id(1)),
        "status" => out += &cluster.describe(),
        other => panic!("unknown command `{other}`"),
    }
    let mut output = std::mem::take(&mut cluster.trace);
    output += &out;
    if output.is_empty() {
        output = "ok\n".to_string();
    }
    output
}

fn new_cluster(args: &[&str]) -> Cluster {
    let mut nodes = 3;
    let mut logs: Vec<Vec<Term>> = Vec::new();
    let mut term = 0;
    let mut settings = Vec::new();
    for arg in args {
        let (key, value) = arg.split_once('=').expect("key=value");
        match key {
            "n" => nodes = value.parse().expect("a number"),
            "logs" => {
                logs = value
                    .split('/')
                    .map(|log| log.split(',').filter(|t| !t.is_empty()).map(|t| t.parse().unwrap()).collect())
                    .collect()
            }
            "term" => term = value.parse().expect("a term"),
            _ => settings.push((key.to_string(), value.to_string())),
        }
    }
    if !logs.is_empty() {
        nodes = logs.len() as u64;
    }
    logs.resize(nodes as usize, Vec::new());
    let specs: Vec<(NodeId, Vec<Term>, Term)> =
        logs.into_iter().enumerate().map(|(i, log)| (i as NodeId + 1, log, term)).collect();
    let mut cluster = Cluster::with_logs(&specs, |config| {
        for (key, value) in &settings {
            match key.as_str() {
                "pre_vote" => config.pre_vote = value.parse().expect("true or false"),
                "check_quorum" => config.check_quorum = value.parse().expect("true or false"),
                "max_entries" => config.max_entries_per_message = value.parse().expect("a number"),
                other => panic!("unknown cluster setting `{other}`"),
            }
        }
    });
    cluster.trace_enabled = true;
    cluster
}
