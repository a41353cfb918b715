//! The history (EDN) reader of `raftkv check` (`lincheck::read_history`), then the checker on what it
//! read, with a small search budget so that every input finishes quickly.
//!
//! Any outcome but a panic, a hang or an unbounded allocation is fine; a verdict that a history is not
//! linearizable must be explainable.

#![no_main]

use libfuzzer_sys::fuzz_target;
use lincheck::{check, read_history, Options, Verdict};

/// Explored states per key: enough to decide small histories, small enough to stay fast.
const BUDGET: u64 = 5_000;

fuzz_target!(|data: &[u8]| {
    let Ok(read) = read_history(data) else { return };
    assert_eq!(read.spans.len(), read.history.ops().len(), "one span per operation");
    let report = check(&read.history, &Options { initial: None, budget: BUDGET });
    if let Verdict::NotLinearizable(violation) = &report.verdict {
        let _ = violation.explain(&read.history);
    }
});
