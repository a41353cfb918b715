//! A linearizability checker for key-value histories, and a reader for Jepsen-style EDN histories.
//!
//! A history is linearizable when every operation can be given a single instant between its invocation
//! and its completion such that, taken in that order, the operations obey a plain single-threaded store.
//! This crate decides that with the Wing & Gong / Lowe search (as Porcupine does), one key at a time
//! (P-compositionality: a history is linearizable iff each key's sub-history is), remembering every
//! configuration it has seen. Outcomes follow Jepsen's Knossos: `:fail` means the operation did not take
//! effect; `:info`, or no completion at all, means it may have taken effect at any moment after its
//! invocation, or never.
//!
//! The search has a budget counted in explored states, never in seconds, so a verdict does not depend on
//! the machine that computed it.
//!
//! ```
//! use lincheck::{check, Call, History, Options, Verdict};
//!
//! let mut history = History::new();
//! history.invoke(1, "k", Call::Write(Some("a".into()))).unwrap();
//! history.invoke(2, "k", Call::Read).unwrap();
//! history.complete_ok(2, Some("a".into())).unwrap(); // the write took effect before the read
//! history.complete_info(1).unwrap(); // ... even though its client timed out
//! history.invoke(3, "k", Call::Read).unwrap();
//! history.complete_ok(3, None).unwrap(); // a stale read: nothing deleted "a"
//!
//! let report = check(&history, &Options::default());
//! assert!(matches!(report.verdict, Verdict::NotLinearizable(ref v) if v.key == "k"));
//! ```

mod edn;
mod history;
pub mod model;
mod observe;
mod reader;
mod search;

use std::collections::BTreeMap;

pub use history::{show, Call, History, HistoryError, Op, OpId, Outcome, Value};
pub use reader::{parse_line, read_history, Event, EventKind, ReadError, ReadHistory, Span, MAX_LINE_BYTES};
pub use search::{KeyResult, Reason, Violation, PROGRESS_EVERY_STATES};

/// The default search budget, in explored states per key. Porcupine's histories (50 clients) need a few
/// thousand per key; memory grows by roughly 100 to 250 bytes per state explored.
pub const DEFAULT_BUDGET: u64 = 1_000_000;

/// How to check a history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// The value every key holds before the history starts (`None`: absent).
    pub initial: Value,
    /// The most states the search may explore for one key before it gives up with [`Verdict::Undecided`].
    pub budget: u64,
}

impl Default for Options {
    fn default() -> Options {
        Options { initial: None, budget: DEFAULT_BUDGET }
    }
}

/// The verdict on a whole history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// The first key (in key order) that is not linearizable.
    NotLinearizable(Violation),
    /// No key is known to be wrong, but the search for `key` (the first such key) explored `budget`
    /// states without an answer.
    Undecided {
        key: String,
        budget: u64,
    },
}

/// What the search did for one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyReport {
    pub key: String,
    /// Operations on this key, of every outcome.
    pub ops: usize,
    pub states_explored: u64,
    pub result: KeyResult,
}

/// The verdict and what led to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub verdict: Verdict,
    /// One entry per key searched, in key order. Checking stops at the first key that is not linearizable.
    pub keys: Vec<KeyReport>,
}

/// What the checker is doing, for a progress display.
#[derive(Clone, Copy, Debug)]
pub enum Progress<'a> {
    /// Starting key number `index` (from 0) of `keys`.
    KeyStarted {
        key: &'a str,
        index: usize,
        keys: usize,
        ops: usize,
    },
    /// Still searching `key`; `states` explored so far.
    Searching {
        key: &'a str,
        states: u64,
    },
    KeyDone {
        key: &'a str,
        states: u64,
        result: &'a KeyResult,
    },
}

/// Checks `history` with `options`.
pub fn check(history: &History, options: &Options) -> Report {
    check_with_progress(history, options, &mut |_| {})
}

/// Checks `history`, telling `progress` what it is doing.
pub fn check_with_progress(
    history: &History,
    options: &Options,
    progress: &mut dyn FnMut(Progress),
) -> Report {
    let mut by_key: BTreeMap<&str, Vec<OpId>> = BTreeMap::new();
    for (id, op) in history.ops().iter().enumerate() {
        by_key.entry(op.key.as_str()).or_default().push(id);
    }
    let mut keys = Vec::with_capacity(by_key.len());
    let mut undecided = None;
    let total = by_key.len();
    for (index, (key, ids)) in by_key.into_iter().enumerate() {
        progress(Progress::KeyStarted { key, index, keys: total, ops: ids.len() });
        let mut search = search::Search::new(history.ops(), &ids, &options.initial);
        let result = search.run(options.budget, &mut |states| progress(Progress::Searching { key, states }));
        progress(Progress::KeyDone { key, states: search.explored(), result: &result });
        let verdict = match &result {
            KeyResult::Linearizable => None,
            KeyResult::Undecided => {
                undecided.get_or_insert(Verdict::Undecided { key: key.to_string(), budget: options.budget });
                None
            }
            KeyResult::NotLinearizable(violation) => Some(Verdict::NotLinearizable(violation.clone())),
        };
        keys.push(KeyReport {
            key: key.to_string(),
            ops: ids.len(),
            states_explored: search.explored(),
            result,
        });
        if let Some(verdict) = verdict {
            return Report { verdict, keys };
        }
    }
    Report { verdict: undecided.unwrap_or(Verdict::Linearizable), keys }
}
