//! Leader election (§5.2, §5.4.1) with pre-vote (dissertation §9.6), leader stickiness (§4.2.3) and
//! check-quorum (§6.2).

use crate::message::{Message, MessageBody, VoteRequest, VoteResponse};
use crate::quorum::{self, VoteResult};
use crate::raft::{injected, Raft, Role};
use crate::ready::Durability;
use crate::types::{NodeId, Term};

impl Raft {
    /// Followers and candidates: count toward the election timeout; on expiry, campaign (§5.2: "If
    /// election timeout elapses without receiving AppendEntries RPC from current leader or granting vote
    /// to candidate: convert to candidate").
    pub(crate) fn tick_election(&mut self) {
        self.election_elapsed += 1;
        if self.election_elapsed >= self.randomized_election_timeout {
            self.election_elapsed = 0;
            if self.is_promotable() {
                self.campaign();
            }
        }
    }

    /// Leaders: send heartbeats on schedule, and once per election timeout check that a quorum is still
    /// there (check-quorum, dissertation §6.2): a leader cut off from a majority steps down instead of
    /// accepting proposals it can never commit.
    pub(crate) fn tick_leader(&mut self) {
        self.heartbeat_elapsed += 1;
        self.election_elapsed += 1;
        if self.election_elapsed >= self.config.election_timeout_ticks {
            self.election_elapsed = 0;
            if self.config.check_quorum && !self.quorum_recently_active() {
                self.become_follower(self.term, None);
                return;
            }
            for (&id, progress) in self.progress.iter_mut() {
                progress.recent_active = id == self.id;
            }
        }
        let stall_limit = self.config.election_timeout_ticks;
        for (&id, progress) in self.progress.iter_mut() {
            if id != self.id {
                progress.tick_stalled(stall_limit);
            }
        }
        self.tick_snapshot_transfers();
        self.tick_transfer();
        if self.heartbeat_elapsed >= self.config.heartbeat_interval_ticks {
            self.broadcast_heartbeat();
        }
    }

    fn quorum_recently_active(&self) -> bool {
        let result = quorum::vote_result(&self.configuration, |id| {
            if id == self.id {
                Some(true)
            } else {
                Some(self.progress.get(&id).is_some_and(|pr| pr.recent_active))
            }
        });
        result == VoteResult::Won
    }

    /// Starts an election: a pre-vote round first if configured, else a real one.
    pub(crate) fn campaign(&mut self) {
        if self.config.pre_vote {
            self.become_pre_candidate();
            self.request_votes(true, false);
            self.poll_votes();
        } else {
            self.campaign_now(false);
        }
    }

    /// Starts a real election at once. `leadership_transfer`: the leader asked for it (TimeoutNow), so
    /// the requests carry the mark that overrides leader stickiness (dissertation §3.10).
    pub(crate) fn campaign_now(&mut self, leadership_transfer: bool) {
        self.become_candidate();
        self.request_votes(false, leadership_transfer);
        self.poll_votes();
    }

    /// Sends (pre-)vote requests to every other voter. A pre-vote request asks about the next term
    /// without anyone moving to it; a real one goes out only once the candidate's new term and self-vote
    /// are durable.
    fn request_votes(&mut self, pre_vote: bool, leadership_transfer: bool) {
        let term = if pre_vote { self.term + 1 } else { self.term };
        let request = VoteRequest {
            pre_vote,
            last_log_index: self.log.last_index(),
            last_log_term: self.log.last_term(),
            leadership_transfer,
        };
        for to in quorum::all_voters(&self.configuration) {
            if to == self.id {
                continue;
            }
            let message = Message { from: self.id, to, term, body: MessageBody::VoteRequest(request) };
            if pre_vote {
                self.send_now(message);
            } else {
                self.send_when_durable(message, Durability { term, vote: Some(self.id), log: None });
            }
        }
    }

    /// True while this node has heard from a leader within the minimum election timeout (a leader hears
    /// from itself): it then refuses to help depose that leader (dissertation §4.2.3). Counted in ticks
    /// since the last contact, not "a leader id is known", so a leader that went silent stops protecting
    /// itself after one timeout.
    ///
    /// Only with check-quorum: stickiness relies on a leader that can no longer hear a majority stepping
    /// down (and so falling silent). Without it, a leader cut off one way (its heartbeats arrive, the
    /// answers do not) would keep every follower in its lease forever and the cluster could never elect
    /// a replacement. etcd-io/raft ties the two together for the same reason.
    pub(crate) fn in_leader_lease(&self) -> bool {
        self.config.check_quorum && self.ticks_since_leader_contact < self.config.election_timeout_ticks
    }

    /// RequestVote receiver (Figure 2), for pre-votes too. `term` is the request's term; for a real vote
    /// the term check in `step` has already brought this node to it.
    pub(crate) fn handle_vote_request(&mut self, from: NodeId, term: Term, request: VoteRequest) {
        let up_to_date = self.log.is_up_to_date(request.last_log_index, request.last_log_term);
        // A node that has never been given a configuration is not yet a member and must not vote
        // (dissertation §4.1: a new server catches up before it counts).
        let has_configuration = !quorum::all_voters(&self.configuration).is_empty();
        let lease_allows = !self.in_leader_lease() || request.leadership_transfer;
        let already_voted_for_it = self.vote == Some(from);
        // §5.2: at most one vote per term, first come first served; a repeated request from the candidate
        // this node voted for is answered again. A pre-vote for a later term commits to nothing.
        let free_to_vote = already_voted_for_it
            || (self.vote.is_none() && self.leader_id.is_none())
            || (request.pre_vote && term > self.term)
            || injected!(self, DoubleVote);
        let granted = has_configuration
            && up_to_date
            && free_to_vote
            && (lease_allows || already_voted_for_it)
            && (request.pre_vote || self.role != Role::Leader);
        let response = VoteResponse { pre_vote: request.pre_vote, granted };
        if request.pre_vote {
            // A pre-vote grant carries the term asked about (nobody moves to it); a refusal carries our own
            // term, so a pre-candidate whose term fell behind catches up (see `step_higher_term`).
            let term = if granted { term } else { self.term };
            let body = MessageBody::VoteResponse(response);
            self.send_now(Message { from: self.id, to: from, term, body });
            return;
        }
        let message =
            Message { from: self.id, to: from, term: self.term, body: MessageBody::VoteResponse(response) };
        if granted {
            self.vote = Some(from);
            // Granting a vote resets the election timer (Figure 2, rules for followers).
            self.election_elapsed = 0;
            self.send_when_durable(message, Durability { term: self.term, vote: Some(from), log: None });
        } else {
            self.send_now(message);
        }
    }

    /// A (pre-)vote answer, while this node is a (pre-)candidate.
    pub(crate) fn handle_vote_response(&mut self, from: NodeId, term: Term, response: VoteResponse) {
        let current_round = match self.role {
            // Grants name the next term; refusals name the refuser's term, here equal to ours (a higher
            // one made us a follower in `step`; a lower one is stale and was dropped there).
            Role::PreCandidate => response.pre_vote && term == self.term + u64::from(response.granted),
            Role::Candidate => !response.pre_vote && term == self.term,
            _ => false,
        };
        if current_round {
            self.votes.entry(from).or_insert(response.granted);
            self.poll_votes();
        }
    }

    /// A candidate's own vote counts once the caller reported it durable.
    pub(crate) fn maybe_count_own_vote(&mut self) {
        let persisted = self.persisted_hard_state;
        if persisted.term == self.term
            && persisted.vote == Some(self.id)
            && !self.votes.contains_key(&self.id)
        {
            self.votes.insert(self.id, true);
            self.poll_votes();
        }
    }

    /// Acts on the current count: a won pre-election becomes a real one, a won election makes a leader,
    /// a lost one makes a follower again.
    fn poll_votes(&mut self) {
        let result = quorum::vote_result(&self.configuration, |id| self.votes.get(&id).copied());
        match (self.role, result) {
            (Role::PreCandidate, VoteResult::Won) => {
                self.become_candidate();
                self.request_votes(false, false);
                // A durable self-vote may already be there (a single-node cluster still has to wait
                // for it; `on_persisted` counts it).
                self.maybe_count_own_vote();
            }
            (Role::Candidate, VoteResult::Won) => {
                self.become_leader();
            }
            (Role::PreCandidate | Role::Candidate, VoteResult::Lost) => {
                self.become_follower(self.term, None);
            }
            _ => {}
        }
    }
}
