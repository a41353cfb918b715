//! Snapshots: log compaction and InstallSnapshot (§7 of the paper; dissertation §5).
//!
//! The core owns the protocol state; the application owns the bytes. The core never holds a whole
//! snapshot — at most the one chunk per follower that it is about to send, or that it hands out to be
//! written.
//!
//! - **Compaction** ([`Raft::compact`]): once the application has durably written a snapshot of its
//!   state machine at an applied index, the log drops every entry up to it, remembering the boundary's
//!   term (so appends right after it still match) and the configuration in force there (so the snapshot
//!   can be sent with it, dissertation §5.1).
//! - **Sending** (leader): a follower whose `next_index` is at or below the boundary needs entries the
//!   leader no longer has. Its progress enters the `Snapshot` state; each `Ready` asks the application
//!   to read the chunk at the follower's current offset ([`crate::SnapshotRead`]); the application hands
//!   it back ([`Raft::snapshot_chunk`]) and it leaves as one InstallSnapshot message. The follower answers
//!   with the offset it wants next, so only one chunk is ever in flight per follower, and a lost chunk or
//!   answer costs one [`crate::Config::snapshot_chunk_timeout_ticks`] wait before the leader asks again.
//! - **Receiving** (follower): chunks of one stream (one leader, one term, one snapshot) are handed out in
//!   order as [`crate::SnapshotWrite`]s; a chunk at an unexpected offset is answered with the offset
//!   wanted (so an interrupted transfer resumes where it stopped, or restarts at 0 if the follower lost
//!   its partial file). After the last chunk, the application makes the file durable and verifies it,
//!   then calls [`Raft::snapshot_received`]: the core installs it into its log (keeping the entries after
//!   it only if they match, §7) and hands the installation to the application in the next `Ready`
//!   ([`crate::SnapshotInstall`]). The acknowledgement to the leader is held until that `Ready` is
//!   durable (the durability rule: it promises the follower's log matches up to the snapshot's index).
//! - **Stale snapshots** (dissertation §5.3): a chunk of a snapshot at or below the follower's commit
//!   index is refused with that commit index, and the leader goes back to appends from there.

use bytes::Bytes;

use crate::error::SnapshotError;
use crate::message::{InstallSnapshot, InstallSnapshotResponse, Message, MessageBody};
use crate::progress::{ProgressState, TransferStage};
use crate::raft::{Raft, Role};
use crate::ready::{Durability, SnapshotInstall, SnapshotRead, SnapshotWrite};
use crate::types::{Configuration, EntryPayload, Index, NodeId, SnapshotMeta, Term};

/// A snapshot being received: one stream of chunks from one leader in one term.
#[derive(Clone, Debug)]
pub(crate) struct IncomingSnapshot {
    pub leader: NodeId,
    pub term: Term,
    pub meta: SnapshotMeta,
    /// Bytes handed out for writing so far: the offset of the next chunk to accept.
    pub next_offset: u64,
    /// The last chunk was handed out; the application is making the file durable and verifying it. No
    /// other stream starts until it reports back, so it writes at most one snapshot file at a time.
    pub complete: bool,
}

impl IncomingSnapshot {
    fn is_stream(&self, leader: NodeId, term: Term, meta: &SnapshotMeta) -> bool {
        self.leader == leader && self.term == term && self.is_of(meta)
    }

    fn is_of(&self, meta: &SnapshotMeta) -> bool {
        self.meta.index == meta.index && self.meta.term == meta.term
    }
}

impl Raft {
    // ----- Compaction -----------------------------------------------------------------------------------

    /// The snapshot this node's log starts after: its boundary, with the configuration in force there.
    /// A leader sends this snapshot to followers that need it; the application must keep its file until
    /// a newer one replaces it.
    pub fn snapshot_meta(&self) -> SnapshotMeta {
        let (index, term) = self.log.snapshot_boundary();
        SnapshotMeta { index, term, configuration: self.snapshot_configuration.clone() }
    }

    /// What a snapshot of the state machine at `index` stands for: the entry's term and the configuration
    /// in force at it (the latest configuration entry at or below it, dissertation §5.1). The application
    /// stores this with the snapshot's data.
    ///
    /// Errors: `index` not applied yet ([`SnapshotError::NotApplied`]), or below the boundary, where terms
    /// and configurations are no longer known ([`SnapshotError::Compacted`]).
    pub fn snapshot_meta_at(&self, index: Index) -> Result<SnapshotMeta, SnapshotError> {
        let (boundary, _) = self.log.snapshot_boundary();
        if index > self.applied {
            return Err(SnapshotError::NotApplied { index, applied: self.applied });
        }
        if index < boundary {
            return Err(SnapshotError::Compacted { index, first_index: boundary + 1 });
        }
        if index == boundary {
            return Ok(self.snapshot_meta());
        }
        let term = self.log.term_at(index).expect("an applied index above the boundary is held");
        Ok(SnapshotMeta { index, term, configuration: self.configuration_at(index) })
    }

    /// The configuration in force at `index` (held, above the boundary).
    fn configuration_at(&self, index: Index) -> Configuration {
        // The latest configuration entry of the whole log is also the latest at or below `index` if it
        // is at or below it; otherwise look back from `index` (configuration entries are rare).
        if self.configuration_index <= index {
            return self.configuration.clone();
        }
        let (boundary, _) = self.log.snapshot_boundary();
        for entry in self.log.slice(boundary + 1, index).iter().rev() {
            if let EntryPayload::Config(configuration) = &entry.payload {
                return configuration.clone();
            }
        }
        self.snapshot_configuration.clone()
    }

    /// The application has durably written a snapshot of its state machine at the applied index `index`
    /// (with the meta [`Raft::snapshot_meta_at`] gave): the log drops every entry up to it (§7).
    ///
    /// Compacting at or below the current boundary does nothing. Nothing new needs persisting: the
    /// application's storage deletes the log it no longer needs by itself (after publishing the
    /// snapshot), and no `Ready` reports compaction. From now on, followers that need entries at or below
    /// `index` receive this snapshot; the application may delete older snapshot files (transfers of an
    /// older snapshot restart with this one).
    pub fn compact(&mut self, index: Index) -> Result<(), SnapshotError> {
        let (boundary, _) = self.log.snapshot_boundary();
        if index <= boundary {
            return Ok(());
        }
        let meta = self.snapshot_meta_at(index)?;
        // Applied entries are durable (`applying <= persisted`), so the log can let them go.
        let compacted = self.log.compact_to(index);
        debug_assert!(compacted);
        if self.configuration_index <= index {
            self.configuration_index = index;
            self.configuration_term = meta.term;
        }
        self.snapshot_configuration = meta.configuration;
        self.debug_check_invariants();
        Ok(())
    }

    // ----- Leader: sending ------------------------------------------------------------------------------

    /// True if `to` needs its snapshot transfer started, restarted or moved on (a chunk to ask for).
    pub(crate) fn snapshot_is_due(&self, to: NodeId) -> bool {
        let pr = &self.progress[&to];
        let (index, term) = self.log.snapshot_boundary();
        match &pr.snapshot {
            None => pr.next_index <= index,
            Some(transfer) => {
                transfer.stage == TransferStage::Idle
                    || (transfer.index, transfer.term) != (index, term)
                    || pr.next_index > index
            }
        }
    }

    /// Moves `to`'s snapshot transfer along if it needs one: starts it when the entries `to` needs are
    /// compacted, restarts it when the leader compacted further (the older file may be gone), and asks
    /// the application for the chunk at the current offset when nothing is outstanding. Returns true if
    /// `to` is (still) receiving a snapshot, so no append may go to it.
    pub(crate) fn maybe_send_snapshot(&mut self, to: NodeId) -> bool {
        let (index, term) = self.log.snapshot_boundary();
        let max_bytes = self.config.max_snapshot_chunk_bytes;
        let pr = self.progress.get_mut(&to).expect("progress exists for every follower");
        match pr.snapshot {
            None if pr.next_index > index => return false,
            // A late append acknowledgement showed the follower already holds the boundary.
            Some(_) if pr.next_index > index => {
                pr.become_probe();
                return false;
            }
            None => pr.become_snapshot(index, term),
            Some(transfer) if (transfer.index, transfer.term) != (index, term) => {
                pr.become_snapshot(index, term);
            }
            Some(_) => {}
        }
        let transfer = pr.snapshot.as_mut().expect("in the snapshot state");
        if transfer.stage == TransferStage::Idle {
            transfer.stage = TransferStage::Reading;
            transfer.waiting_ticks = 0;
            let offset = transfer.offset;
            let read = SnapshotRead { to, snapshot_index: index, snapshot_term: term, offset, max_bytes };
            self.snapshot_reads.push(read);
        }
        true
    }

    /// The application read the chunk `read` asked for: `data` (at most `read.max_bytes` bytes, fewer
    /// only at the end), and `done` if it reaches the end of the snapshot. It leaves for the follower as
    /// an InstallSnapshot message in the next `Ready`.
    ///
    /// A chunk nobody waits for any more (this node stopped leading, the transfer moved on) is refused
    /// with [`SnapshotError::ChunkNotWanted`] and changes nothing.
    ///
    /// # Panics
    /// If `data` is longer than `read.max_bytes`, or empty without `done` (the transfer could never end).
    pub fn snapshot_chunk(
        &mut self,
        read: SnapshotRead,
        data: Bytes,
        done: bool,
    ) -> Result<(), SnapshotError> {
        assert!(
            data.len() <= read.max_bytes && (done || !data.is_empty()),
            "{self}: snapshot chunk of {} bytes (done: {done}) for a read of at most {}",
            data.len(),
            read.max_bytes
        );
        let not_wanted = SnapshotError::ChunkNotWanted { to: read.to, offset: read.offset };
        if self.role != Role::Leader {
            return Err(not_wanted);
        }
        let Some(transfer) = self.progress.get_mut(&read.to).and_then(|pr| pr.snapshot.as_mut()) else {
            return Err(not_wanted);
        };
        let expected = (transfer.index, transfer.term, transfer.offset, TransferStage::Reading);
        if expected != (read.snapshot_index, read.snapshot_term, read.offset, transfer.stage) {
            return Err(not_wanted);
        }
        transfer.stage = TransferStage::Sent;
        transfer.waiting_ticks = 0;
        let meta = self.snapshot_meta();
        debug_assert_eq!((meta.index, meta.term), (read.snapshot_index, read.snapshot_term));
        let chunk = InstallSnapshot { meta, offset: read.offset, data, done };
        let body = MessageBody::InstallSnapshot(chunk);
        self.send_now(Message { from: self.id, to: read.to, term: self.term, body });
        self.debug_check_invariants();
        Ok(())
    }

    /// Leader ticks: a chunk neither read nor answered within the timeout is asked for again.
    pub(crate) fn tick_snapshot_transfers(&mut self) {
        let timeout = self.config.snapshot_chunk_timeout_ticks;
        for progress in self.progress.values_mut() {
            if let Some(transfer) = progress.snapshot.as_mut() {
                transfer.tick(timeout);
            }
        }
    }

    /// A follower's answer to a chunk.
    pub(crate) fn handle_snapshot_response(&mut self, from: NodeId, response: InstallSnapshotResponse) {
        let last_index = self.log.last_index();
        let (boundary, _) = self.log.snapshot_boundary();
        let Some(pr) = self.progress.get_mut(&from) else { return };
        pr.recent_active = true;
        match response {
            InstallSnapshotResponse::NextOffset { snapshot_index, snapshot_term, next_offset } => {
                // Only the answer to the chunk in flight moves the transfer (one chunk at a time); it may
                // move it back (the follower lost its partial file) as well as forward.
                if let Some(transfer) = pr.snapshot.as_mut() {
                    let current = (transfer.index, transfer.term) == (snapshot_index, snapshot_term);
                    if current && transfer.stage == TransferStage::Sent {
                        transfer.offset = next_offset;
                        transfer.stage = TransferStage::Idle;
                        transfer.waiting_ticks = 0;
                    }
                }
            }
            InstallSnapshotResponse::Installed { snapshot_index, snapshot_term } => {
                // Like an append acknowledgement: the follower's log matches ours up to the snapshot's
                // index, durably. (A snapshot holds only committed entries, so any leader's log agrees.)
                let known_term = self.log.term_at(snapshot_index);
                if snapshot_index > last_index || known_term.is_some_and(|t| t != snapshot_term) {
                    return; // not a snapshot of this leader's log: a confused or malicious peer
                }
                let updated = pr.maybe_update(snapshot_index);
                if pr.state == ProgressState::Snapshot && pr.next_index > boundary {
                    pr.become_replicate(); // resume appends right after the snapshot
                }
                if updated {
                    self.maybe_commit();
                }
            }
            InstallSnapshotResponse::Stale { commit } => {
                if pr.state == ProgressState::Snapshot {
                    pr.leave_snapshot_for_probe(commit.min(last_index) + 1);
                }
            }
        }
    }

    // ----- Follower: receiving --------------------------------------------------------------------------

    /// InstallSnapshot receiver (§7). The term check is done; the sender is this term's leader.
    pub(crate) fn handle_snapshot_chunk(&mut self, from: NodeId, chunk: InstallSnapshot) {
        // Dissertation §5.3: a snapshot that covers nothing beyond what this node committed brings nothing
        // new (its log already holds every entry the snapshot covers). Refuse it with the commit index, so
        // the leader goes back to appends from there.
        if chunk.meta.index <= self.commit {
            self.reply_to_chunk(from, InstallSnapshotResponse::Stale { commit: self.commit });
            return;
        }
        if self.incoming_snapshot.as_ref().is_some_and(|s| s.complete) {
            // The application is finishing a complete file; the leader's retries need no answer.
            return;
        }
        let term = self.term;
        let same_stream =
            self.incoming_snapshot.as_ref().is_some_and(|s| s.is_stream(from, term, &chunk.meta));
        if !same_stream {
            if chunk.offset != 0 {
                // A stream this node knows nothing of (it restarted, or the leader or snapshot changed):
                // offsets of another stream mean nothing here, so start over.
                self.incoming_snapshot = None;
                self.reply_next_offset(from, &chunk.meta, 0);
                return;
            }
            let meta = chunk.meta.clone();
            self.incoming_snapshot =
                Some(IncomingSnapshot { leader: from, term, meta, next_offset: 0, complete: false });
        }
        let incoming = self.incoming_snapshot.as_mut().expect("set above");
        if chunk.offset != incoming.next_offset {
            // A duplicate, or a chunk sent before our last answer arrived: say where we are.
            let next_offset = incoming.next_offset;
            self.reply_next_offset(from, &chunk.meta, next_offset);
            return;
        }
        incoming.next_offset = chunk.end_offset();
        incoming.complete = chunk.done;
        let next_offset = incoming.next_offset;
        let InstallSnapshot { meta, offset, data, done } = chunk;
        if !done {
            self.reply_next_offset(from, &meta, next_offset);
        }
        // The last chunk is answered only once the snapshot is installed and durable.
        self.snapshot_writes.push(SnapshotWrite { meta, offset, data, done });
    }

    fn reply_next_offset(&mut self, to: NodeId, meta: &SnapshotMeta, next_offset: u64) {
        let response = InstallSnapshotResponse::NextOffset {
            snapshot_index: meta.index,
            snapshot_term: meta.term,
            next_offset,
        };
        self.reply_to_chunk(to, response);
    }

    fn reply_to_chunk(&mut self, to: NodeId, response: InstallSnapshotResponse) {
        let body = MessageBody::InstallSnapshotResponse(response);
        self.send_now(Message { from: self.id, to, term: self.term, body });
    }

    /// The application holds the complete snapshot `meta` (the last [`crate::SnapshotWrite`] was
    /// written): the file is durable and its checksum verified. The core installs it (§7, receiver steps
    /// 6–8): the log keeps the entries after the snapshot only if it holds the snapshot's last entry with
    /// its term, and is discarded otherwise; the commit index moves to the snapshot's index and the
    /// snapshot's configuration is adopted. The next `Ready` carries the [`crate::SnapshotInstall`] for
    /// storage and the state machine; once its persist mark is reported, the leader is told.
    ///
    /// Errors: [`SnapshotError::Stale`] if this node committed the snapshot's index already, or leads
    /// (a leader's log holds every committed entry): nothing changes, discard the file.
    pub fn snapshot_received(&mut self, meta: &SnapshotMeta) -> Result<(), SnapshotError> {
        if self.incoming_snapshot.as_ref().is_some_and(|s| s.is_of(meta)) {
            self.incoming_snapshot = None;
        }
        if meta.index <= self.commit || self.role == Role::Leader {
            return Err(SnapshotError::Stale { index: meta.index, commit: self.commit });
        }
        debug_assert!(self.applying < meta.index, "{self}: handed out entries beyond the snapshot");
        let keep_entries_after = self.log.install_snapshot(meta.index, meta.term);
        self.snapshot_configuration = meta.configuration.clone();
        self.refresh_configuration();
        self.commit_to(meta.index);
        // The snapshot is handed out for the state machine to install, in place of the entries it covers.
        self.applying = meta.index;
        self.snapshot_install = Some(SnapshotInstall { meta: meta.clone(), keep_entries_after });
        if let Some(leader) = self.leader_id {
            let response =
                InstallSnapshotResponse::Installed { snapshot_index: meta.index, snapshot_term: meta.term };
            let body = MessageBody::InstallSnapshotResponse(response);
            let message = Message { from: self.id, to: leader, term: self.term, body };
            // Durability rule: the acknowledgement promises the snapshot (or a log matching it) on disk.
            let needs = Durability { term: self.term, vote: None, log: Some((meta.index, meta.term)) };
            self.send_when_durable(message, needs);
        }
        self.debug_check_invariants();
        Ok(())
    }

    /// The application could not complete the snapshot `meta` it was receiving (writing failed, or the
    /// complete file failed verification) and discarded its partial file. The transfer starts over from
    /// the first byte.
    pub fn snapshot_receive_failed(&mut self, meta: &SnapshotMeta) {
        let Some(incoming) = self.incoming_snapshot.take_if(|s| s.is_of(meta)) else { return };
        if incoming.term == self.term {
            self.reply_next_offset(incoming.leader, meta, 0);
        }
    }
}
