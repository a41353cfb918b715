//! The INFO text: Redis's `# Section` / `key:value` lines, with a `# Raft` section for this node.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use raft::{NodeId, Role};

use crate::address_book::AddressBook;
use crate::config::Member;
use crate::node_loop::NodeStatus;

/// What INFO and the admin endpoint say that never changes while the process runs.
pub struct StaticInfo {
    pub started: Instant,
    pub client_addr: String,
    pub peer_addr: String,
    /// This node's advertised admin address, if it serves one.
    pub admin_addr: Option<String>,
    pub cluster_id: u64,
    /// Every member's advertised addresses (this node's own from its flags; members added at run time
    /// from the replicated book), to name the leader's and to list the members'.
    pub book: Arc<AddressBook>,
}

impl StaticInfo {
    /// The known addresses of member `id`, if anyone named it.
    pub fn member(&self, id: NodeId) -> Option<Member> {
        self.book.get(id)
    }
}

pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Follower => "follower",
        Role::PreCandidate => "precandidate",
        Role::Candidate => "candidate",
        Role::Leader => "leader",
    }
}

/// Renders INFO for `section` (`None`, `all`, `everything` and `default` mean every section).
pub fn render(info: &StaticInfo, status: &NodeStatus, section: Option<&str>) -> String {
    let wants = |name: &str| match section {
        None => true,
        Some(s) => matches!(s, "all" | "everything" | "default") || s.eq_ignore_ascii_case(name),
    };
    let mut text = String::new();
    if wants("server") {
        let _ = write!(
            text,
            "# Server\r\nredis_version:7.0.0\r\nraftkv_version:{}\r\nredis_mode:standalone\r\nprocess_id:{}\r\n\
             tcp_port:{}\r\nuptime_in_seconds:{}\r\n\r\n",
            env!("CARGO_PKG_VERSION"),
            std::process::id(),
            info.client_addr.rsplit(':').next().unwrap_or(""),
            info.started.elapsed().as_secs(),
        );
    }
    if wants("keyspace") {
        let _ = write!(text, "# Keyspace\r\ndb0:keys={},expires=0,avg_ttl=0\r\n\r\n", status.keys);
    }
    if wants("raft") {
        render_raft(&mut text, info, status);
    }
    text
}

fn render_raft(text: &mut String, info: &StaticInfo, status: &NodeStatus) {
    let leader_addr = status
        .leader_id
        .and_then(|id| info.member(id))
        .and_then(|m| m.client_addr.clone())
        .unwrap_or_default();
    let list = |ids: &[NodeId]| ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    let _ = write!(
        text,
        "# Raft\r\nnode_id:{}\r\ncluster_id:{:#x}\r\nrole:{}\r\nterm:{}\r\nleader_id:{}\r\nleader_client_address:{}\r\n\
         commit_index:{}\r\napplied_index:{}\r\nlast_index:{}\r\nvoters:{}\r\nlearners:{}\r\noutgoing_voters:{}\r\n\
         configuration_index:{}\r\nconf_change_in_progress:{}\r\nclient_address:{}\r\npeer_address:{}\r\n\
         pending_requests:{}\r\nincarnation:{}\r\n",
        status.node_id,
        info.cluster_id,
        role_name(status.role),
        status.term,
        status.leader_id.map_or(String::new(), |id| id.to_string()),
        leader_addr,
        status.commit_index,
        status.applied_index,
        status.last_index,
        list(&status.voters),
        list(&status.learners),
        list(&status.outgoing_voters),
        status.configuration_index,
        u8::from(status.conf_change_in_progress),
        info.client_addr,
        info.peer_addr,
        status.pending_requests,
        status.incarnation,
    );
    for follower in &status.followers {
        let (id, match_index) = (follower.id, follower.match_index);
        let lag = status.last_index.saturating_sub(match_index);
        let _ = write!(text, "follower_{id}:match_index={match_index},lag={lag}\r\n");
    }
}

/// Parses INFO text into `(key, value)` pairs (for `raftkv status` and tests).
pub fn parse(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}
