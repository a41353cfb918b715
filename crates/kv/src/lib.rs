//! The replicated state machine of raftkv: a Redis-compatible string key-value store that every replica
//! applies committed log entries to. The server and the simulator both run this crate; it does no I/O,
//! reads no clock and draws no random numbers, so a replica's state is a pure function of the entries it
//! applied (and its [`KvConfig`], which must be the same cluster-wide).
//!
//! # The pieces
//! - [`parse`] turns a client's argv (a RESP array) into a [`Command`], or into a [`ParseError`] whose text
//!   is Redis's (`ERR wrong number of arguments for 'get' command`, `ERR syntax error`, ...). Command
//!   names are case-insensitive; keys and values are binary-safe [`bytes::Bytes`]. Connection-level
//!   commands (PING, HELLO, SELECT, CONFIG, CLIENT, INFO, QUIT, MULTI/EXEC/DISCARD) belong to the server,
//!   which handles them before calling `parse`; [`Transaction`] helps it with MULTI/EXEC.
//!   [`Command::is_read`] says whether a command may be served by ReadIndex instead of a log entry.
//! - A log entry's `Command(Bytes)` payload is an encoded [`Request`] (below).
//! - [`KvStateMachine::apply`] applies one entry and returns its [`Reply`]; [`KvStateMachine::read`]
//!   answers a read-only command without changing anything; [`KvStateMachine::snapshot`] takes an O(1)
//!   frozen [`Snapshot`] that streams out with [`Snapshot::write_to`] and comes back with
//!   [`KvStateMachine::restore`].
//! - [`Reply`] is independent of RESP; the server maps it to frames.
//!
//! # The request format (log entry payload)
//! `Request::encode` writes one version byte ([`REQUEST_FORMAT_VERSION`]) followed by the postcard
//! encoding of:
//! ```text
//! Request { session: Option<SessionRef { client_id: ClientId { node_id, incarnation, counter },
//!                                         sequence, lowest_unacked }>,
//!           leader_time_ms: u64,
//!           body: RegisterSession { client_id } | CloseSession { client_id } | Command(Command) }
//! ```
//! The leader fills `leader_time_ms` from its clock when it proposes the entry. Bytes that do not decode
//! are answered with an error and change nothing, identically on every replica.
//!
//! # Time and expiry
//! The state machine's "now" is the largest `leader_time_ms` applied so far ([`KvStateMachine::time_ms`]):
//! the same on every replica at the same index, and never decreasing, even when a new leader's clock is
//! behind the old one's (so an expired key cannot come back). `SET ... EX 10` is stored as the absolute
//! deadline `now + 10_000`. A key is live while `now <= deadline` and absent to every command afterwards;
//! each applied entry also removes up to `max_expired_keys_removed_per_entry` expired keys, earliest
//! deadline first, so memory is reclaimed deterministically. Reads take a `now_ms` from the caller, which
//! must be a leader-stamped time (normally `time_ms()`), never a local clock.
//!
//! # maxmemory
//! `used_bytes` counts, for every stored key, key length + value length + [`ENTRY_OVERHEAD_BYTES`] — a
//! function of the data, not of the allocator, so every replica computes the same number. With
//! `maxmemory_bytes > 0`, a write command (or a whole MULTI) that would leave `used_bytes` above the
//! limit *and* larger than before is taken back entirely and answered with
//! `OOM command not allowed when used memory > 'maxmemory'.` (for MULTI:
//! `EXECABORT Transaction discarded because of: OOM ...`). Deletes and writes that do not grow the data
//! always succeed. Sessions are bounded by their own limits, not by `maxmemory`.
//!
//! # MULTI/EXEC
//! [`Command::Multi`] applies all its commands in one entry, nothing interleaved, and answers an array of
//! their replies. As in Redis, a command that fails at run time (INCR on a non-integer) answers its
//! error while the others still apply, and a command that fails to parse while queued makes EXEC answer
//! `EXECABORT Transaction discarded because of previous errors.` with nothing proposed
//! ([`Transaction`]). A transaction refused for memory applies nothing.
//!
//! # Commands
//! GET, SET (NX, XX, GET, EX, PX, EXAT, PXAT, KEEPTTL), SETEX, PSETEX, DEL, UNLINK, EXISTS, INCR, INCRBY,
//! DECR, DECRBY, APPEND, STRLEN, MGET, MSET, GETSET, EXPIRE and PEXPIRE (NX, XX, GT, LT), TTL, PTTL,
//! PERSIST, DBSIZE, SCAN (MATCH, COUNT, TYPE), MULTI/EXEC through [`Transaction`], and `CAS key [expected]
//! new` (not Redis: for the simulator; without `expected` it means "only if absent"; answers 1 or 0).
//! Values are strings only, so no `WRONGTYPE`. SCAN walks keys in a fixed hash order and its cursor is
//! the hash where the next call resumes, so a key present for the whole iteration is returned at least
//! once even while others are added and removed (details in the [`store`] module). [`Command::to_argv`] and
//! `Display` give the command back as words, for traces and logs.
//!
//! The state machine bounds what it keeps (sessions, cached replies, string length 512 MB, `maxmemory`);
//! the server bounds what comes in (argument counts, bulk lengths, commands queued in a MULTI).
//!
//! # Sessions: at-most-once for the servers' own retries
//! Dissertation §6.3. A proposer opens a session with a `RegisterSession` entry, choosing a [`ClientId`]
//! that is unique across node restarts (node id, an incarnation the node persists and bumps on each start,
//! a counter). Every command it proposes carries a [`SessionRef`]: the session, the command's sequence
//! number, and the lowest sequence whose reply it has not yet delivered. The session caches the reply of
//! every applied sequence at or above that watermark (a pipelining proposer has many in flight), so a
//! command proposed twice — re-proposed after a leader change, or retried while forwarding — applies once
//! and the copy gets the cached reply. A command below the watermark, or for a session that is unknown or
//! expired, is refused with an error and not applied, whatever its sequence. Sessions expire after
//! `session_timeout_ms` of leader time without an entry; their number and their cached replies are
//! bounded, with deterministic eviction. Rules in detail: the [`session`] module docs.
//!
//! **RESP has no request ids.** A Redis client that times out and re-sends `INCR` itself sends a new
//! command; it may apply twice. Sessions protect the servers' retries, not a client's.
//!
//! # Snapshots
//! [`KvStateMachine::snapshot`] clones persistent maps (`imbl::OrdMap`, for the data and for the session
//! table), which is O(1); the [`Snapshot`] is `Send + Sync + 'static` and does not change when the state
//! machine goes on applying, so the node can write it from a background thread while requests go on
//! (each later write copies only the map path it touches). [`Snapshot::write_to`] streams a versioned,
//! deterministic record format (same state, same bytes) to any `std::io::Write`, one record per write;
//! [`KvStateMachine::restore`] reads it back from any `std::io::Read` and rejects bad input with a
//! [`SnapshotError`] naming the byte offset and what it expected, never a panic. The snapshot holds
//! everything `apply` depends on (data with deadlines, the expiry clock, sessions with their cached
//! replies) but not the [`KvConfig`] or the Raft term, which the caller and the storage crate keep. The
//! format is specified in the [`snapshot`] module docs.
//!
//! # Example
//! ```
//! use bytes::Bytes;
//! use kv::{parse, ClientId, KvConfig, KvStateMachine, Reply, Request, RequestBody, SessionRef};
//!
//! let mut machine = KvStateMachine::new(KvConfig::default());
//! let client_id = ClientId { node_id: 1, incarnation: 1, counter: 1 };
//! let register = Request { session: None, leader_time_ms: 1_000, body: RequestBody::RegisterSession { client_id } };
//! assert_eq!(machine.apply(1, &register.encode()), Reply::Ok);
//!
//! let argv: Vec<Bytes> = ["INCR", "hits"].into_iter().map(Bytes::from).collect();
//! let command = parse(&argv).unwrap();
//! assert!(!command.is_read());
//! let session = SessionRef { client_id, sequence: 1, lowest_unacked: 1 };
//! let entry = Request::session_command(1_005, session, command).encode();
//! assert_eq!(machine.apply(2, &entry), Reply::Integer(1));
//! // The same entry proposed again (a re-proposal after a leader change) does not apply twice.
//! assert_eq!(machine.apply(3, &entry), Reply::Integer(1));
//!
//! let get = parse(&[Bytes::from("GET"), Bytes::from("hits")]).unwrap();
//! assert_eq!(machine.read(&get, machine.time_ms()), Reply::Bulk(Bytes::from("1")));
//!
//! let bytes = machine.snapshot().to_bytes();
//! let restored = KvStateMachine::restore(KvConfig::default(), bytes.as_slice()).unwrap();
//! assert_eq!(restored.snapshot().to_bytes(), bytes);
//! ```
//!
//! # Test-only bug switch
//! With the `inject-bugs` cargo feature (never default), [`KvStateMachine`] gains
//! `set_bug_apply_retries_twice(true)`, which makes a retried session command apply again instead of
//! answering from the cache — the bug the simulator must catch.

mod command;
mod depth;
mod execute;
mod machine;
mod parse;
mod reply;
mod request;
pub mod session;
pub mod snapshot;
pub mod store;

pub use command::{Command, ExpireCommand, ExpireCondition, SetCondition, SetExpiry, TtlUnit};
pub use machine::{KvConfig, KvStateMachine};
pub use parse::{parse, parse_i64, ParseError, Transaction};
pub use reply::{errors, Reply, MAX_REPLY_DEPTH};
pub use request::{ClientId, DecodeError, Request, RequestBody, SessionRef, REQUEST_FORMAT_VERSION};
pub use snapshot::{Snapshot, SnapshotError, MAX_RECORD_BYTES, SNAPSHOT_FORMAT_VERSION, SNAPSHOT_MAGIC};
pub use store::{ENTRY_OVERHEAD_BYTES, MAX_STRING_BYTES};
