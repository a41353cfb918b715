//! `KvStateMachine`: applies committed log entries, answers reads, and hands out snapshots.

use crate::command::Command;
use crate::execute::{self, Txn};
use crate::reply::{errors, Reply};
use crate::request::{ClientId, Request, RequestBody};
use crate::session::{Admission, Sessions};
use crate::snapshot::Snapshot;
use crate::store::Store;

/// Limits and timeouts. Every replica must use the same values (they decide replies), so they belong to
/// the cluster's configuration, not to one node's flags. They are not part of a snapshot. Serializable
/// (missing fields take their defaults) so a config file can carry them.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct KvConfig {
    /// Writes that would leave the data's byte count above this fail with `-OOM`; 0 means no limit (as
    /// Redis's `maxmemory 0`). See the crate docs for how the count is defined.
    pub maxmemory_bytes: u64,
    /// A session with no applied entry for this long (leader time) expires.
    pub session_timeout_ms: u64,
    /// Most sessions open at once; one more evicts the least recently active.
    pub max_sessions: usize,
    /// Most cached replies per session; one more evicts the lowest sequence.
    pub max_replies_per_session: usize,
    /// Most expired keys removed per applied entry (the rest stay invisible until later entries remove
    /// them), so one entry's apply time stays bounded when many keys expire together.
    pub max_expired_keys_removed_per_entry: usize,
    /// APPEND refuses to build a value longer than this (Redis's `proto-max-bulk-len`, with its error
    /// text); at most [`MAX_STRING_BYTES`](crate::MAX_STRING_BYTES), the snapshot format's limit. The
    /// server also refuses longer values at the front door, where the length is known before proposing.
    pub max_value_bytes: usize,
}

impl Default for KvConfig {
    fn default() -> Self {
        KvConfig {
            maxmemory_bytes: 0,
            session_timeout_ms: 60 * 60 * 1000,
            max_sessions: 10_000,
            max_replies_per_session: 1024,
            max_expired_keys_removed_per_entry: 256,
            max_value_bytes: crate::MAX_STRING_BYTES,
        }
    }
}

/// The replicated key-value state machine. Pure: no I/O, no clock, no randomness. Two instances given
/// the same config and the same entries are in the same state and encode the same snapshot bytes.
#[derive(Clone, Debug)]
pub struct KvStateMachine {
    config: KvConfig,
    /// Index of the last entry applied (commands, and any others reported through `apply_other`).
    applied_index: u64,
    /// The largest leader time applied so far: the state machine's "now". Never decreases.
    time_ms: u64,
    store: Store,
    sessions: Sessions,
    /// Test-only bug: a retried command applies again instead of returning its cached reply.
    #[cfg(feature = "inject-bugs")]
    bug_apply_retries_twice: bool,
}

impl KvStateMachine {
    /// An empty state machine, before index 1.
    pub fn new(config: KvConfig) -> KvStateMachine {
        KvStateMachine::from_parts(config, 0, 0, Store::default(), Sessions::default())
    }

    pub(crate) fn from_parts(
        config: KvConfig,
        applied_index: u64,
        time_ms: u64,
        store: Store,
        sessions: Sessions,
    ) -> KvStateMachine {
        KvStateMachine {
            config,
            applied_index,
            time_ms,
            store,
            sessions,
            #[cfg(feature = "inject-bugs")]
            bug_apply_retries_twice: false,
        }
    }

    pub fn config(&self) -> &KvConfig {
        &self.config
    }

    /// Index of the last entry applied.
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// The state machine's "now": the largest leader time applied. Pass it (or a later leader time) to
    /// [`read`](Self::read).
    pub fn time_ms(&self) -> u64 {
        self.time_ms
    }

    /// The deterministic byte count `maxmemory_bytes` is checked against.
    pub fn used_bytes(&self) -> u64 {
        self.store.used_bytes()
    }

    /// Keys live at the state machine's time (what DBSIZE answers).
    pub fn key_count(&self) -> usize {
        self.store.live_len(self.time_ms)
    }

    /// Open sessions.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Whether `client_id` has an open session (the proposer re-registers when it does not).
    pub fn has_session(&self, client_id: &ClientId) -> bool {
        self.sessions.contains(client_id)
    }

    /// Applies the log entry at `index` whose `Command` payload is `entry` (an encoded [`Request`]).
    /// Bytes that do not decode are answered with an error and change nothing but the applied index, the
    /// same way on every replica.
    ///
    /// # Panics
    /// If `index` is not above the applied index: applying an entry twice, or out of order, is a bug in
    /// the caller, and continuing would corrupt the state.
    pub fn apply(&mut self, index: u64, entry: &[u8]) -> Reply {
        self.advance_applied_index(index);
        match Request::decode(entry) {
            Ok(request) => self.apply_decoded(request),
            Err(_) => Reply::error(errors::MALFORMED_REQUEST),
        }
    }

    /// [`apply`](Self::apply) for a request that is already decoded (the simulator's shortcut; the result
    /// is the same as applying `request.encode()`).
    ///
    /// # Panics
    /// As `apply`.
    pub fn apply_request(&mut self, index: u64, request: Request) -> Reply {
        self.advance_applied_index(index);
        self.apply_decoded(request)
    }

    /// Records that the entry at `index` was applied although it carried no command (a leader's no-op or
    /// a configuration), so that a snapshot taken next names the right index.
    ///
    /// # Panics
    /// As `apply`.
    pub fn apply_other(&mut self, index: u64) {
        self.advance_applied_index(index);
    }

    fn advance_applied_index(&mut self, index: u64) {
        assert!(
            index > self.applied_index,
            "kv: entry {index} applied after entry {}: entries must apply once, in order",
            self.applied_index
        );
        self.applied_index = index;
    }

    fn apply_decoded(&mut self, request: Request) -> Reply {
        self.time_ms = self.time_ms.max(request.leader_time_ms);
        let now_ms = self.time_ms;
        self.store.remove_expired(now_ms, self.config.max_expired_keys_removed_per_entry);
        self.sessions.expire(now_ms, self.config.session_timeout_ms);
        match request.body {
            RequestBody::RegisterSession { client_id } => {
                self.sessions.register(client_id, now_ms, self.config.max_sessions)
            }
            RequestBody::CloseSession { client_id } => {
                self.sessions.close(&client_id);
                Reply::Ok
            }
            RequestBody::Command(command) => match request.session {
                None => self.execute(&command),
                Some(session_ref) => match self.sessions.admit(&session_ref, now_ms) {
                    Admission::Refused(reply) => reply,
                    Admission::Duplicate(reply) if !self.bug_apply_retries_twice() => reply,
                    Admission::Duplicate(_) | Admission::Apply => {
                        let reply = self.execute(&command);
                        self.sessions.record(
                            &session_ref,
                            reply.clone(),
                            self.config.max_replies_per_session,
                        );
                        reply
                    }
                },
            },
        }
    }

    /// Whether the injected bug is on: a duplicate applies again instead of getting its cached reply.
    #[cfg(feature = "inject-bugs")]
    fn bug_apply_retries_twice(&self) -> bool {
        self.bug_apply_retries_twice
    }

    #[cfg(not(feature = "inject-bugs"))]
    fn bug_apply_retries_twice(&self) -> bool {
        false
    }

    /// Test-only (`inject-bugs` feature): when on, a retried command of a session applies again instead of
    /// returning its cached reply — the "apply a retried command twice" bug the simulator must catch.
    #[cfg(feature = "inject-bugs")]
    pub fn set_bug_apply_retries_twice(&mut self, on: bool) {
        self.bug_apply_retries_twice = on;
    }

    /// Runs a command at the state machine's time, refusing it whole if it would grow the data past
    /// `maxmemory_bytes`.
    fn execute(&mut self, command: &Command) -> Reply {
        let used_before = self.store.used_bytes();
        let mut txn = Txn::new(&mut self.store, self.time_ms, self.config.max_value_bytes);
        let reply = txn.execute(command);
        let used_after = txn.store().used_bytes();
        let limit = self.config.maxmemory_bytes;
        if limit > 0 && used_after > limit && used_after > used_before {
            txn.rollback();
            debug_assert_eq!(self.store.used_bytes(), used_before, "rollback must restore the byte count");
            return Reply::error(match command {
                Command::Multi(_) => errors::EXECABORT_OOM,
                _ => errors::OOM,
            });
        }
        reply
    }

    /// Answers a read-only command at the current applied state, treating keys as expired at
    /// `max(now_ms, self.time_ms())`. `now_ms` is a leader-stamped time the caller has (for a ReadIndex
    /// read, the time of the latest applied entry, i.e. `time_ms()`); never a replica's local clock.
    /// Changes nothing. A command that writes is answered with `NOT_READ_ONLY`.
    pub fn read(&self, command: &Command, now_ms: u64) -> Reply {
        execute::read(&self.store, command, now_ms.max(self.time_ms))
            .unwrap_or_else(|| Reply::error(errors::NOT_READ_ONLY))
    }

    /// An O(1) frozen view of the whole state at the applied index, to be written (for instance from
    /// another thread) while this state machine goes on applying.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::new(self.applied_index, self.time_ms, self.store.clone(), self.sessions.clone())
    }

    /// Forgets every client session and its cached replies. Only for seeding a brand-new cluster from a
    /// backup (`raftkv restore`): the new cluster has no clients yet, and its nodes number their own
    /// sessions from incarnation 1 again, so a session of the old cluster kept here could answer a new
    /// command with an old cached reply instead of applying it (dissertation §6.3's dedup, misfiring).
    pub fn clear_sessions(&mut self) {
        self.sessions = Sessions::default();
    }

    /// Checks internal invariants in O(n); for tests and after restore.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.store.check_invariants()?;
        self.sessions.check_invariants()
    }
}
