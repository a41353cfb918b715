//! The search for one key: Wing & Gong's algorithm as improved by Lowe ("Testing for linearizability",
//! 2017) and used by Porcupine's `checker.go`, with indeterminate operations made optional.
//!
//! Completed operations (`:ok`) sit in a doubly linked list of call and return entries sorted by time.
//! The operations whose call entry comes before the first return entry are the ones that may take effect
//! next: the first return entry is the *barrier*, the earliest-returning operation not yet linearized,
//! and nothing invoked after it returned may precede it. The search tries each such operation against
//! the model; one that fits is *lifted* out of the list and pushed on a stack, and the scan starts again
//! from the head. When the scan reaches the barrier and nothing fits, the last choice is undone. The
//! history is linearizable when every `:ok` operation has been lifted.
//!
//! Indeterminate operations (`:info`, or never completed) have no return: they never form a barrier,
//! they are never required, and they sit in a second list sorted by invocation. An indeterminate
//! operation may be tried once the scan has reached the barrier, if it was invoked before the barrier
//! returned. Trying completed operations first finds the common answer ("it never happened, or it
//! happened just before someone saw it") without wandering.
//!
//! A configuration is (completed ops lifted, indeterminate ops lifted, value, whether the last op lifted
//! was indeterminate). Every configuration reached is remembered, and a new one is skipped when a
//! remembered one *dominates* it: same completed set, same value, a subset of its indeterminate ops, and
//! no stricter rule below. Whatever the dominated one could still do, the dominating one can too, because
//! indeterminate operations are optional and impose no order on others. Two more rules cut symmetric
//! work, each sound because any linearization can be rewritten into one that obeys it:
//! - never lift a blind write (`write`/`put`) right after an indeterminate op: that op would be
//!   overwritten unseen, and dropping it gives the same value with more options left;
//! - of indeterminate ops with identical calls, lift them in order of invocation: swapping one for an
//!   earlier-invoked twin changes nothing (an earlier invocation only loosens its constraints).
//!
//! The flag "last op lifted was indeterminate" is part of the configuration because of the first rule.
//!
//! Three cheaper arguments cut the rest, each sound (the brute-force property test checks them all):
//! indeterminate ops that no read or cas can have observed are dropped (`drop_unobservable`); a read no
//! write can explain is reported before any search (`stale_read`); and after each lift, the next few
//! reads must still be reachable from the value (`read_that_cannot_follow`).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;

use crate::history::{Call, History, Op, OpId, Outcome, Value};
use crate::model;
use crate::observe::{drop_unobservable, AppendTexts};

const NIL: u32 = u32::MAX;
/// Sentinel heads of the two lists.
const MAIN_HEAD: u32 = 0;
const INFO_HEAD: u32 = 1;
/// How far `read_that_cannot_follow` looks ahead: this many reads, within this many list entries.
const LOOKAHEAD_READS: u32 = 4;
const LOOKAHEAD_ENTRIES: u32 = 256;
/// How often (in explored states, a power of two) the search reports progress.
pub const PROGRESS_EVERY_STATES: u64 = 1 << 17;

/// How the search for one key ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyResult {
    Linearizable,
    /// No order exists.
    NotLinearizable(Violation),
    /// The budget of explored states ran out first.
    Undecided,
}

/// Why a key's history is not linearizable, with the operations that cannot be ordered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub key: String,
    pub reason: Reason,
    /// The longest order the search found (history op ids, completed and indeterminate alike); empty for
    /// [`Reason::StaleRead`].
    pub linearized: Vec<OpId>,
    /// The value after `linearized`.
    pub value: Value,
    /// The operations that cannot be ordered, in the order [`Reason`] describes.
    pub stuck: Vec<OpId>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// `stuck[0]` is a read whose value no write can explain: every write (or the initial value) it could
    /// build on is followed, entirely before the read began, by the write `stuck[1]`. `stuck[2]`, when
    /// present, is the latest of the writes it could have built on (absent when that is the initial
    /// value).
    StaleRead,
    /// `stuck[0]` is a read of a value that neither the initial value nor any write, cas or incr invoked
    /// before the read returned can have started.
    NeverWritten,
    /// After `linearized` (the longest order found), the operations in `stuck` cannot be ordered: either
    /// they are the completed operations that may come next in real time, none of which fits `value`, or
    /// `stuck` is one read whose value nothing still to come can turn `value` into.
    NothingFits,
}

impl Violation {
    /// A few lines a person can read: the key, the reason, the end of the longest order found and the
    /// operations that cannot be ordered, each shown with [`Op`]'s `Display` and its op id. (`raftkv check`
    /// prints the same with line numbers.)
    pub fn explain(&self, history: &History) -> String {
        use std::fmt::Write;
        let show = |id: OpId| match history.ops().get(id) {
            Some(op) => format!("op {id}: {op}"),
            None => format!("op {id}: (not in this history)"),
        };
        let mut out = format!("key {:?}: {}\n", self.key, self.reason);
        let n = self.linearized.len();
        if n > 0 {
            let _ = writeln!(out, "  longest order found: {n} ops, ending with");
            for &id in &self.linearized[n.saturating_sub(5)..] {
                let _ = writeln!(out, "    {}", show(id));
            }
        }
        let _ = writeln!(out, "  value then: {}", crate::history::show(&self.value));
        let _ = writeln!(out, "  cannot be ordered:");
        for &id in &self.stuck {
            let _ = writeln!(out, "    {}", show(id));
        }
        out
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Reason::StaleRead => "a read returns a value that was already overwritten before it began",
            Reason::NeverWritten => "a read returns a value that nothing before it can have written",
            Reason::NothingFits => "the operations below cannot follow the longest order found",
        })
    }
}

/// One operation of this key, compiled for the search.
struct KeyOp {
    id: OpId,
    info: bool,
    /// A write or put: its value after does not depend on the value before.
    blind: bool,
    invoked_at: u64,
    /// For completed ops only.
    completed_at: u64,
    step: Step,
    /// For indeterminate ops: the previous indeterminate op (in invocation order) with the same call.
    twin_before: u32,
    /// Length of the text an append adds (0 for other ops).
    append_bytes: u64,
}

/// The model step with interned values, so that the common steps are integer comparisons.
enum Step {
    /// A read that must see this value.
    Read {
        seen: u32,
    },
    Write {
        to: u32,
    },
    Cas {
        expected: u32,
        to: u32,
    },
    /// Append and incr: computed by the model once per (value, op) and remembered.
    Computed,
}

struct Frame {
    op: u32,
    prev_state: u32,
    prev_flag: bool,
    prev_low: u32,
    prev_high: u32,
    prev_next_mutator: u32,
    /// The barrier's return time while this op was tried (to resume the indeterminate scan).
    barrier: u64,
}

enum Cursor {
    Main(u32),
    Info(u32, u64),
}

/// A remembered configuration; its bit words live in `Memo::words` from `offset`.
struct Seen {
    state: u32,
    flag: bool,
    start_word: u32,
    tail_len: u32,
    offset: usize,
    next: u32,
}

/// Remembered configurations, chained by a hash of (completed set, value) so that all configurations
/// that might dominate a new one are on one chain.
#[derive(Default)]
struct Memo {
    heads: HashMap<u64, u32, BuildHasherDefault<IdentityHasher>>,
    seen: Vec<Seen>,
    words: Vec<u64>,
}

#[derive(Default)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A fast multiplicative hasher (FxHash) for the search's small integer and string keys; `std`'s SipHash
/// guards against hostile keys, which a history cannot choose here.
#[derive(Default)]
pub(crate) struct FxHasher(u64);

impl Hasher for FxHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
    fn write_u8(&mut self, n: u8) {
        self.write_u64(u64::from(n));
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

fn mix(mut x: u64) -> u64 {
    // splitmix64's finaliser: a fixed, well-spread hash so runs are reproducible.
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Interned register values. Id 0 is the absent value.
struct Values {
    all: Vec<Option<Rc<str>>>,
    ids: FxMap<Rc<str>, u32>,
}

impl Values {
    const ABSENT: u32 = 0;

    fn new() -> Values {
        Values { all: vec![None], ids: FxMap::default() }
    }

    fn intern(&mut self, value: &Value) -> u32 {
        match value {
            None => Values::ABSENT,
            Some(text) => self.intern_str(text),
        }
    }

    fn intern_str(&mut self, text: &str) -> u32 {
        if let Some(&id) = self.ids.get(text) {
            return id;
        }
        let id = u32::try_from(self.all.len()).expect("fewer than 2^32 distinct values");
        let text: Rc<str> = Rc::from(text);
        self.all.push(Some(text.clone()));
        self.ids.insert(text, id);
        id
    }

    fn get(&self, id: u32) -> Option<&str> {
        self.all[id as usize].as_deref()
    }

    fn value(&self, id: u32) -> Value {
        self.get(id).map(str::to_string)
    }
}

/// The search state for one key.
pub struct Search<'h> {
    history: &'h [Op],
    ops: Vec<KeyOp>,
    n_ok: u32,
    values: Values,
    computed: FxMap<(u32, u32), Option<u32>>,
    next: Vec<u32>,
    prev: Vec<u32>,
    /// For each list node, the key op it belongs to.
    node_op: Vec<u32>,
    node_is_call: Vec<bool>,
    /// For each key op: its call node (completed ops) or its only node (indeterminate ops), and return node.
    call_node: Vec<u32>,
    return_node: Vec<u32>,
    ok_bits: Vec<u64>,
    info_bits: Vec<u64>,
    /// Zobrist hash of `ok_bits`.
    ok_hash: u64,
    /// Lowest completed op not lifted; highest completed op lifted (or NIL when none).
    low: u32,
    high: u32,
    state: u32,
    flag: bool,
    ok_left: u32,
    stack: Vec<Frame>,
    memo: Memo,
    explored: u64,
    /// The longest order found (most completed ops lifted) and the value after it, for the report.
    best: (Vec<u32>, u32),
    best_ok: u32,
    /// The read that the look ahead found could never follow `best`, if that is why the search backed up.
    best_blocker: Option<u32>,
    /// Ops that may change the value other than by appending (write, cas, incr; completed or not), in
    /// order of invocation, and the position in it of the first one not lifted.
    mutators: Vec<u32>,
    next_mutator: u32,
    /// Whether a value (first) is a prefix of another (second), by interned id.
    is_prefix: FxMap<(u32, u32), bool>,
    /// The texts this key's appends add.
    append_texts: AppendTexts,
    /// Whether some op of this key appends, and the memo of `can_grow_into` when none does.
    has_appends: bool,
    grows_into: FxMap<(u32, u32), bool>,
    /// Appends by invocation time, with the total bytes of all appends invoked up to each; and the total
    /// bytes of the appends lifted now. Together they bound how much the value can still grow.
    appended_by: Vec<(u64, u64)>,
    lifted_append_bytes: u64,
}

impl<'h> Search<'h> {
    /// Prepares the search over the operations `ids` of one key (all of `history`'s ops with that key).
    pub fn new(history: &'h [Op], ids: &[OpId], initial: &Value) -> Search<'h> {
        let mut values = Values::new();
        let initial_state = values.intern(initial);
        let mut ok = Vec::new();
        let mut info = Vec::new();
        for &id in ids {
            let op = &history[id];
            match (&op.outcome, &op.call) {
                // A failed op did not happen; an indeterminate read changes nothing and promises nothing.
                (Outcome::Fail, _) | (Outcome::Info, Call::Read) => {}
                (Outcome::Ok(_), _) => ok.push(id),
                (Outcome::Info, _) => info.push(id),
            }
        }
        let info = drop_unobservable(history, &ok, info);
        let n_ok = u32::try_from(ok.len()).expect("fewer than 2^32 ops per key");
        let mut ops: Vec<KeyOp> = Vec::with_capacity(ok.len() + info.len());
        let mut last_twin: HashMap<&Call, u32> = HashMap::new();
        for (index, &id) in ok.iter().chain(info.iter()).enumerate() {
            let op = &history[id];
            let step = match (&op.call, &op.outcome) {
                (Call::Read, Outcome::Ok(seen)) => Step::Read { seen: values.intern(seen) },
                (Call::Write(v), _) => Step::Write { to: values.intern(v) },
                (Call::Cas { expected, new }, _) => {
                    Step::Cas { expected: values.intern(expected), to: values.intern(new) }
                }
                _ => Step::Computed,
            };
            let is_info = index >= ok.len();
            let mut twin_before = NIL;
            if is_info {
                let index = index as u32;
                twin_before = last_twin.insert(&op.call, index).unwrap_or(NIL);
            }
            ops.push(KeyOp {
                id,
                info: is_info,
                blind: matches!(op.call, Call::Write(_)),
                invoked_at: op.invoked_at,
                // An indeterminate op's return is +inf: it may take effect however late.
                completed_at: if is_info { u64::MAX } else { op.completed_at.unwrap_or(u64::MAX) },
                step,
                twin_before,
                append_bytes: match &op.call {
                    Call::Append(suffix) => suffix.len() as u64,
                    _ => 0,
                },
            });
        }

        // Nodes: two heads, then the completed ops' call and return entries by time, then the
        // indeterminate ops by invocation.
        let mut entries: Vec<(u64, u32, bool)> = Vec::with_capacity(2 * ok.len());
        for k in 0..n_ok {
            let op = &ops[k as usize];
            entries.push((op.invoked_at, k, true));
            entries.push((op.completed_at, k, false));
        }
        entries.sort_unstable();
        let n_nodes = 2 + entries.len() + info.len();
        let mut search = Search {
            history,
            n_ok,
            values,
            computed: FxMap::default(),
            next: vec![NIL; n_nodes],
            prev: vec![NIL; n_nodes],
            node_op: vec![NIL; n_nodes],
            node_is_call: vec![false; n_nodes],
            call_node: vec![NIL; ops.len()],
            return_node: vec![NIL; ops.len()],
            ok_bits: vec![0; (ok.len()).div_ceil(64)],
            info_bits: vec![0; info.len().div_ceil(64)],
            ok_hash: 0,
            low: 0,
            high: NIL,
            state: initial_state,
            flag: false,
            ok_left: n_ok,
            stack: Vec::new(),
            memo: Memo::default(),
            explored: 0,
            best: (Vec::new(), initial_state),
            best_ok: 0,
            best_blocker: None,
            mutators: Vec::new(),
            next_mutator: 0,
            is_prefix: FxMap::default(),
            has_appends: false,
            append_texts: AppendTexts::default(),
            grows_into: FxMap::default(),
            appended_by: Vec::new(),
            lifted_append_bytes: 0,
            ops,
        };
        let mut mutators: Vec<u32> = (0..search.ops.len() as u32)
            .filter(|&k| {
                let call = &history[search.ops[k as usize].id].call;
                matches!(call, Call::Write(_) | Call::Cas { .. } | Call::Incr)
            })
            .collect();
        mutators.sort_by_key(|&k| search.ops[k as usize].invoked_at);
        search.mutators = mutators;
        search.has_appends = search.ops.iter().any(|op| matches!(history[op.id].call, Call::Append(_)));
        for op in &search.ops {
            if let Call::Append(text) = &history[op.id].call {
                search.append_texts.add(text);
            }
        }
        let mut appends: Vec<(u64, u64)> = search
            .ops
            .iter()
            .filter(|op| op.append_bytes > 0)
            .map(|op| (op.invoked_at, op.append_bytes))
            .collect();
        appends.sort_unstable();
        let mut total = 0;
        search.appended_by = appends
            .into_iter()
            .map(|(at, bytes)| {
                (at, {
                    total += bytes;
                    total
                })
            })
            .collect();
        let mut node = 2u32;
        let mut last = MAIN_HEAD;
        for &(_, k, is_call) in &entries {
            search.link(last, node, k, is_call);
            if is_call {
                search.call_node[k as usize] = node;
            } else {
                search.return_node[k as usize] = node;
            }
            last = node;
            node += 1;
        }
        last = INFO_HEAD;
        for k in n_ok..search.ops.len() as u32 {
            search.link(last, node, k, true);
            search.call_node[k as usize] = node;
            last = node;
            node += 1;
        }
        search
    }

    fn link(&mut self, after: u32, node: u32, k: u32, is_call: bool) {
        self.next[after as usize] = node;
        self.prev[node as usize] = after;
        self.node_op[node as usize] = k;
        self.node_is_call[node as usize] = is_call;
    }

    fn lift(&mut self, node: u32) {
        let (p, n) = (self.prev[node as usize], self.next[node as usize]);
        self.next[p as usize] = n;
        if n != NIL {
            self.prev[n as usize] = p;
        }
    }

    /// Undoes `lift(node)`; lifts must be undone in reverse order (dancing links).
    fn unlift(&mut self, node: u32) {
        let (p, n) = (self.prev[node as usize], self.next[node as usize]);
        self.next[p as usize] = node;
        if n != NIL {
            self.prev[n as usize] = node;
        }
    }

    /// How many states the search has explored so far.
    pub fn explored(&self) -> u64 {
        self.explored
    }

    /// Runs the search with a budget of explored states; `progress` is called every
    /// [`PROGRESS_EVERY_STATES`] states with the number explored so far.
    pub fn run(&mut self, budget: u64, progress: &mut dyn FnMut(u64)) -> KeyResult {
        if let Some(stale) = self.stale_read() {
            return stale;
        }
        let root = self.remember(self.state, false);
        debug_assert!(root, "the root configuration is the first one seen");
        let mut cursor = Cursor::Main(self.next[MAIN_HEAD as usize]);
        loop {
            if self.ok_left == 0 {
                return KeyResult::Linearizable;
            }
            cursor = match cursor {
                Cursor::Main(node) => {
                    assert_ne!(node, NIL, "a return entry remains while completed ops remain");
                    let k = self.node_op[node as usize];
                    if !self.node_is_call[node as usize] {
                        Cursor::Info(self.next[INFO_HEAD as usize], self.ops[k as usize].completed_at)
                    } else {
                        match self.try_lift(k, 0, budget, progress) {
                            None => return KeyResult::Undecided,
                            Some(true) => self.after_lift(),
                            Some(false) => Cursor::Main(self.next[node as usize]),
                        }
                    }
                }
                Cursor::Info(node, barrier) => {
                    if node == NIL || self.ops[self.node_op[node as usize] as usize].invoked_at > barrier {
                        match self.backtrack() {
                            None => return self.not_linearizable(),
                            Some(resume) => resume,
                        }
                    } else {
                        match self.try_lift(self.node_op[node as usize], barrier, budget, progress) {
                            None => return KeyResult::Undecided,
                            Some(true) => self.after_lift(),
                            Some(false) => Cursor::Info(self.next[node as usize], barrier),
                        }
                    }
                }
            };
        }
    }

    /// Tries to make op `k` take effect now. Returns whether it did, or `None` when the budget ran out.
    fn try_lift(&mut self, k: u32, barrier: u64, budget: u64, progress: &mut dyn FnMut(u64)) -> Option<bool> {
        let op = &self.ops[k as usize];
        if self.flag && op.blind {
            return Some(false);
        }
        if op.info && op.twin_before != NIL && !self.is_lifted(op.twin_before) {
            return Some(false);
        }
        let is_info = op.info;
        let Some(state) = self.apply(k) else { return Some(false) };
        let (prev_low, prev_high, prev_next_mutator) = (self.low, self.high, self.next_mutator);
        self.set_bit(k, true);
        if !is_info {
            if self.high == NIL || k > self.high {
                self.high = k;
            }
            while self.low < self.n_ok && self.is_lifted(self.low) {
                self.low += 1;
            }
        }
        if !self.remember(state, is_info) {
            self.set_bit(k, false);
            (self.low, self.high) = (prev_low, prev_high);
            return Some(false);
        }
        if self.explored >= budget {
            return None;
        }
        self.explored += 1;
        if self.explored & (PROGRESS_EVERY_STATES - 1) == 0 {
            progress(self.explored);
        }
        self.stack.push(Frame {
            op: k,
            prev_state: self.state,
            prev_flag: self.flag,
            prev_low,
            prev_high,
            prev_next_mutator,
            barrier,
        });
        while self.mutators.get(self.next_mutator as usize).is_some_and(|&m| self.is_lifted(m)) {
            self.next_mutator += 1;
        }
        self.state = state;
        self.flag = is_info;
        self.lifted_append_bytes += self.ops[k as usize].append_bytes;
        if is_info {
            self.lift(self.call_node[k as usize]);
        } else {
            self.lift(self.call_node[k as usize]);
            self.lift(self.return_node[k as usize]);
            self.ok_left -= 1;
            if self.stack_ok_count() > self.best_ok {
                self.best_ok = self.stack_ok_count();
                self.best = (self.stack.iter().map(|f| f.op).collect(), self.state);
                self.best_blocker = None;
            }
        }
        Some(true)
    }

    /// Where the scan goes after a lift: back to the head, unless the new configuration is a dead end.
    fn after_lift(&mut self) -> Cursor {
        if let Some(read) = self.read_that_cannot_follow() {
            // For the report, an order that is known to be blocked by a read beats one of the same length
            // that is not: "this read cannot follow" says more than "nothing fits next".
            let ok_count = self.stack_ok_count();
            if ok_count > self.best_ok || (ok_count == self.best_ok && self.best_blocker.is_none()) {
                self.best_ok = ok_count;
                self.best = (self.stack.iter().map(|f| f.op).collect(), self.state);
                self.best_blocker = Some(read);
            }
            return self.backtrack().expect("a lift was just pushed");
        }
        Cursor::Main(self.next[MAIN_HEAD as usize])
    }

    /// A cheap look ahead. Between now and any read not yet lifted, the value only grows (by appends, or
    /// on a key without appends by incrs; see `can_grow_into`), or is replaced by a write, cas or incr
    /// not yet lifted that was invoked before the read returned. So such a read must see a value that the
    /// current value, or the value such an op sets, can grow into: when it sees neither, no order can
    /// follow from here. The look ahead covers the next [`LOOKAHEAD_READS`] reads within
    /// [`LOOKAHEAD_ENTRIES`] list entries, in and beyond the reads that could come next. (Porcupine's
    /// histories read long append chains; and without it, timed-out incrs would be applied in every
    /// number wherever the search backs up.) Returns the read that cannot follow.
    fn read_that_cannot_follow(&mut self) -> Option<u32> {
        let mut node = self.next[MAIN_HEAD as usize];
        let (mut reads, mut entries) = (0, 0);
        while node != NIL && reads < LOOKAHEAD_READS && entries < LOOKAHEAD_ENTRIES {
            entries += 1;
            let is_call = self.node_is_call[node as usize];
            let k = self.node_op[node as usize];
            let read = &self.ops[k as usize];
            node = self.next[node as usize];
            if !is_call {
                continue;
            }
            let Step::Read { seen } = read.step else { continue };
            let returned_at = read.completed_at;
            reads += 1;
            // Every op lifted was invoked before the barrier, so before this read returned: what can
            // still be appended before the read is what was invoked by then and is not lifted yet.
            let invoked = self.appended_by.partition_point(|&(at, _)| at < returned_at);
            let appendable = invoked.checked_sub(1).map_or(0, |i| self.appended_by[i].1);
            let room = appendable.saturating_sub(self.lifted_append_bytes);
            if self.can_grow_into(self.state, seen, room) {
                continue;
            }
            let mut replaced = false;
            for at in self.next_mutator as usize..self.mutators.len() {
                let m = self.mutators[at];
                let op = &self.ops[m as usize];
                if op.invoked_at > returned_at {
                    break;
                }
                replaced = match op.step {
                    _ if self.is_lifted(m) => false,
                    Step::Write { to } | Step::Cas { to, .. } => self.can_grow_into(to, seen, room),
                    // Where appends are about, an incr sets some integer that anything could follow;
                    // elsewhere `can_grow_into` already allows for incrs.
                    _ => self.has_appends,
                };
                if replaced {
                    break;
                }
            }
            if !replaced {
                return Some(k);
            }
        }
        None
    }

    /// Whether the value `from` can turn into `seen` by the ops that never replace it: appends, which
    /// extend it (by at most `room` bytes, each append counting once), or, on a key without appends,
    /// incrs, which raise an integer (absent counting as 0).
    fn can_grow_into(&mut self, from: u32, seen: u32, room: u64) -> bool {
        if self.has_appends {
            let length = |id: u32| self.values.get(id).map_or(0, str::len) as u64;
            return length(seen).saturating_sub(length(from)) <= room && self.value_is_prefix(from, seen);
        }
        if from == seen {
            return true;
        }
        let values = &self.values;
        *self.grows_into.entry((from, seen)).or_insert_with(|| {
            let number = |value: Option<&str>| value.map_or(Some(0), model::parse_canonical_i64);
            matches!((number(values.get(from)), number(values.get(seen))), (Some(a), Some(b)) if a <= b)
        })
    }

    /// Whether appends can turn `value` into `of`: `value` is a prefix of `of` (absent counting as ""),
    /// and what follows it, if anything, starts and ends with the text of some append of this key.
    fn value_is_prefix(&mut self, value: u32, of: u32) -> bool {
        let (values, texts) = (&self.values, &self.append_texts);
        *self.is_prefix.entry((value, of)).or_insert_with(|| match (values.get(value), values.get(of)) {
            (None, None) => true,
            (Some(_), None) => false,
            (prefix, Some(whole)) => {
                let prefix = prefix.unwrap_or_default();
                whole.starts_with(prefix) && texts.could_make(&whole[prefix.len()..])
            }
        })
    }

    /// Undoes the last lift. Returns where the scan resumes, or `None` when there is nothing to undo.
    fn backtrack(&mut self) -> Option<Cursor> {
        let frame = self.stack.pop()?;
        let k = frame.op;
        let info = self.ops[k as usize].info;
        if info {
            self.unlift(self.call_node[k as usize]);
        } else {
            self.unlift(self.return_node[k as usize]);
            self.unlift(self.call_node[k as usize]);
            self.ok_left += 1;
        }
        self.set_bit(k, false);
        self.lifted_append_bytes -= self.ops[k as usize].append_bytes;
        self.state = frame.prev_state;
        self.flag = frame.prev_flag;
        self.low = frame.prev_low;
        self.high = frame.prev_high;
        self.next_mutator = frame.prev_next_mutator;
        let after = self.next[self.call_node[k as usize] as usize];
        Some(if info { Cursor::Info(after, frame.barrier) } else { Cursor::Main(after) })
    }

    fn stack_ok_count(&self) -> u32 {
        self.n_ok - self.ok_left
    }

    fn is_lifted(&self, k: u32) -> bool {
        let (bits, i) = self.bit_of(k);
        bits[i / 64] & (1 << (i % 64)) != 0
    }

    fn bit_of(&self, k: u32) -> (&Vec<u64>, usize) {
        if k < self.n_ok {
            (&self.ok_bits, k as usize)
        } else {
            (&self.info_bits, (k - self.n_ok) as usize)
        }
    }

    fn set_bit(&mut self, k: u32, on: bool) {
        let (bits, i) = if k < self.n_ok {
            self.ok_hash ^= mix(u64::from(k));
            (&mut self.ok_bits, k as usize)
        } else {
            (&mut self.info_bits, (k - self.n_ok) as usize)
        };
        if on {
            bits[i / 64] |= 1 << (i % 64);
        } else {
            bits[i / 64] &= !(1 << (i % 64));
        }
    }

    /// The value after op `k` takes effect now, or `None` if it cannot.
    fn apply(&mut self, k: u32) -> Option<u32> {
        let state = self.state;
        match self.ops[k as usize].step {
            Step::Read { seen } => (seen == state).then_some(state),
            Step::Write { to } => Some(to),
            Step::Cas { expected, to } => (expected == state).then_some(to),
            Step::Computed => {
                if let Some(&after) = self.computed.get(&(state, k)) {
                    return after;
                }
                let op = &self.history[self.ops[k as usize].id];
                let result = match &op.outcome {
                    Outcome::Ok(v) => Some(v),
                    _ => None,
                };
                let after = match &op.call {
                    // The same as `model::step`, without cloning the value first: appended values get long.
                    Call::Append(suffix) => {
                        let before = self.values.get(state).unwrap_or_default();
                        let mut after = String::with_capacity(before.len() + suffix.len());
                        after.push_str(before);
                        after.push_str(suffix);
                        Some(self.values.intern_str(&after))
                    }
                    call => {
                        model::step(&self.values.value(state), call, result).map(|v| self.values.intern(&v))
                    }
                };
                self.computed.insert((state, k), after);
                after
            }
        }
    }

    /// Records the current bits with `state` and `flag` as seen. Returns false (and records nothing) when
    /// a configuration seen before dominates it.
    fn remember(&mut self, state: u32, flag: bool) -> bool {
        // The completed set is stored from the word of its lowest gap up to its highest member: below
        // that every bit is set, above it none is, so the tail identifies the set in a few words.
        let start_word = (self.low as usize) / 64;
        let end_word =
            if self.high == NIL { start_word } else { ((self.high as usize) / 64 + 1).max(start_word) };
        let tail = &self.ok_bits[start_word..end_word];
        let hash = self.ok_hash ^ mix(u64::from(state) ^ 0x5bd1_e995_0000_0000);
        let memo = &mut self.memo;
        let mut at = memo.heads.get(&hash).copied().unwrap_or(NIL);
        while at != NIL {
            let seen = &memo.seen[at as usize];
            if seen.state == state
                && seen.start_word as usize == start_word
                && seen.tail_len as usize == tail.len()
                && (!seen.flag || flag)
            {
                let words = &memo.words[seen.offset..seen.offset + tail.len() + self.info_bits.len()];
                let (seen_tail, seen_info) = words.split_at(tail.len());
                if seen_tail == tail && seen_info.iter().zip(&self.info_bits).all(|(s, now)| s & !now == 0) {
                    return false;
                }
            }
            at = seen.next;
        }
        let offset = memo.words.len();
        memo.words.extend_from_slice(tail);
        memo.words.extend_from_slice(&self.info_bits);
        let index = u32::try_from(memo.seen.len()).expect("fewer than 2^32 configurations");
        let next = memo.heads.insert(hash, index).unwrap_or(NIL);
        memo.seen.push(Seen {
            state,
            flag,
            start_word: start_word as u32,
            tail_len: tail.len() as u32,
            offset,
            next,
        });
        true
    }

    /// Looks for a read that no order can explain, before any search. The value a read sees is the
    /// value of the last write, cas or incr before it (or the initial value), followed by appends. That
    /// op was invoked before the read returned, and no completed write-like op lies entirely between it
    /// and the read in real time (it would come between them in every order). When no op (nor the
    /// initial value) passes, the read is stale whatever the order, and saying so costs
    /// O(reads × writes) instead of an exhaustive search.
    fn stale_read(&mut self) -> Option<KeyResult> {
        // Completed write-like ops by completion, with the latest invocation among those done so far:
        // an op done before a read started, and invoked after a candidate finished, overwrites it.
        let mut done: Vec<(u64, u32)> = self
            .mutators
            .iter()
            .filter(|&&m| !self.ops[m as usize].info)
            .map(|&m| (self.ops[m as usize].completed_at, m))
            .collect();
        done.sort_unstable();
        let mut latest_invoked: Vec<u32> = Vec::with_capacity(done.len());
        for &(_, m) in &done {
            let keep = match latest_invoked.last() {
                Some(&l) if self.ops[l as usize].invoked_at > self.ops[m as usize].invoked_at => l,
                _ => m,
            };
            latest_invoked.push(keep);
        }
        let initial = self.best.1;
        for r in 0..self.n_ok {
            let read = &self.ops[r as usize];
            let Step::Read { seen } = read.step else { continue };
            let (read_invoked, read_completed) = (read.invoked_at, read.completed_at);
            let before = done.partition_point(|&(completed, _)| completed < read_invoked);
            let overwriter = before.checked_sub(1).map(|i| latest_invoked[i]);
            let overwritten_until = overwriter.map_or(0, |w| self.ops[w as usize].invoked_at);
            if overwriter.is_none() && self.value_is_prefix(initial, seen) {
                continue;
            }
            let invoked_in_time =
                self.mutators.partition_point(|&m| self.ops[m as usize].invoked_at < read_completed);
            let mut source = None;
            let mut explained = false;
            for at in (0..invoked_in_time).rev() {
                let m = self.mutators[at];
                let can_build_on = match self.ops[m as usize].step {
                    Step::Write { to } | Step::Cas { to, .. } => self.value_is_prefix(to, seen),
                    _ => true,
                };
                if !can_build_on {
                    continue;
                }
                if self.ops[m as usize].completed_at > overwritten_until {
                    explained = true;
                    break;
                }
                source = Some(source.map_or(m, |s: u32| {
                    if self.ops[s as usize].completed_at > self.ops[m as usize].completed_at {
                        s
                    } else {
                        m
                    }
                }));
            }
            if explained {
                continue;
            }
            let from_initial = self.value_is_prefix(initial, seen);
            let reason = match (overwriter, source) {
                (Some(_), Some(_)) => Reason::StaleRead,
                (Some(_), None) if from_initial => Reason::StaleRead,
                _ => Reason::NeverWritten,
            };
            let overwriter = if reason == Reason::StaleRead { overwriter } else { None };
            let stuck = [Some(r), overwriter, source].into_iter().flatten();
            let stuck = stuck.map(|k| self.ops[k as usize].id).collect();
            return Some(KeyResult::NotLinearizable(Violation {
                key: self.history[self.ops[0].id].key.clone(),
                reason,
                linearized: Vec::new(),
                value: self.values.value(initial),
                stuck,
            }));
        }
        None
    }

    fn not_linearizable(&self) -> KeyResult {
        let (path, state) = &self.best;
        let lifted: Vec<bool> = {
            let mut lifted = vec![false; self.ops.len()];
            for &k in path {
                lifted[k as usize] = true;
            }
            lifted
        };
        let pending = (0..self.n_ok as usize).filter(|&k| !lifted[k]);
        let barrier = pending.clone().map(|k| self.ops[k].completed_at).min().unwrap_or(0);
        let stuck: Vec<usize> = match self.best_blocker {
            Some(read) => vec![read as usize],
            None => pending
                .filter(|&k| self.ops[k].invoked_at < barrier || self.ops[k].completed_at == barrier)
                .collect(),
        };
        KeyResult::NotLinearizable(Violation {
            key: self.history[self.ops[0].id].key.clone(),
            reason: Reason::NothingFits,
            linearized: path.iter().map(|&k| self.ops[k as usize].id).collect(),
            value: self.values.value(*state),
            stuck: stuck.into_iter().map(|k| self.ops[k].id).collect(),
        })
    }
}
