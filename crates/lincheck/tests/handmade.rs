//! Hand-made histories for what Porcupine's files do not exercise: indeterminate (`:info`) and failed
//! operations, cas, incr, append, nil versus "", stale reads, and the search budget. Each is written as
//! the EDN a user would feed to `raftkv check`, so the reader is exercised too.

use lincheck::{check, read_history, Call, History, Options, Reason, Verdict};

fn verdict_with(edn: &str, initial: Option<&str>, budget: u64) -> Verdict {
    let read = read_history(edn.as_bytes()).unwrap_or_else(|e| panic!("unreadable test history: {e}"));
    check(&read.history, &Options { initial: initial.map(str::to_string), budget }).verdict
}

fn verdict(edn: &str) -> Verdict {
    verdict_with(edn, None, lincheck::DEFAULT_BUDGET)
}

fn assert_linearizable(edn: &str) {
    assert_eq!(verdict(edn), Verdict::Linearizable, "{edn}");
}

fn assert_not_linearizable(edn: &str) -> lincheck::Violation {
    match verdict(edn) {
        Verdict::NotLinearizable(violation) => violation,
        other => panic!("expected a violation, got {other:?} for\n{edn}"),
    }
}

#[test]
fn info_write_that_must_have_happened() {
    // The write timed out, but a later read saw its value: it took effect.
    assert_linearizable(
        r#"{:process 0, :type :invoke, :f :write, :key "k", :value "a"}
           {:process 0, :type :info, :f :write, :key "k", :value "a"}
           {:process 1, :type :invoke, :f :read, :key "k", :value nil}
           {:process 1, :type :ok, :f :read, :key "k", :value "a"}"#,
    );
}

#[test]
fn info_write_that_must_not_have_happened() {
    // The write timed out and nobody ever saw it: it is dropped.
    assert_linearizable(
        r#"{:process 0, :type :invoke, :f :write, :key "k", :value "a"}
           {:process 0, :type :info, :f :write, :key "k", :value "a"}
           {:process 1, :type :invoke, :f :read, :key "k", :value nil}
           {:process 1, :type :ok, :f :read, :key "k", :value nil}
           {:process 1, :type :invoke, :f :write, :key "k", :value "b"}
           {:process 1, :type :ok, :f :write, :key "k", :value "b"}
           {:process 1, :type :invoke, :f :read, :key "k", :value nil}
           {:process 1, :type :ok, :f :read, :key "k", :value "b"}"#,
    );
}

#[test]
fn info_write_takes_effect_late_after_other_writes() {
    // Knossos semantics: an indeterminate op may take effect at any time after its invocation, even
    // long after its client gave up and after later writes.
    assert_linearizable(
        r#"{:process 0, :type :invoke, :f :write, :key "k", :value "a"}
           {:process 0, :type :info, :f :write, :key "k", :value "a"}
           {:process 1, :type :invoke, :f :write, :key "k", :value "b"}
           {:process 1, :type :ok, :f :write, :key "k", :value "b"}
           {:process 1, :type :invoke, :f :read, :key "k", :value nil}
           {:process 1, :type :ok, :f :read, :key "k", :value "b"}
           {:process 1, :type :invoke, :f :read, :key "k", :value nil}
           {:process 1, :type :ok, :f :read, :key "k", :value "a"}"#,
    );
}

#[test]
fn info_write_cannot_take_effect_before_it_was_invoked() {
    let violation = assert_not_linearizable(
        r#"{:process 1, :type :invoke, :f :read, :key "k", :value nil}
           {:process 1, :type :ok, :f :read, :key "k", :value "a"}
           {:process 0, :type :invoke, :f :write, :key "k", :value "a"}
           {:process 0, :type :info, :f :write, :key "k", :value "a"}"#,
    );
    assert_eq!(violation.key, "k");
    assert_eq!(violation.stuck, vec![0], "the read is the operation that cannot be ordered");
}

#[test]
fn info_write_happens_at_most_once() {
    // The timed-out write of "a" can explain one return to "a", not two.
    let history = r#"{:process 0, :type :invoke, :f :write, :key "k", :value "a"}
           {:process 0, :type :info, :f :write, :key "k", :value "a"}
           {:process 1, :type :invoke, :f :write, :key "k", :value "b"}
           {:process 1, :type :ok, :f :write, :key "k", :value "b"}
           {:process 1, :type :invoke, :f :read, :key "k", :value nil}
           {:process 1, :type :ok, :f :read, :key "k", :value "a"}
           {:process 1, :type :invoke, :f :write, :key "k", :value "c"}
           {:process 1, :type :ok, :f :write, :key "k", :value "c"}
           {:process 1, :type :invoke, :f :read, :key "k", :value nil}
           {:process 1, :type :ok, :f :read, :key "k", :value "a"}"#;
    assert_not_linearizable(history);
}

#[test]
fn two_info_writes_in_the_order_the_reads_need() {
    // Both writes are indeterminate; the reads force "b" before "a", then nothing may restore "b".
    let base = r#"{:process 0, :type :invoke, :f :write, :key "k", :value "a"}
           {:process 1, :type :invoke, :f :write, :key "k", :value "b"}
           {:process 0, :type :info, :f :write, :key "k", :value "a"}
           {:process 1, :type :info, :f :write, :key "k", :value "b"}
           {:process 2, :type :invoke, :f :read, :key "k", :value nil}
           {:process 2, :type :ok, :f :read, :key "k", :value "b"}
           {:process 2, :type :invoke, :f :read, :key "k", :value nil}
           {:process 2, :type :ok, :f :read, :key "k", :value "a"}"#;
    assert_linearizable(base);
    assert_not_linearizable(&format!(
        "{base}\n{}\n{}",
        r#"{:process 2, :type :invoke, :f :read, :key "k", :value nil}"#,
        r#"{:process 2, :type :ok, :f :read, :key "k", :value "b"}"#
    ));
}

#[test]
fn pending_forever_write_may_happen_or_not() {
    // An invocation with no completion at all counts as :info.
    let pending = r#"{:process 0, :type :invoke, :f :write, :key "k", :value "a"}"#;
    let read = |v: &str| {
        format!(
            "{}\n{}",
            r#"{:process 1, :type :invoke, :f :read, :key "k", :value nil}"#,
            format_args!(r#"{{:process 1, :type :ok, :f :read, :key "k", :value {v}}}"#)
        )
    };
    assert_linearizable(&format!("{pending}\n{}\n{}", read("nil"), read("nil")));
    assert_linearizable(&format!("{pending}\n{}\n{}", read("nil"), read("\"a\"")));
    // ... but once it has been seen it cannot be undone.
    assert_not_linearizable(&format!("{pending}\n{}\n{}", read("\"a\""), read("nil")));
}

#[test]
fn failed_write_did_not_happen() {
    // A write refused (say with TRYAGAIN) records :fail.
    assert_not_linearizable(
        r#"{:process 0, :type :invoke, :f :write, :key "k", :value "a"}
           {:process 0, :type :fail, :f :write, :key "k", :value "a"}
           {:process 1, :type :invoke, :f :read, :key "k", :value nil}
           {:process 1, :type :ok, :f :read, :key "k", :value "a"}"#,
    );
    assert_linearizable(
        r#"{:process 0, :type :invoke, :f :write, :key "k", :value "a"}
           {:process 0, :type :fail, :f :write, :key "k", :value "a"}
           {:process 1, :type :invoke, :f :read, :key "k", :value nil}
           {:process 1, :type :ok, :f :read, :key "k", :value nil}"#,
    );
}

#[test]
fn failed_cas_on_mismatch_leaves_the_value() {
    assert_linearizable(
        r#"{:process 0, :type :invoke, :f :write, :key "k", :value "a"}
           {:process 0, :type :ok, :f :write, :key "k", :value "a"}
           {:process 0, :type :invoke, :f :cas, :key "k", :value ["x" "b"]}
           {:process 0, :type :fail, :f :cas, :key "k", :value ["x" "b"]}
           {:process 1, :type :invoke, :f :read, :key "k", :value nil}
           {:process 1, :type :ok, :f :read, :key "k", :value "a"}"#,
    );
    // A cas that reports success must have matched.
    assert_not_linearizable(
        r#"{:process 0, :type :invoke, :f :write, :key "k", :value "a"}
           {:process 0, :type :ok, :f :write, :key "k", :value "a"}
           {:process 0, :type :invoke, :f :cas, :key "k", :value ["x" "b"]}
           {:process 0, :type :ok, :f :cas, :key "k", :value ["x" "b"]}"#,
    );
}

#[test]
fn cas_with_nil_expected_matches_only_an_absent_key() {
    let cas_then_read = r#"{:process 0, :type :invoke, :f :cas, :key "k", :value [nil "a"]}
           {:process 0, :type :ok, :f :cas, :key "k", :value [nil "a"]}
           {:process 1, :type :invoke, :f :read, :key "k", :value nil}
           {:process 1, :type :ok, :f :read, :key "k", :value "a"}"#;
    assert_linearizable(cas_then_read);
    // With every key starting at "", the key is not absent, so the cas could not have succeeded.
    assert!(matches!(
        verdict_with(cas_then_read, Some(""), lincheck::DEFAULT_BUDGET),
        Verdict::NotLinearizable(_)
    ));
}

#[test]
fn nil_differs_from_the_empty_string() {
    let read_empty = r#"{:process 1, :type :invoke, :f :read, :key "k", :value nil}
           {:process 1, :type :ok, :f :read, :key "k", :value ""}"#;
    assert_not_linearizable(read_empty);
    assert_eq!(verdict_with(read_empty, Some(""), 10), Verdict::Linearizable);
}

#[test]
fn incr_on_an_absent_key_starts_at_zero() {
    assert_linearizable(
        r#"{:process 0, :type :invoke, :f :incr, :key "n", :value nil}
           {:process 0, :type :ok, :f :incr, :key "n", :value 1}
           {:process 0, :type :invoke, :f :incr, :key "n", :value nil}
           {:process 0, :type :ok, :f :incr, :key "n", :value "2"}
           {:process 1, :type :invoke, :f :get, :key "n", :value nil}
           {:process 1, :type :ok, :f :get, :key "n", :value 2}
           {:process 1, :type :invoke, :f :get, :key "n", :value nil}
           {:process 1, :type :ok, :f :get, :key "n", :value "2"}"#,
    );
    assert_not_linearizable(
        r#"{:process 0, :type :invoke, :f :incr, :key "n", :value nil}
           {:process 0, :type :ok, :f :incr, :key "n", :value 2}"#,
    );
}

#[test]
fn integers_and_their_decimal_strings_are_equal() {
    assert_linearizable(
        r#"{:process 0, :type :invoke, :f :write, :key 7, :value 5}
           {:process 0, :type :ok, :f :write, :key 7, :value 5}
           {:process 0, :type :invoke, :f :incr, :key "7", :value nil}
           {:process 0, :type :ok, :f :incr, :key "7", :value 6}
           {:process 1, :type :invoke, :f :read, :key "7", :value nil}
           {:process 1, :type :ok, :f :read, :key "7", :value "6"}"#,
    );
}

#[test]
fn incr_of_a_non_integer_cannot_succeed() {
    assert_not_linearizable(
        r#"{:process 0, :type :invoke, :f :write, :key "n", :value "x"}
           {:process 0, :type :ok, :f :write, :key "n", :value "x"}
           {:process 0, :type :invoke, :f :incr, :key "n", :value nil}
           {:process 0, :type :ok, :f :incr, :key "n", :value 1}"#,
    );
}

#[test]
fn indeterminate_incrs_count_any_number_of_times() {
    // Five timed-out incrs, then a read of 3: three of them happened (which ones does not matter).
    let mut edn = String::new();
    for p in 0..5 {
        edn += &format!("{{:process {p}, :type :invoke, :f :incr, :key \"n\"}}\n");
    }
    for p in 0..5 {
        edn += &format!("{{:process {p}, :type :info, :f :incr, :key \"n\"}}\n");
    }
    let read = |v: i64| {
        format!("{{:process 9, :type :invoke, :f :read, :key \"n\"}}\n{{:process 9, :type :ok, :f :read, :key \"n\", :value {v}}}\n")
    };
    assert_linearizable(&(edn.clone() + &read(3) + &read(5)));
    assert_not_linearizable(&(edn.clone() + &read(3) + &read(2)));
    assert_not_linearizable(&(edn + &read(6)));
}

#[test]
fn append_concatenates_and_reads_see_the_whole_value() {
    let appends = r#"{:process 0, :type :invoke, :f :append, :key "k", :value "a"}
           {:process 1, :type :invoke, :f :append, :key "k", :value "b"}
           {:process 0, :type :ok, :f :append, :key "k", :value "a"}
           {:process 1, :type :ok, :f :append, :key "k", :value "b"}
           {:process 2, :type :invoke, :f :read, :key "k", :value nil}"#;
    // Concurrent appends may land in either order; the key started absent, which appends treat as "".
    assert_linearizable(&format!(
        "{appends}\n{}",
        r#"{:process 2, :type :ok, :f :read, :key "k", :value "ab"}"#
    ));
    assert_linearizable(&format!(
        "{appends}\n{}",
        r#"{:process 2, :type :ok, :f :read, :key "k", :value "ba"}"#
    ));
    assert_not_linearizable(&format!(
        "{appends}\n{}",
        r#"{:process 2, :type :ok, :f :read, :key "k", :value "a"}"#
    ));
    assert_not_linearizable(&format!(
        "{appends}\n{}",
        r#"{:process 2, :type :ok, :f :read, :key "k", :value "abb"}"#
    ));
}

#[test]
fn stale_read_is_not_linearizable() {
    let violation = assert_not_linearizable(
        r#"{:process 0, :type :invoke, :f :write, :key "k", :value "a"}
           {:process 0, :type :ok, :f :write, :key "k", :value "a"}
           {:process 0, :type :invoke, :f :write, :key "k", :value "b"}
           {:process 0, :type :ok, :f :write, :key "k", :value "b"}
           {:process 1, :type :invoke, :f :read, :key "k", :value nil}
           {:process 1, :type :ok, :f :read, :key "k", :value "a"}"#,
    );
    assert_eq!(violation.reason, Reason::StaleRead);
    // The read, the write that overwrote "a" before the read began, and the write it read from.
    assert_eq!(violation.stuck, vec![2, 1, 0]);
}

#[test]
fn stale_read_found_by_the_search() {
    // Each read alone is explainable; together they are not: "b" is seen, then "a" again, with no
    // write of "a" in between.
    let edn = r#"{:process 0, :type :invoke, :f :write, :key "k", :value "a"}
           {:process 1, :type :invoke, :f :write, :key "k", :value "b"}
           {:process 0, :type :ok, :f :write, :key "k", :value "a"}
           {:process 1, :type :ok, :f :write, :key "k", :value "b"}
           {:process 2, :type :invoke, :f :read, :key "k", :value nil}
           {:process 2, :type :ok, :f :read, :key "k", :value "b"}
           {:process 2, :type :invoke, :f :read, :key "k", :value nil}
           {:process 2, :type :ok, :f :read, :key "k", :value "a"}"#;
    let violation = assert_not_linearizable(edn);
    assert_eq!(violation.reason, Reason::NothingFits);
    assert_eq!(violation.stuck, vec![3], "the second read cannot follow");
    assert_eq!(violation.value, Some("b".into()));
    let history = read_history(edn.as_bytes()).unwrap().history;
    let explained = violation.explain(&history);
    assert!(explained.starts_with("key \"k\": "), "{explained}");
    assert!(explained.contains("op 3: process 2 read -> \"a\""), "{explained}");
}

#[test]
fn concurrent_overlapping_ops_in_either_order() {
    // A write and a read that overlap: the read may see the value before or after the write.
    for seen in ["nil", "\"a\""] {
        assert_linearizable(&format!(
            "{}\n{}\n{}\n{}",
            r#"{:process 0, :type :invoke, :f :write, :key "k", :value "a"}"#,
            r#"{:process 1, :type :invoke, :f :read, :key "k", :value nil}"#,
            r#"{:process 0, :type :ok, :f :write, :key "k", :value "a"}"#,
            format_args!(r#"{{:process 1, :type :ok, :f :read, :key "k", :value {seen}}}"#),
        ));
    }
    // Two overlapping writes and a later read of either value.
    for seen in ["\"a\"", "\"b\""] {
        assert_linearizable(&format!(
            "{}\n{}\n{}\n{}\n{}\n{}",
            r#"{:process 0, :type :invoke, :f :write, :key "k", :value "a"}"#,
            r#"{:process 1, :type :invoke, :f :write, :key "k", :value "b"}"#,
            r#"{:process 1, :type :ok, :f :write, :key "k", :value "b"}"#,
            r#"{:process 0, :type :ok, :f :write, :key "k", :value "a"}"#,
            r#"{:process 2, :type :invoke, :f :read, :key "k", :value nil}"#,
            format_args!(r#"{{:process 2, :type :ok, :f :read, :key "k", :value {seen}}}"#),
        ));
    }
}

#[test]
fn keys_are_checked_independently() {
    // Each key on its own is fine; a register model over both keys would be too.
    assert_linearizable(
        r#"{:process 0, :type :invoke, :f :write, :key "x", :value "1"}
           {:process 1, :type :invoke, :f :write, :key "y", :value "1"}
           {:process 0, :type :ok, :f :write, :key "x", :value "1"}
           {:process 1, :type :ok, :f :write, :key "y", :value "1"}
           {:process 0, :type :invoke, :f :read, :key "y", :value nil}
           {:process 0, :type :ok, :f :read, :key "y", :value "1"}"#,
    );
}

#[test]
fn tiny_budget_gives_undecided() {
    let edn = r#"{:process 0, :type :invoke, :f :write, :key "k", :value "a"}
           {:process 0, :type :ok, :f :write, :key "k", :value "a"}
           {:process 1, :type :invoke, :f :read, :key "k", :value nil}
           {:process 1, :type :ok, :f :read, :key "k", :value "a"}"#;
    assert_eq!(verdict_with(edn, None, 1), Verdict::Undecided { key: "k".into(), budget: 1 });
    assert_eq!(verdict_with(edn, None, 2), Verdict::Linearizable);
}

#[test]
fn violation_outranks_an_undecided_key() {
    // Key "a" needs more than the budget; key "b" is plainly wrong. The verdict names "b".
    let edn = r#"{:process 0, :type :invoke, :f :write, :key "a", :value "1"}
           {:process 0, :type :ok, :f :write, :key "a", :value "1"}
           {:process 0, :type :invoke, :f :read, :key "a", :value nil}
           {:process 0, :type :ok, :f :read, :key "a", :value "1"}
           {:process 0, :type :invoke, :f :read, :key "b", :value nil}
           {:process 0, :type :ok, :f :read, :key "b", :value "1"}"#;
    match verdict_with(edn, None, 1) {
        Verdict::NotLinearizable(v) => assert_eq!(v.key, "b"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_library_api_builds_histories_directly() {
    let mut h = History::new();
    let w = h.invoke(1, "k", Call::Cas { expected: None, new: Some("1".into()) }).unwrap();
    let r = h.invoke(2, "k", Call::Read).unwrap();
    assert!(h.invoke(2, "k", Call::Read).is_err(), "process 2 already has an open op");
    assert_eq!(h.complete_ok(1, None), Ok(w));
    assert_eq!(h.complete_ok(2, Some("1".into())), Ok(r));
    assert!(h.complete_fail(2).is_err(), "nothing open for process 2");
    h.invoke(3, "k", Call::Append("2".into())).unwrap(); // never completes
    assert_eq!(check(&h, &Options::default()).verdict, Verdict::Linearizable);
    assert_eq!(h.ops()[2].to_string(), "process 3 append \"2\" (never completed)");
}

#[test]
fn read_of_a_value_nothing_wrote() {
    // With every key starting at "", a read of nil has no possible source at all. (This once panicked.)
    let edn = r#"{:process 0, :type :invoke, :f :write, :key "k", :value "a"}
           {:process 0, :type :ok, :f :write, :key "k", :value "a"}
           {:process 1, :type :invoke, :f :read, :key "k", :value nil}
           {:process 1, :type :ok, :f :read, :key "k", :value nil}"#;
    match verdict_with(edn, Some(""), 100) {
        Verdict::NotLinearizable(v) => {
            assert_eq!(v.reason, Reason::NeverWritten);
            assert_eq!(v.stuck, vec![1]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn unobserved_timed_out_appends_are_never_tried() {
    // Forty timed-out appends that nobody ever read, then a long run of reads and appends: dropping
    // the unobservable ones keeps the search linear instead of trying every subset of them.
    let mut edn = String::new();
    for p in 0..40 {
        edn += &format!("{{:process {p}, :type :invoke, :f :append, :key \"k\", :value \"lost{p},\"}}\n");
        edn += &format!("{{:process {p}, :type :info, :f :append, :key \"k\", :value \"lost{p},\"}}\n");
    }
    let mut value = String::new();
    for i in 0..200 {
        let (p, q) = (100 + 2 * i, 101 + 2 * i);
        value += &format!("v{i},");
        edn += &format!("{{:process {p}, :type :invoke, :f :append, :key \"k\", :value \"v{i},\"}}\n");
        edn += &format!("{{:process {q}, :type :invoke, :f :read, :key \"k\"}}\n");
        edn += &format!("{{:process {p}, :type :ok, :f :append, :key \"k\", :value \"v{i},\"}}\n");
        edn += &format!("{{:process {q}, :type :ok, :f :read, :key \"k\", :value \"{value}\"}}\n");
    }
    let read = read_history(edn.as_bytes()).unwrap();
    let report = check(&read.history, &Options { initial: None, budget: 10_000 });
    assert_eq!(report.verdict, Verdict::Linearizable);
}

#[test]
fn timed_out_write_observed_only_by_a_timed_out_cas() {
    // Found by the brute-force property test: the write of "2" is seen only by the cas, which may take
    // effect long after its client gave up, so neither may be dropped as unobservable.
    assert_linearizable(
        r#"{:process 1, :type :invoke, :f :append, :key "k", :value "x"}
           {:process 2, :type :invoke, :f :cas, :key "k", :value ["2" "a"]}
           {:process 1, :type :info, :f :append, :key "k", :value "x"}
           {:process 2, :type :info, :f :cas, :key "k", :value ["2" "a"]}
           {:process 0, :type :invoke, :f :read, :key "k", :value nil}
           {:process 3, :type :invoke, :f :write, :key "k", :value "2"}
           {:process 3, :type :info, :f :write, :key "k", :value "2"}
           {:process 0, :type :ok, :f :read, :key "k", :value "ax"}"#,
    );
}
