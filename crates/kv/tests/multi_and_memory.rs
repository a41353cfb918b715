//! MULTI/EXEC atomicity and the deterministic maxmemory limit.

mod common;

use bytes::Bytes;
use common::{argv, bulk, err, Harness};
use kv::{
    errors, parse, Command, KvConfig, KvStateMachine, Reply, Request, Transaction, ENTRY_OVERHEAD_BYTES,
};

fn multi(commands: &[&[&str]]) -> Command {
    let mut transaction = Transaction::new();
    for words in commands {
        transaction.queue(&argv(words)).unwrap();
    }
    transaction.exec().unwrap()
}

#[test]
fn exec_runs_every_command_and_returns_each_reply() {
    let mut h = Harness::new();
    h.run(&["SET", "text", "abc"]);
    let reply = h.apply_command(multi(&[
        &["SET", "a", "1"],
        &["INCR", "text"],
        &["INCR", "a"],
        &["GET", "a"],
        &["MGET", "a", "text"],
    ]));
    assert_eq!(
        reply,
        Reply::Array(vec![
            Reply::Ok,
            err(errors::NOT_AN_INTEGER),
            Reply::Integer(2),
            bulk("2"),
            Reply::Array(vec![bulk("2"), bulk("abc")]),
        ])
    );
}

#[test]
fn exec_of_reads_answers_through_read() {
    let mut h = Harness::new();
    h.run(&["MSET", "a", "1", "b", "2"]);
    let command = multi(&[&["GET", "a"], &["EXISTS", "a", "b", "c"]]);
    assert_eq!(h.machine.read(&command, 0), Reply::Array(vec![bulk("1"), Reply::Integer(2)]));
}

#[test]
fn nested_multi_is_refused_by_execution_and_by_decoding() {
    let inner = Command::Multi(vec![Command::DbSize]);
    let nested = Command::Multi(vec![inner]);
    let mut h = Harness::new();
    // Decoding refuses it, so the entry is malformed and applies nothing.
    assert_eq!(h.apply_command(nested.clone()), err(errors::MALFORMED_REQUEST));
    // Handed over already decoded, execution refuses the inner transaction.
    h.index += 1;
    let reply = h.machine.apply_request(h.index, Request::command(0, nested));
    assert_eq!(reply, Reply::Array(vec![err("ERR MULTI calls can not be nested")]));
}

#[test]
fn deeply_nested_bytes_fail_cleanly() {
    // A crafted entry: Command::Multi tag repeated far deeper than the stack could follow.
    let multi_tag = {
        let encoded = Request::command(0, Command::Multi(vec![])).encode();
        // version, session None, leader time 0, body Command, then Command::Multi's tag, then length 0.
        assert_eq!(encoded.len(), 6);
        encoded[4]
    };
    let mut bytes = vec![kv::REQUEST_FORMAT_VERSION, 0, 0, 2];
    for _ in 0..100_000 {
        bytes.push(multi_tag);
        bytes.push(1);
    }
    bytes.push(0);
    let mut machine = KvStateMachine::new(KvConfig::default());
    assert_eq!(machine.apply(1, &bytes), err(errors::MALFORMED_REQUEST));
}

fn entry_cost(key: &str, value: &str) -> u64 {
    (key.len() + value.len()) as u64 + ENTRY_OVERHEAD_BYTES
}

#[test]
fn maxmemory_refuses_growth_past_the_limit() {
    let limit = 3 * entry_cost("k0", "value");
    let mut h = Harness::with_config(KvConfig { maxmemory_bytes: limit, ..KvConfig::default() });
    for i in 0..3 {
        assert_eq!(h.run(&["SET", &format!("k{i}"), "value"]), Reply::Ok);
    }
    assert_eq!(h.machine.used_bytes(), limit);
    let oom = err("OOM command not allowed when used memory > 'maxmemory'.");
    assert_eq!(h.run(&["SET", "k3", "value"]), oom);
    assert_eq!(h.run(&["APPEND", "k0", "x"]), oom);
    assert_eq!(h.run(&["GET", "k0"]), bulk("value"), "the refused write left nothing behind");
    assert_eq!(h.run(&["EXISTS", "k3"]), Reply::Integer(0));
    // Writes that do not grow the data still work; so do deletes.
    assert_eq!(h.run(&["SET", "k0", "VALUE"]), Reply::Ok);
    assert_eq!(h.run(&["SET", "k1", "v"]), Reply::Ok);
    assert_eq!(h.run(&["INCR", "n"]), oom);
    assert_eq!(h.run(&["DEL", "k2"]), Reply::Integer(1));
    assert_eq!(h.run(&["INCR", "n"]), Reply::Integer(1));
    assert_eq!(h.machine.check_invariants(), Ok(()));
}

#[test]
fn maxmemory_refuses_a_whole_transaction_atomically() {
    let limit = entry_cost("a", "1") + 10;
    let mut h = Harness::with_config(KvConfig { maxmemory_bytes: limit, ..KvConfig::default() });
    h.run(&["SET", "a", "1"]);
    let before = h.machine.snapshot().to_bytes();
    let reply =
        h.apply_command(multi(&[&["SET", "a", "2"], &["DEL", "a"], &["SET", "b", "1"], &["SET", "c", "1"]]));
    assert_eq!(reply, err(errors::EXECABORT_OOM));
    assert_eq!(h.run(&["GET", "a"]), bulk("1"));
    assert_eq!(h.run(&["DBSIZE"]), Reply::Integer(1));
    let mut expected = KvStateMachine::restore(h.machine.config().clone(), before.as_slice()).unwrap();
    expected.apply_other(h.index);
    // Same data, same byte count; only the clock moved.
    assert_eq!(expected.used_bytes(), h.machine.used_bytes());
    assert_eq!(h.machine.check_invariants(), Ok(()));
}

#[test]
fn maxmemory_decisions_are_the_same_on_every_replica() {
    let config = KvConfig { maxmemory_bytes: 2_000, ..KvConfig::default() };
    let entries: Vec<Bytes> = (0..200)
        .map(|i| {
            let words = match i % 4 {
                0 => vec!["SET".to_string(), format!("k{}", i % 37), "x".repeat(i % 50)],
                1 => vec!["APPEND".to_string(), format!("k{}", i % 11), "yy".to_string()],
                2 => vec!["DEL".to_string(), format!("k{}", i % 13)],
                _ => vec!["INCR".to_string(), format!("n{}", i % 5)],
            };
            let argv: Vec<Bytes> = words.into_iter().map(Bytes::from).collect();
            Request::command(1_000 + i as u64, parse(&argv).unwrap()).encode()
        })
        .collect();
    let run = || {
        let mut machine = KvStateMachine::new(config.clone());
        let replies: Vec<Reply> =
            entries.iter().enumerate().map(|(i, entry)| machine.apply(i as u64 + 1, entry)).collect();
        (replies, machine.snapshot().to_bytes())
    };
    let (replies_a, snapshot_a) = run();
    let (replies_b, snapshot_b) = run();
    assert!(replies_a.iter().any(|r| r == &err(errors::OOM)), "the test must reach the limit");
    assert_eq!(replies_a, replies_b);
    assert_eq!(snapshot_a, snapshot_b);
}

#[test]
fn append_refuses_to_build_a_value_over_max_value_bytes() {
    let mut h = Harness::with_config(KvConfig { max_value_bytes: 8, ..KvConfig::default() });
    assert_eq!(h.run(&["APPEND", "k", "12345"]), Reply::Integer(5));
    assert_eq!(h.run(&["APPEND", "k", "678"]), Reply::Integer(8));
    let too_long = err("ERR string exceeds maximum allowed size (proto-max-bulk-len)");
    assert_eq!(h.run(&["APPEND", "k", "9"]), too_long);
    assert_eq!(h.run(&["APPEND", "new", "123456789"]), too_long);
    assert_eq!(h.run(&["GET", "k"]), bulk("12345678"), "the refused APPEND changed nothing");
    assert_eq!(h.run(&["EXISTS", "new"]), Reply::Integer(0));
}
