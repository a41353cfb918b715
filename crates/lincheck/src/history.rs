//! The history model: what clients asked for, when, and what they were told.
//!
//! A [`History`] is built in real-time order, one event at a time, exactly as a test harness observes it:
//! [`History::invoke`] when a client process sends an operation, then one of [`History::complete_ok`],
//! [`History::complete_fail`] or [`History::complete_info`] when it learns the outcome. An operation that
//! is never completed counts as `:info` (indeterminate), as in Jepsen's Knossos.
//!
//! Event positions are the history's own clock: only their order matters, so the simulator can feed
//! events straight from its schedule and the EDN reader straight from a file.

use std::collections::BTreeMap;
use std::fmt;

/// A register value. `None` is an absent key (EDN `nil`), which differs from `Some("")`.
/// An integer is held as its canonical decimal text, so the integer `5` and the string `"5"` are equal.
pub type Value = Option<String>;

/// Index of an operation in [`History::ops`].
pub type OpId = usize;

/// What a client asked for, on one key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Call {
    /// `:read` / `:get`: returns the whole value.
    Read,
    /// `:write` / `:put`: sets the value (`None` deletes the key).
    Write(Value),
    /// `:append`: concatenates to the value (an absent key counts as `""`).
    Append(String),
    /// `:cas [expected new]`: sets `new` if the value equals `expected`; an expected `None` matches only an
    /// absent key.
    Cas { expected: Value, new: Value },
    /// `:incr`: adds 1 to an integer value (an absent key counts as 0) and returns the new integer.
    Incr,
}

impl Call {
    /// The Jepsen `:f` name of this call.
    pub fn name(&self) -> &'static str {
        match self {
            Call::Read => "read",
            Call::Write(_) => "write",
            Call::Append(_) => "append",
            Call::Cas { .. } => "cas",
            Call::Incr => "incr",
        }
    }
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `:ok`, with the value the client was told: the value read for a read, the new integer for an incr
    /// (`None` there means "not recorded" and constrains nothing); ignored for the other calls.
    Ok(Value),
    /// `:fail`: the operation certainly did not take effect.
    Fail,
    /// `:info` or never completed: it may have taken effect at any moment after its invocation, or never.
    Info,
}

/// One client operation: its call, its outcome and its interval in the history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    /// The client process that issued it.
    pub process: i64,
    pub key: String,
    pub call: Call,
    pub outcome: Outcome,
    /// Position of the invocation event in the history.
    pub invoked_at: u64,
    /// Position of the completion event; `None` when it never completed (which counts as `:info`).
    pub completed_at: Option<u64>,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "process {} {}", self.process, self.call.name())?;
        match &self.call {
            Call::Read | Call::Incr => {}
            Call::Write(v) => write!(f, " {}", show(v))?,
            Call::Append(s) => write!(f, " {s:?}")?,
            Call::Cas { expected, new } => write!(f, " [{} {}]", show(expected), show(new))?,
        }
        match (&self.outcome, &self.call) {
            (Outcome::Ok(v), Call::Read) => write!(f, " -> {}", show(v)),
            (Outcome::Ok(Some(v)), Call::Incr) => write!(f, " -> {v}"),
            (Outcome::Ok(_), _) => write!(f, " ok"),
            (Outcome::Fail, _) => write!(f, " fail"),
            (Outcome::Info, _) if self.completed_at.is_none() => write!(f, " (never completed)"),
            (Outcome::Info, _) => write!(f, " info"),
        }
    }
}

/// Shows a value as EDN does: `nil` or a quoted string.
pub fn show(value: &Value) -> String {
    match value {
        None => "nil".to_string(),
        Some(s) => format!("{s:?}"),
    }
}

/// A history that cannot be right whatever the system did: the harness recorded it wrongly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HistoryError {
    /// A process invoked an operation while its previous one was still open.
    AlreadyOpen { process: i64, open: OpId },
    /// A completion arrived for a process with no open invocation.
    NothingOpen { process: i64 },
}

impl fmt::Display for HistoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HistoryError::AlreadyOpen { process, .. } => {
                write!(f, "process {process} invokes again while its previous operation is still open")
            }
            HistoryError::NothingOpen { process } => {
                write!(f, "process {process} completes an operation it never invoked")
            }
        }
    }
}

impl std::error::Error for HistoryError {}

/// A client history, built in real-time order.
#[derive(Clone, Debug, Default)]
pub struct History {
    ops: Vec<Op>,
    /// The operation each process has open, if any.
    /// Invariant: every value is an op whose `completed_at` is `None`.
    open: BTreeMap<i64, OpId>,
    /// The position the next event gets.
    next_event: u64,
}

impl History {
    pub fn new() -> History {
        History::default()
    }

    /// Records that `process` invoked `call` on `key`.
    pub fn invoke(&mut self, process: i64, key: impl Into<String>, call: Call) -> Result<OpId, HistoryError> {
        if let Some(&open) = self.open.get(&process) {
            return Err(HistoryError::AlreadyOpen { process, open });
        }
        let id = self.ops.len();
        let invoked_at = self.tick();
        self.ops.push(Op {
            process,
            key: key.into(),
            call,
            outcome: Outcome::Info,
            invoked_at,
            completed_at: None,
        });
        self.open.insert(process, id);
        Ok(id)
    }

    /// Records that the open operation of `process` succeeded with `value` (see [`Outcome::Ok`]).
    pub fn complete_ok(&mut self, process: i64, value: Value) -> Result<OpId, HistoryError> {
        self.complete(process, Outcome::Ok(value))
    }

    /// Records that the open operation of `process` certainly did not take effect.
    pub fn complete_fail(&mut self, process: i64) -> Result<OpId, HistoryError> {
        self.complete(process, Outcome::Fail)
    }

    /// Records that the outcome of the open operation of `process` is unknown (e.g. a timeout).
    pub fn complete_info(&mut self, process: i64) -> Result<OpId, HistoryError> {
        self.complete(process, Outcome::Info)
    }

    /// The operation `process` has open, if any.
    pub fn open_op(&self, process: i64) -> Option<OpId> {
        self.open.get(&process).copied()
    }

    /// Every operation, in order of invocation.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    fn complete(&mut self, process: i64, outcome: Outcome) -> Result<OpId, HistoryError> {
        let id = self.open.remove(&process).ok_or(HistoryError::NothingOpen { process })?;
        let at = self.tick();
        let op = &mut self.ops[id];
        debug_assert!(op.completed_at.is_none(), "open op {id} already completed");
        op.outcome = outcome;
        op.completed_at = Some(at);
        Ok(id)
    }

    fn tick(&mut self) -> u64 {
        let at = self.next_event;
        self.next_event += 1;
        at
    }
}
