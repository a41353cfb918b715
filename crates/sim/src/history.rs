//! From simulated client operations to the state machine's commands, from its replies to Jepsen's
//! outcomes, and from the run's history to a linearizability verdict.
//!
//! The mapping of replies is where honesty matters: only an error that promises the command was never
//! proposed (`-TRYAGAIN`) counts as `:fail`; any other error, and any timeout, is `:info`, because the
//! command may have been applied.

use bytes::Bytes;
use kv::{Command, Reply};

use crate::checks::{Check, Violation};
use crate::workload::{HistoryOp, Operation, Outcome, Workload};

/// The state machine command that carries out `op`.
pub fn command_of(op: &HistoryOp) -> Command {
    let key = Bytes::from(op.key.clone());
    match &op.operation {
        Operation::Get => Command::Get { key },
        Operation::Set(value) => Command::Set {
            key,
            value: Bytes::from(value.clone()),
            condition: Default::default(),
            get: false,
            expiry: Default::default(),
        },
        Operation::Append(value) => Command::Append { key, value: Bytes::from(value.clone()) },
        Operation::Incr => Command::IncrBy { key, delta: 1 },
        Operation::Cas(expected, new) => {
            Command::Cas { key, expected: expected.clone().map(Bytes::from), new: Bytes::from(new.clone()) }
        }
    }
}

fn text(bytes: &Bytes) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The Jepsen outcome of the reply to the operation whose token is `token`.
pub fn outcome_of(workload: &Workload, token: u64, reply: &Reply) -> Outcome {
    let Some(op) = workload.history.get(token as usize) else {
        // A probe: success is all that matters.
        return if reply.is_error() { Outcome::Info } else { Outcome::Ok(None) };
    };
    if let Reply::Error(message) = reply {
        // Only TRYAGAIN promises that nothing was proposed. Every other error might hide an application.
        return if message.starts_with("TRYAGAIN") { Outcome::Fail } else { Outcome::Info };
    }
    match (&op.operation, reply) {
        (Operation::Get, Reply::Bulk(value)) => Outcome::Ok(Some(text(value))),
        (Operation::Get, Reply::Nil) => Outcome::Ok(None),
        (Operation::Incr, Reply::Integer(value)) => Outcome::Ok(Some(value.to_string())),
        (Operation::Cas(..), Reply::Integer(1)) => Outcome::Ok(None),
        (Operation::Cas(..), Reply::Integer(0)) => Outcome::Fail,
        (Operation::Set(_) | Operation::Append(_), _) => Outcome::Ok(None),
        // A reply of a shape the command never gives: record it as unknown, and let the linearizability
        // check judge the rest of the history.
        _ => Outcome::Info,
    }
}

fn call_of(operation: &Operation) -> lincheck::Call {
    match operation {
        Operation::Get => lincheck::Call::Read,
        Operation::Set(value) => lincheck::Call::Write(Some(value.clone())),
        Operation::Append(value) => lincheck::Call::Append(value.clone()),
        Operation::Incr => lincheck::Call::Incr,
        Operation::Cas(expected, new) => {
            lincheck::Call::Cas { expected: expected.clone(), new: Some(new.clone()) }
        }
    }
}

/// The run's history in the checker's form: invocations and completions in the order they happened.
pub fn to_lincheck(ops: &[HistoryOp]) -> lincheck::History {
    let mut events: Vec<(u64, usize)> = Vec::with_capacity(ops.len() * 2);
    for (index, op) in ops.iter().enumerate() {
        events.push((op.invoke_sequence, index));
        if let Some(sequence) = op.completion_sequence {
            events.push((sequence, index));
        }
    }
    events.sort_unstable();
    let mut history = lincheck::History::new();
    for (sequence, index) in events {
        let op = &ops[index];
        let process = op.process as i64;
        let result = if sequence == op.invoke_sequence {
            history.invoke(process, op.key.clone(), call_of(&op.operation)).map(|_| ())
        } else {
            match &op.completion.as_ref().expect("a completion sequence comes with a completion").1 {
                Outcome::Ok(value) => history.complete_ok(process, value.clone()).map(|_| ()),
                Outcome::Fail => history.complete_fail(process).map(|_| ()),
                Outcome::Info => history.complete_info(process).map(|_| ()),
            }
        };
        result.expect("the simulator records well-formed histories: one open operation per process");
    }
    history
}

/// Decides the run's history. An undecided history fails the seed: a check that cannot decide proves
/// nothing.
pub fn check_linearizable(ops: &[HistoryOp]) -> Result<(), Violation> {
    let report = lincheck::check(&to_lincheck(ops), &lincheck::Options::default());
    match report.verdict {
        lincheck::Verdict::Linearizable => Ok(()),
        lincheck::Verdict::NotLinearizable(violation) => {
            let history = to_lincheck(ops);
            let describe = |ids: &[lincheck::OpId]| -> Vec<String> {
                ids.iter().map(|&id| history.ops()[id].to_string()).collect()
            };
            Err(Violation {
                check: Check::Linearizability,
                detail: format!(
                    "key {:?}: after {} operations (value {}), none of these can come next: {:?}",
                    violation.key,
                    violation.linearized.len(),
                    lincheck::show(&violation.value),
                    describe(&violation.stuck)
                ),
            })
        }
        lincheck::Verdict::Undecided { key, budget } => Err(Violation {
            check: Check::Linearizability,
            detail: format!("undecided: key {key:?} needs more than {budget} states"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An operation whose invocation and completion are the `at.0`-th and `at.1`-th events of the run.
    fn op(process: u64, operation: Operation, at: (u64, u64), outcome: Outcome) -> HistoryOp {
        HistoryOp {
            process,
            key: "k".into(),
            operation,
            invoked_at: at.0,
            node: 1,
            completion: Some((at.1, outcome)),
            invoke_sequence: at.0,
            completion_sequence: Some(at.1),
        }
    }

    #[test]
    fn a_stale_read_is_caught() {
        let ops = vec![
            op(0, Operation::Set("a".into()), (0, 10), Outcome::Ok(None)),
            op(1, Operation::Get, (20, 30), Outcome::Ok(None)),
        ];
        assert_eq!(check_linearizable(&ops).unwrap_err().check, Check::Linearizability);
    }

    #[test]
    fn a_timed_out_write_may_have_happened() {
        let ops = vec![
            op(0, Operation::Set("a".into()), (0, 10), Outcome::Info),
            op(1, Operation::Get, (20, 30), Outcome::Ok(Some("a".into()))),
            op(2, Operation::Incr, (40, 50), Outcome::Fail),
        ];
        check_linearizable(&ops).unwrap();
    }

    #[test]
    fn a_read_that_began_after_a_write_finished_must_see_it() {
        let ops = vec![
            op(0, Operation::Set("a".into()), (0, 10), Outcome::Ok(None)),
            op(1, Operation::Get, (11, 20), Outcome::Ok(None)),
        ];
        assert!(check_linearizable(&ops).is_err(), "the read began when the write had finished");
    }
}
