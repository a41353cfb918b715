//! `raftkv check` as a user runs it: exit codes, the verdict as the last stdout line, line numbers in
//! errors. Porcupine's labelled histories are read from the lincheck crate's test data.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn raftkv(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_raftkv"))
        .arg("check")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run raftkv");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.unwrap_or_default().as_bytes()).expect("write stdin");
    drop(input);
    child.wait_with_output().expect("wait for raftkv")
}

fn last_line(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).lines().last().unwrap_or_default().to_string()
}

fn porcupine(name: &str) -> String {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../lincheck/tests/data/porcupine-kv").join(name);
    path.to_str().expect("utf-8 path").to_string()
}

fn temp_file(name: &str, contents: &str) -> String {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, contents).expect("write temp history");
    path.to_str().expect("utf-8 path").to_string()
}

fn assert_verdict(output: &Output, code: i32, verdict_starts: &str) {
    let last = last_line(output);
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        last.starts_with(verdict_starts),
        "last stdout line {last:?} should start with {verdict_starts:?}"
    );
}

#[test]
fn porcupine_ok_histories_exit_0() {
    for name in ["c01-ok.edn", "c10-ok.edn", "c50-ok.edn"] {
        assert_verdict(&raftkv(&["--initial", "", &porcupine(name)], None), 0, "linearizable:");
    }
}

#[test]
fn porcupine_bad_histories_exit_1_naming_key_and_lines() {
    for name in ["c01-bad.edn", "c10-bad.edn", "c50-bad.edn"] {
        let output = raftkv(&["--initial", "", &porcupine(name)], None);
        assert_verdict(&output, 1, "not linearizable: key ");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.contains("lines "), "the ops that cannot be ordered come with their lines:\n{stdout}");
    }
}

#[test]
fn without_initial_porcupine_reads_of_empty_string_are_wrong() {
    // Porcupine's model starts keys at ""; ours starts them absent unless told otherwise.
    assert_verdict(&raftkv(&[&porcupine("c01-ok.edn")], None), 1, "not linearizable");
}

const STALE: &str = r#"{:process 0, :type :invoke, :f :write, :key "k", :value "a"}
{:process 0, :type :ok, :f :write, :key "k", :value "a"}
{:process :nemesis, :type :info, :f :start, :value {:partition [[:n1] [:n2 :n3]]}}
{:process 0, :type :invoke, :f :write, :key "k", :value "b"}
{:process 0, :type :ok, :f :write, :key "k", :value "b"}
{:process 1, :type :invoke, :f :read, :key "k", :value nil}
{:process 1, :type :ok, :f :read, :key "k", :value "a"}
"#;

#[test]
fn stale_read_from_stdin_exits_1_with_lines() {
    let output = raftkv(&["-"], Some(STALE));
    assert_verdict(&output, 1, "not linearizable: key \"k\"");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("lines 6-7: process 1 read -> \"a\""), "{stdout}");
    assert!(stdout.contains("lines 4-5: process 0 write \"b\" ok"), "{stdout}");
}

#[test]
fn info_and_fail_ops_from_a_file() {
    let history = r#"{:process 0, :type :invoke, :f :write, :key "k", :value "a"}
{:process 0, :type :info, :f :write, :key "k", :value "a"}
{:process 1, :type :invoke, :f :cas, :key "k", :value ["zz" "b"]}
{:process 1, :type :fail, :f :cas, :key "k", :value ["zz" "b"]}
{:process 2, :type :invoke, :f :read, :key "k", :value nil}
{:process 2, :type :ok, :f :read, :key "k", :value "a"}
"#;
    assert_verdict(&raftkv(&[&temp_file("info-fail.edn", history)], None), 0, "linearizable:");
}

#[test]
fn tiny_budget_exits_2() {
    let output = raftkv(&["--initial", "", "--budget", "1", &porcupine("c10-ok.edn")], None);
    assert_verdict(&output, 2, "undecided: key ");
}

#[test]
fn unreadable_input_exits_3_with_line_number() {
    let cases = [
        ("syntax", "{:process 0, :type :invoke, :f :read, :key \"k\"}\n{:process 0, :type :ok", "line 2:"),
        ("second-invoke", "{:process 0, :type :invoke, :f :read, :key \"k\"}\n{:process 0, :type :invoke, :f :read, :key \"k\"}", "line 2:"),
        ("no-open", "{:process 5, :type :ok, :f :read, :key \"k\", :value nil}", "line 1:"),
        ("f-differs", "{:process 0, :type :invoke, :f :read, :key \"k\"}\n{:process 0, :type :ok, :f :get, :key \"k\"}", "line 2:"),
        ("key-differs", "{:process 0, :type :invoke, :f :read, :key \"k\"}\n{:process 0, :type :ok, :f :read, :key \"j\"}", "line 2:"),
        ("unknown-f", "{:process 0, :type :invoke, :f :txn, :key \"k\", :value []}", "line 1:"),
        ("multi-key", "{:process 0, :type :invoke, :f :read, :key [\"a\" \"b\"]}", "line 1:"),
    ];
    for (name, history, line) in cases {
        let output = raftkv(&[&temp_file(&format!("{name}.edn"), history)], None);
        assert_verdict(&output, 3, "unreadable: ");
        assert!(last_line(&output).contains(line), "{name}: {}", last_line(&output));
        assert!(
            String::from_utf8_lossy(&output.stderr).contains(line),
            "{name}: the reason also goes to stderr"
        );
    }
}

#[test]
fn missing_file_and_bad_arguments_exit_3() {
    assert_verdict(&raftkv(&["/nonexistent/history.edn"], None), 3, "unreadable: ");
    assert_eq!(
        raftkv(&["--budjet", "5", "x.edn"], None).status.code(),
        Some(3),
        "a usage error is not 'undecided'"
    );
    assert_eq!(raftkv(&[], None).status.code(), Some(3));
    assert_eq!(raftkv(&["--budget", "many", "x.edn"], None).status.code(), Some(3));
    let help = raftkv(&["--help"], None);
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).contains("--initial"));
}

#[test]
fn nemesis_only_history_is_linearizable() {
    let output = raftkv(&["-"], Some("{:process :nemesis, :type :info, :f :kill, :value :all}\n"));
    assert_verdict(&output, 0, "linearizable: 0 operations");
}
