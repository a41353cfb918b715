//! # raft: the Raft consensus algorithm as a pure, deterministic state machine
//!
//! This crate is the consensus core of raftkv. It implements Raft as described in "In Search of an
//! Understandable Consensus Algorithm" (Ongaro and Ousterhout, 2014; "§5.3" below refers to it) and in
//! Ongaro's dissertation "Consensus: Bridging Theory and Practice" (2014; "dissertation §9.6").
//!
//! It does no I/O at all. It never reads a clock, opens a file or socket, starts a thread or draws an
//! unseeded random number. Time arrives as [`Raft::tick`] calls, messages as [`Raft::step`] calls, and
//! everything the node wants done — write to disk, send, apply — is handed back in a [`Ready`]. A run of a
//! whole cluster is therefore a pure function of its inputs and the nodes' RNG seeds, which is what lets the
//! simulator replay any failure from a seed.
//!
//! ## Map of the crate
//!
//! | module | job |
//! |---|---|
//! | [`types`] | shared vocabulary: ids, terms, entries, hard state, configurations |
//! | [`log`] | one server's log: the AppendEntries rules, durability cursor |
//! | [`quorum`] | majority arithmetic for simple and joint configurations |
//! | [`progress`] | the leader's view of one follower: probe vs. replicate, in-flight window |
//! | `election` | timeouts, pre-vote, votes, leader stickiness, check-quorum |
//! | `replication` | appends, heartbeats, the commit rule |
//! | `read_index` | linearizable reads by ReadIndex |
//! | `lease` | optional lease reads (dissertation §6.4.1), timed on a clock the caller gives |
//! | `snapshot` | compaction, and InstallSnapshot streamed in chunks |
//! | `membership` | joint consensus, learners, removal, leadership transfer |
//! | [`ready`] | the batch of work handed to the caller |
//! | [`message`] | the wire messages and their validation |
//! | `raft` | the node: `step` (terms checked once), role changes, the Ready handshake |
//!
//! ## The caller's loop
//!
//! The caller owns the disk, the network, the clock and the state machine. It feeds the node and then,
//! whenever [`Raft::has_ready`] says so, does the work of one [`Ready`] **in this order**:
//!
//! 1. **Persist** `ready.snapshot` (if `Some`: a received snapshot to make the log's start, see
//!    [Snapshots](#snapshots)), then `ready.hard_state` (if `Some`) and `ready.entries` (if
//!    `entries[0].index` is at or below the last index already stored, first discard the stored entries
//!    from that index on); write `ready.snapshot_writes` to the snapshot file being received. Once they are
//!    durable, call [`Raft::on_persisted`] with `ready.persist_mark`. This may happen later and on another
//!    thread of the caller's (asynchronous persistence), as long as writes complete in the order the
//!    `Ready`s were produced; reporting a mark covers every earlier one.
//! 2. **Send** `ready.messages`. All of them are safe to send now. Messages that promise something durable —
//!    a vote grant, a candidate's vote request for its new term, an acknowledgement of appended entries —
//!    are held inside the core, each tagged with the hard state or log position it promises, and only show
//!    up in a `Ready` once `on_persisted` has covered it. The leader's own appends do go out before its
//!    entries are durable (dissertation §10.2.1); it counts itself toward a commit only up to what its disk
//!    holds.
//! 3. **Apply**: first replace the state machine with `ready.snapshot` (if `Some`), then apply
//!    `ready.committed_entries`, in order (each entry is handed out exactly once, and only once it is
//!    durable on this node). Serve each of `ready.read_states` once the state machine has applied its
//!    `index`; fail `ready.failed_reads`. Serve `ready.snapshot_reads` whenever convenient.
//! 4. **Advance**: call [`Raft::advance`] (or [`Raft::on_applied`] with the last applied index when
//!    applying asynchronously).
//!
//! Inputs between `Ready`s:
//! - [`Raft::tick`] at a fixed rate. Election timeouts and heartbeat intervals are counted in ticks
//!   ([`Config::election_timeout_ticks`], [`Config::heartbeat_interval_ticks`]).
//! - [`Raft::step`] for every message from a peer. A malformed one is refused with a [`StepError`].
//! - [`Raft::propose`] to append a command (leader only: otherwise
//!   [`ProposeError::NotLeader`] with a hint; [`ProposeError::ProposalDropped`] over
//!   [`Config::max_uncommitted_bytes`]). It returns the entry's index; when an entry with that index comes
//!   out of `committed_entries` with the term the proposal was made in, the command was committed; with
//!   another term, it was lost to a leader change and may be retried.
//! - [`Raft::read_index`] for a linearizable read: once safe it comes back in `read_states`.
//! - [`Raft::set_now`], in lease mode ([`Config::read_mode`]): the caller's monotonic clock, before each
//!   `tick`, `read_index` and `ready`. The core reads no clock; it only compares the times it is given.
//!
//! Read-only accessors serve status pages and invariant checkers: [`Raft::id`], [`Raft::role`],
//! [`Raft::term`], [`Raft::vote`], [`Raft::leader_id`], [`Raft::commit_index`], [`Raft::applied_index`],
//! [`Raft::last_index`], [`Raft::persisted_index`], [`Raft::hard_state`], [`Raft::persisted_hard_state`],
//! [`Raft::log`] (with [`Log::term_at`], [`Log::entry`], [`Log::slice`]), [`Raft::configuration`], and on
//! a leader [`Raft::progress`] (each member's match and next index). `Display` on [`Raft`], [`Message`],
//! [`Log`] and [`Entry`] gives compact one-line forms such as `1->2 t3 app prev=5@2 [6@3 7@3] commit=4`.
//!
//! A node is built from what storage recovered: [`Raft::new`] with a [`RestoredState`]. A brand-new
//! cluster starts every founding member from a snapshot boundary at index 0 that carries the bootstrap
//! [`Configuration`]. A node whose configuration is empty (it has not been added yet) never starts an
//! election and never votes, but accepts entries from a leader (dissertation §4.1).
//!
//! ## Example: three nodes in memory commit an entry
//!
//! ```
//! use std::collections::{BTreeMap, VecDeque};
//!
//! use bytes::Bytes;
//! use raft::{Config, Configuration, Entry, HardState, Raft, RestoredState, Role, SnapshotMeta};
//!
//! /// What one node keeps on its "disk" (here: memory) and what it applied.
//! #[derive(Default)]
//! struct Disk { hard_state: HardState, entries: Vec<Entry>, applied: Vec<Entry> }
//!
//! let bootstrap = SnapshotMeta { index: 0, term: 0, configuration: Configuration::with_voters([1, 2, 3]) };
//! let mut nodes: BTreeMap<u64, (Raft, Disk)> = BTreeMap::new();
//! for id in 1..=3 {
//!     let config = Config { rng_seed: 7, ..Config::new(id) };
//!     let restored = RestoredState { snapshot: bootstrap.clone(), ..Default::default() };
//!     nodes.insert(id, (Raft::new(config, restored).unwrap(), Disk::default()));
//! }
//!
//! let mut network = VecDeque::new();
//! // The driver loop for one node: persist, report durability, send, apply, advance.
//! let drive = |raft: &mut Raft, disk: &mut Disk, network: &mut VecDeque<raft::Message>| {
//!     while raft.has_ready() {
//!         let ready = raft.ready();
//!         if let Some(mark) = ready.persist_mark {
//!             if let Some(hard_state) = ready.hard_state {
//!                 disk.hard_state = hard_state;
//!             }
//!             if let Some(first) = ready.entries.first() {
//!                 disk.entries.truncate(first.index as usize - 1); // overwrite a conflicting suffix
//!                 disk.entries.extend(ready.entries.iter().cloned());
//!             }
//!             raft.on_persisted(mark); // (a real disk would fsync first)
//!         }
//!         network.extend(ready.messages);
//!         disk.applied.extend(ready.committed_entries);
//!         raft.advance();
//!     }
//! };
//!
//! let mut proposed = None;
//! for _tick in 0..100 {
//!     for (raft, disk) in nodes.values_mut() {
//!         raft.tick();
//!         drive(raft, disk, &mut network);
//!     }
//!     while let Some(message) = network.pop_front() {
//!         let (raft, disk) = nodes.get_mut(&message.to).unwrap();
//!         raft.step(message).unwrap();
//!         drive(raft, disk, &mut network);
//!     }
//!     // Once someone leads, propose one command on it.
//!     if proposed.is_none() {
//!         if let Some((raft, disk)) = nodes.values_mut().find(|(r, _)| r.role() == Role::Leader) {
//!             proposed = Some(raft.propose(Bytes::from_static(b"x=1")).unwrap());
//!             drive(raft, disk, &mut network);
//!         }
//!     }
//! }
//!
//! let index = proposed.expect("a leader was elected");
//! for (raft, disk) in nodes.values() {
//!     assert!(raft.commit_index() >= index);
//!     assert!(disk.applied.iter().any(|e| e.index == index)); // every node applied it
//! }
//! ```
//!
//! ## Protocol choices worth knowing
//!
//! - **Batching.** A leader sends appends when a `Ready` is collected, not inside `propose`: every
//!   proposal made since the last `Ready` travels in one AppendEntries per follower (up to
//!   [`Config::max_entries_per_message`] / [`Config::max_bytes_per_message`]), with up to
//!   [`Config::max_inflight_messages`] unacknowledged appends per follower.
//! - **Backtracking.** A rejection carries a hint (the follower's largest index at or below the probe
//!   whose term is at most the leader's `prev_log_term`); the leader skips whole terms at once. Figure 7's
//!   (e) and (f) need one rejected round each instead of five and seven.
//! - **Commit news.** Followers learn the commit index from appends (capped by what the append proved)
//!   and from heartbeats (capped by what the leader knows the follower holds).
//! - **Pre-vote** asks "would you vote for me in term T+1?" without anyone changing term. A granted
//!   pre-vote carries T+1 and changes nothing; a refusal carries the refuser's own term, which the
//!   pre-candidate adopts if it is higher — otherwise a node whose term fell behind (nodes that already
//!   voted in the next term refuse it forever) could never be elected, and a cluster can deadlock.
//! - **Leader stickiness** is counted in ticks since the last contact with a leader, so it expires by
//!   itself when a leader goes silent; a leader counts as hearing from itself. It is on only with
//!   check-quorum, which makes a leader that cannot hear a majority fall silent.
//! - **ReadIndex** rounds are numbered heartbeat broadcasts; reads that arrive before the next `Ready`
//!   share a round, a read never rides on a round that was already out, and a read waits until the leader
//!   has committed an entry of its term.
//! - **Stalled pipelines.** If a follower answers none of its in-flight appends for an election timeout,
//!   the leader probes it again from its match index (a lost message would otherwise leave a full window
//!   waiting forever).
//!
//! Not here yet (a later issue): lease reads.
//!
//! ## Membership changes and leadership transfer
//!
//! Joint consensus (§6; dissertation §4.3), learners (dissertation §4.2.1) and leadership transfer
//! (dissertation §3.10); the module docs of `membership` give the rules and their reasons. The caller's
//! side, on the leader:
//!
//! - [`Raft::propose_conf_change`]`(`[`ConfChange`]`)` → the index of the configuration entry appended,
//!   or a [`ConfChangeError`] saying why nothing was: `NotLeader { leader_hint }`, `LeaderNotReady` (a
//!   new leader has not committed an entry of its term yet: retry shortly), `ChangeInProgress { index }`
//!   (one change at a time), `LeadershipTransferInProgress`, `NotALearner` (a new voter joins as a
//!   [`ConfChange::AddLearner`] first), `LearnerBehind` (further than
//!   [`Config::max_promotion_lag_entries`] behind: retry once it caught up), and the malformed ones
//!   (`ZeroId`, `AlreadyMember`, `NotAMember`, `NoVoters`, `VoterAndLearner`, `NothingToChange`).
//!   [`target_of`] computes, without a leader, the configuration a change leads to.
//! - A change of voters appends C_old,new; once it is committed the leader appends C_new by itself.
//!   A change of learners only appends the new configuration directly. Every configuration takes
//!   effect on every server as soon as it is appended ([`Raft::configuration`],
//!   [`Raft::configuration_index`]); the change is over when [`Raft::conf_change_in_progress`] is
//!   false on the leader. Configuration entries come out of `committed_entries` like any other: the
//!   state machine ignores them (they still advance the applied index). [`Raft::snapshot_meta_at`] gives
//!   each snapshot the configuration in force at its index.
//! - A leader that removed itself keeps leading until C_new is committed, then becomes a follower that
//!   never campaigns; a removed server that keeps running cannot disrupt the cluster (pre-vote fails for
//!   it: its log lacks C_new).
//! - [`Raft::transfer_leadership`]`(target)` (a voter) → `Ok` or a [`TransferError`]. Meanwhile
//!   [`Raft::propose`] answers [`ProposeError::LeadershipTransferInProgress`] and changes are refused;
//!   [`Raft::leadership_transfer_target`] shows it. The transfer ends when another leader takes over
//!   (the old one becomes a follower), or is abandoned after [`Config::election_timeout_ticks`].
//! - A node started with an empty configuration (a server joining with an empty data directory) waits
//!   for a leader to add it: it neither campaigns nor votes until a configuration reaches it.
//!
//! ## Snapshots
//!
//! Log compaction and InstallSnapshot (§7; dissertation §5). The core owns the protocol state; the
//! application owns the bytes, and the core never holds more of a snapshot than one chunk per follower.
//! The application's duties, in order:
//!
//! **Taking a snapshot** (any node, whenever its log has grown enough):
//! 1. Pick an applied index `i` (at most [`Raft::applied_index`]); [`Raft::snapshot_meta_at`]`(i)` gives
//!    the [`SnapshotMeta`] to store with it (the entry's term, and the configuration in force at `i`).
//! 2. Write the state machine as of `i` to a snapshot file and make it durable (temp file, fsync,
//!    rename, directory fsync). Only then:
//! 3. Call [`Raft::compact`]`(i)`: the log forgets entries up to `i` and remembers `i`'s term (so appends
//!    right after it still match) and configuration. Nothing comes back in a `Ready` for this: storage
//!    deletes the log segments the snapshot covers by itself, at any time after step 2. Compacting at or
//!    below the current boundary does nothing; beyond the applied index it is refused
//!    ([`SnapshotError::NotApplied`]).
//! 4. Keep the file of the newest snapshot ([`Raft::snapshot_meta`]) unchanged while it is the newest: a
//!    leader streams it to followers. Older files may go once a newer one is compacted to.
//!
//! **Sending** (leader): a follower that needs compacted entries gets the snapshot instead, one chunk in
//! flight at a time. Each [`SnapshotRead`] in `ready.snapshot_reads` asks for up to `max_bytes` bytes of
//! the snapshot `(snapshot_index, snapshot_term)` at `offset`; answer with [`Raft::snapshot_chunk`]`(read,
//! data, done)` (`done` when `data` reaches the end of the file; never empty unless `done`), now or later.
//! A read that cannot be served (the file was replaced, I/O failed) may be dropped: the leader asks again
//! after [`Config::snapshot_chunk_timeout_ticks`], as it does for a chunk or answer the network lost. A
//! chunk nobody waits for any more is refused with [`SnapshotError::ChunkNotWanted`]; drop it.
//!
//! **Receiving** (follower):
//! 1. Write each [`SnapshotWrite`] of `ready.snapshot_writes` at its offset into a temporary file for its
//!    `meta`, in order. A write at offset 0 starts a new file: discard any partial one. Chunks are
//!    acknowledged before they are durable — they promise nothing; a follower that restarts mid-transfer
//!    starts over at offset 0, and a transfer interrupted by lost messages resumes where it stopped.
//! 2. After the write with `done`: make the file durable and verify its checksum. Then call
//!    [`Raft::snapshot_received`]`(&meta)` — or, if it failed, discard the file and call
//!    [`Raft::snapshot_receive_failed`]`(&meta)` (the transfer restarts at 0). No other transfer starts
//!    until one of the two is called.
//! 3. `snapshot_received` refuses a snapshot this node no longer needs ([`SnapshotError::Stale`]: it
//!    committed that far meanwhile, or it leads): delete the file. Otherwise the core installs it in
//!    memory (the log keeps the entries after the snapshot only if it held the snapshot's last entry with
//!    its term, §7; the commit index moves to the snapshot's index; its configuration is adopted) and the
//!    next `Ready` carries a [`SnapshotInstall`] in `ready.snapshot`:
//! 4. In that `Ready`'s persist step, before its `entries` and `hard_state`: publish the file as the
//!    newest snapshot, drop every stored entry up to its index, and every entry after it too unless
//!    `keep_entries_after`. Report the `persist_mark` as usual. In its apply step: replace the state
//!    machine with the snapshot's contents, then apply `committed_entries` (they continue right after the
//!    snapshot's index).
//! 5. Recovery must apply §7's rule after a crash between publishing and dropping entries: keep the
//!    stored entries after the newest snapshot only if the log holds the entry at its index with its term.
//!
//! The follower tells the leader that the snapshot is installed only once that `Ready`'s persist mark is
//! reported (the durability rule: the acknowledgement promises a log that matches the leader's up to the
//! snapshot's index); the leader then resumes appends right after it. A chunk of a snapshot at or below
//! the follower's commit index is refused with that commit index (dissertation §5.3), and the leader goes
//! back to appends from there. A leader that steps down abandons its transfers; the next leader starts its
//! own from offset 0 (offsets of one leader's file mean nothing in another's).
//!
//! ## How it is tested
//!
//! `tests/` holds scenario tests named after what they check (Figures 6, 7 and 8; elections, pre-vote,
//! check-quorum, stickiness; message economy with the MIT 6.5840 lab's bounds; ReadIndex; snapshots;
//! bad input; property tests of the log alone and of whole clusters under random fault schedules, with
//! and without compaction), a small in-memory cluster harness (`tests/harness/`), and
//! scenario scripts in `tests/scripts/*.txt` whose expected output `UPDATE_EXPECT=1` rewrites. With
//! debug assertions (the test profile keeps them), every input ends with a check of the node's
//! invariants.
//!
//! ## Failures
//!
//! What a peer, the network or the caller can cause is a typed error and never a panic: [`StepError`],
//! [`ProposeError`], [`ConfChangeError`], [`TransferError`], [`ReadIndexError`], [`ConfigError`]. A broken invariant — the commit index going
//! back, an append that would overwrite a committed entry, applying out of order, a durable vote changing
//! within a term — is a bug, and the core panics at once with the node's state in the message, before
//! anything wrong can reach the disk.
//!
//! ## Test-only bug switches
//!
//! With the `inject-bugs` feature (never enabled by default), [`Config`] gains an `injected_bug` field
//! that breaks one safety rule on purpose (`InjectedBug`), so that the simulator can prove it notices.

pub mod config;
mod election;
pub mod error;
mod lease;
pub mod log;
mod membership;
pub mod message;
pub mod progress;
pub mod quorum;
mod raft;
mod read_index;
pub mod ready;
mod replication;
mod snapshot;
pub mod types;

#[cfg(feature = "inject-bugs")]
pub use config::InjectedBug;
pub use config::{Config, LeaseSettings, ReadMode};
pub use error::{
    ConfChangeError, ConfigError, ProposeError, ReadIndexError, SnapshotError, StepError, TransferError,
};
pub use log::Log;
pub use membership::target_of;
pub use message::{
    AppendRequest, AppendResponse, Heartbeat, HeartbeatResponse, InstallSnapshot, InstallSnapshotResponse,
    Message, MessageBody, VoteRequest, VoteResponse,
};
pub use progress::{Progress, ProgressState, SnapshotTransfer, TransferStage};
pub use raft::{Raft, RestoredState, Role};
pub use ready::{FailedRead, PersistMark, ReadState, Ready, SnapshotInstall, SnapshotRead, SnapshotWrite};
pub use types::{
    ConfChange, Configuration, Entry, EntryPayload, HardState, Index, NodeId, SnapshotMeta, Term,
};
