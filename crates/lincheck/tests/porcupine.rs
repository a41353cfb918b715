//! Porcupine's labelled key-value histories (vendored with their MIT licence): the `-ok` ones are
//! linearizable, the `-bad` ones are not. Porcupine's kv model starts every key at "", so we do too.
//! These tests assert verdicts within the default budget, never times.

use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;

use lincheck::{check, read_history, Options, Verdict, DEFAULT_BUDGET};

fn verdict_of(name: &str) -> (Verdict, u64) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/porcupine-kv").join(name);
    let file = File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let read = read_history(BufReader::new(file)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let options = Options { initial: Some(String::new()), budget: DEFAULT_BUDGET };
    let report = check(&read.history, &options);
    let states = report.keys.iter().map(|k| k.states_explored).sum();
    (report.verdict, states)
}

fn assert_linearizable(name: &str) {
    let (verdict, states) = verdict_of(name);
    assert_eq!(verdict, Verdict::Linearizable, "{name}");
    eprintln!("{name}: linearizable after {states} states");
}

fn assert_not_linearizable(name: &str) {
    let (verdict, states) = verdict_of(name);
    let Verdict::NotLinearizable(violation) = verdict else {
        panic!("{name}: expected a violation, got {verdict:?}")
    };
    assert!(!violation.stuck.is_empty(), "{name}: a violation names the ops that cannot be ordered");
    eprintln!("{name}: not linearizable on key {:?} after {states} states", violation.key);
}

#[test]
fn c01_ok_is_linearizable() {
    assert_linearizable("c01-ok.edn");
}

#[test]
fn c01_bad_is_not_linearizable() {
    assert_not_linearizable("c01-bad.edn");
}

#[test]
fn c10_ok_is_linearizable() {
    assert_linearizable("c10-ok.edn");
}

#[test]
fn c10_bad_is_not_linearizable() {
    assert_not_linearizable("c10-bad.edn");
}

#[test]
fn c50_ok_is_linearizable() {
    assert_linearizable("c50-ok.edn");
}

#[test]
fn c50_bad_is_not_linearizable() {
    assert_not_linearizable("c50-bad.edn");
}
