//! The key space: a persistent ordered map (so a snapshot is an O(1) clone that later writes do not
//! disturb), an index of deadlines for active expiry, and a deterministic byte count for `maxmemory`.
//!
//! # Key order and SCAN
//! Keys are ordered by a fixed 64-bit hash of their bytes, then by the bytes. That order is the same on
//! every replica and every build (the hash is written out below, not `std`'s randomized one), and it lets
//! SCAN's cursor be what Redis clients expect, an unsigned integer: the cursor is the hash where the next
//! call resumes. A call that stops inside a run of equal hashes finishes the run first, so a key that
//! exists for the whole iteration is returned at least once, whatever is added or removed meanwhile —
//! Redis's guarantee. Cursor 0 starts and ends an iteration.
//!
//! # Expiry
//! A key with a deadline is live while `now <= deadline` (Redis's `now > when` test for expired), where
//! `now` is the state machine's leader-stamped time, never a local clock. Expired keys are absent to every
//! command; the state machine also removes a bounded number of them per applied entry, oldest deadline
//! first, so memory is reclaimed deterministically.
//!
//! # Byte count
//! `used_bytes` is the sum over stored keys (expired-but-not-yet-removed ones included) of key length +
//! value length + [`ENTRY_OVERHEAD_BYTES`]. It is a function of the data alone, not of the allocator, so
//! every replica makes the same `maxmemory` decision.

use bytes::Bytes;
use imbl::{OrdMap, OrdSet};

/// Fixed per-key allowance in the byte count, standing for map nodes and bookkeeping.
pub const ENTRY_OVERHEAD_BYTES: u64 = 64;

/// Largest string value, as Redis's default `proto-max-bulk-len` (512 MB).
pub const MAX_STRING_BYTES: usize = 512 * 1024 * 1024;

/// Latest deadline Redis can represent (milliseconds in an i64). No stored key has a later one.
pub(crate) const MAX_DEADLINE_MS: u64 = i64::MAX as u64;

/// A key with its position in the key order.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub(crate) struct Key {
    /// `key_hash(bytes)`; compared first. Invariant: always equals `key_hash(&bytes)`.
    pub hash: u64,
    pub bytes: Bytes,
}

impl Key {
    pub fn new(bytes: Bytes) -> Key {
        Key { hash: key_hash(&bytes), bytes }
    }

    /// The smallest key with the given hash: where a SCAN with that cursor starts.
    fn first_with_hash(hash: u64) -> Key {
        Key { hash, bytes: Bytes::new() }
    }
}

/// FNV-1a over the bytes, then a SplitMix64 finalizer so that keys differing in one byte spread over the
/// whole range. Fixed forever: it decides the snapshot order and SCAN cursors.
pub(crate) fn key_hash(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash ^= hash >> 30;
    hash = hash.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash ^= hash >> 27;
    hash = hash.wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

/// A stored string and its optional absolute deadline (Unix milliseconds, leader time).
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) struct Value {
    pub data: Bytes,
    pub expires_at_ms: Option<u64>,
}

impl Value {
    pub fn persistent(data: Bytes) -> Value {
        Value { data, expires_at_ms: None }
    }

    pub fn is_live(&self, now_ms: u64) -> bool {
        match self.expires_at_ms {
            None => true,
            Some(deadline) => now_ms <= deadline,
        }
    }
}

fn entry_bytes(key: &Key, value: &Value) -> u64 {
    key.bytes.len() as u64 + value.data.len() as u64 + ENTRY_OVERHEAD_BYTES
}

#[derive(Clone, Default, Debug)]
pub(crate) struct Store {
    entries: OrdMap<Key, Value>,
    /// (deadline, key) for every stored key that has a deadline. Invariant: exactly those.
    deadlines: OrdSet<(u64, Key)>,
    /// Invariant: the sum of `entry_bytes` over `entries`.
    used_bytes: u64,
}

impl Store {
    pub fn used_bytes(&self) -> u64 {
        self.used_bytes
    }

    /// Stored keys, expired-but-not-yet-removed ones included.
    pub fn stored_len(&self) -> usize {
        self.entries.len()
    }

    /// The value of `key` if it is live at `now_ms`.
    pub fn get_live(&self, key: &Key, now_ms: u64) -> Option<&Value> {
        self.entries.get(key).filter(|value| value.is_live(now_ms))
    }

    /// Stores `value` under `key`, returning what was stored before (live or not).
    pub fn insert(&mut self, key: Key, value: Value) -> Option<Value> {
        let old = self.remove(&key);
        self.used_bytes += entry_bytes(&key, &value);
        if let Some(deadline) = value.expires_at_ms {
            self.deadlines.insert((deadline, key.clone()));
        }
        self.entries.insert(key, value);
        old
    }

    /// Removes `key`, returning what was stored (live or not).
    pub fn remove(&mut self, key: &Key) -> Option<Value> {
        let old = self.entries.remove(key)?;
        self.used_bytes -= entry_bytes(key, &old);
        if let Some(deadline) = old.expires_at_ms {
            let removed = self.deadlines.remove(&(deadline, key.clone()));
            debug_assert!(removed.is_some(), "deadline index lacks {key:?}");
        }
        Some(old)
    }

    /// Removes up to `limit` keys that are expired at `now_ms`, earliest deadline first.
    pub fn remove_expired(&mut self, now_ms: u64, limit: usize) -> usize {
        let mut removed = 0;
        while removed < limit {
            let Some((deadline, key)) = self.deadlines.get_min().cloned() else { break };
            if deadline >= now_ms {
                break;
            }
            self.remove(&key);
            removed += 1;
        }
        removed
    }

    /// Keys live at `now_ms`.
    pub fn live_len(&self, now_ms: u64) -> usize {
        let expired = self.deadlines.range(..(now_ms, Key::first_with_hash(0))).count();
        self.entries.len() - expired
    }

    /// One SCAN step; see the module docs. Visits about `count` live keys from `cursor` on and returns the
    /// next cursor (0 when the iteration is complete) with those that pass the filters. Expired keys are
    /// skipped without counting and never decide the cursor, so the answer does not depend on how many
    /// of them have been removed yet: a read and the same command applied through the log agree.
    pub fn scan(
        &self,
        cursor: u64,
        count: u64,
        pattern: Option<&[u8]>,
        type_matches: bool,
        now_ms: u64,
    ) -> (u64, Vec<Bytes>) {
        let mut keys = Vec::new();
        let mut last_hash = None;
        let live =
            self.entries.range(Key::first_with_hash(cursor)..).filter(|(_, value)| value.is_live(now_ms));
        for (visited, (key, _)) in live.enumerate() {
            if visited as u64 >= count && last_hash != Some(key.hash) {
                return (key.hash, keys);
            }
            last_hash = Some(key.hash);
            let wanted = type_matches
                && match pattern {
                    None => true,
                    Some(pattern) => glob_match(pattern, &key.bytes),
                };
            if wanted {
                keys.push(key.bytes.clone());
            }
        }
        (0, keys)
    }

    /// Every stored entry in key order (for snapshots).
    pub fn iter(&self) -> impl Iterator<Item = (&Key, &Value)> {
        self.entries.iter()
    }

    /// Checks the invariants that tie the three fields together; O(n), for tests and restore.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut bytes = 0;
        let mut with_deadline = 0;
        for (key, value) in &self.entries {
            if key.hash != key_hash(&key.bytes) {
                return Err(format!("key {:?} has the wrong hash", key.bytes));
            }
            bytes += entry_bytes(key, value);
            if let Some(deadline) = value.expires_at_ms {
                with_deadline += 1;
                if !self.deadlines.contains(&(deadline, key.clone())) {
                    return Err(format!("deadline index lacks key {:?}", key.bytes));
                }
            }
        }
        if with_deadline != self.deadlines.len() {
            return Err("deadline index has stale entries".into());
        }
        if bytes != self.used_bytes {
            return Err(format!("byte count {} but entries sum to {bytes}", self.used_bytes));
        }
        Ok(())
    }
}

/// Redis's glob matching (`stringmatchlen` in util.c), byte for byte: `*`, `?`, `[abc]`, `[^a-z]`, and `\`
/// escapes; matching is case-sensitive, as SCAN's is.
pub(crate) fn glob_match(pattern: &[u8], string: &[u8]) -> bool {
    let mut give_up = false;
    glob_match_from(pattern, string, &mut give_up, 0)
}

/// `give_up` is Redis's `skipLongerMatches`: once a `*` has tried every suffix and failed, no outer `*`
/// can succeed by consuming more, which keeps patterns like `a*a*a*a*b` from taking exponential time.
fn glob_match_from(p: &[u8], s: &[u8], give_up: &mut bool, nesting: u32) -> bool {
    // Redis's protection against abusive patterns.
    if nesting > 1000 {
        return false;
    }
    let (mut pi, mut si) = (0, 0);
    while pi < p.len() && si < s.len() {
        match p[pi] {
            b'*' => {
                while pi + 1 < p.len() && p[pi + 1] == b'*' {
                    pi += 1;
                }
                if pi + 1 == p.len() {
                    return true;
                }
                while si < s.len() {
                    if glob_match_from(&p[pi + 1..], &s[si..], give_up, nesting + 1) {
                        return true;
                    }
                    if *give_up {
                        return false;
                    }
                    si += 1;
                }
                *give_up = true;
                return false;
            }
            b'?' => si += 1,
            b'[' => {
                pi += 1;
                let negated = p.get(pi) == Some(&b'^');
                if negated {
                    pi += 1;
                }
                let mut matched = false;
                loop {
                    match p.get(pi) {
                        Some(b'\\') if p.len() - pi >= 2 => {
                            pi += 1;
                            matched |= p[pi] == s[si];
                        }
                        Some(b']') => break,
                        None => {
                            // An unterminated class: step back so the advance below lands at the end.
                            pi -= 1;
                            break;
                        }
                        Some(_) if p.len() - pi >= 3 && p[pi + 1] == b'-' => {
                            let (low, high) = (p[pi].min(p[pi + 2]), p[pi].max(p[pi + 2]));
                            pi += 2;
                            matched |= (low..=high).contains(&s[si]);
                        }
                        Some(&c) => matched |= c == s[si],
                    }
                    pi += 1;
                }
                if matched == negated {
                    return false;
                }
                si += 1;
            }
            b'\\' => {
                if p.len() - pi >= 2 {
                    pi += 1;
                }
                if p[pi] != s[si] {
                    return false;
                }
                si += 1;
            }
            c => {
                if c != s[si] {
                    return false;
                }
                si += 1;
            }
        }
        pi += 1;
        if si == s.len() {
            while p.get(pi) == Some(&b'*') {
                pi += 1;
            }
            break;
        }
    }
    pi == p.len() && si == s.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_like_redis() {
        let cases: &[(&str, &str, bool)] = &[
            // Redis's matcher never matches an empty string (it loops while both are non-empty); SCAN and
            // KEYS avoid the matcher for a lone `*`, and so does our parser, so an empty key still scans.
            ("*", "", false),
            ("*", "anything", true),
            ("h?llo", "hello", true),
            ("h?llo", "hllo", false),
            ("h*llo", "heeeello", true),
            ("h[ae]llo", "hallo", true),
            ("h[ae]llo", "hillo", false),
            ("h[^e]llo", "hallo", true),
            ("h[^e]llo", "hello", false),
            ("h[a-b]llo", "hbllo", true),
            ("h[b-a]llo", "hallo", true),
            ("h[a-b]llo", "hcllo", false),
            ("h\\*llo", "h*llo", true),
            ("h\\*llo", "hello", false),
            ("[\\]]", "]", true),
            ("key:*", "key:17", true),
            ("key:*", "ke", false),
            ("a*", "a", true),
            ("a**b", "ab", true),
            ("abc", "ab", false),
            ("ab", "abc", false),
            ("[abc", "a", true),
            ("[", "x", false),
            ("a*a*a*a*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false),
        ];
        for &(pattern, string, expected) in cases {
            assert_eq!(
                glob_match(pattern.as_bytes(), string.as_bytes()),
                expected,
                "{pattern:?} vs {string:?}"
            );
        }
    }

    #[test]
    fn key_hash_is_fixed_forever() {
        const KEY_HASH: u64 = 5_223_813_793_542_995_580;
        // Snapshot order and SCAN cursors depend on these values: changing the hash is a format change.
        assert_eq!(key_hash(b""), 17_665_956_581_633_026_203);
        assert_eq!(key_hash(b"key"), KEY_HASH);
        assert_ne!(key_hash(b"key:1"), key_hash(b"key:2"));
    }

    #[test]
    fn rollback_of_insert_and_remove_restores_indexes() {
        let mut store = Store::default();
        store.insert(Key::new("a".into()), Value { data: "1".into(), expires_at_ms: Some(10) });
        let before = store.clone();
        store.insert(Key::new("a".into()), Value::persistent("22".into()));
        store.remove(&Key::new("a".into()));
        store.insert(Key::new("a".into()), Value { data: "1".into(), expires_at_ms: Some(10) });
        assert_eq!(store.used_bytes(), before.used_bytes());
        assert_eq!(store.check_invariants(), Ok(()));
        assert_eq!(store.live_len(10), 1);
        assert_eq!(store.live_len(11), 0);
        assert_eq!(store.remove_expired(11, 5), 1);
        assert_eq!(store.stored_len(), 0);
    }
}
