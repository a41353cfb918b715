//! The vocabulary every other crate shares: ids, terms, indices, log entries, the durable hard state and
//! cluster configurations. These are plain data; the rules that govern them live in the other modules.

use std::collections::BTreeSet;
use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// A server's identity within one cluster. Never 0: 0 means "nobody" on the wire and in hard state.
pub type NodeId = u64;

/// A Raft term (§5.1). Term 0 is the term of the empty log; real terms start at 1.
pub type Term = u64;

/// A position in the replicated log. Index 0 is the empty log; the first real entry has index 1.
pub type Index = u64;

/// What an entry carries. The consensus core only cares about the difference between a no-op, a
/// configuration and everything else; `Command` bytes are opaque to it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum EntryPayload {
    /// Appended by every new leader at the start of its term (§8), so that it can commit entries of
    /// earlier terms (§5.4.2) and serve ReadIndex reads (§6.4).
    Noop,
    /// An application command, opaque to the core (the KV state machine decodes it).
    Command(Bytes),
    /// A cluster configuration; takes effect when appended, not when committed (dissertation §4.1).
    Config(Configuration),
}

/// One log entry (Figure 2: "each entry contains command for state machine, and term when entry was
/// received by leader").
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Entry {
    pub index: Index,
    pub term: Term,
    pub payload: EntryPayload,
}

impl Entry {
    /// Bytes this entry counts for in message-size and uncommitted-size limits: the payload plus a fixed
    /// allowance for index and term.
    pub fn size_bytes(&self) -> usize {
        match &self.payload {
            EntryPayload::Noop => Self::HEADER_BYTES,
            EntryPayload::Command(data) => Self::size_bytes_of_command(data.len()),
            EntryPayload::Config(config) => Self::HEADER_BYTES + 8 * config.member_count(),
        }
    }

    /// [`Entry::size_bytes`] of an entry carrying a command of `len` bytes.
    pub fn size_bytes_of_command(len: usize) -> usize {
        Self::HEADER_BYTES + len
    }

    const HEADER_BYTES: usize = 16;
}

impl fmt::Display for Entry {
    /// Compact form for scenario output: `3@2` is index 3 in term 2; a no-op is marked `3@2·`, a
    /// configuration `3@2c`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.index, self.term)?;
        match self.payload {
            EntryPayload::Noop => write!(f, "·"),
            EntryPayload::Command(_) => Ok(()),
            EntryPayload::Config(_) => write!(f, "c"),
        }
    }
}

/// The state Figure 2 calls "persistent state on all servers", plus the commit index (which is safe to
/// lose but saves a replay on restart). Written before any message that depends on it is sent.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct HardState {
    /// Latest term this server has seen. Invariant: never decreases, across restarts too.
    pub term: Term,
    /// Candidate that received this server's vote in `term`, if any. Invariant: once set for a term it
    /// never changes within that term (one vote per term, §5.2).
    pub vote: Option<NodeId>,
    /// Highest log index known to be committed. Invariant: never decreases.
    pub commit: Index,
}

/// Who is in the cluster. A joint configuration (dissertation §4.3) has a non-empty `outgoing_voters`;
/// decisions then need a majority of `voters` *and* a majority of `outgoing_voters`.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct Configuration {
    /// The voters of the (incoming) configuration.
    pub voters: BTreeSet<NodeId>,
    /// The voters of the outgoing configuration while a joint change is in progress; empty otherwise.
    pub outgoing_voters: BTreeSet<NodeId>,
    /// Members that receive the log but never vote or count toward a quorum.
    pub learners: BTreeSet<NodeId>,
}

impl Configuration {
    /// A simple (non-joint) configuration of the given voters and no learners.
    pub fn with_voters(voters: impl IntoIterator<Item = NodeId>) -> Self {
        Configuration { voters: voters.into_iter().collect(), ..Default::default() }
    }

    /// A simple configuration of the given voters and learners.
    pub fn with_members(
        voters: impl IntoIterator<Item = NodeId>,
        learners: impl IntoIterator<Item = NodeId>,
    ) -> Self {
        Configuration {
            voters: voters.into_iter().collect(),
            learners: learners.into_iter().collect(),
            ..Default::default()
        }
    }

    /// True while a joint change C_old,new is in progress.
    pub fn is_joint(&self) -> bool {
        !self.outgoing_voters.is_empty()
    }

    /// Every member, voter or learner, of either half, each once.
    pub fn members(&self) -> BTreeSet<NodeId> {
        self.voters.iter().chain(&self.outgoing_voters).chain(&self.learners).copied().collect()
    }

    /// True if `id` is a member in any role (voter of either half, or learner).
    pub fn contains(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.outgoing_voters.contains(&id) || self.learners.contains(&id)
    }

    /// The configuration a joint one is heading for (C_new of C_old,new): its incoming voters and its
    /// learners. A simple configuration is its own target.
    pub fn target(&self) -> Configuration {
        Configuration {
            voters: self.voters.clone(),
            outgoing_voters: BTreeSet::new(),
            learners: self.learners.clone(),
        }
    }

    fn member_count(&self) -> usize {
        self.voters.len() + self.outgoing_voters.len() + self.learners.len()
    }
}

impl fmt::Display for Configuration {
    /// Compact form for logs and status: `voters=[1,2,3] learners=[4]`, with `outgoing=[..]` while joint.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |set: &BTreeSet<NodeId>| set.iter().map(|id| id.to_string()).collect::<Vec<_>>().join(",");
        write!(f, "voters=[{}]", list(&self.voters))?;
        if self.is_joint() {
            write!(f, " outgoing=[{}]", list(&self.outgoing_voters))?;
        }
        if !self.learners.is_empty() {
            write!(f, " learners=[{}]", list(&self.learners))?;
        }
        Ok(())
    }
}

/// One membership change, as a leader's caller asks for it ([`crate::Raft::propose_conf_change`]). Every
/// change that alters the voters goes through the joint configuration C_old,new (dissertation §4.3); one
/// that only adds or removes learners is appended directly (learners never count, so no quorum changes).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum ConfChange {
    /// Add a non-voting member that receives the log and snapshots (dissertation §4.2.1: a new server
    /// catches up before it counts).
    AddLearner(NodeId),
    /// Make a learner a voter. Refused until the learner has stored the configuration in force, and
    /// while it is more than [`crate::Config::max_promotion_lag_entries`] behind the leader's log.
    PromoteLearner(NodeId),
    /// Remove a voter or a learner (possibly the leader itself: it then manages the change to its end
    /// and steps down once C_new is committed, §6).
    RemoveMember(NodeId),
    /// Go to exactly these voters and learners in one joint change (grow 3→5, replace several servers at
    /// once). Every new voter must already be a learner that has caught up; anyone left out is removed.
    Target { voters: BTreeSet<NodeId>, learners: BTreeSet<NodeId> },
}

impl fmt::Display for ConfChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfChange::AddLearner(id) => write!(f, "add learner {id}"),
            ConfChange::PromoteLearner(id) => write!(f, "promote {id}"),
            ConfChange::RemoveMember(id) => write!(f, "remove {id}"),
            ConfChange::Target { voters, learners } => {
                let target = Configuration {
                    voters: voters.clone(),
                    learners: learners.clone(),
                    ..Default::default()
                };
                write!(f, "go to {target}")
            }
        }
    }
}

/// What a snapshot stands for: the state machine after applying every entry up to `index` (§7), and the
/// configuration in force at that point, so that a node restored from it knows its cluster.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct SnapshotMeta {
    pub index: Index,
    pub term: Term,
    pub configuration: Configuration,
}
