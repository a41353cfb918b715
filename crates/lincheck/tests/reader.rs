//! The EDN history reader: what it accepts, what it skips, and each way a history is unreadable (always
//! with the line number).

use lincheck::{parse_line, read_history, Call, EventKind, Outcome, ReadError, MAX_LINE_BYTES};

fn error_of(edn: &str) -> ReadError {
    match read_history(edn.as_bytes()) {
        Ok(read) => panic!("expected an error, read {:?}", read.history.ops()),
        Err(error) => error,
    }
}

fn assert_unreadable(edn: &str, line: u64, reason_contains: &str) {
    let error = error_of(edn);
    assert_eq!(error.line, line, "{error}");
    assert!(error.reason.contains(reason_contains), "{error:?} should mention {reason_contains:?}");
}

const INVOKE: &str = r#"{:process 0, :type :invoke, :f :write, :key "k", :value "a"}"#;

#[test]
fn reads_operations_with_their_lines() {
    let edn = format!(
        "{INVOKE}\n\n; a comment\n{}\n{}\n{}\r\n",
        r#"{:process 1, :type :invoke, :f :cas, :key "k", :value [nil 5]}"#,
        r#"{:process 0, :type :ok, :f :write, :key "k", :value "a", :time 12, :index 3}"#,
        r#"{:process 1, :type :fail, :f :cas, :key "k", :value [nil 5]}"#,
    );
    let read = read_history(edn.as_bytes()).unwrap();
    let ops = read.history.ops();
    assert_eq!(ops.len(), 2);
    assert_eq!(ops[0].call, Call::Write(Some("a".into())));
    assert_eq!(ops[1].call, Call::Cas { expected: None, new: Some("5".into()) });
    assert_eq!(ops[1].outcome, Outcome::Fail);
    assert_eq!((read.spans[0].invoke_line, read.spans[0].complete_line), (1, Some(5)));
    assert_eq!((read.spans[1].invoke_line, read.spans[1].complete_line), (4, Some(6)));
}

#[test]
fn nemesis_lines_are_skipped() {
    let edn = format!(
        "{}\n{INVOKE}\n{}\n",
        r#"{:process :nemesis, :type :info, :f :start-partition, :value {:n1 #{:n2 :n3}}}"#,
        r#"{:process :nemesis, :type :info, :f :start-partition, :value [:isolated {"n1" ["n2"]}]}"#,
    );
    let read = read_history(edn.as_bytes()).unwrap();
    assert_eq!(read.history.ops().len(), 1);
    assert_eq!(read.history.ops()[0].outcome, Outcome::Info, "never completed counts as :info");
}

#[test]
fn a_process_may_invoke_again_after_info() {
    let edn = format!(
        "{INVOKE}\n{}\n{INVOKE}\n",
        r#"{:process 0, :type :info, :f :write, :key "k", :value "a", :error :timeout}"#
    );
    assert_eq!(read_history(edn.as_bytes()).unwrap().history.ops().len(), 2);
}

#[test]
fn syntax_errors_name_the_line() {
    assert_unreadable(&format!("{INVOKE}\n{{:process 0, :type :ok"), 2, "never closed");
    assert_unreadable("{:process 0 :type}", 1, "odd number");
    assert_unreadable("[1 2 3]", 1, "expected a map");
    assert_unreadable("{:a 1} {:b 2}", 1, "more than one form");
    assert_unreadable("{:process 0, :type :invoke, :f :read, :key \"\\q\"}", 1, "unknown escape");
}

#[test]
fn second_invoke_while_one_is_open() {
    assert_unreadable(&format!("{INVOKE}\n{INVOKE}"), 2, "still open");
}

#[test]
fn completion_with_no_open_invoke() {
    assert_unreadable(r#"{:process 3, :type :ok, :f :read, :key "k", :value nil}"#, 1, "no open :invoke");
    assert_unreadable(r#"{:process 3, :type :info, :f :read, :key "k"}"#, 1, "no open :invoke");
}

#[test]
fn completion_that_differs_from_its_invoke() {
    assert_unreadable(
        &format!("{INVOKE}\n{}", r#"{:process 0, :type :ok, :f :append, :key "k", :value "a"}"#),
        2,
        ":f :append differs from :f :write invoked on line 1",
    );
    assert_unreadable(
        &format!("{INVOKE}\n{}", r#"{:process 0, :type :ok, :f :write, :key "j", :value "a"}"#),
        2,
        "differs from :key \"k\"",
    );
}

#[test]
fn unknown_f_and_type() {
    assert_unreadable(r#"{:process 0, :type :invoke, :f :txn, :key "k", :value []}"#, 1, "unknown :f :txn");
    assert_unreadable(r#"{:process 0, :type :begin, :f :read, :key "k"}"#, 1, "unknown :type :begin");
}

#[test]
fn multi_key_operations() {
    assert_unreadable(r#"{:process 0, :type :invoke, :f :read, :key ["a" "b"]}"#, 1, "multi-key");
    assert_unreadable(r#"{:process 0, :type :invoke, :f :read, :key #{"a" "b"}}"#, 1, "multi-key");
}

#[test]
fn missing_and_malformed_fields() {
    assert_unreadable(r#"{:type :invoke, :f :read, :key "k"}"#, 1, "missing :process");
    assert_unreadable(r#"{:process 0, :f :read, :key "k"}"#, 1, "missing :type");
    assert_unreadable(r#"{:process 0, :type :invoke, :key "k"}"#, 1, "missing :f");
    assert_unreadable(r#"{:process 0, :type :invoke, :f :read}"#, 1, "missing :key");
    assert_unreadable(r#"{:process 0, :type :invoke, :f :cas, :key "k", :value "a"}"#, 1, "[expected new]");
    assert_unreadable(
        r#"{:process 0, :type :invoke, :f :cas, :key "k", :value [1 2 3]}"#,
        1,
        "[expected new]",
    );
    assert_unreadable(r#"{:process 0, :type :invoke, :f :append, :key "k", :value nil}"#, 1, "append");
    assert_unreadable(r#"{:process 0, :type :invoke, :f :write, :key "k", :value 1.5}"#, 1, "non-integer");
    assert_unreadable(
        &format!(
            "{}\n{}",
            r#"{:process 0, :type :invoke, :f :read, :key "k"}"#,
            r#"{:process 0, :type :ok, :f :read, :key "k", :value [1]}"#
        ),
        2,
        "must be a string, integer or nil",
    );
    assert_unreadable(
        r#"{:process 99999999999999999999, :type :invoke, :f :read, :key "k"}"#,
        1,
        "too large",
    );
}

#[test]
fn overlong_line_is_refused_without_reading_it_all() {
    let long = format!(
        "{INVOKE}\n{{:process 1, :type :invoke, :f :write, :key \"k\", :value \"{}\"}}\n",
        "x".repeat(MAX_LINE_BYTES)
    );
    assert_unreadable(&long, 2, "longer than");
}

#[test]
fn deep_nesting_is_refused() {
    let deep = format!("{{:process :nemesis, :value {}{}}}", "[".repeat(10_000), "]".repeat(10_000));
    assert_unreadable(&deep, 1, "nested deeper");
}

#[test]
fn parse_line_reports_values() {
    let event = parse_line(br#"{:process 4, :type :ok, :f :incr, :key 1, :value 12}"#).unwrap().unwrap();
    assert_eq!((event.process, event.key.as_str(), event.f.as_str()), (4, "1", "incr"));
    assert_eq!(event.kind, EventKind::Ok(Some("12".into())));
    assert_eq!(parse_line(b"   ").unwrap(), None);
}

#[test]
fn garbage_never_panics() {
    // A cheap stand-in for the fuzz target: every prefix and some byte flips of a valid line.
    let line = br#"{:process 0, :type :invoke, :f :cas, :key "k\u00e9", :value [nil "x"], :m {:a #{1 2} :b (3 #_4)}}"#;
    for end in 0..=line.len() {
        let _ = parse_line(&line[..end]);
        for flip in [b'"', b'\\', b'{', b']', b'#', 0xff, b'\n', b'-'] {
            let mut bad = line[..end].to_vec();
            if let Some(last) = bad.last_mut() {
                *last = flip;
            }
            let _ = parse_line(&bad);
        }
    }
}
