//! Test-only (feature `inject-bugs`, never in a default or release build): `RAFTKV_INJECT_BUG=NAME` in the
//! environment of `raftkv serve` breaks one rule in the node, so the fault-injection test of real
//! processes can show that it notices (issue 8). The names are those of `raftkv sim --inject-bug`.

use std::env::VarError;

/// The environment variable that names the bug.
pub const VARIABLE: &str = "RAFTKV_INJECT_BUG";

/// One rule broken on purpose in this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InjectedBug {
    /// A rule of the consensus core (`raft::InjectedBug`).
    Raft(raft::InjectedBug),
    /// The state machine applies a retried command again instead of answering from its session cache.
    ApplyRetriesTwice,
}

/// The bug `RAFTKV_INJECT_BUG` names, if any; an unknown name is an error naming the known ones.
pub fn from_env() -> Result<Option<InjectedBug>, String> {
    let name = match std::env::var(VARIABLE) {
        Ok(name) if !name.is_empty() => name,
        Ok(_) | Err(VarError::NotPresent) => return Ok(None),
        Err(VarError::NotUnicode(_)) => return Err(format!("{VARIABLE} is not UTF-8")),
    };
    let bug = match name.as_str() {
        "double-vote" => InjectedBug::Raft(raft::InjectedBug::DoubleVote),
        "commit-old-term-by-counting" => InjectedBug::Raft(raft::InjectedBug::CommitOldTermByCounting),
        "ack-before-persist" => InjectedBug::Raft(raft::InjectedBug::AckBeforePersist),
        "stale-leader-read" => InjectedBug::Raft(raft::InjectedBug::StaleLeaderRead),
        "apply-retries-twice" => InjectedBug::ApplyRetriesTwice,
        _ => {
            return Err(format!(
                "{VARIABLE}={name:?} is not a known bug; one of: double-vote, commit-old-term-by-counting, \
                 ack-before-persist, stale-leader-read, apply-retries-twice"
            ))
        }
    };
    tracing::warn!(bug = name, "test-only bug injected: this node breaks a rule on purpose");
    Ok(Some(bug))
}

/// The core's switch for `bug`, if the bug lives in the core.
pub fn in_raft(bug: Option<InjectedBug>) -> Option<raft::InjectedBug> {
    match bug {
        Some(InjectedBug::Raft(bug)) => Some(bug),
        _ => None,
    }
}
