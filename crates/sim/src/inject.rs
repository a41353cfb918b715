//! Test-only bug switches (the `inject-bugs` feature, which no default or release build enables): each
//! breaks one rule in the real code, so that tests can prove the simulator notices (issue 4, "Teeth").
//! The switch is set on every node, in every life.

use std::fmt;
use std::str::FromStr;

/// One rule broken on purpose, in every node of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InjectedBug {
    /// The core grants a second vote in a term it already voted in (§5.2).
    DoubleVote,
    /// The core commits an earlier term's entry by counting replicas (Figure 8, §5.4.2).
    CommitOldTermByCounting,
    /// The core acknowledges appended entries before they are durable.
    AckBeforePersist,
    /// The core answers a read index at once, without confirming it still leads (§6.4).
    StaleLeaderRead,
    /// The state machine applies a retried command of a session again instead of answering it from the
    /// session's reply cache (dissertation §6.3).
    ApplyRetriesTwice,
    /// The core changes the voters in one step, without the joint configuration (dissertation §4.3).
    SkipJointConsensus,
}

impl InjectedBug {
    /// Every switch, in the order of issue 4.
    pub const ALL: [InjectedBug; 6] = [
        InjectedBug::DoubleVote,
        InjectedBug::CommitOldTermByCounting,
        InjectedBug::AckBeforePersist,
        InjectedBug::StaleLeaderRead,
        InjectedBug::ApplyRetriesTwice,
        InjectedBug::SkipJointConsensus,
    ];

    /// The name `raftkv sim --inject-bug` takes.
    pub fn name(self) -> &'static str {
        match self {
            InjectedBug::DoubleVote => "double-vote",
            InjectedBug::CommitOldTermByCounting => "commit-old-term-by-counting",
            InjectedBug::AckBeforePersist => "ack-before-persist",
            InjectedBug::StaleLeaderRead => "stale-leader-read",
            InjectedBug::ApplyRetriesTwice => "apply-retries-twice",
            InjectedBug::SkipJointConsensus => "skip-joint-consensus",
        }
    }

    /// The core's switch for this bug, if the bug is in the core.
    pub fn in_raft(self) -> Option<raft::InjectedBug> {
        match self {
            InjectedBug::DoubleVote => Some(raft::InjectedBug::DoubleVote),
            InjectedBug::CommitOldTermByCounting => Some(raft::InjectedBug::CommitOldTermByCounting),
            InjectedBug::AckBeforePersist => Some(raft::InjectedBug::AckBeforePersist),
            InjectedBug::StaleLeaderRead => Some(raft::InjectedBug::StaleLeaderRead),
            InjectedBug::ApplyRetriesTwice => None,
            InjectedBug::SkipJointConsensus => Some(raft::InjectedBug::SkipJointConsensus),
        }
    }
}

impl fmt::Display for InjectedBug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for InjectedBug {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        InjectedBug::ALL.into_iter().find(|bug| bug.name() == name).ok_or_else(|| {
            let names: Vec<&str> = InjectedBug::ALL.iter().map(|bug| bug.name()).collect();
            format!("unknown bug {name:?}; one of: {}", names.join(", "))
        })
    }
}

/// Switches the bug on in a node's core configuration, if it lives there.
pub(crate) fn raft_config(bug: Option<InjectedBug>, config: raft::Config) -> raft::Config {
    raft::Config { injected_bug: bug.and_then(InjectedBug::in_raft), ..config }
}

/// Switches the bug on in a node's state machine, if it lives there.
pub(crate) fn state_machine(bug: Option<InjectedBug>, machine: &mut kv::KvStateMachine) {
    machine.set_bug_apply_retries_twice(bug == Some(InjectedBug::ApplyRetriesTwice));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for bug in InjectedBug::ALL {
            assert_eq!(bug.name().parse::<InjectedBug>(), Ok(bug));
        }
        assert!("no-such-bug".parse::<InjectedBug>().is_err());
    }
}
