//! The replicated log of one server (§5.3), in memory, with two cursors the rest of the core needs:
//! how far the log is durable on this server's disk, and how far it has been handed to the caller for
//! persisting.
//!
//! The log starts after a snapshot boundary (`snapshot_index`, `snapshot_term`); index 0 with term 0 is the
//! boundary of a log that was never compacted. Remembering the boundary's term is what lets an
//! AppendEntries whose `prev_index` is exactly the boundary pass the consistency check.
//!
//! The rules of Figure 2 ("Receiver implementation" of AppendEntries, steps 2–4) live in
//! [`Log::try_append`]: the entry at `prev_index` must have `prev_term`; entries already present are left
//! alone (a duplicated or delayed append is a no-op); a suffix is cut only where a new entry really
//! conflicts with an existing one (same index, different term).

use std::fmt;

use crate::types::{Entry, Index, Term};

/// The outcome of a rejected append: the consistency check at `prev_index` failed. The hint follows
/// etcd-io/raft: the largest index at or below `min(prev_index, last_index)` whose term is at most the
/// leader's `prev_term`, with that term. The leader skips every index between the hint and its probe in one
/// round (the paper's "fast backtracking" suggestion at the end of §5.3).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct AppendRejection {
    pub hint_index: Index,
    pub hint_term: Term,
}

/// One server's log.
#[derive(Clone, Debug)]
pub struct Log {
    /// Index of the last entry covered by the snapshot this log starts after (0: none).
    snapshot_index: Index,
    /// Term of the entry at `snapshot_index` (0 when `snapshot_index` is 0).
    snapshot_term: Term,
    /// Entries `snapshot_index + 1 ..= last_index()`, in order, without holes.
    /// Invariant: `entries[i].index == snapshot_index + 1 + i`, and terms never decrease.
    entries: Vec<Entry>,
    /// Highest index known to be on this server's disk.
    /// Invariant: `persisted_index <= last_index()`, and `snapshot_index <= persisted_index` except right
    /// after [`Log::install_snapshot`] replaced a log that did not already hold the snapshot's entries
    /// durably: until the caller reports the snapshot durable, nothing at or after it counts as durable.
    persisted_index: Index,
    /// First index not yet handed to the caller to persist; everything from here on goes into the next
    /// `Ready`. Invariant: `persisted_index < unstable_from <= last_index() + 1`.
    unstable_from: Index,
}

impl Log {
    /// A log restored from durable state: it starts after the snapshot boundary and every entry given is
    /// already on disk.
    ///
    /// # Panics
    /// If the entries do not directly follow the boundary, have holes, or have decreasing terms: recovered
    /// state that breaks the log's shape is a bug in whoever recovered it.
    pub fn restore(snapshot_index: Index, snapshot_term: Term, entries: Vec<Entry>) -> Log {
        let mut previous_term = snapshot_term;
        for (expected, entry) in (snapshot_index + 1..).zip(&entries) {
            assert!(
                entry.index == expected && entry.term >= previous_term,
                "restored log is malformed at {entry} (expected index {expected}, term >= {previous_term})"
            );
            previous_term = entry.term;
        }
        let last = snapshot_index + entries.len() as Index;
        Log { snapshot_index, snapshot_term, entries, persisted_index: last, unstable_from: last + 1 }
    }

    /// Index of the first entry held (one past the snapshot boundary).
    pub fn first_index(&self) -> Index {
        self.snapshot_index + 1
    }

    /// Index of the last entry, or the snapshot boundary if there are no entries after it.
    pub fn last_index(&self) -> Index {
        self.snapshot_index + self.entries.len() as Index
    }

    /// Term of the last entry (or of the snapshot boundary).
    pub fn last_term(&self) -> Term {
        self.entries.last().map_or(self.snapshot_term, |e| e.term)
    }

    /// The snapshot boundary `(index, term)` this log starts after.
    pub fn snapshot_boundary(&self) -> (Index, Term) {
        (self.snapshot_index, self.snapshot_term)
    }

    /// Highest index known to be durable on this server.
    pub fn persisted_index(&self) -> Index {
        self.persisted_index
    }

    /// The term of the entry at `index`: `None` if the index is beyond the log or compacted away (before
    /// the boundary); the boundary itself answers with the remembered term.
    pub fn term_at(&self, index: Index) -> Option<Term> {
        if index == self.snapshot_index {
            return Some(self.snapshot_term);
        }
        self.entry(index).map(|e| e.term)
    }

    /// The entry at `index`, if held.
    pub fn entry(&self, index: Index) -> Option<&Entry> {
        if index <= self.snapshot_index {
            return None;
        }
        self.entries.get((index - self.snapshot_index - 1) as usize)
    }

    /// True if this log holds an entry at `index` with `term` (the AppendEntries consistency check).
    pub fn matches(&self, index: Index, term: Term) -> bool {
        self.term_at(index) == Some(term)
    }

    /// §5.4.1: a candidate's log is at least as up-to-date as this one if its last term is higher, or the
    /// last terms are equal and its log is at least as long.
    pub fn is_up_to_date(&self, last_index: Index, last_term: Term) -> bool {
        last_term > self.last_term() || (last_term == self.last_term() && last_index >= self.last_index())
    }

    /// Entries `from ..= last_index()`, at most `max_entries` of them and at most `max_bytes` (but always
    /// at least one if any exist, so a single large entry still makes progress).
    pub fn entries_from(&self, from: Index, max_entries: usize, max_bytes: usize) -> &[Entry] {
        if from > self.last_index() || from <= self.snapshot_index {
            return &[];
        }
        let start = (from - self.snapshot_index - 1) as usize;
        let available = &self.entries[start..];
        let mut bytes = 0;
        let mut count = 0;
        for entry in available.iter().take(max_entries) {
            bytes += entry.size_bytes();
            if count > 0 && bytes > max_bytes {
                break;
            }
            count += 1;
        }
        &available[..count]
    }

    /// Every entry in `from ..= to` (both inclusive, clamped to what is held).
    pub fn slice(&self, from: Index, to: Index) -> &[Entry] {
        let from = from.max(self.first_index());
        let to = to.min(self.last_index());
        if from > to {
            return &[];
        }
        let start = (from - self.snapshot_index - 1) as usize;
        let end = (to - self.snapshot_index) as usize;
        &self.entries[start..end]
    }

    /// Appends a new entry at the end (a leader's own proposal). Returns its index.
    pub fn append_new(&mut self, term: Term, payload: crate::types::EntryPayload) -> Index {
        assert!(term >= self.last_term(), "leader appends term {term} after term {}", self.last_term());
        let index = self.last_index() + 1;
        self.entries.push(Entry { index, term, payload });
        index
    }

    /// Figure 2, AppendEntries receiver, steps 2–4. On success returns the index of the last entry of
    /// this append (`prev_index + entries.len()`): the prefix up to it now matches the leader's log.
    ///
    /// `committed` is the caller's commit index: a committed entry can never conflict with a legitimate
    /// leader (Leader Completeness, §5.4.3), so a conflict at or below it is a broken invariant.
    ///
    /// # Panics
    /// If the append would overwrite a committed entry.
    pub fn try_append(
        &mut self,
        prev_index: Index,
        prev_term: Term,
        entries: &[Entry],
        committed: Index,
    ) -> Result<Index, AppendRejection> {
        if !self.matches(prev_index, prev_term) {
            return Err(self.rejection_hint(prev_index, prev_term));
        }
        let last_new = prev_index + entries.len() as Index;
        // Step 3: find the first entry that is not already present with the same term.
        let conflict = entries.iter().find(|e| self.term_at(e.index) != Some(e.term));
        let Some(first_new) = conflict else {
            return Ok(last_new); // everything already there: idempotent re-append
        };
        if first_new.index <= self.last_index() {
            assert!(
                first_new.index > committed,
                "append conflicts with committed entry at {} (commit {committed}, log {self})",
                first_new.index
            );
            self.truncate_from(first_new.index);
        }
        let skip = (first_new.index - prev_index - 1) as usize;
        self.entries.extend_from_slice(&entries[skip..]);
        debug_assert_eq!(self.last_index().max(last_new), self.last_index());
        Ok(last_new)
    }

    /// Removes every entry from `index` on, and forgets that any of them were durable.
    fn truncate_from(&mut self, index: Index) {
        debug_assert!(index > self.snapshot_index && index <= self.last_index());
        self.entries.truncate((index - self.snapshot_index - 1) as usize);
        self.persisted_index = self.persisted_index.min(index - 1);
        self.unstable_from = self.unstable_from.min(index);
    }

    /// The hint a follower sends with a rejection (see [`AppendRejection`]).
    fn rejection_hint(&self, prev_index: Index, prev_term: Term) -> AppendRejection {
        let hint_index = self.last_index_with_term_at_most(prev_index.min(self.last_index()), prev_term);
        AppendRejection { hint_index, hint_term: self.term_at(hint_index).unwrap_or(0) }
    }

    /// The largest index `<= index` whose term is `<= term` (the boundary if none is held). Used by the
    /// follower to build a hint and by the leader to jump over a whole conflicting term at once.
    pub fn last_index_with_term_at_most(&self, index: Index, term: Term) -> Index {
        let mut index = index.min(self.last_index());
        while index > self.snapshot_index {
            match self.term_at(index) {
                Some(t) if t <= term => return index,
                _ => index -= 1,
            }
        }
        self.snapshot_index
    }

    /// Compaction (§7): drops every entry up to `index`, which becomes the new boundary; its term is
    /// remembered so that appends right after it still pass the consistency check. Returns false (and
    /// changes nothing) if `index` is at or below the current boundary.
    ///
    /// # Panics
    /// If `index` is beyond what is durable: only entries the state machine applied (so durable) may be
    /// compacted.
    pub fn compact_to(&mut self, index: Index) -> bool {
        if index <= self.snapshot_index {
            return false;
        }
        assert!(index <= self.persisted_index, "compacting to {index} beyond the durable log ({self})");
        let term = self.term_at(index).expect("a durable index above the boundary is held");
        self.entries.drain(..(index - self.snapshot_index) as usize);
        self.snapshot_index = index;
        self.snapshot_term = term;
        true
    }

    /// Installs a snapshot received from the leader (§7, "InstallSnapshot RPC, receiver implementation",
    /// steps 6–7): if this log holds an entry at `index` with `term`, the entries after it are kept (they
    /// may be newer than the snapshot); otherwise the whole log is discarded. Returns whether entries were
    /// kept.
    ///
    /// Durability: kept entries that were durable stay durable (the old log on disk matches the snapshot up
    /// to `index`, by Log Matching). Otherwise nothing at or after the new boundary counts as durable
    /// until the caller reports a mark covering it, which it does only once the snapshot is on disk.
    pub fn install_snapshot(&mut self, index: Index, term: Term) -> bool {
        debug_assert!(index > self.snapshot_index, "installing {index}@{term} at or below {self}");
        let keep = self.matches(index, term);
        if keep {
            let drop = ((index - self.snapshot_index) as usize).min(self.entries.len());
            self.entries.drain(..drop);
        } else {
            self.entries.clear();
            self.persisted_index = self.persisted_index.min(index - 1);
        }
        self.snapshot_index = index;
        self.snapshot_term = term;
        self.unstable_from = self.unstable_from.max(index + 1);
        keep
    }

    /// Entries not yet handed to the caller for persisting; afterwards they count as handed out.
    pub fn take_unstable(&mut self) -> Vec<Entry> {
        let entries = self.slice(self.unstable_from, self.last_index()).to_vec();
        self.unstable_from = self.last_index() + 1;
        entries
    }

    /// True if some entries wait to be handed out for persisting.
    pub fn has_unstable(&self) -> bool {
        self.unstable_from <= self.last_index()
    }

    /// The caller reports that everything up to `(index, term)` is durable. Ignored when the log has
    /// since changed at that index (a later append truncated it; that newer suffix is reported by a later
    /// mark), which is what makes asynchronous persistence safe.
    pub fn persisted_to(&mut self, index: Index, term: Term) {
        if index > self.persisted_index && index < self.unstable_from && self.matches(index, term) {
            self.persisted_index = index;
        }
    }
}

impl fmt::Display for Log {
    /// `[1@1 2@1 3@2]`, with `(5@3)` first if the log starts after a snapshot boundary.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.snapshot_index > 0 {
            write!(f, "({}@{}) ", self.snapshot_index, self.snapshot_term)?;
        }
        write!(f, "[")?;
        for (i, entry) in self.entries.iter().enumerate() {
            if i > 0 {
                write!(f, " ")?;
            }
            write!(f, "{entry}")?;
        }
        write!(f, "]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::EntryPayload;

    fn log_of_terms(terms: &[Term]) -> Log {
        let entries = terms
            .iter()
            .enumerate()
            .map(|(i, &term)| Entry { index: i as Index + 1, term, payload: EntryPayload::Noop })
            .collect();
        Log::restore(0, 0, entries)
    }

    fn entry(index: Index, term: Term) -> Entry {
        Entry { index, term, payload: EntryPayload::Noop }
    }

    #[test]
    fn empty_log_has_index_zero_term_zero() {
        let log = Log::restore(0, 0, vec![]);
        assert_eq!((log.last_index(), log.last_term()), (0, 0));
        assert!(log.matches(0, 0));
        assert_eq!(log.term_at(1), None);
    }

    #[test]
    fn re_append_is_idempotent_and_empty_append_changes_nothing() {
        let mut log = log_of_terms(&[1, 1, 2]);
        assert_eq!(log.try_append(1, 1, &[entry(2, 1)], 0), Ok(2));
        assert_eq!(log.last_index(), 3, "a shorter duplicate must not truncate the suffix");
        assert_eq!(log.try_append(3, 2, &[], 0), Ok(3));
        assert_eq!(log.to_string(), "[1@1· 2@1· 3@2·]");
    }

    #[test]
    fn truncates_only_at_a_real_conflict() {
        let mut log = log_of_terms(&[1, 1, 2, 2]);
        assert_eq!(log.try_append(1, 1, &[entry(2, 1), entry(3, 3)], 0), Ok(3));
        assert_eq!(log.to_string(), "[1@1· 2@1· 3@3·]");
        assert_eq!(log.persisted_index(), 2, "truncated entries are no longer durable");
    }

    #[test]
    fn a_log_may_start_after_a_snapshot_boundary() {
        let mut log = Log::restore(5, 3, vec![entry(6, 3)]);
        assert_eq!(log.first_index(), 6);
        assert!(log.matches(5, 3));
        assert_eq!(log.term_at(4), None);
        assert_eq!(log.try_append(5, 3, &[entry(6, 3), entry(7, 4)], 5), Ok(7));
        assert_eq!(log.to_string(), "(5@3) [6@3· 7@4·]");
    }

    #[test]
    fn compaction_moves_the_boundary_and_remembers_its_term() {
        let mut log = log_of_terms(&[1, 1, 2, 2, 3]);
        assert!(log.compact_to(3));
        assert_eq!(log.to_string(), "(3@2) [4@2· 5@3·]");
        assert!(log.matches(3, 2), "an append right after the boundary still matches");
        assert_eq!((log.term_at(2), log.entry(3)), (None, None));
        assert!(!log.compact_to(2) && !log.compact_to(3), "at or below the boundary: no-op");
        assert_eq!(log.try_append(3, 2, &[entry(4, 2), entry(5, 3), entry(6, 3)], 3), Ok(6));
        assert_eq!(log.last_index(), 6);
    }

    #[test]
    fn installing_a_matching_snapshot_keeps_the_suffix_and_its_durability() {
        let mut log = log_of_terms(&[1, 1, 2, 2, 3]);
        assert!(log.install_snapshot(3, 2));
        assert_eq!(log.to_string(), "(3@2) [4@2· 5@3·]");
        assert_eq!(log.persisted_index(), 5);
    }

    #[test]
    fn installing_a_conflicting_snapshot_discards_the_log_until_the_install_is_durable() {
        let mut log = log_of_terms(&[1, 1, 3, 3]);
        assert!(!log.install_snapshot(3, 2));
        assert_eq!(log.to_string(), "(3@2) []");
        assert_eq!(log.persisted_index(), 2, "nothing at or after the new boundary is durable yet");
        log.persisted_to(4, 3);
        assert_eq!(log.persisted_index(), 2, "a mark of the old log proves nothing");
        log.persisted_to(3, 2);
        assert_eq!(log.persisted_index(), 3);
        assert!(!log.has_unstable());
    }

    #[test]
    fn hint_skips_a_whole_conflicting_term() {
        // Figure 7 (f) against prev (10, 6): the follower's last index at or below 10 with term <= 6 is 10.
        let mut f = log_of_terms(&[1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3]);
        assert_eq!(
            f.try_append(10, 6, &[entry(11, 8)], 0),
            Err(AppendRejection { hint_index: 10, hint_term: 3 })
        );
        let leader = log_of_terms(&[1, 1, 1, 4, 4, 5, 5, 6, 6, 6]);
        assert_eq!(leader.last_index_with_term_at_most(10, 3), 3);
    }

    #[test]
    fn persisted_marks_for_truncated_entries_are_ignored() {
        let mut log = log_of_terms(&[]);
        log.try_append(0, 0, &[entry(1, 1), entry(2, 1)], 0).unwrap();
        assert_eq!(log.take_unstable().len(), 2);
        log.try_append(1, 1, &[entry(2, 2)], 0).unwrap();
        log.persisted_to(2, 1);
        assert_eq!(log.persisted_index(), 0);
        assert_eq!(log.take_unstable(), vec![entry(2, 2)]);
        log.persisted_to(2, 2);
        assert_eq!(log.persisted_index(), 2);
    }
}
