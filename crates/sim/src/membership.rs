//! Random membership changes, a swarm class of their own (issue 10): every so often the driver draws a
//! new *target* configuration — grow to every node, shrink to a bare majority, replace the leader, add a
//! learner, remove a member, or any random mix — or asks the leader to hand leadership to another voter.
//! Between draws it walks the cluster toward the target one legal change at a time, on whichever node
//! leads: first every missing member joins as a learner, then one `Target` change (which the core runs
//! through the joint configuration C_old,new, and refuses until the learners have caught up).
//!
//! With the class on, the cluster may start smaller than the simulated node count (the spare nodes boot
//! with an empty configuration, like servers started with `--join`), and the liveness phase draws a final
//! target that the healed cluster must reach before the usual liveness probes run against its members.

use std::collections::BTreeSet;

use raft::{ConfChange, Configuration, NodeId};
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::network::TimeUs;

/// At the class's maximum, a new target (or a transfer) this often on average.
pub const MIN_MEAN_CHANGE_GAP_US: f64 = 300_000.0;
/// At the lowest non-zero level, this often.
const MAX_MEAN_CHANGE_GAP_US: f64 = 5_000_000.0;
/// The driver tries the next step toward the target this often (five ticks).
const STEP_EVERY_US: TimeUs = 50_000;

/// What the driver asks of the leader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MembershipAction {
    Change(ConfChange),
    TransferLeadership(NodeId),
}

/// What the driver needs to know about the current leader.
pub struct LeaderView<'a> {
    pub id: NodeId,
    pub configuration: &'a Configuration,
    pub change_in_progress: bool,
}

/// The membership driver of one run.
pub struct MembershipDriver {
    rng: ChaCha8Rng,
    nodes: Vec<NodeId>,
    mean_gap_us: f64,
    /// When the next target or transfer is drawn (`None`: no more, in the liveness phase).
    next_draw_at: Option<TimeUs>,
    next_step_at: TimeUs,
    /// The configuration the driver walks toward (always simple).
    target: Option<Configuration>,
    /// The voters the cluster starts with.
    initial_voters: Vec<NodeId>,
}

impl MembershipDriver {
    /// `None` when the class is off (level 0): the run then never changes membership and starts with every
    /// node as a voter, exactly as before the class existed.
    pub fn new(level: f64, nodes: Vec<NodeId>, mut rng: ChaCha8Rng) -> Option<Self> {
        if level <= 0.0 {
            return None;
        }
        let mean_gap_us =
            MAX_MEAN_CHANGE_GAP_US * (MIN_MEAN_CHANGE_GAP_US / MAX_MEAN_CHANGE_GAP_US).powf(level);
        let count = rng.gen_range(min_voters(nodes.len())..=nodes.len());
        let initial_voters = nodes[..count].to_vec();
        let mut driver = MembershipDriver {
            rng,
            nodes,
            mean_gap_us,
            next_draw_at: None,
            next_step_at: STEP_EVERY_US,
            target: None,
            initial_voters,
        };
        driver.next_draw_at = Some(driver.gap());
        Some(driver)
    }

    pub fn initial_voters(&self) -> &[NodeId] {
        &self.initial_voters
    }

    pub fn target(&self) -> Option<&Configuration> {
        self.target.as_ref()
    }

    fn gap(&mut self) -> TimeUs {
        let uniform: f64 = self.rng.gen_range(f64::EPSILON..1.0);
        ((-uniform.ln() * self.mean_gap_us) as TimeUs).max(1)
    }

    pub fn next_event_at(&self) -> Option<TimeUs> {
        Some(self.next_step_at.min(self.next_draw_at.unwrap_or(TimeUs::MAX)))
    }

    /// Everything due at `now`, to be asked of `leader` (if there is one).
    pub fn poll(&mut self, now: TimeUs, leader: Option<LeaderView<'_>>) -> Vec<MembershipAction> {
        let mut actions = Vec::new();
        if let Some(at) = self.next_draw_at.filter(|&at| at <= now) {
            self.next_draw_at = Some(at + self.gap());
            if let Some(leader) = &leader {
                if self.rng.gen_bool(0.2) {
                    let others: Vec<NodeId> =
                        leader.configuration.voters.iter().copied().filter(|&v| v != leader.id).collect();
                    if let Some(&to) = others.choose(&mut self.rng) {
                        actions.push(MembershipAction::TransferLeadership(to));
                    }
                } else {
                    self.target = Some(self.draw_target(leader.configuration, leader.id));
                }
            }
        }
        if self.next_step_at <= now {
            self.next_step_at = now + STEP_EVERY_US;
            if let (Some(leader), Some(target)) = (&leader, &self.target) {
                if !leader.change_in_progress {
                    if let Some(change) = next_step(leader.configuration, target) {
                        actions.push(MembershipAction::Change(change));
                    }
                }
            }
        }
        actions
    }

    /// The liveness phase: no new targets or transfers; the cluster must reach the target drawn here.
    pub fn final_target(&mut self) -> Configuration {
        self.next_draw_at = None;
        let target = if self.rng.gen_bool(0.5) {
            Configuration::with_voters(self.nodes.iter().copied())
        } else {
            self.random_configuration()
        };
        self.target = Some(target.clone());
        target
    }

    fn draw_target(&mut self, current: &Configuration, leader: NodeId) -> Configuration {
        let current = current.target();
        let min = min_voters(self.nodes.len());
        let outsiders: Vec<NodeId> =
            self.nodes.iter().copied().filter(|&n| !current.voters.contains(&n)).collect();
        match self.rng.gen_range(0..6) {
            // Grow to every node (3 → 5).
            0 => Configuration::with_voters(self.nodes.iter().copied()),
            // Shrink to a bare majority of the nodes (5 → 3), with or without the leader.
            1 => {
                let mut voters: Vec<NodeId> = current.voters.iter().copied().collect();
                voters.shuffle(&mut self.rng);
                voters.truncate(min.max(1));
                Configuration::with_voters(voters)
            }
            // Replace the leader by a node that does not vote yet.
            2 => {
                let mut target = current.clone();
                if let Some(&newcomer) = outsiders.choose(&mut self.rng) {
                    target.learners.remove(&newcomer);
                    target.voters.insert(newcomer);
                }
                if target.voters.len() > 1 {
                    target.voters.remove(&leader);
                }
                target
            }
            // Add one learner.
            3 => {
                let mut target = current.clone();
                let strangers: Vec<NodeId> =
                    self.nodes.iter().copied().filter(|&n| !current.contains(n)).collect();
                if let Some(&id) = strangers.choose(&mut self.rng) {
                    target.learners.insert(id);
                }
                target
            }
            // Remove one member (a voter only while enough remain).
            4 => {
                let mut target = current.clone();
                let members: Vec<NodeId> = current.members().into_iter().collect();
                if let Some(&id) = members.choose(&mut self.rng) {
                    if !current.voters.contains(&id) || current.voters.len() > min {
                        target.voters.remove(&id);
                        target.learners.remove(&id);
                    }
                }
                target
            }
            _ => self.random_configuration(),
        }
    }

    /// Any configuration with at least a bare majority of the nodes voting, and some learners.
    fn random_configuration(&mut self) -> Configuration {
        let mut nodes = self.nodes.clone();
        nodes.shuffle(&mut self.rng);
        let count = self.rng.gen_range(min_voters(nodes.len())..=nodes.len());
        let voters: BTreeSet<NodeId> = nodes[..count].iter().copied().collect();
        let learners: BTreeSet<NodeId> =
            nodes[count..].iter().copied().filter(|_| self.rng.gen_bool(0.5)).collect();
        Configuration { voters, learners, ..Default::default() }
    }
}

/// The fewest voters the driver lets a cluster of `nodes` simulated nodes shrink to: a bare majority of
/// them, so that a cluster keeps some fault tolerance.
fn min_voters(nodes: usize) -> usize {
    nodes.div_ceil(2).max(1)
}

/// The next legal change from `current` toward the simple configuration `target`, if any: every missing
/// member joins as a learner first (one per change), then one change goes to the target (the core makes
/// it joint when the voters change).
pub fn next_step(current: &Configuration, target: &Configuration) -> Option<ConfChange> {
    if current.is_joint() || current == target {
        return None;
    }
    if let Some(&id) = target.members().iter().find(|&&id| !current.contains(id)) {
        return Some(ConfChange::AddLearner(id));
    }
    Some(ConfChange::Target { voters: target.voters.clone(), learners: target.learners.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(voters: &[NodeId], learners: &[NodeId]) -> Configuration {
        Configuration::with_members(voters.iter().copied(), learners.iter().copied())
    }

    #[test]
    fn steps_add_missing_members_as_learners_then_go_to_the_target_at_once() {
        let target = config(&[1, 4, 5], &[]);
        let mut current = config(&[1, 2, 3], &[]);
        let mut steps = Vec::new();
        while let Some(step) = next_step(&current, &target) {
            current = raft::target_of(&current, &step).unwrap();
            steps.push(step);
            assert!(steps.len() < 10);
        }
        assert_eq!(current, target);
        assert_eq!(steps.len(), 3, "{steps:?}");
        assert_eq!(steps[0], ConfChange::AddLearner(4));
        assert_eq!(steps[1], ConfChange::AddLearner(5));
    }

    #[test]
    fn an_off_class_changes_nothing() {
        assert!(
            MembershipDriver::new(0.0, vec![1, 2, 3], crate::seed::derive_rng(1, "membership", 0)).is_none()
        );
    }
}
