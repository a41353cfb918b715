//! Log replication (§5.3) and commitment (§5.4.2): the leader's side (sending appends and heartbeats,
//! reading answers, advancing the commit index) and the follower's side (the AppendEntries receiver).

use crate::message::{AppendRequest, AppendResponse, Heartbeat, HeartbeatResponse, Message, MessageBody};
use crate::progress::ProgressState;
use crate::quorum;
use crate::raft::{injected, Raft};
use crate::ready::Durability;
use crate::types::{EntryPayload, Index, NodeId};

impl Raft {
    // ----- Leader -----------------------------------------------------------------------------------------

    /// True if some follower is owed an append: entries it has not been sent, a probe, or news of a
    /// commit index it could use.
    pub(crate) fn has_appends_to_send(&self) -> bool {
        self.peers.iter().any(|&id| self.snapshot_is_due(id) || self.append_is_due(id))
    }

    fn append_is_due(&self, to: NodeId) -> bool {
        let pr = &self.progress[&to];
        if pr.is_paused(self.config.max_inflight_messages) || self.log.term_at(pr.next_index - 1).is_none() {
            return false;
        }
        let last_index = self.log.last_index();
        let has_entries = pr.next_index <= last_index;
        let needs_probe = pr.state == ProgressState::Probe && pr.match_index < last_index;
        // The follower takes commit = min(leader commit, last index of the append), so an empty append
        // tells it something only if that minimum is above what it was last told.
        let commit_news = self.commit.min(pr.next_index - 1) > pr.commit_sent;
        has_entries || needs_probe || commit_news
    }

    /// Sends every append that is due, and moves snapshot transfers along for followers that need
    /// compacted entries. Called when a `Ready` is collected, so that all proposals made since the last
    /// one travel together (batching), and a commit advance is announced once.
    pub(crate) fn send_appends(&mut self) {
        for i in 0..self.peers.len() {
            let to = self.peers[i];
            if self.maybe_send_snapshot(to) {
                continue;
            }
            // Pipelining: keep sending while entries remain and the in-flight window has room.
            let mut sent = 0;
            while self.append_is_due(to) && sent < self.config.max_inflight_messages {
                if !self.send_append(to) {
                    break;
                }
                sent += 1;
            }
        }
    }

    /// Sends one AppendEntries to `to`, starting at its `next_index`. Returns false if it cannot (the
    /// entries it needs were compacted: `maybe_send_snapshot` takes over on the next `Ready`).
    fn send_append(&mut self, to: NodeId) -> bool {
        let pr = &self.progress[&to];
        let prev_log_index = pr.next_index - 1;
        let Some(prev_log_term) = self.log.term_at(prev_log_index) else {
            return false;
        };
        let entries = self
            .log
            .entries_from(
                pr.next_index,
                self.config.max_entries_per_message,
                self.config.max_bytes_per_message,
            )
            .to_vec();
        let last_sent = prev_log_index + entries.len() as Index;
        let commit = self.commit;
        let pr = self.progress.get_mut(&to).expect("progress exists for every follower");
        pr.on_append_sent(last_sent, entries.len());
        pr.commit_sent = pr.commit_sent.max(commit.min(last_sent));
        let request = AppendRequest { prev_log_index, prev_log_term, entries, leader_commit: commit };
        self.send_now(Message {
            from: self.id,
            to,
            term: self.term,
            body: MessageBody::AppendRequest(request),
        });
        true
    }

    /// One heartbeat to every follower; also starts a new ReadIndex confirmation round (§6.4).
    pub(crate) fn broadcast_heartbeat(&mut self) {
        self.heartbeat_elapsed = 0;
        let round = self.reads.start_round();
        if self.leases_enabled() {
            self.lease.round_sent(round, self.now_nanos);
        }
        for i in 0..self.peers.len() {
            let to = self.peers[i];
            let pr = &self.progress[&to];
            // Never tell a follower a commit index beyond what it is known to hold: it could not verify it.
            let commit = self.commit.min(pr.match_index);
            let body = MessageBody::Heartbeat(Heartbeat { commit, read_round: round });
            self.send_now(Message { from: self.id, to, term: self.term, body });
        }
        self.maybe_confirm_reads();
    }

    /// An answer to an append.
    pub(crate) fn handle_append_response(&mut self, from: NodeId, response: AppendResponse) {
        let last_index = self.log.last_index();
        let Some(pr) = self.progress.get_mut(&from) else { return };
        pr.recent_active = true;
        match response {
            AppendResponse::Accepted { match_index } => {
                if match_index > last_index {
                    return; // acknowledges entries this leader never sent: not from this term's log
                }
                let was_probe_match = pr.state == ProgressState::Probe && match_index >= pr.match_index;
                let updated = pr.maybe_update(match_index);
                if pr.state == ProgressState::Probe && (updated || was_probe_match) {
                    pr.become_replicate();
                }
                if updated {
                    self.maybe_commit();
                }
                self.maybe_send_timeout_now(from);
            }
            AppendResponse::Rejected { rejected_prev_index, hint_index, hint_term, .. } => {
                // Jump over every entry that cannot match: the largest index in the leader's log at or below
                // the hint whose term is at most the hint's term is the next candidate for a match.
                let (boundary, _) = self.log.snapshot_boundary();
                let next_prev = if hint_index < boundary {
                    // Below our snapshot the terms are gone: the follower needs the snapshot, which
                    // `maybe_send_snapshot` notices once `next_index` is at or below the boundary.
                    hint_index
                } else if hint_term > 0 {
                    self.log.last_index_with_term_at_most(hint_index, hint_term)
                } else {
                    hint_index
                };
                let pr = self.progress.get_mut(&from).expect("checked above");
                pr.maybe_decrease_to(rejected_prev_index, next_prev + 1);
            }
        }
    }

    /// An answer to a heartbeat: the follower is alive, and confirms the leader's round for reads.
    pub(crate) fn handle_heartbeat_response(&mut self, from: NodeId, response: HeartbeatResponse) {
        let Some(pr) = self.progress.get_mut(&from) else { return };
        pr.on_heartbeat_response();
        self.reads.record_ack(from, response.read_round);
        if self.leases_enabled() {
            self.lease.record_ack(from, response.read_round);
        }
        self.maybe_confirm_reads();
        self.maybe_send_timeout_now(from);
    }

    /// §5.3–5.4.2: the commit index is the highest index stored on a majority — the leader counting itself
    /// only up to what its own disk holds — provided that entry is from the leader's current term. An
    /// older-term entry is committed only indirectly, by a later current-term entry (Figure 8). Returns
    /// true if the commit index moved.
    pub(crate) fn maybe_commit(&mut self) -> bool {
        let majority_index = quorum::committed_index(&self.configuration, |id| {
            self.progress.get(&id).map(|pr| pr.match_index)
        });
        let majority_index = majority_index.min(self.log.last_index());
        if majority_index <= self.commit {
            return false;
        }
        let current_term = self.log.term_at(majority_index) == Some(self.term);
        if !current_term && !injected!(self, CommitOldTermByCounting) {
            return false;
        }
        let old_commit = self.commit;
        self.commit_to(majority_index);
        self.release_uncommitted_bytes(old_commit);
        self.maybe_confirm_reads();
        self.maybe_finish_conf_change();
        true
    }

    /// Commitment frees the proposal budget the newly committed entries of this term used.
    fn release_uncommitted_bytes(&mut self, old_commit: Index) {
        for entry in self.log.slice(old_commit + 1, self.commit) {
            if entry.term == self.term && matches!(entry.payload, EntryPayload::Command(_)) {
                self.uncommitted_bytes = self.uncommitted_bytes.saturating_sub(entry.size_bytes());
            }
        }
    }

    // ----- Follower ---------------------------------------------------------------------------------------

    /// AppendEntries receiver (Figure 2). The term check is done; the sender is this term's leader.
    pub(crate) fn handle_append_request(&mut self, from: NodeId, request: AppendRequest) {
        let AppendRequest { mut prev_log_index, mut prev_log_term, entries, leader_commit } = request;
        let rejected_prev_index = prev_log_index;
        let mut entries = &entries[..];
        // Entries up to our commit index are in every future leader's log (Leader Completeness, §5.4.3), so
        // they match; skip them rather than compare them (they may also be compacted away).
        if prev_log_index < self.commit {
            let already_committed = self.commit - prev_log_index;
            if entries.len() as Index <= already_committed {
                // Everything in this append is already committed here (a late or duplicated message).
                // Our log matches any current leader's up to our commit index, so acknowledge that much
                // (etcd-io/raft does the same).
                self.acknowledge_append(from, self.commit);
                return;
            }
            entries = &entries[already_committed as usize..];
            prev_log_index = self.commit;
            prev_log_term =
                self.log.term_at(self.commit).expect("the commit index is at or after the boundary");
        }
        let touches_configuration = entries.iter().any(|e| matches!(e.payload, EntryPayload::Config(_)));
        match self.log.try_append(prev_log_index, prev_log_term, entries, self.commit) {
            Ok(last_new) => {
                if touches_configuration
                    || !self.log.matches(self.configuration_index, self.configuration_term)
                {
                    self.refresh_configuration();
                }
                // Figure 2, step 5, bounded by what this append proved matches the leader.
                self.commit_to(leader_commit.min(last_new));
                self.acknowledge_append(from, last_new);
            }
            Err(rejection) => {
                let response = AppendResponse::Rejected {
                    rejected_prev_index,
                    hint_index: rejection.hint_index,
                    hint_term: rejection.hint_term,
                    last_index: self.log.last_index(),
                };
                self.send_now(Message {
                    from: self.id,
                    to: from,
                    term: self.term,
                    body: MessageBody::AppendResponse(response),
                });
            }
        }
    }

    /// An acknowledgement promises the leader that our log matches its own up to `match_index` *durably*,
    /// so it is held until the caller reports that prefix (and our term) on disk.
    fn acknowledge_append(&mut self, to: NodeId, match_index: Index) {
        let response = AppendResponse::Accepted { match_index };
        let message =
            Message { from: self.id, to, term: self.term, body: MessageBody::AppendResponse(response) };
        if injected!(self, AckBeforePersist) {
            self.send_now(message);
            return;
        }
        let entry_term = self.log.term_at(match_index).expect("an acknowledged entry is held");
        let needs = Durability { term: self.term, vote: None, log: Some((match_index, entry_term)) };
        self.send_when_durable(message, needs);
    }

    /// A heartbeat: learn the commit index (the leader caps it at what we are known to hold) and answer,
    /// echoing the read round.
    pub(crate) fn handle_heartbeat(&mut self, from: NodeId, heartbeat: Heartbeat) {
        self.commit_to(heartbeat.commit.min(self.log.last_index()));
        let body = MessageBody::HeartbeatResponse(HeartbeatResponse { read_round: heartbeat.read_round });
        self.send_now(Message { from: self.id, to: from, term: self.term, body });
    }
}
