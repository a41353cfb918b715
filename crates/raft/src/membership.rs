//! Membership changes by joint consensus (§6; dissertation §4.3), learners (dissertation §4.2.1), and
//! leadership transfer (dissertation §3.10).
//!
//! **Joint consensus.** A change that alters the voters goes through two configuration entries. The
//! leader first appends C_old,new ([`Configuration`] with `outgoing_voters` = C_old): from the moment it
//! is appended — on every server, committed or not (dissertation §4.1) — elections, commitment,
//! check-quorum and ReadIndex confirmation need a majority of C_old *and* a majority of C_new (all of
//! them go through [`crate::quorum`]'s joint functions). Once C_old,new is committed, the leader appends
//! C_new by itself. A change that only adds or removes learners changes no quorum and is appended
//! directly as the next simple configuration.
//!
//! **One at a time.** A leader refuses a change before it has committed an entry of its own term (until
//! then a change of an earlier leader may still be on its way to commitment) and while the latest
//! configuration entry is uncommitted or joint: so at most one configuration entry is ever uncommitted,
//! and a truncation can only remove that one, falling back to the configuration before it
//! (`refresh_configuration`).
//!
//! **A leader outside C_new** keeps leading through the change — replicating, committing by C_new's
//! majority without counting itself (it is not in C_new's voter set, so [`crate::quorum`] never asks it)
//! — and steps down once C_new is committed (§6). Removed servers cannot disrupt the rest: their logs
//! lack C_new, so pre-vote fails for them without raising anyone's term, and leader stickiness ignores
//! them while a leader is heard.
//!
//! **Leadership transfer.** The leader stops accepting proposals, brings the target's log up to its own,
//! and sends it TimeoutNow; the target campaigns at once, without pre-vote, with the transfer mark that
//! overrides leader stickiness. If no new leader has taken over after an election timeout, the transfer
//! is abandoned and the leader accepts proposals again.

use crate::error::{ConfChangeError, TransferError};
use crate::message::{Message, MessageBody};
use crate::progress::Progress;
use crate::quorum;
use crate::raft::{injected, Raft, Role};
use crate::types::{ConfChange, Configuration, EntryPayload, Index, NodeId};

/// A leadership transfer under way (leader only).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct LeadershipTransfer {
    pub target: NodeId,
    /// Leader ticks since the transfer began; at the election timeout it is abandoned.
    pub elapsed_ticks: u64,
}

/// The simple configuration that `change` leads to from the simple configuration `current`, checked for
/// everything that does not depend on the leader's replication state.
pub fn target_of(current: &Configuration, change: &ConfChange) -> Result<Configuration, ConfChangeError> {
    debug_assert!(!current.is_joint(), "a change starts from a simple configuration");
    let mut target = current.clone();
    match change {
        &ConfChange::AddLearner(id) => {
            check_id(id)?;
            if current.contains(id) {
                return Err(ConfChangeError::AlreadyMember { id });
            }
            target.learners.insert(id);
        }
        &ConfChange::PromoteLearner(id) => {
            check_id(id)?;
            if current.voters.contains(&id) {
                return Err(ConfChangeError::AlreadyMember { id });
            }
            if !target.learners.remove(&id) {
                return Err(ConfChangeError::NotALearner { id });
            }
            target.voters.insert(id);
        }
        &ConfChange::RemoveMember(id) => {
            check_id(id)?;
            if !current.contains(id) {
                return Err(ConfChangeError::NotAMember { id });
            }
            target.voters.remove(&id);
            target.learners.remove(&id);
        }
        ConfChange::Target { voters, learners } => {
            for &id in voters.iter().chain(learners) {
                check_id(id)?;
            }
            if let Some(&id) = voters.intersection(learners).next() {
                return Err(ConfChangeError::VoterAndLearner { id });
            }
            target =
                Configuration { voters: voters.clone(), learners: learners.clone(), ..Default::default() };
        }
    }
    if target.voters.is_empty() {
        return Err(ConfChangeError::NoVoters);
    }
    if &target == current {
        return Err(ConfChangeError::NothingToChange);
    }
    Ok(target)
}

/// True if `next` may directly follow `current` in a log (dissertation §4.3): a simple configuration is
/// followed by the joint one that leaves it, or by one with the same voters (learners only changed); a
/// joint configuration only by its own C_new.
fn legal_successor(current: &Configuration, next: &Configuration) -> bool {
    if current.is_joint() {
        return *next == current.target();
    }
    if next.is_joint() {
        next.outgoing_voters == current.voters
    } else {
        next.voters == current.voters
    }
}

fn check_id(id: NodeId) -> Result<(), ConfChangeError> {
    if id == 0 {
        Err(ConfChangeError::ZeroId)
    } else {
        Ok(())
    }
}

impl Raft {
    /// Asks the leader to change the cluster's membership. Returns the index of the configuration entry
    /// appended: C_old,new for a change of voters (the leader appends C_new by itself once that one is
    /// committed), or the new simple configuration for a change of learners only. Watch
    /// [`Raft::configuration`] and [`Raft::conf_change_in_progress`] for the end of the change.
    ///
    /// Refused, appending nothing, when this node does not lead, has not committed an entry of its term
    /// yet, is transferring leadership, or another change is in progress — and when the change itself is
    /// wrong: see [`ConfChangeError`]. A new voter must be a learner within
    /// [`crate::Config::max_promotion_lag_entries`] of the leader's last index.
    pub fn propose_conf_change(&mut self, change: ConfChange) -> Result<Index, ConfChangeError> {
        if self.role != Role::Leader {
            return Err(ConfChangeError::NotLeader { leader_hint: self.leader_id });
        }
        if let Some(transfer) = self.transfer {
            return Err(ConfChangeError::LeadershipTransferInProgress { target: transfer.target });
        }
        if self.commit < self.term_start_index {
            return Err(ConfChangeError::LeaderNotReady);
        }
        if self.conf_change_in_progress() {
            return Err(ConfChangeError::ChangeInProgress { index: self.configuration_index });
        }
        let current = self.configuration.clone();
        let target = target_of(&current, &change)?;
        let last_index = self.log.last_index();
        for &id in target.voters.difference(&current.voters) {
            if !current.learners.contains(&id) {
                return Err(ConfChangeError::NotALearner { id });
            }
            let match_index = self.progress.get(&id).map_or(0, |pr| pr.match_index);
            // It must hold the configuration in force, durably: a voter that has never received a
            // configuration refuses to vote (it cannot tell a new member from a stranger), so promoting
            // it before then could leave a joint configuration that no candidate can win.
            let holds_configuration = match_index >= self.configuration_index;
            if !holds_configuration
                || match_index.saturating_add(self.config.max_promotion_lag_entries) < last_index
            {
                return Err(ConfChangeError::LearnerBehind { id, match_index, last_index });
            }
        }
        let next = if target.voters == current.voters || injected!(self, SkipJointConsensus) {
            target
        } else {
            Configuration { outgoing_voters: current.voters, ..target }
        };
        Ok(self.append_configuration(next))
    }

    /// True while a membership change is under way: the latest configuration entry is not committed
    /// yet, or the configuration is still joint (C_new not appended yet). A leader accepts no new change
    /// meanwhile.
    pub fn conf_change_in_progress(&self) -> bool {
        self.configuration_index > self.commit || self.configuration.is_joint()
    }

    /// Index of the entry the configuration in force came from (the snapshot's index if it came from
    /// the snapshot; 0 for the bootstrap configuration).
    pub fn configuration_index(&self) -> Index {
        self.configuration_index
    }

    /// Leader: appends `configuration`, which takes effect at once (dissertation §4.1), and starts or
    /// stops tracking the members it adds or removes.
    fn append_configuration(&mut self, configuration: Configuration) -> Index {
        assert_eq!(self.role, Role::Leader, "{self}: only a leader appends configurations");
        // At most one change in flight: the configuration entry before this one is committed.
        assert!(
            self.configuration_index <= self.commit,
            "{self}: configuration entry {} is uncommitted, yet another one is appended",
            self.configuration_index
        );
        assert!(!configuration.voters.is_empty(), "{self}: a configuration without voters");
        debug_assert!(
            legal_successor(&self.configuration, &configuration) || injected!(self, SkipJointConsensus),
            "{self}: configuration {configuration} may not follow {}",
            self.configuration
        );
        let index = self.log.append_new(self.term, EntryPayload::Config(configuration.clone()));
        self.configuration = configuration;
        self.configuration_index = index;
        self.configuration_term = self.term;
        self.sync_progress_with_configuration();
        index
    }

    /// Leader: one progress entry for every member (and itself), none for anyone else.
    pub(crate) fn sync_progress_with_configuration(&mut self) {
        let members = self.configuration.members();
        let next_index = self.log.last_index() + 1;
        for &id in &members {
            self.progress.entry(id).or_insert_with(|| Progress::new(next_index));
        }
        let own = self.id;
        self.progress.retain(|&id, _| id == own || members.contains(&id));
        self.peers = self.progress.keys().copied().filter(|&id| id != own).collect();
    }

    /// Leader, after the commit index moved: once C_old,new is committed, append C_new; once a C_new
    /// that leaves this leader out is committed, step down (§6).
    pub(crate) fn maybe_finish_conf_change(&mut self) {
        if self.role != Role::Leader || self.configuration_index > self.commit {
            return;
        }
        if self.configuration.is_joint() {
            let target = self.configuration.target();
            self.append_configuration(target);
        } else if !quorum::is_voter(&self.configuration, self.id) {
            self.become_follower(self.term, None);
        }
    }

    // ----- Leadership transfer ----------------------------------------------------------------------------

    /// Asks the leader to hand leadership to `target`, a voter (dissertation §3.10). From now on the
    /// leader refuses proposals ([`crate::ProposeError::LeadershipTransferInProgress`]) and membership
    /// changes; it brings `target` up to date and then sends it TimeoutNow. If no new leader has taken
    /// over after an election timeout, the transfer is abandoned and proposals are accepted again. A
    /// second call for the same target changes nothing; for another target it starts over.
    pub fn transfer_leadership(&mut self, target: NodeId) -> Result<(), TransferError> {
        if self.role != Role::Leader {
            return Err(TransferError::NotLeader { leader_hint: self.leader_id });
        }
        if target == self.id {
            return Err(TransferError::AlreadyLeader { target });
        }
        if !self.configuration.voters.contains(&target) {
            return Err(TransferError::NotAVoter { target });
        }
        // The target's vote requests will override followers' stickiness, which is what a lease relies on:
        // no more leases in this term, even if the transfer is abandoned (dissertation §6.4.1).
        self.lease.transfer_started();
        if self.transfer.map(|t| t.target) != Some(target) {
            self.transfer = Some(LeadershipTransfer { target, elapsed_ticks: 0 });
            // The target must catch up within one election timeout. Appends still in flight to it may
            // have been lost (it lagged for a reason), and waiting for the stall timeout would use the
            // whole transfer's time: probe it again from its match index at once.
            let last_index = self.log.last_index();
            if let Some(pr) = self.progress.get_mut(&target) {
                if pr.state == crate::progress::ProgressState::Replicate && pr.match_index < last_index {
                    pr.become_probe();
                }
            }
        }
        self.maybe_send_timeout_now(target);
        Ok(())
    }

    /// The node a leadership transfer under way hands over to, if any (leader only).
    pub fn leadership_transfer_target(&self) -> Option<NodeId> {
        self.transfer.map(|t| t.target)
    }

    /// Leader: if `id` is the transfer's target and holds the leader's whole log, tell it to campaign.
    /// Called whenever the target answers; a duplicate TimeoutNow is harmless (once the target has moved
    /// to a new term, one from the old term is stale and dropped).
    pub(crate) fn maybe_send_timeout_now(&mut self, id: NodeId) {
        if self.role != Role::Leader || self.transfer.map(|t| t.target) != Some(id) {
            return;
        }
        let caught_up = self.progress.get(&id).is_some_and(|pr| pr.match_index == self.log.last_index());
        if caught_up {
            self.send_now(Message { from: self.id, to: id, term: self.term, body: MessageBody::TimeoutNow });
        }
    }

    /// Leader tick: abandon a transfer that has not succeeded within an election timeout.
    pub(crate) fn tick_transfer(&mut self) {
        let Some(transfer) = self.transfer.as_mut() else { return };
        transfer.elapsed_ticks += 1;
        if transfer.elapsed_ticks >= self.config.election_timeout_ticks {
            self.transfer = None;
        }
    }

    /// Follower: the leader asks this node to take over. A voter campaigns at once, skipping pre-vote
    /// (the leader vouches that it is up to date), with the transfer mark so that followers who just
    /// heard from the leader still vote.
    pub(crate) fn handle_timeout_now(&mut self) {
        if !self.is_promotable() {
            return;
        }
        self.campaign_now(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(voters: &[NodeId], learners: &[NodeId]) -> Configuration {
        Configuration::with_members(voters.iter().copied(), learners.iter().copied())
    }

    #[test]
    fn each_change_leads_to_its_target() {
        let current = config(&[1, 2, 3], &[4]);
        assert_eq!(target_of(&current, &ConfChange::AddLearner(5)), Ok(config(&[1, 2, 3], &[4, 5])));
        assert_eq!(target_of(&current, &ConfChange::PromoteLearner(4)), Ok(config(&[1, 2, 3, 4], &[])));
        assert_eq!(target_of(&current, &ConfChange::RemoveMember(2)), Ok(config(&[1, 3], &[4])));
        assert_eq!(target_of(&current, &ConfChange::RemoveMember(4)), Ok(config(&[1, 2, 3], &[])));
        let grow = ConfChange::Target { voters: [1, 2, 3, 4].into(), learners: [].into() };
        assert_eq!(target_of(&current, &grow), Ok(config(&[1, 2, 3, 4], &[])));
    }

    #[test]
    fn wrong_changes_are_refused_with_the_reason() {
        let current = config(&[1, 2, 3], &[4]);
        assert_eq!(
            target_of(&current, &ConfChange::AddLearner(2)),
            Err(ConfChangeError::AlreadyMember { id: 2 })
        );
        assert_eq!(target_of(&current, &ConfChange::AddLearner(0)), Err(ConfChangeError::ZeroId));
        assert_eq!(
            target_of(&current, &ConfChange::PromoteLearner(5)),
            Err(ConfChangeError::NotALearner { id: 5 })
        );
        assert_eq!(
            target_of(&current, &ConfChange::RemoveMember(9)),
            Err(ConfChangeError::NotAMember { id: 9 })
        );
        let only = config(&[1], &[]);
        assert_eq!(target_of(&only, &ConfChange::RemoveMember(1)), Err(ConfChangeError::NoVoters));
        let same = ConfChange::Target { voters: [1, 2, 3].into(), learners: [4].into() };
        assert_eq!(target_of(&current, &same), Err(ConfChangeError::NothingToChange));
        let both = ConfChange::Target { voters: [1, 2].into(), learners: [2].into() };
        assert_eq!(target_of(&current, &both), Err(ConfChangeError::VoterAndLearner { id: 2 }));
    }
}
