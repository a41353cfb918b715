//! `raftkv check`: reads a Jepsen-style EDN history, checks it with `lincheck`, prints the verdict as
//! the last line on stdout and exits 0 (linearizable), 1 (not linearizable), 2 (undecided within the
//! search budget) or 3 (unreadable input, or bad arguments). Progress on long checks goes to stderr.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use lincheck::{check_with_progress, KeyResult, Options, Progress, ReadHistory, Reason, Verdict, Violation};

const LINEARIZABLE: u8 = 0;
const NOT_LINEARIZABLE: u8 = 1;
const UNDECIDED: u8 = 2;
const UNREADABLE: u8 = 3;

/// After this long, each key's result is reported on stderr as it is decided.
const QUIET_FOR: Duration = Duration::from_secs(1);
/// Longest operation description printed; values of long append chains are cut.
const MAX_OP_CHARS: usize = 240;

#[derive(Parser, Debug)]
#[command(
    name = "raftkv check",
    about = "Check a Jepsen-style EDN history for linearizability",
    long_about = "Check a Jepsen-style EDN history for linearizability.\n\n\
        Each line is one event, e.g. {:process 0, :type :invoke, :f :append, :key \"4\", :value \"x 0 1 y\"}, \
        with :type one of :invoke :ok :fail :info and :f one of :read :get :write :put :append :cas :incr. \
        :fail means the operation did not happen; :info (or no completion) means it may have happened at \
        any time after its invocation, or never. Lines whose :process is not an integer are skipped.\n\n\
        Exit status: 0 linearizable, 1 not linearizable, 2 undecided within the budget, 3 unreadable \
        input or bad arguments. The verdict is the last line on stdout."
)]
struct CheckArgs {
    /// The value every key holds before the history starts, taken as raw text (Porcupine's kv histories
    /// need --initial ""). Without it, keys start absent (nil), which differs from "".
    #[arg(long, value_name = "VALUE", allow_hyphen_values = true)]
    initial: Option<String>,
    /// The most states the search may explore for one key before the verdict is "undecided". Counted in
    /// states, not seconds, so a verdict does not depend on the machine.
    #[arg(long, value_name = "N", default_value_t = lincheck::DEFAULT_BUDGET)]
    budget: u64,
    /// The history file, one EDN map per line; `-` reads standard input.
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

/// Runs `raftkv check` with the arguments after `check`.
pub fn run(args: Vec<OsString>) -> ExitCode {
    let args = match CheckArgs::try_parse_from(std::iter::once(OsString::from("raftkv check")).chain(args)) {
        Ok(args) => args,
        Err(error) => {
            // --help and --version print and succeed; a usage error must not look like "undecided" (2).
            let _ = error.print();
            return ExitCode::from(if error.use_stderr() { UNREADABLE } else { LINEARIZABLE });
        }
    };
    let name = args.file.display().to_string();
    let read = match read(&args.file) {
        Ok(read) => read,
        Err(reason) => {
            eprintln!("raftkv check: {name}: {reason}");
            println!("unreadable: {name}: {reason}");
            return ExitCode::from(UNREADABLE);
        }
    };
    let options = Options { initial: args.initial, budget: args.budget };
    let started = Instant::now();
    let report =
        check_with_progress(&read.history, &options, &mut |progress| report_progress(progress, started));
    let ops = read.history.ops().len();
    let states: u64 = report.keys.iter().map(|k| k.states_explored).sum();
    match report.verdict {
        Verdict::Linearizable => {
            println!(
                "linearizable: {ops} operations on {} keys ({states} states explored)",
                report.keys.len()
            );
            ExitCode::from(LINEARIZABLE)
        }
        Verdict::NotLinearizable(violation) => {
            print_violation(&violation, &read);
            println!(
                "not linearizable: key {:?}: the operations listed above cannot be ordered",
                violation.key
            );
            ExitCode::from(NOT_LINEARIZABLE)
        }
        Verdict::Undecided { key, budget } => {
            println!("undecided: key {key:?} needs more than {budget} states (try a larger --budget)");
            ExitCode::from(UNDECIDED)
        }
    }
}

fn read(path: &PathBuf) -> Result<ReadHistory, String> {
    let input: Box<dyn BufRead> = if path.as_os_str() == "-" {
        Box::new(BufReader::new(io::stdin().lock()))
    } else {
        Box::new(BufReader::new(File::open(path).map_err(|e| format!("cannot open: {e}"))?))
    };
    lincheck::read_history(input).map_err(|e| e.to_string())
}

fn report_progress(progress: Progress, started: Instant) {
    match progress {
        Progress::Searching { key, states } => eprintln!("key {key:?}: {states} states explored so far"),
        Progress::KeyDone { key, states, result } if started.elapsed() >= QUIET_FOR => {
            let outcome = match result {
                KeyResult::Linearizable => "linearizable",
                KeyResult::NotLinearizable(_) => "not linearizable",
                KeyResult::Undecided => "undecided",
            };
            eprintln!("key {key:?}: {outcome} after {states} states ({:.1?} so far)", started.elapsed());
        }
        _ => {}
    }
}

fn print_violation(violation: &Violation, read: &ReadHistory) {
    println!("key {:?}: {}", violation.key, violation.reason);
    match violation.reason {
        Reason::NeverWritten => {
            println!("  this read cannot be ordered anywhere:");
        }
        Reason::StaleRead => {
            println!(
                "  these operations cannot be ordered: the read, a write that replaced the value before the"
            );
            println!(
                "  read began, and the latest write the read could have built on (none: the initial value):"
            );
        }
        Reason::NothingFits => {
            let n = violation.linearized.len();
            let value = cut(&lincheck::show(&violation.value));
            if n == 0 {
                println!("  the value starts as {value}, and these operations cannot follow it:");
            } else {
                println!("  the longest order found has {n} operations; the last ones are:");
                for &id in &violation.linearized[n.saturating_sub(5)..] {
                    println!("    {}", describe(read, id));
                }
                println!("  leaving the value {value}, and these operations cannot follow it:");
            }
        }
    }
    for &id in &violation.stuck {
        println!("    {}", describe(read, id));
    }
}

/// "lines 12-15: process 3 read -> "a"", cut to a readable length.
fn describe(read: &ReadHistory, id: usize) -> String {
    let span = read.spans[id];
    let lines = match span.complete_line {
        Some(end) => format!("lines {}-{end}", span.invoke_line),
        None => format!("line {}", span.invoke_line),
    };
    cut(&format!("{lines}: {}", read.history.ops()[id]))
}

fn cut(text: &str) -> String {
    match text.char_indices().nth(MAX_OP_CHARS) {
        Some((at, _)) => format!("{}... ({} bytes)", &text[..at], text.len()),
        None => text.to_string(),
    }
}
