//! What completed operations can have observed: used to drop indeterminate operations nobody can have
//! seen, and to tell whether a read's value could be made by this key's appends.

use std::collections::HashSet;
use std::hash::BuildHasherDefault;

use crate::history::{Call, Op, OpId, Outcome};
use crate::search::FxHasher;

/// Drops the indeterminate ops that no completed op can have observed, which changes no verdict.
///
/// Suppose an order uses such an op `i`, and take it out. Only the ops after `i` and before the next
/// write, cas or incr see a different value. None of them is a read (it would have seen `i`'s effect:
/// `i`'s appended text inside its value, or `i`'s written value at its start), nor a cas (its expected
/// value would show the same), nor an incr (keys with incrs are left alone). What remains there are
/// appends and blind writes, which succeed on any value, so the order without `i` is legal too. Without
/// this, every timed-out append that never happened stays a candidate at every later step, and the
/// search tries every subset of them in every order wherever it has to back up.
pub(crate) fn drop_unobservable(history: &[Op], ok: &[OpId], info: Vec<OpId>) -> Vec<OpId> {
    // What completed reads and all cas ops (a cas observes the value it matches) saw, with the time after
    // which they can no longer observe anything: their return, or +inf for an indeterminate op.
    let mut seen: Vec<(u64, &str)> = Vec::new();
    for &id in ok.iter().chain(&info) {
        let op = &history[id];
        let until = match op.outcome {
            Outcome::Ok(_) => op.completed_at.unwrap_or(u64::MAX),
            _ => u64::MAX,
        };
        match (&op.call, &op.outcome) {
            (Call::Incr, _) => return info,
            (Call::Read, Outcome::Ok(Some(value))) | (Call::Cas { expected: Some(value), .. }, _) => {
                seen.push((until, value))
            }
            _ => {}
        }
    }
    info.into_iter()
        .filter(|&id| {
            let op = &history[id];
            // Only an op that completed after `op` was invoked can have observed it.
            let mut later = seen.iter().filter(|&&(completed_at, _)| completed_at > op.invoked_at);
            match &op.call {
                Call::Append(suffix) => later.any(|&(_, value)| value.contains(suffix.as_str())),
                Call::Write(Some(value)) | Call::Cas { new: Some(value), .. } => {
                    later.any(|&(_, seen)| seen.starts_with(value.as_str()))
                }
                _ => true,
            }
        })
        .collect()
}

/// The distinct non-empty texts a key's appends add, to tell cheaply whether some text could be a run of
/// them: it must start with one and end with one.
#[derive(Default)]
pub(crate) struct AppendTexts {
    texts: HashSet<String, BuildHasherDefault<FxHasher>>,
    /// The distinct lengths of `texts`, so a lookup tries a few prefixes rather than every text.
    lengths: Vec<usize>,
}

impl AppendTexts {
    pub(crate) fn add(&mut self, text: &str) {
        if !text.is_empty() && self.texts.insert(text.to_string()) && !self.lengths.contains(&text.len()) {
            self.lengths.push(text.len());
        }
    }

    /// A necessary condition for `rest` to be made of appended texts.
    pub(crate) fn could_make(&self, rest: &str) -> bool {
        if rest.is_empty() {
            return true;
        }
        let is_text = |part: Option<&str>| part.is_some_and(|p| self.texts.contains(p));
        let starts = self.lengths.iter().any(|&n| is_text(rest.get(..n)));
        let ends = self.lengths.iter().any(|&n| rest.len() >= n && is_text(rest.get(rest.len() - n..)));
        starts && ends
    }
}
